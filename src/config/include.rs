//! `include = GLOB`: more files read as part of the bundle, after the main file, each
//! glob's matches in name order. A glob has `*` (any run of characters) and `?` (one
//! character) in its last path component only; a relative one is taken from the main
//! file's directory. Names starting with `.` only match a pattern that does too, so an
//! editor's `.web.bundle.swp` is never read. A glob matching nothing, or whose directory
//! does not exist, adds nothing: a base image may include a drop-in directory that only
//! derived images fill.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{ConfigError, Parser, Problem, read_limited};

/// Refuses wildcards outside the last component, when the `include` line is read.
pub(super) fn check_glob(glob: &str) -> Result<(), Problem> {
    let (dir, _) = split(glob);
    if dir.contains(['*', '?']) {
        return Err(Problem::IncludeWildcardInDirectory(glob.to_string()));
    }
    Ok(())
}

/// Reads every included file into `parser`; `budget` is what is left of the bundle's one
/// MAX_FILE_BYTES after the main file.
pub(super) fn read_includes(
    parser: &mut Parser<'_>,
    main: &str,
    mut budget: u64,
) -> Result<(), ConfigError> {
    let base = Path::new(main).parent().unwrap_or(Path::new("."));
    for (glob, place) in std::mem::take(&mut parser.includes) {
        let paths = matches(base, &glob).map_err(|problem| parser.error_at(place, problem))?;
        for path in paths {
            let path = path.to_string_lossy().into_owned();
            let bytes = read_limited(&path, budget).map_err(|e| too_large_in_all(e, &path))?;
            budget -= bytes.len() as u64;
            parser.parse_file(&path, &bytes)?;
        }
    }
    Ok(())
}

/// A file over what is left of the budget is over the whole bundle's limit.
fn too_large_in_all(error: ConfigError, path: &str) -> ConfigError {
    match error.problem {
        Problem::TooLarge => ConfigError {
            path: path.to_string(),
            line: None,
            problem: Problem::IncludesTooLarge,
        },
        _ => error,
    }
}

/// (directory, last component) of a glob; the directory is "" for a bare name.
fn split(glob: &str) -> (&str, &str) {
    match glob.rfind('/') {
        Some(at) => (&glob[..=at], &glob[at + 1..]),
        None => ("", glob),
    }
}

/// The paths `glob` matches, sorted by name; a directory that cannot be listed for
/// another reason than not existing is a problem of the `include` line.
fn matches(base: &Path, glob: &str) -> Result<Vec<PathBuf>, Problem> {
    let (dir, pattern) = split(glob);
    let dir = match dir.is_empty() {
        true => base.to_path_buf(),
        false => base.join(dir),
    };
    let listing_error = |errno| Problem::IncludeDirectory(dir.display().to_string(), errno);
    let Some(listing) = open_directory(&dir).map_err(listing_error)? else {
        return Ok(vec![]);
    };
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(listing_error)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." && matches_name(pattern.as_bytes(), name) {
            names.push(std::ffi::OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort();
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// The directory's entries, or None when it does not exist.
fn open_directory(dir: &Path) -> Result<Option<rustix::fs::Dir>, rustix::io::Errno> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::open(dir, flags, Mode::empty()) {
        Ok(fd) => rustix::fs::Dir::new(fd).map(Some),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(errno) => Err(errno),
    }
}

/// Whether `name` matches `pattern` (`*`, `?`, any other byte itself); a leading `.` of
/// the name must be matched by a `.` in the pattern.
fn matches_name(pattern: &[u8], name: &[u8]) -> bool {
    if name.starts_with(b".") && !pattern.starts_with(b".") {
        return false;
    }
    wildcard(pattern, name)
}

/// Matching with backtracking to the last `*` only: linear for one star, and at most
/// pattern × name steps for more, whatever the input.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_matches_any_run_and_a_question_mark_one_character() {
        let yes = |p: &str, n: &str| matches_name(p.as_bytes(), n.as_bytes());
        assert!(yes("*.bundle", "web.bundle"));
        assert!(!yes("*.bundle", ".bundle"), "a hidden name");
        assert!(yes(".*", ".hidden"));
        assert!(yes("*", "x"));
        assert!(!yes("*.bundle", "web.bundle.swp"));
        assert!(yes("web-?.bundle", "web-1.bundle"));
        assert!(!yes("web-?.bundle", "web-12.bundle"));
        assert!(yes("a*b*c", "aXbYbZc"));
        assert!(!yes("a*b*c", "aXbYbZ"));
        assert!(yes("exact", "exact"));
        assert!(!yes("exact", "exactly"));
        assert!(yes("**", ""));
    }

    #[test]
    fn wildcards_belong_in_the_last_component() {
        assert!(check_glob("/etc/bundle-init/conf.d/*.bundle").is_ok());
        assert!(check_glob("conf.d/web.bundle").is_ok());
        assert!(matches!(
            check_glob("/etc/*/x.bundle"),
            Err(Problem::IncludeWildcardInDirectory(_))
        ));
    }

    #[test]
    fn matches_come_in_name_order_and_a_missing_directory_matches_nothing() {
        let dir = std::env::temp_dir().join(format!("bundle-init-glob-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        for name in [
            "20-b.bundle",
            "10-a.bundle",
            ".10-a.bundle.swp",
            "notes.txt",
        ] {
            std::fs::write(dir.join("conf.d").join(name), "").unwrap();
        }
        std::fs::write(dir.join("plain"), "").unwrap();
        let found = matches(&dir, "conf.d/*.bundle");
        let missing = matches(&dir, "nowhere/*.bundle");
        let not_a_directory = matches(&dir, "plain/*.bundle");
        let _ = std::fs::remove_dir_all(&dir);
        let names: Vec<String> = found
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["10-a.bundle", "20-b.bundle"]);
        assert_eq!(missing.unwrap(), Vec::<PathBuf>::new());
        assert!(matches!(
            not_a_directory,
            Err(Problem::IncludeDirectory(_, rustix::io::Errno::NOTDIR))
        ));
    }
}
