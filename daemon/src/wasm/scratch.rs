//! Scratch directories for task calls. Each call gets an empty private directory; once the
//! call is over, the directory is emptied and kept for the next call instead of removed and
//! made again. Making one per call put a new inode through the filesystem's allocator for
//! every task, and after thousands of short tasks ext4 scans past every recently deleted
//! inode to find a free one: starting a task got slower the more tasks had just run.
//!
//! A directory is reused only if it is left as it was made: empty, mode 0700, no extended
//! attributes (no ACL a program could have set to expose the next task's files); else it is
//! removed, and a new one made when needed.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// At most this many empty directories are kept.
const MAX_IDLE: usize = 1024;

/// The scratch directories of one runner, under `<root>/<run>/`.
pub struct ScratchPool {
    root: PathBuf,
    idle: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
}

impl ScratchPool {
    pub fn new(root: PathBuf) -> Self {
        ScratchPool {
            root,
            idle: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        }
    }

    /// An empty directory for a call of `run`.
    pub fn take(&self, run: &str) -> std::io::Result<PathBuf> {
        if let Some(dir) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(dir);
        }
        let dir = self
            .root
            .join(run)
            .join(self.next.fetch_add(1, Ordering::Relaxed).to_string());
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Takes back a directory once its call is over: kept if it is as it was made, else
    /// removed with what is in it.
    pub fn give_back(&self, dir: PathBuf) {
        if as_made(&dir)
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(dir);
            return;
        }
        remove(&dir);
    }
}

impl Drop for ScratchPool {
    fn drop(&mut self) {
        let idle = match self.idle.get_mut() {
            Ok(idle) => std::mem::take(idle),
            Err(poisoned) => std::mem::take(poisoned.into_inner()),
        };
        for dir in idle {
            remove(&dir);
        }
    }
}

/// Empty, mode 0700 and without extended attributes.
fn as_made(dir: &Path) -> bool {
    let empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none());
    let private = std::fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o7777 == 0o700);
    empty && private && no_xattrs(dir)
}

fn no_xattrs(dir: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: llistxattr(2) with a NUL-terminated path and a zero-sized buffer only returns
    // the size the list of names would take.
    let size = unsafe { libc::llistxattr(path.as_ptr(), std::ptr::null_mut(), 0) };
    size == 0
}

fn remove(dir: &Path) {
    // Most are empty: one rmdir, not a walk.
    if std::fs::remove_dir(dir).is_ok() {
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a scratch directory");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_reused_only_as_it_was_made_and_the_rest_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        // Directories are made private as gantry makes everything (umask 077).
        let private = |dir: &Path| {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap()
        };
        let pool = ScratchPool::new(tmp.path().join("scratch"));
        let first = pool.take("r1").unwrap();
        private(&first);
        assert!(first.starts_with(tmp.path().join("scratch").join("r1")));
        pool.give_back(first.clone());
        assert_eq!(
            pool.take("r2").unwrap(),
            first,
            "an empty directory is reused"
        );

        std::fs::write(first.join("left-behind"), "secret").unwrap();
        pool.give_back(first.clone());
        assert!(!first.exists(), "a directory with files in it is removed");

        let opened = pool.take("r1").unwrap();
        assert_ne!(opened, first);
        std::fs::set_permissions(&opened, std::fs::Permissions::from_mode(0o755)).unwrap();
        pool.give_back(opened.clone());
        assert!(!opened.exists(), "a directory opened to others is removed");

        let kept = pool.take("r1").unwrap();
        private(&kept);
        pool.give_back(kept.clone());
        assert!(kept.exists());
        drop(pool);
        assert!(!kept.exists(), "kept directories go with the pool");
    }
}
