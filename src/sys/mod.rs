//! The few libc calls rustix does not wrap: signal masks, signalfd, `kill` with any pid
//! (including -1 and process groups), a disposition for tests, SO_PEERCRED (where a pid
//! of 0 is an answer), and the child's side of fork/exec.
//!
//! Layouts, constants and declarations come from the `libc` crate, so the same code is
//! right on every architecture it builds for. Every function here is a thin, safe
//! wrapper; the `unsafe` stays in this module (this file and `child.rs`).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::raw::c_int;

mod child;
pub(crate) use child::{
    ChildStep, ExecPlan, StartError, note_memory_sharing, report_needs_pipe, reported_in_memory,
    start_child,
};

/// Synchronous fault signals stay unblocked: blocking them would turn a crash of
/// bundle-init into a hang instead of a visible death.
pub(crate) const FAULT_SIGNALS: [i32; 7] = [
    libc_sig::SEGV,
    libc_sig::BUS,
    libc_sig::ILL,
    libc_sig::FPE,
    libc_sig::TRAP,
    libc_sig::SYS,
    libc_sig::ABRT,
];

/// Signal numbers used by name in the code, as this target's libc defines them.
pub mod libc_sig {
    pub const HUP: i32 = libc::SIGHUP;
    pub const INT: i32 = libc::SIGINT;
    pub const QUIT: i32 = libc::SIGQUIT;
    pub const ILL: i32 = libc::SIGILL;
    pub const TRAP: i32 = libc::SIGTRAP;
    pub const ABRT: i32 = libc::SIGABRT;
    pub const BUS: i32 = libc::SIGBUS;
    pub const FPE: i32 = libc::SIGFPE;
    pub const KILL: i32 = libc::SIGKILL;
    pub const USR1: i32 = libc::SIGUSR1;
    pub const SEGV: i32 = libc::SIGSEGV;
    pub const USR2: i32 = libc::SIGUSR2;
    pub const PIPE: i32 = libc::SIGPIPE;
    pub const TERM: i32 = libc::SIGTERM;
    pub const CHLD: i32 = libc::SIGCHLD;
    pub const CONT: i32 = libc::SIGCONT;
    pub const STOP: i32 = libc::SIGSTOP;
    pub const SYS: i32 = libc::SIGSYS;
    pub const TSTP: i32 = libc::SIGTSTP;
    pub const WINCH: i32 = libc::SIGWINCH;
}

/// The highest signal number: the kernel's _NSIG on x86_64 and aarch64 (a unit test holds
/// it to libc's SIGRTMAX, which is a function and cannot name a constant).
pub(crate) const MAX_SIGNAL: i32 = 64;

/// A signal set, `sigset_t` as this target's libc lays it out.
#[derive(Clone, Copy)]
pub struct SigSet(libc::sigset_t);

impl PartialEq for SigSet {
    fn eq(&self, other: &SigSet) -> bool {
        (1..=MAX_SIGNAL).all(|sig| self.contains(sig) == other.contains(sig))
    }
}

impl Eq for SigSet {}

impl SigSet {
    pub fn empty() -> SigSet {
        // SAFETY: sigset_t is plain data; all zeroes is a valid (empty) set, and
        // sigemptyset only writes through the pointer it is given.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable sigset_t.
        unsafe { libc::sigemptyset(&mut set) };
        SigSet(set)
    }

    /// Every signal the kernel knows (1..=64).
    pub fn full() -> SigSet {
        let mut set = SigSet::empty();
        for sig in 1..=MAX_SIGNAL {
            set.add(sig);
        }
        set
    }

    pub fn add(&mut self, sig: i32) {
        if (1..=MAX_SIGNAL).contains(&sig) {
            // SAFETY: a valid set and an in-range number; sigaddset only writes the set.
            unsafe { libc::sigaddset(&mut self.0, sig) };
        }
    }

    pub fn remove(&mut self, sig: i32) {
        if (1..=MAX_SIGNAL).contains(&sig) {
            // SAFETY: a valid set and an in-range number; sigdelset only writes the set.
            unsafe { libc::sigdelset(&mut self.0, sig) };
        }
    }

    /// Signals 1..=64 as a bit mask, the way /proc/PID/status shows SigBlk.
    pub fn first_word(&self) -> u64 {
        (1..=MAX_SIGNAL)
            .filter(|&sig| self.contains(sig))
            .fold(0, |mask, sig| mask | 1u64 << (sig - 1))
    }

    pub(crate) fn contains(&self, sig: i32) -> bool {
        // SAFETY: a valid set and an in-range number; sigismember only reads the set.
        (1..=MAX_SIGNAL).contains(&sig) && unsafe { libc::sigismember(&self.0, sig) } == 1
    }
}

