//! The daemon's own descriptor budget.
//!
//! Every program in flight holds about seven of the daemon's descriptors (two pipes, a
//! pidfd, its cgroup, its task directories, its Landlock ruleset). Under the common default
//! soft limit of 1,024 open files, a workflow of parallelism 150 would fail tasks with "Too
//! many open files" while the hard limit allows far more. So at start-up the soft limit is
//! raised to the hard one, and programs are given back the limit the daemon started with
//! (a program built around `select(2)` breaks above 1,024).
//!
//! The descriptor table is also grown once, at start-up: the kernel grows a table shared by
//! several threads only after an RCU grace period, milliseconds during which the thread
//! starting programs waits, and with hundreds of programs starting at once the table would
//! double five times mid-run.

use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// Descriptor numbers the table is grown to at start-up: room for about a thousand
/// programs in flight before the kernel has to grow it again.
const TABLE_RESERVED: libc::rlim_t = 8192;
/// Below this many open files, wide workflows may fail tasks; start-up says so.
const WARN_BELOW: libc::rlim_t = 4096;
/// Descriptors the daemon holds per program in flight, for the warning's arithmetic.
const PER_PROGRAM: libc::rlim_t = 8;

/// The soft limit the daemon was started with, when `prepare` raised it.
static RAISED_FROM: OnceLock<libc::rlim_t> = OnceLock::new();

/// What `prepare` did, for the caller to log once its logging is set up.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The open-files limit the daemon now runs under.
    pub open_files: libc::rlim_t,
}

impl Budget {
    /// A warning when the limit is low enough to fail wide workflows, naming the fix.
    pub fn warning(&self) -> Option<String> {
        (self.open_files < WARN_BELOW).then(|| {
            format!(
                "the open-files limit is {}: about {} programs can run at once before tasks fail with \"Too many open files\"; raise it (LimitNOFILE= in the unit, ulimit -n in a shell)",
                self.open_files,
                self.open_files.saturating_sub(64) / PER_PROGRAM
            )
        })
    }
}

/// Raises the soft open-files limit to the hard one and grows the descriptor table. Call it
/// first thing, while the process still has one thread; later calls do nothing more.
pub fn prepare() -> Budget {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes the struct passed by reference.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Budget {
            open_files: libc::rlim_t::MAX,
        };
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit(2) reads the struct passed by reference; raising the soft limit up
    // to the hard one needs no privilege.
    let open_files = if limit.rlim_cur < limit.rlim_max
        && unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0
    {
        let _ = RAISED_FROM.set(limit.rlim_cur);
        raised.rlim_cur
    } else {
        limit.rlim_cur
    };
    grow_table(open_files.min(TABLE_RESERVED));
    Budget { open_files }
}

/// The soft limit to give programs back: the one the daemon was started with, when
/// `prepare` raised it.
pub fn for_programs() -> Option<libc::rlim_t> {
    RAISED_FROM.get().copied()
}

/// Makes the table hold `slots` descriptors by placing one at the highest number and
/// closing it; tables never shrink.
fn grow_table(slots: libc::rlim_t) {
    let Ok(highest) = libc::c_int::try_from(slots.saturating_sub(1)) else {
        return;
    };
    let Ok(null) = std::fs::File::open("/dev/null") else {
        return;
    };
    if highest <= null.as_raw_fd() {
        return;
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) puts a copy of a live descriptor on the lowest free
    // number from `highest` up, owned here and closed at once.
    let copy = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, highest) };
    if copy >= 0 {
        // SAFETY: closing the copy made just above, which nothing else knows.
        unsafe { libc::close(copy) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let budget = prepare();
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit(2) writes the struct passed by reference.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert_eq!(now.rlim_cur, now.rlim_max);
        assert_eq!(budget.open_files, now.rlim_cur);
        if let Some(started) = for_programs() {
            assert!(started < now.rlim_cur);
        }
    }

    #[test]
    fn a_low_limit_is_warned_about_with_its_fix() {
        let low = Budget { open_files: 1024 }.warning().expect("warned");
        assert!(low.contains("about 120 programs"), "{low}");
        assert!(low.contains("LimitNOFILE"), "{low}");
        assert!(Budget { open_files: 65536 }.warning().is_none());
    }
}
