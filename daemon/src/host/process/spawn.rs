//! Starting a confined program cheaply. `fork()` copies the daemon's page tables (its
//! compiled plugins, pools and caches) for every program, and moving a process into its
//! cgroup by writing `cgroup.procs` takes the kernel's global thread-group lock and waits
//! for an RCU grace period; together they cost milliseconds per program and stall every
//! other fork meanwhile. On x86-64 the child is made the way `posix_spawn` makes one —
//! `clone3` sharing the daemon's memory (`CLONE_VM | CLONE_VFORK`), on a stack of its own,
//! born in its cgroup (`CLONE_INTO_CGROUP`) with default signal handlers
//! (`CLONE_CLEAR_SIGHAND`) and a pidfd to wait on — and it confines itself and executes the
//! program while the calling thread waits. Elsewhere, or on kernels before 5.7, the child is
//! forked by the standard library and confines itself the same way.
//!
//! The child shares the daemon's memory until it executes, so it only makes system calls on
//! what `Program` prepared; it allocates nothing, takes no lock and never returns.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::io::{AsyncRead, AsyncWrite};

use super::cgroup::ProgramGroup;
use super::confine::{ConfineError, Confinement, Failed, Step};

/// What to start: everything the child needs, as the C strings `execve` takes.
pub struct Program {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    stdin: bool,
}

/// Why a program did not start.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("{0} contains a NUL byte")]
    Nul(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Confine(#[from] ConfineError),
    #[error("{step}: {source}")]
    Child { step: Step, source: std::io::Error },
}

impl From<Failed> for SpawnError {
    fn from(failed: Failed) -> Self {
        SpawnError::Child {
            step: failed.step,
            source: std::io::Error::from_raw_os_error(failed.errno),
        }
    }
}

fn c_string(bytes: &[u8], what: &'static str) -> Result<CString, SpawnError> {
    CString::new(bytes).map_err(|_| SpawnError::Nul(what))
}

impl Program {
    /// `env` is the whole environment: nothing of the daemon's is passed on.
    pub fn new<'a>(
        path: &Path,
        args: impl IntoIterator<Item = &'a str>,
        env: impl IntoIterator<Item = (&'a OsStr, &'a OsStr)>,
        cwd: &Path,
        stdin: bool,
    ) -> Result<Self, SpawnError> {
        let path_c = c_string(path.as_os_str().as_bytes(), "the program's path")?;
        let mut argv = vec![path_c.clone()];
        for arg in args {
            argv.push(c_string(arg.as_bytes(), "an argument")?);
        }
        let mut envp = Vec::new();
        for (name, value) in env {
            let mut entry = name.as_bytes().to_vec();
            entry.push(b'=');
            entry.extend_from_slice(value.as_bytes());
            envp.push(c_string(&entry, "an environment variable")?);
        }
        Ok(Program {
            path: path_c,
            argv,
            envp,
            cwd: c_string(cwd.as_os_str().as_bytes(), "the working directory")?,
            stdin,
        })
    }
}

/// A started program: its pipes, and its exit to wait for. Dropped before it has been
/// waited for, it is killed and reaped in the background.
pub struct Running {
    pub pid: u32,
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    exit: Exit,
}

enum Exit {
    #[cfg(target_arch = "x86_64")]
    Pidfd(fast::Child),
    Forked(tokio::process::Child),
}

impl Running {
    /// Waits for the program to exit; cancel-safe, so it can race a timeout.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match &mut self.exit {
            #[cfg(target_arch = "x86_64")]
            Exit::Pidfd(child) => child.wait().await,
            Exit::Forked(child) => child.wait().await,
        }
    }
}

/// Starts `program` under `confinement`; returns it running, and its cgroup (if it has one),
/// to be ended once it has exited.
pub fn start(
    program: &Program,
    confinement: Confinement,
) -> Result<(Running, Option<ProgramGroup>), SpawnError> {
    #[cfg(target_arch = "x86_64")]
    if fast::usable() {
        return fast::start(program, confinement);
    }
    forked(program, confinement)
}

