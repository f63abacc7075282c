//! The bundle file: a small line-based format, parsed by hand.
//!
//! ```text
//! # a comment line; keys before the first section apply to the whole bundle
//! shutdown-grace = 8s
//! on SIGUSR1 = restart pipelock
//! [egress]
//! run = /bin/egress --routes "/etc/egress/routes file.yaml"
//! ```
//!
//! Every error names the file and line: `PATH:LINE: what is wrong`. The format is
//! documented in docs/bundle-file.md; its tables of keys are checked against `keys`.

use std::fmt;
use std::time::Duration;

use crate::expand::{self, Lookup};
use crate::keys;
use crate::plan::{DaemonSpec, ExitPolicy, GiveUp, Plan, ReadyCheck, Route, Routes, StopOrder};
use crate::signal::{Sig, parse_signal};
use crate::sys::libc_sig;
use crate::time::parse_duration;
use crate::values::check_name;

mod include;
mod instances;
mod problem;
pub(crate) use problem::Problem;

/// Limits that keep hostile input from costing more than a clear error (the longest daemon
/// name and the longest duration are `values::MAX_NAME_LEN` and `time::MAX_DURATION`).
pub(crate) const MAX_FILE_BYTES: u64 = 1024 * 1024;
pub(crate) const MAX_LINE_BYTES: usize = 16 * 1024;
pub(crate) const MAX_DAEMONS: usize = 256;

/// A bundle file, parsed and checked; selection has not been applied yet.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub daemons: Vec<DaemonSpec>,
    pub(crate) routes: Vec<(Sig, RouteSpec)>,
    pub(crate) shutdown_grace: Duration,
    pub(crate) stop_order: StopOrder,
}

/// A route as written: daemon names, resolved to indices when a selection is applied.
#[derive(Clone, Debug)]
pub(crate) struct RouteSpec {
    pub(crate) action: &'static keys::RouteAction,
    /// The daemons it names (none for actions that take none).
    pub(crate) names: Vec<String>,
    /// `forward NAME... as SIGNAL`: the signal they get instead.
    pub(crate) as_signal: Option<Sig>,
}

/// `PATH:LINE: problem` (LINE omitted for whole-file problems).
#[derive(Debug)]
pub struct ConfigError {
    pub(crate) path: String,
    pub(crate) line: Option<usize>,
    pub(crate) problem: Problem,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.path, line, self.problem),
            None => write!(f, "{}: {}", self.path, self.problem),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            Problem::Open(e) => Some(e),
            Problem::Read(e) => Some(e),
            Problem::Value(e) => Some(e),
            Problem::Expand(e) => Some(e),
            Problem::Signal(e) => Some(e),
            Problem::Duration(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads and parses a bundle file and the files it includes, refusing more than
/// MAX_FILE_BYTES in all before reading it whole.
pub(crate) fn load(path: &str) -> Result<Bundle, ConfigError> {
    let bytes = read_limited(path, MAX_FILE_BYTES)?;
    parse(path, &bytes)
}

/// The whole file at `path`, if it is a regular file of at most `budget` bytes.
fn read_limited(path: &str, budget: u64) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let whole = |problem| ConfigError {
        path: path.to_string(),
        line: None,
        problem,
    };
    let file = open_regular(path).map_err(whole)?;
    let mut bytes = Vec::new();
    file.take(budget + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| whole(Problem::Read(e)))?;
    if bytes.len() as u64 > budget {
        return Err(whole(Problem::TooLarge));
    }
    Ok(bytes)
}

/// Opens `path` for reading only if it is a regular file. The open itself never waits (a
/// FIFO with no writer would block it for ever, with every signal already blocked), and
/// never makes a terminal ours; then fstat says what it is.
fn open_regular(path: &str) -> Result<std::fs::File, Problem> {
    use rustix::fs::{FileType, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).map_err(Problem::Open)?;
    let stat = rustix::fs::fstat(&fd).map_err(Problem::Open)?;
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => return Ok(std::fs::File::from(fd)),
        FileType::Directory => "a directory",
        FileType::Fifo => "a FIFO",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Socket => "a socket",
        _ => "not a file",
    };
    Err(Problem::NotRegular(kind))
}

/// What some editors put at the start of a UTF-8 file; invisible in an error message.
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// Parses bundle-file bytes, expanding `${NAME}` from bundle-init's environment, and the
/// files its `include` lines name. `path` is used in error messages and to find includes
/// given as relative paths.
pub fn parse(path: &str, bytes: &[u8]) -> Result<Bundle, ConfigError> {
    parse_with(path, bytes, &expand::process_environment)
}

/// `parse`, expanding variables from `lookup`.
pub(crate) fn parse_with(
    path: &str,
    bytes: &[u8],
    lookup: &dyn Fn(&str) -> Lookup,
) -> Result<Bundle, ConfigError> {
    let mut parser = Parser::new(lookup);
    parser.parse_file(path, bytes)?;
    let budget = MAX_FILE_BYTES.saturating_sub(bytes.len() as u64);
    include::read_includes(&mut parser, path, budget)?;
    parser.finish()
}

/// `parse` touching nothing outside `bytes`, for the fuzz target: variables come from a
/// fixed environment (`PORT=9000`, `EMPTY` set but empty, nothing else), and `include`
/// lines are checked but their files not read.
pub fn parse_alone(path: &str, bytes: &[u8]) -> Result<Bundle, ConfigError> {
    let fixed = |name: &str| match name {
        "PORT" => Lookup::Set("9000".to_string()),
        "EMPTY" => Lookup::Set(String::new()),
        _ => Lookup::Unset,
    };
    let mut parser = Parser::new(&fixed);
    parser.parse_file(path, bytes)?;
    parser.finish()
}

/// A daemon key line of the section being read: its key, its value as written, its place.
type SectionLine = (&'static keys::DaemonKey, String, Place);

/// Where a line is: which file the parser read (its index in `Parser::files`), which line.
#[derive(Clone, Copy, Debug)]
struct Place {
    file: usize,
    line: usize,
}

struct Parser<'a> {
    /// Every file read so far, the main one first; the last is being read.
    files: Vec<String>,
    /// Where `${NAME}` finds its value.
    lookup: &'a dyn Fn(&str) -> Lookup,
    bundle: Bundle,
    /// Where each daemon's `[name]` header is, for errors found at the end.
    section_places: Vec<Place>,
    /// Where each route is, for errors found at the end.
    route_places: Vec<Place>,
    /// Single-valued keys already set in the current section.
    seen_keys: Vec<String>,
    /// Single-valued bundle keys already set, in any file.
    seen_bundle_keys: Vec<String>,
    /// The main file's `include` globs, expanded, in order, with their lines.
    includes: Vec<(String, Place)>,
    /// Past the first `[section]` of the file being read.
    in_section: bool,
    /// The current section's key lines, with their values as written.
    section_lines: Vec<SectionLine>,
    line: usize,
}

impl<'a> Parser<'a> {
    fn new(lookup: &'a dyn Fn(&str) -> Lookup) -> Parser<'a> {
        Parser {
            files: Vec::new(),
            lookup,
            bundle: Bundle {
                daemons: Vec::new(),
                routes: Vec::new(),
                shutdown_grace: Duration::from_secs(8),
                stop_order: StopOrder::Dependencies,
            },
            section_places: Vec::new(),
            route_places: Vec::new(),
            seen_keys: Vec::new(),
            seen_bundle_keys: Vec::new(),
            includes: Vec::new(),
            in_section: false,
            section_lines: Vec::new(),
            line: 0,
        }
    }

    /// Reads one file's lines into the bundle: the main file, then each included one.
    fn parse_file(&mut self, path: &str, bytes: &[u8]) -> Result<(), ConfigError> {
        self.files.push(path.to_string());
        self.in_section = false;
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            self.line = index + 1;
            self.parse_line(raw)?;
        }
        self.close_section()
    }

    fn here(&self) -> Place {
        Place {
            file: self.files.len().saturating_sub(1),
            line: self.line,
        }
    }

