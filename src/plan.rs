//! What bundle-init is asked to run: built from the command line (single-child mode) or from
//! a bundle file, then handed to the supervisor. Plain data, no I/O.

use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::signal::Sig;
use crate::sys::{MAX_SIGNAL, libc_sig};

/// What happens when a daemon exits without having been asked to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitPolicy {
    /// Log it; the siblings carry on; nothing restarts it.
    KeepRunning,
    /// Start it again after a backoff that doubles up to a cap.
    Restart,
    /// Shut the whole bundle down and exit with this daemon's code.
    StopBundle,
}

impl ExitPolicy {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ExitPolicy::KeepRunning => "keep-running",
            ExitPolicy::Restart => "restart",
            ExitPolicy::StopBundle => "stop-bundle",
        }
    }
}

/// Delays between automatic restarts: `initial`, doubling up to `max`; a run that lasted
/// at least `stable_after` counts as healthy and brings the delay back to `initial`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Backoff {
    pub(crate) initial: Duration,
    pub(crate) max: Duration,
    pub(crate) stable_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
        }
    }
}

/// The environment a daemon starts with: bundle-init's own, minus `unset` names and
/// `unset_prefixes`, plus the variables of `files` in order, plus `set` (applied last, so
/// a set variable survives a prefix unset and overrides a file's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct EnvPlan {
    pub(crate) files: Vec<EnvFile>,
    pub(crate) set: Vec<(OsString, OsString)>,
    pub(crate) unset: Vec<OsString>,
    pub(crate) unset_prefixes: Vec<OsString>,
}

/// An `env-file`: only its path is in the plan. It is read at each start of the daemon
/// (a restart picks up a rotated secret), so its values are never part of a definition
/// that `--check`, `status` or a reload's summary could show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EnvFile {
    pub(crate) path: PathBuf,
    /// `env-file = -PATH`: a file that does not exist is skipped.
    pub(crate) optional: bool,
}

/// How bundle-init knows a daemon is ready (checked by bundle-init itself: the image may
/// have no tool to do it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ReadyCheck {
    /// A TCP connection to this address is accepted.
    Tcp(TcpAddress),
    /// A connection to this Unix socket is accepted.
    Unix(PathBuf),
    /// This file exists.
    File(PathBuf),
    /// The daemon writes a newline to this descriptor (the s6 convention).
    Notify(i32),
    /// The daemon sends `READY=1` to the socket in its `NOTIFY_SOCKET` (systemd's
    /// protocol), one socket of its own per start.
    SdNotify,
}

/// How bundle-init knows a running daemon still answers (`live = ...`), checked by
/// bundle-init itself inside its loop, with no process spawned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LiveCheck {
    /// A TCP connection to this address is accepted.
    Tcp(TcpAddress),
    /// A connection to this Unix socket is accepted.
    Unix(PathBuf),
    /// An HTTP/1.1 GET of `path` on this address answers 2xx or 3xx.
    Http { addr: TcpAddress, path: String },
}

impl fmt::Display for LiveCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveCheck::Tcp(addr) => write!(f, "tcp:{addr}"),
            LiveCheck::Unix(path) => write!(f, "unix:{}", path.display()),
            LiveCheck::Http { addr, path } => write!(f, "http:{addr}{path}"),
        }
    }
}

/// A daemon's liveness settings: the check, and how often, how long and how many
/// failures in a row restart it. The defaults are Kubernetes' probe defaults but for the
/// period (10 s) and the timeout (2 s instead of 1 s: a connect across a loaded host).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Liveness {
    pub(crate) check: Option<LiveCheck>,
    pub(crate) every: Duration,
    pub(crate) timeout: Duration,
    pub(crate) failures: u32,
    /// `watchdog = DURATION` (with `ready = sd-notify`): a `WATCHDOG=1` must come this
    /// often; a missed one counts as a liveness failure.
    pub(crate) watchdog: Option<Duration>,
}

impl Default for Liveness {
    fn default() -> Liveness {
        Liveness {
            check: None,
            every: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            failures: 3,
            watchdog: None,
        }
    }
}

impl Liveness {
    /// Whether anything checks it: a `live` check or a watchdog.
    pub(crate) fn is_checked(&self) -> bool {
        self.check.is_some() || self.watchdog.is_some()
    }
}

