//! The few libc calls rustix does not wrap: signal masks, signalfd, `kill` with any pid
//! (including -1 and process groups), and a read-only look at one signal disposition.
//!
//! std already links libc (musl in the release build), so these are plain declarations.
//! Every function here is a thin, safe wrapper; the `unsafe` stays in this file.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::raw::{c_char, c_int};

/// Synchronous fault signals stay unblocked: blocking them would turn a crash of
/// bundle-init into a hang instead of a visible death.
pub const FAULT_SIGNALS: [i32; 7] = [
    libc_sig::SEGV,
    libc_sig::BUS,
    libc_sig::ILL,
    libc_sig::FPE,
    libc_sig::TRAP,
    libc_sig::SYS,
    libc_sig::ABRT,
];

/// Linux x86_64 signal numbers used by name in the code.
pub mod libc_sig {
    pub const HUP: i32 = 1;
    pub const INT: i32 = 2;
    pub const QUIT: i32 = 3;
    pub const ILL: i32 = 4;
    pub const TRAP: i32 = 5;
    pub const ABRT: i32 = 6;
    pub const BUS: i32 = 7;
    pub const FPE: i32 = 8;
    pub const KILL: i32 = 9;
    pub const USR1: i32 = 10;
    pub const SEGV: i32 = 11;
    pub const USR2: i32 = 12;
    pub const PIPE: i32 = 13;
    pub const TERM: i32 = 15;
    pub const CHLD: i32 = 17;
    pub const STOP: i32 = 19;
    pub const TSTP: i32 = 20;
    pub const TTIN: i32 = 21;
    pub const TTOU: i32 = 22;
    pub const SYS: i32 = 31;
}

/// The highest signal number Linux knows.
pub const MAX_SIGNAL: i32 = 64;

/// `sigset_t` as glibc and musl lay it out on Linux: 1024 bits, signal N at bit N-1.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SigSet {
    words: [u64; 16],
}

impl SigSet {
    pub const fn empty() -> SigSet {
        SigSet { words: [0; 16] }
    }

    /// Every signal the kernel knows (1..=64).
    pub const fn full() -> SigSet {
        let mut set = SigSet::empty();
        set.words[0] = u64::MAX;
        set
    }

    pub fn add(&mut self, sig: i32) {
        if (1..=MAX_SIGNAL).contains(&sig) {
            self.words[0] |= 1u64 << (sig - 1);
        }
    }

    pub fn remove(&mut self, sig: i32) {
        if (1..=MAX_SIGNAL).contains(&sig) {
            self.words[0] &= !(1u64 << (sig - 1));
        }
    }

    /// Signals 1..=64 as a bit mask, the way /proc/PID/status shows SigBlk.
    pub fn first_word(&self) -> u64 {
        self.words[0]
    }

    pub fn contains(&self, sig: i32) -> bool {
        (1..=MAX_SIGNAL).contains(&sig) && self.words[0] & (1u64 << (sig - 1)) != 0
    }
}

/// `struct sigaction` on Linux x86_64, identical for glibc and musl.
#[repr(C)]
struct SigAction {
    handler: usize,
    mask: SigSet,
    flags: c_int,
    restorer: usize,
}

const SIG_IGN: usize = 1;

const SIG_BLOCK: c_int = 0;
const SIG_SETMASK: c_int = 2;
const SFD_CLOEXEC: c_int = 0o2000000;

unsafe extern "C" {
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn signalfd(fd: c_int, mask: *const SigSet, flags: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn sigaction(sig: c_int, act: *const SigAction, old: *mut SigAction) -> c_int;
    fn poll(fds: *mut PollFd, count: u64, timeout_ms: c_int) -> c_int;
    fn fork() -> c_int;
    fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char)
    -> c_int;
    fn _exit(code: c_int) -> !;
    fn setpgid(pid: c_int, pgid: c_int) -> c_int;
    fn setgroups(count: usize, groups: *const u32) -> c_int;
    fn setgid(gid: u32) -> c_int;
    fn setuid(uid: u32) -> c_int;
    fn chdir(path: *const c_char) -> c_int;
    fn dup2(old: c_int, new: c_int) -> c_int;
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn tcsetpgrp(fd: c_int, pgrp: c_int) -> c_int;
    fn getpid() -> c_int;
    fn prctl(option: c_int, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> c_int;
    fn write(fd: c_int, buf: *const u8, count: usize) -> isize;
    fn __errno_location() -> *mut c_int;
    static environ: *const *const c_char;
}

/// `struct pollfd`. Declared here (rather than rustix's borrowing PollFd) so the loop can
/// keep one array across iterations without tying it to descriptor lifetimes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PollFd {
    pub fd: c_int,
    pub events: i16,
    pub revents: i16,
}

pub const POLLIN: i16 = 0x1;
pub const POLLOUT: i16 = 0x4;

