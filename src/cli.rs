//! The command line: tini's options with tini's meaning, plus bundle mode.
//!
//! Options stop at the program: `bundle-init -g app -v` passes `-v` to `app`.

use std::ffi::OsString;
use std::time::Duration;

use crate::signal::{Sig, parse_signal};
use crate::time::{DurationError, parse_duration};

pub(crate) const USAGE: &str = "\
Usage: bundle-init [OPTIONS] [--] PROGRAM [ARGS...]     run one child (tini-compatible)
       bundle-init [OPTIONS] --bundle PATH               supervise the daemons of a bundle file
       bundle-init --check --bundle PATH                 validate a bundle file and print its plan
       bundle-init status [--json] | health | restart NAME... | signal NAME SIGNAL
       bundle-init stop NAME... | start NAME... | reload [--dry-run]
                                                         ask the running bundle-init (e.g. podman exec)

Options:
  -s                   require becoming a child subreaper (done automatically when not PID 1)
  -g                   send signals to the child's process group
  -e CODE              report exit code CODE as 0 (repeatable)
  -p SIGNAL            have SIGNAL delivered to bundle-init when its parent dies
  -v                   more log output (repeatable)
  -w                   warn about reaped zombies that were not the child
  -r, --rewrite FROM:TO  forward signal FROM to the child as signal TO (repeatable);
                       TO = 0 drops it (dumb-init's option; names or numbers)
  --stop-others GRACE  when the child exits, TERM the remaining processes and KILL them
                       after GRACE (e.g. 2s) instead of leaving them
  --bundle PATH        run the bundle file PATH (or set BUNDLE_INIT_BUNDLE)
  --check              with --bundle: validate and print the plan, start nothing
  -l                   show the license
  -h, --help           show this help
  --version            show the version

Environment:
  BUNDLE_INIT_SUBREAPER, TINI_SUBREAPER                  like -s when set
  BUNDLE_INIT_KILL_PROCESS_GROUP, TINI_KILL_PROCESS_GROUP  like -g when set
  BUNDLE_INIT_VERBOSITY, TINI_VERBOSITY                  log level (0-3, default 1)
  BUNDLE_INIT_BUNDLE                                     like --bundle
  BUNDLE_INIT_DAEMONS                                    comma-separated daemons to run
  BUNDLE_INIT_CONTROL                                    control socket: @abstract-name or a path

Exit codes: the child's code (128+N if signal N killed it); 2 bad usage or bundle file;
126 program not executable; 127 program not found; 1 bundle-init could not set itself up.
Subcommands: 0 done; 1 refused, failed or unhealthy; 2 bad usage; 3 no bundle-init reachable.

Reference (in the source, docs/README.md lists every page): docs/bundle-file.md (every key
and route), docs/command-line.md, docs/control.md, docs/containers.md.
";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `status`, `restart`, `stop`, `start`, `signal`, `health`, `reload`: a request for a
    /// running bundle-init.
    Control(String),
    Help,
    Version,
    License,
    Run(Options),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    pub(crate) require_subreaper: bool,
    pub(crate) signal_group: bool,
    pub(crate) success_codes: Vec<u8>,
    pub(crate) parent_death_signal: Option<Sig>,
    pub(crate) verbosity: u8,
    pub(crate) warn_orphans: bool,
    pub(crate) stop_others: Option<Duration>,
    /// `--rewrite FROM:TO`: forward FROM as TO, or drop it (None).
    pub(crate) rewrites: Vec<(Sig, Option<Sig>)>,
    pub(crate) bundle: Option<String>,
    /// The first flag given that only means something for a single child (`-g`, `-e`,
    /// `-r`, `--stop-others`): refused with `--bundle` rather than silently ignored.
    pub(crate) single_child_flag: Option<&'static str>,
    pub(crate) check: bool,
    pub(crate) program: Vec<OsString>,
}