/// A real-time signal the C library keeps for its own use (musl: 32 to 34, glibc: 32 and
/// 33): it cannot be blocked, so bundle-init never receives it through the signalfd.
pub(crate) fn reserved_by_libc(sig: i32) -> bool {
    (libc::SIGSYS + 1..=MAX_SIGNAL).contains(&sig) && !SigSet::full().contains(sig)
}

/// `struct pollfd`, kept as one array across loop iterations (rustix's borrowing PollFd
/// would tie it to the descriptors' lifetimes).
pub type PollFd = libc::pollfd;

pub const POLLIN: i16 = libc::POLLIN;
pub(crate) const POLLOUT: i16 = libc::POLLOUT;

/// errno after a failed libc call.
fn errno() -> c_int {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Waits for any of `fds` or `timeout_ms` (-1: for ever). EINTR counts as "nothing ready".
pub fn wait_for(fds: &mut [PollFd], timeout_ms: i32) -> io::Result<usize> {
    // SAFETY: the pointer and length describe a valid, writable slice of pollfd.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.raw_os_error() == Some(libc::EINTR) {
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
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set.0, &mut old.0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(old)
}

/// Replaces the signal mask. Async-signal-safe: used between fork and exec.
pub fn set_signal_mask(set: &SigSet) -> io::Result<()> {
    // SAFETY: `set` is a valid sigset; a null `old` is allowed.
    if unsafe { libc::sigprocmask(libc::SIG_SETMASK, &set.0, std::ptr::null_mut()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a signalfd for `set` with CLOEXEC. It blocks: the loop reads it only when poll
/// said it is ready, or when nothing but a signal can happen.
pub fn open_signalfd(set: &SigSet) -> io::Result<OwnedFd> {
    // SAFETY: -1 asks for a new descriptor; `set` is valid for the call.
    let fd = unsafe { libc::signalfd(-1, &set.0, libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: signalfd returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `kill(2)` with any target: a pid, `-pgid` for a process group, or -1 for everyone.
pub fn send_signal(target: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill has no memory arguments.
    if unsafe { libc::kill(target, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets `sig` to be ignored (the tests use it to give bundle-init an inherited SIG_IGN).
pub fn ignore_signal(sig: i32) -> io::Result<()> {
    // SAFETY: sigaction is plain data; zeroes are an empty mask and no flags.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = libc::SIG_IGN;
    // SAFETY: `act` is a valid sigaction; a null `old` is allowed.
    if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
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

/// The size of one signalfd record, `struct signalfd_siginfo`.
pub const SIGINFO_SIZE: usize = std::mem::size_of::<libc::signalfd_siginfo>();

impl SignalInfo {
    pub fn parse(record: &[u8]) -> Option<SignalInfo> {
        if record.len() < SIGINFO_SIZE {
            return None;
        }
        // SAFETY: the slice holds at least one whole record; read_unaligned copies it out
        // whatever the buffer's alignment, and any bit pattern is a valid signalfd_siginfo.
        let info =
            unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<libc::signalfd_siginfo>()) };
        Some(SignalInfo {
            signo: info.ssi_signo as i32,
            code: info.ssi_code,
            sender: info.ssi_pid,
        })
    }
}

/// execvp's rules: try each candidate; a permission error is remembered but the search
/// goes on; "not found" is reported only if nothing else went wrong.
/// Raises the soft RLIMIT_NOFILE to the hard limit, so a bundle of many daemons fits in
/// whatever the engine allows. Returns the limit as it was, for the children; None if it
/// could not be read (then nothing changed).
pub(crate) fn raise_open_file_limit() -> Option<libc::rlimit> {
    let mut inherited = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut inherited) } != 0 {
        return None;
    }
    let raised = libc::rlimit {
        rlim_cur: inherited.rlim_max,
        rlim_max: inherited.rlim_max,
    };
    // SAFETY: setrlimit reads one rlimit we own. Raising a soft limit up to the hard
    // limit is always allowed; a failure leaves the old limit, which is still correct.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    Some(inherited)
}

/// The soft RLIMIT_NOFILE now: the highest descriptor number plus one that open() may use.
pub(crate) fn open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return u64::MAX;
    }
    limit.rlim_cur
}

/// How many descriptors are open now (3 when /proc cannot tell).
pub(crate) fn open_descriptors() -> usize {
    // The directory's own descriptor is in the listing while it is read.
    std::fs::read_dir("/proc/self/fd").map_or(3, |dir| dir.count().saturating_sub(1))
}

/// Why a daemon's `user = UID:GID` cannot be honoured here; `Display` says it for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserSwitchError {
    /// bundle-init's own uid and gid (effective).
    pub uid: u32,
    pub gid: u32,
}

impl std::fmt::Display for UserSwitchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "only root can change to another user, and bundle-init runs as {}:{}",
            self.uid, self.gid
        )
    }
}

impl std::error::Error for UserSwitchError {}

/// Who bundle-init is, as far as changing a child's user goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// Real and effective uid, real and effective gid.
    pub(crate) uids: (u32, u32),
    pub(crate) gids: (u32, u32),
    /// CAP_SETUID and CAP_SETGID are effective (root has them, unless they were dropped).
    pub(crate) may_set_uid: bool,
    pub(crate) may_set_gid: bool,
}

