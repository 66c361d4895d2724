//! Confinement of one program run. Everything that allocates or can fail for a reason worth
//! reporting is prepared here, in the daemon; the child (see `spawn`), between its start and
//! exec, only makes system calls on what was prepared:
//!
//! 1. resource limits (`RLIMIT_FSIZE`: no file bigger than the scratch quota; no core dumps;
//!    the open-files limit the daemon was started with, see `descriptors`),
//!    and no descriptor of the daemon's survives exec, close-on-exec or not;
//! 2. it runs in its own cgroup (see `cgroup`), so nothing it starts survives it: born in
//!    it, or, when forked, moving itself into it;
//! 3. without `exec_network`, it joins an empty network namespace (inside a user namespace
//!    when the daemon is not root), made once: no interface but a loopback that is down;
//! 4. `PR_SET_NO_NEW_PRIVS`: no setuid, no file capabilities;
//! 5. a Landlock domain (see `rulesets`): it reads only the system's shared libraries and certificates, its
//!    granted programs and the task's directories, writes only the task's scratch and
//!    workspace, executes only its granted programs (and their loaders), cannot connect or
//!    bind TCP without `exec_network`, and cannot signal or ptrace anything outside it.
//!
//! A kernel without Landlock or namespaces gets what it supports; `probe` says what that is,
//! and the daemon logs it once.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Arc, OnceLock};

use super::cgroup::ProgramGroup;
use super::grant::ProgramGrant;
use super::rulesets;
use crate::host::TaskDirs;

/// The largest file a program may write, unless the scratch quota is smaller.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 1 << 30;

/// What this kernel lets gantry confine programs with.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Support {
    /// The kernel's Landlock ABI version; 0 without Landlock.
    pub landlock_abi: i32,
    /// Programs can be given their own network namespace.
    pub network_namespaces: bool,
    /// Programs get their own cgroup, killed as a whole.
    pub cgroups: bool,
    /// That cgroup is killed in one step (`cgroup.kill`), so once a program has ended,
    /// nothing it started still runs.
    pub cgroups_killed_whole: bool,
}

/// What this host supports, found (and logged) once.
pub fn probe() -> Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    *SUPPORT.get_or_init(|| {
        let support = Support {
            landlock_abi: landlock_abi(),
            network_namespaces: shared_net().is_some(),
            cgroups: super::cgroup::available(),
            cgroups_killed_whole: super::cgroup::killed_whole(),
        };
        match support.describe() {
            (true, line) => tracing::info!("{line}"),
            (false, line) => tracing::warn!("{line}"),
        }
        // Before programs start, while the daemon holds few descriptors.
        #[cfg(target_arch = "x86_64")]
        super::fd_slots::init();
        support
    })
}

impl Support {
    /// One line for the log: what is enforced, and what is not and why it matters.
    pub fn describe(&self) -> (bool, String) {
        let mut missing = Vec::new();
        if self.landlock_abi < 1 {
            missing.push("Landlock (programs can read and run any file the daemon's user can)");
        } else if self.landlock_abi < 4 {
            missing.push("Landlock network rules (ABI 4)");
        } else if self.landlock_abi < 6 {
            missing.push("Landlock signal scoping (ABI 6)");
        }
        if !self.network_namespaces {
            missing.push("network namespaces (programs without exec_network keep UDP)");
        }
        if !self.cgroups {
            missing.push(
                "a writable cgroup (a program's setsid children can outlive it; run with Delegate=yes)",
            );
        } else if !self.cgroups_killed_whole {
            missing.push(
                "cgroup.kill (Linux 5.14: a program's processes are killed one by one, and scratch directories are not reused)",
            );
        }
        if missing.is_empty() {
            (
                true,
                format!(
                    "programs are confined: Landlock ABI {}, network namespaces, a cgroup each",
                    self.landlock_abi
                ),
            )
        } else {
            (
                false,
                format!(
                    "program confinement is partial on this host; missing: {}",
                    missing.join("; ")
                ),
            )
        }
    }
}

fn landlock_abi() -> i32 {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) only returns
    // the ABI version (or an error); it reads no memory.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    i32::try_from(version).unwrap_or(0).max(0)
}