/// Why the command line was refused; `Display` is the message, followed by the usage line.
#[derive(Debug)]
pub enum UsageError {
    Flag(lexopt::Error),
    Verbosity { name: &'static str, text: String },
    ExitCode(String),
    ParentDeathSignal(crate::signal::SignalError),
    StopOthers(DurationError),
    Rewrite(String, RewriteError),
    SingleChildFlagInBundle(&'static str),
    ProgramAndBundle,
    CheckWithoutBundle,
    NoProgram,
    Subcommand(String),
}

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use UsageError as E;
        match self {
            E::Flag(e) => e.fmt(f),
            E::Verbosity { name, text } => {
                write!(f, "{name}=\"{text}\" is not a verbosity level (0-3)")
            }
            E::ExitCode(text) => write!(f, "-e {text}: exit code must be 0-255"),
            E::ParentDeathSignal(e) => write!(f, "-p: {e}"),
            E::StopOthers(e) => write!(f, "--stop-others: {e}"),
            E::Rewrite(text, why) => write!(f, "--rewrite {text}: {why}"),
            E::SingleChildFlagInBundle(flag) => {
                write!(
                    f,
                    "{flag} is for single-child mode; in a bundle, {}",
                    bundle_instead(flag)
                )
            }
            E::ProgramAndBundle => f.write_str(
                "give either a program or --bundle (BUNDLE_INIT_BUNDLE sets it too; empty unsets it), not both",
            ),
            E::CheckWithoutBundle => f.write_str("--check needs --bundle PATH"),
            E::NoProgram => f.write_str("no program given (see --help)"),
            E::Subcommand(request) => write!(
                f,
                "usage: bundle-init status [--json] | restart NAME... | stop NAME... | start NAME... | signal NAME SIGNAL | health (got \"{request}\")"
            ),
        }
    }
}

impl std::error::Error for UsageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UsageError::Flag(e) => Some(e),
            UsageError::ParentDeathSignal(e) => Some(e),
            UsageError::StopOthers(e) => Some(e),
            UsageError::Rewrite(_, e) => Some(e),
            _ => None,
        }
    }
}

/// Why a `--rewrite FROM:TO` was refused (the message after `--rewrite FROM:TO: `).
#[derive(Debug)]
pub enum RewriteError {
    NoColon,
    Signal(crate::signal::SignalError),
    NeverForwarded(Sig),
    Twice(Sig),
}

impl std::fmt::Display for RewriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RewriteError::NoColon => f.write_str("expected FROM:TO, e.g. TERM:QUIT"),
            RewriteError::Signal(e) => e.fmt(f),
            RewriteError::NeverForwarded(sig) => {
                write!(f, "{sig} is never forwarded, so it cannot be rewritten")
            }
            RewriteError::Twice(sig) => write!(f, "{sig} is rewritten twice"),
        }
    }
}

impl std::error::Error for RewriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RewriteError::Signal(e) => Some(e),
            _ => None,
        }
    }
}

impl From<lexopt::Error> for UsageError {
    fn from(e: lexopt::Error) -> UsageError {
        UsageError::Flag(e)
    }
}