    /// `PATH:LINE` of a place, for a message that names another place than its own.
    fn describe(&self, place: Place) -> String {
        format!("{}:{}", self.files[place.file], place.line)
    }

    fn error(&self, problem: impl Into<Problem>) -> ConfigError {
        self.error_at(self.here(), problem.into())
    }

    fn error_at(&self, place: Place, problem: Problem) -> ConfigError {
        ConfigError {
            path: self.files[place.file].clone(),
            line: Some(place.line),
            problem,
        }
    }

    /// A line that starts with `[` but does not end with `]`.
    fn bad_header(&self, text: &str) -> ConfigError {
        let text = text.to_string();
        self.error(if text.contains(']') {
            Problem::TextAfterHeader(text)
        } else {
            Problem::UnclosedHeader(text)
        })
    }

    fn parse_line(&mut self, raw: &[u8]) -> Result<(), ConfigError> {
        if raw.len() > MAX_LINE_BYTES {
            return Err(self.error(Problem::LineTooLong));
        }
        if raw.contains(&0) {
            return Err(self.error(Problem::NulByte));
        }
        if self.line == 1 && raw.starts_with(UTF8_BOM) {
            return Err(self.error(Problem::ByteOrderMark));
        }
        let text = std::str::from_utf8(raw).map_err(|_| self.error(Problem::NotUtf8))?;
        let text = text.strip_suffix('\r').unwrap_or(text).trim();
        if text.is_empty() || text.starts_with('#') {
            return Ok(());
        }
        if let Some(rest) = text.strip_prefix('[') {
            self.close_section()?;
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| self.bad_header(text))?;
            return self.start_section(name.trim());
        }
        let (key, value) = text
            .split_once('=')
            .ok_or_else(|| self.error(Problem::NotKeyValue(text.to_string())))?;
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(self.error(Problem::MissingKey));
        }
        if self.in_section {
            self.daemon_key(key, value)
        } else {
            self.bundle_key(key, value)
        }
    }

    fn start_section(&mut self, name: &str) -> Result<(), ConfigError> {
        check_name(name).map_err(|e| self.error(e))?;
        if let Some(first) = self.bundle.daemons.iter().position(|d| d.is_named(name)) {
            let first = self.describe(self.section_places[first]);
            return Err(self.error(Problem::DaemonTwice(name.to_string(), first)));
        }
        if self.bundle.daemons.len() >= MAX_DAEMONS {
            return Err(self.error(Problem::TooManyDaemons));
        }
        self.bundle.daemons.push(DaemonSpec::new(name, Vec::new()));
        self.section_places.push(self.here());
        self.seen_keys.clear();
        self.in_section = true;
        Ok(())
    }

    fn once(&mut self, key: &str) -> Result<(), ConfigError> {
        let seen = match self.in_section {
            true => &mut self.seen_keys,
            false => &mut self.seen_bundle_keys,
        };
        if seen.iter().any(|k| k == key) {
            return Err(self.error(Problem::KeyTwice(key.to_string())));
        }
        seen.push(key.to_string());
        Ok(())
    }

    fn bundle_key(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        if let Some(signal) = key.strip_prefix("on ").or_else(|| key.strip_prefix("on\t")) {
            let sig = parse_signal(signal).map_err(|e| self.error(e))?;
            let route = self.route(sig, value)?;
            if self.bundle.routes.iter().any(|(s, _)| *s == sig) {
                return Err(self.error(Problem::RoutedTwice(sig)));
            }
            self.bundle.routes.push((sig, route));
            self.route_places.push(self.here());
            return Ok(());
        }
        if !keys::BUNDLE_KEYS.contains(&key) {
            return Err(self.error(match keys::daemon_key(key) {
                Some(_) => Problem::DaemonKeyInBundle(key.to_string()),
                None => Problem::UnknownBundleKey(key.to_string()),
            }));
        }
        match key {
            "shutdown-grace" => {
                self.once(key)?;
                self.bundle.shutdown_grace = parse_duration(value).map_err(|e| self.error(e))?;
            }
            "stop-order" => {
                self.once(key)?;
                self.bundle.stop_order = match value {
                    "dependencies" => StopOrder::Dependencies,
                    "together" => StopOrder::Together,
                    other => return Err(self.error(Problem::StopOrder(other.to_string()))),
                };
            }
            "include" => self.include(value)?,
            // A key in BUNDLE_KEYS without its arm here: unknown until it is given one.
            _ => return Err(self.error(Problem::UnknownBundleKey(key.to_string()))),
        }
        Ok(())
    }

    /// `include = GLOB`, in the main file only: an included file including more would make
    /// the order of daemons, and cycles, a puzzle.
    fn include(&mut self, value: &str) -> Result<(), ConfigError> {
        if self.files.len() > 1 {
            return Err(self.error(Problem::NestedInclude));
        }
        let glob = expand::expand(value, self.lookup).map_err(|e| self.error(e))?;
        include::check_glob(&glob).map_err(|e| self.error(e))?;
        self.includes.push((glob, self.here()));
        Ok(())
    }

    fn route(&self, sig: Sig, value: &str) -> Result<RouteSpec, ConfigError> {
        if matches!(sig.0, libc_sig::KILL | libc_sig::STOP) {
            return Err(self.error(Problem::Uncatchable(sig)));
        }
        if crate::sys::FAULT_SIGNALS.contains(&sig.0) {
            return Err(self.error(Problem::FaultSignal(sig)));
        }
        if sig.0 == libc_sig::CHLD {
            return Err(self.error(Problem::ChildSignal));
        }
        if crate::sys::reserved_by_libc(sig.0) {
            return Err(self.error(Problem::ReservedSignal(sig)));
        }
        let mut words = value.split_whitespace();
        let action = words
            .next()
            .ok_or_else(|| self.error(Problem::NoAction(sig)))?;
        let mut names: Vec<String> = words.map(str::to_string).collect();
        let as_signal = self.as_signal(action, &mut names)?;
        // Engines and orchestrators stop a container with SIGTERM: a route that did
        // something else on it would leave nothing to stop the bundle gracefully.
        if sig.0 == libc_sig::TERM && action != "shutdown" {
            return Err(self.error(Problem::TermNotShutdown));
        }
        let Some(definition) = keys::route_action(action) else {
            return Err(self.error(Problem::UnknownAction(action.to_string())));
        };
        match (definition.takes_names, names.is_empty()) {
            (true, true) => Err(self.error(Problem::NeedsNames(definition.name))),
            (false, false) => Err(self.error(Problem::TakesNoNames(definition.name))),
            _ => Ok(RouteSpec {
                action: definition,
                names,
                as_signal,
            }),
        }
    }

    /// Takes a trailing `as SIGNAL` off a `forward` route's names: `as` second to last,
    /// after at least one name. Anywhere else `as` is a daemon's name, as it always was.
    fn as_signal(&self, action: &str, names: &mut Vec<String>) -> Result<Option<Sig>, ConfigError> {
        let n = names.len();
        if action != "forward" || n < 3 || names[n - 2] != "as" {
            return Ok(None);
        }
        let sig = parse_signal(&names[n - 1]).map_err(|e| self.error(e))?;
        names.truncate(n - 2);
        Ok(Some(sig))
    }

    fn daemon_key(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let Some(definition) = keys::daemon_key(key) else {
            return Err(self.error(self.not_a_daemon_key(key)));
        };
        if !definition.repeatable {
            self.once(key)?;
        }
        // Applied when the section ends (`close_section`): `instances` may come last, and
        // each instance expands the lines with its own number.
        self.section_lines
            .push((definition, value.to_string(), self.here()));
        Ok(())
    }

    fn not_a_daemon_key(&self, key: &str) -> Problem {
        if keys::BUNDLE_KEYS.contains(&key) || key.starts_with("on ") {
            return Problem::BundleKeyInDaemon(key.to_string());
        }
        let section = self.bundle.daemons.last().map_or("", |d| d.name.as_str());
        Problem::UnknownDaemonKey {
            key: key.to_string(),
            section: section.to_string(),
        }
    }

    fn finish(mut self) -> Result<Bundle, ConfigError> {
        self.after_names_every_instance();
        if self.bundle.daemons.is_empty() {
            return Err(ConfigError {
                path: self.files[0].clone(),
                line: None,
                problem: Problem::NoDaemon,
            });
        }
        for (daemon, &line) in self.bundle.daemons.iter().zip(&self.section_places) {
            let name = || daemon.name.clone();
            if daemon.argv.is_empty() {
                return Err(self.error_at(line, Problem::NoRun(name())));
            }
            if daemon.backoff.initial > daemon.backoff.max {
                return Err(self.error_at(line, Problem::DelayOverMax(name())));
            }
            if daemon.backoff.initial.is_zero() {
                return Err(self.error_at(line, Problem::DelayZero(name())));
            }
            if daemon.max_restarts.is_some() && daemon.on_exit != ExitPolicy::Restart {
                return Err(self.error_at(line, Problem::MaxRestartsWithoutRestart(name())));
            }
            if daemon.on_give_up != GiveUp::StopBundle && daemon.max_restarts.is_none() {
                return Err(self.error_at(line, Problem::OnGiveUpWithoutMaxRestarts(name())));
            }
            if let Some(problem) = oneshot_problem(daemon) {
                return Err(self.error_at(line, problem));
            }
            if !daemon.process.groups.is_empty() && daemon.user.is_none() {
                return Err(self.error_at(line, Problem::GroupsWithoutUser(name())));
            }
            if let Some(problem) = liveness_problem(daemon) {
                return Err(self.error_at(line, problem));
            }
        }
        self.check_after()?;
        self.check_route_names()?;
        Ok(self.bundle)
    }

    /// Each `after` names a daemon defined above: start order stays file order, and no
    /// cycle can be written.
    fn check_after(&self) -> Result<(), ConfigError> {
        let daemons = &self.bundle.daemons;
        for (position, (daemon, &line)) in daemons.iter().zip(&self.section_places).enumerate() {
            if let Some(name) = daemon
                .after
                .iter()
                .find(|name| !daemons[..position].iter().any(|d| &d.name == *name))
            {
                return Err(self.error_at(
                    line,
                    Problem::AfterNotAbove {
                        daemon: daemon.name.clone(),
                        name: name.clone(),
                    },
                ));
            }
            // It would wait for one that never becomes ready by itself, then give up.
            if let Some(never) = daemon.after.iter().find(|name| {
                daemon.autostart && daemons.iter().any(|d| &d.name == *name && !d.autostart)
            }) {
                return Err(self.error_at(
                    line,
                    Problem::AfterNeverStarted {
                        daemon: daemon.name.clone(),
                        name: never.clone(),
                    },
                ));
            }
        }
        Ok(())
    }

    fn check_route_names(&self) -> Result<(), ConfigError> {
        for ((sig, route), &line) in self.bundle.routes.iter().zip(&self.route_places) {
            if let Some(name) = route
                .names
                .iter()
                .find(|name| !self.bundle.daemons.iter().any(|d| d.is_named(name)))
            {
                return Err(self.error_at(
                    line,
                    Problem::RouteToUnknown {
                        sig: *sig,
                        name: name.clone(),
                    },
                ));
            }
        }
        Ok(())
    }
}

