//! The supervisor: a pure state machine. Events go in (a signal arrived, a child exited, a
//! spawn succeeded or failed, time passed); actions come out (spawn, signal, log, exit).
//! It does no I/O and reads no clock, so unit tests drive every rule directly.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::plan::{DaemonSpec, ExitPolicy, Plan, Route, Routes};
use crate::signal::Sig;
use crate::sys::libc_sig;

/// A reading of the monotonic clock.
pub type Time = Duration;

/// How a child ended, as `wait` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(u8),
    Signal(i32),
}

impl ExitStatus {
    /// The shell's convention: the exit code, or 128+N when signal N killed it.
    pub fn code(self) -> u8 {
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
pub enum Level {
    Error = 0,
    /// Warnings and the lifecycle of daemons (starts, exits, restarts): shown by default.
    Notice = 1,
    Info = 2,
    Debug = 3,
}

/// Why a spawn failed, as the supervisor needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpawnFailure {
    /// fork itself failed (EAGAIN under a process limit, ENOMEM): worth retrying whatever
    /// the exit policy says.
    pub transient: bool,
    /// The code this counts as when it is not transient: 127 not found, 126 not runnable.
    pub code: u8,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start daemon `index`; answer with `Supervisor::on_spawned`.
    Spawn(usize),
    /// Send `sig` to `pid`, or to its process group when `group`.
    Signal { pid: i32, sig: Sig, group: bool },
    /// Send `sig` to every process that is not a daemon (kill(-1) as PID 1).
    SignalLeftovers(Sig),
    Log(Level, String),
    Exit(u8),
}

/// Who asked for a restart, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartRequest {
    pub asked_at: Time,
    pub by: Sig,
    pub old_pid: Option<i32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not running and not scheduled: before the first start, or while a spawn is under way.
    Idle,
    Running { pid: i32, since: Time },
    /// Sent its stop signal; SIGKILL at `kill_at` (None once sent). `restart` says whether
    /// a replacement starts when it is reaped.
    Stopping { pid: i32, since: Time, kill_at: Option<Time>, restart: Option<RestartRequest> },
    /// Waiting to be started again after a crash.
    Backoff { until: Time },
    /// Ended and stays down.
    Exited,
}

#[derive(Clone, Debug)]
pub struct Daemon {
    pub spec: DaemonSpec,
    pub state: State,
    pub restarts: u32,
    pub last_exit: Option<ExitStatus>,
    /// Crashes since the last stable run; sets the next backoff delay.
    crashes_in_a_row: u32,
    /// Set while a restart waits for its replacement to be spawned.
    pending_restart: Option<RestartRequest>,
}