/// Parses arguments (without argv[0]); `env` looks up environment variables.
pub fn parse(
    args: Vec<OsString>,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Command, UsageError> {
    let mut options = options_from_env(env)?;
    // A subcommand must come first: `bundle-init -- status` runs a program called status.
    if let Some(first) = args.first()
        && let Some(request) = control_request(first, &args[1..])
    {
        return request.map(Command::Control);
    }
    let mut parser = lexopt::Parser::from_args(args);
    loop {
        match next_flag(&mut parser, &mut options)? {
            Flag::Applied => {}
            Flag::Ends(command) => return Ok(command),
            Flag::NoMore => return check_combination(options),
        }
    }
}

/// The defaults the environment sets (tini's variables and bundle-init's own).
fn options_from_env(env: &dyn Fn(&str) -> Option<OsString>) -> Result<Options, UsageError> {
    let set = |names: [&str; 2]| names.iter().any(|n| env(n).is_some());
    let mut options = Options {
        require_subreaper: set(["BUNDLE_INIT_SUBREAPER", "TINI_SUBREAPER"]),
        signal_group: set(["BUNDLE_INIT_KILL_PROCESS_GROUP", "TINI_KILL_PROCESS_GROUP"]),
        verbosity: 1,
        ..Options::default()
    };
    for name in ["TINI_VERBOSITY", "BUNDLE_INIT_VERBOSITY"] {
        if let Some(value) = env(name) {
            let text = value.to_string_lossy();
            options.verbosity = text
                .trim()
                .parse::<u8>()
                .map_err(|_| UsageError::Verbosity {
                    name,
                    text: text.to_string(),
                })?
                .min(9);
        }
    }
    if let Some(path) = env("BUNDLE_INIT_BUNDLE").filter(|p| !p.is_empty()) {
        options.bundle = Some(path.to_string_lossy().into_owned());
    }
    Ok(options)
}

/// The value of the flag just read, as text.
fn flag_value(parser: &mut lexopt::Parser) -> Result<String, UsageError> {
    Ok(parser.value()?.to_string_lossy().into_owned())
}

/// What reading one argument did.
enum Flag {
    Applied,
    /// Help, version or license: nothing else matters.
    Ends(Command),
    NoMore,
}

/// Reads and applies the next argument.
fn next_flag(parser: &mut lexopt::Parser, options: &mut Options) -> Result<Flag, UsageError> {
    use lexopt::prelude::*;
    let Some(arg) = parser.next()? else {
        return Ok(Flag::NoMore);
    };
    match arg {
        Short('h') | Long("help") => return Ok(Flag::Ends(Command::Help)),
        Long("version") => return Ok(Flag::Ends(Command::Version)),
        Short('l') => return Ok(Flag::Ends(Command::License)),
        Short('s') => options.require_subreaper = true,
        Short('g') => {
            options.signal_group = true;
            options.single_child_flag.get_or_insert("-g");
        }
        Short('v') => options.verbosity = options.verbosity.saturating_add(1).min(9),
        Short('w') => options.warn_orphans = true,
        Short('e') => {
            let text = flag_value(parser)?;
            let code = text
                .parse::<u8>()
                .map_err(|_| UsageError::ExitCode(text.clone()))?;
            options.success_codes.push(code);
            options.single_child_flag.get_or_insert("-e");
        }
        Short('p') => {
            let text = flag_value(parser)?;
            let sig = parse_signal(&text).map_err(UsageError::ParentDeathSignal)?;
            options.parent_death_signal = Some(sig);
        }
        Long("stop-others") => {
            let text = flag_value(parser)?;
            let grace = parse_duration(&text).map_err(UsageError::StopOthers)?;
            options.stop_others = Some(grace);
            options.single_child_flag.get_or_insert("--stop-others");
        }
        Short('r') | Long("rewrite") => {
            let text = flag_value(parser)?;
            let (from, to) = parse_rewrite(&text)?;
            if options.rewrites.iter().any(|&(f, _)| f == from) {
                return Err(UsageError::Rewrite(text, RewriteError::Twice(from)));
            }
            options.rewrites.push((from, to));
            options.single_child_flag.get_or_insert("--rewrite");
        }
        Long("bundle") => options.bundle = Some(flag_value(parser)?),
        Long("check") => options.check = true,
        Value(program) => {
            options.program.push(program);
            options.program.extend(parser.raw_args()?);
        }
        _ => return Err(arg.unexpected().into()),
    }
    Ok(Flag::Applied)
}

/// `FROM:TO` with dumb-init's meaning: signal FROM is forwarded as TO; TO = 0 drops it.
/// FROM must be a signal bundle-init can catch and forward.
fn parse_rewrite(text: &str) -> Result<(Sig, Option<Sig>), UsageError> {
    let bad = |why| UsageError::Rewrite(text.to_string(), why);
    let (from, to) = text
        .split_once(':')
        .ok_or_else(|| bad(RewriteError::NoColon))?;
    let from = parse_signal(from).map_err(|e| bad(RewriteError::Signal(e)))?;
    if !crate::plan::Routes::can_route(from) {
        return Err(bad(RewriteError::NeverForwarded(from)));
    }
    let to = match to.trim() {
        to if to.parse::<u32>() == Ok(0) => None,
        to => Some(parse_signal(to).map_err(|e| bad(RewriteError::Signal(e)))?),
    };
    Ok((from, to))
}

/// What a bundle file says instead of a single-child flag.
fn bundle_instead(flag: &str) -> &'static str {
    match flag {
        "-g" => "give a daemon signal-group = yes",
        "-e" => {
            "the exit code follows the shutdown rule (docs/bundle-file.md, \"Shutdown and the exit code\")"
        }
        "--stop-others" => "leftovers are always swept within shutdown-grace",
        _ => "give a daemon its stop-signal or route a signal with \"forward NAME as SIGNAL\"",
    }
}

/// A program or a bundle, not both and not neither.
fn check_combination(options: Options) -> Result<Command, UsageError> {
    // A program and a bundle first: then a single-child flag is not the mistake.
    if options.bundle.is_some() && !options.program.is_empty() {
        return Err(UsageError::ProgramAndBundle);
    }
    if let (Some(_), Some(flag)) = (&options.bundle, options.single_child_flag) {
        return Err(UsageError::SingleChildFlagInBundle(flag));
    }
    match (&options.bundle, options.program.is_empty()) {
        (None, true) if options.check => Err(UsageError::CheckWithoutBundle),
        (None, true) => Err(UsageError::NoProgram),
        _ => Ok(Command::Run(options)),
    }
}

