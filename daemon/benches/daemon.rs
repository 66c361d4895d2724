//! The daemon as operators feel it, in one run of the release binary:
//! 1. start-up to READY (systemd notify) with a warm compiled-component cache;
//! 2. resident memory when idle with the built-in plugins loaded;
//! 3. latency from `POST /v1/runs` to the run's first `task_started` event, as a client
//!    following `/v1/events` sees it;
//! 4. latency from a workflow file being replaced to the new configuration being active.
//!
//!     cargo bench -p gantry --bench daemon

#[allow(dead_code)]
#[path = "../tests/common/daemon.rs"]
mod daemon;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use daemon::{EXEC_GRANT, Site, http};

const ONE_TASK: &str = "[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n\n[[steps]]\nname = \"a\"\ntasks = [\"jobs.a\"]\n";

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Reads one chunk of a chunked HTTP body (each event is one chunk).
fn next_chunk(reader: &mut BufReader<UnixStream>) -> Option<String> {
    let mut size = String::new();
    reader.read_line(&mut size).ok()?;
    let n = usize::from_str_radix(size.trim(), 16).ok()?;
    if n == 0 {
        return None;
    }
    let mut chunk = vec![0; n + 2];
    reader.read_exact(&mut chunk).ok()?;
    Some(String::from_utf8_lossy(&chunk[..n]).into_owned())
}

/// A connection following `/v1/events` from now on.
fn follow_all(socket: &std::path::Path) -> BufReader<UnixStream> {
    let mut stream = UnixStream::connect(socket).expect("connect");
    stream
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        if line.trim_end().is_empty() {
            return reader;
        }
    }
}

fn rss_kib(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let site = Site::new(EXEC_GRANT, &[("one", ONE_TASK)]);
    // Warm the compiled-component cache.
    let mut warm = site.start();
    warm.signal(libc::SIGTERM);
    warm.wait_exit(Duration::from_secs(30));

    // 1. start-up to READY
    let notify_path = site.tmp.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    let mut startups = Vec::new();
    let mut last = None;
    for _ in 0..15 {
        if let Some(mut previous) = last.take() {
            drop_daemon(&mut previous);
        }
        let (tx, rx) = mpsc::channel();
        let listener = notify.try_clone().expect("clone");
        let waiter = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = listener.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                    let _ = tx.send(Instant::now());
                    return;
                }
            }
        });
        let t0 = Instant::now();
        let d = site.start_with(&[("NOTIFY_SOCKET", notify_path.to_str().unwrap_or_default())]);
        let ready = rx.recv_timeout(Duration::from_secs(30)).expect("READY");
        let _ = waiter.join();
        startups.push(ready - t0);
        last = Some(d);
    }
    let mut d = last.expect("a daemon");
    drop(notify);

    // 2. idle memory
    std::thread::sleep(Duration::from_secs(2));
    let idle_kib = rss_kib(d.pid());

    // 3. POST /v1/runs -> first task_started
    let mut events = follow_all(&d.socket);
    let mut triggers = Vec::new();
    for _ in 0..50 {
        let t0 = Instant::now();
        let (status, body) = http(
            &d.socket,
            "POST",
            "/v1/runs",
            Some(r#"{"workflows":["one"]}"#),
        );
        assert_eq!(status, 202, "{body}");
        let id = serde_json::from_str::<serde_json::Value>(&body).expect("json")["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut started = None;
        while let Some(line) = next_chunk(&mut events) {
            let e: serde_json::Value = serde_json::from_str(line.trim()).expect("event");
            if e["run"] != id.as_str() {
                continue;
            }
            if e["type"] == "task_started" && started.is_none() {
                started = Some(t0.elapsed());
            }
            if e["type"] == "run_finished" {
                assert_eq!(e["state"], "succeeded", "{e}");
                break;
            }
        }
        triggers.push(started.expect("task_started"));
    }

    // 4. file change -> active
    let debounce = Duration::from_millis(300);
    let mut reloads = Vec::new();
    for i in 0..15 {
        let generation = d.get("/v1/status")["generation"].as_i64().unwrap_or(0);
        let t0 = Instant::now();
        site.write_workflow(
            "one",
            &ONE_TASK.replace("\"true\"", &format!("\"true {i}\"")),
        );
        loop {
            if d.get("/v1/status")["generation"].as_i64().unwrap_or(0) > generation {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        reloads.push(t0.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop_daemon(&mut d);

    let startup = median(startups);
    let trigger = median(triggers);
    let reload = median(reloads);
    println!("daemon (release build, 2 built-in plugins, medians)");
    println!(
        "  start-up to READY, warm cache   {:>8.1} ms   (target <= 200 ms: {})",
        ms(startup),
        verdict(startup <= Duration::from_millis(200))
    );
    println!(
        "  idle resident memory            {:>8.1} MB   (target <= 30 MB: {})",
        idle_kib as f64 / 1024.0,
        verdict(idle_kib <= 30 * 1024)
    );
    println!(
        "  POST /v1/runs -> task_started   {:>8.2} ms   (target <= 2 ms: {})",
        ms(trigger),
        verdict(trigger <= Duration::from_millis(2))
    );
    println!(
        "  file change -> config active    {:>8.1} ms   (debounce {} ms; target <= debounce + 50 ms: {}; overhead {:.1} ms)",
        ms(reload),
        debounce.as_millis(),
        verdict(reload <= debounce + Duration::from_millis(50)),
        ms(reload.saturating_sub(debounce))
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn drop_daemon(d: &mut daemon::Daemon) {
    d.signal(libc::SIGTERM);
    d.wait_exit(Duration::from_secs(30));
}
