//! Request lines as a client writes them, parsed into what the supervisor is asked.

use crate::signal::parse_signal;
use crate::supervisor::ControlRequest;

/// Why a request line was refused; `Display` is the `ERR` line's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RequestError {
    NotUtf8,
    Empty,
    Unknown(String),
    BadSignal(crate::signal::SignalError),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::NotUtf8 => f.write_str("request is not UTF-8"),
            RequestError::Empty => f.write_str("empty request"),
            RequestError::Unknown(text) => write!(f, "unknown request \"{text}\""),
            RequestError::BadSignal(e) => e.fmt(f),
        }
    }
}

/// Parses one request line (without its newline).
pub(crate) fn parse_request(line: &[u8]) -> Result<ControlRequest, RequestError> {
    use ControlRequest as Request;
    let text = std::str::from_utf8(line).map_err(|_| RequestError::NotUtf8)?;
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["status"] => Ok(Request::Status { json: false }),
        ["status", "--json"] => Ok(Request::Status { json: true }),
        ["health"] => Ok(Request::Health),
        ["reload"] => Ok(Request::Reload { dry_run: false }),
        ["reload", "--dry-run"] => Ok(Request::Reload { dry_run: true }),
        ["restart", names @ ..] if !names.is_empty() => Ok(Request::Restart(
            names.iter().map(|n| n.to_string()).collect(),
        )),
        ["stop", names @ ..] if !names.is_empty() => {
            Ok(Request::Stop(names.iter().map(|n| n.to_string()).collect()))
        }
        ["start", names @ ..] if !names.is_empty() => Ok(Request::Start(
            names.iter().map(|n| n.to_string()).collect(),
        )),
        ["logs", name, options @ ..] => {
            parse_logs(name, options).ok_or_else(|| RequestError::Unknown(text.trim().to_string()))
        }
        ["signal", name, sig] => {
            let sig = parse_signal(sig).map_err(RequestError::BadSignal)?;
            Ok(Request::Signal(name.to_string(), sig))
        }
        [] => Err(RequestError::Empty),
        _ => Err(RequestError::Unknown(text.trim().to_string())),
    }
}

/// `logs NAME [-n N] [-f]`, the options in any order, each at most once.
fn parse_logs(name: &str, options: &[&str]) -> Option<ControlRequest> {
    let (mut lines, mut follow) = (None, false);
    let mut words = options.iter();
    while let Some(&word) = words.next() {
        match word {
            "-f" | "--follow" if !follow => follow = true,
            "-n" | "--lines" if lines.is_none() => lines = Some(words.next()?.parse().ok()?),
            _ => return None,
        }
    }
    Some(ControlRequest::Logs {
        name: name.to_string(),
        lines,
        follow,
    })
}
