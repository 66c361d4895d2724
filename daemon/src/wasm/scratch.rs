//! Scratch directories for task calls. Each call gets an empty private directory; once the
//! call is over, the directory is emptied and kept for the next call, of this run or a later
//! one, instead of removed and made again. Making one per call put a new inode through the
//! filesystem's allocator for every task, and after thousands of short tasks ext4 scans past
//! every recently deleted inode to find a free one: starting a task got slower the more tasks
//! had just run.
//!
//! The directories live in `<scratch>/pool/<n>`, one pool per state directory (whose lock
//! keeps other processes out), and stay there when the process exits: the next one takes
//! over those still as they were made and removes the rest.
//!
//! A directory is reused only where nothing a call's programs started can outlive them (their
//! cgroup is killed whole), so nothing can write into it once the next call has it; and only
//! if it is left as it was made: empty, the daemon's, mode 0700, neither immutable nor
//! append-only, no extended attributes but security labels (no ACL a program could have set
//! to expose the next task's files). Else it is removed, and a new one made when needed.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// At most this many empty directories are kept.
const MAX_IDLE: usize = 1024;
/// The pool's directory under the scratch root; never a run id (`r...`), whose scratch
/// directories earlier versions made there and history still prunes.
const POOL: &str = "pool";

/// The scratch directories of one state directory.
pub struct ScratchPool {
    dir: PathBuf,
    /// Directories may be reused (see the module's documentation).
    reuse: bool,
    idle: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
}

impl ScratchPool {
    /// The pool under `root`, taking over the directories a previous process left there.
    /// `reuse`: whether this host kills everything a program started once it has ended
    /// (then those directories are idle: the previous process's programs are gone).
    pub fn open(root: &Path, reuse: bool) -> std::io::Result<Self> {
        let dir = root.join(POOL);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let mut idle = Vec::new();
        let mut next = 0;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let number = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = number {
                next = next.max(n.saturating_add(1));
            }
            if number.is_some() && reuse && idle.len() < MAX_IDLE && as_made(&path) {
                idle.push(path);
            } else {
                remove(&path);
            }
        }
        Ok(ScratchPool {
            dir,
            reuse,
            idle: Mutex::new(idle),
            next: AtomicU64::new(next),
        })
    }

    /// An empty private directory for a call.
    pub fn take(&self) -> std::io::Result<PathBuf> {
        if let Some(dir) = self.idle.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(dir);
        }
        let dir = self
            .dir
            .join(self.next.fetch_add(1, Ordering::Relaxed).to_string());
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(dir)
    }

    /// Takes back a directory once its call is over: kept if it is as it was made, else
    /// removed with what is in it.
    pub fn give_back(&self, dir: PathBuf) {
        if self.reuse
            && as_made(&dir)
            && let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(dir);
            return;
        }
        remove(&dir);
    }
}

/// Empty, the daemon's, mode 0700, neither immutable nor append-only, and without extended
/// attributes but security labels.
fn as_made(dir: &Path) -> bool {
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none());
    empty && unchanged(&path) && only_labels(&path)
}

/// The directory itself is as `take` made it.
fn unchanged(path: &std::ffi::CStr) -> bool {
    // SAFETY: an all-zero statx is a valid value of the plain C struct.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx(2) on a NUL-terminated path, writing into a local of the right type.
    let done = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_TYPE | libc::STATX_MODE | libc::STATX_UID,
            &mut stx,
        )
    };
    // SAFETY: geteuid(2) cannot fail.
    let uid = unsafe { libc::geteuid() };
    let flags = (libc::STATX_ATTR_IMMUTABLE | libc::STATX_ATTR_APPEND) as u64;
    done == 0
        && u32::from(stx.stx_mode) & libc::S_IFMT == libc::S_IFDIR
        && stx.stx_mode & 0o7777 == 0o700
        && stx.stx_uid == uid
        && stx.stx_attributes & stx.stx_attributes_mask & flags == 0
}

