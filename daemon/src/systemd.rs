//! The systemd notify protocol (READY, RELOADING, STOPPING, STATUS, WATCHDOG) and socket
//! activation. Outside systemd (no NOTIFY_SOCKET, no LISTEN_FDS) everything here is a no-op.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::net::UnixListener;

use crate::service::Daemon;

/// Sending blocks when the manager does not read its socket (a datagram queue holds only a
/// few messages), so one thread sends, in order, and the runtime never waits on it. When
/// its queue is full, messages are dropped: a later one says the same or more.
static PENDING: AtomicUsize = AtomicUsize::new(0);

fn sender() -> Option<&'static SyncSender<String>> {
    static SENDER: OnceLock<Option<SyncSender<String>>> = OnceLock::new();
    SENDER
        .get_or_init(|| {
            std::env::var_os("NOTIFY_SOCKET")?;
            let (tx, rx) = sync_channel::<String>(64);
            let spawned = std::thread::Builder::new()
                .name("sd-notify".into())
                .spawn(move || {
                    for message in rx {
                        if let Err(e) = sd_notify::notify(false, &[NotifyState::Custom(&message)])
                        {
                            tracing::debug!(error = %e, "sd_notify failed");
                        }
                        PENDING.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            match spawned {
                Ok(_) => Some(tx),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the notify thread; systemd will not hear from gantry");
                    None
                }
            }
        })
        .as_ref()
}

fn notify(states: &[NotifyState<'_>]) {
    let Some(tx) = sender() else {
        return;
    };
    let message = states
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    PENDING.fetch_add(1, Ordering::SeqCst);
    if let Err(e) = tx.try_send(message) {
        PENDING.fetch_sub(1, Ordering::SeqCst);
        if let TrySendError::Full(_) = e {
            tracing::warn!("the service manager is not reading notifications; one dropped");
        }
    }
}

/// Gives queued notifications up to `within` to be sent, before the process exits.
pub fn flush(within: Duration) {
    let deadline = std::time::Instant::now() + within;
    while PENDING.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => notify(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("reloading configuration"),
        ]),
        Err(e) => tracing::debug!(error = %e, "no monotonic clock for RELOADING"),
    }
}

pub fn stopping(status: &str) {
    notify(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// Pings the watchdog at half its interval, but only while the daemon's own machinery (the
/// runtime serving this task and the Wasm epoch thread) is alive.
pub fn spawn_watchdog(daemon: Arc<Daemon>) {
    let Some(interval) = watchdog_interval() else {
        return;
    };
    let every = interval / 2;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if daemon.host().engine().ticking() {
                notify(&[NotifyState::Watchdog]);
            } else {
                tracing::error!("epoch thread stopped; withholding watchdog pings");
            }
        }
    });
}

/// The watchdog interval systemd expects pings within, as sd_watchdog_enabled(3) defines
/// it: WATCHDOG_USEC, unless WATCHDOG_PID names another process.
fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// The listening socket systemd passed (socket activation), if any.
pub fn activated_listener() -> anyhow::Result<Option<UnixListener>> {
    let fds: Vec<i32> = sd_notify::listen_fds()
        .map(|fds| fds.collect())
        .unwrap_or_default();
    match fds.first() {
        Some(&fd) => Ok(Some(crate::service::serve::listener_from_fd(fd)?)),
        None => Ok(None),
    }
}