/// One empty network namespace (inside a user namespace when the daemon is not root), made
/// once and joined by every program without `exec_network`: joining is one system call,
/// where making and tearing down a namespace for each program would cost milliseconds.
/// Programs in it cannot reach each other: its loopback is down, and Landlock keeps each
/// from the others' abstract sockets.
struct SharedNet {
    user: Option<OwnedFd>,
    net: OwnedFd,
}

fn shared_net() -> Option<&'static SharedNet> {
    static NET: OnceLock<Option<SharedNet>> = OnceLock::new();
    NET.get_or_init(make_shared_net).as_ref()
}

/// A child enters new namespaces and waits; the daemon keeps them open by their files in
/// `/proc/PID/ns` and lets the child go.
fn make_shared_net() -> Option<SharedNet> {
    // SAFETY: geteuid/getegid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let maps = (uid != 0).then(|| {
        (
            format!("{uid} {uid} 1").into_bytes(),
            format!("{gid} {gid} 1").into_bytes(),
        )
    });
    let mut ends = [0; 2];
    // SAFETY: pipe2 fills the two descriptors of the array it is given.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return None;
    }
    let (read_end, write_end) = (ends[0], ends[1]);
    // SAFETY: the forked child makes only async-signal-safe system calls (unshare, open,
    // write, close, pause) on memory prepared before the fork, and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let entered = enter_new(maps.as_ref()).is_ok();
        // SAFETY: as above.
        unsafe {
            let byte: &[u8; 1] = if entered { b"1" } else { b"0" };
            libc::write(write_end, byte.as_ptr().cast(), 1);
            loop {
                libc::pause();
            }
        }
    }
    // SAFETY: closing the daemon's copy of the child's end.
    unsafe { libc::close(write_end) };
    let mut byte = [0u8; 1];
    // SAFETY: read(2) into a one-byte buffer, then close(2) of our end.
    let read = unsafe {
        let n = if pid > 0 {
            libc::read(read_end, byte.as_mut_ptr().cast(), 1)
        } else {
            -1
        };
        libc::close(read_end);
        n
    };
    let open = |kind: &str| {
        std::fs::File::open(format!("/proc/{pid}/ns/{kind}"))
            .ok()
            .map(OwnedFd::from)
    };
    let shared = if read == 1 && byte[0] == b'1' {
        match (open("net"), maps.is_some()) {
            (Some(net), true) => open("user").map(|user| SharedNet {
                user: Some(user),
                net,
            }),
            (Some(net), false) => Some(SharedNet { user: None, net }),
            (None, _) => None,
        }
    } else {
        None
    };
    if pid > 0 {
        // SAFETY: the child is ours; kill and reap it.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
        }
    }
    shared
}

/// Enters a new network namespace, in a new user namespace mapping the daemon's ids to
/// themselves when `maps` are given. Runs in a forked child: system calls only.
fn enter_new(maps: Option<&(Vec<u8>, Vec<u8>)>) -> std::io::Result<()> {
    let flags = match maps {
        Some(_) => libc::CLONE_NEWUSER | libc::CLONE_NEWNET,
        None => libc::CLONE_NEWNET,
    };
    // SAFETY: unshare(2) takes flags only.
    if unsafe { libc::unshare(flags) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if let Some((uid_map, gid_map)) = maps {
        write_proc(c"/proc/self/setgroups", b"deny")?;
        write_proc(c"/proc/self/uid_map", uid_map)?;
        write_proc(c"/proc/self/gid_map", gid_map)?;
    }
    Ok(())
}

impl SharedNet {
    /// Joins the namespaces. Runs in the child between fork and exec: system calls only.
    fn join(&self) -> Result<(), Failed> {
        for (fd, kind) in [
            (self.user.as_ref(), libc::CLONE_NEWUSER),
            (Some(&self.net), libc::CLONE_NEWNET),
        ] {
            let Some(fd) = fd else { continue };
            // SAFETY: setns(2) on a namespace descriptor opened before the fork.
            if unsafe { libc::setns(fd.as_raw_fd(), kind) } != 0 {
                return Err(Failed::last(Step::Network));
            }
        }
        Ok(())
    }
}

fn write_proc(path: &std::ffi::CStr, data: &[u8]) -> std::io::Result<()> {
    // SAFETY: open/write/close on a NUL-terminated path and a live buffer; no allocation.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, data.as_ptr().cast(), data.len());
        libc::close(fd);
        if usize::try_from(written).ok() != Some(data.len()) {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One program run's confinement, prepared in the daemon.
pub struct Confinement {
    /// Possibly shared with other programs (see `rulesets`).
    ruleset: Option<Arc<OwnedFd>>,
    /// The namespace to join, unless the grant gives the daemon's network.
    network: Option<&'static SharedNet>,
    /// The program's cgroup, and its directory, open to start the child in.
    cgroup: Option<(ProgramGroup, OwnedFd)>,
    /// A forked child moves itself into the cgroup through this (`cgroup.procs`).
    procs: Option<OwnedFd>,
    max_file_bytes: u64,
    /// The soft open-files limit the daemon was started with, when it raised its own.
    open_files: Option<libc::rlim_t>,
}

/// Why a program could not be confined; the program is not started.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("preparing the program's Landlock rules: {0}")]
    Landlock(#[from] landlock::RulesetError),
    #[error("adding a Landlock rule for the program: {0}")]
    LandlockRule(std::io::Error),
    #[error("creating the program's cgroup: {0}")]
    Cgroup(std::io::Error),
    #[error(
        "this host can keep programs off the network neither with a network namespace nor with Landlock ABI 4; grant exec_network = true to run them with the daemon's network"
    )]
    NoNetworkIsolation,
}

/// A step the child takes between being made and executing the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    Signals = 1,
    Stdio,
    WorkingDirectory,
    ProcessGroup,
    Limits,
    Cgroup,
    Network,
    NoNewPrivileges,
    Landlock,
    Exec,
    Files,
}

