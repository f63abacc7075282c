//! What goes into the supervisor (`Event`) and what comes out (`Action`), with the small
//! types they carry. This is the whole interface between the pure core and the runtime.

use std::fmt;

use crate::id::DaemonId;
use crate::plan::Plan;
use crate::signal::Sig;
use crate::time::Time;

/// Everything that can happen to the bundle, as the runtime observed it.
#[derive(Debug)]
pub(crate) enum Event {
    /// bundle-init is up: start the daemons.
    Start,
    /// A signal arrived (not SIGCHLD, which becomes `Exited` and `ReapingDone`).
    Signal(Sig),
    /// `Action::Spawn(id)` was carried out.
    Spawned {
        id: DaemonId,
        result: Result<i32, SpawnFailure>,
    },
    /// A child was reaped: a daemon, or an orphan bundle-init adopted. For a daemon's
    /// process, `leftovers` are the processes it left that carry its mark (`members`),
    /// looked for at the reap.
    Exited {
        pid: i32,
        status: ExitStatus,
        leftovers: Vec<i32>,
    },
    /// `Action::FindLeftovers` was carried out: the processes of daemon `id` found alive.
    Leftovers { id: DaemonId, pids: Vec<i32> },
    /// A reaping pass ended; `children_remain` says whether wait found children still alive.
    ReapingDone { children_remain: bool },
    /// The readiness check of a daemon passed (its probe stops by itself).
    Ready(DaemonId),
    /// `Action::CheckLive` was carried out: daemon `id`'s process `pid` answered its
    /// liveness check, or why not (`connect to 127.0.0.1:8080 timed out`).
    LiveChecked {
        id: DaemonId,
        pid: i32,
        result: Result<(), String>,
    },
    /// A datagram came on daemon `id`'s notify socket from process `from` (the kernel's
    /// credentials, never what the message says).
    Notified {
        id: DaemonId,
        from: i32,
        message: NotifyMessage,
    },
    /// A control client's request; it is answered with `Action::Reply`, now or later.
    Control {
        client: ClientId,
        request: ControlRequest,
    },
    /// `Action::ReadBundle` was carried out: the new plan, or why it cannot be used.
    BundleRead {
        request: ReloadRequest,
        plan: Result<Plan, ReadError>,
    },
    /// Time passed: act on every deadline that has come.
    Tick,
    /// Sending an action's signal failed (usually: the process was already gone).
    SignalFailed {
        target: i32,
        sig: Sig,
        error: String,
    },
    /// A system call in the runtime failed; the loop goes on.
    DriverFailed { what: &'static str, error: String },
    /// bundle-init is about to exit and its sinks dropped this many of its own log lines.
    LogLinesDropped(u64),
    /// Daemons' output lines were dropped because the log reader was stuck at shutdown;
    /// `at_exit` when the reader never caught up.
    OutputShed { lines: u64, at_exit: bool },
}

/// Why a reload's bundle file could not be used, as the user reads it.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Single-child mode has no file to read.
    NoBundleFile,
    /// The file, the selection, or the descriptors it needs.
    Load(crate::bundle::LoadError),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NoBundleFile => f.write_str("single-child mode has no bundle file"),
            ReadError::Load(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::NoBundleFile => None,
            ReadError::Load(e) => Some(e),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start daemon `id`; answer with `Event::Spawned`.
    Spawn(DaemonId),
    /// Send `sig` to `pid`, or to its process group when `group`.
    Signal {
        pid: i32,
        sig: Sig,
        group: bool,
    },
    /// Send `sig` to every process that is not a daemon (kill(-1) as PID 1), then reap and
    /// answer with `Event::ReapingDone`: the shutdown waits for that answer.
    SignalLeftovers(Sig),
    /// Run daemon `id`'s readiness check against process `pid`; answer with `Event::Ready`.
    StartProbe {
        id: DaemonId,
        pid: i32,
    },
    /// Find the processes daemon `id` left behind (those with its mark), send them `signal`
    /// if any (with SIGCONT after a stop signal), and answer with `Event::Leftovers`.
    FindLeftovers {
        id: DaemonId,
        signal: Option<Sig>,
    },
    /// Stop daemon `id`'s readiness check: the process it was about is gone.
    StopProbe(DaemonId),
    /// Run daemon `id`'s liveness check once, about process `pid`; answer with
    /// `Event::LiveChecked`.
    CheckLive {
        id: DaemonId,
        pid: i32,
    },
    /// Answer control client `client` and close its connection.
    Reply {
        client: ClientId,
        reply: Reply,
    },
    /// Answer control client `client` with the last lines kept of daemons `ids` (at most
    /// `lines` of each), and with `follow` go on sending their new lines; the runtime owns
    /// the buffers and the connection from now on.
    SendLog {
        client: ClientId,
        ids: Vec<DaemonId>,
        lines: Option<usize>,
        follow: bool,
    },
    /// Write this line to bundle-init's log (already filtered by verbosity).
    Log(Level, String),
    /// A line about an event of a daemon's life, with the event's fields for a structured
    /// log (`log-format = json`); written as `Log` is.
    LogEvent(Level, String, LogEvent),
    /// Read the bundle file again (the path and selection bundle-init started with);
    /// answer with `Event::BundleRead`.
    ReadBundle(ReloadRequest),
    /// A daemon a reload removed is gone: drain and close its output pipes, drop its probe.
    /// Its id is never used again.
    Forget(DaemonId),
    Exit(u8),
}

/// How a child ended, as `wait` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitStatus {
    Code(u8),
    Signal(i32),
}

