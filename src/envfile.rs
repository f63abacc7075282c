//! `env-file`: a file of `NAME=VALUE` lines, read in bundle-init before each start of the
//! daemon (never in the child, which may not allocate). One rule, docker's `--env-file`:
//! the value is everything after the first `=`, taken literally: no quotes are removed,
//! no spaces trimmed, no `$` expanded. Blank lines and lines whose first non-blank
//! character is `#` are skipped; leading blanks of a line are ignored; a CRLF line ending
//! loses its CR.
//!
//! A file may hold a secret, so no error says what a line contains: only the file, the
//! line number and what is wrong with it.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;

use crate::plan::EnvFile;

/// An env file larger than this is refused: it is read whole at each start.
pub(crate) const MAX_ENV_FILE_BYTES: u64 = 1024 * 1024;

/// Why an env file gave no variables, as `PATH:LINE: what` or `PATH: what`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EnvFileError {
    pub(crate) path: String,
    pub(crate) line: Option<usize>,
    pub(crate) problem: EnvFileProblem,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EnvFileProblem {
    Open(rustix::io::Errno),
    NotRegular,
    Read(rustix::io::Errno),
    TooLarge,
    /// No `=` on the line.
    NotAssignment,
    /// The part before `=` is empty or has blanks in it.
    BadName,
    /// A NUL byte cannot be passed in an environment.
    NulByte,
}

impl fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "env-file {}", self.path)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        use EnvFileProblem as P;
        match &self.problem {
            P::Open(e) => write!(f, ": cannot open: {e}"),
            P::NotRegular => f.write_str(": not a regular file"),
            P::Read(e) => write!(f, ": cannot read: {e}"),
            P::TooLarge => write!(f, ": file is larger than {} KiB", MAX_ENV_FILE_BYTES / 1024),
            P::NotAssignment => f.write_str(": expected NAME=VALUE (the line is not shown)"),
            P::BadName => f.write_str(": bad variable name before = (the line is not shown)"),
            P::NulByte => f.write_str(": line contains a NUL byte"),
        }
    }
}

/// The variables of every file in order (a later one's value wins, as with `env`).
pub(crate) fn read_all(files: &[EnvFile]) -> Result<Vec<(OsString, OsString)>, EnvFileError> {
    let mut vars = Vec::new();
    for file in files {
        vars.extend(read(file)?);
    }
    Ok(vars)
}

fn read(file: &EnvFile) -> Result<Vec<(OsString, OsString)>, EnvFileError> {
    let path = file.path.display().to_string();
    let whole = |problem| EnvFileError {
        path: path.clone(),
        line: None,
        problem,
    };
    let bytes = match read_bytes(&file.path) {
        Err(EnvFileProblem::Open(rustix::io::Errno::NOENT)) if file.optional => return Ok(vec![]),
        Err(problem) => return Err(whole(problem)),
        Ok(bytes) => bytes,
    };
    parse(&bytes).map_err(|(line, problem)| EnvFileError {
        path,
        line: Some(line),
        problem,
    })
}

/// The whole file, if it is a regular one of at most MAX_ENV_FILE_BYTES. The open never
/// waits (a FIFO would block PID 1's loop) and never takes a terminal.
fn read_bytes(path: &std::path::Path) -> Result<Vec<u8>, EnvFileProblem> {
    use rustix::fs::{FileType, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(EnvFileProblem::Open)?;
    let stat = rustix::fs::fstat(&fd).map_err(EnvFileProblem::Open)?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(EnvFileProblem::NotRegular);
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_ENV_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            EnvFileProblem::Read(
                rustix::io::Errno::from_io_error(&e).unwrap_or(rustix::io::Errno::IO),
            )
        })?;
    if bytes.len() as u64 > MAX_ENV_FILE_BYTES {
        return Err(EnvFileProblem::TooLarge);
    }
    Ok(bytes)
}

/// The file's variables in order, or the first bad line's number and problem.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<(OsString, OsString)>, (usize, EnvFileProblem)> {
    let mut vars = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        if let Some(pair) = parse_line(raw).map_err(|problem| (index + 1, problem))? {
            vars.push(pair);
        }
    }
    Ok(vars)
}