impl Step {
    pub(super) const ALL: [Step; 11] = [
        Step::Signals,
        Step::Stdio,
        Step::WorkingDirectory,
        Step::ProcessGroup,
        Step::Limits,
        Step::Cgroup,
        Step::Network,
        Step::NoNewPrivileges,
        Step::Landlock,
        Step::Exec,
        Step::Files,
    ];
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Signals => "resetting signal handling",
            Step::Stdio => "connecting standard input and output",
            Step::WorkingDirectory => "entering the working directory",
            Step::ProcessGroup => "starting a process group",
            Step::Limits => "setting resource limits",
            Step::Cgroup => "joining the program's cgroup",
            Step::Network => "joining the empty network namespace",
            Step::NoNewPrivileges => "setting no_new_privs",
            Step::Landlock => "applying the Landlock rules",
            Step::Exec => "executing the program",
            Step::Files => "taking a descriptor table of its own",
        })
    }
}

/// A step the child failed, and the error number it failed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed {
    pub step: Step,
    pub errno: i32,
}

impl Failed {
    /// `step` failed with the calling thread's `errno`.
    pub fn last(step: Step) -> Self {
        // SAFETY: __errno_location returns this thread's errno slot, always valid.
        let errno = unsafe { *libc::__errno_location() };
        Failed { step, errno }
    }

    /// One word the child can store where the parent reads it; never 0.
    pub fn pack(self) -> u64 {
        (u64::from(self.step as u8) << 32) | u64::from(self.errno.unsigned_abs())
    }

    pub fn unpack(word: u64) -> Self {
        let index = usize::try_from(word >> 32).unwrap_or(0);
        Failed {
            step: Step::ALL
                .get(index.wrapping_sub(1))
                .copied()
                .unwrap_or(Step::Exec),
            errno: i32::try_from(word & u64::from(u32::MAX)).unwrap_or(libc::EINVAL),
        }
    }
}

impl Confinement {
    pub fn prepare(
        grant: &ProgramGrant,
        dirs: &TaskDirs,
        max_file_bytes: u64,
    ) -> Result<Self, ConfineError> {
        let support = probe();
        let network = match (grant.network, shared_net()) {
            (true, _) => None,
            (false, Some(shared)) => Some(shared),
            // Landlock alone refuses TCP; UDP stays open (SANDBOX.md says so).
            (false, None) if support.landlock_abi >= 4 => None,
            (false, None) => return Err(ConfineError::NoNetworkIsolation),
        };
        Ok(Confinement {
            ruleset: rulesets::for_program(grant, dirs)?,
            network,
            cgroup: match ProgramGroup::create().map_err(ConfineError::Cgroup)? {
                Some(group) => {
                    let dir = group.open().map_err(ConfineError::Cgroup)?;
                    Some((group, dir))
                }
                None => None,
            },
            procs: None,
            max_file_bytes,
            open_files: super::descriptors::for_programs(),
        })
    }

