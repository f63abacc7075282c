//! The values a bundle file's keys take, each parsed by one function: names, environment
//! variable names, users, readiness checks, command lines and yes/no. Each refusal is a
//! [`ValueError`], whose message the parser puts after `PATH:LINE: `. Durations are
//! [`crate::time`]'s, signals [`crate::signal`]'s.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::plan::{EnvFile, LiveCheck, ReadyCheck, Rlimit, TcpAddress};
use crate::signal::SignalError;
use crate::time::DurationError;

/// The longest daemon name: it prefixes every line the daemon writes.
pub(crate) const MAX_NAME_LEN: usize = 32;

/// Why a value in the bundle file was refused. `Display` is the message that follows
/// `PATH:LINE: `; the parser adds the place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueError {
    EmptyName,
    NameTooLong,
    NameChars(String),
    EnvName(String),
    EnvPair(String),
    NoNames(&'static str),
    Duration(DurationError),
    User(String),
    ReadyCheck(String),
    ReadyAddress(String),
    NotifyDescriptor(String),
    Bool(String),
    Quote(char),
    TrailingBackslash,
    NoProgram,
    RelativeCwd(String),
    RelativeEnvFile(String),
    StopSignalStop,
    OnExit(String),
    OnGiveUp(String),
    OnFailure(String),
    Type(String),
    Count(String),
    Umask(String),
    Nice(String),
    /// (key, text): not a number or `unlimited`.
    Limit(&'static str, String),
    /// (key, text): the soft limit is above the hard one.
    SoftOverHard(&'static str, String),
    Groups(String),
    OomScoreAdj(String),
    Instances(String),
    LiveCheck(String),
    LiveAddress(String),
    LiveFailures(String),
    BelowAMillisecond(String),
    LogBuffer(String),
    Signal(SignalError),
    HttpAddress(String),
}

impl fmt::Display for ValueError {
    #[allow(clippy::too_many_lines)] // a table: one message per refusal
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ValueError as E;
        match self {
            E::EmptyName => f.write_str("empty daemon name"),
            E::NameTooLong => write!(f, "daemon name is longer than {MAX_NAME_LEN} characters"),
            E::NameChars(name) => write!(
                f,
                "daemon name \"{name}\" may only use letters, digits, '-', '_' and '.'"
            ),
            E::EnvName(name) => write!(f, "bad environment variable name \"{name}\""),
            E::EnvPair(text) => write!(f, "env needs NAME=VALUE, found \"{text}\""),
            E::NoNames(key) => write!(f, "\"{key}\" needs at least one name"),
            E::Duration(e) => e.fmt(f),
            E::User(text) => write!(
                f,
                "user \"{text}\" must be numeric UID:GID, e.g. 65534:65534"
            ),
            E::ReadyCheck(text) => write!(
                f,
                "bad ready check \"{text}\" (expected tcp:HOST:PORT, unix:/PATH, file:/PATH or notify:FD)"
            ),
            E::ReadyAddress(text) => write!(
                f,
                "ready check \"{text}\" needs a numeric address, e.g. tcp:127.0.0.1:8080"
            ),
            E::NotifyDescriptor(text) => write!(
                f,
                "notify descriptor \"{text}\" must be a number from 3 to 1023"
            ),
            E::LiveCheck(text) => write!(
                f,
                "bad live check \"{text}\" (expected tcp:HOST:PORT, unix:/PATH or http:HOST:PORT/PATH)"
            ),
            E::LiveAddress(text) => write!(
                f,
                "live check \"{text}\" needs a numeric address, e.g. tcp:127.0.0.1:8080"
            ),
            E::LiveFailures(text) => write!(
                f,
                "live-failures must be a whole number from 1 to 1000, not \"{text}\""
            ),
            E::BelowAMillisecond(text) => {
                write!(f, "\"{text}\" is too short: at least 1ms")
            }
            E::Bool(text) => write!(f, "expected yes or no, found \"{text}\""),
            E::Quote(quote) => write!(f, "unterminated {quote} quote"),
            E::TrailingBackslash => f.write_str("trailing backslash"),
            E::NoProgram => f.write_str("\"run\" needs a program"),
            E::RelativeCwd(dir) => write!(f, "cwd \"{dir}\" must be an absolute path"),
            E::RelativeEnvFile(path) => write!(
                f,
                "env-file \"{path}\" must be an absolute path (-/PATH for an optional file)"
            ),
            E::StopSignalStop => {
                f.write_str("SIGSTOP does not end a process; choose another stop-signal")
            }
            E::OnExit(text) => write!(
                f,
                "unknown on-exit \"{text}\" (expected keep-running, restart or stop-bundle)"
            ),
            E::OnFailure(text) => write!(
                f,
                "unknown on-failure \"{text}\" (expected stop-bundle or keep-running)"
            ),
            E::Type(text) => write!(f, "unknown type \"{text}\" (expected daemon or oneshot)"),
            E::OnGiveUp(text) => write!(
                f,
                "unknown on-give-up \"{text}\" (expected stop-bundle or stay-down)"
            ),
            E::Count(text) => write!(
                f,
                "max-restarts must be a whole number from 0 to 1000000, not \"{text}\""
            ),
            E::Umask(text) => write!(
                f,
                "umask \"{text}\" must be octal, 0000 to 0777 (e.g. 0027)"
            ),
            E::Nice(text) => write!(f, "nice \"{text}\" must be a number from -20 to 19"),
            E::Limit(key, text) => write!(
                f,
                "{key} \"{text}\" must be SOFT:HARD or one value for both, each a number or unlimited"
            ),
            E::SoftOverHard(key, text) => {
                write!(f, "{key} \"{text}\": the soft limit is above the hard one")
            }
            E::Groups(text) => write!(
                f,
                "groups \"{text}\" must be numeric GIDs separated by commas, e.g. 4,27"
            ),
            E::OomScoreAdj(text) => write!(
                f,
                "oom-score-adj \"{text}\" must be a number from -1000 to 1000"
            ),
            E::Instances(text) => {
                write!(
                    f,
                    "instances \"{text}\" must be a number from 1 to {MAX_INSTANCES}"
                )
            }
            E::LogBuffer(text) => write!(
                f,
                "log-buffer \"{text}\" must be 0 (off) or a size from 4KiB to 1MiB (e.g. 8KiB, 65536)"
            ),
            E::Signal(e) => e.fmt(f),
            E::HttpAddress(text) => write!(
                f,
                "http \"{text}\" must be ADDRESS:PORT with a numeric address ([...] for IPv6) or localhost, and a port from 1 to 65535, e.g. 0.0.0.0:8080"
            ),
        }
    }
}

impl std::error::Error for ValueError {}

impl From<SignalError> for ValueError {
    fn from(e: SignalError) -> ValueError {
        ValueError::Signal(e)
    }
}

impl From<DurationError> for ValueError {
    fn from(e: DurationError) -> ValueError {
        ValueError::Duration(e)
    }
}

pub(crate) fn check_name(name: &str) -> Result<(), ValueError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if name.is_empty() {
        Err(ValueError::EmptyName)
    } else if name.len() > MAX_NAME_LEN {
        Err(ValueError::NameTooLong)
    } else if !name.chars().all(ok_char) {
        Err(ValueError::NameChars(name.to_string()))
    } else {
        Ok(())
    }
}

