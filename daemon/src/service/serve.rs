//! Running the daemon: take the state lock, start, bind the socket (or take the one systemd
//! passes), serve the API, reload on SIGHUP, drain on SIGTERM, and tell systemd each step.

use std::os::fd::FromRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::UnixListener;
use tokio::signal::unix::{SignalKind, signal};

use super::Daemon;
use super::lock::StateLock;
use crate::systemd;

pub struct ServeOptions {
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// Embed a Kubernetes API simulator and send every cluster's traffic to it.
    pub sim: bool,
}

pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    let _lock = StateLock::acquire(&opts.state_dir)?;
    let simulator = match opts.sim {
        true => Some(crate::sim::embedded(&opts.state_dir).await?),
        false => None,
    };
    let kubeconfig = simulator.as_ref().map(|s| s.kubeconfig.clone());
    let daemon = Daemon::start(&opts.config_dir, &opts.state_dir, kubeconfig).await?;
    // Watching starts before the socket takes connections: a client that edits a workflow
    // once it can connect must not edit it before the watch sees the tree.
    let shutdown = shutdown_signal(daemon.clone());
    let watcher = crate::watch::spawn(daemon.clone());
    // A socket systemd passed is systemd's to remove; one we bound is ours.
    let (listener, owned) = match systemd::activated_listener()? {
        Some(l) => (l, false),
        None => (bind(&opts.socket)?, true),
    };
    let status = daemon.last_reload();
    systemd::ready(&format!(
        "serving; configuration generation {}{}",
        status.generation,
        if status.ok {
            String::new()
        } else {
            format!(" (last load failed: {} errors)", status.errors.len())
        }
    ));
    systemd::spawn_watchdog(daemon.clone());
    tracing::info!(socket = %opts.socket.display(), "gantry daemon ready");

    // Bound once at start, on loopback only (the loader refuses other addresses).
    let metrics = match daemon.active().config.daemon.metrics.listen {
        Some(addr) if addr.ip().is_loopback() => {
            let tcp = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("[metrics] listen = \"{addr}\": {e}"))?;
            tracing::info!(%addr, "serving /metrics");
            let router = crate::api::metrics_router(daemon.clone());
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(tcp, router).await {
                    tracing::error!(error = %e, "the metrics listener stopped");
                }
            }))
        }
        _ => None,
    };
    let app = crate::api::router(daemon.clone());
    let limits = {
        let daemon = daemon.clone();
        move || {
            let api = &daemon.active().config.daemon.api;
            crate::api::server::ConnectionLimits {
                max_connections: api.max_connections.max(1),
                header_timeout: api.header_timeout,
            }
        }
    };
    crate::api::server::serve(listener, app, limits, shutdown).await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    drop(watcher);
    if owned {
        let _ = std::fs::remove_file(&opts.socket);
    }

    systemd::flush(std::time::Duration::from_secs(1));
    tracing::info!("gantry daemon stopped");
    Ok(())
}

fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        // A socket left by a crashed daemon; the state lock proves no daemon owns it now.
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => anyhow::bail!(
            "{} exists and is not a socket; refusing to replace it (remove it or choose another --socket)",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("{}: {e}", path.display()),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

/// Resolves when the daemon should stop serving: after SIGTERM or SIGINT and the drain.
/// The daemon's signal handlers, installed when this is called (not when the returned future
/// is first polled), so a SIGTERM that comes as soon as the socket answers is not fatal.
fn shutdown_signal(daemon: Arc<Daemon>) -> impl std::future::Future<Output = ()> {
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    async move {
        let (Ok(term), Ok(int), Ok(hup)) = handlers else {
            tracing::error!("cannot install signal handlers; stop the daemon with SIGKILL");
            return std::future::pending().await;
        };
        until_stopped(daemon, term, int, hup).await
    }
}

async fn until_stopped(
    daemon: Arc<Daemon>,
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
    mut hup: tokio::signal::unix::Signal,
) {
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                daemon.reload_announced().await;
            }
        }
    }
    let grace = daemon.active().config.daemon.daemon.shutdown_grace;
    systemd::stopping(&format!(
        "draining {} running runs",
        daemon.runs.running().len()
    ));
    tracing::info!(grace = %humantime::format_duration(grace), "stopping: no new runs; running ones may finish");
    daemon.drain(grace).await;
}

/// A listener from a socket file descriptor, for socket activation.
pub fn listener_from_fd(fd: i32) -> anyhow::Result<UnixListener> {
    // SAFETY: systemd passes this descriptor to us (LISTEN_FDS) and nothing else owns it; we
    // take ownership exactly once.
    let std_listener = unsafe { std::os::unix::net::UnixListener::from_raw_fd(fd) };
    std_listener.set_nonblocking(true)?;
    Ok(UnixListener::from_std(std_listener)?)
}
