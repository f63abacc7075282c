//! The supervisor: a pure state machine, and the only code that reads or changes a
//! daemon's state. Events go in (a signal arrived, a child was reaped, a spawn succeeded or
//! failed, a probe found a daemon ready, a control client asked something, time passed);
//! actions come out (spawn, signal, start or stop a probe, reply to a client, log, exit).
//! It does no I/O and reads no clock, so unit tests drive every rule directly.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::plan::{DaemonSpec, ExitPolicy, Plan, Route, Routes};
use crate::reload::{Change, DaemonChange};
use crate::signal::Sig;
use crate::sys::libc_sig;

/// Indices among `names` of the daemons `spec` starts after. Names that are not selected
/// here are simply not waited for.
fn after_indices(spec: &DaemonSpec, names: &[&str]) -> Vec<usize> {
    spec.after
        .iter()
        .filter_map(|a| names.iter().position(|n| n == a))
        .collect()
}

pub(crate) use crate::time::Time;
use crate::time::human;

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

/// A control client, numbered by the driver; replies name it.
pub(crate) type ClientId = u64;

/// What a control client can ask (parsed from its request line by `control`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ControlRequest {
    Status {
        json: bool,
    },
    Restart(Vec<String>),
    Signal(String, Sig),
    Health,
    /// Re-read the bundle file and apply it; with `dry_run`, only say what would change.
    Reload {
        dry_run: bool,
    },
}

/// The answer to a control request: `OK` and a body, or `ERR reason` and a body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    Ok(String),
    Err { reason: String, body: String },
}

impl Reply {
    fn refused(reason: impl Into<String>) -> Reply {
        Reply::Err {
            reason: reason.into(),
            body: String::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Action {
    /// Start daemon `index`; answer with `Supervisor::on_spawned`.
    Spawn(usize),
    /// Send `sig` to `pid`, or to its process group when `group`.
    Signal {
        pid: i32,
        sig: Sig,
        group: bool,
    },
    /// Send `sig` to every process that is not a daemon (kill(-1) as PID 1), then reap and
    /// answer with `Supervisor::after_reaping`: the shutdown waits for that answer.
    SignalLeftovers(Sig),
    /// Run daemon `index`'s readiness check against process `pid`; answer with
    /// `Supervisor::on_ready` when it passes.
    StartProbe {
        index: usize,
        pid: i32,
    },
    /// Stop daemon `index`'s readiness check: the process it was about is gone.
    StopProbe(usize),
    /// Answer control client `client` and close its connection.
    Reply {
        client: ClientId,
        reply: Reply,
    },
    /// Write this line to bundle-init's log (already filtered by verbosity).
    Log(Level, String),
    /// Read the bundle file again (the path bundle-init started with, the selection it
    /// started with); answer with `Supervisor::on_bundle_read`.
    ReadBundle(ReloadRequest),
    /// The daemons were renumbered: daemon `i` is now what daemon `mapping[i]` was (None:
    /// a new one). Per-daemon state (output pipes, probes) moves with it; what maps to
    /// no new index is dropped. Always first in the queue: the actions behind it already
    /// use the new numbers.
    Renumber(Vec<Option<usize>>),
    /// A removed daemon was reaped: drain and close its output pipes and drop its probe.
    /// Its index stays taken until the next reload renumbers.
    Forget(usize),
    Exit(u8),
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

/// Who asked for a restart: a signal route or the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cause {
    Signal(Sig),
    Control,
    /// A reload changed the daemon's definition.
    Reload,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Signal(sig) => sig.fmt(f),
            Cause::Control => f.write_str("control"),
            Cause::Reload => f.write_str("reload"),
        }
    }
}

/// A restart under way, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RestartRequest {
    asked_at: Time,
    by: Cause,
    old_pid: Option<i32>,
}

/// What became of a restart request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RestartOutcome {
    /// The daemon is being stopped, or started if it was down.
    Begun,
    /// A restart was already under way; this request joined it.
    Coalesced,
    /// Nothing was done, for this reason.
    Refused(&'static str),
}

/// A daemon's state: one variant per state an operator can tell apart. `status` and
/// `health` use the same words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A spawn was asked for and is being carried out; `restart` is the request that led
    /// here, if one did.
    Starting {
        restart: Option<RestartRequest>,
    },
    Running {
        pid: i32,
        since: Time,
    },
    /// Sent its stop signal; SIGKILL at `kill_at` (None once sent). `restart` says whether
    /// a replacement starts when it is reaped.
    Stopping {
        pid: i32,
        since: Time,
        kill_at: Option<Time>,
        restart: Option<RestartRequest>,
    },
    /// Waiting to be started again after a crash or a failed start.
    Backoff {
        until: Time,
    },
    /// Waiting for the daemons it starts `after` to be ready; gives up at `until`.
    WaitingForDependencies {
        until: Time,
    },
    /// Ended, and stays down until a restart request.
    Down,
}

