//! Landlock rulesets: what a program may read, write and execute (see `confine`), built for
//! a grant and a task's directories, and kept between program runs.
//!
//! A run starts the same programs for its tasks again and again, and building a ruleset
//! costs a system call per rule, a few dozen per program. Applying a ruleset does not use it
//! up (each program's domain is made from it when the program restricts itself), so one
//! ruleset serves every program of the same grant and directories, for as long as it names
//! what a new one would:
//! - the task's directories are checked for every program: each path must still name the
//!   directory the kept ruleset has its rule on (a directory replaced since would otherwise
//!   be refused to the program);
//! - the system paths and granted programs are looked up through `opened`, as for a new
//!   ruleset, which notices a replaced file within `opened`'s recheck interval.
//!
//! No program can add a rule to a ruleset that other programs use: the kernel makes every
//! ruleset descriptor close-on-exec, and so is the copy a child is handed it in
//! (`fd_slots`). Before exec, the child is outside every Landlock domain, which keeps
//! confined programs from reaching into it.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use landlock::{ABI, Access, AccessFs, AccessNet, BitFlags, Ruleset, RulesetAttr, Scope};

use super::confine::{ConfineError, probe};
use super::grant::ProgramGrant;
use super::opened::{self, Identity, Opened};
use crate::host::TaskDirs;

/// The Landlock ABI whose rights are asked for (files, TCP, scopes); an older kernel gets
/// the subset it knows.
const LANDLOCK_ABI: ABI = ABI::V6;

/// Read-only system files a program may need to start and do ordinary work: shared
/// libraries, the loader cache, certificates, time zones, name resolution, user names.
const SYSTEM_READ: &[&str] = &[
    "/lib",
    "/lib32",
    "/lib64",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/share/zoneinfo",
    "/usr/share/ca-certificates",
    "/etc/ssl",
    "/etc/pki",
    "/etc/ca-certificates",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/passwd",
    "/etc/group",
    // Runtimes read their own process's state and the machine's CPU and memory layout;
    // other processes' memory and environment stay out of reach (Landlock refuses ptrace
    // access to processes outside the domain).
    "/proc",
    "/sys/devices/system/cpu",
    "/sys/fs/cgroup",
    "/sys/kernel/mm/transparent_hugepage",
];

/// Device files programs may read and write.
const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];

/// Rulesets kept at most (each is one descriptor, and its rules keep the files they are on
/// from being freed). A run's programs use about one per grant and scratch directory in
/// use; past this, the half least recently used are dropped.
const MAX_KEPT: usize = 256;

/// What a ruleset is built from, besides the files its paths name.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    runnable: Vec<PathBuf>,
    network: bool,
    exec_in_task_dirs: bool,
    /// The task's source, scratch and workspace directories.
    dirs: [Option<PathBuf>; 3],
}

/// A kept ruleset and the files its rules are on.
struct Kept {
    ruleset: Arc<OwnedFd>,
    /// What each kept path (`Key::kept_paths`) named; `None` for a missing one.
    paths: Vec<Option<Identity>>,
    /// What each of the task's directories was.
    dirs: [Option<Identity>; 3],
    /// When a program last used it.
    used: Instant,
}

fn cache() -> &'static Mutex<HashMap<Key, Kept>> {
    static CACHE: OnceLock<Mutex<HashMap<Key, Kept>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

/// The rights a rule gives.
struct Rights {
    all: BitFlags<AccessFs>,
    read: BitFlags<AccessFs>,
    run: BitFlags<AccessFs>,
    devices: BitFlags<AccessFs>,
    task_write: BitFlags<AccessFs>,
}

impl Key {
    fn new(grant: &ProgramGrant, dirs: &TaskDirs) -> Self {
        Key {
            runnable: grant.runnable.clone(),
            network: grant.network,
            exec_in_task_dirs: grant.exec_in_task_dirs,
            dirs: [
                Some(dirs.source.clone()),
                dirs.scratch.clone(),
                dirs.workspace.clone(),
            ],
        }
    }

