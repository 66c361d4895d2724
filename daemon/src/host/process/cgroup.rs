//! One cgroup (v2) per program run, so that everything the program starts — including what
//! escapes its process group with `setsid` or a double fork — is killed when it ends. The
//! groups are made under the daemon's own cgroup, which must be writable: the systemd unit
//! delegates it (`Delegate=yes`); root can write it anyway. Without it, programs run without
//! one and only their process group is killed (see docs/SANDBOX.md).

use std::fs::OpenOptions;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a killed group may take to empty before its directory is left to a later sweep.
const EMPTY_WAIT: Duration = Duration::from_secs(2);
/// Between checks whether a killed group is empty.
const EMPTY_POLL: Duration = Duration::from_millis(10);
/// Names of program groups start with this, so a sweep finds what a crash left behind.
const PREFIX: &str = "gantry-program-";

/// The daemon's own cgroup directory, if program groups can be made in it.
fn parent() -> Option<&'static Path> {
    static PARENT: OnceLock<Option<PathBuf>> = OnceLock::new();
    PARENT
        .get_or_init(|| {
            let dir = own_cgroup()?;
            sweep(&dir);
            // Probe: make and remove one group.
            let probe = dir.join(format!("{PREFIX}probe-{}", std::process::id()));
            std::fs::create_dir(&probe).ok()?;
            let usable = probe.join("cgroup.procs").exists();
            let _ = std::fs::remove_dir(&probe);
            usable.then_some(dir)
        })
        .as_deref()
}

/// Whether programs get their own cgroup on this host.
pub fn available() -> bool {
    parent().is_some()
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

/// Removes the program groups of daemons that are gone (a crash between kill and removal);
/// what still runs in them is killed first. Groups of live processes are theirs to end.
fn sweep(dir: &Path) {
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
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let group = ProgramGroup { dir: entry.path() };
            group.kill();
            let _ = std::fs::remove_dir(&group.dir);
        }
    }
}

/// A program's cgroup; everything in it is killed when this is dropped.
pub struct ProgramGroup {
    dir: PathBuf,
}

impl ProgramGroup {
    /// A new empty group and its directory, open for the child to be born in
    /// (`CLONE_INTO_CGROUP`). `None` when this host gives programs no cgroup.
    pub fn create() -> std::io::Result<Option<(ProgramGroup, OwnedFd)>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let Some(parent) = parent() else {
            return Ok(None);
        };
        let dir = parent.join(format!(
            "{PREFIX}{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)?;
        let group = ProgramGroup { dir };
        let handle = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&group.dir)?;
        Ok(Some((group, handle.into())))
    }

    /// The group's `cgroup.procs`, open for a forked child to move itself into before it
    /// executes the program.
    pub fn procs(&self) -> std::io::Result<OwnedFd> {
        let procs = OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        Ok(procs.into())
    }

    /// Kills every process in the group (`cgroup.kill`, or one by one on kernels before 5.14).
    fn kill(&self) {
        if std::fs::write(self.dir.join("cgroup.kill"), "1").is_ok() {
            return;
        }
        for _ in 0..8 {
            let Ok(pids) = std::fs::read_to_string(self.dir.join("cgroup.procs")) else {
                return;
            };
            if pids.trim().is_empty() {
                return;
            }
            for pid in pids.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) has no memory-safety preconditions; the pid was read from
                // the group this program run made, so only its processes are signalled.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            std::thread::sleep(EMPTY_POLL);
        }
    }

    /// Kills what is left in the group now, and removes the group once it is empty: at
    /// once when it already is, else in the background, so the task does not wait for the
    /// kernel to finish tearing its processes down.
    pub fn end(mut self) {
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
        // Without a runtime, what is left is swept when the next daemon starts.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(remove);
        }
    }
}

impl Drop for ProgramGroup {
    fn drop(&mut self) {
        if self.dir.as_os_str().is_empty() {
            return;
        }
        self.kill();
        let _ = std::fs::remove_dir(&self.dir);
    }
}
