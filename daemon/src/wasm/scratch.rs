//! Scratch directories for task calls. Each call gets an empty private directory; once the
//! call is over, the directory is emptied and kept for the next call, of this run or a later
//! one, instead of removed and made again. Making one per call put a new inode through the
//! filesystem's allocator for every task, and after thousands of short tasks ext4 scans past
//! every recently deleted inode to find a free one: starting a task got slower the more tasks
//! had just run.
//!
//! The directories live in `<scratch>/pool/<n>`, one pool per state directory (whose lock
//! keeps other processes out). A process that ends with none of them in use marks the pool
//! closed (`close`), and the next one takes over the directories still as they were made.
//! Without that mark (a crash, a kill, a call still running) nothing is taken over: a
//! program the last process started may have outlived it, and it could read or plant files
//! in a directory handed to a later task. The whole pool is then moved aside at once and
//! removed in the background, and a new one begun.
//!
//! A directory is reused only where nothing a call's programs started can outlive them (their
//! cgroup is killed whole), so nothing can write into it once the next call has it; and only
//! if it is left as it was made: empty, the daemon's, mode 0700, with the inode flags and
//! project of the pool it was made in (no encryption policy, case folding or other flag a
//! program set on it), no extended attributes but security labels (no ACL a program could
//! have set to expose the next task's files). Else it is removed, and a new one made when
//! needed.

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// At most this many empty directories are kept.
const MAX_IDLE: usize = 1024;
/// The pool's directory under the scratch root; never a run id (`r...`), whose scratch
/// directories earlier versions made there and history still prunes.
const POOL: &str = "pool";
/// A pool set aside to be removed is renamed to this prefix and a number.
const STALE: &str = "stale-";
/// In the pool: its last process ended with no directory in use (see `close`).
const CLOSED: &str = ".closed";

/// The scratch directories of one state directory.
pub struct ScratchPool {
    dir: PathBuf,
    /// Directories may be reused (see the module's documentation).
    reuse: bool,
    /// What a directory made in the pool has: the pool's own inode flags and project.
    made_like: Attrs,
    /// One lock, so that `close` cannot mark the pool while a `take` hands a directory out.
    state: Mutex<State>,
    next: AtomicU64,
}

#[derive(Default)]
struct State {
    idle: Vec<PathBuf>,
    /// Directories taken and not given back.
    in_use: usize,
    /// `close` has marked the pool; a call after it takes the mark back first.
    marked: bool,
}

impl ScratchPool {
    /// The pool under `root`: the directories of a previous process that closed it are
    /// taken over, any other pool is set aside; what was set aside is removed in the
    /// background. Open it while holding the state directory's lock. `reuse`: whether this
    /// host kills everything a program started once it has ended.
    pub fn open(root: &Path, reuse: bool) -> std::io::Result<Self> {
        let dir = root.join(POOL);
        make_private(root).map_err(|e| named(e, root))?;
        let closed = std::fs::remove_file(dir.join(CLOSED)).is_ok();
        if !(closed && reuse) {
            set_aside(root, &dir)?;
        }
        sweep_stale(root);
        make_private(&dir).map_err(|e| named(e, &dir))?;
        let made_like = Attrs::of(&dir);
        let mut idle = Vec::new();
        let mut next = 0;
        for entry in std::fs::read_dir(&dir).map_err(|e| named(e, &dir))? {
            let path = entry.map_err(|e| named(e, &dir))?.path();
            let number = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(n) = number {
                next = next.max(n.saturating_add(1));
            }
            if number.is_some() && idle.len() < MAX_IDLE && as_made(&path, made_like) {
                idle.push(path);
            } else {
                remove(&path);
            }
        }
        Ok(ScratchPool {
            dir,
            reuse,
            made_like,
            state: Mutex::new(State {
                idle,
                ..State::default()
            }),
            next: AtomicU64::new(next),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty private directory for a call.
    pub fn take(&self) -> std::io::Result<PathBuf> {
        let kept = {
            let mut state = self.state();
            if state.marked {
                let mark = self.dir.join(CLOSED);
                match std::fs::remove_file(&mark) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(named(e, &mark));
                    }
                    _ => state.marked = false,
                }
            }
            state.in_use += 1;
            state.idle.pop()
        };
        if let Some(dir) = kept {
            return Ok(dir);
        }
        let dir = self
            .dir
            .join(self.next.fetch_add(1, Ordering::Relaxed).to_string());
        let made = match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            // The pool itself was removed under the running process: made again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => make_private(&self.dir)
                .and_then(|()| std::fs::DirBuilder::new().mode(0o700).create(&dir)),
            made => made,
        };
        match made {
            Ok(()) => Ok(dir),
            Err(e) => {
                self.state().in_use -= 1;
                Err(named(e, &dir))
            }
        }
    }