impl ExitStatus {
    /// The shell's convention: the exit code, or 128+N when signal N killed it.
    pub(crate) fn code(self) -> u8 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(n) => 128u8.saturating_add(n.clamp(0, 127) as u8),
        }
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Code(c) => write!(f, "exited with code {c}"),
            ExitStatus::Signal(n) => write!(f, "was killed by {}", Sig(n)),
        }
    }
}

/// Log levels; a message is shown when its level is at most the verbosity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Error = 0,
    /// Warnings and the lifecycle of daemons (starts, exits, restarts): shown by default.
    Notice = 1,
    Info = 2,
    Debug = 3,
}

/// What a lifecycle line is about, for the fields of a JSON record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogEvent {
    pub(crate) kind: EventKind,
    /// The daemon's name is the line's first `name_len` bytes (every lifecycle line starts
    /// with it; checked when the line is made), so naming it costs no allocation. 0: none.
    pub(crate) name_len: usize,
    pub(crate) pid: Option<i32>,
    pub(crate) status: Option<ExitStatus>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventKind {
    Started,
    Restarted,
    Exited,
    /// A oneshot exited 0.
    Done,
    /// SIGKILL was sent at the end of a grace.
    Killed,
}

impl EventKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Restarted => "restarted",
            EventKind::Exited => "exited",
            EventKind::Done => "done",
            EventKind::Killed => "killed",
        }
    }
}

/// Why a spawn failed, as the supervisor needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SpawnFailure {
    /// fork itself failed (EAGAIN under a process limit, ENOMEM): worth retrying whatever
    /// the exit policy says.
    pub(crate) transient: bool,
    /// The code this counts as when it is not transient: 127 not found, 126 not runnable.
    pub(crate) code: u8,
    pub(crate) message: String,
}

/// A control client, numbered by the runtime; replies name it.
pub(crate) type ClientId = u64;

/// What a control client can ask (parsed from its request line by `control`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ControlRequest {
    Status {
        json: bool,
    },
    Restart(Vec<String>),
    /// Stop these daemons and keep them down until a `Start`.
    Stop(Vec<String>),
    /// Start these daemons (after what they wait for), whatever stopped them.
    Start(Vec<String>),
    Signal(String, Sig),
    Health,
    /// Re-read the bundle file and apply it; with `dry_run`, only say what would change.
    Reload {
        dry_run: bool,
    },
    /// The last lines the daemon `name` names wrote (every instance's), `lines` of each at
    /// most; with `follow`, then each new line until the client leaves.
    Logs {
        name: String,
        lines: Option<usize>,
        follow: bool,
    },
}

/// The answer to a control request: `OK` and a body, or `ERR reason` and a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Ok(String),
    Err { reason: String, body: String },
}

impl Reply {
    pub(super) fn refused(reason: impl Into<String>) -> Reply {
        Reply::Err {
            reason: reason.into(),
            body: String::new(),
        }
    }
}

/// A reload asked for, by a signal route or by control clients (each answered when it is
/// applied, or refused).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ReloadRequest {
    pub(crate) asked_at: Time,
    pub(crate) by: Cause,
    pub(crate) clients: Vec<ClientId>,
    pub(crate) dry_run: bool,
}

/// What a daemon said on its notify socket (systemd's `sd_notify` variables), as the
/// runtime parsed one datagram. Variables it does not know are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NotifyMessage {
    /// `READY=1`
    pub(crate) ready: bool,
    /// `RELOADING=1`: it reloads its configuration; `READY=1` says it is done.
    pub(crate) reloading: bool,
    /// `STOPPING=1`: it is shutting down.
    pub(crate) stopping: bool,
    /// `WATCHDOG=1`: a ping.
    pub(crate) watchdog: bool,
    /// `STATUS=...`: a line for `status`.
    pub(crate) status: Option<String>,
    /// `MAINPID=...`, as written: not followed (bundle-init watches the process it started).
    pub(crate) main_pid: Option<String>,
}

/// Who asked for a restart: a signal route or the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    Signal(Sig),
    Control,
    /// A reload changed the daemon's definition.
    Reload,
    /// It failed its liveness check (or missed its watchdog) too many times in a row.
    Liveness,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Signal(sig) => sig.fmt(f),
            Cause::Control => f.write_str("control"),
            Cause::Reload => f.write_str("reload"),
            Cause::Liveness => f.write_str("liveness"),
        }
    }
}