    /// The cgroup directory the child is to be born in.
    pub fn cgroup_dir(&self) -> Option<BorrowedFd<'_>> {
        self.cgroup.as_ref().map(|(_, dir)| dir.as_fd())
    }

    /// For a child made by fork, which must move itself into its cgroup: opens the group's
    /// `cgroup.procs` for it.
    pub fn for_fork(mut self) -> Result<Self, ConfineError> {
        if let Some((group, _)) = &self.cgroup {
            self.procs = Some(group.procs().map_err(ConfineError::Cgroup)?);
        }
        Ok(self)
    }

    /// The program's cgroup, to be ended once the program has; what is left of the
    /// confinement is of no more use.
    pub fn take_group(&mut self) -> Option<ProgramGroup> {
        self.cgroup.take().map(|(group, _)| group)
    }

    /// The Landlock ruleset, for the child to apply: the parent may hand it over under
    /// another number (see `enter`).
    pub fn ruleset_fd(&self) -> Option<BorrowedFd<'_>> {
        self.ruleset.as_deref().map(AsFd::as_fd)
    }

    /// The highest descriptor the child uses as the daemon holds it (the shared network
    /// namespace's), so a child taking a copy of only the lowest numbers knows to include it.
    pub fn highest_kept_fd(&self) -> Option<RawFd> {
        let network = self.network?;
        network
            .user
            .iter()
            .chain(std::iter::once(&network.net))
            .map(AsRawFd::as_raw_fd)
            .max()
    }

    /// The steps the child takes on itself before it executes the program, applying the
    /// ruleset at `ruleset` (`ruleset_fd`, or where the parent put it). It runs between
    /// fork (or clone) and exec: system calls on prepared values only, no allocation.
    pub fn enter(&self, ruleset: Option<RawFd>) -> Result<(), Failed> {
        set_limit(libc::RLIMIT_FSIZE, self.max_file_bytes)?;
        set_limit(libc::RLIMIT_CORE, 0)?;
        if let Some(soft) = self.open_files {
            set_soft_limit(libc::RLIMIT_NOFILE, soft)?;
        }
        // Whatever the daemon was given without close-on-exec (by whoever started it) is
        // not passed on: the program gets its standard input and outputs only. Before
        // Linux 5.11 this cannot be asked for, and such descriptors stay open.
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        // SAFETY: close_range(2) with integer arguments, marking descriptors 3 and up.
        unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                CLOSE_RANGE_CLOEXEC,
            );
        }
        if let Some(procs) = &self.procs {
            // SAFETY: write(2) of a static buffer to a descriptor opened before the fork.
            let written = unsafe { libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) };
            if written != 1 {
                return Err(Failed::last(Step::Cgroup));
            }
        }
        if let Some(network) = self.network {
            network.join()?;
        }
        // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes integers only.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            return Err(Failed::last(Step::NoNewPrivileges));
        }
        if let Some(ruleset) = ruleset {
            // SAFETY: landlock_restrict_self(2) on the ruleset descriptor made before the
            // child, with no flags.
            let done = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) };
            if done != 0 {
                return Err(Failed::last(Step::Landlock));
            }
        }
        Ok(())
    }
}

/// Lowers only the soft limit, under whatever hard limit holds now (which may have been
/// lowered since the value was read).
fn set_soft_limit(resource: libc::__rlimit_resource_t, soft: u64) -> Result<(), Failed> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the struct passed by reference.
    if unsafe { libc::getrlimit(resource, &mut limit) } != 0 {
        return Err(Failed::last(Step::Limits));
    }
    limit.rlim_cur = soft.min(limit.rlim_max);
    // SAFETY: setrlimit(2) reads the struct passed by reference.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(Failed::last(Step::Limits));
    }
    Ok(())
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> Result<(), Failed> {
    let limit = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit(2) reads the struct passed by reference.
    if unsafe { libc::setrlimit(resource, &limit) } != 0 {
        return Err(Failed::last(Step::Limits));
    }
    Ok(())
}
