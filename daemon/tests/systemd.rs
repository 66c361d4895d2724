//! The systemd notify protocol without systemd: a datagram socket bound as NOTIFY_SOCKET
//! receives what the real daemon sends through start, reload, watchdog and stop.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::daemon::{EXEC_GRANT, Site};

const WORKFLOW: &str = "[jobs.a]\nkind = \"exec\"\ncommand = [\"sh\", \"-c\", \"true\"]\n\n[[steps]]\nname = \"a\"\ntasks = [\"jobs.a\"]\n";

/// Collects notify messages until one contains `want`, or panics after `within`.
fn until(sock: &UnixDatagram, seen: &mut Vec<String>, want: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            seen.push(msg.clone());
            if msg.lines().any(|l| l == want) {
                return msg;
            }
        }
    }
    panic!("no {want} within {within:?}; saw {seen:?}");
}

#[test]
fn ready_reloading_watchdog_and_stopping_are_sent() {
    let site = Site::new(EXEC_GRANT, &[("app", WORKFLOW)]);
    let path = site.tmp.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut daemon = site.start_with(&[
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "200000"),
    ]);
    let mut seen = Vec::new();

    let ready = until(&sock, &mut seen, "READY=1", Duration::from_secs(30));
    assert!(
        ready.lines().any(|l| l.starts_with("STATUS=serving")),
        "{ready}"
    );
    // READY comes after the first load: the workflow is already active.
    assert_eq!(daemon.get("/v1/workflows")["workflows"][0]["name"], "app");

    let pings_from = seen.len();
    until(&sock, &mut seen, "WATCHDOG=1", Duration::from_secs(5));
    until(&sock, &mut seen, "WATCHDOG=1", Duration::from_secs(5));
    assert!(seen.len() >= pings_from + 2);

    daemon.signal(libc::SIGHUP);
    let reloading = until(&sock, &mut seen, "RELOADING=1", Duration::from_secs(10));
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("RELOADING without MONOTONIC_USEC: {reloading}"));
    assert!(usec > 0);
    let ready = until(&sock, &mut seen, "READY=1", Duration::from_secs(30));
    assert!(ready.contains("STATUS=reloaded: ok"), "{ready}");

    daemon.signal(libc::SIGTERM);
    let stopping = until(&sock, &mut seen, "STOPPING=1", Duration::from_secs(10));
    assert!(stopping.contains("STATUS=draining"), "{stopping}");
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)), Some(0));
}

/// Socket activation: the daemon starts on the first connection to a socket someone else
/// bound (here systemd-socket-activate, as systemd does with gantry.socket), serves it, and
/// leaves it in place when it stops.
#[test]
fn serves_a_socket_passed_by_socket_activation() {
    let site = Site::new(EXEC_GRANT, &[("app", WORKFLOW)]);
    let socket = site.tmp.path().join("activated.sock");
    let activate = format!("--listen={}", socket.display());
    let log = site.tmp.path().join("daemon.log");
    let child = site
        .daemon_command(
            &["systemd-socket-activate", &activate],
            &site.tmp.path().join("unused.sock"),
        )
        .stdout(std::fs::File::create(&log).expect("daemon log"))
        .stderr(
            std::fs::File::options()
                .append(true)
                .open(&log)
                .expect("daemon log"),
        )
        .spawn()
        .expect("systemd-socket-activate (from systemd) runs");
    // systemd-socket-activate execs the daemon in its own process: one pid, one child.
    let mut daemon = common::daemon::Daemon::adopt(child, socket.clone(), log);
    // The file appears at bind(2), connections succeed from listen(2) on.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = daemon.request("GET", "/v1/workflows", None);
    assert_eq!(status, 200, "{body}\n{}", daemon.log_text());
    assert!(body.contains("\"app\""), "{body}\n{}", daemon.log_text());
    assert!(!site.tmp.path().join("unused.sock").exists());
    daemon.signal(libc::SIGTERM);
    assert_eq!(daemon.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(
        socket.exists(),
        "the activated socket belongs to the service manager"
    );
}

/// A service manager that stops reading its socket must not stall the daemon: a datagram
/// socket's queue is short, and a blocked send would block the API with it.
#[test]
fn an_unread_notify_socket_does_not_stall_the_daemon() {
    let site = Site::new(EXEC_GRANT, &[("app", WORKFLOW)]);
    let path = site.tmp.path().join("notify.sock");
    let _unread = UnixDatagram::bind(&path).unwrap();
    let daemon = site.start_with(&[
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "20000"),
    ]);
    for _ in 0..30 {
        let (status, _) = daemon.json("POST", "/v1/reload", None);
        assert_eq!(status, 200);
    }
    let id = daemon.trigger(&["app"]);
    assert_eq!(daemon.wait_run(&id)["run"]["state"], "succeeded");
}