/// One line: None for a blank line or a comment.
fn parse_line(raw: &[u8]) -> Result<Option<(OsString, OsString)>, EnvFileProblem> {
    let line = raw.strip_suffix(b"\r").unwrap_or(raw);
    let line = line.trim_ascii_start();
    if line.is_empty() || line.starts_with(b"#") {
        return Ok(None);
    }
    if line.contains(&0) {
        return Err(EnvFileProblem::NulByte);
    }
    let at = line
        .iter()
        .position(|&b| b == b'=')
        .ok_or(EnvFileProblem::NotAssignment)?;
    let (name, value) = (&line[..at], &line[at + 1..]);
    if name.is_empty() || name.iter().any(u8::is_ascii_whitespace) {
        return Err(EnvFileProblem::BadName);
    }
    Ok(Some((
        OsString::from_vec(name.to_vec()),
        OsString::from_vec(value.to_vec()),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(text: &str) -> Vec<(String, String)> {
        parse(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Docker's rule: after the first `=`, everything is the value, quotes and blanks too.
    #[test]
    fn the_value_is_everything_after_the_first_equals_sign_literally() {
        assert_eq!(
            vars("A=1\nB=\"quoted\"\nC= spaced \nD=x=y\nE=\nF='s' # not a comment\n"),
            pairs(&[
                ("A", "1"),
                ("B", "\"quoted\""),
                ("C", " spaced "),
                ("D", "x=y"),
                ("E", ""),
                ("F", "'s' # not a comment"),
            ])
        );
        assert_eq!(vars("G=${HOME}$$\n"), pairs(&[("G", "${HOME}$$")]));
    }

    #[test]
    fn blank_lines_comments_leading_blanks_and_crlf_are_skipped() {
        assert_eq!(
            vars("# c\n\n   \n  # indented\n  A=1\r\nB=2"),
            pairs(&[("A", "1"), ("B", "2")])
        );
    }

    #[test]
    fn a_bad_line_is_named_by_its_number_and_never_shown() {
        assert_eq!(
            parse(b"A=1\ns3cret\n"),
            Err((2, EnvFileProblem::NotAssignment))
        );
        assert_eq!(parse(b"=v\n"), Err((1, EnvFileProblem::BadName)));
        assert_eq!(parse(b"MY KEY=v\n"), Err((1, EnvFileProblem::BadName)));
        assert_eq!(parse(b"\n\nA=x\0y\n"), Err((3, EnvFileProblem::NulByte)));
        let error = EnvFileError {
            path: "/run/a.env".into(),
            line: Some(2),
            problem: EnvFileProblem::NotAssignment,
        };
        assert_eq!(
            error.to_string(),
            "env-file /run/a.env:2: expected NAME=VALUE (the line is not shown)"
        );
    }

    #[test]
    fn a_missing_file_fails_unless_it_is_optional() {
        let file = |optional| EnvFile {
            path: "/no/such/dir/a.env".into(),
            optional,
        };
        assert_eq!(read_all(&[file(true)]), Ok(vec![]));
        let error = read_all(&[file(false)]).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "env-file /no/such/dir/a.env: cannot open: {}",
                rustix::io::Errno::NOENT
            )
        );
        let dir = EnvFile {
            path: std::env::temp_dir(),
            optional: true,
        };
        assert_eq!(
            read_all(&[dir]).unwrap_err().problem,
            EnvFileProblem::NotRegular
        );
    }

    /// The file is read whole at each start: more than 1 MiB is refused before parsing.
    #[test]
    fn an_env_file_may_be_one_mebibyte_and_no_more() {
        let path =
            std::env::temp_dir().join(format!("bundle-init-envfile-big-{}", std::process::id()));
        let file = [EnvFile {
            path: path.clone(),
            optional: false,
        }];
        let line = "A=1\n";
        std::fs::write(&path, line.repeat(1024 * 1024 / line.len())).unwrap();
        let exact = read_all(&file).map(|vars| vars.len());
        std::fs::write(&path, line.repeat(1024 * 1024 / line.len()) + "#").unwrap();
        let over = read_all(&file);
        let _ = std::fs::remove_file(&path);
        assert_eq!(exact, Ok(1024 * 1024 / line.len()));
        assert_eq!(over.unwrap_err().problem, EnvFileProblem::TooLarge);
    }

    #[test]
    fn files_are_read_in_order_each_whole() {
        let dir = std::env::temp_dir();
        let one = dir.join(format!("bundle-init-envfile-1-{}", std::process::id()));
        let two = dir.join(format!("bundle-init-envfile-2-{}", std::process::id()));
        std::fs::write(&one, "A=1\nB=1\n").unwrap();
        std::fs::write(&two, "B=2\n").unwrap();
        let files = [&one, &two].map(|p| EnvFile {
            path: p.clone(),
            optional: false,
        });
        let got = read_all(&files);
        let _ = (std::fs::remove_file(&one), std::fs::remove_file(&two));
        let got: Vec<(String, String)> = got
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k.into_string().unwrap(), v.into_string().unwrap()))
            .collect();
        assert_eq!(got, pairs(&[("A", "1"), ("B", "1"), ("B", "2")]));
    }
}
