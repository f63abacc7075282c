//! Signal names, both ways. Accepts `TERM`, `SIGTERM`, `sigterm`, `15`, `RTMIN+2`, `RTMAX-1`.

use std::fmt;

use crate::sys::MAX_SIGNAL;

/// The standard signals by name, with this target's numbers.
const NAMES: [(&str, i32); 31] = [
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// The first real-time signal as glibc, procps and util-linux name it: the kernel's 32
/// plus the two the C libraries keep for themselves (a naming convention, not an ABI value;
/// musl keeps three, so its SIGRTMIN() says 35).
const RTMIN: i32 = 34;
const RTMAX: i32 = MAX_SIGNAL;

/// A signal number known to be in 1..=64; prints as `SIGTERM`, `SIGRTMIN+2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Sig(pub i32);

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == self.0) {
            return write!(f, "SIG{name}");
        }
        match self.0 {
            n if n == RTMIN => f.write_str("SIGRTMIN"),
            n if n == RTMAX => f.write_str("SIGRTMAX"),
            n if n > RTMIN && n < RTMAX => write!(f, "SIGRTMIN+{}", n - RTMIN),
            n => write!(f, "SIG{n}"),
        }
    }
}

/// Why a signal name or number was refused; `Display` is the message for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignalError {
    Unknown(String),
    OutOfRange(i64),
}

impl fmt::Display for SignalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignalError::Unknown(text) => write!(f, "unknown signal \"{text}\""),
            SignalError::OutOfRange(n) => {
                write!(f, "signal number {n} is out of range 1-{MAX_SIGNAL}")
            }
        }
    }
}

impl std::error::Error for SignalError {}

/// Parses a signal name or number.
pub fn parse_signal(text: &str) -> Result<Sig, SignalError> {
    let bad = || SignalError::Unknown(text.to_string());
    let trimmed = text.trim();
    let upper = trimmed.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Ok(n) = name.parse::<i64>() {
        return if (1..=i64::from(MAX_SIGNAL)).contains(&n) {
            Ok(Sig(n as i32))
        } else {
            Err(SignalError::OutOfRange(n))
        };
    }
    if let Some((_, number)) = NAMES.iter().find(|(n, _)| *n == name) {
        return Ok(Sig(*number));
    }
    let offset = |rest: &str| {
        rest.parse::<i32>()
            .ok()
            .filter(|n| (0..=RTMAX - RTMIN).contains(n))
    };
    let number = match name {
        "RTMIN" => Some(RTMIN),
        "RTMAX" => Some(RTMAX),
        _ => {
            if let Some(rest) = name.strip_prefix("RTMIN+") {
                offset(rest).map(|n| RTMIN + n)
            } else if let Some(rest) = name.strip_prefix("RTMAX-") {
                offset(rest).map(|n| RTMAX - n)
            } else {
                None
            }
        }
    };
    number.map(Sig).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_numbers_and_prefixes_parse() {
        assert_eq!(parse_signal("TERM"), Ok(Sig(15)));
        assert_eq!(parse_signal("SIGUSR1"), Ok(Sig(10)));
        assert_eq!(parse_signal("sighup"), Ok(Sig(1)));
        assert_eq!(parse_signal("9"), Ok(Sig(9)));
        assert_eq!(parse_signal("RTMIN+2"), Ok(Sig(36)));
        assert_eq!(parse_signal("SIGRTMAX-1"), Ok(Sig(63)));
    }

    #[test]
    fn nonsense_is_rejected_with_a_reason() {
        let unknown = parse_signal("USR3").unwrap_err();
        assert_eq!(unknown, SignalError::Unknown("USR3".into()));
        assert_eq!(unknown.to_string(), "unknown signal \"USR3\"");
        let zero = parse_signal("0").unwrap_err();
        assert_eq!(zero, SignalError::OutOfRange(0));
        assert_eq!(zero.to_string(), "signal number 0 is out of range 1-64");
        assert!(parse_signal("99999999999999999999").is_err());
        assert!(parse_signal("RTMIN+99").is_err());
        assert!(parse_signal("").is_err());
    }

    #[test]
    fn every_signal_round_trips_through_its_name() {
        for n in 1..=MAX_SIGNAL {
            let name = Sig(n).to_string();
            assert_eq!(parse_signal(&name), Ok(Sig(n)), "{name}");
        }
    }
}