/// A `tcp:` check's address, parsed once when the bundle file is read, and the text that
/// file wrote (`localhost:5432`): `--check` prints that text back, a reload compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TcpAddress {
    pub(crate) addr: SocketAddr,
    pub(crate) written: String,
}

impl fmt::Display for TcpAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// A resource limit a daemon's keys can set (`limit-nofile`...). Not RLIMIT_RTTIME: that
/// one carries the daemon's mark (`members`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    Nofile,
    Nproc,
    Core,
    Memlock,
    Stack,
    As,
}

impl Resource {
    /// Every one, in the order of `ProcessSettings::limits`.
    pub(crate) const ALL: [Resource; 6] = [
        Resource::Nofile,
        Resource::Nproc,
        Resource::Core,
        Resource::Memlock,
        Resource::Stack,
        Resource::As,
    ];

    /// Its key in a bundle file.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Resource::Nofile => "limit-nofile",
            Resource::Nproc => "limit-nproc",
            Resource::Core => "limit-core",
            Resource::Memlock => "limit-memlock",
            Resource::Stack => "limit-stack",
            Resource::As => "limit-as",
        }
    }
}

/// A soft and a hard limit; `UNLIMITED` is RLIM_INFINITY.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rlimit {
    pub(crate) soft: u64,
    pub(crate) hard: u64,
}

impl Rlimit {
    pub(crate) const UNLIMITED: u64 = u64::MAX;
}

/// How the daemon's process is set up in the child before exec, beyond its user: each
/// None (or empty) leaves what bundle-init has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ProcessSettings {
    pub(crate) umask: Option<u32>,
    /// The absolute nice value, -20 to 19.
    pub(crate) nice: Option<i32>,
    /// Indexed like `Resource::ALL`.
    pub(crate) limits: [Option<Rlimit>; 6],
    /// Supplementary groups, set with `user` instead of none.
    pub(crate) groups: Vec<u32>,
    pub(crate) oom_score_adj: Option<i32>,
}

impl ProcessSettings {
    pub(crate) fn limit(&self, resource: Resource) -> Option<Rlimit> {
        self.limits[resource as usize]
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSpec {
    pub name: String,
    pub(crate) argv: Vec<OsString>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) env: EnvPlan,
    /// Numeric uid and gid; supplementary groups become `process.groups` when set.
    pub(crate) user: Option<(u32, u32)>,
    pub(crate) process: ProcessSettings,
    pub(crate) stop_signal: Sig,
    /// How long a stop signal may take before SIGKILL, on restart and at shutdown.
    pub(crate) grace: Duration,
    pub(crate) on_exit: ExitPolicy,
    pub(crate) backoff: Backoff,
    /// Route stdout/stderr through bundle-init as `[name] line`.
    pub(crate) prefix_output: bool,
    /// Bytes of this daemon's last lines kept for `bundle-init logs` (0: none).
    pub(crate) log_buffer: usize,
    /// Signals go to the daemon's whole process group instead of its pid.
    pub(crate) signal_group: bool,
    pub(crate) no_new_privs: bool,
    pub(crate) ready: Option<ReadyCheck>,
    /// Whether it still answers once ready (`live`, `watchdog`).
    pub(crate) live: Liveness,
    /// Names of daemons that must be ready before this one starts.
    pub(crate) after: Vec<String>,
    /// How long to wait for `after` before the exit policy applies.
    pub(crate) ready_timeout: Duration,
    /// Under `on-exit = restart`: crashes in a row it is restarted after, then given up.
    pub(crate) max_restarts: Option<u32>,
    pub(crate) on_give_up: GiveUp,
    /// Started with the bundle; with `no`, only by a `start` request.
    pub(crate) autostart: bool,
    /// `type = oneshot`: a setup task that runs once, to completion; what starts after it
    /// waits for it to exit 0.
    pub(crate) oneshot: bool,
    /// A oneshot that runs longer has failed (stop signal, grace, SIGKILL).
    pub(crate) timeout: Option<Duration>,
    /// What a oneshot's failure does; None: the default, stop-bundle.
    pub(crate) on_failure: Option<OnFailure>,
    /// `instances = N`, as written (on the section and on each instance it made).
    pub(crate) instances: Option<u32>,
    /// The section's name when this daemon is one of its instances (`worker` for
    /// `worker-2`): routes, `after`, the selection and control take it for all of them.
    pub(crate) instance_of: Option<String>,
}

impl DaemonSpec {
    /// Whether `name` names this daemon: its own name, or its section's when it is an
    /// instance.
    pub(crate) fn is_named(&self, name: &str) -> bool {
        self.name == name || self.instance_of.as_deref() == Some(name)
    }
}

/// `log-buffer`'s default: a few screens of lines, allocated only as they come.
pub(crate) const DEFAULT_LOG_BUFFER: usize = 8 * 1024;
/// The largest `log-buffer`, and the smallest one that is not 0 (a record of up to
/// PIPE_BUF bytes must fit whole).
pub(crate) const MAX_LOG_BUFFER: usize = 1024 * 1024;
pub(crate) const MIN_LOG_BUFFER: usize = 4096;

/// The bundle keys `log-format` and `log-time`: how bundle-init writes its lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LogStyle {
    /// `log-format = json`: one JSON object per line.
    pub(crate) json: bool,
    /// `log-time = yes`: text lines start with the time (JSON records always carry it).
    pub(crate) time: bool,
}

