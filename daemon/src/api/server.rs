//! Serving HTTP/1.1 connections on the Unix socket with bounds a local user cannot exhaust:
//! at most `[api] max_connections` at once (more are closed on arrival, so a flood cannot
//! take the file descriptors a running task needs), and a connection that sends no complete
//! request headers within `[api] header_timeout` — new or idle between requests — is closed.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;

use super::auth::Peer;

/// How the API's connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// Serves `router` until `shutdown` resolves; connections still open then are dropped.
pub async fn serve(
    listener: UnixListener,
    router: Router,
    limits: impl Fn() -> ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut slots = Arc::new(Semaphore::new(limits().max_connections));
    let mut sized_for = limits().max_connections;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors or similar: back off instead of spinning.
                tracing::warn!(error = %e, "accepting an API connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let now = limits();
        if now.max_connections != sized_for {
            // A reload changed the cap: connections already open keep their old slots.
            slots = Arc::new(Semaphore::new(now.max_connections));
            sized_for = now.max_connections;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(
                max = now.max_connections,
                "too many API connections; closing a new one"
            );
            drop(stream);
            continue;
        };
        let peer = Peer::of(&stream);
        let service =
            TowerToHyperService::new(router.clone().layer(axum::Extension(ConnectInfo(peer))));
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(now.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "API connection ended");
            }
            drop(slot);
        });
    }
}
