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
    Signal {
        pid: i32,
        sig: Sig,
        group: bool,
    },
    /// Send `sig` to every process that is not a daemon (kill(-1) as PID 1).
    SignalLeftovers(Sig),
    Log(Level, String),
    Exit(u8),
}

/// Who asked for a restart: a signal route or the control socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Signal(Sig),
    Control,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Signal(sig) => sig.fmt(f),
            Cause::Control => f.write_str("control"),
        }
    }
}

/// A restart under way, for the log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RestartRequest {
    pub asked_at: Time,
    pub by: Cause,
    pub old_pid: Option<i32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not running and not scheduled: before the first start, or while a spawn is under way.
    Idle,
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
    /// Waiting to be started again after a crash.
    Backoff {
        until: Time,
    },
    /// Waiting for the daemons it starts `after` to be ready; gives up at `until`.
    Waiting {
        until: Time,
    },
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
    /// Running, and its readiness check (if any) has passed.
    ready: bool,
    /// Indices of the daemons it starts after (its `after` names among those running here).
    after: Vec<usize>,
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

    /// Running, and its readiness check (if it has one) has passed.
    pub fn is_ready(&self) -> bool {
        self.ready
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    ShuttingDown {
        deadline: Time,
        killed: bool,
        leftovers_termed: bool,
    },
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
    /// Whether the last reaping pass saw children still alive (true until one says not).
    leftovers: bool,
    /// The most detailed level shown.
    verbosity: Level,
}

pub type Actions = VecDeque<Action>;