impl LogStyle {
    /// Whether a record needs the wall clock.
    pub(crate) fn wants_time(self) -> bool {
        self.json || self.time
    }
}

/// What a setup task's failure (a non-zero exit, a signal, its timeout) does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// The bundle shuts down with the task's code; nothing that waits for it starts.
    StopBundle,
    /// It is logged; what waits for it goes on waiting (its ready-timeout applies).
    KeepRunning,
}

impl OnFailure {
    pub(crate) fn name(self) -> &'static str {
        match self {
            OnFailure::StopBundle => "stop-bundle",
            OnFailure::KeepRunning => "keep-running",
        }
    }
}

/// The exit code a oneshot that ran past its timeout counts as (coreutils' timeout's).
pub(crate) const TIMED_OUT_CODE: u8 = 124;

/// What giving up on a daemon that keeps crashing does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// The bundle shuts down with its last code: the orchestrator restarts the container.
    StopBundle,
    /// It stays down; the siblings go on.
    StayDown,
}

impl GiveUp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            GiveUp::StopBundle => "stop-bundle",
            GiveUp::StayDown => "stay-down",
        }
    }
}

impl DaemonSpec {
    /// A daemon with every key at its default: the one place a daemon's defaults are
    /// written (the backoff's in `Backoff::default`). docs/bundle-file.md's table of daemon keys
    /// lists them; `--check` prints them.
    pub(crate) fn new(name: &str, argv: Vec<OsString>) -> DaemonSpec {
        DaemonSpec {
            name: name.to_string(),
            argv,
            cwd: None,
            env: EnvPlan::default(),
            user: None,
            process: ProcessSettings {
                umask: None,
                nice: None,
                limits: [None; 6],
                groups: Vec::new(),
                oom_score_adj: None,
            },
            stop_signal: Sig(libc_sig::TERM),
            grace: Duration::from_secs(8),
            on_exit: ExitPolicy::KeepRunning,
            backoff: Backoff::default(),
            prefix_output: true,
            log_buffer: DEFAULT_LOG_BUFFER,
            signal_group: false,
            no_new_privs: false,
            ready: None,
            live: Liveness::default(),
            after: Vec::new(),
            ready_timeout: Duration::from_secs(30),
            max_restarts: None,
            on_give_up: GiveUp::StopBundle,
            autostart: true,
            oneshot: false,
            timeout: None,
            on_failure: None,
            instances: None,
            instance_of: None,
        }
    }
}

/// What a signal sent to bundle-init does. `T` names a daemon: its position in the plan
/// as parsed, and the supervisor's `DaemonId` once it runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route<T = usize> {
    /// Stop every daemon and exit.
    Shutdown,
    /// Drop it.
    Ignore,
    /// Send it to every running daemon.
    ForwardAll,
    /// Send it to these daemons.
    Forward(Vec<T>),
    /// Send this other signal instead, to these daemons (`forward NAME as SIGNAL`, and
    /// single-child mode's `--rewrite`).
    ForwardAs(Vec<T>, Sig),
    /// Restart these daemons in place; the signal itself is never passed on.
    Restart(Vec<T>),
    /// Write every daemon's status to the log.
    Status,
    /// Read the bundle file again and apply what changed.
    Reload,
}

