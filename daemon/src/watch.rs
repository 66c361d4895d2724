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

/// Most files a digest takes in: a tree larger than this is a mistake, not configuration.
const MAX_FILES: usize = 10_000;
/// Bytes of one file a digest reads; a larger file is represented by its size and
/// modification time (the loader refuses files that large anyway).
const MAX_HASHED_BYTES: u64 = crate::config::MAX_FILE_BYTES;
/// Directory levels a digest descends.
const MAX_DEPTH: usize = 8;

/// A digest of the regular files under `roots`, by path and content. Symlinks are followed
/// only where they lead inside a root (ConfigMap mounts swap `..data` links), so a link to
/// `/` or to a device adds nothing, and no file is read past the size bound.
pub fn tree_digest(roots: &[PathBuf]) -> String {
    let inside: Vec<PathBuf> = roots.iter().filter_map(|r| r.canonicalize().ok()).collect();
    let mut files = Vec::new();
    for root in roots {
        collect(root, &inside, &mut files, 0);
    }
    files.sort();
    let mut h = Sha256::new();
    for path in files {
        h.update(path.to_string_lossy().as_bytes());
        h.update([0]);
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.len() > MAX_HASHED_BYTES {
            h.update(meta.len().to_le_bytes());
            if let Ok(modified) = meta.modified() {
                h.update(format!("{modified:?}").as_bytes());
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            h.update(Sha256::digest(&bytes));
        }
    }
    hex::encode(h.finalize())
}

fn collect(dir: &Path, inside: &[PathBuf], out: &mut Vec<PathBuf>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if out.len() >= MAX_FILES {
            tracing::warn!(dir = %dir.display(), "more than {MAX_FILES} files under the configuration; the rest is not watched");
            return;
        }
        let path = entry.path();
        // Hidden entries are editors' swap files and the `..data` directories of
        // ConfigMap mounts, whose files are reached again through the visible symlinks.
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let Ok(link) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if link.file_type().is_symlink() {
            let leads_inside = path
                .canonicalize()
                .is_ok_and(|target| inside.iter().any(|root| target.starts_with(root)));
            if !leads_inside {
                continue;
            }
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect(&path, inside, out, depth + 1);
        } else if meta.is_file() {
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
                let new_roots = self::roots(&daemon);
                if new_roots != roots {
                    roots = new_roots;
                    watch_new(&mut watcher, &mut watched, &roots);
                    // The next event compares against nothing: a digest taken now would
                    // hide an edit made since `now` was taken.
                    last.clear();
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_out_of_the_tree_fifos_and_huge_files_are_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("config");
        std::fs::create_dir_all(root.join("workflows")).unwrap();
        std::fs::write(root.join("workflows/a.toml"), "x = 1").unwrap();
        std::os::unix::fs::symlink("/", root.join("everything")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("zeros.toml")).unwrap();
        let fifo =
            std::ffi::CString::new(root.join("pipe.toml").to_string_lossy().as_bytes()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path; no memory is shared.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let huge = std::fs::File::create(root.join("huge.bin")).unwrap();
        huge.set_len(1 << 30).unwrap();
        let started = std::time::Instant::now();
        let first = tree_digest(std::slice::from_ref(&root));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        std::fs::write(root.join("workflows/a.toml"), "x = 2").unwrap();
        assert_ne!(tree_digest(std::slice::from_ref(&root)), first);
    }
}