pub(crate) fn check_env_name(name: &str) -> Result<(), ValueError> {
    if name.is_empty() || name.contains(['=', ' ', '\t']) {
        Err(ValueError::EnvName(name.to_string()))
    } else {
        Ok(())
    }
}

/// `tcp:HOST:PORT`, `unix:/PATH`, `file:/PATH`, `notify:FD` or `sd-notify`.
pub(crate) fn parse_ready(text: &str) -> Result<ReadyCheck, ValueError> {
    let bad = || ValueError::ReadyCheck(text.to_string());
    if text == "sd-notify" {
        return Ok(ReadyCheck::SdNotify);
    }
    let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
    match kind {
        "tcp" => {
            let addr =
                tcp_address(rest).ok_or_else(|| ValueError::ReadyAddress(text.to_string()))?;
            Ok(ReadyCheck::Tcp(TcpAddress {
                addr,
                written: rest.to_string(),
            }))
        }
        "unix" | "file" if rest.starts_with('/') => Ok(if kind == "unix" {
            ReadyCheck::Unix(PathBuf::from(rest))
        } else {
            ReadyCheck::File(PathBuf::from(rest))
        }),
        "notify" => match rest.parse::<i32>() {
            Ok(fd) if (3..=1023).contains(&fd) => Ok(ReadyCheck::Notify(fd)),
            _ => Err(ValueError::NotifyDescriptor(rest.to_string())),
        },
        _ => Err(bad()),
    }
}