impl Supervisor {
    pub fn new(plan: Plan) -> Supervisor {
        let names: Vec<String> = plan.daemons.iter().map(|d| d.name.clone()).collect();
        let lifecycle = if plan.single_child {
            Level::Info
        } else {
            Level::Notice
        };
        Supervisor {
            daemons: plan
                .daemons
                .into_iter()
                .map(|spec| Daemon {
                    // Names that are not selected here are simply not waited for.
                    after: spec
                        .after
                        .iter()
                        .filter_map(|a| names.iter().position(|n| n == a))
                        .collect(),
                    spec,
                    state: State::Idle,
                    restarts: 0,
                    last_exit: None,
                    crashes_in_a_row: 0,
                    pending_restart: None,
                    ready: false,
                })
                .collect(),
            routes: plan.routes,
            shutdown_grace: plan.shutdown_grace,
            stop_leftovers: plan.stop_leftovers,
            success_codes: plan.success_codes,
            lifecycle,
            phase: Phase::Running,
            exit_code: 0,
            leftovers: true,
            verbosity: Level::Debug,
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
    pub fn start(&mut self, now: Time, out: &mut Actions) {
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
        let waiting_for: Vec<String> = self.daemons[index]
            .after
            .iter()
            .filter(|&&j| !self.daemons[j].ready)
            .map(|&j| self.daemons[j].spec.name.clone())
            .collect();
        let daemon = &mut self.daemons[index];
        if waiting_for.is_empty() {
            daemon.state = State::Idle;
            out.push_back(Action::Spawn(index));
        } else {
            daemon.state = State::Waiting {
                until: now + daemon.spec.ready_timeout,
            };
            let line = format!(
                "{} waits for {} to be ready",
                daemon.spec.name,
                waiting_for.join(", ")
            );
            self.log(out, Level::Notice, || line);
        }
    }

    /// Daemons waiting for this one may start now.
    fn start_waiters(&mut self, now: Time, out: &mut Actions) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        for index in 0..self.daemons.len() {
            let waiting = matches!(self.daemons[index].state, State::Waiting { .. });
            if waiting
                && self.daemons[index]
                    .after
                    .iter()
                    .all(|&j| self.daemons[j].ready)
            {
                self.try_start(index, now, out);
            }
        }
    }

    /// The runtime's readiness check for `index` passed.
    pub fn on_ready(&mut self, index: usize, now: Time, out: &mut Actions) {
        let Some(daemon) = self.daemons.get_mut(index) else {
            return;
        };
        if daemon.ready || !matches!(daemon.state, State::Running { .. }) {
            return;
        }
        daemon.ready = true;
        let line = format!("{} is ready", daemon.spec.name);
        self.log(out, Level::Notice, || line);
        self.start_waiters(now, out);
    }

    pub fn on_spawned(
        &mut self,
        index: usize,
        result: Result<i32, SpawnFailure>,
        now: Time,
        out: &mut Actions,
    ) {
        let Some(daemon) = self.daemons.get_mut(index) else {
            return;
        };
        let request = daemon.pending_restart.take();
        match result {
            Ok(pid) => {
                daemon.state = State::Running { pid, since: now };
                let name = &daemon.spec.name;
                let line = match request {
                    Some(RestartRequest {
                        asked_at,
                        by,
                        old_pid: Some(old),
                    }) => {
                        daemon.restarts += 1;
                        let micros = now.saturating_sub(asked_at).as_micros() as u64;
                        format!(
                            "{name} restarted ({by}): pid {old} -> {pid} in {}.{:03} ms",
                            micros / 1000,
                            micros % 1000
                        )
                    }
                    Some(RestartRequest {
                        by, old_pid: None, ..
                    }) => {
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
                self.log(out, level, || line);
                // Without a readiness check, running is ready.
                if self.daemons[index].spec.ready.is_none() {
                    self.daemons[index].ready = true;
                    self.start_waiters(now, out);
                }
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
                self.log(out, Level::Error, || line);
            }
            Err(failure) => {
                let line = format!("cannot start {}: {}", daemon.spec.name, failure.message);
                self.log(out, Level::Error, || line);
                self.ended_on_its_own(
                    index,
                    ExitStatus::Code(failure.code),
                    Duration::ZERO,
                    now,
                    out,
                );
            }
        }
    }

    /// A child was reaped. Returns false when it was not one of the daemons (an orphan).
    pub fn on_exit(&mut self, pid: i32, status: ExitStatus, now: Time, out: &mut Actions) -> bool {
        let Some(index) = self.daemon_of(pid) else {
            return false;
        };
        let shutting_down = self.is_shutting_down();
        let daemon = &mut self.daemons[index];
        daemon.ready = false;
        daemon.last_exit = Some(status);
        match daemon.state {
            State::Running { since, .. } => {
                let ran_for = now.saturating_sub(since);
                self.ended_on_its_own(index, status, ran_for, now, out);
            }
            State::Stopping {
                restart: Some(request),
                ..
            } if !shutting_down => {
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
                self.log(out, level, || line);
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
        match self.routes.get(sig) {
            Route::Shutdown => {
                if self.is_shutting_down() {
                    self.log(out, Level::Notice, || {
                        format!("received {sig} again: already shutting down, ignored")
                    });
                } else {
                    self.log(out, Level::Notice, || {
                        format!("received {sig}: shutting down")
                    });
                    self.begin_shutdown(now, out);
                }
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
            Route::Restart(targets) => {
                for index in targets.clone() {
                    self.request_restart(index, Cause::Signal(sig), now, out);
                }
            }
        }
    }

    /// Restart one daemon in place; the same rules whoever asks.
    pub fn request_restart(&mut self, index: usize, by: Cause, now: Time, out: &mut Actions) {
        let Some(daemon) = self.daemons.get(index) else {
            return;
        };
        // Borrowed, not cloned: a storm of requests that coalesce must not allocate each.
        let name = &daemon.spec.name;
        if !matches!(self.phase, Phase::Running) {
            self.log(out, Level::Notice, || {
                format!("restart of {name} ({by}) ignored: shutting down")
            });
            return;
        }
        match daemon.state {
            State::Running { pid, since } => {
                let request = RestartRequest {
                    asked_at: now,
                    by,
                    old_pid: Some(pid),
                };
                let daemon = &mut self.daemons[index];
                let stop = daemon.spec.stop_signal;
                daemon.state = State::Stopping {
                    pid,
                    since,
                    kill_at: Some(now + daemon.spec.grace),
                    restart: Some(request),
                };
                out.push_back(Action::Signal {
                    pid,
                    sig: stop,
                    group: daemon.spec.signal_group,
                });
                self.log(out, Level::Info, || {
                    let name = &self.daemons[index].spec.name;
                    format!("restarting {name} ({by}): sent {stop} to pid {pid}")
                });
            }
            State::Stopping { .. } => {
                self.log(out, Level::Info, || {
                    format!("restart of {name} ({by}) already under way: coalesced")
                });
            }
            State::Waiting { .. } => {
                self.log(out, Level::Notice, || {
                    format!(
                        "restart of {name} ({by}) ignored: it is waiting for what it starts after"
                    )
                });
            }
            State::Backoff { .. } | State::Exited => {
                let daemon = &mut self.daemons[index];
                daemon.state = State::Idle;
                daemon.pending_restart = Some(RestartRequest {
                    asked_at: now,
                    by,
                    old_pid: None,
                });
                out.push_back(Action::Spawn(index));
            }
            State::Idle => {}
        }
    }

    /// One line per daemon: name, state, pid, uptime, restarts, last exit. With `json`, one
    /// JSON object per line.
    pub fn status_lines(&self, now: Time, json: bool) -> Vec<String> {
        self.daemons
            .iter()
            .map(|d| {
                let (state, pid, since) = match d.state {
                    State::Idle => ("starting", None, None),
                    State::Running { pid, since } => ("running", Some(pid), Some(since)),
                    State::Stopping { pid, since, .. } => ("stopping", Some(pid), Some(since)),
                    State::Backoff { .. } => ("backoff", None, None),
                    State::Waiting { .. } => ("waiting", None, None),
                    State::Exited => ("exited", None, None),
                };
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
            .collect()
    }

    /// Ok when every daemon runs; otherwise what is wrong, daemon by daemon.
    pub fn health(&self) -> Result<(), Vec<String>> {
        let problems: Vec<String> = self
            .daemons
            .iter()
            .filter_map(|d| match d.state {
                State::Running { .. } if d.spec.ready.is_some() && !d.ready => {
                    Some(format!("{} is running but not ready", d.spec.name))
                }
                State::Running { .. } => None,
                State::Waiting { .. } => Some(format!(
                    "{} is waiting for what it starts after",
                    d.spec.name
                )),
                State::Stopping {
                    restart: Some(_), ..
                }
                | State::Idle => Some(format!("{} is restarting", d.spec.name)),
                State::Stopping { .. } => Some(format!("{} is stopping", d.spec.name)),
                State::Backoff { .. } => Some(format!(
                    "{} is waiting to restart after it {}",
                    d.spec.name,
                    describe(d.last_exit)
                )),
                State::Exited => Some(format!(
                    "{} is down: it {}",
                    d.spec.name,
                    describe(d.last_exit)
                )),
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Acts on every deadline that has come: SIGKILL after a grace, the end of a backoff,
    /// the end of the shutdown budget.
    pub fn on_tick(&mut self, now: Time, out: &mut Actions) {
        let running = matches!(self.phase, Phase::Running);
        let (mut due, mut gave_up) = (Vec::new(), Vec::new());
        for index in 0..self.daemons.len() {
            let daemon = &mut self.daemons[index];
            match daemon.state {
                State::Stopping {
                    pid,
                    since,
                    kill_at: Some(at),
                    restart,
                } if now >= at => {
                    daemon.state = State::Stopping {
                        pid,
                        since,
                        kill_at: None,
                        restart,
                    };
                    let line = format!(
                        "{} (pid {pid}) did not stop within its grace: sending SIGKILL",
                        daemon.spec.name
                    );
                    out.push_back(Action::Signal {
                        pid,
                        sig: Sig(libc_sig::KILL),
                        group: true,
                    });
                    self.log(out, Level::Notice, || line);
                }
                State::Backoff { until } if running && now >= until => due.push(index),
                State::Waiting { until } if running && now >= until => gave_up.push(index),
                _ => {}
            }
        }
        for index in due {
            self.try_start(index, now, out);
        }
        for index in gave_up {
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
        if let Phase::ShuttingDown {
            deadline,
            killed: false,
            leftovers_termed,
        } = self.phase
            && now >= deadline
        {
            self.phase = Phase::ShuttingDown {
                deadline,
                killed: true,
                leftovers_termed,
            };
            for daemon in &mut self.daemons {
                if let State::Stopping {
                    pid,
                    since,
                    kill_at: Some(_),
                    restart,
                } = daemon.state
                {
                    daemon.state = State::Stopping {
                        pid,
                        since,
                        kill_at: None,
                        restart,
                    };
                    out.push_back(Action::Signal {
                        pid,
                        sig: Sig(libc_sig::KILL),
                        group: true,
                    });
                }
            }
            if self.stop_leftovers {
                out.push_back(Action::SignalLeftovers(Sig(libc_sig::KILL)));
            }
            let line = format!(
                "shutdown budget of {} is over: sending SIGKILL to what is left",
                human(self.shutdown_grace)
            );
            self.log(out, Level::Notice, || line);
            self.check_shutdown_done(out);
        }
    }

    /// The earliest time `on_tick` has something to do, or None: then nothing but an
    /// event can change anything, and the loop may sleep for ever.
    pub fn next_deadline(&self) -> Option<Time> {
        let running = matches!(self.phase, Phase::Running);
        let daemons = self.daemons.iter().filter_map(|d| match d.state {
            State::Stopping { kill_at, .. } => kill_at,
            State::Backoff { until } | State::Waiting { until } if running => Some(until),
            _ => None,
        });
        let shutdown = match self.phase {
            Phase::ShuttingDown {
                deadline,
                killed: false,
                ..
            } => Some(deadline),
            _ => None,
        };
        daemons.chain(shutdown).min()
    }

    fn forward(&self, sig: Sig, targets: impl Iterator<Item = usize>, out: &mut Actions) {
        for index in targets {
            let Some(daemon) = self.daemons.get(index) else {
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
        let name = daemon.spec.name.clone();
        match daemon.spec.on_exit {
            ExitPolicy::KeepRunning => {
                daemon.state = State::Exited;
                self.exit_code = self.exit_code.max(status.code());
                self.log(out, Level::Notice, || {
                    format!("{name} {status}; not restarted (keep-running)")
                });
                if self.daemons.iter().all(|d| d.state == State::Exited) {
                    self.log(out, Level::Notice, || "every daemon has exited".to_string());
                    self.begin_shutdown(now, out);
                }
            }
            ExitPolicy::Restart => {
                let delay = self.next_backoff(index, ran_for);
                self.daemons[index].state = State::Backoff { until: now + delay };
                self.log(out, Level::Notice, || {
                    format!("{name} {status}; restarting in {}", human(delay))
                });
            }
            ExitPolicy::StopBundle => {
                daemon.state = State::Exited;
                self.exit_code = self.exit_code.max(status.code());
                let level = self.lifecycle;
                self.log(out, level, || {
                    format!("{name} {status}; stopping the bundle (stop-bundle)")
                });
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
        backoff
            .initial
            .saturating_mul(1u32 << doublings.min(31))
            .min(backoff.max)
    }

    fn begin_shutdown(&mut self, now: Time, out: &mut Actions) {
        if !matches!(self.phase, Phase::Running) {
            return;
        }
        let deadline = now + self.shutdown_grace;
        self.phase = Phase::ShuttingDown {
            deadline,
            killed: false,
            leftovers_termed: false,
        };
        for daemon in &mut self.daemons {
            match daemon.state {
                State::Running { pid, since } => {
                    let kill_at = Some((now + daemon.spec.grace).min(deadline));
                    daemon.state = State::Stopping {
                        pid,
                        since,
                        kill_at,
                        restart: None,
                    };
                    let stop = daemon.spec.stop_signal;
                    out.push_back(Action::Signal {
                        pid,
                        sig: stop,
                        group: daemon.spec.signal_group,
                    });
                }
                State::Stopping {
                    pid,
                    since,
                    kill_at,
                    ..
                } => {
                    // A restart under way is dropped: the daemon is stopping anyway.
                    let kill_at = kill_at.map(|at| at.min(deadline));
                    daemon.state = State::Stopping {
                        pid,
                        since,
                        kill_at,
                        restart: None,
                    };
                }
                State::Backoff { .. } | State::Waiting { .. } | State::Idle => {
                    daemon.state = State::Exited
                }
                State::Exited => {}
            }
            daemon.pending_restart = None;
        }
        self.check_shutdown_done(out);
    }

    fn check_shutdown_done(&mut self, out: &mut Actions) {
        let Phase::ShuttingDown {
            deadline,
            killed,
            leftovers_termed,
        } = self.phase
        else {
            return;
        };
        if self.daemons.iter().any(Daemon::is_live) {
            return;
        }
        if self.stop_leftovers && !killed {
            if !leftovers_termed {
                // The driver reaps right after signalling and tells us what is left.
                self.phase = Phase::ShuttingDown {
                    deadline,
                    killed,
                    leftovers_termed: true,
                };
                out.push_back(Action::SignalLeftovers(Sig(libc_sig::TERM)));
                return;
            }
            if self.leftovers {
                return;
            }
        }
        self.finish(out);
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
    pub fn set_verbosity(&mut self, verbosity: u8) {
        self.verbosity = match verbosity {
            0 => Level::Error,
            1 => Level::Notice,
            2 => Level::Info,
            _ => Level::Debug,
        };
    }
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

/// `1.5s`, `250ms`, `2m`: for log lines.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
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
        sup.after_reaping(false, out);
        if matches!(out.back(), Some(Action::SignalLeftovers(_))) {
            sup.after_reaping(false, out);
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
        sup.after_reaping(true, &mut out);
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
        sup.after_reaping(true, &mut out);
        assert!(
            out.contains(&Action::SignalLeftovers(TERM)),
            "orphans get TERM once the daemons are gone"
        );
        assert_eq!(exit_code(&out), None);
        nothing_left(&mut sup, &mut out);
        assert_eq!(exit_code(&out), Some(0));
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
        assert_eq!(sup.daemons()[0].state, State::Exited);
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

    #[test]
    fn orphans_are_not_mistaken_for_daemons() {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        assert!(!sup.on_exit(4242, ExitStatus::Code(0), secs(1.0), &mut out));
        assert!(out.is_empty());
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
        assert!(sup.daemons()[0].is_ready());
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
        let mut sup = Supervisor::new(ordered_plan(true, ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.start(secs(0.0), &mut out);
        sup.on_spawned(0, Ok(100), secs(0.1), &mut out);
        out.clear();
        sup.on_tick(secs(5.0), &mut out);
        assert!(
            logs(&out).contains("app gave up waiting after 5s"),
            "{}",
            logs(&out)
        );
        assert_eq!(sup.daemons()[1].state, State::Exited);
        assert_eq!(
            sup.health().unwrap_err(),
            vec![
                "db is running but not ready".to_string(),
                "app is down: it exited with code 1".to_string()
            ]
        );

        let mut sup = Supervisor::new(ordered_plan(true, ExitPolicy::Restart));
        let mut out = Actions::new();
        sup.start(secs(0.0), &mut out);
        sup.on_spawned(0, Ok(100), secs(0.1), &mut out);
        sup.on_tick(secs(5.0), &mut out);
        assert_eq!(sup.daemons()[1].state, State::Backoff { until: secs(6.0) });
        sup.on_tick(secs(6.0), &mut out);
        assert_eq!(
            sup.daemons()[1].state,
            State::Waiting { until: secs(11.0) },
            "waits again after the backoff"
        );

        let mut sup = Supervisor::new(ordered_plan(true, ExitPolicy::StopBundle));
        let mut out = Actions::new();
        sup.start(secs(0.0), &mut out);
        sup.on_spawned(0, Ok(100), secs(0.1), &mut out);
        sup.on_tick(secs(5.0), &mut out);
        assert_eq!(
            signals(&out),
            vec![(100, TERM)],
            "stop-bundle: everything stops"
        );
    }

    #[test]
    fn readiness_ends_with_the_process() {
        let mut sup = Supervisor::new(ordered_plan(true, ExitPolicy::KeepRunning));
        let mut out = Actions::new();
        sup.start(secs(0.0), &mut out);
        sup.on_spawned(0, Ok(100), secs(0.1), &mut out);
        sup.on_ready(0, secs(0.2), &mut out);
        sup.on_exit(100, ExitStatus::Code(0), secs(1.0), &mut out);
        assert!(!sup.daemons()[0].is_ready());
        assert!(sup.status_lines(secs(1.0), false)[0].contains("ready no"));
    }
}
