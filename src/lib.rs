//! bundle-init: a tiny static PID 1 that reaps, forwards signals and supervises a bundle
//! of named daemons. `main.rs` only collects argv; everything starts in [`run`].

// The public surface is what the rest of this repository uses from outside the crate:
// - `run`: main.rs;
// - `cli::parse`, `config::{parse, parse_alone, select}`, `keys::describe_plan` and the
//   `plan` types they pass around: the fuzz targets;
// - `time::parse_duration`, `values::split_words`, `signal`, and `sys`'s signal calls: the
//   fuzz targets, the tests and bundle-testd (which shares the crate's signal handling
//   rather than copying it).
// Everything else is `pub(crate)`: the supervisor and the modules that carry out its actions.
mod bundle;
pub mod cli;
pub mod config;
mod control;
mod envfile;
mod expand;
mod http;
mod id;
mod json;
pub mod keys;
mod live;
pub(crate) mod logline;
mod members;
mod notify;
mod output;
pub mod plan;
mod ready;
mod reload;
mod runtime;
pub mod signal;
mod spawn;
mod supervisor;
pub mod sys;
pub mod time;
pub mod values;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bundle::{BundleSource, LoadError};
use cli::{Command, Options};
use plan::{DaemonSpec, ExitPolicy, Plan, Route, Routes};
use spawn::ChildSetup;
use supervisor::{Level, Supervisor};
use sys::{FAULT_SIGNALS, SigSet};

/// Documented exit codes of bundle-init's own failures.
pub const EXIT_SETUP_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

pub const VERSION_LINE: &str = concat!(
    "bundle-init ",
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("BUNDLE_INIT_COMMIT"),
    ")"
);

const LICENSE: &str = "\
bundle-init is released under the MIT License.

Permission is hereby granted, free of charge, to any person obtaining a copy of this
software and associated documentation files (the \"Software\"), to deal in the Software
without restriction, including without limitation the rights to use, copy, modify, merge,
publish, distribute, sublicense, and/or sell copies of the Software, and to permit persons
to whom the Software is furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED,
INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR
PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE
FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR
OTHERWISE, ARISING FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER
DEALINGS IN THE SOFTWARE.
";

/// One line on stderr, ignoring any failure to write it (a closed stderr must not matter).
pub fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "bundle-init: {line}");
}

/// One of bundle-init's own lines before its loop runs, once the bundle file said how
/// lines look: a JSON record with `log-format = json`, after the time with `log-time = yes`.
fn say_in(style: plan::LogStyle, level: Level, line: std::fmt::Arguments<'_>) {
    if !style.wants_time() {
        return say(line);
    }
    let time = logline::rfc3339(logline::wall_clock_ms());
    let text = line.to_string();
    let mut out = Vec::new();
    if style.json {
        logline::json_own_line(&mut out, level, &text, None, &time);
    } else {
        let stamp = std::str::from_utf8(&time).unwrap_or_default();
        out = format!("{stamp} bundle-init: {text}\n").into_bytes();
    }
    let _ = std::io::stderr().write_all(&out);
}

fn print(text: &str) -> u8 {
    let _ = std::io::stdout().write_all(text.as_bytes());
    0
}

