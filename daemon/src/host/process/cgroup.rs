//! One cgroup (v2) per program run, so that everything the program starts — including what
//! escapes its process group with `setsid` or a double fork — is killed when it ends. The
//! groups are made under the daemon's own cgroup, which must be writable: the systemd unit
//! delegates it (`Delegate=yes`); root can write it anyway. Without it, programs run without
//! one and only their process group is killed (see docs/SANDBOX.md).

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long a killed group may take to empty before its directory is left to a later sweep.
const EMPTY_WAIT: Duration = Duration::from_secs(2);
/// Between checks whether a killed group is empty.
const EMPTY_POLL: Duration = Duration::from_millis(10);
/// Names of program groups start with this, so a sweep finds what a crash left behind.
const PREFIX: &str = "gantry-program-";

/// Where program groups are made, and how they can be killed.
struct Parent {
    dir: PathBuf,
    /// `cgroup.kill` (Linux 5.14): a group is killed whole, in one step, with nothing in it
    /// able to fork its way past; before it, processes are killed one by one.
    kill_whole: bool,
}

/// The daemon's own cgroup directory, if program groups can be made in it.
fn parent() -> Option<&'static Parent> {
    static PARENT: OnceLock<Option<Parent>> = OnceLock::new();
    PARENT
        .get_or_init(|| {
            let dir = own_cgroup()?;
            sweep(&dir, std::process::id());
            // Probe: make and remove one group.
            let probe = dir.join(format!("{PREFIX}probe-{}", std::process::id()));
            std::fs::create_dir(&probe).ok()?;
            let usable = probe.join("cgroup.procs").exists();
            let kill_whole = probe.join("cgroup.kill").exists();
            let _ = std::fs::remove_dir(&probe);
            usable.then_some(Parent { dir, kill_whole })
        })
        .as_ref()
}

/// Whether programs get their own cgroup on this host.
pub fn available() -> bool {
    parent().is_some()
}

/// Whether a program's cgroup is killed whole when it ends, so that once it has ended
/// nothing it started can still run (and write into its task's directories).
pub fn killed_whole() -> bool {
    parent().is_some_and(|p| p.kill_whole)
}

/// Whether process `pid` is in a program's cgroup (of this daemon or another).
pub fn in_program_cgroup(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|c| {
        c.lines().filter_map(|l| l.strip_prefix("0::")).any(|path| {
            path.rsplit('/')
                .next()
                .is_some_and(|leaf| leaf.starts_with(PREFIX))
        })
    })
}

/// The cgroup v2 directory this process is in.
fn own_cgroup() -> Option<PathBuf> {
    let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // Fields: id parent major:minor root mount-point options... - fstype source options
    let mount = mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        (right.split_whitespace().next()? == "cgroup2")
            .then(|| left.split_whitespace().nth(4))
            .flatten()
    })?;
    let dir = Path::new(mount).join(path.trim_start_matches('/'));
    dir.is_dir().then_some(dir)
}

/// Removes the program groups of daemons that are gone (a crash between kill and removal,
/// or kept empty groups); what still runs in them is killed first. Groups of live processes
/// are theirs to end, except this process's own: it has made none yet, so groups with its
/// pid are a crashed predecessor's that had the same pid (pid 1 in a container).
fn sweep(dir: &Path, own: u32) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = owner
            && (pid == own || !Path::new(&format!("/proc/{pid}")).exists())
        {
            kill_all(&entry.path());
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

/// Kills every process in the group at `dir` (`cgroup.kill`, or one by one on kernels
/// before 5.14).
fn kill_all(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for _ in 0..8 {
        let Ok(pids) = std::fs::read_to_string(dir.join("cgroup.procs")) else {
            return;
        };
        if pids.trim().is_empty() {
            return;
        }
        for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid was read from a
            // program group of gantry's, so only its processes are signalled.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(EMPTY_POLL);
    }
}

/// A program's cgroup; everything in it is killed when this is dropped. It holds no open
/// descriptor: a program started by fork (or without a free block of `fd_slots`) copies
/// and closes every descriptor the daemon holds, so a kept group would tax those starts.
pub struct ProgramGroup {
    dir: PathBuf,
}

/// Empty groups kept for the next programs: making and removing a cgroup for every program
/// costs more than checking that a used one is empty. Programs cannot change a group's
/// settings for the next one: Landlock keeps `/sys/fs/cgroup` read-only to them.
static IDLE: Mutex<Vec<ProgramGroup>> = Mutex::new(Vec::new());
/// At most this many empty groups are kept: enough for a wide workflow's next wave (each
/// is a small kernel object and no descriptor).
const MAX_IDLE: usize = 512;

/// Removes the empty groups kept for reuse; called as gantry exits. What a crash leaves is
/// swept by the next start.
pub fn release_idle() {
    let idle = IDLE.lock().map(|mut idle| std::mem::take(&mut *idle));
    drop(idle);
}

impl ProgramGroup {
    /// An empty group (a kept one, or a new one). `None` when this host gives programs no
    /// cgroup.
    pub fn create() -> std::io::Result<Option<ProgramGroup>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let Some(parent) = parent() else {
            return Ok(None);
        };
        if let Some(kept) = IDLE.lock().ok().and_then(|mut idle| idle.pop()) {
            return Ok(Some(kept));
        }
        let dir = parent.dir.join(format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        Ok(Some(ProgramGroup { dir }))
    }

    /// The group's directory, open for a child to be born in (`CLONE_INTO_CGROUP`).
    pub fn open(&self) -> std::io::Result<OwnedFd> {
        let handle = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(&self.dir)?;
        Ok(handle.into())
    }

    /// The group's `cgroup.procs`, open for a forked child to move itself into before it
    /// executes the program.
    pub fn procs(&self) -> std::io::Result<OwnedFd> {
        let procs = OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        Ok(procs.into())
    }

    /// Whether no process is left in the group (`populated 0`).
    fn is_empty(&self) -> bool {
        // `populated N` and `frozen N`: one read of a small buffer, where reading to a
        // string asks the size first and reads again for the end.
        let mut events = [0u8; 128];
        std::fs::File::open(self.dir.join("cgroup.events"))
            .and_then(|mut file| std::io::Read::read(&mut file, &mut events))
            .is_ok_and(|n| {
                events[..n]
                    .split(|&b| b == b'\n')
                    .any(|line| line == b"populated 0")
            })
    }

    fn kill(&self) {
        kill_all(&self.dir);
    }

    /// Keeps an empty group for the next program, or removes it when enough are kept or
    /// reuse is not safe.
    fn keep_empty(self) {
        // Without Landlock a program can write its group's control files (`pids.max`,
        // `cgroup.freeze`, ...), which the next program would inherit: no reuse then.
        if super::confine::probe().landlock_abi < 1 {
            // Dropped: removed.
            drop(self);
            return;
        }
        let kept = IDLE.lock().map(|mut idle| {
            if idle.len() < MAX_IDLE {
                idle.push(self);
                None
            } else {
                Some(self)
            }
        });
        // Not kept (enough are): removed now, which an empty group allows at once.
        drop(kept);
    }

    /// Ends the group once its program has: kept for the next program if nothing is left in
    /// it (one read). Else what is left is killed and waited for (at most `EMPTY_WAIT`), so
    /// that no killed process is still finishing a system call in the task's directories once
    /// this returns, and the group is removed. False if it did not empty in time.
    pub async fn end_emptied(self) -> bool {
        if self.is_empty() {
            self.keep_empty();
            return true;
        }
        self.kill();
        let deadline = tokio::time::Instant::now() + EMPTY_WAIT;
        while !self.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(EMPTY_POLL).await;
        }
        let emptied = self.is_empty();
        // A killed group is never kept, though empty: the kernel kills a child started by
        // clone3 into a group killed before (seen on 6.18; fork compares the group's kill
        // count with the one it began with). Dropped: removed.
        drop(self);
        emptied
    }
}