/// A name in the selection (BUNDLE_INIT_DAEMONS) that is no daemon of the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectionError {
    pub(crate) unknown: String,
    /// The bundle's daemons, in bundle order.
    pub(crate) known: Vec<String>,
}

impl fmt::Display for SelectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown daemon \"{}\" in the selection (known: {})",
            self.unknown,
            self.known.join(", ")
        )
    }
}

impl std::error::Error for SelectionError {}

/// What is wrong with a daemon's keys for its type: a oneshot runs once (no on-exit
/// but its default, no readiness check: its exit 0 is what others wait for), and only a
/// oneshot has a timeout or an on-failure.
fn oneshot_problem(daemon: &DaemonSpec) -> Option<Problem> {
    let name = daemon.name.clone();
    if daemon.oneshot {
        if daemon.on_exit != ExitPolicy::KeepRunning {
            return Some(Problem::OneshotOnExit(name));
        }
        if daemon.ready.is_some() {
            return Some(Problem::OneshotReady(name));
        }
        if daemon.timeout.is_some_and(|t| t.is_zero()) {
            // It would fail at once, every time: a typo, not a wish.
            return Some(Problem::TimeoutZero(name));
        }
    } else if daemon.timeout.is_some() || daemon.on_failure.is_some() {
        return Some(Problem::OnlyForOneshot(name));
    }
    None
}

/// What is wrong with a daemon's liveness keys, if anything.
fn liveness_problem(daemon: &DaemonSpec) -> Option<Problem> {
    let name = daemon.name.clone();
    let live = &daemon.live;
    if live.watchdog.is_some() && daemon.ready != Some(ReadyCheck::SdNotify) {
        return Some(Problem::WatchdogWithoutSdNotify(name));
    }
    if daemon.oneshot && live.is_checked() {
        return Some(Problem::LiveOnOneshot(name));
    }
    let defaults = crate::plan::Liveness::default();
    let tuned = live.every != defaults.every
        || live.timeout != defaults.timeout
        || live.failures != defaults.failures;
    if tuned && !live.is_checked() {
        return Some(Problem::LiveSettingsWithoutCheck(name));
    }
    None
}