/// The whole program, from argv (without argv[0]) to an exit code.
pub fn run(args: Vec<OsString>) -> u8 {
    ensure_stdio_open();
    // Block first, so a signal that arrives while we set up waits for the loop.
    let mut blocked = SigSet::full();
    for sig in FAULT_SIGNALS {
        blocked.remove(sig);
    }
    let inherited_mask = match sys::block_signals(&blocked) {
        Ok(mask) => mask,
        Err(e) => {
            say(format_args!("cannot block signals: {e}"));
            return EXIT_SETUP_FAILED;
        }
    };
    let command = match cli::parse(args, &|name| std::env::var_os(name)) {
        Ok(command) => command,
        Err(message) => {
            say(format_args!("{message}"));
            say(format_args!(
                "usage: bundle-init [OPTIONS] [--] PROGRAM [ARGS...] | --bundle PATH (see --help)"
            ));
            return EXIT_USAGE;
        }
    };
    let options = match command {
        Command::Control(request) => {
            // A client, not an init: let Ctrl-C and friends work as usual.
            let _ = sys::set_signal_mask(&inherited_mask);
            return control::client(&request);
        }
        Command::Help => return print(cli::USAGE),
        Command::Version => {
            // The architecture too: with one file per architecture, say which this is.
            let arch = std::env::consts::ARCH;
            return print(&format!("{VERSION_LINE} linux/{arch}\n"));
        }
        Command::License => return print(LICENSE),
        Command::Run(options) => options,
    };
    let open_file_limit = sys::raise_open_file_limit();
    let (plan, bundle) = match &options.bundle {
        Some(path) => match bundle::bundle_source(path) {
            Ok((plan, _)) if options.check => return print(&keys::describe_plan(path, &plan)),
            Ok((plan, source)) => (plan, Some(source)),
            Err(e) => {
                say(format_args!("{e}"));
                return load_failure_code(&e);
            }
        },
        None => (single_child_plan(&options), None),
    };
    let setup = ChildSetup {
        inherited_mask,
        give_terminal: plan.single_child && owns_terminal() && !rewrites_keyboard(&options),
        open_file_limit,
        // Leftovers are found in /proc: only when its pids are ours.
        marks: members::proc_is_ours()
            .then(|| members::Marks::new(instance_seed()))
            .flatten(),
        parent: rustix::process::getpid().as_raw_nonzero().get(),
    };
    if !plan.single_child {
        // Descriptors bundle-init inherited are its own business, not every daemon's.
        close_inherited_on_exec();
    }
    start(plan, options, bundle, setup, &blocked)
}

/// Tells this bundle-init's marks from those of another in the same PID namespace (one
/// run as a daemon of this one): the clock's nanoseconds and the pid.
fn instance_seed() -> u64 {
    let now = time::now();
    u64::from(now.subsec_nanos()) ^ now.as_secs() ^ (u64::from(std::process::id()) << 8)
}

/// A bundle file (or selection) that is wrong is bad usage; one that cannot run under
/// this descriptor limit is a setup failure.
fn load_failure_code(e: &LoadError) -> u8 {
    match e {
        LoadError::Plan(_) => EXIT_USAGE,
        LoadError::Descriptors { .. } | LoadError::User { .. } => EXIT_SETUP_FAILED,
    }
}

/// `-p SIGNAL`: the parent's death is delivered to bundle-init as SIGNAL.
fn set_parent_death_signal(sig: signal::Sig) -> Result<(), u8> {
    let signal = rustix::process::Signal::from_named_raw(sig.0);
    let result = match signal {
        Some(s) => rustix::process::set_parent_process_death_signal(Some(s)),
        None => Err(rustix::io::Errno::INVAL),
    };
    result.map_err(|e| {
        say(format_args!("cannot set parent-death signal {sig}: {e}"));
        EXIT_SETUP_FAILED
    })
}

/// Not PID 1: orphans of our children must come to us, not to the host's init. Without
/// `-s`, failing to is only a warning.
fn become_subreaper(required: bool, style: plan::LogStyle) -> Result<(), u8> {
    let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) else {
        return Ok(());
    };
    if required {
        let line = format_args!("cannot become a child subreaper: {e}");
        say_in(style, Level::Error, line);
        return Err(EXIT_SETUP_FAILED);
    }
    say_in(
        style,
        Level::Notice,
        format_args!(
            "warning: not PID 1 and cannot become a child subreaper ({e}): orphans will not be reaped"
        ),
    );
    Ok(())
}

fn start(
    plan: Plan,
    options: Options,
    bundle: Option<BundleSource>,
    setup: ChildSetup,
    blocked: &SigSet,
) -> u8 {
    let style = plan.log_style;
    if let Some(sig) = options.parent_death_signal
        && let Err(code) = set_parent_death_signal(sig)
    {
        return code;
    }
    let pid1 = rustix::process::getpid().is_init();
    if !pid1 && let Err(code) = become_subreaper(options.require_subreaper, style) {
        return code;
    }
    let signals = match sys::open_signalfd(blocked) {
        Ok(fd) => fd,
        Err(e) => {
            say_in(
                style,
                Level::Error,
                format_args!("cannot open a signalfd: {e}"),
            );
            return EXIT_SETUP_FAILED;
        }
    };
    let settings = runtime::Settings {
        setup,
        pid1,
        bundle,
        verbosity: options.verbosity,
        warn_orphans: options.warn_orphans,
    };
    let plan_is_bundle = !plan.single_child;
    let http = plan.http.as_ref().and_then(open_http);
    let supervisor = Supervisor::new(plan);
    // Bundle mode serves the control socket; a second bundle-init in the same namespaces
    // (or a socket already taken) only loses that, with a warning.
    let control = if plan_is_bundle {
        match control::Server::open() {
            Ok(server) => Some(server),
            Err(e) => {
                say_in(
                    style,
                    Level::Notice,
                    format_args!(
                        "warning: no control socket ({e}): status, restart, signal and health will not reach this bundle-init"
                    ),
                );
                None
            }
        }
    } else {
        None
    };
    match runtime::Runtime::new(supervisor, signals, settings, control, http) {
        Ok(runtime) => runtime.run(),
        Err(e) => {
            say_in(
                style,
                Level::Error,
                format_args!("cannot create output pipes: {e}"),
            );
            EXIT_SETUP_FAILED
        }
    }
}