impl State {
    /// The word `status` shows, and `health` builds on.
    fn word(self) -> &'static str {
        match self {
            State::Starting { restart: None } => "starting",
            State::Starting { restart: Some(_) }
            | State::Stopping {
                restart: Some(_), ..
            } => "restarting",
            State::Running { .. } => "running",
            State::Stopping { .. } => "stopping",
            State::Backoff { .. } => "backoff",
            State::WaitingForDependencies { .. } => "waiting",
            State::Down => "exited",
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Daemon {
    pub(crate) spec: DaemonSpec,
    state: State,
    pub(crate) restarts: u32,
    pub(crate) last_exit: Option<ExitStatus>,
    /// Crashes since the last stable run; sets the next backoff delay.
    crashes_in_a_row: u32,
    /// Running, and its readiness check (if any) has passed.
    ready: bool,
    /// Indices of the daemons it starts after (its `after` names among those running here).
    after: Vec<usize>,
    /// A reload changed its definition while it ran: this one starts its next process,
    /// once the old one (stopped with the old stop signal and grace) is reaped.
    next_spec: Option<DaemonSpec>,
    /// A reload removed it: it is being stopped, and is forgotten once reaped. Nobody can
    /// name it any more (status, control, routes).
    removed: bool,
    /// Added by a reload that also removed daemons still stopping: it starts once they are
    /// gone, so a renamed daemon never runs beside its old self (a port, a lock file, the
    /// descriptors its pipes free).
    held: bool,
}

impl Daemon {
    fn new(spec: DaemonSpec, after: Vec<usize>) -> Daemon {
        Daemon {
            after,
            spec,
            state: State::Down,
            restarts: 0,
            last_exit: None,
            crashes_in_a_row: 0,
            ready: false,
            next_spec: None,
            removed: false,
            held: false,
        }
    }

    pub(crate) fn pid(&self) -> Option<i32> {
        match self.state {
            State::Running { pid, .. } | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    fn is_live(&self) -> bool {
        self.pid().is_some()
    }

    fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    fn is_down(&self) -> bool {
        self.state == State::Down
    }
}

/// A control client waiting for the restarts it asked for.
#[derive(Clone, Debug)]
struct PendingReply {
    client: ClientId,
    awaited: Vec<AwaitedRestart>,
    /// The answer goes out by then whatever happened: the longest grace plus a margin.
    deadline: Time,
}

#[derive(Clone, Debug)]
struct AwaitedRestart {
    index: usize,
    /// For the answer: a reload may renumber or remove the daemon before it is given.
    name: String,
    restarts_before: u32,
    old_pid: Option<i32>,
    refused: Option<&'static str>,
}

/// After the shutdown budget's SIGKILL round, how often leftovers are looked for again, and
/// how long past the budget bundle-init keeps looking before it exits without them.
const SWEEP_RESCAN: Duration = Duration::from_millis(100);
const SWEEP_TAIL: Duration = Duration::from_secs(2);

/// How long past the longest grace a control client waits for a restart to finish.
const RESTART_REPLY_MARGIN: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    ShuttingDown {
        deadline: Time,
        killed: bool,
        leftovers: LeftoverSweep,
    },
    Done,
}

/// Where the shutdown's sweep of leftover processes stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LeftoverSweep {
    NotYet,
    /// SignalLeftovers went out; the driver's reaping report has not come back yet.
    AwaitingReap,
    /// The driver reported after signalling: `Supervisor::leftovers` is fresh.
    Reaped,
}

pub(crate) struct Supervisor {
    daemons: Vec<Daemon>,
    routes: Routes,
    shutdown_grace: Duration,
    stop_leftovers: bool,
    success_codes: Vec<u8>,
    /// Level of start/exit lines: Notice in bundle mode, Info in single-child mode (tini is
    /// silent about its child unless asked).
    lifecycle: Level,
    /// Level of "reaped zombie" lines: Notice with `-w`, Debug otherwise.
    orphans: Level,
    phase: Phase,
    exit_code: u8,
    /// Whether the last reaping pass saw children still alive (true until one says not).
    leftovers: bool,
    /// Whether a child was reaped since the last reaping pass ended: its children, if it
    /// had any, were just adopted and have not been swept yet.
    reaped_in_this_pass: bool,
    /// When the last reaping pass ended.
    last_reaping: Time,
    /// The most detailed level shown.
    verbosity: Level,
    /// Control clients waiting for restarts to finish.
    replies: Vec<PendingReply>,
    /// The bundle file's generation (1 as started, one more per reload applied) and when
    /// it was loaded.
    generation: u32,
    loaded_at: Time,
    /// The bundle file is being read for a reload (`Action::ReadBundle` is out).
    reading_bundle: bool,
    /// A reload asked for while another one, or a restart, is under way: it runs (and reads
    /// the file) once they are done. Later requests join it.
    waiting_reload: Option<ReloadRequest>,
}

pub(crate) type Actions = VecDeque<Action>;

impl Supervisor {
    pub(crate) fn new(plan: Plan) -> Supervisor {
        let names: Vec<&str> = plan.daemons.iter().map(|d| d.name.as_str()).collect();
        let afters: Vec<Vec<usize>> = plan
            .daemons
            .iter()
            .map(|d| after_indices(d, &names))
            .collect();
        let lifecycle = if plan.single_child {
            Level::Info
        } else {
            Level::Notice
        };
        Supervisor {
            daemons: plan
                .daemons
                .into_iter()
                .zip(afters)
                .map(|(d, a)| Daemon::new(d, a))
                .collect(),
            routes: plan.routes,
            shutdown_grace: plan.shutdown_grace,
            stop_leftovers: plan.stop_leftovers,
            success_codes: plan.success_codes,
            lifecycle,
            orphans: Level::Debug,
            phase: Phase::Running,
            exit_code: 0,
            leftovers: true,
            reaped_in_this_pass: false,
            last_reaping: Time::ZERO,
            verbosity: Level::Debug,
            replies: Vec::new(),
            generation: 1,
            loaded_at: Time::ZERO,
            reading_bundle: false,
            waiting_reload: None,
        }
    }

    pub(crate) fn daemons(&self) -> &[Daemon] {
        &self.daemons
    }

    /// The daemon whose live process is `pid`.
    pub(crate) fn daemon_of(&self, pid: i32) -> Option<usize> {
        self.daemons.iter().position(|d| d.pid() == Some(pid))
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        !matches!(self.phase, Phase::Running)
    }

    /// Starts every daemon, in order.
    pub(crate) fn start(&mut self, now: Time, out: &mut Actions) {
        self.loaded_at = now;
        if self.daemons.is_empty() {
            self.log(out, Level::Notice, || {
                "no daemon selected; nothing to do".to_string()
            });
            self.finish(out);
            return;
        }
        for index in 0..self.daemons.len() {
            self.try_start(index, now, out);
        }
    }

    /// Spawns a daemon whose `after` daemons are all ready; otherwise it waits for them,
    /// until its ready-timeout.
    fn try_start(&mut self, index: usize, now: Time, out: &mut Actions) {
        let waiting_for: Vec<&str> = self.daemons[index]
            .after
            .iter()
            .filter(|&&j| !self.daemons[j].ready)
            .map(|&j| self.daemons[j].spec.name.as_str())
            .collect();
        if waiting_for.is_empty() {
            self.spawn(index, None, out);
            return;
        }
        let line = format!(
            "{} waits for {} to be ready",
            self.daemons[index].spec.name,
            waiting_for.join(", ")
        );
        let daemon = &mut self.daemons[index];
        daemon.state = State::WaitingForDependencies {
            until: now + daemon.spec.ready_timeout,
        };
        self.log(out, Level::Notice, || line);
    }

    /// Asks the driver to spawn daemon `index`, for `restart` if a request led here.
    fn spawn(&mut self, index: usize, restart: Option<RestartRequest>, out: &mut Actions) {
        self.daemons[index].state = State::Starting { restart };
        out.push_back(Action::Spawn(index));
    }

    /// Daemons waiting for this one may start now.
    fn start_waiters(&mut self, now: Time, out: &mut Actions) {
        if self.is_shutting_down() {
            return;
        }
        for index in 0..self.daemons.len() {
            let daemon = &self.daemons[index];
            let waiting = matches!(daemon.state, State::WaitingForDependencies { .. });
            if waiting && daemon.after.iter().all(|&j| self.daemons[j].ready) {
                self.try_start(index, now, out);
            }
        }
    }

    /// The readiness check of `index` passed (its probe stops by itself).
    pub(crate) fn on_ready(&mut self, index: usize, now: Time, out: &mut Actions) {
        let Some(daemon) = self.daemons.get_mut(index) else {
            return;
        };
        if daemon.ready || !daemon.is_running() {
            return;
        }
        daemon.ready = true;
        let line = format!("{} is ready", daemon.spec.name);
        self.log(out, Level::Notice, || line);
        self.start_waiters(now, out);
    }

    /// The driver carried out `Action::Spawn(index)`.
    pub(crate) fn on_spawned(
        &mut self,
        index: usize,
        result: Result<i32, SpawnFailure>,
        now: Time,
        out: &mut Actions,
    ) {
        let Some(daemon) = self.daemons.get(index) else {
            return;
        };
        let request = match daemon.state {
            State::Starting { restart } => restart,
            _ => None,
        };
        match result {
            Ok(pid) => self.started(index, pid, request, now, out),
            Err(failure) if failure.transient => {
                let delay = self.next_backoff(index, Duration::ZERO);
                let daemon = &mut self.daemons[index];
                daemon.state = State::Backoff { until: now + delay };
                let line = format!(
                    "cannot start {}: {}; retrying in {}",
                    daemon.spec.name,
                    failure.message,
                    human(delay)
                );
                self.log(out, Level::Error, || line);
            }
            Err(failure) => {
                let line = format!("cannot start {}: {}", daemon.spec.name, failure.message);
                self.log(out, Level::Error, || line);
                let status = ExitStatus::Code(failure.code);
                self.ended_on_its_own(index, status, Duration::ZERO, now, out);
            }
        }
        self.settle_replies(now, out);
        self.resume_waiting_reload(out);
    }

    /// Daemon `index` runs as `pid`: logs how it came to be, starts its readiness check.
    fn started(
        &mut self,
        index: usize,
        pid: i32,
        request: Option<RestartRequest>,
        now: Time,
        out: &mut Actions,
    ) {
        let daemon = &mut self.daemons[index];
        daemon.state = State::Running { pid, since: now };
        let name = &daemon.spec.name;
        let line = match request {
            Some(RestartRequest {
                asked_at,
                by,
                old_pid: Some(old),
            }) => {
                let micros = now.saturating_sub(asked_at).as_micros() as u64;
                format!(
                    "{name} restarted ({by}): pid {old} -> {pid} in {}.{:03} ms",
                    micros / 1000,
                    micros % 1000
                )
            }
            Some(RestartRequest {
                by, old_pid: None, ..
            }) => format!("{name} started on request ({by}): pid {pid}"),
            None if daemon.last_exit.is_some() => format!("{name} started again: pid {pid}"),
            None => format!("{name} started: pid {pid}"),
        };
        if request.is_some() || daemon.last_exit.is_some() {
            daemon.restarts += 1;
        }
        let level = self.lifecycle;
        self.log(out, level, || line);
        if self.daemons[index].spec.ready.is_some() {
            out.push_back(Action::StartProbe { index, pid });
        } else {
            // Without a readiness check, running is ready.
            self.daemons[index].ready = true;
            self.start_waiters(now, out);
        }
    }

    /// A child was reaped: a daemon, or an orphan bundle-init adopted.
    pub(crate) fn on_exit(&mut self, pid: i32, status: ExitStatus, now: Time, out: &mut Actions) {
        self.reaped_in_this_pass = true;
        let Some(index) = self.daemon_of(pid) else {
            let level = self.orphans;
            // tini's words, which scripts grep for; the status is ours.
            self.log(out, level, || {
                format!("Reaped zombie process with pid={pid} ({status})")
            });
            return;
        };
        self.left_running(index, out);
        let shutting_down = self.is_shutting_down();
        let daemon = &mut self.daemons[index];
        daemon.last_exit = Some(status);
        match daemon.state {
            State::Running { since, .. } => {
                let ran_for = now.saturating_sub(since);
                self.ended_on_its_own(index, status, ran_for, now, out);
            }
            State::Stopping {
                restart: Some(request),
                ..
            } if !shutting_down => self.start_replacement(index, request, now, out),
            State::Stopping { .. } if daemon.removed => {
                daemon.state = State::Down;
                let line = format!("{} {status} (pid {pid}): removed", daemon.spec.name);
                let level = self.lifecycle;
                self.log(out, level, || line);
                out.push_back(Action::Forget(index));
                self.start_held(now, out);
                self.end_if_every_daemon_is_down(now, out);
            }
            State::Stopping { .. } => {
                daemon.state = State::Down;
                let code = stopped_code(status, daemon.spec.stop_signal);
                let line = format!("{} {status} (pid {pid})", daemon.spec.name);
                self.exit_code = self.exit_code.max(code);
                let level = self.lifecycle;
                self.log(out, level, || line);
            }
            _ => {}
        }
        self.settle_replies(now, out);
        self.resume_waiting_reload(out);
    }

    /// Daemon `index` stops running (stopped, or it died): it is not ready any more, and a
    /// readiness check still looking at it stops.
    fn left_running(&mut self, index: usize, out: &mut Actions) {
        let daemon = &mut self.daemons[index];
        if daemon.is_running() && daemon.spec.ready.is_some() && !daemon.ready {
            out.push_back(Action::StopProbe(index));
        }
        daemon.ready = false;
    }

    /// Called after every reaping pass: `children_remain` says whether wait found other
    /// children still alive. Shutdown finishes here once nothing is left to wait for.
    ///
    /// During the sweep, a pass that reaped someone while children remain sweeps again:
    /// the children of the one that died were just adopted (a subreaper's only sign of an
    /// adoption), and the earlier signal never reached them. Each new sweep needs a death,
    /// so this ends.
    pub(crate) fn after_reaping(&mut self, children_remain: bool, now: Time, out: &mut Actions) {
        let reaped = std::mem::take(&mut self.reaped_in_this_pass);
        self.leftovers = children_remain;
        self.last_reaping = now;
        let daemons_gone = !self.daemons.iter().any(Daemon::is_live);
        if let Phase::ShuttingDown {
            leftovers: sweep,
            killed,
            ..
        } = &mut self.phase
        {
            let sig = if *killed {
                libc_sig::KILL
            } else {
                libc_sig::TERM
            };
            match sweep {
                LeftoverSweep::AwaitingReap | LeftoverSweep::Reaped
                    if self.stop_leftovers && daemons_gone && children_remain && reaped =>
                {
                    *sweep = LeftoverSweep::AwaitingReap;
                    out.push_back(Action::SignalLeftovers(Sig(sig)));
                    return;
                }
                LeftoverSweep::AwaitingReap => *sweep = LeftoverSweep::Reaped,
                _ => {}
            }
        }
        self.check_shutdown_done(out);
    }

    pub(crate) fn on_signal(&mut self, sig: Sig, now: Time, out: &mut Actions) {
        match self.routes.get(sig) {
            Route::Shutdown if self.is_shutting_down() => self.log(out, Level::Notice, || {
                format!("received {sig} again: already shutting down, ignored")
            }),
            Route::Shutdown => {
                self.log(out, Level::Notice, || {
                    format!("received {sig}: shutting down")
                });
                self.begin_shutdown(now, out);
            }
            Route::Status => {
                for line in self.status_lines(now, false) {
                    self.log(out, Level::Notice, || line);
                }
            }
            Route::Ignore => self.log(out, Level::Info, || {
                format!("received {sig}: ignored by route")
            }),
            // Forwarding is the hot path (every signal, in single-child mode): no allocation.
            Route::ForwardAll => self.forward(sig, 0..self.daemons.len(), out),
            Route::Forward(targets) => self.forward(sig, targets.iter().copied(), out),
            Route::ForwardAs(targets, to) => {
                self.log(out, Level::Info, || {
                    format!("received {sig}: forwarded as {to}")
                });
                self.forward(*to, targets.iter().copied(), out);
            }
            Route::Restart(targets) => {
                for index in targets.clone() {
                    self.request_restart(index, Cause::Signal(sig), now, out);
                }
            }
            Route::Reload => {
                let request = ReloadRequest {
                    asked_at: now,
                    by: Cause::Signal(sig),
                    clients: Vec::new(),
                    dry_run: false,
                };
                self.request_reload(request, out);
            }
        }
    }

    /// Restart one daemon in place; the same rules whoever asks.
    pub(crate) fn request_restart(
        &mut self,
        index: usize,
        by: Cause,
        now: Time,
        out: &mut Actions,
    ) -> RestartOutcome {
        let Some(daemon) = self.daemons.get(index) else {
            return RestartOutcome::Refused("no such daemon");
        };
        // Borrowed, not cloned: a storm of requests that coalesce must not allocate each.
        let name = &daemon.spec.name;
        let refused = match daemon.state {
            _ if self.is_shutting_down() => "shutting down",
            State::WaitingForDependencies { .. } => "it is waiting for what it starts after",
            State::Starting { .. } | State::Stopping { .. } => {
                self.log(out, Level::Info, || {
                    format!("restart of {name} ({by}) already under way: coalesced")
                });
                return RestartOutcome::Coalesced;
            }
            State::Running { pid, .. } => {
                let old_pid = Some(pid);
                let request = RestartRequest {
                    asked_at: now,
                    by,
                    old_pid,
                };
                self.stop(index, now, Some(request), out);
                return RestartOutcome::Begun;
            }
            State::Backoff { .. } | State::Down => {
                let request = RestartRequest {
                    asked_at: now,
                    by,
                    old_pid: None,
                };
                self.spawn(index, Some(request), out);
                return RestartOutcome::Begun;
            }
        };
        self.log(out, Level::Notice, || {
            format!("restart of {name} ({by}) ignored: {refused}")
        });
        RestartOutcome::Refused(refused)
    }

    /// Sends daemon `index` its stop signal and arms the SIGKILL: after its grace, and no
    /// later than the shutdown deadline if one is running. `restart` starts a replacement
    /// once it is reaped.
    fn stop(
        &mut self,
        index: usize,
        now: Time,
        restart: Option<RestartRequest>,
        out: &mut Actions,
    ) {
        self.left_running(index, out);
        let deadline = match self.phase {
            Phase::ShuttingDown { deadline, .. } => deadline,
            _ => Time::MAX,
        };
        let daemon = &mut self.daemons[index];
        let State::Running { pid, since } = daemon.state else {
            return;
        };
        let (stop, group) = (daemon.spec.stop_signal, daemon.spec.signal_group);
        let kill_at = Some((now + daemon.spec.grace).min(deadline));
        daemon.state = State::Stopping {
            pid,
            since,
            kill_at,
            restart,
        };
        out.push_back(Action::Signal {
            pid,
            sig: stop,
            group,
        });
        if let Some(RestartRequest { by, .. }) = restart {
            self.log(out, Level::Info, || {
                let name = &self.daemons[index].spec.name;
                format!("restarting {name} ({by}): sent {stop} to pid {pid}")
            });
        }
    }

    /// SIGKILLs a stopping daemon (its whole group) and disarms its kill deadline.
    fn kill_now(&mut self, index: usize, out: &mut Actions) {
        let daemon = &mut self.daemons[index];
        if let State::Stopping {
            pid,
            kill_at: kill_at @ Some(_),
            ..
        } = &mut daemon.state
        {
            *kill_at = None;
            let pid = *pid;
            out.push_back(Action::Signal {
                pid,
                sig: Sig(libc_sig::KILL),
                group: true,
            });
        }
    }

    /// A control client's request. Every request is answered with `Action::Reply`: at once,
    /// or for a restart when the replacements run (or gave up, or the deadline passed).
    pub(crate) fn on_control(
        &mut self,
        client: ClientId,
        request: ControlRequest,
        now: Time,
        out: &mut Actions,
    ) {
        let reply = match request {
            ControlRequest::Status { json } => {
                Reply::Ok(self.status_lines(now, json).join("\n") + "\n")
            }
            ControlRequest::Health => match self.health() {
                Ok(()) => Reply::Ok("healthy\n".to_string()),
                Err(problems) => Reply::Err {
                    reason: "unhealthy".to_string(),
                    body: problems.join("\n") + "\n",
                },
            },
            ControlRequest::Signal(name, sig) => self.signal_by_name(&name, sig, out),
            ControlRequest::Restart(names) => match self.indices_of(&names) {
                Ok(indices) => return self.restart_for_client(client, &indices, now, out),
                Err(why) => Reply::refused(why),
            },
            ControlRequest::Reload { dry_run } => {
                let request = ReloadRequest {
                    asked_at: now,
                    by: Cause::Control,
                    clients: vec![client],
                    dry_run,
                };
                return self.request_reload(request, out);
            }
        };
        out.push_back(Action::Reply { client, reply });
    }

    fn index_of(&self, name: &str) -> Result<usize, String> {
        self.daemons
            .iter()
            .position(|d| d.spec.name == name && !d.removed)
            .ok_or_else(|| {
                let known: Vec<&str> = self.current().map(|d| d.spec.name.as_str()).collect();
                format!("unknown daemon \"{name}\" (known: {})", known.join(", "))
            })
    }

    fn indices_of(&self, names: &[String]) -> Result<Vec<usize>, String> {
        names.iter().map(|n| self.index_of(n)).collect()
    }

    fn signal_by_name(&self, name: &str, sig: Sig, out: &mut Actions) -> Reply {
        let index = match self.index_of(name) {
            Ok(index) => index,
            Err(why) => return Reply::refused(why),
        };
        let daemon = &self.daemons[index];
        let Some(pid) = daemon.pid() else {
            return Reply::refused(format!("{name} is not running"));
        };
        let group = daemon.spec.signal_group;
        out.push_back(Action::Signal { pid, sig, group });
        Reply::Ok(format!("sent {sig} to {name} (pid {pid})\n"))
    }

    /// Restarts `indices` for a control client, whose reply waits for the outcome.
    fn restart_for_client(
        &mut self,
        client: ClientId,
        indices: &[usize],
        now: Time,
        out: &mut Actions,
    ) {
        let mut longest = Duration::ZERO;
        let mut awaited = Vec::with_capacity(indices.len());
        for &index in indices {
            let daemon = &self.daemons[index];
            longest = longest.max(daemon.spec.grace);
            let (restarts_before, old_pid) = (daemon.restarts, daemon.pid());
            let refused = match self.request_restart(index, Cause::Control, now, out) {
                RestartOutcome::Refused(why) => Some(why),
                RestartOutcome::Begun | RestartOutcome::Coalesced => None,
            };
            awaited.push(AwaitedRestart {
                index,
                name: self.daemons[index].spec.name.clone(),
                restarts_before,
                old_pid,
                refused,
            });
        }
        let deadline = now + longest + RESTART_REPLY_MARGIN;
        self.replies.push(PendingReply {
            client,
            awaited,
            deadline,
        });
        self.settle_replies(now, out);
    }

    /// Answers the control clients whose restarts have all finished one way or the other,
    /// or whose deadline has passed.
    fn settle_replies(&mut self, now: Time, out: &mut Actions) {
        if self.replies.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.replies);
        pending.retain(|p| {
            let finished = p.awaited.iter().all(|a| self.restart_finished(a).is_some());
            if !finished && now < p.deadline {
                return true;
            }
            let reply = self.restart_reply(&p.awaited);
            out.push_back(Action::Reply {
                client: p.client,
                reply,
            });
            false
        });
        self.replies = pending;
    }

    /// Some(Ok(new pid)) once the restart is done, Some(Err(why)) once it cannot be, None
    /// while it is under way.
    fn restart_finished(&self, awaited: &AwaitedRestart) -> Option<Result<i32, &'static str>> {
        if let Some(why) = awaited.refused {
            return Some(Err(why));
        }
        let daemon = &self.daemons[awaited.index];
        match daemon.state {
            _ if self.is_shutting_down() => Some(Err("shutting down")),
            State::Running { pid, .. } if daemon.restarts > awaited.restarts_before => {
                Some(Ok(pid))
            }
            State::Backoff { .. } | State::Down => Some(Err("did not come back up")),
            _ => None,
        }
    }

    fn restart_reply(&self, awaited: &[AwaitedRestart]) -> Reply {
        let mut body = String::new();
        let mut failed = false;
        for a in awaited {
            let name = &a.name;
            let old = a.old_pid.map_or("-".to_string(), |p| p.to_string());
            match self.restart_finished(a) {
                Some(Ok(new)) => body.push_str(&format!("{name} restarted: pid {old} -> {new}\n")),
                outcome => {
                    failed = true;
                    let why = outcome
                        .and_then(Result::err)
                        .unwrap_or("did not come back up");
                    body.push_str(&format!("{name} not restarted: {why} (was pid {old})\n"));
                }
            }
        }
        if failed {
            Reply::Err {
                reason: "restart failed".to_string(),
                body,
            }
        } else {
            Reply::Ok(body)
        }
    }