/// The portable way: the standard library forks, the child confines itself and executes.
/// A step that fails there is reported by its error number alone.
fn forked(
    program: &Program,
    confinement: Confinement,
) -> Result<(Running, Option<ProgramGroup>), SpawnError> {
    let os = |c: &CString| OsStr::from_bytes(c.as_bytes()).to_owned();
    let mut command = tokio::process::Command::new(os(&program.path));
    command
        .args(program.argv.iter().skip(1).map(os))
        .env_clear()
        .envs(program.envp.iter().filter_map(|entry| {
            let bytes = entry.as_bytes();
            let eq = bytes.iter().position(|&b| b == b'=')?;
            Some((
                OsStr::from_bytes(&bytes[..eq]).to_owned(),
                OsStr::from_bytes(&bytes[eq + 1..]).to_owned(),
            ))
        }))
        .current_dir(os(&program.cwd))
        .stdin(if program.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut confinement = confinement.for_fork()?;
    let group = confinement.take_group();
    let ruleset = confinement.ruleset_fd().map(|fd| fd.as_raw_fd());
    let child = move || {
        confinement
            .enter(ruleset)
            .map_err(|f| std::io::Error::from_raw_os_error(f.errno))
    };
    // SAFETY: `enter` makes only async-signal-safe system calls on values prepared before
    // the fork (descriptors, byte buffers, integers); it allocates nothing.
    unsafe {
        command.pre_exec(child);
    }
    let mut child = command.spawn()?;
    let running = Running {
        pid: child.id().unwrap_or(0),
        stdin: child
            .stdin
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncWrite + Send + Unpin>),
        stdout: child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
        stderr: child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn AsyncRead + Send + Unpin>),
        exit: Exit::Forked(child),
    };
    Ok((running, group))
}

/// A pipe whose child end is at descriptor 3 or above (so that putting the child's ends on
/// 0, 1 and 2 cannot overwrite one another), both ends close-on-exec.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut ends = [0; 2];
    // SAFETY: pipe2 fills the two descriptors of the array it is given.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made and are owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    Ok((above_stdio(read)?, above_stdio(write)?))
}