/// `tcp:HOST:PORT`, `unix:/PATH` or `http:HOST:PORT/PATH` (the path may be left out: `/`).
pub(crate) fn parse_live(text: &str) -> Result<LiveCheck, ValueError> {
    let bad = || ValueError::LiveCheck(text.to_string());
    let address = |written: &str| {
        let addr = tcp_address(written).ok_or_else(|| ValueError::LiveAddress(text.to_string()))?;
        Ok::<_, ValueError>(TcpAddress {
            addr,
            written: written.to_string(),
        })
    };
    let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
    match kind {
        "tcp" => Ok(LiveCheck::Tcp(address(rest)?)),
        "unix" if rest.starts_with('/') => Ok(LiveCheck::Unix(PathBuf::from(rest))),
        "http" => {
            let (host_port, path) = match rest.find('/') {
                Some(at) => rest.split_at(at),
                None => (rest, "/"),
            };
            // The path goes into the request line as it is: no spaces, no control bytes.
            if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                return Err(bad());
            }
            Ok(LiveCheck::Http {
                addr: address(host_port)?,
                path: path.to_string(),
            })
        }
        _ => Err(bad()),
    }
}

/// `live-failures`: 1 to 1000 failures in a row.
pub(crate) fn parse_live_failures(text: &str) -> Result<u32, ValueError> {
    match text.parse::<u32>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(ValueError::LiveFailures(text.to_string())),
    }
}

/// A TCP check's address: a numeric address, or `localhost` (no name lookups in PID 1).
fn tcp_address(text: &str) -> Option<SocketAddr> {
    if let Some(port) = text.strip_prefix("localhost:") {
        return Some(SocketAddr::from(([127, 0, 0, 1], port.parse().ok()?)));
    }
    text.parse().ok()
}

/// `http = ADDRESS:PORT`: where the HTTP endpoint listens. A numeric address or
/// `localhost`, as for a TCP check; port 0 (any free port) would be of no use to a probe
/// that must know it.
pub(crate) fn parse_http_address(text: &str) -> Result<TcpAddress, ValueError> {
    match tcp_address(text) {
        Some(addr) if addr.port() != 0 => Ok(TcpAddress {
            addr,
            written: text.to_string(),
        }),
        _ => Err(ValueError::HttpAddress(text.to_string())),
    }
}

/// Tests write a check's address as text (the supervisor's tests among them).
#[cfg(test)]
impl From<&str> for TcpAddress {
    fn from(text: &str) -> TcpAddress {
        let addr = tcp_address(text).expect("a numeric address or localhost");
        TcpAddress {
            addr,
            written: text.to_string(),
        }
    }
}

/// `/PATH`, or `-/PATH` for a file that may be missing. Absolute: the daemon's `cwd` is
/// not bundle-init's, and a relative path would depend on which one the reader assumed.
pub(crate) fn parse_env_file(text: &str) -> Result<EnvFile, ValueError> {
    let (optional, path) = match text.strip_prefix('-') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, text),
    };
    if !path.starts_with('/') {
        return Err(ValueError::RelativeEnvFile(text.to_string()));
    }
    Ok(EnvFile {
        path: PathBuf::from(path),
        optional,
    })
}

/// The most instances one section may make.
pub(crate) const MAX_INSTANCES: u32 = 64;

/// `instances = N`, 1 to MAX_INSTANCES.
pub(crate) fn parse_instances(text: &str) -> Result<u32, ValueError> {
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_INSTANCES).contains(&n) => Ok(n),
        _ => Err(ValueError::Instances(text.to_string())),
    }
}

/// An octal umask, `0027` or `027`.
pub(crate) fn parse_umask(text: &str) -> Result<u32, ValueError> {
    let octal = (1..=4).contains(&text.len()) && text.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(text, 8) {
        Ok(mask) if octal && mask <= 0o777 => Ok(mask),
        _ => Err(ValueError::Umask(text.to_string())),
    }
}

/// A number in `range`, or `error`.
fn number_in(
    text: &str,
    range: std::ops::RangeInclusive<i32>,
    error: fn(String) -> ValueError,
) -> Result<i32, ValueError> {
    match text.parse::<i32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(error(text.to_string())),
    }
}

/// The nice value a daemon runs at: -20 (first served) to 19.
pub(crate) fn parse_nice(text: &str) -> Result<i32, ValueError> {
    number_in(text, -20..=19, ValueError::Nice)
}

/// /proc/PID/oom_score_adj's range: -1000 (never killed for memory) to 1000.
pub(crate) fn parse_oom_score_adj(text: &str) -> Result<i32, ValueError> {
    number_in(text, -1000..=1000, ValueError::OomScoreAdj)
}