    /// Takes back a directory once its call is over: kept if it is as it was made, else
    /// removed with what is in it.
    pub fn give_back(&self, dir: PathBuf) {
        let reusable = self.reuse && as_made(&dir, self.made_like);
        self.put_back(dir, reusable);
    }

    /// Takes back the directory of a call stopped mid-way (timed out, cancelled): a file
    /// operation its plugin began may still run on a blocking thread and write to it after
    /// any check, so it is removed, never handed to another call.
    pub fn discard(&self, dir: PathBuf) {
        self.put_back(dir, false);
    }

    fn put_back(&self, dir: PathBuf, reusable: bool) {
        let mut state = self.state();
        state.in_use = state.in_use.saturating_sub(1);
        if reusable && state.idle.len() < MAX_IDLE {
            state.idle.push(dir);
            return;
        }
        drop(state);
        remove(&dir);
    }

    /// Marks the pool for the next process to take over, once every call is over and its
    /// programs with it; with a directory still in use (or no reuse) it is left unmarked,
    /// and the next process begins a new pool.
    pub fn close(&self) {
        let mut state = self.state();
        if !self.reuse || state.in_use != 0 {
            return;
        }
        let mark = self.dir.join(CLOSED);
        match std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&mark)
        {
            Ok(_) => state.marked = true,
            Err(e) => tracing::warn!(
                path = %mark.display(),
                error = %e,
                "cannot mark the scratch pool closed; the next start begins a new one"
            ),
        }
    }
}

fn named(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn make_private(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Renames the pool out of the way, in one step however much is in it, to a name of its own.
fn set_aside(root: &Path, pool: &Path) -> std::io::Result<()> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for attempt in 0..16u32 {
        let aside = root.join(format!("{STALE}{nanos}-{attempt}"));
        match std::fs::rename(pool, &aside) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {}
            Err(e) => return Err(named(e, &aside)),
        }
    }
    Err(named(
        std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        &root.join(format!("{STALE}{nanos}-*")),
    ))
}

/// Removes, on a thread of its own, every pool set aside: this start's, and what earlier
/// ones left unfinished when their process ended.
fn sweep_stale(root: &Path) {
    let stale: Vec<PathBuf> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().as_bytes().starts_with(STALE.as_bytes()))
        .map(|e| e.path())
        .collect();
    if stale.is_empty() {
        return;
    }
    let removal = std::thread::Builder::new()
        .name("gantry-scratch-sweep".into())
        .spawn(move || stale.iter().for_each(|path| remove(path)));
    if let Err(e) = removal {
        tracing::warn!(path = %root.display(), error = %e, "cannot start removing old scratch directories; they stay until the next start");
    }
}

/// The inode flags (`FS_IOC_GETFLAGS`) and project id (`FS_IOC_FSGETXATTR`) of a
/// directory, where its filesystem has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attrs {
    flags: Option<u32>,
    project: Option<u32>,
}