impl<T> Route<T> {
    /// The same route, naming its daemons another way; a daemon `name` cannot name is
    /// left out.
    pub(crate) fn map<U>(&self, name: impl Fn(&T) -> Option<U>) -> Route<U> {
        let names = |targets: &[T]| targets.iter().filter_map(&name).collect();
        match self {
            Route::Shutdown => Route::Shutdown,
            Route::Ignore => Route::Ignore,
            Route::ForwardAll => Route::ForwardAll,
            Route::Forward(t) => Route::Forward(names(t)),
            Route::ForwardAs(t, to) => Route::ForwardAs(names(t), *to),
            Route::Restart(t) => Route::Restart(names(t)),
            Route::Status => Route::Status,
            Route::Reload => Route::Reload,
        }
    }
}

/// A route per signal number (index 0 unused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Routes<T = usize> {
    table: Vec<Route<T>>,
}

impl Routes {
    /// Bundle defaults: TERM, INT and QUIT shut down; everything else goes to every daemon.
    pub(crate) fn bundle_defaults() -> Routes {
        let mut routes = Routes::forward_everything();
        for sig in [libc_sig::TERM, libc_sig::INT, libc_sig::QUIT] {
            routes.set(Sig(sig), Route::Shutdown);
        }
        routes
    }

    /// tini's behaviour: every signal goes to the child, TERM included.
    pub(crate) fn forward_everything() -> Routes {
        Routes {
            table: vec![Route::ForwardAll; MAX_SIGNAL as usize + 1],
        }
    }

    /// Whether a route on `sig` can ever fire: not KILL and STOP (never caught), not CHLD
    /// (how bundle-init reaps), not a fault signal (left to its default action), not a
    /// real-time signal the C library keeps for itself (it cannot be blocked, so it never
    /// reaches the signalfd).
    pub(crate) fn can_route(sig: Sig) -> bool {
        use crate::sys::libc_sig;
        !matches!(sig.0, libc_sig::KILL | libc_sig::STOP | libc_sig::CHLD)
            && !crate::sys::FAULT_SIGNALS.contains(&sig.0)
            && !crate::sys::reserved_by_libc(sig.0)
    }
}

impl<T> Routes<T> {
    pub(crate) fn set(&mut self, sig: Sig, route: Route<T>) {
        if let Some(slot) = self.table.get_mut(sig.0 as usize) {
            *slot = route;
        }
    }

    /// The route for `sig`; None for a number past the last signal.
    pub(crate) fn route(&self, sig: Sig) -> Option<&Route<T>> {
        self.table.get(sig.0 as usize)
    }

    /// Every route, naming its daemons another way (see `Route::map`).
    pub(crate) fn map<U>(&self, name: impl Fn(&T) -> Option<U>) -> Routes<U> {
        Routes {
            table: self.table.iter().map(|r| r.map(&name)).collect(),
        }
    }
}

impl Routes {
    #[cfg(test)]
    pub(crate) fn get(&self, sig: Sig) -> &Route {
        const IGNORE: &Route = &Route::Ignore;
        self.route(sig).unwrap_or(IGNORE)
    }

    /// Routes that differ from `base`, for printing a plan.
    pub(crate) fn changed_from<'a>(
        &'a self,
        base: &'a Routes,
    ) -> impl Iterator<Item = (Sig, &'a Route)> {
        (1..self.table.len())
            .filter(move |&n| self.table[n] != base.table[n])
            .map(move |n| (Sig(n as i32), &self.table[n]))
    }
}

/// Everything the supervisor needs to run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub(crate) daemons: Vec<DaemonSpec>,
    pub(crate) routes: Routes,
    /// Bundle mode: the one shared deadline for shutdown. Single-child mode: how long
    /// leftover processes get after the child exits (only if `stop_leftovers`).
    pub(crate) shutdown_grace: Duration,
    /// After the daemons are gone, TERM (then KILL at the deadline) any other process
    /// still around instead of exiting at once.
    pub(crate) stop_leftovers: bool,
    /// Exit codes reported as 0 (tini's `-e`).
    pub(crate) success_codes: Vec<u8>,
    /// Single-child mode: the bundle's exit code is the child's, not the highest failure.
    pub(crate) single_child: bool,
    /// At shutdown: what waits for a daemon stops before it, or every daemon at once.
    pub(crate) stop_order: StopOrder,
    pub(crate) log_style: LogStyle,
    /// Bundle mode: where the read-only HTTP endpoint listens (`http =`), if anywhere.
    pub(crate) http: Option<TcpAddress>,
}