/// Waits for any of `fds` or `timeout_ms` (-1: for ever). EINTR counts as "nothing ready".
pub fn wait_for(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: the pointer and length describe a valid, writable slice of pollfd.
    let n = unsafe { poll(fds.as_mut_ptr(), fds.len() as u64, timeout_ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.raw_os_error() == Some(4) {
            Ok(0)
        } else {
            Err(err)
        };
    }
    Ok(n as usize)
}

/// Blocks `set` and returns the mask that was in force before.
pub fn block_signals(set: &SigSet) -> io::Result<SigSet> {
    let mut old = SigSet::empty();
    // SAFETY: both pointers are valid for the call; sigprocmask only reads `set`.
    if unsafe { sigprocmask(SIG_BLOCK, set, &mut old) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(old)
}

/// Replaces the signal mask. Async-signal-safe: used between fork and exec.
pub fn set_signal_mask(set: &SigSet) -> io::Result<()> {
    // SAFETY: `set` is a valid sigset; a null `old` is allowed.
    if unsafe { sigprocmask(SIG_SETMASK, set, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a signalfd for `set` with CLOEXEC. It blocks: the loop reads it only when poll
/// said it is ready, or when nothing but a signal can happen.
pub fn open_signalfd(set: &SigSet) -> io::Result<OwnedFd> {
    // SAFETY: -1 asks for a new descriptor; `set` is valid for the call.
    let fd = unsafe { signalfd(-1, set, SFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: signalfd returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `kill(2)` with any target: a pid, `-pgid` for a process group, or -1 for everyone.
pub fn send_signal(target: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory arguments.
    if unsafe { kill(target, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `sig` to be ignored (the tests use it to give bundle-init an inherited SIG_IGN).
pub fn ignore_signal(sig: i32) -> io::Result<()> {
    let act = SigAction {
        handler: SIG_IGN,
        mask: SigSet::empty(),
        flags: 0,
        restorer: 0,
    };
    // SAFETY: `act` is a valid sigaction; a null `old` is allowed.
    if unsafe { sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One record read from a signalfd: only the fields bundle-init uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignalInfo {
    pub signo: i32,
    /// `si_code`: SI_USER (0) for kill(2), SI_KERNEL (0x80) for the kernel, ...
    pub code: i32,
    /// The sending process, as seen from bundle-init's PID namespace (0 if unknown).
    pub sender: u32,
}

/// `struct signalfd_siginfo` is 128 bytes; the fields we read sit at fixed offsets.
pub const SIGINFO_SIZE: usize = 128;

impl SignalInfo {
    pub fn parse(record: &[u8]) -> Option<SignalInfo> {
        if record.len() < SIGINFO_SIZE {
            return None;
        }
        let word = |at: usize| [record[at], record[at + 1], record[at + 2], record[at + 3]];
        Some(SignalInfo {
            signo: u32::from_ne_bytes(word(0)) as i32,
            code: i32::from_ne_bytes(word(8)),
            sender: u32::from_ne_bytes(word(12)),
        })
    }
}

/// fork(2). Ok(0) in the child, Ok(pid) in the parent.
pub fn fork_process() -> io::Result<i32> {
    // SAFETY: bundle-init is single-threaded, so the child may go on running Rust code
    // until exec; `child` below only makes async-signal-safe calls.
    let pid = unsafe { fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// Everything a child needs between fork and exec, prepared (and allocated) beforehand.
pub struct ExecPlan<'a> {
    /// Paths to try in order (one, or one per PATH entry), NUL-terminated.
    pub candidates: &'a [std::ffi::CString],
    /// argv and envp as NULL-terminated pointer arrays; envp None inherits `environ`.
    pub argv: &'a [*const c_char],
    pub envp: Option<&'a [*const c_char]>,
    pub cwd: Option<&'a std::ffi::CStr>,
    pub user: Option<(u32, u32)>,
    pub stdout: Option<c_int>,
    pub stderr: Option<c_int>,
    /// (descriptor, number the child gets it as): the readiness notification pipe.
    pub notify: Option<(c_int, c_int)>,
    pub give_terminal: bool,
    pub no_new_privs: bool,
    pub mask: SigSet,
    /// Write end of the CLOEXEC pipe the child reports a failure on.
    pub report: c_int,
}

/// Which step of starting a child failed, as the child reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStep {
    ProcessGroup = 1,
    Redirect = 2,
    WorkingDirectory = 3,
    User = 4,
    NoNewPrivs = 5,
    Signals = 6,
    Exec = 7,
}

impl ChildStep {
    pub fn from_code(code: u32) -> ChildStep {
        match code {
            1 => ChildStep::ProcessGroup,
            2 => ChildStep::Redirect,
            3 => ChildStep::WorkingDirectory,
            4 => ChildStep::User,
            5 => ChildStep::NoNewPrivs,
            6 => ChildStep::Signals,
            _ => ChildStep::Exec,
        }
    }
}

const PR_SET_NO_NEW_PRIVS: c_int = 38;
const F_SETFD: c_int = 2;
const F_DUPFD_CLOEXEC: c_int = 1030;
const EACCES: c_int = 13;

/// The child's side: set up and exec, or report (step, errno) on the report pipe and exit
/// 127. Makes only async-signal-safe system calls and allocates nothing.
pub fn child(plan: &ExecPlan<'_>) -> ! {
    // SAFETY: every pointer comes from `plan`, which the parent keeps alive (the child has
    // its own copy of the address space); the calls are plain system call wrappers.
    unsafe {
        unsafe fn report_and_exit(fd: c_int, step: ChildStep) -> ! {
            // SAFETY: errno is thread-local and valid; the buffer lives on this stack.
            unsafe {
                let report = [step as u32, *__errno_location() as u32];
                write(fd, report.as_ptr().cast::<u8>(), 8);
                _exit(127)
            }
        }
        let mut report = plan.report;
        if setpgid(0, 0) != 0 {
            report_and_exit(report, ChildStep::ProcessGroup);
        }
        if plan.give_terminal {
            // Still fully blocked here, so SIGTTOU cannot stop us for asking.
            tcsetpgrp(0, getpid());
        }
        for (fd, target) in [(plan.stdout, 1), (plan.stderr, 2)] {
            if let Some(fd) = fd
                && dup2(fd, target) < 0
            {
                report_and_exit(report, ChildStep::Redirect);
            }
        }
        if let Some((fd, target)) = plan.notify {
            // The number the daemon asked for may be one of the two pipes of this very
            // start. The report pipe moves out of its way (to the lowest free number, which
            // cannot be `target` while the report sits there); a notification pipe already
            // on `target` only loses its CLOEXEC, which dup2 onto itself would leave set.
            if report == target {
                let moved = fcntl(report, F_DUPFD_CLOEXEC, 3);
                if moved < 0 {
                    report_and_exit(report, ChildStep::Redirect);
                }
                report = moved;
            }
            let placed = if fd == target {
                fcntl(fd, F_SETFD, 0)
            } else {
                dup2(fd, target)
            };
            if placed < 0 {
                report_and_exit(report, ChildStep::Redirect);
            }
        }
        if let Some(dir) = plan.cwd
            && chdir(dir.as_ptr()) != 0
        {
            report_and_exit(report, ChildStep::WorkingDirectory);
        }
        if let Some((uid, gid)) = plan.user
            && (setgroups(0, std::ptr::null()) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
        {
            report_and_exit(report, ChildStep::User);
        }
        if plan.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            report_and_exit(report, ChildStep::NoNewPrivs);
        }
        if set_signal_mask(&plan.mask).is_err() {
            report_and_exit(report, ChildStep::Signals);
        }
        let envp = match plan.envp {
            Some(envp) => envp.as_ptr(),
            None => environ,
        };
        // execvp's rules: try each candidate; a permission error is remembered but the
        // search goes on; "not found" is reported only if nothing else went wrong.
        let mut saw_eacces = false;
        for path in plan.candidates {
            execve(path.as_ptr(), plan.argv.as_ptr(), envp);
            let errno = *__errno_location();
            match errno {
                EACCES => saw_eacces = true,
                2 | 20 => {} // ENOENT, ENOTDIR: try the next one
                _ => report_and_exit(report, ChildStep::Exec),
            }
        }
        if saw_eacces {
            *__errno_location() = EACCES;
        }
        report_and_exit(report, ChildStep::Exec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigset_bits_match_signal_numbers() {
        let mut set = SigSet::empty();
        set.add(libc_sig::HUP);
        set.add(64);
        assert!(set.contains(1) && set.contains(64) && !set.contains(2));
        set.remove(1);
        assert!(!set.contains(1));
        // Out-of-range numbers are never members and never panic.
        set.add(0);
        set.add(65);
        assert!(!set.contains(0) && !set.contains(65));
        assert!(SigSet::full().contains(libc_sig::TERM));
    }

    #[test]
    fn siginfo_fields_are_read_from_their_offsets() {
        let mut raw = [0u8; SIGINFO_SIZE];
        raw[0..4].copy_from_slice(&10u32.to_ne_bytes());
        raw[8..12].copy_from_slice(&0i32.to_ne_bytes());
        raw[12..16].copy_from_slice(&4242u32.to_ne_bytes());
        let info = SignalInfo::parse(&raw).unwrap();
        assert_eq!(
            info,
            SignalInfo {
                signo: 10,
                code: 0,
                sender: 4242
            }
        );
        assert_eq!(SignalInfo::parse(&raw[..100]), None);
    }
}