/// Extended attributes other than security labels (which SELinux gives every file) make a
/// directory unfit for reuse: ACLs above all.
fn only_labels(path: &std::ffi::CStr) -> bool {
    let mut names = [0u8; 1024];
    // SAFETY: llistxattr(2) with a NUL-terminated path and a buffer of the length given.
    let size = unsafe { libc::llistxattr(path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let Some(names) = usize::try_from(size).ok().and_then(|n| names.get(..n)) else {
        return false;
    };
    names
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .all(|name| name.starts_with(b"security."))
}

fn remove(path: &Path) {
    // Most are empty: one rmdir, not a walk.
    if std::fs::remove_dir(path).is_ok() {
        return;
    }
    let removed = match path.symlink_metadata() {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    if let Err(e) = removed
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a scratch directory");
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_directory_is_reused_only_as_it_was_made_and_the_rest_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let pool = ScratchPool::open(&tmp.path().join("scratch"), true).unwrap();
        let first = pool.take().unwrap();
        assert!(first.starts_with(tmp.path().join("scratch").join(POOL)));
        pool.give_back(first.clone());
        assert_eq!(pool.take().unwrap(), first, "an empty directory is reused");

        std::fs::write(first.join("left-behind"), "secret").unwrap();
        pool.give_back(first.clone());
        assert!(!first.exists(), "a directory with files in it is removed");

        let opened = pool.take().unwrap();
        assert_ne!(opened, first);
        std::fs::set_permissions(&opened, std::fs::Permissions::from_mode(0o755)).unwrap();
        pool.give_back(opened.clone());
        assert!(!opened.exists(), "a directory opened to others is removed");

        let nested = pool.take().unwrap();
        std::fs::create_dir(nested.join("sub")).unwrap();
        pool.give_back(nested.clone());
        assert!(
            !nested.exists(),
            "a directory with a subdirectory is removed"
        );

        let labelled = pool.take().unwrap();
        let path = std::ffi::CString::new(labelled.as_os_str().as_bytes()).unwrap();
        // SAFETY: setxattr(2) with NUL-terminated strings and a live value buffer.
        let set = unsafe {
            libc::setxattr(
                path.as_ptr(),
                c"user.left".as_ptr(),
                b"x".as_ptr().cast(),
                1,
                0,
            )
        };
        if set == 0 {
            pool.give_back(labelled.clone());
            assert!(!labelled.exists(), "a directory with attributes is removed");
        }
    }

    #[test]
    fn the_next_process_takes_over_the_idle_directories_and_removes_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("scratch");
        let pool = ScratchPool::open(&root, true).unwrap();
        let (idle, busy, opened) = (
            pool.take().unwrap(),
            pool.take().unwrap(),
            pool.take().unwrap(),
        );
        pool.give_back(idle.clone());
        // A crash in the middle of calls: files left in one, another opened to others, and
        // something that is no directory of the pool's.
        std::fs::write(busy.join("left-behind"), "secret").unwrap();
        std::fs::set_permissions(&opened, std::fs::Permissions::from_mode(0o755)).unwrap();
        let stray = root.join(POOL).join("notes");
        std::fs::write(&stray, "x").unwrap();
        drop(pool);
        assert!(idle.exists(), "idle directories outlive the process");

        let next = ScratchPool::open(&root, true).unwrap();
        assert!(!busy.exists() && !opened.exists() && !stray.exists());
        assert_eq!(
            next.take().unwrap(),
            idle,
            "the idle directory is taken over"
        );
        let fresh = next.take().unwrap();
        assert!(
            ![&idle, &busy, &opened].contains(&&fresh),
            "a new directory gets a number of its own: {}",
            fresh.display()
        );
        assert!(fresh.is_dir());
    }

    #[test]
    fn without_whole_group_kills_nothing_is_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("scratch");
        let pool = ScratchPool::open(&root, false).unwrap();
        let dir = pool.take().unwrap();
        pool.give_back(dir.clone());
        assert!(!dir.exists());
        let left = pool.take().unwrap();
        drop(pool);
        let next = ScratchPool::open(&root, false).unwrap();
        assert!(!left.exists(), "a process's directories are not taken over");
        drop(next);
    }
}
