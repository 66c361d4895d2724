//! Watching the config directory (and the plugin directories inside it): changes are
//! debounced, the directory is re-read and compared by content hash, and a real change is
//! validated and swapped in by `Daemon::reload`. Editors' atomic renames and symlink swaps
//! (Kubernetes ConfigMap mounts) are ordinary changes here because the whole tree is rescanned.

use std::path::Path;
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

use crate::service::Daemon;

/// Keeps the watcher alive; dropping it stops watching.
pub struct WatchHandle {
    _watcher: Option<notify::RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A digest of every file under `dir` (following symlinks), by path and content.
pub fn tree_digest(dir: &Path) -> String {
    let mut files = Vec::new();
    collect(dir, &mut files, 0);
    files.sort();
    let mut h = Sha256::new();
    for path in files {
        h.update(path.to_string_lossy().as_bytes());
        h.update([0]);
        if let Ok(bytes) = std::fs::read(&path) {
            h.update(Sha256::digest(&bytes));
        }
    }
    hex::encode(h.finalize())
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>, depth: usize) {
    if depth > 8 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, out, depth + 1);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

pub fn spawn(daemon: Arc<Daemon>) -> WatchHandle {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |_event: notify::Result<notify::Event>| {
        let _ = tx.send(());
    })
    .and_then(|mut w| {
        w.watch(&daemon.config_dir, RecursiveMode::Recursive)
            .map(|()| w)
    });
    let watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %e, dir = %daemon.config_dir.display(), "cannot watch the config directory; use SIGHUP or POST /v1/reload");
            None
        }
    };
    let task = tokio::spawn(async move {
        let mut last = tree_digest(&daemon.config_dir);
        while rx.recv().await.is_some() {
            let debounce = daemon.active().config.daemon.daemon.watch_debounce;
            // Quiet period: keep absorbing events until none arrives for `debounce`.
            loop {
                match tokio::time::timeout(debounce, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let now = tree_digest(&daemon.config_dir);
            if now == last {
                continue;
            }
            last = now;
            let before = daemon.active();
            crate::systemd::reloading();
            let status = daemon.reload().await;
            crate::systemd::ready(if status.ok {
                "configuration reloaded"
            } else {
                "configuration change rejected"
            });
            if status.ok {
                auto_deploy(&daemon, &before);
            }
        }
    });
    WatchHandle {
        _watcher: watcher,
        task,
    }
}

/// Deploys workflows with `auto_deploy = true` whose own file changed.
fn auto_deploy(daemon: &Arc<Daemon>, before: &crate::service::Active) {
    let after = daemon.active();
    for (name, wf) in &after.config.workflows {
        let changed = before
            .config
            .workflows
            .get(name)
            .is_none_or(|old| old.digest != wf.digest);
        if wf.auto_deploy && changed {
            match crate::api::start_run(daemon, std::slice::from_ref(name), "auto_deploy") {
                Ok(id) => tracing::info!(workflow = %name, run = %id, "auto-deploy started"),
                Err(e) => {
                    tracing::error!(workflow = %name, error = %e.message, "auto-deploy failed to start")
                }
            }
        }
    }
}