/// The client subcommands. A program that happens to be called `status` runs with
/// `bundle-init -- status`.
const SUBCOMMANDS: [&str; 7] = [
    "status", "restart", "stop", "start", "signal", "health", "reload",
];

/// Some(request) when `first` is a subcommand (checked with the server's own parser).
fn control_request(first: &OsString, rest: &[OsString]) -> Option<Result<String, UsageError>> {
    let word = first.to_str()?;
    if !SUBCOMMANDS.contains(&word) {
        return None;
    }
    let mut words = vec![word.to_string()];
    words.extend(rest.iter().map(|a| a.to_string_lossy().into_owned()));
    let request = words.join(" ");
    Some(match crate::control::parse_request(request.as_bytes()) {
        Ok(_) => Ok(request),
        Err(_) => Err(UsageError::Subcommand(request)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse` with the error as the message a user sees.
    fn parse_text(
        args: Vec<OsString>,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Command, String> {
        parse(args, env).map_err(|e| e.to_string())
    }

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn rewrite_takes_from_to_with_names_or_numbers_and_zero_drops() {
        let o = run(&["-r", "TERM:QUIT", "--rewrite", "10:0", "app"]).unwrap();
        assert_eq!(
            o.rewrites,
            [
                (
                    Sig(crate::sys::libc_sig::TERM),
                    Some(Sig(crate::sys::libc_sig::QUIT))
                ),
                (Sig(crate::sys::libc_sig::USR1), None)
            ]
        );
        assert_eq!(
            run(&["-r", "TERM", "app"]).unwrap_err(),
            "--rewrite TERM: expected FROM:TO, e.g. TERM:QUIT"
        );
        assert_eq!(
            run(&["-r", "KILL:TERM", "app"]).unwrap_err(),
            "--rewrite KILL:TERM: SIGKILL is never forwarded, so it cannot be rewritten"
        );
        assert!(
            run(&["-r", "TERM:WAT", "app"])
                .unwrap_err()
                .starts_with("--rewrite TERM:WAT: ")
        );
        assert_eq!(run(&["-r", "HUP:00", "app"]).unwrap().rewrites[0].1, None);
        assert_eq!(
            run(&["-r", "TERM:QUIT", "-r", "15:0", "app"]).unwrap_err(),
            "--rewrite 15:0: SIGTERM is rewritten twice"
        );
        assert!(
            run(&["-r", "TERM:QUIT", "--bundle", "b"])
                .unwrap_err()
                .starts_with("--rewrite is for single-child mode")
        );
    }

    /// Flags that mean nothing in a bundle are refused there, not silently ignored; the
    /// environment's tini variables stay harmless defaults.
    #[test]
    fn single_child_flags_are_refused_with_a_bundle() {
        for (flags, refused) in [
            (&["-g", "--bundle", "b"][..], "-g"),
            (&["--bundle", "b", "-e", "143"], "-e"),
            (
                &["--stop-others", "2s", "-g", "--bundle", "b"],
                "--stop-others",
            ),
        ] {
            let error = run(flags).unwrap_err();
            assert!(
                error.starts_with(&format!(
                    "{refused} is for single-child mode; in a bundle, "
                )),
                "{error}"
            );
        }
        // A bundle from the environment (an image's ENV) and a program: that is the mistake.
        let from_env = |name: &str| (name == "BUNDLE_INIT_BUNDLE").then(|| OsString::from("/b"));
        let error = parse_text(args(&["-r", "TERM:QUIT", "--", "app"]), &from_env).unwrap_err();
        assert!(
            error.starts_with("give either a program or --bundle (BUNDLE_INIT_BUNDLE"),
            "{error}"
        );
        assert!(
            run(&["-r", "33:TERM", "app"])
                .unwrap_err()
                .contains("cannot be rewritten")
        );
        let env = |name: &str| (name == "TINI_KILL_PROCESS_GROUP").then(|| OsString::from("1"));
        let options = parse_text(args(&["--bundle", "b"]), &env);
        assert!(matches!(options, Ok(Command::Run(o)) if o.signal_group));
    }

    fn run(list: &[&str]) -> Result<Options, String> {
        match parse_text(args(list), &|_| None)? {
            Command::Run(o) => Ok(o),
            other => panic!("expected Run, got {other:?}"),
        }
    }

    #[test]
    fn tini_options_keep_tini_meanings() {
        let o = run(&[
            "-g", "-e", "143", "-e", "1", "-p", "SIGKILL", "-vv", "-w", "-s", "--", "app", "x",
        ])
        .unwrap();
        assert!(o.signal_group && o.warn_orphans && o.require_subreaper);
        assert_eq!(o.success_codes, vec![143, 1]);
        assert_eq!(o.parent_death_signal, Some(Sig(9)));
        assert_eq!(o.verbosity, 3);
        assert_eq!(o.program, args(&["app", "x"]));
    }

    #[test]
    fn options_after_the_program_belong_to_the_program() {
        let o = run(&["-g", "app", "-v", "--help"]).unwrap();
        assert_eq!(o.program, args(&["app", "-v", "--help"]));
        assert_eq!(o.verbosity, 1);
    }

    #[test]
    fn environment_variables_set_defaults() {
        let env = |name: &str| match name {
            "TINI_SUBREAPER" | "BUNDLE_INIT_KILL_PROCESS_GROUP" => Some(OsString::from("")),
            "TINI_VERBOSITY" => Some(OsString::from("3")),
            _ => None,
        };
        let Command::Run(o) = parse_text(args(&["app"]), &env).unwrap() else {
            panic!()
        };
        assert!(o.require_subreaper && o.signal_group);
        assert_eq!(o.verbosity, 3);
        let bad = |name: &str| (name == "BUNDLE_INIT_VERBOSITY").then(|| OsString::from("loud"));
        assert!(
            parse_text(args(&["app"]), &bad)
                .unwrap_err()
                .contains("BUNDLE_INIT_VERBOSITY")
        );
    }

    #[test]
    fn bad_usage_is_an_error_with_a_reason() {
        assert!(run(&[]).unwrap_err().contains("no program"));
        assert!(run(&["-e", "256", "app"]).unwrap_err().contains("0-255"));
        assert!(
            run(&["-p", "SIGNOPE", "app"])
                .unwrap_err()
                .contains("SIGNOPE")
        );
        assert!(run(&["-x", "app"]).unwrap_err().contains("-x"));
        assert!(
            run(&["--bundle", "b", "app"])
                .unwrap_err()
                .contains("not both")
        );
        assert!(run(&["--check"]).unwrap_err().contains("--bundle"));
        assert!(
            run(&["--stop-others", "soon", "app"])
                .unwrap_err()
                .contains("duration")
        );
        assert!(run(&["-e"]).is_err());
    }

    #[test]
    fn subcommands_become_control_requests() {
        assert_eq!(
            parse_text(args(&["status", "--json"]), &|_| None),
            Ok(Command::Control("status --json".into()))
        );
        assert_eq!(
            parse_text(args(&["restart", "a", "b"]), &|_| None),
            Ok(Command::Control("restart a b".into()))
        );
        assert_eq!(
            parse_text(args(&["signal", "a", "HUP"]), &|_| None),
            Ok(Command::Control("signal a HUP".into()))
        );
        assert!(
            parse_text(args(&["restart"]), &|_| None)
                .unwrap_err()
                .contains("usage")
        );
        assert!(parse_text(args(&["signal", "a"]), &|_| None).is_err());
        // After --, a program of that name runs.
        assert_eq!(run(&["--", "status"]).unwrap().program, args(&["status"]));
    }

    /// The help names the reference, and every docs/ page it names is there.
    #[test]
    fn the_help_names_the_reference_pages_that_exist() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let named: Vec<&str> = USAGE
            .split(|c: char| c.is_whitespace() || c == ',' || c == '(' || c == ')')
            .filter(|w| w.starts_with("docs/"))
            .map(|w| w.trim_end_matches('.'))
            .collect();
        assert!(named.contains(&"docs/bundle-file.md"), "{named:?}");
        assert!(named.contains(&"docs/README.md"), "{named:?}");
        for page in named {
            assert!(
                root.join(page).is_file(),
                "--help names {page}, which is not there"
            );
        }
    }

    #[test]
    fn help_version_and_license_win() {
        assert_eq!(parse_text(args(&["-h"]), &|_| None), Ok(Command::Help));
        assert_eq!(
            parse_text(args(&["--version"]), &|_| None),
            Ok(Command::Version)
        );
        assert_eq!(parse_text(args(&["-l"]), &|_| None), Ok(Command::License));
    }

    #[test]
    fn bundle_path_from_flag_or_environment() {
        assert_eq!(
            run(&["--bundle", "/b"]).unwrap().bundle.as_deref(),
            Some("/b")
        );
        let env = |name: &str| (name == "BUNDLE_INIT_BUNDLE").then(|| OsString::from("/e"));
        let Command::Run(o) = parse_text(args(&["--check"]), &env).unwrap() else {
            panic!()
        };
        assert!(o.check);
        assert_eq!(o.bundle.as_deref(), Some("/e"));
    }
}