/// A group is removed when dropped: what is left in it is killed, and its directory, which
/// the kernel removes once its processes are gone, is removed at once or retried in the
/// background for `EMPTY_WAIT`. Without a runtime, what is left is swept when the next daemon
/// starts.
impl Drop for ProgramGroup {
    fn drop(&mut self) {
        self.kill();
        let dir = std::mem::take(&mut self.dir);
        if std::fs::remove_dir(&dir).is_ok() {
            return;
        }
        let remove = async move {
            let deadline = tokio::time::Instant::now() + EMPTY_WAIT;
            while std::fs::remove_dir(&dir).is_err() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(EMPTY_POLL).await;
            }
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(remove);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_empty_group_is_kept_for_reuse_and_one_with_processes_is_killed_and_removed() {
        if !available() {
            return;
        }
        let group = ProgramGroup::create().unwrap().unwrap();
        let kept = group.dir.clone();
        assert!(group.is_empty());
        assert!(group.end_emptied().await);
        assert!(kept.is_dir(), "an empty group was removed instead of kept");

        let group = ProgramGroup::create().unwrap().unwrap();
        let dir = group.dir.clone();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        assert!(!group.is_empty());
        group.end_emptied().await;
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        let removed = async {
            while dir.exists() {
                tokio::time::sleep(EMPTY_POLL).await;
            }
        };
        tokio::time::timeout(EMPTY_WAIT * 2, removed)
            .await
            .expect("the killed group is removed once empty");
    }

    #[tokio::test]
    async fn a_group_ended_emptied_has_nothing_running_when_the_call_returns() {
        if !available() {
            return;
        }
        let group = ProgramGroup::create().unwrap().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(group.dir.join("cgroup.procs"), child.id().to_string()).unwrap();
        let killed = group.dir.clone();
        assert!(
            group.end_emptied().await,
            "a killed sleep empties its group"
        );
        // Already exited, not merely signalled: a zombie waits to be reaped.
        let status = child.try_wait().unwrap().expect("the program has exited");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );

        // The next program would be killed as it starts in it (clone3).
        assert!(!killed.exists(), "a killed group is removed, not kept");
        let group = ProgramGroup::create().unwrap().unwrap();
        assert_ne!(group.dir, killed);
        assert!(group.end_emptied().await, "an empty group is empty at once");
    }

    #[test]
    fn groups_a_crashed_predecessor_left_under_the_same_pid_are_swept() {
        let Some(parent) = parent() else {
            return;
        };
        // As if the starting process were pid 1 (as in a container), with a group of a
        // previous pid 1 left over; pid 1 is alive, so only the own-pid rule sweeps it.
        let predecessor = 1;
        let left = parent.dir.join(format!("{PREFIX}{predecessor}-0"));
        if let Err(e) = std::fs::create_dir(&left) {
            assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
        }
        let ours = ProgramGroup::create().unwrap().unwrap();
        sweep(&parent.dir, predecessor);
        assert!(
            !left.exists(),
            "a group with the starting process's pid is swept"
        );
        assert!(ours.dir.exists(), "a live process's group is kept");
        drop(ours);
    }
}