impl Daemon {
    pub fn pid(&self) -> Option<i32> {
        match self.state {
            State::Running { pid, .. } | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    fn is_live(&self) -> bool {
        self.pid().is_some()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    ShuttingDown { deadline: Time, killed: bool, leftovers_termed: bool },
    Done,
}

pub struct Supervisor {
    daemons: Vec<Daemon>,
    routes: Routes,
    shutdown_grace: Duration,
    stop_leftovers: bool,
    success_codes: Vec<u8>,
    /// Level of start/exit lines: Notice in bundle mode, Info in single-child mode (tini is
    /// silent about its child unless asked).
    lifecycle: Level,
    phase: Phase,
    exit_code: u8,
    /// Whether the last reaping pass saw children other than those it reaped.
    leftovers: bool,
}

pub type Actions = VecDeque<Action>;

impl Supervisor {
    pub fn new(plan: Plan) -> Supervisor {
        let lifecycle = if plan.single_child { Level::Info } else { Level::Notice };
        Supervisor {
            daemons: plan
                .daemons
                .into_iter()
                .map(|spec| Daemon {
                    spec,
                    state: State::Idle,
                    restarts: 0,
                    last_exit: None,
                    crashes_in_a_row: 0,
                    pending_restart: None,
                })
                .collect(),
            routes: plan.routes,
            shutdown_grace: plan.shutdown_grace,
            stop_leftovers: plan.stop_leftovers,
            success_codes: plan.success_codes,
            lifecycle,
            phase: Phase::Running,
            exit_code: 0,
            leftovers: false,
        }
    }

    pub fn daemons(&self) -> &[Daemon] {
        &self.daemons
    }

    /// The daemon whose live process is `pid`.
    pub fn daemon_of(&self, pid: i32) -> Option<usize> {
        self.daemons.iter().position(|d| d.pid() == Some(pid))
    }

    pub fn is_shutting_down(&self) -> bool {
        !matches!(self.phase, Phase::Running)
    }

    /// Starts every daemon, in order.
    pub fn start(&mut self, out: &mut Actions) {
        if self.daemons.is_empty() {
            self.log(out, Level::Notice, "no daemon selected; nothing to do".to_string());
            self.finish(out);
            return;
        }
        out.extend((0..self.daemons.len()).map(Action::Spawn));
    }

    pub fn on_spawned(&mut self, index: usize, result: Result<i32, SpawnFailure>, now: Time, out: &mut Actions) {
        let Some(daemon) = self.daemons.get_mut(index) else { return };
        let request = daemon.pending_restart.take();
        match result {
            Ok(pid) => {
                daemon.state = State::Running { pid, since: now };
                let name = &daemon.spec.name;
                let line = match request {
                    Some(RestartRequest { asked_at, by, old_pid: Some(old) }) => {
                        daemon.restarts += 1;
                        let micros = now.saturating_sub(asked_at).as_micros();
                        format!(
                            "{name} restarted ({by}): pid {old} -> {pid} in {}.{:03} ms",
                            micros / 1000,
                            micros % 1000
                        )
                    }
                    Some(RestartRequest { by, old_pid: None, .. }) => {
                        daemon.restarts += 1;
                        format!("{name} started on request ({by}): pid {pid}")
                    }
                    None if daemon.last_exit.is_some() => {
                        daemon.restarts += 1;
                        format!("{name} started again: pid {pid}")
                    }
                    None => format!("{name} started: pid {pid}"),
                };
                let level = self.lifecycle;
                self.log(out, level, line);
            }
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
                self.log(out, Level::Error, line);
            }
            Err(failure) => {
                let line = format!("cannot start {}: {}", daemon.spec.name, failure.message);
                self.log(out, Level::Error, line);
                self.ended_on_its_own(index, ExitStatus::Code(failure.code), Duration::ZERO, now, out);
            }
        }
    }

    /// A child was reaped. Returns false when it was not one of the daemons (an orphan).
    pub fn on_exit(&mut self, pid: i32, status: ExitStatus, now: Time, out: &mut Actions) -> bool {
        let Some(index) = self.daemon_of(pid) else { return false };
        let shutting_down = self.is_shutting_down();
        let daemon = &mut self.daemons[index];
        daemon.last_exit = Some(status);
        match daemon.state {
            State::Running { since, .. } => {
                let ran_for = now.saturating_sub(since);
                self.ended_on_its_own(index, status, ran_for, now, out);
            }
            State::Stopping { restart: Some(request), .. } if !shutting_down => {
                daemon.state = State::Idle;
                daemon.pending_restart = Some(request);
                out.push_back(Action::Spawn(index));
            }
            State::Stopping { .. } => {
                daemon.state = State::Exited;
                let code = stopped_code(status, daemon.spec.stop_signal);
                let line = format!("{} {status} (pid {pid})", daemon.spec.name);
                self.exit_code = self.exit_code.max(code);
                let level = self.lifecycle;
                self.log(out, level, line);
            }
            _ => {}
        }
        true
    }

    /// Called after every reaping pass: `children_remain` says whether wait found other
    /// children still alive. Shutdown finishes here once nothing is left to wait for.
    pub fn after_reaping(&mut self, children_remain: bool, out: &mut Actions) {
        self.leftovers = children_remain;
        self.check_shutdown_done(out);
    }

    pub fn on_signal(&mut self, sig: Sig, now: Time, out: &mut Actions) {
        match self.routes.get(sig).clone() {
            Route::Shutdown => {
                if self.is_shutting_down() {
                    self.log(out, Level::Notice, format!("received {sig} again: already shutting down, ignored"));
                } else {
                    self.log(out, Level::Notice, format!("received {sig}: shutting down"));
                    self.begin_shutdown(now, out);
                }
            }
            Route::Ignore => self.log(out, Level::Info, format!("received {sig}: ignored by route")),
            Route::ForwardAll => {
                let all: Vec<usize> = (0..self.daemons.len()).collect();
                self.forward(sig, &all, out);
            }
            Route::Forward(targets) => self.forward(sig, &targets, out),
            Route::Restart(targets) => {
                for index in targets {
                    self.request_restart(index, sig, now, out);
                }
            }
        }
    }

    /// Restart one daemon in place; the same rules whoever asks.
    pub fn request_restart(&mut self, index: usize, by: Sig, now: Time, out: &mut Actions) {
        let Some(daemon) = self.daemons.get_mut(index) else { return };
        let name = daemon.spec.name.clone();
        if !matches!(self.phase, Phase::Running) {
            self.log(out, Level::Notice, format!("restart of {name} ({by}) ignored: shutting down"));
            return;
        }
        match daemon.state {
            State::Running { pid, since } => {
                let request = RestartRequest { asked_at: now, by, old_pid: Some(pid) };
                let stop = daemon.spec.stop_signal;
                daemon.state = State::Stopping { pid, since, kill_at: Some(now + daemon.spec.grace), restart: Some(request) };
                out.push_back(Action::Signal { pid, sig: stop, group: daemon.spec.signal_group });
                self.log(out, Level::Info, format!("restarting {name} ({by}): sent {stop} to pid {pid}"));
            }
            State::Stopping { .. } => {
                self.log(out, Level::Info, format!("restart of {name} ({by}) already under way: coalesced"));
            }
            State::Backoff { .. } | State::Exited => {
                daemon.state = State::Idle;
                daemon.pending_restart = Some(RestartRequest { asked_at: now, by, old_pid: None });
                out.push_back(Action::Spawn(index));
            }
            State::Idle => {}
        }
    }

    /// Acts on every deadline that has come: SIGKILL after a grace, the end of a backoff,
    /// the end of the shutdown budget.
    pub fn on_tick(&mut self, now: Time, out: &mut Actions) {
        let running = matches!(self.phase, Phase::Running);
        for index in 0..self.daemons.len() {
            let daemon = &mut self.daemons[index];
            match daemon.state {
                State::Stopping { pid, since, kill_at: Some(at), restart } if now >= at => {
                    daemon.state = State::Stopping { pid, since, kill_at: None, restart };
                    let line = format!("{} (pid {pid}) did not stop within its grace: sending SIGKILL", daemon.spec.name);
                    out.push_back(Action::Signal { pid, sig: Sig(libc_sig::KILL), group: true });
                    self.log(out, Level::Notice, line);
                }
                State::Backoff { until } if running && now >= until => {
                    daemon.state = State::Idle;
                    out.push_back(Action::Spawn(index));
                }
                _ => {}
            }
        }
        if let Phase::ShuttingDown { deadline, killed: false, leftovers_termed } = self.phase {
            if now >= deadline {
                self.phase = Phase::ShuttingDown { deadline, killed: true, leftovers_termed };
                for daemon in &mut self.daemons {
                    if let State::Stopping { pid, since, kill_at: Some(_), restart } = daemon.state {
                        daemon.state = State::Stopping { pid, since, kill_at: None, restart };
                        out.push_back(Action::Signal { pid, sig: Sig(libc_sig::KILL), group: true });
                    }
                }
                if self.stop_leftovers {
                    out.push_back(Action::SignalLeftovers(Sig(libc_sig::KILL)));
                }
                let line = format!("shutdown budget of {} is over: sending SIGKILL to what is left", human(self.shutdown_grace));
                self.log(out, Level::Notice, line);
                self.check_shutdown_done(out);
            }
        }
    }

    /// The earliest time `on_tick` has something to do, or None: then nothing but an
    /// event can change anything, and the loop may sleep for ever.
    pub fn next_deadline(&self) -> Option<Time> {
        let running = matches!(self.phase, Phase::Running);
        let daemons = self.daemons.iter().filter_map(|d| match d.state {
            State::Stopping { kill_at, .. } => kill_at,
            State::Backoff { until } if running => Some(until),
            _ => None,
        });
        let shutdown = match self.phase {
            Phase::ShuttingDown { deadline, killed: false, .. } => Some(deadline),
            _ => None,
        };
        daemons.chain(shutdown).min()
    }

    fn forward(&mut self, sig: Sig, targets: &[usize], out: &mut Actions) {
        for &index in targets {
            let Some(daemon) = self.daemons.get(index) else { continue };
            if let Some(pid) = daemon.pid() {
                out.push_back(Action::Signal { pid, sig, group: daemon.spec.signal_group });
                let line = format!("forwarded {sig} to {} (pid {pid})", daemon.spec.name);
                self.log(out, Level::Info, line);
            }
        }
    }

    fn ended_on_its_own(&mut self, index: usize, status: ExitStatus, ran_for: Duration, now: Time, out: &mut Actions) {
        let daemon = &mut self.daemons[index];
        daemon.last_exit = Some(status);
        let name = daemon.spec.name.clone();
        match daemon.spec.on_exit {
            ExitPolicy::KeepRunning => {
                daemon.state = State::Exited;
                self.exit_code = self.exit_code.max(status.code());
                self.log(out, Level::Notice, format!("{name} {status}; not restarted (keep-running)"));
                if self.daemons.iter().all(|d| d.state == State::Exited) {
                    self.log(out, Level::Notice, "every daemon has exited".to_string());
                    self.begin_shutdown(now, out);
                }
            }
            ExitPolicy::Restart => {
                let delay = self.next_backoff(index, ran_for);
                self.daemons[index].state = State::Backoff { until: now + delay };
                self.log(out, Level::Notice, format!("{name} {status}; restarting in {}", human(delay)));
            }
            ExitPolicy::StopBundle => {
                daemon.state = State::Exited;
                self.exit_code = self.exit_code.max(status.code());
                let level = self.lifecycle;
                self.log(out, level, format!("{name} {status}; stopping the bundle (stop-bundle)"));
                self.begin_shutdown(now, out);
            }
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
        backoff.initial.saturating_mul(1u32 << doublings.min(31)).min(backoff.max)
    }

    fn begin_shutdown(&mut self, now: Time, out: &mut Actions) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        let deadline = now + self.shutdown_grace;
        self.phase = Phase::ShuttingDown { deadline, killed: false, leftovers_termed: false };
        for daemon in &mut self.daemons {
            match daemon.state {
                State::Running { pid, since } => {
                    let kill_at = Some((now + daemon.spec.grace).min(deadline));
                    daemon.state = State::Stopping { pid, since, kill_at, restart: None };
                    let stop = daemon.spec.stop_signal;
                    out.push_back(Action::Signal { pid, sig: stop, group: daemon.spec.signal_group });
                }
                State::Stopping { pid, since, kill_at, .. } => {
                    // A restart under way is dropped: the daemon is stopping anyway.
                    let kill_at = kill_at.map(|at| at.min(deadline));
                    daemon.state = State::Stopping { pid, since, kill_at, restart: None };
                }
                State::Backoff { .. } | State::Idle => daemon.state = State::Exited,
                State::Exited => {}
            }
            daemon.pending_restart = None;
        }
        self.check_shutdown_done(out);
    }

    fn check_shutdown_done(&mut self, out: &mut Actions) {
        let Phase::ShuttingDown { deadline, killed, leftovers_termed } = self.phase else { return };
        if self.daemons.iter().any(Daemon::is_live) {
            return;
        }
        if self.stop_leftovers && self.leftovers && !killed {
            if !leftovers_termed {
                self.phase = Phase::ShuttingDown { deadline, killed, leftovers_termed: true };
                out.push_back(Action::SignalLeftovers(Sig(libc_sig::TERM)));
            }
            return;
        }
        self.finish(out);
    }

    fn finish(&mut self, out: &mut Actions) {
        self.phase = Phase::Done;
        let code = if self.success_codes.contains(&self.exit_code) { 0 } else { self.exit_code };
        out.push_back(Action::Exit(code));
    }

    fn log(&self, out: &mut Actions, level: Level, line: String) {
        out.push_back(Action::Log(level, line));
    }
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

/// `1.5s`, `250ms`, `2m`: for log lines.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}