/// Applies a selection (`BUNDLE_INIT_DAEMONS=a,b`; None runs all) and resolves routes.
/// Selected daemons keep bundle order; routes to unselected daemons become no-ops.
pub fn select(bundle: &Bundle, selection: Option<&str>) -> Result<Plan, SelectionError> {
    let chosen: Vec<&DaemonSpec> = match selection {
        None => bundle.daemons.iter().collect(),
        Some(list) => {
            let names: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect();
            if let Some(unknown) = names
                .iter()
                .find(|n| !bundle.daemons.iter().any(|d| d.is_named(n)))
            {
                return Err(SelectionError {
                    unknown: unknown.to_string(),
                    known: bundle.daemons.iter().map(|d| d.name.clone()).collect(),
                });
            }
            bundle
                .daemons
                .iter()
                .filter(|d| names.iter().any(|n| d.is_named(n)))
                .collect()
        }
    };
    // A section's name stands for all its instances, in their order.
    let index_of = |names: &[String]| -> Vec<usize> {
        let mut indices = Vec::new();
        for name in names {
            indices.extend((0..chosen.len()).filter(|&i| chosen[i].is_named(name)));
        }
        indices
    };
    let mut routes = Routes::bundle_defaults();
    for (sig, spec) in &bundle.routes {
        let route = match spec.as_signal {
            Some(to) => Route::ForwardAs(index_of(&spec.names), to),
            None => (spec.action.route)(index_of(&spec.names)),
        };
        routes.set(*sig, route);
    }
    Ok(Plan {
        daemons: chosen.into_iter().cloned().collect(),
        routes,
        shutdown_grace: bundle.shutdown_grace,
        stop_leftovers: true,
        success_codes: Vec::new(),
        single_child: false,
        stop_order: bundle.stop_order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{ExitPolicy, ReadyCheck, Route};
    use crate::values::MAX_NAME_LEN;
    use std::ffi::OsString;

    fn parse_str(text: &str) -> Result<Bundle, ConfigError> {
        parse("b.conf", text.as_bytes())
    }

    fn error(text: &str) -> String {
        parse_str(text).unwrap_err().to_string()
    }

    const SEED: &str = include_str!("../tests/bundles/seed.bundle");

    /// Each name in `keys::BUNDLE_KEYS` reaches a parser of its own: with a value no key
    /// takes, the error is about the value (or there is none), never "unknown bundle key".
    #[test]
    fn every_listed_bundle_key_has_a_parser() {
        for key in keys::BUNDLE_KEYS {
            let result = parse_str(&format!("{key} = \u{1}\n[a]\nrun = x\n"));
            if let Err(e) = result {
                assert!(
                    !matches!(e.problem, Problem::UnknownBundleKey(_)),
                    "{key} is in keys::BUNDLE_KEYS but Parser::bundle_key has no arm for it: {e}"
                );
            }
        }
        assert_eq!(
            error("frobnicate = 1\n[a]\nrun = x\n"),
            "b.conf:1: unknown bundle key \"frobnicate\""
        );
    }

    #[test]
    fn the_seed_bundle_parses_to_its_contract() {
        let bundle = parse("seed.bundle", SEED.as_bytes()).unwrap();
        let names: Vec<&str> = bundle.daemons.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["egress", "pipelock", "git-gate", "supervise"]);
        assert_eq!(bundle.shutdown_grace, Duration::from_secs(8));
        let route = |sig: i32| {
            let (_, spec) = bundle.routes.iter().find(|(s, _)| s.0 == sig).unwrap();
            (spec.action.name, spec.names.clone())
        };
        assert_eq!(
            route(libc_sig::HUP),
            ("forward", vec!["egress".to_string()])
        );
        assert_eq!(
            route(libc_sig::USR1),
            ("restart", vec!["pipelock".to_string()])
        );
        assert!(
            bundle.daemons[0].env.unset_prefixes.is_empty(),
            "egress keeps the credentials"
        );
        for d in &bundle.daemons[1..] {
            assert_eq!(
                d.env.unset_prefixes,
                vec![OsString::from("CRED_")],
                "{}",
                d.name
            );
        }
    }

    #[test]
    fn every_key_is_understood() {
        let b = parse_str(
            "shutdown-grace = 5s\non SIGHUP = forward a\non USR2 = ignore\non 3 = forward-all\non INT = shutdown\n\
             [a]\nrun = /bin/a -x \"two words\" 'lit $X' back\\ slash\ncwd = /srv\nenv = A=1\nenv = B = two words\n\
             unset = X Y\nunset-prefix = CRED_\nuser = 1000:100\nstop-signal = INT\ngrace = 1.5s\non-exit = restart\n\
             restart-delay = 100ms\nrestart-delay-max = 2m\nstable-after = 1h\nprefix-output = no\nsignal-group = yes\n\
             no-new-privs = yes\n",
        )
        .unwrap();
        let a = &b.daemons[0];
        let argv: Vec<&str> = a.argv.iter().map(|s| s.to_str().unwrap()).collect();
        assert_eq!(argv, ["/bin/a", "-x", "two words", "lit $X", "back slash"]);
        assert_eq!(
            a.env.set,
            vec![("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
        assert_eq!(a.env.unset, vec![OsString::from("X"), OsString::from("Y")]);
        assert_eq!(a.user, Some((1000, 100)));
        assert_eq!(a.stop_signal, Sig(libc_sig::INT));
        assert_eq!(a.grace, Duration::from_millis(1500));
        assert_eq!(a.on_exit, ExitPolicy::Restart);
        assert_eq!(a.backoff.initial, Duration::from_millis(100));
        assert_eq!(a.backoff.max, Duration::from_secs(120));
        assert_eq!(a.backoff.stable_after, Duration::from_secs(3600));
        assert!(!a.prefix_output && a.signal_group && a.no_new_privs);
        assert_eq!(b.routes.len(), 4);
    }

    /// What is actually wrong, not a symptom: a comment after a header, an invisible BOM.
    #[test]
    fn header_comments_and_a_bom_are_named() {
        assert_eq!(
            error("[a] # x\nrun = x\n"),
            "b.conf:1: section header \"[a] # x\" has text after its closing ] (a comment must be on a line of its own)"
        );
        assert_eq!(
            error("\u{feff}[a]\nrun = x\n"),
            "b.conf:1: the file starts with a UTF-8 byte order mark (BOM, bytes EF BB BF): save it without one"
        );
    }

    /// `forward NAME... as SIGNAL` sends another signal; "as" belongs only there, last.
    #[test]
    fn a_forward_route_can_send_another_signal() {
        let plan = select(
            &parse(
                "b",
                b"on SIGHUP = forward b as QUIT\n[a]\nrun = x\n[b]\nrun = y\n",
            )
            .unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(
            plan.routes.get(Sig(libc_sig::HUP)),
            &Route::ForwardAs(vec![1], Sig(libc_sig::QUIT))
        );
        // Elsewhere "as" is a name, and a daemon may be called that.
        let named_as = "on HUP = forward a as\non USR1 = restart as\n[a]\nrun = x\n[as]\nrun = y\n";
        let plan = select(&parse("b", named_as.as_bytes()).unwrap(), None).unwrap();
        assert_eq!(
            plan.routes.get(Sig(libc_sig::HUP)),
            &Route::Forward(vec![0, 1])
        );
        assert!(
            error("on HUP = restart a as QUIT\n[a]\nrun = x\n").contains("unknown daemon \"as\"")
        );
        assert!(error("on HUP = forward a as SIGWAT\n[a]\nrun = x\n").starts_with("b.conf:1: "));
    }

    /// Fault signals keep their default action: a route on one could never fire.
    #[test]
    fn routes_on_fault_signals_are_refused() {
        for fault in ["SEGV", "BUS", "ILL", "FPE", "TRAP", "SYS", "ABRT"] {
            assert_eq!(
                error(&format!(
                    "# faults\non SIG{fault} = restart a\n[a]\nrun = x\n"
                )),
                format!(
                    "b.conf:2: SIG{fault} reports a fault in bundle-init itself and keeps its default action, so it cannot be routed"
                )
            );
        }
    }

    /// Whatever a bundle says, SIGTERM stops it: engines and orchestrators send nothing else.
    #[test]
    fn a_route_on_sigterm_other_than_shutdown_is_refused() {
        for action in [
            "forward a as QUIT",
            "forward a",
            "ignore",
            "restart a",
            "reload",
        ] {
            assert_eq!(
                error(&format!("on SIGTERM = {action}\n[a]\nrun = x\n")),
                "b.conf:1: SIGTERM always shuts the bundle down (engines stop containers with it); to stop a daemon with another signal, give it stop-signal",
                "{action}"
            );
        }
        assert!(parse_str("on TERM = shutdown\n[a]\nrun = x\n").is_ok());
    }

    /// Signals the C library keeps for itself never reach the signalfd: a route on one
    /// would never fire (and, not blocked, the signal would kill a subreaper).
    #[test]
    fn routes_on_signals_the_c_library_reserves_are_refused() {
        let reserved: Vec<i32> = (32..=34)
            .filter(|&n| crate::sys::reserved_by_libc(n))
            .collect();
        assert!(
            reserved.contains(&32) && reserved.contains(&33),
            "{reserved:?}"
        );
        for n in reserved {
            let found = error(&format!("on {n} = forward a\n[a]\nrun = x\n"));
            assert!(found.contains("is reserved by the C library"), "{found}");
        }
        assert!(!crate::sys::reserved_by_libc(35) && !crate::sys::reserved_by_libc(15));
    }

    fn with_port(name: &str) -> Lookup {
        match name {
            "PORT" => Lookup::Set("9000".into()),
            "DIR" => Lookup::Set("/srv/app".into()),
            _ => Lookup::Unset,
        }
    }

    fn parse_env(text: &str) -> Result<Bundle, ConfigError> {
        parse_with("b.conf", text.as_bytes(), &with_port)
    }

    /// run, env, cwd, user, ready and env-file are expanded before they are parsed.
    #[test]
    fn variables_expand_in_the_keys_that_take_them() {
        let b = parse_env(
            "[a]\nrun = app --port ${PORT:-8080} --name \"${NAME:-my app}\"\ncwd = ${DIR}\n\
             env = LISTEN=:${PORT}\nuser = ${UID:-1}:${GID:-2}\nready = tcp:127.0.0.1:${PORT}\n\
             env-file = ${DIR}/app.env\n",
        )
        .unwrap();
        let a = &b.daemons[0];
        let argv: Vec<&str> = a.argv.iter().map(|w| w.to_str().unwrap()).collect();
        assert_eq!(argv, ["app", "--port", "9000", "--name", "my app"]);
        assert_eq!(a.cwd.as_deref(), Some(std::path::Path::new("/srv/app")));
        assert_eq!(a.env.set, vec![("LISTEN".into(), ":9000".into())]);
        assert_eq!(a.user, Some((1, 2)));
        assert_eq!(a.ready, Some(ReadyCheck::Tcp("127.0.0.1:9000".into())));
        assert_eq!(
            a.env.files[0].path,
            std::path::Path::new("/srv/app/app.env")
        );
        let unset = parse_env("[a]\nrun = app ${PORT:-8080}\n").unwrap();
        let default = parse_with("b.conf", b"[a]\nrun = app ${PORT:-8080}\n", &|_| {
            Lookup::Unset
        });
        assert_eq!(unset.daemons[0].argv[1], "9000");
        assert_eq!(default.unwrap().daemons[0].argv[1], "8080");
    }

    #[test]
    fn an_unset_variable_is_an_error_naming_the_line_and_the_variable() {
        let error = |text: &str| parse_env(text).unwrap_err().to_string();
        assert_eq!(
            error("[a]\nrun = x\nenv = DB=${DB_URL}\n"),
            "b.conf:3: variable DB_URL is not set (${DB_URL:-DEFAULT} gives a default)"
        );
        assert_eq!(
            error("[a]\nrun = x ${TOKEN:?mount the token}\n"),
            "b.conf:2: variable TOKEN is not set: mount the token"
        );
        assert!(error("[a]\nrun = x ${PORT\n").starts_with("b.conf:2: \"${\" has no closing }"));
    }

    /// Only the keys that take variables expand them; `$` stays literal elsewhere, and a
    /// `$` not followed by `{` or `$` is literal everywhere.
    #[test]
    fn other_keys_and_lone_dollars_are_left_as_written() {
        let b = parse_env("[a]\nrun = sh -c 'echo $HOME $$'\n").unwrap();
        assert_eq!(b.daemons[0].argv[2], "echo $HOME $");
        assert!(
            parse_env("[a]\nrun = x\ngrace = ${PORT}\n")
                .unwrap_err()
                .to_string()
                .contains("bad duration")
        );
        assert!(
            parse_env("on SIGHUP = restart ${PORT}\n[a]\nrun = x\n")
                .unwrap_err()
                .to_string()
                .contains("unknown daemon \"${PORT}\"")
        );
    }

    /// `--check` prints the expanded plan, escaped so that it reads back the same.
    #[test]
    fn the_printed_plan_is_expanded_and_reads_back_the_same() {
        let bundle = parse_env("[a]\nrun = app ${PORT} $${PORT} $HOME\nenv = A=$$$$\n").unwrap();
        let plan = select(&bundle, None).unwrap();
        let printed = keys::describe_plan("b.conf", &plan);
        assert!(
            printed.contains("run = app 9000 $${PORT} $HOME\n"),
            "{printed}"
        );
        assert!(printed.contains("env = A=$$$\n"), "{printed}");
        let body: String = printed
            .lines()
            .filter(|l| l.starts_with('[') || l.starts_with("run") || l.starts_with("env"))
            .map(|l| format!("{l}\n"))
            .collect();
        let again = parse_with("b.conf", body.as_bytes(), &|_| Lookup::Unset).unwrap();
        assert_eq!(again.daemons, bundle.daemons);
    }

    #[test]
    fn liveness_keys_parse_and_the_plan_reads_back_the_same() {
        let text = "[web]\nrun = nginx\nlive = http:127.0.0.1:8080/healthz\nlive-every = 5s\n\
                    live-timeout = 500ms\nlive-failures = 2\n\
                    [redis]\nrun = redis-server\nready = sd-notify\nwatchdog = 30s\n\
                    [db]\nrun = postgres\nlive = unix:/run/postgresql/.s.PGSQL.5432\n";
        let bundle = parse_str(text).unwrap();
        let web = &bundle.daemons[0].live;
        assert_eq!(
            web.check.as_ref().map(ToString::to_string).as_deref(),
            Some("http:127.0.0.1:8080/healthz")
        );
        assert_eq!(
            (web.every, web.timeout, web.failures),
            (Duration::from_secs(5), Duration::from_millis(500), 2)
        );
        assert_eq!(bundle.daemons[1].ready, Some(ReadyCheck::SdNotify));
        assert_eq!(
            bundle.daemons[1].live.watchdog,
            Some(Duration::from_secs(30))
        );
        let printed = keys::describe_plan("b.conf", &select(&bundle, None).unwrap());
        for line in [
            "live = http:127.0.0.1:8080/healthz",
            "live-every = 5s",
            "live-timeout = 500ms",
            "live-failures = 2",
            "ready = sd-notify",
            "watchdog = 30s",
            "live = unix:/run/postgresql/.s.PGSQL.5432",
        ] {
            assert!(printed.contains(&format!("{line}\n")), "{line}: {printed}");
        }
        // The daemons' sections (the lines above them describe the bundle's routes).
        let body: String = printed
            .lines()
            .skip_while(|l| !l.starts_with('['))
            .filter(|l| l.starts_with('[') || l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let again = parse_str(&body).unwrap();
        assert_eq!(again.daemons, bundle.daemons);
    }

    #[test]
    fn liveness_keys_that_cannot_work_are_refused_naming_the_daemon() {
        assert_eq!(
            error("[a]\nrun = x\nwatchdog = 10s\n"),
            "b.conf:1: [a] watchdog needs ready = sd-notify: the pings come on its notify socket"
        );
        assert_eq!(
            error("[a]\nrun = x\nlive-every = 1s\n"),
            "b.conf:1: [a] live-every, live-timeout and live-failures need live = CHECK (or watchdog)"
        );
        assert_eq!(
            error("[a]\nrun = x\ntype = oneshot\nlive = tcp:127.0.0.1:1\n"),
            "b.conf:1: [a] a oneshot runs to completion: live and watchdog do not apply (timeout does)"
        );
        assert_eq!(
            error("[a]\nrun = x\nlive = tcp:db:5432\n"),
            "b.conf:3: live check \"tcp:db:5432\" needs a numeric address, e.g. tcp:127.0.0.1:8080"
        );
        assert_eq!(
            error("[a]\nrun = x\nlive = file:/run/up\n"),
            "b.conf:3: bad live check \"file:/run/up\" (expected tcp:HOST:PORT, unix:/PATH or http:HOST:PORT/PATH)"
        );
        assert_eq!(
            error("[a]\nrun = x\nlive = tcp:127.0.0.1:1\nlive-every = 0s\n"),
            "b.conf:4: \"0s\" is too short: at least 1ms"
        );
        assert_eq!(
            error("[a]\nrun = x\nlive = tcp:127.0.0.1:1\nlive-failures = 0\n"),
            "b.conf:4: live-failures must be a whole number from 1 to 1000, not \"0\""
        );
    }

    /// A scratch directory with these files, removed when dropped.
    struct Files(std::path::PathBuf);

    impl Files {
        fn new(name: &str, files: &[(&str, &str)]) -> Files {
            let dir =
                std::env::temp_dir().join(format!("bundle-init-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            for (path, text) in files {
                let path = dir.join(path);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
            Files(dir)
        }

        fn path(&self, name: &str) -> String {
            self.0.join(name).to_string_lossy().into_owned()
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Included files join the main one after it, each glob's matches in name order: their
    /// daemons may wait for the main file's, and their routes and bundle keys count.
    #[test]
    fn included_files_join_the_bundle_in_name_order() {
        let files = Files::new(
            "include",
            &[
                (
                    "main.bundle",
                    "include = conf.d/*.bundle\ninclude = /no/such/dir/*.bundle\n[web]\nrun = web\n",
                ),
                (
                    "conf.d/20-metrics.bundle",
                    "[metrics]\nrun = m\nafter = worker\n",
                ),
                (
                    "conf.d/10-worker.bundle",
                    "on SIGUSR1 = restart worker\nshutdown-grace = 3s\n[worker]\nrun = w\nafter = web\n",
                ),
                ("conf.d/notes.txt", "not a bundle\n"),
            ],
        );
        let bundle = load(&files.path("main.bundle")).unwrap();
        let names: Vec<&str> = bundle.daemons.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["web", "worker", "metrics"]);
        assert_eq!(bundle.shutdown_grace, Duration::from_secs(3));
        assert_eq!(bundle.routes.len(), 1);
    }

    #[test]
    fn an_error_in_an_included_file_names_that_file_and_line() {
        let files = Files::new(
            "include-errors",
            &[
                (
                    "main.bundle",
                    "include = conf.d/*\nshutdown-grace = 1s\n[web]\nrun = web\n",
                ),
                ("conf.d/a", "[worker]\nrun = w\n"),
                ("conf.d/b", "\n[web]\nrun = again\n"),
            ],
        );
        let (main, b) = (files.path("main.bundle"), files.path("conf.d/b"));
        assert_eq!(
            load(&main).unwrap_err().to_string(),
            format!("{b}:2: daemon \"web\" is defined twice (first at {main}:3)")
        );
        std::fs::write(&b, "shutdown-grace = 2s\n").unwrap();
        assert_eq!(
            load(&main).unwrap_err().to_string(),
            format!("{b}:1: \"shutdown-grace\" is set twice")
        );
        std::fs::write(files.path("not-a-dir"), "").unwrap();
        std::fs::write(&main, "include = not-a-dir/*\n[web]\nrun = web\n").unwrap();
        assert!(
            load(&main)
                .unwrap_err()
                .to_string()
                .starts_with(&format!("{main}:1: include: cannot list ")),
            "the include line is named"
        );
        std::fs::write(
            &main,
            "include = conf.d/*\nshutdown-grace = 1s\n[web]\nrun = web\n",
        )
        .unwrap();
        std::fs::write(&b, "include = more/*\n").unwrap();
        assert!(
            load(&main)
                .unwrap_err()
                .to_string()
                .starts_with(&format!("{b}:1: \"include\" only works"))
        );
        std::fs::write(&b, "[late]\nrun = x\nstop-signal = WAT\n").unwrap();
        assert!(
            load(&main)
                .unwrap_err()
                .to_string()
                .starts_with(&format!("{b}:3: unknown signal"))
        );
        std::fs::write(&b, "[late]\nrun = x\nafter = nope\n").unwrap();
        assert!(
            load(&main)
                .unwrap_err()
                .to_string()
                .starts_with(&format!("{b}:1: [late] after"))
        );
        assert!(
            parse_str("include = /etc/*/x\n[a]\nrun = x\n")
                .unwrap_err()
                .to_string()
                .starts_with("b.conf:1: include \"/etc/*/x\": * and ? only work in the last part")
        );
        assert!(error("[a]\nrun = x\ninclude = y\n").contains("\"include\" is a bundle key"));
    }

    /// The 1 MiB and the 256 daemons are the whole bundle's, included files and all.
    #[test]
    fn the_limits_count_the_included_files_too() {
        let daemons = |from: usize, n: usize| -> String {
            (from..from + n)
                .map(|i| format!("[d{i}]\nrun = x\n"))
                .collect()
        };
        let third = "#\n".repeat(150 * 1024);
        let files = Files::new(
            "include-limits",
            &[
                (
                    "main.bundle",
                    &format!("include = *.inc\n{}{third}", daemons(0, 200)),
                ),
                ("a.inc", &format!("{}{third}", daemons(200, 56))),
                ("b.inc", &third),
            ],
        );
        let main = files.path("main.bundle");
        assert_eq!(load(&main).unwrap().daemons.len(), 256);
        std::fs::write(files.path("c.inc"), daemons(256, 1)).unwrap();
        assert_eq!(
            load(&main).unwrap_err().to_string(),
            format!("{}:1: more than 256 daemons", files.path("c.inc"))
        );
        std::fs::write(files.path("c.inc"), &third).unwrap();
        assert_eq!(
            load(&main).unwrap_err().to_string(),
            format!(
                "{}: the bundle file with its includes is larger than 1024 KiB",
                files.path("c.inc")
            )
        );
    }

    #[test]
    fn process_settings_parse_and_groups_need_a_user() {
        let b = parse_str(
            "[a]\nrun = x\nuser = 1:2\ngroups = 4,27\numask = 0027\nnice = 10\n\
             limit-nofile = 1024:4096\nlimit-core = unlimited\noom-score-adj = -500\n",
        )
        .unwrap();
        let settings = &b.daemons[0].process;
        assert_eq!(settings.groups, [4, 27]);
        assert_eq!((settings.umask, settings.nice), (Some(0o027), Some(10)));
        assert_eq!(
            settings.limit(crate::plan::Resource::Nofile),
            Some(crate::plan::Rlimit {
                soft: 1024,
                hard: 4096
            })
        );
        assert_eq!(settings.oom_score_adj, Some(-500));
        assert_eq!(
            error("[a]\nrun = x\ngroups = 4\n"),
            "b.conf:1: [a] groups needs user: supplementary groups are set with the change of user"
        );
        assert_eq!(
            error("[a]\nrun = x\nlimit-nofile = 10:5\n"),
            "b.conf:3: limit-nofile \"10:5\": the soft limit is above the hard one"
        );
        assert!(error("[a]\nrun = x\nlimit-rttime = 1\n").contains("unknown key \"limit-rttime\""));
        assert!(error("[a]\nrun = x\numask = 999\n").starts_with("b.conf:3: umask \"999\""));
        assert!(error("[a]\nrun = x\nnice = 20\n").starts_with("b.conf:3: nice \"20\""));
        assert!(error("[a]\nrun = x\noom-score-adj = x\n").starts_with("b.conf:3: oom-score-adj"));
        assert!(error("[a]\nrun = x\nnice = 1\nnice = 2\n").contains("\"nice\" is set twice"));
    }

    /// The fuzz target's parse reads no file and no real variable.
    #[test]
    fn parse_alone_touches_nothing_outside_its_bytes() {
        let b = parse_alone("f", b"include = /e*/x\n[a]\nrun = x\n");
        assert!(
            b.unwrap_err()
                .to_string()
                .contains("only work in the last part")
        );
        let b = parse_alone("f", b"include = /*\n[a]\nrun = x ${PORT} ${HOME:-none}\n").unwrap();
        let argv: Vec<&str> = b.daemons[0]
            .argv
            .iter()
            .map(|w| w.to_str().unwrap())
            .collect();
        assert_eq!(argv, ["x", "9000", "none"]);
        assert_eq!(b.daemons.len(), 1, "no file under / was read");
    }

    #[test]
    fn instances_make_numbered_daemons_each_with_its_number() {
        let b = parse_str(
            "on SIGUSR1 = restart worker\n[db]\nrun = d\n\
             [worker]\nrun = w --listen :80${BUNDLE_INIT_INSTANCE}\nafter = db\ninstances = 3\n\
             [web]\nrun = x\nafter = worker\n",
        )
        .unwrap();
        let names: Vec<&str> = b.daemons.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["db", "worker-1", "worker-2", "worker-3", "web"]);
        let second = &b.daemons[2];
        assert_eq!(second.argv, ["w", "--listen", ":802"]);
        assert_eq!(
            second.env.set,
            vec![("BUNDLE_INIT_INSTANCE".into(), "2".into())]
        );
        assert_eq!(second.after, ["db"]);
        assert_eq!(b.daemons[4].after, ["worker-1", "worker-2", "worker-3"]);
        let plan = select(&b, None).unwrap();
        assert_eq!(
            plan.routes.get(Sig(libc_sig::USR1)),
            &Route::Restart(vec![1, 2, 3])
        );
        let names = |selection| -> Vec<String> {
            let plan = select(&b, Some(selection)).unwrap();
            plan.daemons.into_iter().map(|d| d.name).collect()
        };
        assert_eq!(names("worker"), ["worker-1", "worker-2", "worker-3"]);
        assert_eq!(names("worker-2,db"), ["db", "worker-2"]);
    }

    #[test]
    fn instances_are_checked_like_daemons_of_their_own() {
        assert_eq!(
            error("[w]\nrun = x\ninstances = 65\n"),
            "b.conf:3: instances \"65\" must be a number from 1 to 64"
        );
        assert_eq!(
            error("[w-2]\nrun = x\n[w]\nrun = x\ninstances = 2\n"),
            "b.conf:3: daemon \"w-2\" is defined twice (first at b.conf:1)"
        );
        assert_eq!(
            error("[w]\nrun = x\ninstances = 2\n[w]\nrun = y\n"),
            "b.conf:4: daemon \"w\" is defined twice (first at b.conf:1)"
        );
        let long = "n".repeat(31);
        assert!(error(&format!("[{long}]\nrun = x\ninstances = 2\n")).contains("longer than 32"));
        let many = format!(
            "[a]\nrun = x\ninstances = 64\n{}",
            "[b]\nrun = x\ninstances = 64\n"
        );
        let many = format!("{many}{}", many.replace("[a]", "[c]").replace("[b]", "[d]"));
        assert_eq!(parse_str(&many).unwrap().daemons.len(), 256);
        assert!(error(&format!("{many}[e]\nrun = x\n")).ends_with("more than 256 daemons"));
        // Outside a section with instances, the variable is bundle-init's like any other.
        assert!(
            parse_with("b.conf", b"[a]\nrun = x ${BUNDLE_INIT_INSTANCE}\n", &|_| {
                Lookup::Unset
            })
            .unwrap_err()
            .to_string()
            .starts_with("b.conf:2: variable BUNDLE_INIT_INSTANCE is not set")
        );
    }

    #[test]
    fn errors_name_the_file_and_line() {
        assert_eq!(
            error("[a]\nrun = x\nfoo = 1\n"),
            "b.conf:3: unknown key \"foo\" in [a]"
        );
        assert_eq!(
            error("[a]\nrun = x\n[a]\nrun = y\n"),
            "b.conf:3: daemon \"a\" is defined twice (first at b.conf:1)"
        );
        assert_eq!(
            error("[a]\nrun = x\nstop-signal = SIGFOO\n"),
            "b.conf:3: unknown signal \"SIGFOO\""
        );
        assert!(error("[a]\nrun = x\ngrace = 8\n").starts_with("b.conf:3: bad duration \"8\""));
        assert_eq!(
            error("[a]\nrun = x \"open\n"),
            "b.conf:2: unterminated \" quote"
        );
        assert_eq!(error("# c\n\n[a]\n"), "b.conf:3: [a] has no \"run\" line");
        assert_eq!(
            error("on USR1 = restart nobody\n[a]\nrun = x\n"),
            "b.conf:1: route for SIGUSR1 names unknown daemon \"nobody\""
        );
        assert_eq!(
            error("on KILL = shutdown\n"),
            "b.conf:1: SIGKILL cannot be caught, so it cannot be routed"
        );
        assert_eq!(error("on CHLD = ignore\n").split(':').nth(1), Some("1"));
        assert!(error("on HUP = reboot\n").contains("unknown route action \"reboot\""));
        assert!(error("on HUP = restart\n").contains("needs at least one daemon name"));
        assert!(error("on HUP = shutdown now\n").contains("takes no daemon names"));
        assert!(
            error("on HUP = ignore\non SIGHUP = shutdown\n")
                .starts_with("b.conf:2: SIGHUP is routed twice")
        );
        assert!(error("run = x\n").contains("belongs in a [daemon] section"));
        assert!(error("[a]\nrun = x\nshutdown-grace = 1s\n").contains("bundle key"));
        assert!(error("[a b]\n").contains("may only use"));
        assert!(error("[a\n").contains("no closing ]"));

        assert!(error("[a]\nrun = x\nuser = root\n").contains("numeric UID:GID"));
        assert!(error("[a]\nrun = x\non-exit = sometimes\n").contains("unknown on-exit"));
        assert!(
            error("[a]\nrun = x\ngrace = 1s\ngrace = 2s\n")
                .starts_with("b.conf:4: \"grace\" is set twice")
        );
        assert!(error("[a]\nrun = x\nprefix-output = maybe\n").contains("expected yes or no"));
        assert!(error("[a]\nrun = x\ncwd = srv\n").contains("absolute"));
        assert!(error("[a]\nrun = x\nenv = NOVALUE\n").contains("NAME=VALUE"));
        assert!(
            error("[a]\nrun = x\nrestart-delay = 1m\nrestart-delay-max = 1s\n")
                .starts_with("b.conf:1:")
        );
        // From the hostile review: 0s made a crash loop a busy fork/exec loop.
        assert_eq!(
            error("[a]\nrun = x\non-exit = restart\nrestart-delay = 0s\nrestart-delay-max = 0s\n"),
            "b.conf:1: [a] restart-delay must be at least 1ms: 0s would restart a crash loop without a pause"
        );
        assert!(error("just words\n").contains("expected \"key = value\""));
        assert_eq!(error(""), "b.conf: defines no daemon");
    }

    #[test]
    fn a_oneshot_has_a_timeout_and_an_on_failure_and_nothing_a_daemon_alone_has() {
        let ok = parse(
            "b.conf",
            b"[m]\nrun = x\ntype = oneshot\ntimeout = 30s\non-failure = keep-running\n",
        )
        .unwrap();
        let m = &ok.daemons[0];
        assert!(m.oneshot);
        assert_eq!(m.timeout, Some(Duration::from_secs(30)));
        assert_eq!(m.on_failure, Some(crate::plan::OnFailure::KeepRunning));
        assert_eq!(
            error("[m]\nrun = x\ntype = oneshot\non-exit = restart\n"),
            "b.conf:1: [m] a oneshot runs once: on-exit does not apply (on-failure says what its failure does)"
        );
        assert_eq!(
            error("[m]\nrun = x\ntype = oneshot\nready = file:/tmp/x\n"),
            "b.conf:1: [m] a oneshot has no ready check: what starts after it waits for its exit 0"
        );
        assert_eq!(
            error("[a]\nrun = x\nautostart = no\n[b]\nrun = y\nafter = a\n"),
            "b.conf:4: [b] after \"a\": it has autostart = no, so it is never ready at start (give [b] autostart = no too)"
        );
        assert_eq!(
            error("[m]\nrun = x\ntype = oneshot\ntimeout = 0s\n"),
            "b.conf:1: [m] timeout must be at least 1ms: 0s would fail the task at once"
        );
        assert_eq!(
            error("[a]\nrun = x\non-exit = restart\non-give-up = stay-down\n"),
            "b.conf:1: [a] on-give-up needs max-restarts: without it the daemon is never given up"
        );
        assert_eq!(
            error("[d]\nrun = x\ntimeout = 5s\n"),
            "b.conf:1: [d] timeout and on-failure are for type = oneshot"
        );
        assert_eq!(
            error("[m]\nrun = x\ntype = job\n"),
            "b.conf:3: unknown type \"job\" (expected daemon or oneshot)"
        );
        assert_eq!(
            error("[m]\nrun = x\ntype = oneshot\non-failure = shrug\n"),
            "b.conf:4: unknown on-failure \"shrug\" (expected stop-bundle or keep-running)"
        );
    }

    #[test]
    fn giving_up_needs_a_count_a_known_policy_and_a_daemon_that_is_restarted() {
        let ok = parse(
            "b.conf",
            b"[a]\nrun = x\non-exit = restart\nmax-restarts = 3\non-give-up = stay-down\n",
        )
        .unwrap();
        assert_eq!(ok.daemons[0].max_restarts, Some(3));
        assert_eq!(ok.daemons[0].on_give_up, crate::plan::GiveUp::StayDown);
        assert_eq!(
            error("[a]\nrun = x\nmax-restarts = 3\n"),
            "b.conf:1: [a] max-restarts needs on-exit = restart: this daemon is never restarted"
        );
        assert_eq!(
            error("[a]\nrun = x\non-exit = restart\nmax-restarts = -1\n"),
            "b.conf:4: max-restarts must be a whole number from 0 to 1000000, not \"-1\""
        );
        assert_eq!(
            error("[a]\nrun = x\non-exit = restart\non-give-up = shrug\n"),
            "b.conf:4: unknown on-give-up \"shrug\" (expected stop-bundle or stay-down)"
        );
    }

    #[test]
    fn hostile_input_gets_a_clear_error() {
        assert!(error("[a]\nrun = x\0y\n").starts_with("b.conf:2: line contains a NUL byte"));
        assert!(
            parse("b.conf", b"[a]\nrun = \xff\n")
                .unwrap_err()
                .to_string()
                .starts_with("b.conf:2: line is not valid UTF-8")
        );
        let long = format!("[a]\nrun = {}\n", "x".repeat(MAX_LINE_BYTES + 1));
        assert!(error(&long).starts_with("b.conf:2: line is longer than"));
        let many: String = (0..=MAX_DAEMONS)
            .map(|i| format!("[d{i}]\nrun = x\n"))
            .collect();
        assert!(error(&many).contains(&format!("more than {MAX_DAEMONS} daemons")));
        assert!(error("[a]\nrun = x\ngrace = 99999999h\n").contains("longer than 24h"));
        assert!(error("[a]\nrun = x\ngrace = 1e300s\n").contains("bad duration"));
        assert!(error("[a]\nrun = x\nstop-signal = 65\n").contains("out of range"));
        assert!(error("[a]\nrun = x\nstop-signal = -1\n").contains("out of range"));
        assert!(error(&format!("[{}]\n", "n".repeat(MAX_NAME_LEN + 1))).contains("longer than"));
    }

    /// The limits are the documented numbers, and each is inclusive: written out here, not
    /// taken from the constants, so that changing one is a visible decision.
    #[test]
    fn limits_are_the_documented_numbers_inclusive() {
        let line_of = |len: usize| format!("[a]\nrun = {}\n", "x".repeat(len - "run = ".len()));
        assert!(parse_str(&line_of(16 * 1024)).is_ok());
        assert_eq!(
            error(&line_of(16 * 1024 + 1)),
            "b.conf:2: line is longer than 16384 bytes"
        );
        let daemons =
            |n: usize| -> String { (0..n).map(|i| format!("[d{i}]\nrun = x\n")).collect() };
        assert_eq!(parse_str(&daemons(256)).unwrap().daemons.len(), 256);
        assert!(error(&daemons(257)).ends_with("more than 256 daemons"));
        assert!(parse_str(&format!("[{}]\nrun = x\n", "n".repeat(32))).is_ok());
        assert!(
            error(&format!("[{}]\nrun = x\n", "n".repeat(33)))
                .contains("longer than 32 characters")
        );
    }

    /// A file that cannot be read says why, in the system's words.
    #[test]
    fn a_missing_bundle_file_says_why_it_cannot_be_opened() {
        let path = "/no/such/dir/b.conf";
        assert_eq!(
            load(path).unwrap_err().to_string(),
            format!(
                "{path}: cannot open: {}",
                std::io::Error::from_raw_os_error(libc::ENOENT)
            )
        );
        let dir = std::env::temp_dir();
        let dir = dir.to_str().unwrap();
        assert_eq!(
            load(dir).unwrap_err().to_string(),
            format!("{dir}: is a directory, not a regular file")
        );
    }

    /// A file of exactly 1 MiB loads; one byte more is refused before it is parsed.
    #[test]
    fn a_bundle_file_may_be_one_mebibyte_and_no_more() {
        let path = std::env::temp_dir().join(format!("bundle-init-size-{}", std::process::id()));
        let path = path.to_str().unwrap();
        let head = "[a]\nrun = x\n";
        let padding = |total: usize| "#\n".repeat((total - head.len()) / 2);
        std::fs::write(path, format!("{head}{}", padding(1024 * 1024))).unwrap();
        let exact = load(path);
        std::fs::write(path, format!("{head}{}#", padding(1024 * 1024))).unwrap();
        let over = load(path);
        let _ = std::fs::remove_file(path);
        assert_eq!(exact.unwrap().daemons.len(), 1);
        assert_eq!(
            over.unwrap_err().to_string(),
            format!("{path}: file is larger than 1024 KiB")
        );
    }

    #[test]
    fn readiness_keys_parse_and_after_must_point_upwards() {
        let b = parse_str(
            "[db]\nrun = d\nready = tcp:127.0.0.1:5432\n[sock]\nrun = s\nready = unix:/run/s.sock\n\
             [flag]\nrun = f\nready = file:/tmp/up\n[n]\nrun = n\nready = notify:3\n\
             [app]\nrun = a\nafter = db sock\nready-timeout = 5s\n",
        )
        .unwrap();
        assert_eq!(
            b.daemons[0].ready,
            Some(ReadyCheck::Tcp("127.0.0.1:5432".into()))
        );
        assert_eq!(
            b.daemons[1].ready,
            Some(ReadyCheck::Unix("/run/s.sock".into()))
        );
        assert_eq!(b.daemons[2].ready, Some(ReadyCheck::File("/tmp/up".into())));
        assert_eq!(b.daemons[3].ready, Some(ReadyCheck::Notify(3)));
        assert_eq!(
            b.daemons[4].after,
            vec!["db".to_string(), "sock".to_string()]
        );
        assert_eq!(b.daemons[4].ready_timeout, Duration::from_secs(5));
        assert_eq!(
            error("[a]\nrun = x\nafter = b\n[b]\nrun = y\n"),
            "b.conf:1: [a] after \"b\": not a daemon defined above it"
        );
        assert!(error("[a]\nrun = x\nready = http://x\n").contains("bad ready check"));
        assert!(error("[a]\nrun = x\nready = tcp:host\n").contains("numeric address"));
        assert!(error("[a]\nrun = x\nready = tcp:db.internal:5432\n").contains("numeric address"));
        assert!(error("[a]\nrun = x\nready = notify:1\n").contains("3 to 1023"));
        assert!(error("[a]\nrun = x\nready = file:relative\n").contains("bad ready check"));
    }

    #[test]
    fn crlf_line_endings_and_comments_are_fine() {
        let b = parse_str("# top\r\n[a]\r\n  # indented comment\r\nrun = /bin/a\r\n").unwrap();
        assert_eq!(b.daemons[0].argv, vec![OsString::from("/bin/a")]);
    }

    /// Each rule of the small value parsers, with an input only that rule rejects.
    #[test]
    fn every_rule_of_the_value_parsers_rejects_its_input() {
        assert_eq!(
            error("frobnicate = 1\n"),
            "b.conf:1: unknown bundle key \"frobnicate\""
        );
        assert!(
            error("[a]\nrun = x\nunset = A=B\n").contains("bad environment variable name \"A=B\"")
        );
        assert!(error("[a]\nrun = x\nenv = =v\n").contains("bad environment variable name \"\""));
        assert!(parse_str("[a]\nrun = x\nunset = A_B\n").is_ok());
        assert!(
            error("[a]\nrun = x\ngrace = 0000000000001s\n").contains("finer than a nanosecond")
        );
        assert!(error("[a]\nrun = x\nuser = 4294967295:0\n").contains("must be numeric"));
        assert!(error("[a]\nrun = x\nuser = 0:4294967295\n").contains("must be numeric"));
        assert!(parse_str("[a]\nrun = x\nuser = 4294967294:4294967294\n").is_ok());
    }

    #[test]
    fn selection_keeps_bundle_order_and_rejects_typos() {
        let bundle = parse("seed.bundle", SEED.as_bytes()).unwrap();
        let plan = select(&bundle, Some(" supervise , pipelock ")).unwrap();
        let names: Vec<&str> = plan.daemons.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["pipelock", "supervise"]);
        assert_eq!(
            plan.routes.get(Sig(libc_sig::USR1)),
            &Route::Restart(vec![0])
        );
        assert_eq!(
            plan.routes.get(Sig(libc_sig::HUP)),
            &Route::Forward(vec![]),
            "egress is not selected"
        );
        assert_eq!(plan.routes.get(Sig(libc_sig::TERM)), &Route::Shutdown);
        assert_eq!(plan.routes.get(Sig(libc_sig::USR2)), &Route::ForwardAll);
        assert!(
            select(&bundle, Some("pipelok"))
                .unwrap_err()
                .to_string()
                .contains("unknown daemon \"pipelok\"")
        );
        assert!(
            select(&bundle, Some("")).unwrap().daemons.is_empty(),
            "zero selected is valid"
        );
        assert_eq!(select(&bundle, None).unwrap().daemons.len(), 4);
    }
}