/// `SOFT:HARD` or one value for both, each a number or `unlimited`.
pub(crate) fn parse_limit(key: &'static str, text: &str) -> Result<Rlimit, ValueError> {
    let value = |part: &str| match part.trim() {
        "unlimited" => Some(Rlimit::UNLIMITED),
        number => number
            .parse::<u64>()
            .ok()
            .filter(|&n| n != Rlimit::UNLIMITED),
    };
    let bad = || ValueError::Limit(key, text.to_string());
    let (soft, hard) = match text.split_once(':') {
        Some((soft, hard)) => (value(soft).ok_or_else(bad)?, value(hard).ok_or_else(bad)?),
        None => {
            let both = value(text).ok_or_else(bad)?;
            (both, both)
        }
    };
    if soft > hard {
        return Err(ValueError::SoftOverHard(key, text.to_string()));
    }
    Ok(Rlimit { soft, hard })
}

/// `GID,GID...`: numeric supplementary groups.
pub(crate) fn parse_groups(text: &str) -> Result<Vec<u32>, ValueError> {
    let bad = || ValueError::Groups(text.to_string());
    let groups: Option<Vec<u32>> = text
        .split(',')
        .map(|g| g.trim().parse::<u32>().ok().filter(|&g| g != u32::MAX))
        .collect();
    groups.filter(|g| !g.is_empty()).ok_or_else(bad)
}

/// `UID:GID`, both numeric: a FROM scratch image has no /etc/passwd to look names up in.
pub(crate) fn parse_user(text: &str) -> Result<(u32, u32), ValueError> {
    let bad = || ValueError::User(text.to_string());
    let (uid, gid) = text.split_once(':').ok_or_else(bad)?;
    let uid: u32 = uid.trim().parse().map_err(|_| bad())?;
    let gid: u32 = gid.trim().parse().map_err(|_| bad())?;
    if uid == u32::MAX || gid == u32::MAX {
        return Err(bad());
    }
    Ok((uid, gid))
}

/// Splits a command line into words. Whitespace separates words; "double quotes" keep
/// spaces and understand \" and \\; 'single quotes' are literal; a backslash outside
/// quotes escapes the next character. No variables, no globs: nothing runs a shell.
pub fn split_words(text: &str) -> Result<Vec<String>, ValueError> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(ValueError::Quote('\'')),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err(ValueError::Quote('"')),
                        },
                        Some(c) => word.push(c),
                        None => return Err(ValueError::Quote('"')),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err(ValueError::TrailingBackslash),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// `yes` or `no` (also `true`/`false`, `on`/`off`).
/// `log-buffer`: `0`, or a size of 4 KiB to 1 MiB, in bytes or with a unit (`K`, `KiB`,
/// `M`, `MiB`: powers of 1024).
pub(crate) fn parse_log_buffer(text: &str) -> Result<usize, ValueError> {
    use crate::plan::{MAX_LOG_BUFFER, MIN_LOG_BUFFER};
    let refused = || ValueError::LogBuffer(text.to_string());
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 8 {
        return Err(refused());
    }
    let number: usize = text[..digits].parse().map_err(|_| refused())?;
    let unit = match &text[digits..] {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1024,
        "M" | "MiB" => 1024 * 1024,
        _ => return Err(refused()),
    };
    match number * unit {
        0 => Ok(0),
        size if (MIN_LOG_BUFFER..=MAX_LOG_BUFFER).contains(&size) => Ok(size),
        _ => Err(refused()),
    }
}

/// A `log-buffer` size as `--check` prints it, in the largest unit that divides it.
pub(crate) fn print_size(size: usize) -> String {
    match size {
        0 => "0".to_string(),
        s if s % (1024 * 1024) == 0 => format!("{}MiB", s / (1024 * 1024)),
        s if s % 1024 == 0 => format!("{}KiB", s / 1024),
        s => s.to_string(),
    }
}

