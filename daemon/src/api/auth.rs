//! Who is calling: the peer's credentials from the Unix socket (SO_PEERCRED) and its
//! supplementary groups, checked against `[api]` in gantry.toml, where users and groups may be
//! named or numbered. Root and the daemon's own user are always allowed, except a program the
//! daemon started for a task: it runs as the daemon's user, and must not drive the daemon.

use std::ffi::CString;

use tokio::net::UnixStream;

pub use crate::config::daemon::{Access, Principal};

/// The peer of one connection.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Supplementary groups of the connecting process.
    pub groups: Vec<u32>,
    /// The peer is a program the daemon runs for a task, or something it started.
    pub task_program: bool,
}

impl Peer {
    /// The credentials of the process at the other end of `stream`.
    pub fn of(stream: &UnixStream) -> Self {
        match stream.peer_cred() {
            Ok(cred) => Peer {
                uid: Some(cred.uid()),
                gid: Some(cred.gid()),
                groups: cred.pid().map(supplementary_groups).unwrap_or_default(),
                task_program: cred.pid().is_some_and(started_for_a_task),
            },
            Err(_) => Peer::default(),
        }
    }
}

/// Whether process `pid` descends from this daemon or sits in a task program's cgroup (where
/// a child that double-forked away from the daemon still is).
fn started_for_a_task(pid: i32) -> bool {
    /// Ancestors walked before giving up; process trees are far shallower.
    const MAX_DEPTH: usize = 256;
    if crate::host::process::in_program_cgroup(pid) {
        return true;
    }
    let me = std::process::id();
    let mut current = pid;
    for _ in 0..MAX_DEPTH {
        let Some(parent) = parent_of(current) else {
            return false;
        };
        if u32::try_from(parent).ok() == Some(me) {
            return true;
        }
        if parent <= 1 {
            return false;
        }
        current = parent;
    }
    false
}

/// The parent of process `pid`, from `/proc/PID/stat` (after the command name, which may hold
/// spaces and parentheses).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The supplementary groups of process `pid`, from `/proc/PID/status`.
fn supplementary_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return Vec::new();
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|groups| {
            groups
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

impl Access {
    pub fn allows(&self, peer: &Peer) -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        let Some(uid) = peer.uid else {
            return false;
        };
        if peer.task_program {
            return false;
        }
        if uid == 0 || uid == me {
            return true;
        }
        if self
            .allow_uids
            .iter()
            .any(|p| resolve(p, Kind::User) == Some(uid))
        {
            return true;
        }
        let groups: Vec<u32> = peer
            .gid
            .into_iter()
            .chain(peer.groups.iter().copied())
            .collect();
        self.allow_gids
            .iter()
            .filter_map(|p| resolve(p, Kind::Group))
            .any(|g| groups.contains(&g))
    }
}

#[derive(Clone, Copy)]
enum Kind {
    User,
    Group,
}

/// The number a principal names; a name is looked up in the system's user or group database
/// at each check, so a renamed or renumbered entry takes effect without a reload.
fn resolve(p: &Principal, kind: Kind) -> Option<u32> {
    match p {
        Principal::Id(id) => Some(*id),
        Principal::Name(name) => lookup(name, kind),
    }
}

fn lookup(name: &str, kind: Kind) -> Option<u32> {
    let c_name = CString::new(name).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    match kind {
        Kind::User => {
            // SAFETY: `passwd` is plain data that getpwnam_r fills in; `buf` outlives the
            // call and its length is passed; `found` is only read after a zero return.
            unsafe {
                let mut pwd: libc::passwd = std::mem::zeroed();
                let mut found: *mut libc::passwd = std::ptr::null_mut();
                let rc = libc::getpwnam_r(
                    c_name.as_ptr(),
                    &mut pwd,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut found,
                );
                (rc == 0 && !found.is_null()).then_some(pwd.pw_uid)
            }
        }
        Kind::Group => {
            // SAFETY: as above, with getgrnam_r and `group`.
            unsafe {
                let mut grp: libc::group = std::mem::zeroed();
                let mut found: *mut libc::group = std::ptr::null_mut();
                let rc = libc::getgrnam_r(
                    c_name.as_ptr(),
                    &mut grp,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut found,
                );
                (rc == 0 && !found.is_null()).then_some(grp.gr_gid)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supplementary_groups_and_names_count() {
        let access = Access {
            allow_uids: vec![Principal::Name("nobody".into())],
            allow_gids: vec![Principal::Id(4242), Principal::Name("root".into())],
            ..Access::default()
        };
        let peer = |uid, gid, groups: &[u32]| Peer {
            uid: Some(uid),
            gid: Some(gid),
            groups: groups.to_vec(),
            task_program: false,
        };
        let nobody = lookup("nobody", Kind::User).expect("nobody exists");
        assert!(access.allows(&peer(nobody, 65534, &[])), "by user name");
        assert!(
            access.allows(&peer(5000, 5000, &[7, 4242])),
            "by a supplementary gid"
        );
        assert!(access.allows(&peer(5000, 0, &[])), "by group name");
        assert!(!access.allows(&peer(5000, 5000, &[7])));
        assert!(!access.allows(&Peer::default()));
        assert_eq!(lookup("no-such-user-xyz", Kind::User), None);
        let task = Peer {
            uid: Some(0),
            task_program: true,
            ..Peer::default()
        };
        assert!(!access.allows(&task), "a task's program as root");
    }

    #[test]
    fn children_of_the_daemon_are_task_programs() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        assert!(started_for_a_task(pid));
        let _ = child.kill();
        let _ = child.wait();
        let parent = i32::try_from(std::os::unix::process::parent_id()).unwrap();
        assert!(!started_for_a_task(parent));
    }
}