/// The order daemons get their stop signals in at shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopOrder {
    /// A daemon stops once every daemon that starts after it has exited.
    Dependencies,
    /// Every daemon at once.
    Together,
}

impl StopOrder {
    pub(crate) fn name(self) -> &'static str {
        match self {
            StopOrder::Dependencies => "dependencies",
            StopOrder::Together => "together",
        }
    }
}

/// Descriptors bundle-init itself may hold at once besides its daemons': the signalfd, a
/// private description of stdout and of stderr, the control listener with its 8 clients
/// and one more being refused, the 4 `logs` clients, a start's report pipe, and a file
/// read from /proc.
pub(crate) const OWN_DESCRIPTORS: usize = 1 + 2 + (1 + 8 + 1) + 4 + 2 + 1;

/// How many connections the HTTP endpoint serves at once (`http::MAX_CONNECTIONS`),
/// defined here because the descriptor budget counts them.
pub(crate) const HTTP_CONNECTIONS: usize = 16;

/// With `http =`: its listener, its connections, and one more being refused.
pub(crate) const HTTP_DESCRIPTORS: usize = 1 + HTTP_CONNECTIONS + 1;

impl Plan {
    /// Descriptors the running bundle may need at once, on top of those already open: its
    /// own, and per daemon 4 for prefixed output (a pipe for stdout and one for stderr,
    /// both ends kept so restarts reuse them), 2 for a notify pipe, 1 for a tcp or unix
    /// readiness probe or an sd-notify socket, 1 for a liveness check under way.
    pub(crate) fn descriptors_needed(&self) -> usize {
        let per_daemon = |d: &DaemonSpec| {
            let output = if d.prefix_output { 4 } else { 0 };
            let ready = match d.ready {
                Some(ReadyCheck::Notify(_)) => 2,
                Some(ReadyCheck::Tcp(_) | ReadyCheck::Unix(_) | ReadyCheck::SdNotify) => 1,
                Some(ReadyCheck::File(_)) | None => 0,
            };
            output + ready + usize::from(d.live.check.is_some())
        };
        let http = match self.http {
            Some(_) => HTTP_DESCRIPTORS,
            None => 0,
        };
        OWN_DESCRIPTORS + http + self.daemons.iter().map(per_daemon).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(prefix_output: bool, ready: Option<ReadyCheck>) -> DaemonSpec {
        let mut spec = DaemonSpec::new("d", vec!["x".into()]);
        spec.prefix_output = prefix_output;
        spec.ready = ready;
        spec
    }

    #[test]
    fn descriptors_needed_count_output_pipes_and_probes() {
        let plan = |daemons| Plan {
            daemons,
            routes: Routes::bundle_defaults(),
            shutdown_grace: Duration::from_secs(8),
            stop_leftovers: true,
            success_codes: vec![],
            single_child: false,
            stop_order: crate::plan::StopOrder::Dependencies,
            log_style: Default::default(),
            http: None,
        };
        assert_eq!(plan(vec![]).descriptors_needed(), OWN_DESCRIPTORS);
        let mixed = plan(vec![
            daemon(true, None),
            daemon(false, None),
            daemon(true, Some(ReadyCheck::Notify(5))),
            daemon(false, Some(ReadyCheck::Tcp("127.0.0.1:1".into()))),
            daemon(false, Some(ReadyCheck::File("/f".into()))),
        ]);
        assert_eq!(mixed.descriptors_needed(), OWN_DESCRIPTORS + 4 + 4 + 2 + 1);
        // 256 prefixed daemons do not fit under the 1024 the project's podman flags set.
        let many = plan((0..256).map(|_| daemon(true, None)).collect());
        assert_eq!(many.descriptors_needed(), OWN_DESCRIPTORS + 1024);
        let mut served = plan(vec![]);
        served.http = Some("127.0.0.1:8080".into());
        assert_eq!(served.descriptors_needed(), OWN_DESCRIPTORS + 1 + 16 + 1);
    }
}