    fn rights(&self) -> Rights {
        let all = AccessFs::from_all(LANDLOCK_ABI);
        let read = AccessFs::ReadFile | AccessFs::ReadDir;
        Rights {
            all,
            read,
            run: read | AccessFs::Execute,
            devices: AccessFs::ReadFile | AccessFs::WriteFile,
            task_write: if self.exec_in_task_dirs {
                all
            } else {
                all & !AccessFs::Execute
            },
        }
    }

    /// The paths whose files are kept open between programs (`opened`), with their rights:
    /// the system's, the devices and the granted programs.
    fn kept_paths(&self) -> impl Iterator<Item = (&Path, BitFlags<AccessFs>)> {
        let rights = self.rights();
        let system = SYSTEM_READ
            .iter()
            .map(move |p| (Path::new(*p), rights.read));
        let devices = DEVICES.iter().map(move |p| (Path::new(*p), rights.devices));
        let programs = self.runnable.iter().map(move |p| (p.as_path(), rights.run));
        system.chain(devices).chain(programs)
    }

    /// The rights on the task's directories (`dirs`): its source to read, its scratch and
    /// workspace to write.
    fn task_access(&self) -> [BitFlags<AccessFs>; 3] {
        let rights = self.rights();
        [rights.read, rights.task_write, rights.task_write]
    }
}

/// The Landlock ruleset for a program of `grant` running for the task with `dirs`: a kept
/// one while it names what a new one would, else a new one, kept; `None` when the kernel
/// has no Landlock.
pub fn for_program(
    grant: &ProgramGrant,
    dirs: &TaskDirs,
) -> Result<Option<Arc<OwnedFd>>, ConfineError> {
    if probe().landlock_abi < 1 {
        return Ok(None);
    }
    let key = Key::new(grant, dirs);
    let kept: Vec<(Option<Opened>, BitFlags<AccessFs>)> = key
        .kept_paths()
        .map(|(path, access)| (opened::open_kept(path), access))
        .collect();
    let paths: Vec<Option<Identity>> = kept
        .iter()
        .map(|(o, _)| o.as_ref().map(|o| o.identity))
        .collect();
    let dirs_now = key
        .dirs
        .each_ref()
        .map(|dir| dir.as_deref().and_then(opened::identity));
    {
        let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = cache.get_mut(&key)
            && found.paths == paths
            && found.dirs == dirs_now
        {
            found.used = Instant::now();
            return Ok(Some(found.ruleset.clone()));
        }
    }
    // The task's own directories are opened for this ruleset only: a descriptor the daemon
    // keeps is one more that a program started by fork copies and closes.
    let task = key
        .dirs
        .each_ref()
        .map(|dir| dir.as_deref().and_then(opened::open));
    let rules = kept
        .iter()
        .filter_map(|(opened, access)| opened.as_ref().map(|o| (o, *access)))
        .chain(
            task.iter()
                .zip(key.task_access())
                .filter_map(|(opened, access)| opened.as_ref().map(|o| (o, access))),
        );
    let Some(ruleset) = build(&key, rules)? else {
        return Ok(None);
    };
    let ruleset = Arc::new(ruleset);
    // The directories as the rules have them (opened after `dirs_now` was looked at).
    let dirs = task.each_ref().map(|o| o.as_ref().map(|o| o.identity));
    let mut cache = cache().lock().unwrap_or_else(|e| e.into_inner());
    // Closed once the lock is let go: closing a ruleset can free what its rules held.
    let mut dropped = Vec::new();
    if cache.len() >= MAX_KEPT && !cache.contains_key(&key) {
        let mut used: Vec<Instant> = cache.values().map(|kept| kept.used).collect();
        used.sort_unstable();
        let oldest_kept = used[used.len() / 2];
        dropped = cache
            .extract_if(|_, kept| kept.used < oldest_kept)
            .collect();
    }
    cache.insert(
        key,
        Kept {
            ruleset: ruleset.clone(),
            paths,
            dirs,
            used: Instant::now(),
        },
    );
    drop(cache);
    drop(dropped);
    Ok(Some(ruleset))
}