/// Flags a filesystem sets on its own as a directory grows or by how it stores it
/// (`FS_INDEX_FL`, `FS_EXTENT_FL`, `FS_INLINE_DATA_FL`), not by anyone's choice.
const LAYOUT_FLAGS: u32 = 0x0000_1000 | 0x0008_0000 | 0x1000_0000;
/// `FS_IOC_FSGETXATTR`, reading a `FsXattr`.
const FS_IOC_FSGETXATTR: libc::Ioctl = 0x801c_581f;

#[repr(C)]
#[derive(Default)]
struct FsXattr {
    xflags: u32,
    extsize: u32,
    nextents: u32,
    projid: u32,
    cowextsize: u32,
    pad: [u8; 8],
}

impl Attrs {
    fn of(dir: &Path) -> Attrs {
        let Ok(file) = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(dir)
        else {
            return Attrs {
                flags: None,
                project: None,
            };
        };
        let fd = file.as_raw_fd();
        // The request is declared with a long, but the kernel reads and writes an int.
        let mut flags: libc::c_int = 0;
        // SAFETY: FS_IOC_GETFLAGS writes an int into the local passed.
        let got_flags = unsafe { libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) } == 0;
        let mut fsx = FsXattr::default();
        // SAFETY: FS_IOC_FSGETXATTR writes a struct fsxattr, which FsXattr lays out.
        let got_fsx = unsafe { libc::ioctl(fd, FS_IOC_FSGETXATTR, &mut fsx) } == 0;
        Attrs {
            flags: got_flags.then_some(flags as u32 & !LAYOUT_FLAGS),
            project: got_fsx.then_some(fsx.projid),
        }
    }
}

/// Empty, the daemon's, mode 0700, with the flags and project of a directory made in the
/// pool, and without extended attributes but security labels.
fn as_made(dir: &Path, made_like: Attrs) -> bool {
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    let empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none());
    empty && unchanged(&path) && only_labels(&path) && Attrs::of(dir) == made_like
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
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path).or_else(|e| {
            // A program may have left a directory it cannot be walked into (mode 000).
            if e.kind() != std::io::ErrorKind::PermissionDenied {
                return Err(e);
            }
            open_up(path);
            std::fs::remove_dir_all(path)
        }),
        Ok(_) => std::fs::remove_file(path),
        Err(e) => Err(e),
    };
    if let Err(e) = removed
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a scratch directory");
    }
}

/// Gives the owner full access to `dir` and every directory under it, so it can be removed.
/// Each directory is opened without following a symbolic link and changed through that
/// descriptor: a program still running could swap a directory for a link to elsewhere.
fn open_up(dir: &Path) {
    let Some(top) = open_path_dir(libc::AT_FDCWD, dir.as_os_str().as_bytes()) else {
        return;
    };
    let mut pending = vec![top];
    while let Some(fd) = pending.pop() {
        let pinned = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let _ = std::fs::set_permissions(&pinned, std::fs::Permissions::from_mode(0o700));
        for entry in std::fs::read_dir(&pinned).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && let Some(sub) = open_path_dir(fd.as_raw_fd(), entry.file_name().as_bytes())
            {
                pending.push(sub);
            }
        }
    }
}