    /// One line per daemon: name, state, pid, uptime, restarts, last exit. With `json`, one
    /// JSON object per line.
    pub(crate) fn status_lines(&self, now: Time, json: bool) -> Vec<String> {
        let mut lines: Vec<String> = self
            .current()
            .map(|d| {
                // Held by a reload until the daemons it removed have stopped.
                let state = if d.held { "waiting" } else { d.state.word() };
                let since = match d.state {
                    State::Running { since, .. } | State::Stopping { since, .. } => Some(since),
                    _ => None,
                };
                let pid = d.pid();
                let ready = match (&d.spec.ready, d.ready) {
                    (None, _) => "-",
                    (Some(_), true) => "yes",
                    (Some(_), false) => "no",
                };
                let uptime = since.map(|t| now.saturating_sub(t).as_secs());
                let last = d.last_exit.map(|e| e.to_string());
                if json {
                    let opt = |v: Option<String>| v.unwrap_or_else(|| "null".to_string());
                    format!(
                        "{{\"name\":\"{}\",\"state\":\"{state}\",\"pid\":{},\"uptime_s\":{},\"restarts\":{},\"last_exit\":{},\"ready\":\"{ready}\"}}",
                        d.spec.name,
                        opt(pid.map(|p| p.to_string())),
                        opt(uptime.map(|u| u.to_string())),
                        d.restarts,
                        opt(last.map(|l| format!("\"{l}\"")))
                    )
                } else {
                    format!(
                        "{:<16} {state:<9} pid {:<7} up {:<9} restarts {:<4} ready {ready:<3} last {}",
                        d.spec.name,
                        pid.map_or("-".to_string(), |p| p.to_string()),
                        uptime.map_or("-".to_string(), |u| format!("{u}s")),
                        d.restarts,
                        last.unwrap_or_else(|| "-".to_string())
                    )
                }
            })
            .collect();
        // Which bundle file this is: reloads count up from 1.
        let loaded = now.saturating_sub(self.loaded_at).as_secs();
        lines.push(if json {
            format!(
                "{{\"bundle\":{{\"generation\":{},\"loaded_s_ago\":{loaded}}}}}",
                self.generation
            )
        } else {
            format!(
                "bundle file generation {}, loaded {loaded}s ago",
                self.generation
            )
        });
        lines
    }

    /// The daemons of the bundle as it is now: not the ones a reload removed.
    fn current(&self) -> impl Iterator<Item = &Daemon> {
        self.daemons.iter().filter(|d| !d.removed)
    }