pub(crate) fn parse_bool(text: &str) -> Result<bool, ValueError> {
    match text {
        "yes" | "true" | "on" => Ok(true),
        "no" | "false" | "off" => Ok(false),
        _ => Err(ValueError::Bool(text.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `tcp:` address is parsed once, at load; the text as written is kept for printing.
    #[test]
    fn a_tcp_check_holds_its_parsed_address_and_its_text() {
        let Ok(ReadyCheck::Tcp(local)) = parse_ready("tcp:localhost:8080") else {
            panic!("localhost is accepted");
        };
        assert_eq!(local.addr, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(local.to_string(), "localhost:8080");
        let Ok(ReadyCheck::Tcp(v6)) = parse_ready("tcp:[::1]:53") else {
            panic!("a numeric IPv6 address is accepted");
        };
        assert_eq!(v6.addr, SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 53)));
        for refused in [
            "tcp:localhost",
            "tcp:db:5432",
            "tcp:127.0.0.1",
            "tcp:localhost:99999",
        ] {
            assert_eq!(
                parse_ready(refused),
                Err(ValueError::ReadyAddress(refused.to_string()))
            );
        }
    }

    #[test]
    fn an_env_file_is_absolute_and_a_dash_makes_it_optional() {
        let file = |path: &str, optional| EnvFile {
            path: PathBuf::from(path),
            optional,
        };
        assert_eq!(parse_env_file("/run/a.env"), Ok(file("/run/a.env", false)));
        assert_eq!(parse_env_file("-/run/a.env"), Ok(file("/run/a.env", true)));
        assert_eq!(parse_env_file("- /run/a.env"), Ok(file("/run/a.env", true)));
        for refused in ["a.env", "-a.env", "", "-"] {
            assert_eq!(
                parse_env_file(refused),
                Err(ValueError::RelativeEnvFile(refused.to_string()))
            );
        }
    }

    #[test]
    fn process_settings_parse_within_their_ranges() {
        assert_eq!(parse_umask("0027"), Ok(0o027));
        assert_eq!(parse_umask("077"), Ok(0o077));
        assert_eq!(parse_umask("0777"), Ok(0o777));
        for bad in ["", "0800", "01000", "00027", "abc", "-1", "+27"] {
            assert_eq!(
                parse_umask(bad),
                Err(ValueError::Umask(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(parse_nice("10"), Ok(10));
        assert_eq!(parse_nice("-20"), Ok(-20));
        assert_eq!(parse_nice("20"), Err(ValueError::Nice("20".into())));
        assert_eq!(parse_nice("-21"), Err(ValueError::Nice("-21".into())));
        assert_eq!(parse_oom_score_adj("-1000"), Ok(-1000));
        assert_eq!(parse_oom_score_adj("1000"), Ok(1000));
        assert_eq!(
            parse_oom_score_adj("1001"),
            Err(ValueError::OomScoreAdj("1001".into()))
        );
        assert_eq!(parse_groups("4, 27"), Ok(vec![4, 27]));
        assert_eq!(parse_instances("1"), Ok(1));
        assert_eq!(parse_instances("64"), Ok(64));
        for bad in ["0", "65", "-1", "x", ""] {
            assert_eq!(
                parse_instances(bad),
                Err(ValueError::Instances(bad.into())),
                "{bad}"
            );
        }
        for bad in ["", "4,", "wheel", "4294967295"] {
            assert_eq!(
                parse_groups(bad),
                Err(ValueError::Groups(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_limit_is_soft_hard_or_one_value_and_unlimited_is_allowed() {
        let limit = |soft, hard| Ok(Rlimit { soft, hard });
        let max = Rlimit::UNLIMITED;
        assert_eq!(parse_limit("limit-nofile", "1024:4096"), limit(1024, 4096));
        assert_eq!(parse_limit("limit-nofile", "4096"), limit(4096, 4096));
        assert_eq!(parse_limit("limit-core", "unlimited"), limit(max, max));
        assert_eq!(parse_limit("limit-core", "0:unlimited"), limit(0, max));
        assert_eq!(
            parse_limit("limit-nofile", "4096:1024"),
            Err(ValueError::SoftOverHard("limit-nofile", "4096:1024".into()))
        );
        assert_eq!(
            parse_limit("limit-as", "unlimited:0"),
            Err(ValueError::SoftOverHard("limit-as", "unlimited:0".into()))
        );
        for bad in ["", "1k", "-1", "1:2:3", ":5", "18446744073709551615"] {
            assert_eq!(
                parse_limit("limit-stack", bad),
                Err(ValueError::Limit("limit-stack", bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn words_split_like_a_careful_shell() {
        assert_eq!(split_words("a  b\tc").unwrap(), ["a", "b", "c"]);
        assert_eq!(
            split_words(r#""a \"q\" \\ \n" ''"#).unwrap(),
            [r#"a "q" \ \n"#, ""]
        );
        assert!(split_words("'open").is_err());
        assert!(split_words("end\\").is_err());
    }
}
