//! The files and directories Landlock rules name, opened once and kept between program
//! runs: the system's directories, the granted programs and their loaders are the same for
//! every run, and opening each of them again was most of the cost of confining a program.
//! Only those are kept: they are few, and a program started by fork (off x86-64, or when
//! no block of `fd_slots` is free) copies and closes every descriptor the daemon holds.
//!
//! A path whose file was replaced (a package upgrade renames a new binary or `ld.so.cache`
//! into place) has another inode, and is opened again. That is checked at most once every
//! `RECHECK_AFTER`, not for every program: until then a program keeps the old file's rule,
//! which allows nothing the old file did not.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Paths kept open at most (each is one descriptor); grants name a few dozen.
const MAX_KEPT: usize = 512;
/// How long a kept path is trusted to name the same file (or, missing, to be missing).
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// Which file a path named: its device and inode numbers.
pub type Identity = (u64, u64);

/// An opened path (`O_PATH`: it can be named in a rule, not read) and what it was.
#[derive(Clone)]
pub struct Opened {
    pub fd: Arc<OwnedFd>,
    pub is_dir: bool,
    pub identity: Identity,
}

/// What was found at a path, and when.
struct Kept {
    opened: Option<Opened>,
    checked: Instant,
}

fn cache() -> &'static Mutex<HashMap<PathBuf, Kept>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Kept>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// `path`, opened (or as opened before, if it is still the same file); `None` when it
/// does not exist or cannot be opened, so there is nothing to allow.
pub fn open_kept(path: &Path) -> Option<Opened> {
    let now = Instant::now();
    let mut cache = cache()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let kept = cache.get_mut(path);
    if let Some(kept) = &kept
        && now.duration_since(kept.checked) < RECHECK_AFTER
    {
        return kept.opened.clone();
    }
    let identity = identity(path);
    if let Some(kept) = kept
        && kept.opened.as_ref().map(|o| o.identity) == identity
    {
        kept.checked = now;
        return kept.opened.clone();
    }
    let opened = identity.and_then(|_| open(path));
    // Paths of old grants pile up over a long life; start afresh.
    if cache.len() >= MAX_KEPT {
        cache.clear();
    }
    cache.insert(
        path.to_path_buf(),
        Kept {
            opened: opened.clone(),
            checked: now,
        },
    );
    opened
}

/// What is at `path` now; `None` when nothing is.
pub fn identity(path: &Path) -> Option<Identity> {
    std::fs::metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

/// `path`, opened now and not kept.
pub fn open(path: &Path) -> Option<Opened> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .ok()?;
    // The identity is the opened file's, so a file replaced between the two calls is not
    // kept under the old one's.
    let meta = file.metadata().ok()?;
    Some(Opened {
        fd: Arc::new(file.into()),
        is_dir: meta.is_dir(),
        identity: (meta.dev(), meta.ino()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As if `RECHECK_AFTER` had passed since `path` was last checked.
    fn age(path: &Path) {
        if let Some(kept) = cache().lock().unwrap().get_mut(path) {
            kept.checked -= RECHECK_AFTER;
        }
    }

    #[test]
    fn a_replaced_file_is_opened_again_and_an_unchanged_one_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ld.so.cache");
        std::fs::write(&path, "old").unwrap();
        let first = open_kept(&path).unwrap();
        assert!(!first.is_dir);
        age(&path);
        let again = open_kept(&path).unwrap();
        assert!(
            Arc::ptr_eq(&first.fd, &again.fd),
            "reopened an unchanged file"
        );

        let new = tmp.path().join("ld.so.cache.new");
        std::fs::write(&new, "new").unwrap();
        std::fs::rename(&new, &path).unwrap();
        let trusted = open_kept(&path).unwrap();
        assert!(
            Arc::ptr_eq(&first.fd, &trusted.fd),
            "checked again too soon"
        );
        age(&path);
        let replaced = open_kept(&path).unwrap();
        assert!(
            !Arc::ptr_eq(&first.fd, &replaced.fd),
            "kept a replaced file"
        );
        assert_ne!(first.identity, replaced.identity);

        std::fs::remove_file(&path).unwrap();
        age(&path);
        assert!(open_kept(&path).is_none());
        std::fs::write(&path, "back").unwrap();
        age(&path);
        assert!(
            open_kept(&path).is_some(),
            "a file that came back is opened"
        );
        assert!(open_kept(tmp.path()).unwrap().is_dir);
    }
}