/// `name` under `at`, opened as a path only (no permission on it needed), if it is a
/// directory and not a symbolic link.
fn open_path_dir(at: libc::c_int, name: &[u8]) -> Option<std::os::fd::OwnedFd> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: openat(2) with a NUL-terminated name; the descriptor returned is owned here.
    let fd = unsafe {
        libc::openat(
            at,
            name.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    // SAFETY: a descriptor openat(2) just returned, owned by nothing else.
    (fd >= 0).then(|| unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
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
        pool.discard(first.clone());
        assert!(!first.exists(), "a stopped call's directory is removed");
        let first = pool.take().unwrap();

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
    fn a_closed_pool_is_taken_over_as_made_and_the_rest_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("scratch");
        let pool = ScratchPool::open(&root, true).unwrap();
        let (idle, dirty, opened) = (
            pool.take().unwrap(),
            pool.take().unwrap(),
            pool.take().unwrap(),
        );
        for dir in [&idle, &dirty, &opened] {
            pool.give_back(dir.clone());
        }
        // Changed after their calls were over, as only something outliving them could.
        std::fs::write(dirty.join("left-behind"), "secret").unwrap();
        std::fs::set_permissions(&opened, std::fs::Permissions::from_mode(0o755)).unwrap();
        let stray = root.join(POOL).join("notes");
        std::fs::write(&stray, "x").unwrap();
        pool.close();
        drop(pool);
        assert!(idle.exists(), "idle directories outlive the process");

        let next = ScratchPool::open(&root, true).unwrap();
        assert!(!dirty.exists() && !opened.exists() && !stray.exists());
        assert!(!root.join(POOL).join(CLOSED).exists(), "the mark is taken");
        assert_eq!(
            next.take().unwrap(),
            idle,
            "the idle directory is taken over"
        );
        let fresh = next.take().unwrap();
        assert!(
            ![&idle, &dirty, &opened].contains(&&fresh),
            "a new directory gets a number of its own: {}",
            fresh.display()
        );
        assert!(fresh.is_dir());
    }

    #[test]
    fn a_pool_not_closed_is_set_aside_whole_and_a_new_one_begun() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("scratch");
        let pool = ScratchPool::open(&root, true).unwrap();
        let (idle, busy) = (pool.take().unwrap(), pool.take().unwrap());
        pool.give_back(idle.clone());
        std::fs::create_dir(busy.join("locked")).unwrap();
        std::fs::write(busy.join("locked/file"), "x").unwrap();
        std::fs::set_permissions(busy.join("locked"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        // A call still in flight: no mark, as after a crash or a kill.
        pool.close();
        assert!(!root.join(POOL).join(CLOSED).exists());
        drop(pool);

        let next = ScratchPool::open(&root, true).unwrap();
        assert!(!idle.exists() && !busy.exists(), "nothing is taken over");
        let fresh = next.take().unwrap();
        assert!(fresh.starts_with(root.join(POOL)) && fresh.is_dir());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let stale = || {
            std::fs::read_dir(&root)
                .unwrap()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(STALE))
        };
        while stale() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(
            !stale(),
            "the old pool is removed, locked directory and all"
        );

        // A call taken after the pool was marked takes the mark back.
        next.give_back(fresh);
        next.close();
        assert!(root.join(POOL).join(CLOSED).exists());
        let again = next.take().unwrap();
        assert!(!root.join(POOL).join(CLOSED).exists());
        next.give_back(again);
    }

    #[test]
    fn a_directory_with_an_inode_flag_a_program_set_is_not_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let pool = ScratchPool::open(&tmp.path().join("scratch"), true).unwrap();
        let dir = pool.take().unwrap();
        let file = std::fs::File::open(&dir).unwrap();
        let mut flags: libc::c_int = 0;
        // SAFETY: FS_IOC_GETFLAGS/SETFLAGS read and write an int through the local passed.
        let supported =
            unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } == 0 && {
                // FS_NODUMP_FL, which an owner may set without privilege.
                flags |= 0x0000_0040;
                unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) == 0 }
            };
        drop(file);
        pool.give_back(dir.clone());
        assert_eq!(
            dir.exists(),
            !supported,
            "a flagged directory is removed where the filesystem has flags"
        );
    }

    #[test]
    fn opening_up_a_tree_to_remove_it_follows_no_link_out_of_it() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o750)).unwrap();
        let tree = tmp.path().join("tree");
        std::fs::create_dir_all(tree.join("locked/deeper")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("locked/link")).unwrap();
        std::fs::set_permissions(
            tree.join("locked/deeper"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        std::fs::set_permissions(tree.join("locked"), std::fs::Permissions::from_mode(0o000))
            .unwrap();
        open_up(&tree);
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&tree.join("locked")), 0o700);
        assert_eq!(mode(&tree.join("locked/deeper")), 0o700);
        assert_eq!(mode(&outside), 0o750, "a link's target is left alone");
        remove(&tree);
        assert!(!tree.exists() && outside.exists());
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