    /// Ok when every daemon runs (and is ready, if it has a check); otherwise what is
    /// wrong, daemon by daemon.
    pub(crate) fn health(&self) -> Result<(), Vec<String>> {
        let problems: Vec<String> = self
            .current()
            .filter_map(|d| {
                let name = &d.spec.name;
                match d.state {
                    State::Running { .. } if d.spec.ready.is_some() && !d.ready => {
                        Some(format!("{name} is running but not ready"))
                    }
                    State::Running { .. } => None,
                    State::WaitingForDependencies { .. } => {
                        Some(format!("{name} is waiting for what it starts after"))
                    }
                    State::Backoff { .. } => Some(format!(
                        "{name} is waiting to restart after it {}",
                        describe(d.last_exit)
                    )),
                    State::Down if d.held => Some(format!(
                        "{name} waits for the daemons a reload removed to stop"
                    )),
                    State::Down => Some(format!("{name} is down: it {}", describe(d.last_exit))),
                    state => Some(format!("{name} is {}", state.word())),
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Acts on every deadline that has come: SIGKILL after a grace, the end of a backoff or
    /// of a wait for dependencies, the end of the shutdown budget, a control reply's
    /// deadline.
    pub(crate) fn on_tick(&mut self, now: Time, out: &mut Actions) {
        let running = !self.is_shutting_down();
        for index in 0..self.daemons.len() {
            match self.daemons[index].state {
                State::Stopping {
                    pid,
                    kill_at: Some(at),
                    ..
                } if now >= at => {
                    self.kill_now(index, out);
                    let name = &self.daemons[index].spec.name;
                    let line = format!(
                        "{name} (pid {pid}) did not stop within its grace: sending SIGKILL"
                    );
                    self.log(out, Level::Notice, || line);
                }
                State::Backoff { until } if running && now >= until => {
                    self.try_start(index, now, out)
                }
                State::WaitingForDependencies { until } if running && now >= until => {
                    self.give_up_waiting(index, now, out)
                }
                _ => {}
            }
        }
        self.end_shutdown_budget_if_due(now, out);
        self.sweep_again_after_the_budget(now, out);
        self.settle_replies(now, out);
    }

    /// The shutdown deadline, while the sweep looks for leftovers on a timer: after the
    /// SIGKILL round, with every daemon reaped (until then a SIGCHLD is what comes next,
    /// and a rescan time that stays in the past would spin the loop) and children left.
    fn rescanning_after_the_budget(&self) -> Option<Time> {
        match self.phase {
            Phase::ShuttingDown {
                deadline,
                killed: true,
                leftovers: LeftoverSweep::Reaped,
            } if self.stop_leftovers
                && self.leftovers
                && !self.daemons.iter().any(Daemon::is_live) =>
            {
                Some(deadline)
            }
            _ => None,
        }
    }

    /// After the SIGKILL round, leftovers may still be adopted without any event (the
    /// parent of an orphan was not our child): look again every SWEEP_RESCAN until wait
    /// says there are no children, or give up SWEEP_TAIL after the budget.
    fn sweep_again_after_the_budget(&mut self, now: Time, out: &mut Actions) {
        let Some(deadline) = self.rescanning_after_the_budget() else {
            return;
        };
        if now >= deadline + SWEEP_TAIL {
            let line = format!(
                "processes are still left {} after SIGKILL: exiting without them",
                human(SWEEP_TAIL)
            );
            self.log(out, Level::Notice, || line);
            self.finish(out);
        } else if now >= self.last_reaping + SWEEP_RESCAN {
            self.set_sweep(LeftoverSweep::AwaitingReap);
            out.push_back(Action::SignalLeftovers(Sig(libc_sig::KILL)));
        }
    }

    /// A daemon's ready-timeout passed before what it starts after was ready.
    fn give_up_waiting(&mut self, index: usize, now: Time, out: &mut Actions) {
        let daemon = &self.daemons[index];
        let line = format!(
            "{} gave up waiting after {}: what it starts after is not ready",
            daemon.spec.name,
            human(daemon.spec.ready_timeout)
        );
        self.log(out, Level::Error, || line);
        // Counts as a failed start (code 1): its exit policy decides what comes next.
        self.ended_on_its_own(index, ExitStatus::Code(1), Duration::ZERO, now, out);
    }

    /// At the shutdown deadline everything still alive gets SIGKILL.
    fn end_shutdown_budget_if_due(&mut self, now: Time, out: &mut Actions) {
        let Phase::ShuttingDown {
            deadline,
            killed: killed @ false,
            ..
        } = &mut self.phase
        else {
            return;
        };
        if now < *deadline {
            return;
        }
        *killed = true;
        for index in 0..self.daemons.len() {
            self.kill_now(index, out);
        }
        if self.stop_leftovers {
            self.set_sweep(LeftoverSweep::AwaitingReap);
            out.push_back(Action::SignalLeftovers(Sig(libc_sig::KILL)));
        }
        let line = format!(
            "shutdown budget of {} is over: sending SIGKILL to what is left",
            human(self.shutdown_grace)
        );
        self.log(out, Level::Notice, || line);
        self.check_shutdown_done(out);
    }

    /// The earliest time `on_tick` has something to do, or None: then nothing but an
    /// event can change anything, and the loop may sleep for ever.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        let running = !self.is_shutting_down();
        let daemons = self.daemons.iter().filter_map(|d| match d.state {
            State::Stopping { kill_at, .. } => kill_at,
            State::Backoff { until } | State::WaitingForDependencies { until } if running => {
                Some(until)
            }
            _ => None,
        });
        let shutdown = match self.phase {
            Phase::ShuttingDown {
                deadline,
                killed: false,
                ..
            } => Some(deadline),
            _ => self
                .rescanning_after_the_budget()
                .map(|deadline| (self.last_reaping + SWEEP_RESCAN).min(deadline + SWEEP_TAIL)),
        };
        let replies = self.replies.iter().map(|p| p.deadline);
        daemons.chain(shutdown).chain(replies).min()
    }

    fn forward(&self, sig: Sig, targets: impl Iterator<Item = usize>, out: &mut Actions) {
        for index in targets {
            let Some(daemon) = self.daemons.get(index).filter(|d| !d.removed) else {
                continue;
            };
            if let Some(pid) = daemon.pid() {
                out.push_back(Action::Signal {
                    pid,
                    sig,
                    group: daemon.spec.signal_group,
                });
                self.log(out, Level::Info, || {
                    format!("forwarded {sig} to {} (pid {pid})", daemon.spec.name)
                });
            }
        }
    }

    /// Sending an action's signal failed (usually: the process was already gone).
    pub(crate) fn on_signal_failed(
        &mut self,
        target: i32,
        sig: Sig,
        error: &str,
        out: &mut Actions,
    ) {
        self.log(out, Level::Debug, || {
            format!("sending {sig} to {target} failed: {error}")
        });
    }

    /// bundle-init is about to exit and its sinks dropped `count` of its own log lines.
    pub(crate) fn on_log_lines_dropped(&mut self, count: u64, out: &mut Actions) {
        if count > 0 {
            self.log(out, Level::Notice, || {
                format!("{count} of bundle-init's own log lines were dropped")
            });
        }
    }

    /// Daemons' output lines were dropped because the log reader was stuck at shutdown;
    /// `at_exit` when the reader never caught up.
    pub(crate) fn on_output_shed(&mut self, lines: u64, at_exit: bool, out: &mut Actions) {
        if lines == 0 {
            return;
        }
        let when = if at_exit {
            "the log reader never caught up"
        } else {
            "the log reader was stuck"
        };
        self.log(out, Level::Notice, || {
            format!("{lines} lines of daemon output were dropped at shutdown: {when}")
        });
    }

    /// A system call in the driver failed; the loop goes on.
    pub(crate) fn on_driver_error(&mut self, what: &str, error: &str, out: &mut Actions) {
        self.log(out, Level::Error, || format!("{what} failed: {error}"));
    }

    fn ended_on_its_own(
        &mut self,
        index: usize,
        status: ExitStatus,
        ran_for: Duration,
        now: Time,
        out: &mut Actions,
    ) {
        let daemon = &mut self.daemons[index];
        daemon.last_exit = Some(status);
        match daemon.spec.on_exit {
            ExitPolicy::KeepRunning => self.stay_down(index, status, now, out),
            ExitPolicy::Restart => {
                let delay = self.next_backoff(index, ran_for);
                self.daemons[index].state = State::Backoff { until: now + delay };
                let name = &self.daemons[index].spec.name;
                self.log(out, Level::Notice, || {
                    format!("{name} {status}; restarting in {}", human(delay))
                });
            }
            ExitPolicy::StopBundle => {
                daemon.state = State::Down;
                self.exit_code = self.exit_code.max(status.code());
                let level = self.lifecycle;
                let line = if self.lifecycle == Level::Info {
                    // Single-child mode: the child is all there is.
                    format!("the child {status}; exiting")
                } else {
                    format!(
                        "{} {status}; stopping the bundle (stop-bundle)",
                        daemon.spec.name
                    )
                };
                self.log(out, level, || line);
                self.begin_shutdown(now, out);
            }
        }
    }

    /// keep-running: the daemon stays down; when none is left, the bundle ends.
    fn stay_down(&mut self, index: usize, status: ExitStatus, now: Time, out: &mut Actions) {
        self.daemons[index].state = State::Down;
        self.exit_code = self.exit_code.max(status.code());
        let name = &self.daemons[index].spec.name;
        self.log(out, Level::Notice, || {
            format!("{name} {status}; not restarted (keep-running)")
        });
        self.end_if_every_daemon_is_down(now, out);
    }

    /// keep-running: when no daemon of the bundle is left running, and none a reload
    /// removed is still stopping, the bundle ends.
    fn end_if_every_daemon_is_down(&mut self, now: Time, out: &mut Actions) {
        let removed_alive = self.daemons.iter().any(|d| d.removed && d.is_live());
        if !self.is_shutting_down() && !removed_alive && self.current().all(Daemon::is_down) {
            self.log(out, Level::Notice, || "every daemon has exited".to_string());
            self.begin_shutdown(now, out);
        }
    }

    /// Doubles the delay for each crash in a row; a run of at least `stable_after` resets it.
    fn next_backoff(&mut self, index: usize, ran_for: Duration) -> Duration {
        let daemon = &mut self.daemons[index];
        let backoff = daemon.spec.backoff;
        if ran_for >= backoff.stable_after {
            daemon.crashes_in_a_row = 0;
        }
        daemon.crashes_in_a_row = daemon.crashes_in_a_row.saturating_add(1);
        let doublings = (daemon.crashes_in_a_row - 1).min(32);
        backoff
            .initial
            .saturating_mul(1u32 << doublings.min(31))
            .min(backoff.max)
    }

    fn begin_shutdown(&mut self, now: Time, out: &mut Actions) {
        if self.is_shutting_down() {
            return;
        }
        let deadline = now + self.shutdown_grace;
        self.phase = Phase::ShuttingDown {
            deadline,
            killed: false,
            leftovers: LeftoverSweep::NotYet,
        };
        if let Some(waiting) = self.waiting_reload.take() {
            self.refuse_reload(&waiting, "shutting down", out);
        }
        for index in 0..self.daemons.len() {
            let daemon = &mut self.daemons[index];
            match &mut daemon.state {
                State::Running { .. } => self.stop(index, now, None, out),
                State::Stopping {
                    kill_at, restart, ..
                } => {
                    // A restart under way is dropped: the daemon is stopping anyway.
                    *kill_at = kill_at.map(|at| at.min(deadline));
                    *restart = None;
                }
                State::Backoff { .. }
                | State::WaitingForDependencies { .. }
                | State::Starting { .. } => daemon.state = State::Down,
                State::Down => {}
            }
        }
        self.check_shutdown_done(out);
    }

    fn check_shutdown_done(&mut self, out: &mut Actions) {
        let Phase::ShuttingDown {
            killed, leftovers, ..
        } = self.phase
        else {
            return;
        };
        if self.daemons.iter().any(Daemon::is_live) {
            return;
        }
        if self.stop_leftovers {
            match leftovers {
                LeftoverSweep::NotYet => {
                    self.set_sweep(LeftoverSweep::AwaitingReap);
                    let sig = if killed {
                        libc_sig::KILL
                    } else {
                        libc_sig::TERM
                    };
                    out.push_back(Action::SignalLeftovers(Sig(sig)));
                    return;
                }
                LeftoverSweep::AwaitingReap => return,
                LeftoverSweep::Reaped if self.leftovers => return,
                LeftoverSweep::Reaped => {}
            }
        }
        self.finish(out);
    }

    fn set_sweep(&mut self, stage: LeftoverSweep) {
        if let Phase::ShuttingDown { leftovers, .. } = &mut self.phase {
            *leftovers = stage;
        }
    }

    fn finish(&mut self, out: &mut Actions) {
        self.phase = Phase::Done;
        let code = if self.success_codes.contains(&self.exit_code) {
            0
        } else {
            self.exit_code
        };
        out.push_back(Action::Exit(code));
    }

    /// Queues a log line; `line` is only called (formatted) when the line will be shown.
    fn log(&self, out: &mut Actions, level: Level, line: impl FnOnce() -> String) {
        if level <= self.verbosity {
            out.push_back(Action::Log(level, line()));
        }
    }

    /// Lines above `level` are never formatted: a signal storm or a zombie flood must not
    /// cost a format per event. Everything is shown until this is called.
    pub(crate) fn set_verbosity(&mut self, verbosity: u8) {
        self.verbosity = match verbosity {
            0 => Level::Error,
            1 => Level::Notice,
            2 => Level::Info,
            _ => Level::Debug,
        };
    }

    /// With `-w`, reaped orphans are logged at the default level rather than as debug.
    pub(crate) fn set_orphan_warnings(&mut self, warn: bool) {
        self.orphans = if warn { Level::Notice } else { Level::Debug };
    }
}

/// Reloading the bundle file: a request waits while restarts or removals are under way,
/// the driver reads the file (`Action::ReadBundle`), and `on_bundle_read` applies what
/// `reload::diff` found: unchanged daemons untouched, changed ones restarted in place
/// (stopped the old way, started the new way), added ones started, removed ones stopped
/// and forgotten, routes and bundle keys replaced at once.
impl Supervisor {
    /// A reload asked for by a route or a control client.
    fn request_reload(&mut self, request: ReloadRequest, out: &mut Actions) {
        if self.is_shutting_down() {
            return self.refuse_reload(&request, "shutting down", out);
        }
        if request.dry_run {
            out.push_back(Action::ReadBundle(request));
            return;
        }
        if self.reading_bundle || self.reload_in_flight() || self.waiting_reload.is_some() {
            return self.queue_reload(request, out);
        }
        self.reading_bundle = true;
        out.push_back(Action::ReadBundle(request));
    }

    /// A reload that must wait for restarts or removals under way: it joins the one
    /// waiting, which reads the file once they are done. Its clients are answered now, so
    /// none holds a control slot through a grace.
    fn queue_reload(&mut self, mut request: ReloadRequest, out: &mut Actions) {
        let by = request.by;
        self.log(out, Level::Info, || {
            format!("reload ({by}) waits for the restarts under way")
        });
        let queued = Reply::Ok(
            "reload queued: it runs once the restarts under way are done (the log says what it did)\n"
                .to_string(),
        );
        self.reply_to(&std::mem::take(&mut request.clients), queued, out);
        if self.waiting_reload.is_none() {
            self.waiting_reload = Some(request);
        }
    }

    /// Restarts (a reload's or anyone's) and removals still under way: a reload applied now
    /// would compare daemons that are between two definitions.
    fn reload_in_flight(&self) -> bool {
        self.daemons.iter().any(|d| {
            (d.removed && d.is_live())
                || d.next_spec.is_some()
                || matches!(
                    d.state,
                    State::Starting { .. }
                        | State::Stopping {
                            restart: Some(_),
                            ..
                        }
                )
        })
    }

    /// Runs the reload that waited, once nothing is under way any more.
    fn resume_waiting_reload(&mut self, out: &mut Actions) {
        if self.waiting_reload.is_none()
            || self.reading_bundle
            || self.is_shutting_down()
            || self.reload_in_flight()
        {
            return;
        }
        if let Some(request) = self.waiting_reload.take() {
            self.reading_bundle = true;
            out.push_back(Action::ReadBundle(request));
        }
    }

    fn refuse_reload(&self, request: &ReloadRequest, why: &str, out: &mut Actions) {
        let by = request.by;
        self.log(out, Level::Notice, || {
            format!("reload ({by}) ignored: {why}")
        });
        for &client in &request.clients {
            out.push_back(Action::Reply {
                client,
                reply: Reply::refused(why),
            });
        }
    }

    /// The driver read the bundle file for `request`: the new plan (validated as at start,
    /// with the same selection), or why it cannot be used. An error changes nothing.
    pub(crate) fn on_bundle_read(
        &mut self,
        request: ReloadRequest,
        plan: Result<Plan, String>,
        now: Time,
        out: &mut Actions,
    ) {
        if !request.dry_run {
            self.reading_bundle = false;
        }
        let plan = match plan {
            Ok(_) if self.is_shutting_down() => {
                return self.refuse_reload(&request, "shutting down", out);
            }
            // A start or a restart began after the file was asked for: compare once it is
            // done, not halfway.
            Ok(_) if !request.dry_run && self.reload_in_flight() => {
                return self.queue_reload(request, out);
            }
            Ok(plan) => plan,
            Err(why) => {
                let by = request.by;
                self.log(out, Level::Error, || {
                    format!("reload ({by}) refused, nothing changed: {why}")
                });
                self.reply_to(&request.clients, Reply::refused(why), out);
                self.resume_waiting_reload(out);
                return;
            }
        };
        let now_defined: Vec<DaemonSpec> = self
            .current()
            .map(|d| d.next_spec.as_ref().unwrap_or(&d.spec).clone())
            .collect();
        let changes = crate::reload::diff(&now_defined, &plan.daemons);
        let summary = crate::reload::summary(&changes);
        if request.dry_run {
            let reply = Reply::Ok(format!("would reload: {summary}\n"));
            return self.reply_to(&request.clients, reply, out);
        }
        self.apply_reload(plan, &changes, now, out);
        self.generation = self.generation.saturating_add(1);
        self.loaded_at = now;
        let micros = now.saturating_sub(request.asked_at).as_micros() as u64;
        let by = request.by;
        let line = format!(
            "reload ({by}): {summary} ({}.{:03} ms)",
            micros / 1000,
            micros % 1000
        );
        self.log(out, Level::Notice, || line);
        let generation = self.generation;
        let reply = Reply::Ok(format!("reloaded (generation {generation}): {summary}\n"));
        self.reply_to(&request.clients, reply, out);
        self.settle_replies(now, out);
        self.end_if_every_daemon_is_down(now, out);
        self.resume_waiting_reload(out);
    }

    fn reply_to(&self, clients: &[ClientId], reply: Reply, out: &mut Actions) {
        for &client in clients {
            out.push_back(Action::Reply {
                client,
                reply: reply.clone(),
            });
        }
    }

    /// Replaces the daemons by the new plan's, in its order, keeping each continuing
    /// daemon's state and history; removed daemons still alive go last, to be stopped.
    fn apply_reload(&mut self, plan: Plan, changes: &[DaemonChange], now: Time, out: &mut Actions) {
        let names: Vec<&str> = plan.daemons.iter().map(|d| d.name.as_str()).collect();
        let mut old: Vec<Option<Daemon>> = std::mem::take(&mut self.daemons)
            .into_iter()
            .map(Some)
            .collect();
        let mut daemons = Vec::with_capacity(plan.daemons.len());
        let mut mapping = Vec::with_capacity(plan.daemons.len());
        for spec in &plan.daemons {
            let after = after_indices(spec, &names);
            let found = old.iter().position(|d| {
                d.as_ref()
                    .is_some_and(|d| d.spec.name == spec.name && !d.removed)
            });
            let daemon = match found.and_then(|i| old[i].take()) {
                Some(mut daemon) => {
                    if is_changed(changes, &spec.name) {
                        daemon.next_spec = Some(spec.clone());
                    } else {
                        daemon.spec = spec.clone();
                        daemon.after = after;
                    }
                    daemon
                }
                None => Daemon::new(spec.clone(), after),
            };
            mapping.push(found);
            daemons.push(daemon);
        }
        for (i, gone) in old.into_iter().enumerate() {
            if let Some(mut daemon) = gone.filter(Daemon::is_live) {
                daemon.removed = true;
                // Stopping for good: a restart under way is dropped.
                if let State::Stopping { restart, .. } = &mut daemon.state {
                    *restart = None;
                }
                mapping.push(Some(i));
                daemons.push(daemon);
            }
        }
        self.daemons = daemons;
        self.routes = plan.routes;
        self.shutdown_grace = plan.shutdown_grace;
        let added: Vec<bool> = mapping.iter().map(Option::is_none).collect();
        self.renumber_pending(&mapping, out);
        out.push_front(Action::Renumber(mapping));
        for (index, added) in added.into_iter().enumerate() {
            self.act_on_reload(index, added, now, out);
        }
    }

    /// Gives the actions still queued, and the control clients waiting for restarts, the
    /// new numbers; what was about a daemon that is gone is dropped (a client's restart of
    /// it is answered as refused).
    fn renumber_pending(&mut self, mapping: &[Option<usize>], out: &mut Actions) {
        let new_index = |old: usize| mapping.iter().position(|&m| m == Some(old));
        out.retain_mut(|action| {
            let index = match action {
                Action::Spawn(i) | Action::StopProbe(i) | Action::Forget(i) => i,
                Action::StartProbe { index, .. } => index,
                _ => return true,
            };
            match new_index(*index) {
                Some(new) => {
                    *index = new;
                    true
                }
                None => false,
            }
        });
        let daemons = &self.daemons;
        for reply in &mut self.replies {
            for awaited in &mut reply.awaited {
                match new_index(awaited.index) {
                    Some(new) if !daemons[new].removed => awaited.index = new,
                    _ => {
                        awaited.index = 0;
                        awaited.refused = Some("removed by a reload");
                    }
                }
            }
        }
    }

    /// What a reload means for daemon `index` now that it is in place.
    fn act_on_reload(&mut self, index: usize, added: bool, now: Time, out: &mut Actions) {
        let daemon = &self.daemons[index];
        if daemon.removed {
            return self.stop(index, now, None, out);
        }
        if added {
            if self.daemons.iter().any(|d| d.removed && d.is_live()) {
                self.daemons[index].held = true;
                return;
            }
            return self.try_start(index, now, out);
        }
        if daemon.next_spec.is_none() {
            return;
        }
        match daemon.state {
            State::Running { pid, .. } => {
                let request = RestartRequest {
                    asked_at: now,
                    by: Cause::Reload,
                    old_pid: Some(pid),
                };
                self.stop(index, now, Some(request), out);
            }
            // Not running (crashed, in backoff, waiting): it starts with the new definition.
            State::Down | State::Backoff { .. } | State::WaitingForDependencies { .. } => {
                self.take_next_spec(index);
                self.try_start(index, now, out);
            }
            // Between two processes (a reload waits for these): the next start takes the
            // new definition.
            State::Starting { .. } | State::Stopping { .. } => {}
        }
    }

    /// Once no removed daemon is alive, the daemons a reload added start, in file order.
    fn start_held(&mut self, now: Time, out: &mut Actions) {
        if self.daemons.iter().any(|d| d.removed && d.is_live()) {
            return;
        }
        for index in 0..self.daemons.len() {
            if std::mem::take(&mut self.daemons[index].held) && !self.is_shutting_down() {
                self.try_start(index, now, out);
            }
        }
    }

    /// A changed daemon's new definition takes over (its `after` resolved among the
    /// daemons as they are now).
    fn take_next_spec(&mut self, index: usize) {
        let Some(spec) = self.daemons[index].next_spec.take() else {
            return;
        };
        // Positions in `daemons`; a removed daemon is nobody's dependency any more.
        let names: Vec<&str> = self
            .daemons
            .iter()
            .map(|d| if d.removed { "" } else { d.spec.name.as_str() })
            .collect();
        let after = after_indices(&spec, &names);
        let daemon = &mut self.daemons[index];
        daemon.spec = spec;
        daemon.after = after;
    }

    /// A daemon stopped for a restart was reaped: its replacement starts, with the new
    /// definition if a reload changed it, and after what it waits for, as at start.
    fn start_replacement(
        &mut self,
        index: usize,
        request: RestartRequest,
        now: Time,
        out: &mut Actions,
    ) {
        if self.daemons[index].next_spec.is_none() {
            return self.spawn(index, Some(request), out);
        }
        self.take_next_spec(index);
        let daemon = &self.daemons[index];
        if daemon.after.iter().all(|&j| self.daemons[j].ready) {
            self.spawn(index, Some(request), out);
        } else {
            self.try_start(index, now, out);
        }
    }
}

fn is_changed(changes: &[DaemonChange], name: &str) -> bool {
    changes
        .iter()
        .any(|c| c.name == name && matches!(c.change, Change::Changed(_)))
}

fn describe(exit: Option<ExitStatus>) -> String {
    exit.map_or("never started".to_string(), |e| e.to_string())
}

/// The exit code a daemon stopped by bundle-init contributes: stopping the way it was asked
/// to is clean (0); anything else is reported honestly, e.g. 137 when it had to be killed.
fn stopped_code(status: ExitStatus, stop_signal: Sig) -> u8 {
    match status {
        ExitStatus::Signal(n) if n == stop_signal.0 => 0,
        ExitStatus::Code(c) if i32::from(c) == 128 + stop_signal.0 => 0,
        other => other.code(),
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Backoff;

    const USR1: Sig = Sig(libc_sig::USR1);
    const HUP: Sig = Sig(libc_sig::HUP);
    const TERM: Sig = Sig(libc_sig::TERM);
    const KILL: Sig = Sig(libc_sig::KILL);
    const QUIT: Sig = Sig(libc_sig::QUIT);

    fn secs(s: f64) -> Time {
        Duration::from_secs_f64(s)
    }

    fn daemon(name: &str, on_exit: ExitPolicy) -> DaemonSpec {
        let mut spec = DaemonSpec::new(name, vec![name.into()]);
        spec.on_exit = on_exit;
        spec.grace = secs(2.0);
        spec.backoff = Backoff {
            initial: secs(1.0),
            max: secs(8.0),
            stable_after: secs(10.0),
        };
        spec
    }

    /// egress(0) and pipelock(1) and supervise(2); USR1 restarts pipelock, HUP goes to egress.
    fn seed_plan(policy: ExitPolicy) -> Plan {
        let mut routes = Routes::bundle_defaults();
        routes.set(USR1, Route::Restart(vec![1]));
        routes.set(HUP, Route::Forward(vec![0]));
        Plan {
            daemons: vec![
                daemon("egress", policy),
                daemon("pipelock", policy),
                daemon("supervise", policy),
            ],
            routes,
            shutdown_grace: secs(8.0),
            stop_leftovers: true,
            success_codes: vec![],
            single_child: false,
        }
    }

    /// A supervisor whose daemons were started as pids 100, 101, 102 at time 0.
    fn started(plan: Plan) -> Supervisor {
        let mut sup = Supervisor::new(plan);
        let mut out = Actions::new();
        sup.start(secs(0.0), &mut out);
        let spawns: Vec<usize> = out
            .iter()
            .filter_map(|a| {
                if let Action::Spawn(i) = a {
                    Some(*i)
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(
            spawns,
            (0..sup.daemons().len()).collect::<Vec<_>>(),
            "daemons start in file order"
        );
        for i in spawns {
            sup.on_spawned(i, Ok(100 + i as i32), secs(0.0), &mut out);
        }
        sup
    }

    fn signals(out: &Actions) -> Vec<(i32, Sig)> {
        out.iter()
            .filter_map(|a| {
                if let Action::Signal { pid, sig, .. } = a {
                    Some((*pid, *sig))
                } else {
                    None
                }
            })
            .collect()
    }

    fn spawns(out: &Actions) -> Vec<usize> {
        out.iter()
            .filter_map(|a| {
                if let Action::Spawn(i) = a {
                    Some(*i)
                } else {
                    None
                }
            })
            .collect()
    }

    fn exit_code(out: &Actions) -> Option<u8> {
        out.iter().find_map(|a| {
            if let Action::Exit(c) = a {
                Some(*c)
            } else {
                None
            }
        })
    }

    fn logs(out: &Actions) -> String {
        out.iter()
            .filter_map(|a| {
                if let Action::Log(_, l) = a {
                    Some(l.as_str())
                } else {
                    None
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What the driver does once every child is reaped: report it, and report again after
    /// carrying out a SignalLeftovers (it reaps right after signalling).
    fn nothing_left(sup: &mut Supervisor, out: &mut Actions) {
        sup.after_reaping(false, secs(0.0), out);
        if matches!(out.back(), Some(Action::SignalLeftovers(_))) {
            sup.after_reaping(false, secs(0.0), out);
        }
    }

    fn pid_of(sup: &Supervisor, i: usize) -> Option<i32> {
        sup.daemons()[i].pid()
    }

    #[test]
    fn restart_replaces_in_place_and_leaves_siblings_alone() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_signal(USR1, secs(1.0), &mut out);
        assert_eq!(
            signals(&out),
            vec![(101, TERM)],
            "only pipelock gets its stop signal, never USR1"
        );
        out.clear();
        sup.on_exit(
            101,
            ExitStatus::Signal(libc_sig::TERM),
            secs(1.001),
            &mut out,
        );
        assert_eq!(
            spawns(&out),
            vec![1],
            "replacement starts as soon as the old one is reaped"
        );
        sup.on_spawned(1, Ok(200), secs(1.002), &mut out);
        assert_eq!(pid_of(&sup, 1), Some(200));
        assert_eq!((pid_of(&sup, 0), pid_of(&sup, 2)), (Some(100), Some(102)));
        assert!(
            logs(&out).contains("pipelock restarted (SIGUSR1): pid 101 -> 200 in 2.000 ms"),
            "{}",
            logs(&out)
        );
        assert_eq!(sup.daemons()[1].restarts, 1);
        assert_eq!(exit_code(&out), None, "a restart is not a crash");
    }

    #[test]
    fn restart_of_a_daemon_that_ignores_its_stop_signal_kills_it_at_the_grace() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_signal(USR1, secs(1.0), &mut out);
        assert_eq!(sup.next_deadline(), Some(secs(3.0)));
        out.clear();
        sup.on_tick(secs(2.9), &mut out);
        assert!(signals(&out).is_empty());
        sup.on_tick(secs(3.0), &mut out);
        assert_eq!(signals(&out), vec![(101, KILL)]);
        assert!(
            out.contains(&Action::Signal {
                pid: 101,
                sig: KILL,
                group: true
            }),
            "SIGKILL takes its helpers too"
        );
        out.clear();
        sup.on_exit(
            101,
            ExitStatus::Signal(libc_sig::KILL),
            secs(3.01),
            &mut out,
        );
        assert_eq!(spawns(&out), vec![1]);
    }

    #[test]
    fn restart_requests_during_a_restart_coalesce() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        for _ in 0..5 {
            sup.on_signal(USR1, secs(1.0), &mut out);
        }
        assert_eq!(
            signals(&out),
            vec![(101, TERM)],
            "one stop signal for five requests"
        );
        sup.on_exit(101, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
        assert_eq!(spawns(&out), vec![1], "exactly one replacement");
    }

    #[test]
    fn a_route_to_an_unknown_or_unselected_daemon_is_a_no_op() {
        let mut plan = seed_plan(ExitPolicy::KeepRunning);
        plan.routes.set(USR1, Route::Restart(vec![]));
        plan.routes
            .set(Sig(libc_sig::USR2), Route::Restart(vec![7]));
        let mut sup = started(plan);
        let mut out = Actions::new();
        sup.on_signal(USR1, secs(1.0), &mut out);
        sup.on_signal(Sig(libc_sig::USR2), secs(1.0), &mut out);
        assert!(signals(&out).is_empty() && spawns(&out).is_empty());
    }

    #[test]
    fn restart_during_shutdown_is_a_no_op_and_pending_restarts_are_dropped() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_signal(USR1, secs(1.0), &mut out); // pipelock is restarting
        sup.on_signal(TERM, secs(1.5), &mut out);
        out.clear();
        sup.on_signal(USR1, secs(1.6), &mut out);
        assert!(signals(&out).is_empty());
        assert!(logs(&out).contains("ignored: shutting down"));
        sup.on_exit(101, ExitStatus::Signal(libc_sig::TERM), secs(1.7), &mut out);
        assert!(spawns(&out).is_empty(), "the pending restart was dropped");
    }

    #[test]
    fn hup_is_forwarded_to_egress_only() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_signal(HUP, secs(1.0), &mut out);
        assert_eq!(signals(&out), vec![(100, HUP)]);
    }

    #[test]
    fn unrouted_signals_go_to_every_daemon() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_signal(Sig(libc_sig::USR2), secs(1.0), &mut out);
        assert_eq!(
            signals(&out),
            vec![(100, Sig(12)), (101, Sig(12)), (102, Sig(12))]
        );
    }

    #[test]
    fn shutdown_stops_everyone_then_kills_at_the_deadline_and_ignores_a_second_request() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        for d in &mut sup.daemons {
            d.spec.grace = secs(30.0); // longer than the budget: the budget wins
        }
        let mut out = Actions::new();
        sup.on_signal(TERM, secs(1.0), &mut out);
        assert_eq!(signals(&out), vec![(100, TERM), (101, TERM), (102, TERM)]);
        out.clear();
        sup.on_signal(Sig(libc_sig::INT), secs(2.0), &mut out);
        assert!(signals(&out).is_empty());
        assert!(logs(&out).contains("already shutting down"));
        sup.on_exit(100, ExitStatus::Signal(libc_sig::TERM), secs(2.0), &mut out);
        sup.on_exit(102, ExitStatus::Code(0), secs(2.0), &mut out);
        sup.after_reaping(true, secs(0.0), &mut out);
        assert_eq!(exit_code(&out), None);
        assert_eq!(sup.next_deadline(), Some(secs(9.0)));
        out.clear();
        sup.on_tick(secs(9.0), &mut out);
        assert_eq!(signals(&out), vec![(101, KILL)]);
        assert!(out.contains(&Action::SignalLeftovers(KILL)));
        sup.on_exit(
            101,
            ExitStatus::Signal(libc_sig::KILL),
            secs(9.01),
            &mut out,
        );
        nothing_left(&mut sup, &mut out);
        assert_eq!(
            exit_code(&out),
            Some(137),
            "a daemon that had to be killed is not a clean stop"
        );
    }

    #[test]
    fn a_clean_shutdown_exits_zero_after_terming_leftovers() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_signal(TERM, secs(1.0), &mut out);
        sup.on_exit(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
        sup.on_exit(101, ExitStatus::Code(143), secs(1.1), &mut out);
        sup.on_exit(102, ExitStatus::Code(0), secs(1.1), &mut out);
        sup.after_reaping(true, secs(0.0), &mut out);
        assert!(
            out.contains(&Action::SignalLeftovers(TERM)),
            "orphans get TERM once the daemons are gone"
        );
        assert_eq!(exit_code(&out), None);
        nothing_left(&mut sup, &mut out);
        assert_eq!(exit_code(&out), Some(0));
    }

    /// The seed bundle shut down at 1 s, its three daemons gone at 1.1 s by their TERM,
    /// orphans left: the first sweep (TERM) went out, and the driver's pass after it
    /// reported children still there.
    fn shut_down_leaving_orphans() -> (Supervisor, Actions) {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_signal(TERM, secs(1.0), &mut out);
        for pid in [100, 101, 102] {
            sup.on_exit(pid, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
        }
        sup.after_reaping(true, secs(1.1), &mut out);
        assert!(out.contains(&Action::SignalLeftovers(TERM)), "{out:?}");
        sup.after_reaping(true, secs(1.1), &mut out);
        (sup, out)
    }

    /// With no daemon left but orphans still alive, only the shutdown deadline can wake
    /// the loop to SIGKILL them.
    #[test]
    fn leftovers_that_outlive_their_term_are_killed_at_the_deadline() {
        let (mut sup, mut out) = shut_down_leaving_orphans();
        assert_eq!(sup.next_deadline(), Some(secs(9.0)));
        out.clear();
        sup.on_tick(secs(9.0), &mut out);
        assert!(out.contains(&Action::SignalLeftovers(KILL)), "{out:?}");
    }

    /// Orphans adopted during the sweep are swept too: a pass that reaped someone while
    /// children remain signals again (TERM before the budget is over, KILL after). After
    /// the KILL round it looks again every 100 ms, and gives up 2 s after the budget.
    #[test]
    fn the_sweep_follows_adoptions_until_no_child_is_left() {
        let sweeps = |out: &Actions| -> Vec<Sig> {
            out.iter()
                .filter_map(|a| match a {
                    Action::SignalLeftovers(sig) => Some(*sig),
                    _ => None,
                })
                .collect()
        };
        let (mut sup, mut out) = shut_down_leaving_orphans();
        out.clear();
        sup.on_exit(200, ExitStatus::Code(0), secs(2.0), &mut out);
        sup.after_reaping(true, secs(2.0), &mut out);
        assert_eq!(sweeps(&out), [TERM], "200's children were adopted");
        sup.after_reaping(true, secs(2.0), &mut out);
        out.clear();
        sup.after_reaping(true, secs(3.0), &mut out);
        assert!(
            sweeps(&out).is_empty(),
            "nobody reaped: nothing new to sweep"
        );
        sup.on_tick(secs(9.0), &mut out);
        assert_eq!(sweeps(&out), [KILL], "the budget is over");
        sup.after_reaping(true, secs(9.0), &mut out);
        assert_eq!(exit_code(&out), None, "children remain: no exit yet");
        assert_eq!(sup.next_deadline(), Some(secs(9.1)));
        out.clear();
        sup.on_tick(secs(9.1), &mut out);
        assert_eq!(sweeps(&out), [KILL], "looked again");
        sup.after_reaping(true, secs(9.1), &mut out);
        out.clear();
        sup.on_exit(
            201,
            ExitStatus::Signal(libc_sig::KILL),
            secs(9.15),
            &mut out,
        );
        sup.after_reaping(true, secs(9.15), &mut out);
        assert_eq!(sweeps(&out), [KILL], "201's children were adopted");
        sup.after_reaping(true, secs(9.15), &mut out);
        assert_eq!(sup.next_deadline(), Some(secs(9.25)));
        out.clear();
        sup.on_tick(secs(11.0), &mut out);
        assert!(logs(&out).contains("processes are still left 2s after SIGKILL"));
        assert_eq!(exit_code(&out), Some(0));
    }

    /// A daemon that outlives its SIGKILL (stuck in the kernel) is waited for through
    /// SIGCHLD. The sweep's rescan must not become a deadline that stays in the past: the
    /// loop would spin at full CPU until the daemon is reaped.
    #[test]
    fn no_rescan_deadline_while_a_killed_daemon_is_not_reaped_yet() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_signal(TERM, secs(1.0), &mut out);
        sup.on_exit(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
        sup.on_exit(102, ExitStatus::Code(0), secs(1.1), &mut out);
        sup.after_reaping(true, secs(1.1), &mut out);
        sup.on_tick(secs(9.0), &mut out);
        sup.after_reaping(true, secs(9.0), &mut out);
        assert!(pid_of(&sup, 1).is_some(), "101 is killed but not reaped");
        assert_eq!(
            sup.next_deadline(),
            None,
            "only its SIGCHLD can change anything"
        );
        out.clear();
        sup.on_tick(secs(20.0), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn the_sweep_ends_when_no_child_is_left_after_the_kill_round() {
        let (mut sup, mut out) = shut_down_leaving_orphans();
        sup.on_tick(secs(9.0), &mut out);
        sup.after_reaping(true, secs(9.0), &mut out);
        sup.on_exit(
            200,
            ExitStatus::Signal(libc_sig::KILL),
            secs(9.01),
            &mut out,
        );
        sup.after_reaping(false, secs(9.01), &mut out);
        assert_eq!(exit_code(&out), Some(0));
    }

    /// -v levels: 0 errors only, 1 adds notices (the default), 2 info, 3 debug.
    #[test]
    fn verbosity_levels_show_what_they_promise() {
        let shown = |verbosity: u8| -> Vec<Level> {
            let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
            sup.set_verbosity(verbosity);
            let mut out = Actions::new();
            sup.on_driver_error("poll", "x", &mut out); // Error
            sup.on_log_lines_dropped(1, &mut out); // Notice
            sup.on_signal(HUP, secs(1.0), &mut out); // Info: forwarded
            sup.on_signal_failed(1, HUP, "x", &mut out); // Debug
            let mut levels: Vec<Level> = out
                .iter()
                .filter_map(|a| match a {
                    Action::Log(level, _) => Some(*level),
                    _ => None,
                })
                .collect();
            levels.dedup();
            levels
        };
        use Level::*;
        assert_eq!(shown(0), [Error]);
        assert_eq!(shown(1), [Error, Notice]);
        assert_eq!(shown(2), [Error, Notice, Info]);
        assert_eq!(shown(3), [Error, Notice, Info, Debug]);
    }

    #[test]
    fn the_drivers_failures_are_logged_at_their_levels() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_signal_failed(-7, TERM, "No such process", &mut out);
        assert_eq!(
            out.pop_front(),
            Some(Action::Log(
                Level::Debug,
                "sending SIGTERM to -7 failed: No such process".into()
            ))
        );
        sup.on_log_lines_dropped(0, &mut out);
        assert!(out.is_empty(), "nothing dropped, nothing said");
        sup.on_log_lines_dropped(3, &mut out);
        assert_eq!(logs(&out), "3 of bundle-init's own log lines were dropped");
        out.clear();
        sup.on_driver_error("poll", "Bad address", &mut out);
        assert_eq!(
            out.pop_front(),
            Some(Action::Log(Level::Error, "poll failed: Bad address".into()))
        );
    }

    #[test]
    fn exit_code_is_the_highest_failure_before_shutdown() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_exit(100, ExitStatus::Code(3), secs(1.0), &mut out);
        sup.on_exit(102, ExitStatus::Signal(libc_sig::SEGV), secs(1.0), &mut out);
        assert!(
            logs(&out).contains("supervise was killed by SIGSEGV; not restarted (keep-running)")
        );
        assert_eq!(pid_of(&sup, 1), Some(101), "siblings keep running");
        sup.on_signal(TERM, secs(2.0), &mut out);
        sup.on_exit(101, ExitStatus::Signal(libc_sig::TERM), secs(2.1), &mut out);
        nothing_left(&mut sup, &mut out);
        assert_eq!(exit_code(&out), Some(128 + 11));
    }

    #[test]
    fn when_every_keep_running_daemon_has_died_the_bundle_exits() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_exit(100, ExitStatus::Code(0), secs(1.0), &mut out);
        sup.on_exit(101, ExitStatus::Code(2), secs(1.0), &mut out);
        sup.on_exit(102, ExitStatus::Code(0), secs(1.0), &mut out);
        nothing_left(&mut sup, &mut out);
        assert_eq!(exit_code(&out), Some(2));
    }

    #[test]
    fn stop_bundle_ends_everything_with_its_code() {
        let mut plan = seed_plan(ExitPolicy::KeepRunning);
        plan.daemons[1].on_exit = ExitPolicy::StopBundle;
        let mut sup = started(plan);
        let mut out = Actions::new();
        sup.on_exit(101, ExitStatus::Code(4), secs(1.0), &mut out);
        assert_eq!(signals(&out), vec![(100, TERM), (102, TERM)]);
        sup.on_exit(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
        sup.on_exit(102, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
        nothing_left(&mut sup, &mut out);
        assert_eq!(exit_code(&out), Some(4));
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets_after_a_stable_run() {
        let mut sup = started(seed_plan(ExitPolicy::Restart));
        let mut out = Actions::new();
        let mut now = 0.5;
        let mut pid = 101;
        let mut delays = Vec::new();
        for _ in 0..6 {
            sup.on_exit(pid, ExitStatus::Code(1), secs(now), &mut out);
            let State::Backoff { until } = sup.daemons()[1].state else {
                panic!("not in backoff")
            };
            delays.push((until - secs(now)).as_secs_f64());
            assert_eq!(sup.next_deadline(), Some(until));
            out.clear();
            sup.on_tick(until, &mut out);
            assert_eq!(spawns(&out), vec![1]);
            pid += 1000;
            now = until.as_secs_f64() + 0.5;
            sup.on_spawned(1, Ok(pid), until, &mut out);
        }
        assert_eq!(delays, vec![1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
        // A run longer than stable-after brings the delay back to the start.
        let since = now;
        sup.on_exit(pid, ExitStatus::Code(1), secs(since + 20.0), &mut out);
        let State::Backoff { until } = sup.daemons()[1].state else {
            panic!()
        };
        assert_eq!((until - secs(since + 20.0)).as_secs_f64(), 1.0);
    }

    #[test]
    fn a_restart_request_during_backoff_starts_it_at_once() {
        let mut sup = started(seed_plan(ExitPolicy::Restart));
        let mut out = Actions::new();
        sup.on_exit(101, ExitStatus::Code(1), secs(1.0), &mut out);
        out.clear();
        sup.on_signal(USR1, secs(1.1), &mut out);
        assert_eq!(spawns(&out), vec![1]);
        sup.on_spawned(1, Ok(300), secs(1.1), &mut out);
        assert!(logs(&out).contains("pipelock started on request (SIGUSR1): pid 300"));
        assert_eq!(sup.next_deadline(), None, "the backoff timer is gone");
    }

    #[test]
    fn an_exec_failure_follows_the_exit_policy_and_a_fork_failure_retries() {
        let mut plan = seed_plan(ExitPolicy::KeepRunning);
        plan.daemons[2].on_exit = ExitPolicy::StopBundle;
        let mut sup = Supervisor::new(plan);
        let mut out = Actions::new();
        sup.start(secs(0.0), &mut out);
        let not_found = SpawnFailure {
            transient: false,
            code: 127,
            message: "/x: No such file".into(),
        };
        let fork = SpawnFailure {
            transient: true,
            code: 1,
            message: "fork failed".into(),
        };
        sup.on_spawned(0, Err(not_found.clone()), secs(0.0), &mut out);
        assert_eq!(sup.daemons()[0].state, State::Down);
        sup.on_spawned(1, Err(fork), secs(0.0), &mut out);
        assert_eq!(
            sup.daemons()[1].state,
            State::Backoff { until: secs(1.0) },
            "keep-running, but a fork failure retries"
        );
        sup.on_spawned(2, Err(not_found), secs(0.0), &mut out);
        assert!(logs(&out).contains("cannot start supervise: /x: No such file"));
        nothing_left(&mut sup, &mut out);
        assert_eq!(exit_code(&out), Some(127));
    }

    #[test]
    fn zero_daemons_exit_zero_at_once() {
        let mut plan = seed_plan(ExitPolicy::KeepRunning);
        plan.daemons.clear();
        let mut sup = Supervisor::new(plan);
        let mut out = Actions::new();
        sup.start(secs(0.0), &mut out);
        assert_eq!(exit_code(&out), Some(0));
        assert!(logs(&out).contains("no daemon selected"));
    }

    #[test]
    fn single_child_exits_with_the_childs_code_and_remaps_success_codes() {
        let plan = |codes: Vec<u8>| Plan {
            daemons: vec![daemon("app", ExitPolicy::StopBundle)],
            routes: Routes::forward_everything(),
            shutdown_grace: Duration::ZERO,
            stop_leftovers: false,
            success_codes: codes,
            single_child: true,
        };
        let mut sup = started(plan(vec![]));
        let mut out = Actions::new();
        sup.on_signal(TERM, secs(1.0), &mut out);
        assert_eq!(
            signals(&out),
            vec![(100, TERM)],
            "TERM is forwarded, not a shutdown"
        );
        sup.on_exit(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
        assert_eq!(
            exit_code(&out),
            Some(143),
            "no waiting for leftovers without --stop-others"
        );

        let mut sup = started(plan(vec![143]));
        let mut out = Actions::new();
        sup.on_exit(100, ExitStatus::Code(143), secs(1.0), &mut out);
        assert_eq!(exit_code(&out), Some(0));
    }

    #[test]
    fn no_deadline_means_the_loop_may_sleep_for_ever() {
        let sup = started(seed_plan(ExitPolicy::Restart));
        assert_eq!(sup.next_deadline(), None);
    }

    fn replies(out: &Actions) -> Vec<(ClientId, Reply)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Reply { client, reply } => Some((*client, reply.clone())),
                _ => None,
            })
            .collect()
    }

    fn refused(reason: &str, body: &str) -> Reply {
        Reply::Err {
            reason: reason.to_string(),
            body: body.to_string(),
        }
    }

    #[test]
    fn control_status_health_and_signal_are_answered_at_once() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_control(
            1,
            ControlRequest::Status { json: false },
            secs(5.0),
            &mut out,
        );
        let [(1, Reply::Ok(status))] = &replies(&out)[..] else {
            panic!("{out:?}");
        };
        assert_eq!(status.lines().count(), 4);
        assert!(status.ends_with("bundle file generation 1, loaded 5s ago\n"));
        assert!(
            status.starts_with("egress           running   pid 100     up 5s        restarts 0"),
            "{status}"
        );
        out.clear();
        sup.on_control(2, ControlRequest::Health, secs(5.0), &mut out);
        assert_eq!(replies(&out), [(2, Reply::Ok("healthy\n".into()))]);
        out.clear();
        sup.on_control(
            3,
            ControlRequest::Signal("egress".into(), HUP),
            secs(5.0),
            &mut out,
        );
        assert_eq!(signals(&out), [(100, HUP)]);
        assert_eq!(
            replies(&out),
            [(3, Reply::Ok("sent SIGHUP to egress (pid 100)\n".into()))]
        );
        out.clear();
        sup.on_control(
            4,
            ControlRequest::Signal("egres".into(), HUP),
            secs(5.0),
            &mut out,
        );
        assert!(signals(&out).is_empty());
        let why = "unknown daemon \"egres\" (known: egress, pipelock, supervise)";
        assert_eq!(replies(&out), [(4, refused(why, ""))]);
    }

    #[test]
    fn control_restart_is_answered_when_the_replacement_runs() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_control(
            7,
            ControlRequest::Restart(vec!["pipelock".into()]),
            secs(1.0),
            &mut out,
        );
        assert_eq!(signals(&out), [(101, TERM)]);
        assert!(replies(&out).is_empty(), "not before the new process runs");
        out.clear();
        sup.on_exit(101, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
        assert!(replies(&out).is_empty());
        sup.on_spawned(1, Ok(200), secs(1.2), &mut out);
        assert_eq!(
            replies(&out),
            [(7, Reply::Ok("pipelock restarted: pid 101 -> 200\n".into()))]
        );
        assert_eq!(sup.next_deadline(), None, "nobody is waiting any more");
    }

    #[test]
    fn control_restart_that_never_finishes_is_answered_at_its_deadline() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_control(
            7,
            ControlRequest::Restart(vec!["pipelock".into()]),
            secs(1.0),
            &mut out,
        );
        // The grace is 2 s: SIGKILL at 3 s, and the reply's deadline at 2 + 5 s after asking.
        assert_eq!(sup.next_deadline(), Some(secs(3.0)));
        sup.on_tick(secs(3.0), &mut out);
        assert_eq!(sup.next_deadline(), Some(secs(8.0)));
        out.clear();
        sup.on_tick(secs(8.0), &mut out);
        let body = "pipelock not restarted: did not come back up (was pid 101)\n";
        assert_eq!(replies(&out), [(7, refused("restart failed", body))]);
    }

    #[test]
    fn control_restart_whose_replacement_cannot_start_is_answered_at_once() {
        let mut plan = seed_plan(ExitPolicy::Restart);
        plan.daemons.truncate(1);
        let mut sup = Supervisor::new(plan);
        let mut out = Actions::new();
        sup.start(secs(0.0), &mut out);
        sup.on_spawned(0, Ok(100), secs(0.0), &mut out);
        sup.on_control(
            3,
            ControlRequest::Restart(vec!["egress".into()]),
            secs(1.0),
            &mut out,
        );
        sup.on_exit(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
        out.clear();
        let failure = SpawnFailure {
            transient: true,
            code: 126,
            message: "fork failed".into(),
        };
        sup.on_spawned(0, Err(failure), secs(1.2), &mut out);
        let body = "egress not restarted: did not come back up (was pid 100)\n";
        assert_eq!(replies(&out), [(3, refused("restart failed", body))]);
    }

    #[test]
    fn control_restarts_refused_are_answered_at_once_with_the_reason() {
        let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
        out.clear();
        sup.on_control(
            1,
            ControlRequest::Restart(vec!["app".into()]),
            secs(1.0),
            &mut out,
        );
        let body = "app not restarted: it is waiting for what it starts after (was pid -)\n";
        assert_eq!(replies(&out), [(1, refused("restart failed", body))]);
        assert!(logs(&out).contains("restart of app (control) ignored: it is waiting"));
        out.clear();
        sup.on_signal(TERM, secs(2.0), &mut out);
        out.clear();
        sup.on_control(
            2,
            ControlRequest::Restart(vec!["db".into()]),
            secs(2.0),
            &mut out,
        );
        let db = sup.daemons[sup.index_of("db").unwrap()].pid().unwrap();
        let body = format!("db not restarted: shutting down (was pid {db})\n");
        assert_eq!(replies(&out), [(2, refused("restart failed", &body))]);
        assert!(logs(&out).contains("restart of db (control) ignored: shutting down"));
    }

    #[test]
    fn a_shutdown_answers_the_clients_still_waiting_for_a_restart() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_control(
            5,
            ControlRequest::Restart(vec!["egress".into()]),
            secs(1.0),
            &mut out,
        );
        out.clear();
        sup.on_signal(TERM, secs(1.5), &mut out);
        sup.on_tick(secs(1.5), &mut out);
        let body = "egress not restarted: shutting down (was pid 100)\n";
        assert_eq!(replies(&out), [(5, refused("restart failed", body))]);
    }

    #[test]
    fn probes_start_with_a_running_daemon_and_stop_when_it_leaves() {
        let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
        assert!(out.contains(&Action::StartProbe { index: 0, pid: 100 }));
        out.clear();
        // Restarted before it was ready: the probe about the old process stops.
        sup.request_restart(0, Cause::Control, secs(1.0), &mut out);
        assert_eq!(out.front(), Some(&Action::StopProbe(0)));
        sup.on_exit(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
        sup.on_spawned(0, Ok(101), secs(1.2), &mut out);
        assert!(out.contains(&Action::StartProbe { index: 0, pid: 101 }));
        out.clear();
        // Ready: the probe stopped by itself, so a later exit stops nothing.
        sup.on_ready(0, secs(2.0), &mut out);
        assert_eq!(spawns(&out), [1], "app, which starts after db, starts now");
        out.clear();
        sup.on_exit(101, ExitStatus::Code(1), secs(3.0), &mut out);
        assert!(
            !out.iter().any(|a| matches!(a, Action::StopProbe(_))),
            "{out:?}"
        );
    }

    #[test]
    fn orphans_are_not_mistaken_for_daemons() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_exit(4242, ExitStatus::Code(0), secs(1.0), &mut out);
        assert_eq!(
            logs(&out),
            "Reaped zombie process with pid=4242 (exited with code 0)"
        );
        assert!(
            out.iter()
                .all(|a| matches!(a, Action::Log(Level::Debug, _)))
        );
        assert!(sup.daemons().iter().all(|d| d.is_running()));
        out.clear();
        sup.set_verbosity(1);
        sup.on_exit(4243, ExitStatus::Code(0), secs(1.0), &mut out);
        assert!(
            out.is_empty(),
            "a flood of orphans costs no line by default"
        );
        sup.set_orphan_warnings(true);
        sup.on_exit(4244, ExitStatus::Signal(9), secs(1.0), &mut out);
        assert_eq!(
            logs(&out),
            "Reaped zombie process with pid=4244 (was killed by SIGKILL)"
        );
    }

    /// The ordered plan with db's check, db running as pid 100 (not ready yet) and app
    /// waiting for it; the actions that came out so far.
    fn db_running(app_policy: ExitPolicy) -> (Supervisor, Actions) {
        let mut sup = Supervisor::new(ordered_plan(true, app_policy));
        let mut out = Actions::new();
        sup.start(secs(0.0), &mut out);
        sup.on_spawned(0, Ok(100), secs(0.1), &mut out);
        (sup, out)
    }

    fn ordered_plan(check: bool, app_policy: ExitPolicy) -> Plan {
        let mut db = daemon("db", ExitPolicy::KeepRunning);
        if check {
            db.ready = Some(crate::plan::ReadyCheck::Tcp("127.0.0.1:5432".into()));
        }
        let mut app = daemon("app", app_policy);
        app.after = vec!["db".into(), "not-selected".into()];
        app.ready_timeout = secs(5.0);
        Plan {
            daemons: vec![db, app],
            routes: Routes::bundle_defaults(),
            shutdown_grace: secs(8.0),
            stop_leftovers: true,
            success_codes: vec![],
            single_child: false,
        }
    }

    #[test]
    fn a_daemon_starts_only_after_what_it_waits_for_is_ready() {
        let mut sup = Supervisor::new(ordered_plan(true, ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.start(secs(0.0), &mut out);
        assert_eq!(spawns(&out), vec![0], "app waits");
        assert!(logs(&out).contains("app waits for db to be ready"));
        out.clear();
        sup.on_spawned(0, Ok(100), secs(0.1), &mut out);
        assert!(
            spawns(&out).is_empty(),
            "running is not ready when there is a check"
        );
        assert_eq!(sup.next_deadline(), Some(secs(5.0)));
        sup.on_ready(0, secs(0.5), &mut out);
        assert_eq!(spawns(&out), vec![1]);
        assert!(logs(&out).contains("db is ready"));
        assert!(sup.daemons()[0].ready);
        sup.on_spawned(1, Ok(101), secs(0.6), &mut out);
        assert_eq!(
            sup.health(),
            Ok(()),
            "ready with a check, and running without one"
        );
    }

    /// A probe's report counts once, and only for a process that is running: one that
    /// arrives late (the daemon died meanwhile) or twice changes nothing.
    #[test]
    fn a_ready_report_counts_once_and_only_while_running() {
        let (mut sup, mut out) = db_running(ExitPolicy::Restart);
        sup.on_ready(0, secs(0.5), &mut out);
        out.clear();
        sup.on_ready(0, secs(0.6), &mut out);
        assert!(out.is_empty(), "a second report: {out:?}");
        sup.on_exit(100, ExitStatus::Code(1), secs(1.0), &mut out);
        out.clear();
        sup.on_ready(0, secs(1.1), &mut out);
        assert!(out.is_empty(), "a late report for a dead process: {out:?}");
        assert!(!sup.daemons()[0].ready);
        assert!(sup.health().unwrap_err()[0].starts_with("db is down"));
    }

    /// `restarts` counts every start after the first, whatever caused it, and the log says
    /// which kind of start it was.
    #[test]
    fn starts_are_counted_and_named_by_their_cause() {
        let mut plan = seed_plan(ExitPolicy::Restart);
        plan.daemons.truncate(1);
        let mut sup = Supervisor::new(plan);
        let mut out = Actions::new();
        sup.start(secs(0.0), &mut out);
        sup.on_spawned(0, Ok(100), secs(0.0), &mut out);
        assert_eq!(logs(&out), "egress started: pid 100");
        assert_eq!(sup.daemons()[0].restarts, 0);
        out.clear();
        sup.on_exit(100, ExitStatus::Code(1), secs(20.0), &mut out);
        sup.on_tick(secs(21.0), &mut out);
        sup.on_spawned(0, Ok(101), secs(21.0), &mut out);
        assert!(
            logs(&out).ends_with("egress started again: pid 101"),
            "{}",
            logs(&out)
        );
        assert_eq!(sup.daemons()[0].restarts, 1, "a crash restart counts");
        out.clear();
        sup.request_restart(0, Cause::Control, secs(30.0), &mut out);
        sup.on_exit(
            101,
            ExitStatus::Signal(libc_sig::TERM),
            secs(30.1),
            &mut out,
        );
        sup.on_spawned(0, Ok(102), secs(30.2), &mut out);
        assert!(logs(&out).contains("egress restarted (control): pid 101 -> 102"));
        assert_eq!(sup.daemons()[0].restarts, 2, "a requested restart counts");
    }

    #[test]
    fn without_a_check_running_is_ready() {
        let mut sup = Supervisor::new(ordered_plan(false, ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.start(secs(0.0), &mut out);
        sup.on_spawned(0, Ok(100), secs(0.1), &mut out);
        assert_eq!(spawns(&out), vec![0, 1]);
    }

    #[test]
    fn a_wait_that_times_out_follows_the_exit_policy() {
        let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
        out.clear();
        sup.on_tick(secs(5.0), &mut out);
        assert!(
            logs(&out).contains("app gave up waiting after 5s"),
            "{}",
            logs(&out)
        );
        assert_eq!(sup.daemons()[1].state, State::Down);
        assert_eq!(
            sup.health().unwrap_err(),
            vec![
                "db is running but not ready".to_string(),
                "app is down: it exited with code 1".to_string()
            ]
        );

        let (mut sup, mut out) = db_running(ExitPolicy::Restart);
        sup.on_tick(secs(5.0), &mut out);
        assert_eq!(sup.daemons()[1].state, State::Backoff { until: secs(6.0) });
        sup.on_tick(secs(6.0), &mut out);
        assert_eq!(
            sup.daemons()[1].state,
            State::WaitingForDependencies { until: secs(11.0) },
            "waits again after the backoff"
        );

        let (mut sup, mut out) = db_running(ExitPolicy::StopBundle);
        sup.on_tick(secs(5.0), &mut out);
        assert_eq!(
            signals(&out),
            vec![(100, TERM)],
            "stop-bundle: everything stops"
        );
    }

    #[test]
    fn readiness_ends_with_the_process() {
        let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
        sup.on_ready(0, secs(0.2), &mut out);
        sup.on_exit(100, ExitStatus::Code(0), secs(1.0), &mut out);
        assert!(!sup.daemons()[0].ready);
        assert!(sup.status_lines(secs(1.0), false)[0].contains("ready no"));
    }

    // ------------------------------------------------------------------ reload

    /// The seed plan as a reload would read it, with `edit` applied.
    fn edited(edit: impl FnOnce(&mut Plan)) -> Plan {
        let mut plan = seed_plan(ExitPolicy::KeepRunning);
        edit(&mut plan);
        plan
    }

    fn bundle_reads(out: &Actions) -> Vec<ReloadRequest> {
        out.iter()
            .filter_map(|a| match a {
                Action::ReadBundle(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn renumberings(out: &Actions) -> Vec<Vec<Option<usize>>> {
        out.iter()
            .filter_map(|a| match a {
                Action::Renumber(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// A control client asks for a reload at `at`; the driver reads `plan`.
    fn reload(sup: &mut Supervisor, plan: Result<Plan, String>, at: f64) -> Actions {
        let mut out = Actions::new();
        sup.on_control(
            9,
            ControlRequest::Reload { dry_run: false },
            secs(at),
            &mut out,
        );
        let reads = bundle_reads(&out);
        assert_eq!(reads.len(), 1, "{out:?}");
        sup.on_bundle_read(reads[0].clone(), plan, secs(at), &mut out);
        out
    }

    const QUEUED: &str =
        "reload queued: it runs once the restarts under way are done (the log says what it did)\n";

    fn names(sup: &Supervisor) -> Vec<&str> {
        sup.current().map(|d| d.spec.name.as_str()).collect()
    }

    #[test]
    fn a_changed_daemon_is_stopped_the_old_way_and_started_the_new_way() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let out = reload(
            &mut sup,
            Ok(edited(|p| {
                p.daemons[1].argv = vec!["pipelock".into(), "--new".into()];
                p.daemons[1].stop_signal = QUIT;
                p.daemons[1].grace = secs(5.0);
            })),
            10.0,
        );
        // Only pipelock gets a signal: its old stop signal, killed at its old grace.
        assert_eq!(signals(&out), [(101, TERM)]);
        assert_eq!(sup.next_deadline(), Some(secs(12.0)));
        assert_eq!(renumberings(&out), [vec![Some(0), Some(1), Some(2)]]);
        assert_eq!(
            replies(&out),
            [(
                9,
                Reply::Ok(
                    "reloaded (generation 2): pipelock changed (run, stop-signal), 2 unchanged\n"
                        .into()
                )
            )]
        );
        assert!(logs(&out).contains(
            "reload (control): pipelock changed (run, stop-signal), 2 unchanged (0.000 ms)"
        ));
        let mut out = Actions::new();
        sup.on_exit(101, ExitStatus::Signal(15), secs(10.5), &mut out);
        assert_eq!(spawns(&out), [1]);
        assert_eq!(sup.daemons()[1].spec.argv[1], "--new");
        sup.on_spawned(1, Ok(200), secs(10.5), &mut out);
        assert!(logs(&out).contains("pipelock restarted (reload): pid 101 -> 200 in 500.000 ms"));
        assert_eq!(sup.daemons()[1].restarts, 1);
        assert_eq!((pid_of(&sup, 0), pid_of(&sup, 2)), (Some(100), Some(102)));
        // The new stop signal and grace from now on.
        sup.on_signal(USR1, secs(20.0), &mut out);
        assert_eq!(signals(&out).last(), Some(&(200, QUIT)));
        let status = sup.status_lines(secs(20.0), false);
        assert_eq!(
            status.last().unwrap(),
            "bundle file generation 2, loaded 10s ago"
        );
    }

    #[test]
    fn added_daemons_start_and_removed_ones_are_stopped_and_forgotten() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        // egress's history, which must survive.
        sup.on_signal(HUP, secs(1.0), &mut out);
        let out = reload(
            &mut sup,
            Ok(edited(|p| {
                p.daemons[2] = daemon("metrics", ExitPolicy::KeepRunning);
            })),
            10.0,
        );
        assert_eq!(names(&sup), ["egress", "pipelock", "metrics"]);
        // supervise (102) stays, last, until it is reaped.
        assert_eq!(renumberings(&out), [vec![Some(0), Some(1), None, Some(2)]]);
        assert_eq!(signals(&out), [(102, TERM)]);
        // metrics waits until supervise has stopped: a renamed daemon never runs beside
        // its old self.
        assert_eq!(spawns(&out), []);
        assert!(sup.status_lines(secs(10.0), false)[2].starts_with("metrics          waiting"));
        let mut out = Actions::new();
        sup.on_control(
            4,
            ControlRequest::Restart(vec!["supervise".into()]),
            secs(10.1),
            &mut out,
        );
        assert!(
            matches!(&replies(&out)[0].1, Reply::Err { reason, .. } if reason.starts_with("unknown daemon \"supervise\""))
        );
        out.clear();
        sup.on_exit(102, ExitStatus::Signal(15), secs(10.2), &mut out);
        assert!(logs(&out).contains("supervise was killed by SIGTERM (pid 102): removed"));
        let forget = out.iter().position(|a| *a == Action::Forget(3));
        let spawn = out.iter().position(|a| *a == Action::Spawn(2));
        assert!(
            forget.is_some() && forget < spawn,
            "the old pipes close first: {out:?}"
        );
        sup.on_spawned(2, Ok(300), secs(10.2), &mut out);
        assert_eq!(names(&sup), ["egress", "pipelock", "metrics"]);
        assert_eq!(exit_code(&out), None);
        // A removed daemon that needed SIGKILL does not count toward the exit code either.
        assert_eq!(sup.exit_code, 0);
    }

    #[test]
    fn a_removed_daemon_that_ignores_its_stop_signal_is_killed_at_its_grace() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        reload(
            &mut sup,
            Ok(edited(|p| {
                p.daemons.truncate(2);
            })),
            10.0,
        );
        let mut out = Actions::new();
        sup.on_tick(secs(12.0), &mut out);
        assert_eq!(signals(&out), [(102, KILL)]);
        sup.on_exit(102, ExitStatus::Signal(9), secs(12.1), &mut out);
        assert_eq!(out.back(), Some(&Action::Forget(2)), "{out:?}");
        assert_eq!(sup.exit_code, 0);
        // Its place is dropped at the next reload.
        let out = reload(&mut sup, Ok(edited(|p| p.daemons.truncate(2))), 13.0);
        assert_eq!(renumberings(&out), [vec![Some(0), Some(1)]]);
        assert_eq!(sup.daemons().len(), 2);
    }

    #[test]
    fn a_reordered_file_restarts_nothing_and_bookkeeping_applies_at_once() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let out = reload(
            &mut sup,
            Ok(edited(|p| {
                p.daemons.swap(0, 2);
                p.daemons[1].on_exit = ExitPolicy::Restart;
                // Routes name daemons by their new place.
                p.routes.set(USR1, Route::Restart(vec![1]));
                p.routes.set(HUP, Route::Forward(vec![2]));
            })),
            10.0,
        );
        assert_eq!(signals(&out), []);
        assert_eq!(spawns(&out), []);
        assert_eq!(renumberings(&out), [vec![Some(2), Some(1), Some(0)]]);
        assert_eq!(names(&sup), ["supervise", "pipelock", "egress"]);
        assert!(logs(&out).contains("pipelock updated (on-exit), 2 unchanged"));
        // pipelock now restarts after a crash: the new policy, with no restart to get it.
        let mut out = Actions::new();
        sup.on_exit(101, ExitStatus::Code(1), secs(11.0), &mut out);
        assert!(logs(&out).contains("pipelock exited with code 1; restarting in 1s"));
        // The changed routes: HUP goes to egress at its new place.
        out.clear();
        sup.on_signal(HUP, secs(12.0), &mut out);
        assert_eq!(signals(&out), [(100, HUP)]);
    }

    #[test]
    fn a_changed_route_applies_at_once() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        reload(
            &mut sup,
            Ok(edited(|p| p.routes.set(HUP, Route::Forward(vec![2])))),
            10.0,
        );
        let mut out = Actions::new();
        sup.on_signal(HUP, secs(11.0), &mut out);
        assert_eq!(signals(&out), [(102, HUP)]);
    }

    #[test]
    fn an_invalid_file_changes_nothing_and_says_why() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let out = reload(
            &mut sup,
            Err("b.bundle:3: unknown key \"x\" in [a]".into()),
            10.0,
        );
        assert_eq!(signals(&out), []);
        assert_eq!(renumberings(&out), Vec::<Vec<Option<usize>>>::new());
        assert_eq!(
            replies(&out),
            [(9, refused("b.bundle:3: unknown key \"x\" in [a]", ""))]
        );
        assert!(logs(&out).contains("reload (control) refused, nothing changed: b.bundle:3"));
        assert_eq!(sup.generation, 1);
        assert_eq!(names(&sup), ["egress", "pipelock", "supervise"]);
    }

    #[test]
    fn a_dry_run_answers_with_the_plan_and_changes_nothing() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_control(
            9,
            ControlRequest::Reload { dry_run: true },
            secs(10.0),
            &mut out,
        );
        let read = bundle_reads(&out).remove(0);
        let plan = edited(|p| p.daemons[0].argv.push("--x".into()));
        sup.on_bundle_read(read, Ok(plan), secs(10.0), &mut out);
        assert_eq!(
            replies(&out),
            [(
                9,
                Reply::Ok("would reload: egress changed (run), 2 unchanged\n".into())
            )]
        );
        assert_eq!(signals(&out), []);
        assert_eq!(sup.generation, 1);
        assert_eq!(sup.daemons()[0].spec.argv.len(), 1);
    }

    #[test]
    fn a_reload_during_shutdown_is_ignored_and_said_to_be() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_signal(TERM, secs(1.0), &mut out);
        out.clear();
        sup.on_control(
            9,
            ControlRequest::Reload { dry_run: false },
            secs(2.0),
            &mut out,
        );
        assert_eq!(bundle_reads(&out), []);
        assert_eq!(replies(&out), [(9, refused("shutting down", ""))]);
        assert!(logs(&out).contains("reload (control) ignored: shutting down"));
    }

    #[test]
    fn a_reload_during_a_restart_waits_for_it_and_then_reads_the_file() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_signal(USR1, secs(1.0), &mut out);
        out.clear();
        sup.on_control(
            9,
            ControlRequest::Reload { dry_run: false },
            secs(1.1),
            &mut out,
        );
        assert_eq!(
            bundle_reads(&out),
            [],
            "not while pipelock is between two processes"
        );
        // The client hears at once that it is queued: it holds no control slot meanwhile.
        assert_eq!(replies(&out), [(9, Reply::Ok(QUEUED.into()))]);
        sup.on_exit(101, ExitStatus::Signal(15), secs(1.2), &mut out);
        assert_eq!(bundle_reads(&out), [], "nor while its replacement starts");
        sup.on_spawned(1, Ok(200), secs(1.2), &mut out);
        let reads = bundle_reads(&out);
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0].clients, Vec::<ClientId>::new());
        // Compared now, pipelock is its new process: a change restarts that one.
        out.clear();
        let plan = edited(|p| p.daemons[1].argv.push("--v2".into()));
        sup.on_bundle_read(reads[0].clone(), Ok(plan), secs(1.3), &mut out);
        assert_eq!(signals(&out), [(200, TERM)]);
    }

    #[test]
    fn a_storm_of_reload_requests_runs_one_reload_after_the_one_under_way() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let changed = || edited(|p| p.daemons[1].argv.push("--v2".into()));
        let out = reload(&mut sup, Ok(changed()), 1.0);
        assert_eq!(signals(&out), [(101, TERM)]);
        let mut out = Actions::new();
        for client in 10..110 {
            sup.on_control(
                client,
                ControlRequest::Reload { dry_run: false },
                secs(1.1),
                &mut out,
            );
            sup.on_signal(HUP, secs(1.1), &mut out);
        }
        sup.routes.set(HUP, Route::Reload);
        for _ in 0..100 {
            sup.on_signal(HUP, secs(1.1), &mut out);
        }
        assert_eq!(bundle_reads(&out), []);
        // Every client is answered at once, each exactly once.
        let answered: Vec<ClientId> = replies(&out).iter().map(|(c, _)| *c).collect();
        assert_eq!(answered, (10..110).collect::<Vec<_>>());
        sup.on_exit(101, ExitStatus::Signal(15), secs(1.2), &mut out);
        sup.on_spawned(1, Ok(200), secs(1.2), &mut out);
        let reads = bundle_reads(&out);
        assert_eq!(reads.len(), 1, "one more reload, not 200");
        out.clear();
        sup.on_bundle_read(reads[0].clone(), Ok(changed()), secs(1.3), &mut out);
        // The file did not change again: nothing restarts.
        assert_eq!(signals(&out), []);
        assert_eq!(sup.generation, 3);
    }

    #[test]
    fn a_changed_daemon_in_backoff_or_down_starts_at_once_with_its_new_definition() {
        let mut sup = started(seed_plan(ExitPolicy::Restart));
        let mut out = Actions::new();
        sup.on_exit(101, ExitStatus::Code(1), secs(1.0), &mut out);
        assert_eq!(sup.daemons()[1].state, State::Backoff { until: secs(2.0) });
        let out = reload(
            &mut sup,
            Ok(edited(|p| {
                p.daemons[1].argv.push("--fixed".into());
                p.daemons[1].on_exit = ExitPolicy::Restart;
            })),
            1.5,
        );
        assert_eq!(spawns(&out), [1]);
        assert_eq!(sup.daemons()[1].spec.argv[1], "--fixed");
        assert_eq!(sup.daemons()[1].next_spec, None);
        // A keep-running daemon that ended: it starts with the new definition too.
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_exit(102, ExitStatus::Code(3), secs(1.0), &mut out);
        let out = reload(
            &mut sup,
            Ok(edited(|p| p.daemons[2].argv.push("--v2".into()))),
            2.0,
        );
        assert_eq!(spawns(&out), [2]);
        assert_eq!(
            sup.daemons()[2].last_exit,
            Some(ExitStatus::Code(3)),
            "history kept"
        );
    }

    #[test]
    fn changed_daemons_restart_in_after_order() {
        // api after db, both with checks; both change.
        let plan = |version: &str| {
            let mut plan = ordered_plan(true, ExitPolicy::KeepRunning);
            for d in &mut plan.daemons {
                d.argv.push(version.into());
            }
            plan
        };
        let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
        sup.on_ready(0, secs(0.1), &mut out);
        sup.on_spawned(1, Ok(101), secs(0.1), &mut out);
        sup.on_ready(1, secs(0.2), &mut out);
        let out = reload(&mut sup, Ok(plan("v2")), 10.0);
        assert_eq!(signals(&out), [(100, TERM), (101, TERM)]);
        let mut out = Actions::new();
        // app is reaped first: it waits for db, which is not ready.
        sup.on_exit(101, ExitStatus::Signal(15), secs(10.1), &mut out);
        assert_eq!(spawns(&out), []);
        assert!(logs(&out).contains("app waits for db to be ready"));
        sup.on_exit(100, ExitStatus::Signal(15), secs(10.2), &mut out);
        assert_eq!(spawns(&out), [0]);
        sup.on_spawned(0, Ok(200), secs(10.2), &mut out);
        assert_eq!(spawns(&out), [0], "app still waits for db's check");
        sup.on_ready(0, secs(10.3), &mut out);
        assert_eq!(spawns(&out), [0, 1]);
    }

    /// Carries out `out` in queue order, as the runtime does: ReadBundle reads `plan`, a
    /// Spawn succeeds with the next pid. Returns every action carried out.
    fn drive(sup: &mut Supervisor, out: &mut Actions, plan: &Plan, now: f64) -> Vec<Action> {
        let mut done = Vec::new();
        let mut next_pid = 500;
        while let Some(action) = out.pop_front() {
            match &action {
                Action::ReadBundle(r) => {
                    sup.on_bundle_read(r.clone(), Ok(plan.clone()), secs(now), out)
                }
                Action::Spawn(i) => {
                    next_pid += 1;
                    sup.on_spawned(*i, Ok(next_pid), secs(now), out);
                }
                _ => {}
            }
            done.push(action);
        }
        done
    }

    /// A start queued in the same loop iteration as the file read (a backoff that ended):
    /// the reload waits for it, and no start lands on a renumbered daemon.
    #[test]
    fn a_start_queued_behind_the_file_read_is_not_renumbered_under_it() {
        let mut plan = seed_plan(ExitPolicy::Restart);
        plan.routes.set(HUP, Route::Reload);
        let mut sup = started(plan.clone());
        let mut out = Actions::new();
        sup.on_exit(101, ExitStatus::Code(1), secs(1.0), &mut out);
        out.clear();
        sup.on_signal(HUP, secs(2.0), &mut out);
        sup.on_tick(secs(2.0), &mut out); // pipelock's backoff is over: Spawn(1)
        let mut swapped = plan.clone();
        swapped.daemons.swap(0, 1);
        let done = drive(&mut sup, &mut out, &swapped, 2.0);
        let spawned: Vec<&Action> = done
            .iter()
            .filter(|a| matches!(a, Action::Spawn(_)))
            .collect();
        assert_eq!(spawned, [&Action::Spawn(1)], "{done:?}");
        assert_eq!(pid_of(&sup, 0), Some(501), "pipelock started");
        assert_eq!(pid_of(&sup, 1), Some(100), "egress untouched");
        // The reload ran once the start was done: the file's order now.
        assert_eq!(names(&sup), ["pipelock", "egress", "supervise"]);
        assert!(!sup.reload_in_flight());
        // A changed daemon being started is started once, and then restarted the new way.
        let mut sup = started(plan.clone());
        let mut out = Actions::new();
        sup.on_exit(101, ExitStatus::Code(1), secs(1.0), &mut out);
        out.clear();
        sup.on_signal(HUP, secs(2.0), &mut out);
        sup.on_tick(secs(2.0), &mut out);
        let mut fixed = plan.clone();
        fixed.daemons[1].argv.push("--fixed".into());
        let done = drive(&mut sup, &mut out, &fixed, 2.0);
        let spawned = done
            .iter()
            .filter(|a| matches!(a, Action::Spawn(_)))
            .count();
        assert_eq!(spawned, 1, "{done:?}");
        assert_eq!(signals(&done.into_iter().collect()), [(501, TERM)]);
    }

    /// HUP (reload) and USR1 (restart) in one signalfd read: the reload waits for the
    /// restart; no replacement starts beside the old process.
    #[test]
    fn a_restart_in_the_same_iteration_as_a_reload_finishes_first() {
        let mut plan = seed_plan(ExitPolicy::KeepRunning);
        plan.routes.set(HUP, Route::Reload);
        let mut sup = started(plan.clone());
        let mut out = Actions::new();
        sup.on_signal(HUP, secs(1.0), &mut out);
        sup.on_signal(USR1, secs(1.0), &mut out);
        let mut changed = plan.clone();
        changed.daemons[1].argv.push("--v2".into());
        let done = drive(&mut sup, &mut out, &changed, 1.0);
        assert!(
            !done.iter().any(|a| matches!(a, Action::Spawn(_))),
            "{done:?}"
        );
        assert!(sup.waiting_reload.is_some());
        sup.on_exit(101, ExitStatus::Signal(15), secs(1.1), &mut out);
        let done = drive(&mut sup, &mut out, &changed, 1.1);
        // The restart's replacement (old definition), then the reload restarts it again.
        assert_eq!(signals(&done.into_iter().collect()), [(501, TERM)]);
        assert_eq!(sup.daemons()[1].next_spec.as_ref().unwrap().argv.len(), 2);
    }

    /// Two requests in one iteration: the first is applied, the second waited and runs
    /// right after even though the first left nothing under way.
    #[test]
    fn a_reload_asked_while_the_file_is_read_is_not_lost() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_control(
            1,
            ControlRequest::Reload { dry_run: false },
            secs(1.0),
            &mut out,
        );
        sup.on_control(
            2,
            ControlRequest::Reload { dry_run: false },
            secs(1.0),
            &mut out,
        );
        let done = drive(&mut sup, &mut out, &seed_plan(ExitPolicy::KeepRunning), 1.0);
        let answered: Vec<ClientId> = replies(&done.iter().cloned().collect())
            .iter()
            .map(|(c, _)| *c)
            .collect();
        assert_eq!(answered, [2, 1]);
        assert_eq!(
            done.iter()
                .filter(|a| matches!(a, Action::ReadBundle(_)))
                .count(),
            2
        );
        assert_eq!(sup.generation, 3);
        assert!(sup.waiting_reload.is_none());
    }

    #[test]
    fn when_a_removal_leaves_no_daemon_running_the_bundle_ends() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        reload(&mut sup, Ok(edited(|p| p.daemons.truncate(2))), 10.0);
        let mut out = Actions::new();
        sup.on_exit(100, ExitStatus::Code(0), secs(10.1), &mut out);
        sup.on_exit(101, ExitStatus::Code(0), secs(10.2), &mut out);
        assert!(
            !sup.is_shutting_down(),
            "supervise (removed) is still stopping"
        );
        sup.on_exit(102, ExitStatus::Signal(15), secs(10.3), &mut out);
        assert!(sup.is_shutting_down(), "{}", logs(&out));
        assert!(logs(&out).contains("every daemon has exited"));
    }

    /// A reload waiting, or a file being read, when shutdown begins: refused, never applied.
    #[test]
    fn a_reload_overtaken_by_shutdown_is_refused() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_signal(USR1, secs(1.0), &mut out);
        sup.on_control(
            7,
            ControlRequest::Reload { dry_run: false },
            secs(1.1),
            &mut out,
        );
        out.clear();
        sup.on_signal(TERM, secs(1.2), &mut out);
        assert!(logs(&out).contains("reload (control) ignored: shutting down"));
        sup.on_exit(101, ExitStatus::Signal(15), secs(1.3), &mut out);
        assert_eq!(bundle_reads(&out), []);
        // The file was being read when TERM came.
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_control(
            8,
            ControlRequest::Reload { dry_run: false },
            secs(1.0),
            &mut out,
        );
        let read = bundle_reads(&out).remove(0);
        sup.on_signal(TERM, secs(1.1), &mut out);
        out.clear();
        sup.on_bundle_read(
            read,
            Ok(edited(|p| p.daemons.truncate(1))),
            secs(1.2),
            &mut out,
        );
        assert_eq!(replies(&out), [(8, refused("shutting down", ""))]);
        assert_eq!(sup.generation, 1);
        assert_eq!(names(&sup), ["egress", "pipelock", "supervise"]);
    }

    /// An unchanged daemon's `after` follows its dependency to its new place.
    #[test]
    fn after_follows_a_reordered_dependency() {
        let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
        sup.on_ready(0, secs(0.1), &mut out);
        sup.on_spawned(1, Ok(101), secs(0.1), &mut out);
        let mut plan = ordered_plan(true, ExitPolicy::KeepRunning);
        plan.daemons
            .insert(0, daemon("first", ExitPolicy::KeepRunning));
        reload(&mut sup, Ok(plan), 1.0);
        assert_eq!(names(&sup), ["first", "db", "app"]);
        assert_eq!(sup.daemons()[2].after, [1]);
    }

    /// An action queued before the reload was applied (a probe to stop, for a daemon that
    /// died in the same loop iteration) is carried out on the right daemon: the renumbering
    /// comes first and the action carries the new number.
    #[test]
    fn actions_queued_behind_the_file_read_get_the_new_numbers() {
        let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
        sup.routes.set(HUP, Route::Reload);
        out.clear();
        sup.on_signal(HUP, secs(1.0), &mut out);
        sup.on_exit(100, ExitStatus::Code(1), secs(1.0), &mut out);
        assert!(out.contains(&Action::StopProbe(0)), "{out:?}");
        let mut plan = ordered_plan(true, ExitPolicy::KeepRunning);
        plan.daemons
            .insert(0, daemon("first", ExitPolicy::KeepRunning));
        let done = drive(&mut sup, &mut out, &plan, 1.0);
        let renumber = done.iter().position(|a| matches!(a, Action::Renumber(_)));
        let stop_probe = done.iter().position(|a| *a == Action::StopProbe(1));
        assert!(renumber.is_some() && renumber < stop_probe, "{done:?}");
        assert!(!done.contains(&Action::StopProbe(0)), "{done:?}");
    }

    /// A client waiting for a restart gets its answer about its own daemon after a reload
    /// moved that daemon, and after one removed it.
    #[test]
    fn a_restart_reply_names_its_daemon_after_a_reload_moved_or_removed_it() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_control(
            5,
            ControlRequest::Restart(vec!["supervise".into()]),
            secs(1.0),
            &mut out,
        );
        let mut moved = seed_plan(ExitPolicy::KeepRunning);
        moved.daemons.swap(0, 2);
        sup.apply_reload(moved, &[], secs(1.1), &mut out);
        sup.on_exit(102, ExitStatus::Signal(15), secs(1.2), &mut out);
        sup.on_spawned(0, Ok(300), secs(1.2), &mut out);
        assert_eq!(
            replies(&out),
            [(5, Reply::Ok("supervise restarted: pid 102 -> 300\n".into()))]
        );
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.on_control(
            6,
            ControlRequest::Restart(vec!["supervise".into()]),
            secs(1.0),
            &mut out,
        );
        sup.apply_reload(edited(|p| p.daemons.truncate(2)), &[], secs(1.1), &mut out);
        sup.settle_replies(secs(1.1), &mut out);
        let answers = replies(&out);
        assert!(
            matches!(&answers[..], [(6, Reply::Err { body, .. })] if body == "supervise not restarted: removed by a reload (was pid 102)\n"),
            "{answers:?}"
        );
    }
}
