//! The systemd notify protocol without systemd: a datagram socket bound as NOTIFY_SOCKET
//! receives what the real daemon sends through start, reload, watchdog and stop.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::daemon::{EXEC_GRANT, Site};

const WORKFLOW: &str =
    "[jobs.a]\nkind = \"exec\"\ncommand = [\"true\"]\n\n[[steps]]\nname = \"a\"\ntasks = [\"jobs.a\"]\n";

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