/// A new ruleset with a rule for each opened path; `None` when the kernel has no Landlock.
fn build<'a>(
    key: &Key,
    rules: impl Iterator<Item = (&'a Opened, BitFlags<AccessFs>)>,
) -> Result<Option<OwnedFd>, ConfineError> {
    let abi = LANDLOCK_ABI;
    let all = key.rights().all;
    let mut ruleset = Ruleset::default().handle_access(all)?;
    if !key.network {
        ruleset = ruleset.handle_access(AccessNet::from_all(abi))?;
    }
    let ruleset: Option<OwnedFd> = ruleset.scope(Scope::from_all(abi))?.create()?.into();
    let Some(ruleset) = ruleset else {
        return Ok(None);
    };
    // What this kernel handles of what was asked for: a rule may allow no more.
    let handled = all & AccessFs::from_all(ABI::from(probe().landlock_abi));
    for (opened, access) in rules {
        let access = if opened.is_dir {
            access & handled
        } else {
            access & handled & AccessFs::from_file(abi)
        };
        // Nothing to allow (the kernel refuses an empty rule).
        if access.is_empty() {
            continue;
        }
        add_rule(&ruleset, opened.fd.as_fd(), access)?;
    }
    Ok(Some(ruleset))
}

/// `struct landlock_path_beneath_attr`.
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

/// Allows `access` beneath `parent` (or to the file `parent` is). The system call itself:
/// the crate's way checks each descriptor's type with one more `fstat`, which the opened
/// paths already know, and a program's ruleset has a few dozen rules.
fn add_rule(
    ruleset: &OwnedFd,
    parent: BorrowedFd<'_>,
    access: BitFlags<AccessFs>,
) -> Result<(), ConfineError> {
    const LANDLOCK_RULE_PATH_BENEATH: libc::c_int = 1;
    let attr = PathBeneathAttr {
        allowed_access: access.bits(),
        parent_fd: parent.as_raw_fd(),
    };
    // SAFETY: landlock_add_rule(2) reads the attribute struct passed by reference, which
    // lives across the call; both descriptors are open.
    let done = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            LANDLOCK_RULE_PATH_BENEATH,
            &raw const attr,
            0u32,
        )
    };
    if done != 0 {
        return Err(ConfineError::LandlockRule(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::process::test_task::task;

    #[test]
    fn a_ruleset_is_kept_while_its_directories_are_the_same_ones() {
        if probe().landlock_abi < 1 {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI runs on a kernel with Landlock"
            );
            return;
        }
        let task = task();
        let (dirs, grant) = (&task.dirs, &task.grant);
        let scratch = dirs.scratch.clone().unwrap();
        let first = for_program(grant, dirs).unwrap().unwrap();
        let again = for_program(grant, dirs).unwrap().unwrap();
        assert!(Arc::ptr_eq(&first, &again), "built again for the same task");

        let other = ProgramGrant {
            network: true,
            ..grant.clone()
        };
        let for_other = for_program(&other, dirs).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&first, &for_other), "shared across grants");

        // The scratch directory replaced: the kept rule is on the old one.
        std::fs::remove_dir(&scratch).unwrap();
        std::fs::create_dir(&scratch).unwrap();
        let replaced = for_program(grant, dirs).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&first, &replaced), "kept a replaced directory");
        let kept = for_program(grant, dirs).unwrap().unwrap();
        assert!(Arc::ptr_eq(&replaced, &kept));

        // No program can be left holding a ruleset that others use.
        // SAFETY: fcntl(F_GETFD) on a descriptor the ruleset owns.
        let flags = unsafe { libc::fcntl(kept.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }
}
