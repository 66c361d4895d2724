//! Low descriptor numbers set aside for starting programs.
//!
//! A child made by `clone3` without `CLONE_FILES` gets a copy of the daemon's whole
//! descriptor table, and `execve` closes it all again. With hundreds of tasks in flight
//! (each with its pipes, a pidfd, a log file and its plugin's directories) that is thousands
//! of references taken and dropped for every program started. Instead the child shares the
//! table (`CLONE_FILES`) and, before anything else, takes a copy of only its lowest numbers
//! (`close_range(below, ~0, CLOSE_RANGE_UNSHARE)`). The parent has put the few descriptors
//! the child needs there, in a block of slots reserved for that start.
//!
//! The slots hold a placeholder (`/dev/null` open to read and write, close-on-exec) between
//! starts, so no other open can take their numbers; a program started without input gets
//! it as its standard input. A start that finds no free block copies the whole table as
//! before.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

/// Blocks of slots, so this many programs can be in the middle of starting at once (one per
/// thread starting them); more starts at the same moment copy the whole table.
const BLOCKS: usize = 8;
/// Slots per block: standard input, output and error, and the Landlock ruleset.
pub const PER_BLOCK: usize = 4;

struct Reserved {
    placeholder: OwnedFd,
    free: Mutex<Vec<[RawFd; PER_BLOCK]>>,
    /// One above the highest slot: what a child copies.
    below: RawFd,
}

fn reserved() -> Option<&'static Reserved> {
    static RESERVED: OnceLock<Option<Reserved>> = OnceLock::new();
    RESERVED.get_or_init(reserve).as_ref()
}

fn reserve() -> Option<Reserved> {
    let placeholder: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .ok()?
        .into();
    let mut fds = Vec::with_capacity(BLOCKS * PER_BLOCK);
    for _ in 0..BLOCKS * PER_BLOCK {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) duplicates a live descriptor onto the lowest free
        // number from 3 up; the copy is kept as long as its block is (see `Block`'s drop).
        let fd = unsafe { libc::fcntl(placeholder.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
        if fd < 0 {
            for fd in fds {
                // SAFETY: closing copies made just above, which nothing else knows.
                unsafe { libc::close(fd) };
            }
            return None;
        }
        fds.push(fd);
    }
    let below = fds.iter().copied().max()? + 1;
    let free = fds
        .chunks_exact(PER_BLOCK)
        .filter_map(|chunk| <[RawFd; PER_BLOCK]>::try_from(chunk).ok())
        .collect();
    Some(Reserved {
        placeholder,
        free: Mutex::new(free),
        below,
    })
}

/// Sets the slots aside now, while the daemon's descriptor numbers are still low.
pub fn init() {
    reserved();
}

/// One start's slots. Dropped once the child has executed (or exited), each slot gets its
/// placeholder back, which drops the parent's reference to what was put there.
pub struct Block {
    fds: [RawFd; PER_BLOCK],
    reserved: &'static Reserved,
}

impl Block {
    /// A free block, if there is one.
    pub fn take() -> Option<Block> {
        let reserved = reserved()?;
        let fds = reserved.free.lock().ok()?.pop()?;
        Some(Block { fds, reserved })
    }

    /// A child sharing the table copies the descriptors below this number.
    pub fn below(&self) -> RawFd {
        self.reserved.below
    }

    /// Puts (a duplicate of) `fd` in slot `index`, or with no `fd` leaves the slot's
    /// placeholder (`/dev/null`) there; returns the slot's number.
    pub fn put_or_keep(
        &mut self,
        index: usize,
        fd: Option<BorrowedFd<'_>>,
    ) -> std::io::Result<RawFd> {
        match fd {
            Some(fd) => self.put(index, fd),
            None => Ok(self.fds[index]),
        }
    }

    /// Puts (a duplicate of) `fd` in slot `index`; returns the slot's number.
    pub fn put(&mut self, index: usize, fd: BorrowedFd<'_>) -> std::io::Result<RawFd> {
        let slot = self.fds[index];
        // SAFETY: dup3(2) onto a slot this block owns, replacing its placeholder.
        if unsafe { libc::dup3(fd.as_raw_fd(), slot, libc::O_CLOEXEC) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(slot)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let mut restored = true;
        for &slot in &self.fds {
            // SAFETY: dup3(2) of the placeholder onto a slot this block owns.
            if unsafe { libc::dup3(self.reserved.placeholder.as_raw_fd(), slot, libc::O_CLOEXEC) }
                < 0
            {
                restored = false;
            }
        }
        if !restored {
            // A slot could still hold a pipe end, and its program would never see end of
            // input: close the block's slots and give the block up. Their numbers may then
            // be taken by any open; children still copy them, close-on-exec, until exec.
            for &slot in &self.fds {
                // SAFETY: closing slots this block owns; it is not handed out again.
                unsafe { libc::close(slot) };
            }
            return;
        }
        if let Ok(mut free) = self.reserved.free.lock() {
            free.push(self.fds);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn a_block_holds_what_was_put_in_it_until_it_is_given_back() {
        let (read, write) = std::io::pipe().unwrap();
        // Other tests may be starting programs with every block for a moment.
        let mut block = loop {
            match Block::take() {
                Some(block) => break block,
                None => std::thread::sleep(std::time::Duration::from_millis(10)),
            }
        };
        assert!(block.below() > 3);
        let slot = block.put(1, write.as_fd()).unwrap();
        assert!(slot < block.below());
        drop(write);
        // The slot still holds the write end: nothing to read, and no end of input yet.
        // SAFETY: fcntl(F_GETFL) on a live descriptor.
        let flags = unsafe { libc::fcntl(slot, libc::F_GETFL) };
        assert_eq!(flags & libc::O_ACCMODE, libc::O_WRONLY);
        drop(block);
        // Given back, the slot holds the placeholder again, and the pipe is at its end.
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut &read, &mut rest).unwrap();
        assert!(rest.is_empty());
        // SAFETY: fcntl(F_GETFD) on a live descriptor.
        let fd_flags = unsafe { libc::fcntl(slot, libc::F_GETFD) };
        assert_eq!(fd_flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }
}