impl Credentials {
    pub(crate) fn current() -> Credentials {
        use rustix::process::{getegid, geteuid, getgid, getuid};
        use rustix::thread::CapabilitySet;
        let effective = rustix::thread::capabilities(None)
            .map(|sets| sets.effective)
            .unwrap_or(CapabilitySet::empty());
        Credentials {
            uids: (getuid().as_raw(), geteuid().as_raw()),
            gids: (getgid().as_raw(), getegid().as_raw()),
            may_set_uid: effective.contains(CapabilitySet::SETUID),
            may_set_gid: effective.contains(CapabilitySet::SETGID),
        }
    }

    /// Already `uid:gid`, really and effectively: a change to it changes nothing.
    fn already(&self, uid: u32, gid: u32) -> bool {
        self.uids == (uid, uid) && self.gids == (gid, gid)
    }

    /// Whether a child started as `uid:gid` must change its credentials. Not when it
    /// already is that user and could not even drop its supplementary groups (setgroups
    /// needs CAP_SETGID): `podman run --user 102:106` with `user = 102:106`.
    pub(crate) fn must_switch_to(&self, uid: u32, gid: u32) -> bool {
        !self.already(uid, gid) || self.may_set_gid
    }

    /// Whether a child can be started as `uid:gid`: it already is that user, or may change.
    pub(crate) fn can_switch_to(&self, uid: u32, gid: u32) -> Result<(), UserSwitchError> {
        if self.already(uid, gid) || (self.may_set_uid && self.may_set_gid) {
            return Ok(());
        }
        Err(UserSwitchError {
            uid: self.uids.1,
            gid: self.gids.1,
        })
    }
}

/// Whether a daemon with `user = uid:gid` can be started by this bundle-init: it runs as
/// that user already, or it may change users (CAP_SETUID and CAP_SETGID, as root has).
/// For the start and `--check`, so a bundle that cannot be honoured is refused at once.
pub fn can_switch_to(uid: u32, gid: u32) -> Result<(), UserSwitchError> {
    Credentials::current().can_switch_to(uid, gid)
}

/// Whether `fd` is the master side of a pseudo-terminal (TIOCGPTN answers only there).
pub(crate) fn is_pty_master(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    let mut number: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes one unsigned int into `number`, which we own.
    let rc = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::TIOCGPTN,
            &raw mut number,
        )
    };
    rc == 0
}

/// SO_PEERCRED as the kernel gives it. Read into libc's `ucred` directly: a pid of 0 (a
/// peer in another PID namespace) is a valid answer, not an error.
pub(crate) fn peer_credentials(fd: &std::os::fd::OwnedFd) -> std::io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which we own and whose
    // size `len` is.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(fd),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred)
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
        assert_eq!(set.first_word(), 1 << 63);
    }

    /// Changing to the user bundle-init already is changes nothing, and needs no
    /// privilege; any other user needs CAP_SETUID and CAP_SETGID.
    #[test]
    fn a_user_switch_is_needed_and_possible_only_when_it_changes_something() {
        let root = Credentials {
            uids: (0, 0),
            gids: (0, 0),
            may_set_uid: true,
            may_set_gid: true,
        };
        let user = Credentials {
            uids: (102, 102),
            gids: (106, 106),
            may_set_uid: false,
            may_set_gid: false,
        };
        assert_eq!(root.can_switch_to(65534, 65534), Ok(()));
        assert!(root.must_switch_to(0, 0), "root clears its groups");
        assert_eq!(user.can_switch_to(102, 106), Ok(()));
        assert!(!user.must_switch_to(102, 106), "nothing to change");
        let why = UserSwitchError { uid: 102, gid: 106 };
        let refused = Err(why);
        assert_eq!(user.can_switch_to(102, 0), refused);
        assert_eq!(user.can_switch_to(103, 106), refused);
        assert!(user.must_switch_to(103, 106));
        assert_eq!(
            why.to_string(),
            "only root can change to another user, and bundle-init runs as 102:106"
        );
        // Root without CAP_SETUID (podman --cap-drop): only itself.
        let capped = Credentials {
            may_set_uid: false,
            ..root
        };
        assert_eq!(capped.can_switch_to(0, 0), Ok(()));
        assert!(capped.can_switch_to(1, 1).is_err());
        // Whoever runs the tests can always start a child as itself.
        let me = Credentials::current();
        assert_eq!(can_switch_to(me.uids.1, me.gids.1), Ok(()));
    }

    #[test]
    fn the_highest_signal_is_libcs_sigrtmax() {
        assert_eq!(MAX_SIGNAL, libc::SIGRTMAX());
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