fn above_stdio(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) duplicates a live descriptor.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` was just made and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

fn dev_null() -> std::io::Result<OwnedFd> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    above_stdio(file.into())
}

/// What the child does once it exists: system calls on prepared values, then `execve`.
struct ChildPlan<'a> {
    program: &'a Program,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    stdio: [RawFd; 3],
    /// Where the Landlock ruleset is.
    ruleset: Option<RawFd>,
    /// Set when the child shares the daemon's descriptor table: it first takes a copy of
    /// the descriptors below this number, where everything it uses is.
    files_below: Option<RawFd>,
    confinement: &'a Confinement,
}

impl ChildPlan<'_> {
    /// Returns only if something failed; the program is running otherwise.
    fn run(&self) -> Failed {
        let fail = |step| Failed::last(step);
        // SAFETY (whole block): system calls on descriptors, C strings and pointer arrays
        // that the parent prepared and keeps alive until this child has executed or exited.
        unsafe {
            // Before anything touches a descriptor, which would change the daemon's too.
            if let Some(below) = self.files_below {
                const CLOSE_RANGE_UNSHARE: libc::c_uint = 1 << 1;
                let copied = libc::syscall(
                    libc::SYS_close_range,
                    below as libc::c_uint,
                    libc::c_uint::MAX,
                    CLOSE_RANGE_UNSHARE,
                );
                // Before Linux 5.9, a copy of the whole table.
                if copied != 0 && libc::unshare(libc::CLONE_FILES) != 0 {
                    return fail(Step::Files);
                }
            }
            // The daemon ignores SIGPIPE; programs expect the default.
            if libc::signal(libc::SIGPIPE, libc::SIG_DFL) == libc::SIG_ERR {
                return fail(Step::Signals);
            }
            for (target, fd) in (0..).zip(self.stdio) {
                if libc::dup2(fd, target) < 0 {
                    return fail(Step::Stdio);
                }
            }
            if libc::chdir(self.program.cwd.as_ptr()) != 0 {
                return fail(Step::WorkingDirectory);
            }
            if libc::setpgid(0, 0) != 0 {
                return fail(Step::ProcessGroup);
            }
            if let Err(failed) = self.confinement.enter(self.ruleset) {
                return failed;
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) != 0 {
                return fail(Step::Signals);
            }
            libc::execve(
                self.program.path.as_ptr(),
                self.argv.as_ptr(),
                self.envp.as_ptr(),
            );
        }
        fail(Step::Exec)
    }
}

fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

#[cfg(target_arch = "x86_64")]
mod fast {
    use std::ffi::c_void;
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
    use std::process::ExitStatus;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    use tokio::io::unix::AsyncFd;
    use tokio::io::{AsyncRead, AsyncWrite, Interest};
    use tokio::net::unix::pipe;

    use super::super::fd_slots;
    use super::*;

    /// The child's stack: it only makes system calls, a few frames deep.
    const STACK_BYTES: usize = 64 * 1024;
    /// An inaccessible page below the stack, so an overflow faults instead of writing over
    /// the daemon's memory.
    const GUARD_BYTES: usize = 4096;

    const CLONE_CLEAR_SIGHAND: u64 = 0x1_0000_0000;
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

    /// Set once `clone3` turned out not to do what is asked (a kernel before 5.7, or a
    /// seccomp filter refusing it); everything after uses the portable way.
    static UNUSABLE: AtomicBool = AtomicBool::new(false);

    pub fn usable() -> bool {
        !UNUSABLE.load(Ordering::Relaxed)
    }

    /// `struct clone_args`, as of Linux 5.7.
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }

    /// The running child, known by a pidfd (which cannot name a recycled pid).
    pub struct Child {
        pid: libc::pid_t,
        pidfd: AsyncFd<OwnedFd>,
        status: Option<ExitStatus>,
    }

    impl Child {
        pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
            loop {
                if let Some(status) = self.status {
                    return Ok(status);
                }
                let mut ready = self.pidfd.readable().await?;
                // While the exited program is not reaped, its pid (and so its process
                // group's id) cannot be given to another process: what it left in its group
                // is killed now, before the id can name someone else's.
                // SAFETY: kill(2) of our child's process group; no memory is involved.
                unsafe {
                    libc::kill(-self.pid, libc::SIGKILL);
                }
                match reap(self.pid, libc::WNOHANG)? {
                    Some(status) => self.status = Some(status),
                    None => ready.clear_ready(),
                }
            }
        }
    }

    impl Drop for Child {
        fn drop(&mut self) {
            if self.status.is_some() {
                return;
            }
            // SAFETY: pidfd_send_signal(2) on our own child's pidfd, no siginfo, no flags.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    self.pidfd.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0u32,
                );
            }
            if let Ok(Some(_)) = reap(self.pid, libc::WNOHANG) {
                return;
            }
            let pid = self.pid;
            let pidfd = self.pidfd.get_ref().try_clone();
            // The killed child is reaped once it has gone, without holding anyone up.
            match (tokio::runtime::Handle::try_current(), pidfd) {
                (Ok(runtime), Ok(fd)) => {
                    runtime.spawn(async move {
                        if let Ok(fd) = watch(fd) {
                            let _ = fd.readable().await;
                        }
                        let _ = reap(pid, 0);
                    });
                }
                _ => {
                    std::thread::spawn(move || reap(pid, 0));
                }
            }
        }
    }

    /// The pidfd, registered with the runtime to say when the child has exited.
    fn watch(pidfd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
        // SAFETY: the AsyncFd owns the descriptor, which stays open and the same until the
        // AsyncFd is dropped.
        unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
    }

    /// `waitpid` on our child: its status once it has exited (`None` while it runs, with
    /// `WNOHANG`).
    fn reap(pid: libc::pid_t, flags: i32) -> std::io::Result<Option<ExitStatus>> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid(2) on our own child, writing its status into a local.
            let done = unsafe { libc::waitpid(pid, &mut status, flags) };
            match done {
                0 => return Ok(None),
                p if p == pid => return Ok(Some(ExitStatus::from_raw(status))),
                _ => {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The child's stack. Each thread keeps one between starts: mapping and unmapping one
    /// per start cost a TLB shootdown on every other core running the daemon.
    struct Stack {
        base: *mut c_void,
        len: usize,
    }

    impl Stack {
        fn map() -> std::io::Result<Self> {
            let len = STACK_BYTES + GUARD_BYTES;
            // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            let stack = Stack { base, len };
            // SAFETY: the lowest page of the mapping just made becomes the guard.
            if unsafe { libc::mprotect(base, GUARD_BYTES, libc::PROT_NONE) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(stack)
        }
    }

    impl Drop for Stack {
        fn drop(&mut self) {
            // SAFETY: unmapping the mapping made in `map`, which no one uses any more: the
            // child has executed or exited before `clone3` returns (CLONE_VFORK).
            unsafe {
                libc::munmap(self.base, self.len);
            }
        }
    }

    thread_local! {
        /// This thread's stack for the children it starts. A start takes it and puts it
        /// back once `clone3` has returned, when (CLONE_VFORK) the child no longer uses it.
        static STACK: std::cell::Cell<Option<Stack>> = const { std::cell::Cell::new(None) };
    }

    impl Stack {
        fn take() -> std::io::Result<Self> {
            match STACK.with(std::cell::Cell::take) {
                Some(stack) => Ok(stack),
                None => Stack::map(),
            }
        }

        fn put_back(self) {
            STACK.with(|kept| kept.set(Some(self)));
        }
    }

    /// Where the child starts, on its own stack; it never returns.
    extern "C" fn child_main(plan: *mut c_void) -> ! {
        // SAFETY: `plan` points to the `Shared` the parent keeps alive (and does not touch)
        // until the child has executed or exited.
        let shared = unsafe { &*(plan as *const Shared<'_>) };
        let failed = shared.plan.run();
        shared.failed.store(failed.pack(), Ordering::Relaxed);
        // SAFETY: _exit(2) ends the child without running anything of the daemon's.
        unsafe { libc::_exit(127) }
    }

    /// What parent and child share: the plan, and where the child reports a failed step.
    struct Shared<'a> {
        plan: ChildPlan<'a>,
        failed: AtomicU64,
    }

    /// clone3(2) with the child calling `entry(arg)` on the stack `args` names.
    ///
    /// # Safety
    /// `args` must describe a valid stack, and `entry` must never return.
    unsafe fn clone3(
        args: &CloneArgs,
        entry: extern "C" fn(*mut c_void) -> !,
        arg: *mut c_void,
    ) -> isize {
        let ret: isize;
        // SAFETY: in the parent this is the plain system call. The child starts on the
        // stack from `args` with the parent's registers but rax = 0; it calls `entry`
        // with the argument kept in r12 and never comes back here.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "xor ebp, ebp",
                "mov rdi, r12",
                "call r13",
                "ud2",
                "2:",
                inlateout("rax") libc::SYS_clone3 as isize => ret,
                in("rdi") args as *const CloneArgs,
                in("rsi") std::mem::size_of::<CloneArgs>(),
                in("r12") arg,
                in("r13") entry,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret
    }

    pub fn start(
        program: &Program,
        confinement: Confinement,
    ) -> Result<(Running, Option<ProgramGroup>), SpawnError> {
        let (stdin_child, stdin_parent) = match program.stdin {
            true => {
                let (read, write) = super::pipe()?;
                (Some(read), Some(write))
            }
            false => (None, None),
        };
        // Standard input without a pipe: /dev/null.
        let mut null = None;
        let (stdout_parent, stdout_child) = super::pipe()?;
        let (stderr_parent, stderr_child) = super::pipe()?;
        let argv = super::pointers(&program.argv);
        let envp = super::pointers(&program.envp);
        let stack = Stack::take()?;
        let ruleset = confinement.ruleset_fd();
        // The child's descriptors go in slots at low numbers, so that it need not copy the
        // daemon's whole table (see `fd_slots`); without a free block, it copies it all.
        let mut block = fd_slots::Block::take();
        let (stdio, ruleset, files_below) = match &mut block {
            Some(block) => {
                let stdio = [
                    block.put_or_keep(0, stdin_child.as_ref().map(AsFd::as_fd))?,
                    block.put(1, stdout_child.as_fd())?,
                    block.put(2, stderr_child.as_fd())?,
                ];
                let ruleset = ruleset.map(|fd| block.put(3, fd)).transpose()?;
                let below = confinement
                    .highest_kept_fd()
                    .map_or(block.below(), |fd| block.below().max(fd + 1));
                (stdio, ruleset, Some(below))
            }
            None => (
                [
                    match &stdin_child {
                        Some(fd) => fd.as_raw_fd(),
                        None => null.insert(super::dev_null()?).as_raw_fd(),
                    },
                    stdout_child.as_raw_fd(),
                    stderr_child.as_raw_fd(),
                ],
                ruleset.map(|fd| fd.as_raw_fd()),
                None,
            ),
        };
        let shared = Shared {
            plan: ChildPlan {
                program,
                argv: &argv,
                envp: &envp,
                stdio,
                ruleset,
                files_below,
                confinement: &confinement,
            },
            failed: AtomicU64::new(0),
        };
        let cgroup = confinement.cgroup_dir();
        let mut pidfd: libc::c_int = -1;
        let args = CloneArgs {
            flags: (libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD) as u64
                | CLONE_CLEAR_SIGHAND
                | if files_below.is_some() {
                    libc::CLONE_FILES as u64
                } else {
                    0
                }
                | if cgroup.is_some() {
                    CLONE_INTO_CGROUP
                } else {
                    0
                },
            pidfd: &raw mut pidfd as u64,
            exit_signal: libc::SIGCHLD as u64,
            stack: stack.base as u64 + GUARD_BYTES as u64,
            stack_size: STACK_BYTES as u64,
            cgroup: cgroup.map_or(0, |fd| fd.as_raw_fd() as u64),
            ..CloneArgs::default()
        };

        // The child must not run a handler of the daemon's on the daemon's memory before its
        // handlers are reset: every signal stays blocked until it is about to execute. The
        // system call itself, as the C library's wrapper keeps two of its own signals open.
        let all = [u64::MAX];
        let mut old = [0u64];
        // SAFETY: rt_sigprocmask(2) on the calling thread, with 8-byte kernel signal sets.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                all.as_ptr(),
                old.as_mut_ptr(),
                8usize,
            );
        }
        // SAFETY: the stack is mapped and unused; `child_main` never returns; `shared` and
        // everything it points to outlive the child's use of them, because with CLONE_VFORK
        // this thread resumes only once the child has executed or exited.
        let pid = unsafe { clone3(&args, child_main, (&raw const shared).cast_mut().cast()) };
        // SAFETY: restores this thread's signal mask.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigprocmask,
                libc::SIG_SETMASK,
                old.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            );
        }
        stack.put_back();
        // The child has executed or exited: the slots can let go of its descriptors.
        drop(block);

        if pid < 0 {
            let errno = i32::try_from(-pid).unwrap_or(libc::EINVAL);
            if matches!(
                errno,
                libc::ENOSYS | libc::EINVAL | libc::E2BIG | libc::EPERM
            ) {
                // Not this kernel's (or this seccomp filter's) clone3: the portable way,
                // from now on.
                UNUSABLE.store(true, Ordering::Relaxed);
                tracing::info!(
                    "clone3 with CLONE_INTO_CGROUP is unavailable ({}); programs are started by fork",
                    std::io::Error::from_raw_os_error(errno)
                );
                return super::forked(program, confinement);
            }
            return Err(std::io::Error::from_raw_os_error(errno).into());
        }
        let pid = libc::pid_t::try_from(pid).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "clone3 returned no pid")
        })?;
        // SAFETY: the kernel stored a new pidfd for the child; nothing else owns it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
        let failed = shared.failed.load(Ordering::Relaxed);
        if failed != 0 {
            let _ = reap(pid, 0);
            return Err(Failed::unpack(failed).into());
        }
        drop((stdin_child, null, stdout_child, stderr_child));
        let mut confinement = confinement;
        let group = confinement.take_group();
        let pidfd = match watch(pidfd) {
            Ok(pidfd) => pidfd,
            Err(e) => {
                // Not watched, it could not be waited for: it does not run at all.
                // SAFETY: kill(2) of the child we just made, which is not reaped yet.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
                let _ = reap(pid, 0);
                return Err(e.into());
            }
        };
        let child = Child {
            pid,
            pidfd,
            status: None,
        };
        let running = Running {
            pid: pid.unsigned_abs(),
            stdin: match stdin_parent {
                Some(fd) => Some(Box::new(pipe::Sender::from_owned_fd(fd)?)
                    as Box<dyn AsyncWrite + Send + Unpin>),
                None => None,
            },
            stdout: Some(Box::new(pipe::Receiver::from_owned_fd(stdout_parent)?)
                as Box<dyn AsyncRead + Send + Unpin>),
            stderr: Some(Box::new(pipe::Receiver::from_owned_fd(stderr_parent)?)
                as Box<dyn AsyncRead + Send + Unpin>),
            exit: Exit::Pidfd(child),
        };
        Ok((running, group))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::host::process::test_task::{Task, task};

    type Starter = fn(&Program, Confinement) -> Result<(Running, Option<ProgramGroup>), SpawnError>;

    /// Each way of starting a program this host has.
    fn starters() -> Vec<(&'static str, Starter)> {
        let mut ways: Vec<(&'static str, Starter)> = vec![("fork", forked)];
        #[cfg(target_arch = "x86_64")]
        ways.push(("clone3", fast::start));
        ways
    }

    impl Task {
        fn confinement(&self) -> Confinement {
            Confinement::prepare(&self.grant, &self.dirs, 1 << 20).unwrap()
        }

        fn program(&self, script: &str, cwd: &Path, stdin: bool) -> Program {
            Program::new(
                Path::new("/bin/sh"),
                ["-c", script],
                [
                    (OsStr::new("GREETING"), OsStr::new("hello")),
                    (OsStr::new("PATH"), OsStr::new("/usr/bin:/bin")),
                ],
                cwd,
                stdin,
            )
            .unwrap()
        }
    }

    async fn read_all(stream: Option<Box<dyn AsyncRead + Send + Unpin>>) -> String {
        let mut text = String::new();
        stream.unwrap().read_to_string(&mut text).await.unwrap();
        text
    }

    #[tokio::test]
    async fn both_ways_start_the_program_with_its_pipes_environment_and_exit_code() {
        for (way, start) in starters() {
            let task = task();
            let scratch = task.dirs.scratch.clone().unwrap();
            let program = task.program(
                r#"read line; echo "$line $GREETING from $(pwd)"; echo warned >&2; [ "$(cut -d' ' -f5 /proc/$$/stat)" = "$$" ] && echo own-group >&2; exit 3"#,
                &scratch,
                true,
            );
            let (mut running, group) = start(&program, task.confinement()).unwrap();
            let mut stdin = running.stdin.take().unwrap();
            stdin.write_all(b"sent\n").await.unwrap();
            drop(stdin);
            let out = read_all(running.stdout.take()).await;
            let err = read_all(running.stderr.take()).await;
            let status = running.wait().await.unwrap();
            assert_eq!(status.code(), Some(3), "{way}: {err}");
            assert_eq!(
                out.trim(),
                format!("sent hello from {}", scratch.display()),
                "{way}"
            );
            assert_eq!(err, "warned\nown-group\n", "{way}");
            if crate::host::process::confine::probe().cgroups {
                assert!(group.is_some(), "{way}: no cgroup");
            }
            if let Some(group) = group {
                group.end_emptied().await;
            }
        }
    }

    #[tokio::test]
    async fn a_program_holds_no_descriptor_of_the_daemons() {
        // Descriptors the daemon holds, below and above the reserved slots, as it would
        // with its store, sockets and other programs' pipes open.
        let held: Vec<std::fs::File> = (0..64)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        for (way, start) in starters() {
            let task = task();
            let scratch = task.dirs.scratch.clone().unwrap();
            // The shell's own descriptors are 0, 1, 2 and the one `ls` reads the list with;
            // without input, standard input is /dev/null.
            let program = task.program(
                "readlink /proc/self/fd/0; cat; ls /proc/self/fd",
                &scratch,
                false,
            );
            let (mut running, group) = start(&program, task.confinement()).unwrap();
            let out = read_all(running.stdout.take()).await;
            let err = read_all(running.stderr.take()).await;
            assert!(running.wait().await.unwrap().success(), "{way}: {err}");
            assert!(out.starts_with("/dev/null\n"), "{way}: {out}");
            let fds: Vec<u32> = out.lines().filter_map(|l| l.parse().ok()).collect();
            assert!(
                fds.len() <= 4 && fds.iter().all(|&fd| fd <= 3),
                "{way}: the program holds {fds:?}"
            );
            if let Some(group) = group {
                group.end_emptied().await;
            }
        }
        drop(held);
    }

    #[tokio::test]
    async fn programs_run_in_their_cgroup_without_the_daemons_signal_handling() {
        if !crate::host::process::confine::probe().cgroups {
            return;
        }
        for (way, start) in starters() {
            let task = task();
            let scratch = task.dirs.scratch.clone().unwrap();
            // SIGPIPE is ignored in the daemon and must be the default again in programs, or
            // a writer into a closed pipe never stops.
            let program = task.program(
                "cat /proc/self/cgroup; grep SigIgn /proc/self/status",
                &scratch,
                false,
            );
            let (mut running, group) = start(&program, task.confinement()).unwrap();
            let out = read_all(running.stdout.take()).await;
            running.wait().await.unwrap();
            assert!(out.contains("gantry-program-"), "{way}: {out}");
            let ignored = out
                .lines()
                .find_map(|l| l.strip_prefix("SigIgn:"))
                .map(|mask| u64::from_str_radix(mask.trim(), 16).unwrap())
                .unwrap();
            assert_eq!(
                ignored & (1 << (libc::SIGPIPE - 1)),
                0,
                "{way}: SIGPIPE still ignored: {out}"
            );
            group.unwrap().end_emptied().await;
        }
    }

    #[tokio::test]
    async fn a_step_that_fails_in_the_child_is_named_with_its_error() {
        for (way, start) in starters() {
            let task = task();
            let missing = task.dirs.source.join("gone");
            let program = task.program("true", &missing, false);
            let e = start(&program, task.confinement()).err().unwrap();
            let text = e.to_string();
            assert!(text.contains("No such file or directory"), "{way}: {text}");
            // A forked child reports only the error number.
            if way != "fork" {
                assert!(
                    text.contains("entering the working directory"),
                    "{way}: {text}"
                );
            }

            let not_a_program = Program::new(
                &task.dirs.source,
                [],
                [],
                task.dirs.scratch.as_ref().unwrap(),
                false,
            )
            .unwrap();
            let e = start(&not_a_program, task.confinement()).err().unwrap();
            assert!(e.to_string().contains("denied"), "{way}: {e}");
        }
    }

    /// The rules of a task's programs are kept between them (see `rulesets`): a program
    /// still writes to its directory after the directory was made anew, and still cannot
    /// write beside it.
    #[tokio::test]
    async fn a_program_writes_to_its_scratch_directory_made_anew_and_nowhere_else() {
        for (way, start) in starters() {
            let task = task();
            let scratch = task.dirs.scratch.clone().unwrap();
            let outside = task.dirs.source.join("planted");
            let script = format!(
                "echo ok > ./made && cat ./made; echo no > {}",
                outside.display()
            );
            for round in 0..2 {
                if round == 1 {
                    std::fs::remove_dir_all(&scratch).unwrap();
                    std::fs::create_dir(&scratch).unwrap();
                }
                let program = task.program(&script, &scratch, false);
                let (mut running, group) = start(&program, task.confinement()).unwrap();
                let out = read_all(running.stdout.take()).await;
                let err = read_all(running.stderr.take()).await;
                let status = running.wait().await.unwrap();
                if let Some(group) = group {
                    group.end_emptied().await;
                }
                assert_eq!(out, "ok\n", "{way}, round {round}: {err}");
                assert!(!status.success(), "{way}, round {round}: wrote beside");
                assert!(!outside.exists(), "{way}, round {round}");
            }
        }
    }

    #[tokio::test]
    async fn a_program_dropped_before_it_exits_is_killed_and_reaped() {
        for (way, start) in starters() {
            let task = task();
            let scratch = task.dirs.scratch.clone().unwrap();
            let program = task.program("exec sleep 30", &scratch, false);
            let (running, group) = start(&program, task.confinement()).unwrap();
            let pid = running.pid;
            drop(running);
            drop(group);
            let gone = async {
                while std::fs::metadata(format!("/proc/{pid}")).is_ok() {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(10), gone)
                .await
                .unwrap_or_else(|_| panic!("{way}: process {pid} is still there (or a zombie)"));
        }
    }

    #[test]
    fn a_failed_step_survives_the_trip_from_child_to_parent() {
        for step in Step::ALL {
            let failed = Failed {
                step,
                errno: libc::EACCES,
            };
            assert_ne!(failed.pack(), 0);
            assert_eq!(Failed::unpack(failed.pack()), failed);
        }
    }
}
