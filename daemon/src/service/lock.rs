//! One writer per state directory: an exclusive `flock` on `<state>/gantry.lock`, taken by
//! the daemon and by local runs before anything else is touched and held for the life of the
//! process, so a local run can never mark a daemon's runs `interrupted`.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

pub struct StateLock {
    _file: File,
}

impl StateLock {
    pub fn acquire(state_dir: &Path) -> anyhow::Result<StateLock> {
        std::fs::create_dir_all(state_dir)?;
        let path = state_dir.join("gantry.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        // SAFETY: flock on a file descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            anyhow::bail!(
                "another gantry daemon or local run is already using the state directory {} (lock {} is held); with a daemon running, deploy through it with `gantry deploy`",
                state_dir.display(),
                path.display()
            );
        }
        Ok(StateLock { _file: file })
    }
}
