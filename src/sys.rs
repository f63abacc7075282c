//! The few libc calls rustix does not wrap: signal masks, signalfd, `kill` with any pid
//! (including -1 and process groups), and a read-only look at one signal disposition.
//!
//! std already links libc (musl in the release build), so these are plain declarations.
//! Every function here is a thin, safe wrapper; the `unsafe` stays in this file.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::raw::c_int;

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
const SFD_NONBLOCK: c_int = 0o4000;
const SFD_CLOEXEC: c_int = 0o2000000;

unsafe extern "C" {
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn signalfd(fd: c_int, mask: *const SigSet, flags: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn sigaction(sig: c_int, act: *const SigAction, old: *mut SigAction) -> c_int;
    fn poll(fds: *mut PollFd, count: u64, timeout_ms: c_int) -> c_int;
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
pub const POLLERR: i16 = 0x8;
pub const POLLHUP: i16 = 0x10;

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

/// Opens a signalfd for `set` with CLOEXEC and NONBLOCK.
pub fn open_signalfd(set: &SigSet) -> io::Result<OwnedFd> {
    // SAFETY: -1 asks for a new descriptor; `set` is valid for the call.
    let fd = unsafe { signalfd(-1, set, SFD_CLOEXEC | SFD_NONBLOCK) };
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

/// Whether `sig` is ignored (SIG_IGN) in this process right now. Read-only.
pub fn signal_is_ignored(sig: i32) -> bool {
    let mut old = SigAction {
        handler: 0,
        mask: SigSet::empty(),
        flags: 0,
        restorer: 0,
    };
    // SAFETY: a null `act` only queries; `old` is a valid, writable sigaction.
    let ok = unsafe { sigaction(sig, std::ptr::null(), &mut old) } == 0;
    ok && old.handler == SIG_IGN
}

/// Sets `sig` to be ignored. Async-signal-safe: used between fork and exec to give a child
/// back a SIG_IGN it would otherwise lose (std resets SIGPIPE to default in children).
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