/// The HTTP endpoint `http =` asks for; one that cannot listen (the port is taken) costs
/// only itself, with a warning, as the control socket does.
fn open_http(at: &crate::plan::TcpAddress) -> Option<http::Server> {
    match http::Server::open(at.addr) {
        Ok(server) => Some(server),
        Err(e) => {
            say(format_args!(
                "warning: no HTTP endpoint (http = {at}: {e}): /healthz, /readyz, /status and /metrics will not answer"
            ));
            None
        }
    }
}

fn single_child_plan(options: &Options) -> Plan {
    let program = &options.program;
    let name = Path::new(&program[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "child".to_string());
    let mut child = DaemonSpec::new(&name, program.clone());
    child.on_exit = ExitPolicy::StopBundle;
    child.prefix_output = false;
    child.signal_group = options.signal_group;
    let mut routes = Routes::forward_everything();
    for &(from, to) in &options.rewrites {
        routes.set(
            from,
            match to {
                Some(to) => Route::ForwardAs(vec![0], to),
                None => Route::Ignore,
            },
        );
    }
    Plan {
        daemons: vec![child],
        routes,
        shutdown_grace: options.stop_others.unwrap_or(Duration::ZERO),
        stop_leftovers: options.stop_others.is_some(),
        success_codes: options.success_codes.clone(),
        single_child: true,
        stop_order: crate::plan::StopOrder::Dependencies,
        log_style: Default::default(),
        http: None,
    }
}

/// Opens /dev/null on any of 0, 1, 2 that is closed, so that no descriptor bundle-init
/// opens later lands there by accident (and gets handed to a child as its stdout).
fn ensure_stdio_open() {
    for fd in 0..3 {
        if rustix::io::fcntl_getfd(output::borrow_fd(fd)).is_err() {
            let opened = rustix::fs::open(
                "/dev/null",
                rustix::fs::OFlags::RDWR,
                rustix::fs::Mode::empty(),
            );
            if let Ok(null) = opened {
                // open() returns the lowest free number, which is `fd` itself; keep it open.
                let _ = std::os::fd::IntoRawFd::into_raw_fd(null);
            }
        }
    }
}

/// Marks every inherited descriptor above 2 close-on-exec.
fn close_inherited_on_exec() {
    let mut fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    fds.retain(|&fd| fd > 2);
    for fd in fds {
        let borrowed = output::borrow_fd(fd);
        if let Ok(flags) = rustix::io::fcntl_getfd(borrowed) {
            let _ = rustix::io::fcntl_setfd(borrowed, flags | rustix::io::FdFlags::CLOEXEC);
        }
    }
}

/// Whether a `--rewrite` applies to a signal the terminal sends its foreground group: then
/// bundle-init keeps the terminal, so that signal comes to it and is rewritten.
fn rewrites_keyboard(options: &Options) -> bool {
    use sys::libc_sig::{INT, QUIT, TSTP, WINCH};
    options
        .rewrites
        .iter()
        .any(|(from, _)| [INT, QUIT, TSTP, WINCH].contains(&from.0))
}

/// Whether stdin is a terminal whose foreground process group is ours.
fn owns_terminal() -> bool {
    let stdin = output::borrow_fd(0);
    rustix::termios::isatty(stdin)
        && rustix::termios::tcgetpgrp(stdin).is_ok_and(|pgrp| pgrp == rustix::process::getpgrp())
}
