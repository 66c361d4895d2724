//! Watching the config directory (and the plugin directories inside it): changes are
//! debounced, the directory is re-read and compared by content hash, and a real change is
//! validated and swapped in by `Daemon::reload`. Editors' atomic renames and symlink swaps
//! (Kubernetes ConfigMap mounts) are ordinary changes here because the whole tree is rescanned.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

use crate::service::Daemon;

/// Keeps the watcher alive; dropping it stops watching.
pub struct WatchHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The directories whose contents make up the configuration: the config directory and
/// plugin directories outside it.
fn roots(daemon: &Daemon) -> Vec<PathBuf> {
    let mut roots = vec![daemon.config_dir.clone()];
    for dir in daemon
        .active()
        .config
        .daemon
        .plugin_dirs(&daemon.config_dir)
    {
        if !dir.starts_with(&daemon.config_dir) {
            roots.push(dir);
        }
    }
    roots
}

/// A digest of every file under `roots` (following symlinks), by path and content.
pub fn tree_digest(roots: &[PathBuf]) -> String {
    let mut files = Vec::new();
    for root in roots {
        collect(root, &mut files, 0);
    }
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

fn collect(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) {
    if depth > 8 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        // Hidden entries are editors' swap files and the `..data` directories of
        // ConfigMap mounts, whose files are reached again through the visible symlinks.
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

/// Adds watches for roots not watched yet (plugin directories can change with a reload).
fn watch_new(
    watcher: &mut Option<notify::RecommendedWatcher>,
    watched: &mut Vec<PathBuf>,
    roots: &[PathBuf],
) {
    let Some(w) = watcher.as_mut() else {
        return;
    };
    for root in roots {
        if watched.contains(root) {
            continue;
        }
        match w.watch(root, RecursiveMode::Recursive) {
            Ok(()) => watched.push(root.clone()),
            Err(e) => {
                tracing::warn!(error = %e, dir = %root.display(), "cannot watch; changes there need SIGHUP or POST /v1/reload")
            }
        }
    }
}

pub fn spawn(daemon: Arc<Daemon>) -> WatchHandle {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut watcher = match notify::recommended_watcher(
        move |event: notify::Result<notify::Event>| {
            // Opening and reading files (our own rescans among them) changes nothing.
            if !matches!(&event, Ok(e) if e.kind.is_access()) {
                let _ = tx.send(());
            }
        },
    ) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %e, "cannot watch the configuration; use SIGHUP or POST /v1/reload");
            None
        }
    };
    // Watch before READY: a change made right after must not be missed.
    let mut watched = Vec::new();
    let mut roots = roots(&daemon);
    watch_new(&mut watcher, &mut watched, &roots);
    let mut last = tree_digest(&roots);
    let task = tokio::spawn(async move {
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
            let now = tree_digest(&roots);
            if now == last {
                continue;
            }
            last = now;
            let before = daemon.active();
            let status = daemon.reload_announced().await;
            if status.ok {
                auto_deploy(&daemon, &before);
                roots = self::roots(&daemon);
                watch_new(&mut watcher, &mut watched, &roots);
                last = tree_digest(&roots);
            }
        }
    });
    WatchHandle { task }
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
            match daemon.start_run(
                std::slice::from_ref(name),
                crate::service::runs::AUTO_DEPLOY,
            ) {
                Ok(id) => tracing::info!(workflow = %name, run = %id, "auto-deploy started"),
                Err(e) => {
                    tracing::error!(workflow = %name, error = %e, "auto-deploy failed to start")
                }
            }
        }
    }
}
