//! One daemon: its state, and its reaction to each event as one table, `Daemon::on`, in the
//! manner of s6-supervise's state × event array. Every (state, event) pair has its arm; the
//! arms call small named transitions. What a transition means for the rest of the bundle
//! (it became ready, it ended, it was forgotten...) comes back as an `Outcome`, which the
//! bundle-wide code in `mod.rs` reacts to: a daemon never looks at its siblings. The named
//! transitions the table calls are in `transitions.rs`.

mod foreground;
mod liveness;
mod transitions;

pub(crate) use liveness::{LiveState, Notes};

pub(crate) use transitions::{failure, seconds};

use super::effects::Effects;
use super::events::{Action, Cause, ExitStatus, NotifyMessage, SpawnFailure};
use std::time::Duration;

use crate::id::DaemonId;
use crate::plan::DaemonSpec;
use crate::signal::Sig;
use crate::sys::libc_sig;
use crate::time::{Time, human};

/// A daemon's state: one variant per state an operator can tell apart. `status` and
/// `health` use the same words (`State::word`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Not running, and nothing will start it but a request (or a reload that changes it).
    Down,
    /// Added by a reload that also removed daemons still stopping: it starts once they are
    /// gone, so a renamed daemon never runs beside its old self (a port, a lock file, the
    /// descriptors its pipes free).
    HeldForRemoved,
    /// Waiting for the daemons it starts `after` to be ready; gives up at `until`.
    WaitingForDependencies { until: Time },
    /// It gave up waiting for what it starts after (its ready-timeout passed, or one of
    /// them ended for good) and was never started; it stays down until a request.
    GaveUpWaiting,
    /// Waiting to be started again after a crash or a failed start.
    Backoff { until: Time },
    /// It crashed more times in a row than its `max-restarts`, and is not restarted any
    /// more; a request or a reload that changes it starts it again.
    GaveUp,
    /// A oneshot that exited 0, after running this long: what starts after it may start.
    Done { took: Duration },
    /// A oneshot that failed: a non-zero exit, a signal, or its timeout.
    Failed { status: ExitStatus, timed_out: bool },
    /// Stopped by a `stop` request (or never started: `autostart = no`): it stays down,
    /// whatever its policy, a restart route or a reload says, until a `start` request.
    StoppedByRequest,
    /// A spawn was asked for and is queued; `restart` is the request that led here, if any.
    Starting { restart: Option<RestartRequest> },
    /// Its process runs; `ready` once its readiness check passed (at once without one).
    Running { pid: i32, since: Time, ready: bool },
    /// Sent its stop signal; SIGKILL at `kill_at` (None once sent); `then` says what
    /// happens once it is reaped.
    Stopping {
        pid: i32,
        since: Time,
        kill_at: Option<Time>,
        then: AfterStop,
    },
    /// Its process ended (`status`, at `since`) but left processes of its own behind
    /// (`leftovers`, as last seen): they got its stop signal, and SIGKILL at `kill_at`
    /// (None once sent, then bundle-init goes on without them at `give_up_at`). What comes
    /// next (`then`) waits until they are gone, so a replacement never meets them: a port,
    /// shared memory, a lock, a readiness check they would answer.
    Ending {
        pid: i32,
        status: ExitStatus,
        since: Time,
        kill_at: Option<Time>,
        give_up_at: Option<Time>,
        leftovers: Vec<i32>,
        then: AfterEnd,
    },
}

/// What an ending daemon does once its leftovers are gone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AfterEnd {
    /// It ended on its own after running this long: its exit policy decides.
    OwnExit { ran_for: Duration },
    /// It was being stopped: what the stop was for.
    Stop(AfterStop),
    /// It crashed, and a shutdown came before its policy could restart it: it stays down,
    /// as a daemon in backoff does then.
    Down,
}

/// How long bundle-init waits for leftovers that got SIGKILL (one in uninterruptible sleep,
/// or reaped by a parent that is not marked) before it goes on without them.
pub(crate) const LEFTOVERS_AFTER_KILL: Duration = Duration::from_secs(1);

/// What a stop leads to once the process is reaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AfterStop {
    /// It stays down (a shutdown).
    StayDown,
    /// A replacement starts, for this request.
    Restart(RestartRequest),
    /// A reload removed it: nobody can name it any more, and it is forgotten.
    Forget,
    /// A `stop` request: it stays down until a `start` request.
    Hold,
}

/// A restart under way: who asked and when (for the log line), and the new definition a
/// reload gave it, which its next process starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RestartRequest {
    pub(crate) asked_at: Time,
    pub(crate) by: Cause,
    pub(crate) old_pid: Option<i32>,
    pub(crate) new_spec: Option<Box<DaemonSpec>>,
    /// What the log line adds to the cause: why liveness restarted it.
    pub(crate) detail: Option<String>,
}

impl RestartRequest {
    pub(crate) fn new(asked_at: Time, by: Cause) -> RestartRequest {
        RestartRequest {
            asked_at,
            by,
            old_pid: None,
            new_spec: None,
            detail: None,
        }
    }
}

/// What can happen to one daemon.
#[derive(Debug)]
pub(crate) enum DaemonEvent {
    /// Start it now (bundle start, a reload's addition, the end of a backoff, what it waits
    /// for became ready); `waiting_for` names what it starts after that is not ready yet.
    Start {
        waiting_for: Vec<String>,
        /// One of them ended for good (why, in the log's words): it cannot become ready.
        gone: Option<String>,
        restart: Option<RestartRequest>,
    },
    /// One of the daemons it waits for ended for good (why, in the log's words).
    DependencyGone(String),
    /// Its queued spawn was carried out.
    Spawned(Result<i32, SpawnFailure>),
    /// Its readiness check passed.
    Ready,
    /// A liveness check of its process `pid` ended.
    LiveChecked {
        pid: i32,
        result: Result<(), String>,
    },
    /// Process `from` sent this on its notify socket.
    Notified { from: i32, message: NotifyMessage },
    /// Its process was reaped, leaving `leftovers` (processes with its mark) behind.
    Exited {
        pid: i32,
        status: ExitStatus,
        leftovers: Vec<i32>,
    },
    /// A look for its leftovers found these alive.
    Leftovers(Vec<i32>),
    /// Someone asked for it to be restarted in place.
    Restart(RestartRequest),
    /// Someone asked for it to be started (a `start` request): as `Start`, but it also
    /// starts a daemon stopped by request; `waiting_for` and `gone` as there.
    StartOnRequest {
        waiting_for: Vec<String>,
        gone: Option<String>,
        request: RestartRequest,
    },
    /// Stop it for good: a shutdown (`StayDown`, with the budget's `deadline`) or a reload
    /// that removed it (`Forget`).
    Stop { then: AfterStop, deadline: Time },
    /// A reload changed a key that defines its process.
    Redefine(Box<DaemonSpec>),
    /// The daemons a reload removed are gone: one it held back may start.
    Released,
    /// Time passed.
    Tick,
    /// The shutdown budget is over: SIGKILL now if it is still stopping.
    KillNow,
}

/// What a transition means for the bundle.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Nothing,
    /// Its readiness came: what waits for it may start.
    BecameReady,
    /// It ended by itself and stays down (keep-running): the status counts toward the
    /// exit code, and the bundle may have nothing left.
    EndedStayingDown(ExitStatus),
    /// It ended by itself and takes the bundle with it (stop-bundle).
    EndedStoppingBundle(ExitStatus),
    /// It stopped because it was asked to; this code counts toward the exit code.
    Stopped(u8),
    /// It gave up waiting for what it starts after and stays down (keep-running): a failed
    /// start for the exit code, and a dependency gone for what waits for it.
    GaveUp,
    /// A daemon a reload removed is gone: drop it.
    Forgotten,
    /// It should start (after what it waits for), for this request if one led here.
    StartDue(Option<RestartRequest>),
    /// What became of a restart request.
    Restart(RestartOutcome),
    /// A oneshot exited 0: what waits for it may start.
    TaskDone,
    /// A oneshot failed under `on-failure = keep-running`: this code counts toward the exit
    /// code; what waits for it goes on waiting.
    TaskFailed(u8),
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

#[derive(Clone, Debug)]
pub(crate) struct Daemon {
    pub(crate) id: DaemonId,
    pub(crate) spec: DaemonSpec,
    state: State,
    pub(crate) restarts: u32,
    pub(crate) last_exit: Option<ExitStatus>,
    /// Crashes since the last stable run; sets the next backoff delay.
    crashes_in_a_row: u32,
    /// The daemons it starts after (its `after` names among the bundle's, as ids).
    pub(crate) after: Vec<DaemonId>,
    /// A oneshot being stopped because it ran past its timeout: its exit is a failure.
    timed_out: bool,
    /// Processes it started, ever: a control client waiting for a restart or a start
    /// knows a new one runs when this grew.
    pub(crate) starts: u32,
    /// What was asked while it was held behind daemons a reload removed: a `start` (it
    /// starts when released, whatever its autostart says), a `stop` (it stays down), or
    /// nothing (its autostart decides).
    pub(crate) on_release: Option<bool>,
    /// Its liveness checks and watchdog: when the next is due, the failures in a row.
    pub(crate) liveness: LiveState,
    /// What its process said on its notify socket (`STATUS=`, `RELOADING=1`...).
    pub(crate) notes: Notes,
}

impl Daemon {
    pub(crate) fn new(id: DaemonId, spec: DaemonSpec) -> Daemon {
        // `autostart = no`: down until someone asks.
        let state = if spec.autostart {
            State::Down
        } else {
            State::StoppedByRequest
        };
        Daemon {
            id,
            spec,
            state,
            restarts: 0,
            last_exit: None,
            crashes_in_a_row: 0,
            after: Vec::new(),
            timed_out: false,
            on_release: None,
            starts: 0,
            liveness: LiveState::default(),
            notes: Notes::default(),
        }
    }

    /// A daemon a reload added, held until the daemons it removed have stopped.
    pub(crate) fn held(id: DaemonId, spec: DaemonSpec) -> Daemon {
        Daemon {
            state: State::HeldForRemoved,
            ..Daemon::new(id, spec)
        }
    }

    /// Whether it starts when a reload releases it.
    pub(crate) fn starts_when_released(&self) -> bool {
        self.on_release.unwrap_or(self.spec.autostart)
    }

    pub(crate) fn state(&self) -> &State {
        &self.state
    }

    pub(crate) fn pid(&self) -> Option<i32> {
        match self.state {
            State::Running { pid, .. } | State::Stopping { pid, .. } => Some(pid),
            _ => None,
        }
    }

    /// Something of it runs: its process, or what that left behind.
    pub(crate) fn is_live(&self) -> bool {
        self.pid().is_some() || self.is_ending()
    }

    pub(crate) fn is_ending(&self) -> bool {
        matches!(self.state, State::Ending { .. })
    }

    /// What starts after it may start: it runs and is ready, or it is a oneshot that
    /// exited 0.
    pub(crate) fn is_ready(&self) -> bool {
        matches!(
            self.state,
            State::Running { ready: true, .. } | State::Done { .. }
        )
    }

    /// Its definition as the bundle file has it now: the one its next process starts with
    /// when a reload is restarting it, its current one otherwise.
    pub(crate) fn defined(&self) -> &DaemonSpec {
        match &self.state {
            State::Stopping {
                then:
                    AfterStop::Restart(RestartRequest {
                        new_spec: Some(spec),
                        ..
                    }),
                ..
            }
            | State::Ending {
                then:
                    AfterEnd::Stop(AfterStop::Restart(RestartRequest {
                        new_spec: Some(spec),
                        ..
                    })),
                ..
            } => spec,
            _ => &self.spec,
        }
    }

    /// Nothing runs, and nothing will start it but a request or a reload.
    pub(crate) fn is_down(&self) -> bool {
        matches!(
            self.state,
            State::Down
                | State::GaveUp
                | State::GaveUpWaiting
                | State::Done { .. }
                | State::Failed { .. }
        )
    }

    /// It ended and will not come back by itself: what waits for it would wait in vain.
    pub(crate) fn is_gone_for_good(&self) -> bool {
        match self.state {
            State::Down => self.last_exit.is_some(),
            State::GaveUp | State::GaveUpWaiting => true,
            _ => false,
        }
    }

    /// A reload removed it; it is being stopped and will be forgotten.
    pub(crate) fn is_removed(&self) -> bool {
        matches!(
            self.state,
            State::Stopping {
                then: AfterStop::Forget,
                ..
            } | State::Ending {
                then: AfterEnd::Stop(AfterStop::Forget),
                ..
            }
        )
    }

    /// Between two processes: a reload waits for these to settle.
    pub(crate) fn is_mid_restart(&self) -> bool {
        matches!(
            self.state,
            State::Starting { .. }
                | State::Stopping {
                    then: AfterStop::Restart(_),
                    ..
                }
                | State::Ending {
                    then: AfterEnd::Stop(AfterStop::Restart(_)),
                    ..
                }
        )
    }

    /// The earliest time `Tick` has something to do for it.
    pub(crate) fn deadline(&self) -> Option<Time> {
        match self.state {
            State::Stopping { kill_at, .. } => kill_at,
            State::Backoff { until } | State::WaitingForDependencies { until } => Some(until),
            State::Running { since, .. } if self.spec.oneshot && !self.timed_out => {
                self.spec.timeout.map(|timeout| since + timeout)
            }
            State::Running { ready: true, .. } => self.liveness_deadline(),
            State::Ending {
                kill_at,
                give_up_at,
                ..
            } => kill_at.or(give_up_at),
            _ => None,
        }
    }

    /// The transition table: what `event` does to this daemon in each state. It is long on
    /// purpose: every (state, event) pair is an arm here, each arm one named transition.
    #[allow(clippy::too_many_lines)]
    pub(crate) fn on(&mut self, event: DaemonEvent, now: Time, fx: &mut Effects) -> Outcome {
        use DaemonEvent as E;
        use State as S;
        match (self.state.clone(), event) {
            (
                S::Down
                | S::GaveUp
                | S::GaveUpWaiting
                | S::HeldForRemoved
                | S::WaitingForDependencies { .. }
                | S::Backoff { .. },
                E::Start {
                    waiting_for,
                    gone: None,
                    restart,
                },
            ) => self.start(&waiting_for, restart, now, fx),
            (
                S::Down
                | S::GaveUp
                | S::GaveUpWaiting
                | S::HeldForRemoved
                | S::WaitingForDependencies { .. }
                | S::Backoff { .. },
                E::Start {
                    gone: Some(why), ..
                },
            ) => self.give_up_waiting(&why, now, fx),
            (
                S::Starting { .. }
                | S::Running { .. }
                | S::Stopping { .. }
                | S::Ending { .. }
                | S::StoppedByRequest
                | S::Done { .. }
                | S::Failed { .. },
                E::Start { .. },
            ) => {
                // A oneshot that ran runs again only when someone asks (`start`).
                Outcome::Nothing
            }

            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::Backoff { .. }
                | S::StoppedByRequest,
                E::StartOnRequest {
                    waiting_for,
                    gone: None,
                    request,
                },
            ) => {
                self.crashes_in_a_row = 0;
                self.start(&waiting_for, Some(request), now, fx);
                Outcome::Restart(RestartOutcome::Begun)
            }
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::Backoff { .. }
                | S::StoppedByRequest,
                E::StartOnRequest { gone: Some(_), .. },
            ) => Outcome::Restart(RestartOutcome::Refused(
                "what it starts after ended for good",
            )),
            (S::HeldForRemoved, E::StartOnRequest { .. }) => {
                // Held behind the daemons a reload removed: it starts once they are gone,
                // even with autostart = no.
                self.on_release = Some(true);
                Outcome::Restart(RestartOutcome::Coalesced)
            }
            (
                S::Starting { .. }
                | S::Running { .. }
                | S::WaitingForDependencies { .. }
                | S::Stopping {
                    then: AfterStop::Restart(_),
                    ..
                }
                | S::Ending {
                    then: AfterEnd::Stop(AfterStop::Restart(_)),
                    ..
                },
                E::StartOnRequest { .. },
            ) => Outcome::Restart(RestartOutcome::Coalesced),
            (
                S::Stopping {
                    pid,
                    then: AfterStop::Hold,
                    ..
                },
                E::StartOnRequest { mut request, .. },
            ) => {
                // Stopped and started again before it was down: it comes back once it is.
                request.old_pid = Some(pid);
                self.set_after_stop(AfterStop::Restart(request));
                Outcome::Restart(RestartOutcome::Begun)
            }
            (
                S::Ending {
                    pid,
                    then: AfterEnd::Stop(AfterStop::Hold) | AfterEnd::OwnExit { .. },
                    ..
                },
                E::StartOnRequest { mut request, .. },
            ) => {
                request.old_pid = Some(pid);
                self.set_after_end(AfterEnd::Stop(AfterStop::Restart(request)));
                Outcome::Restart(RestartOutcome::Begun)
            }
            (
                S::Stopping {
                    then: AfterStop::StayDown | AfterStop::Forget,
                    ..
                }
                | S::Ending {
                    then: AfterEnd::Stop(AfterStop::StayDown | AfterStop::Forget) | AfterEnd::Down,
                    ..
                },
                E::StartOnRequest { .. },
            ) => Outcome::Restart(RestartOutcome::Refused("it is being stopped")),

            (S::Starting { restart }, E::Spawned(Ok(pid))) => self.started(pid, restart, now, fx),
            (S::Starting { .. }, E::Spawned(Err(failure))) if failure.transient => {
                self.retry_start(&failure, now, fx)
            }
            (S::Starting { .. }, E::Spawned(Err(failure))) => {
                self.could_not_start(&failure, now, fx)
            }
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::HeldForRemoved
                | S::WaitingForDependencies { .. }
                | S::Backoff { .. }
                | S::Running { .. }
                | S::Stopping { .. }
                | S::Ending { .. }
                | S::StoppedByRequest,
                E::Spawned(result),
            ) => self.spawned_unasked(result, fx),

            (
                S::Running {
                    pid,
                    since,
                    ready: false,
                },
                E::Ready,
            ) => self.became_ready(pid, since, now, fx),
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::HeldForRemoved
                | S::WaitingForDependencies { .. }
                | S::Backoff { .. }
                | S::Starting { .. }
                | S::Running { ready: true, .. }
                | S::Stopping { .. }
                | S::Ending { .. }
                | S::StoppedByRequest,
                E::Ready,
            ) => Outcome::Nothing,

            (
                S::Running {
                    pid, ready: true, ..
                },
                E::LiveChecked { pid: about, result },
            ) if about == pid => self.live_checked(pid, result, now, fx),
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::HeldForRemoved
                | S::WaitingForDependencies { .. }
                | S::Backoff { .. }
                | S::Starting { .. }
                | S::Running { .. }
                | S::Stopping { .. }
                | S::Ending { .. }
                | S::StoppedByRequest,
                E::LiveChecked { .. },
            ) => {
                // About a process that is gone, or from before a reload took its check
                // away: too late to mean anything.
                Outcome::Nothing
            }

            (S::Running { pid, .. } | S::Stopping { pid, .. }, E::Notified { from, message })
                if from == pid =>
            {
                self.notified(message, now, fx)
            }
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::HeldForRemoved
                | S::WaitingForDependencies { .. }
                | S::Backoff { .. }
                | S::Starting { .. }
                | S::Running { .. }
                | S::Stopping { .. }
                | S::Ending { .. }
                | S::StoppedByRequest,
                E::Notified { from, .. },
            ) => self.notified_by_a_stranger(from, fx),

            (
                S::Running { pid, since, .. },
                E::Exited {
                    status, leftovers, ..
                },
            ) => {
                self.left_running(fx);
                let then = AfterEnd::OwnExit {
                    ran_for: now.saturating_sub(since),
                };
                let kill_at = Some(now + self.spec.grace);
                self.end(pid, status, leftovers, kill_at, then, now, fx)
            }
            (
                S::Stopping {
                    pid,
                    kill_at,
                    then: then @ (AfterStop::Restart(_) | AfterStop::Forget | AfterStop::Hold),
                    ..
                },
                E::Exited {
                    status, leftovers, ..
                },
            ) => self.end(
                pid,
                status,
                leftovers,
                kill_at,
                AfterEnd::Stop(then),
                now,
                fx,
            ),
            (
                S::Stopping {
                    pid,
                    since,
                    kill_at,
                    then: AfterStop::StayDown,
                },
                E::Exited {
                    status, leftovers, ..
                },
            ) if self.timed_out => {
                // A oneshot stopped at its timeout: its failure, with what it left stopped.
                let then = AfterEnd::OwnExit {
                    ran_for: now.saturating_sub(since),
                };
                self.end(pid, status, leftovers, kill_at, then, now, fx)
            }
            (
                S::Stopping {
                    then: AfterStop::StayDown,
                    ..
                },
                E::Exited { pid, status, .. },
            ) => {
                // A shutdown: its sweep stops what the daemon left, with everything else.
                self.stopped(pid, status, fx)
            }
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::HeldForRemoved
                | S::WaitingForDependencies { .. }
                | S::Backoff { .. }
                | S::Starting { .. }
                | S::Ending { .. }
                | S::StoppedByRequest,
                E::Exited { .. },
            ) => Outcome::Nothing,

            (S::Ending { .. }, E::Leftovers(pids)) => self.leftovers_seen(pids, now, fx),
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::HeldForRemoved
                | S::WaitingForDependencies { .. }
                | S::Backoff { .. }
                | S::Starting { .. }
                | S::Running { .. }
                | S::Stopping { .. }
                | S::StoppedByRequest,
                E::Leftovers(_),
            ) => Outcome::Nothing,

            (S::Running { pid, .. }, E::Restart(mut request)) => {
                request.old_pid = Some(pid);
                self.stop(now, AfterStop::Restart(request), Time::MAX, fx);
                Outcome::Restart(RestartOutcome::Begun)
            }
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::Backoff { .. },
                E::Restart(request),
            ) => {
                // Asked for by someone: one that was given up gets its restarts again.
                self.crashes_in_a_row = 0;
                self.spawn(Some(request), fx);
                Outcome::Restart(RestartOutcome::Begun)
            }
            (
                S::Starting { .. }
                | S::Stopping {
                    then: AfterStop::Restart(_),
                    ..
                }
                | S::Ending {
                    then: AfterEnd::Stop(AfterStop::Restart(_)),
                    ..
                },
                E::Restart(request),
            ) => self.coalesce(request.by, fx),
            (
                S::Stopping {
                    then: AfterStop::StayDown | AfterStop::Forget,
                    ..
                }
                | S::Ending {
                    then: AfterEnd::Stop(AfterStop::StayDown | AfterStop::Forget) | AfterEnd::Down,
                    ..
                },
                E::Restart(request),
            ) => self.refuse_restart(request.by, "it is being stopped", fx),
            (
                S::StoppedByRequest
                | S::Stopping {
                    then: AfterStop::Hold,
                    ..
                }
                | S::Ending {
                    then: AfterEnd::Stop(AfterStop::Hold),
                    ..
                },
                E::Restart(request),
            ) => self.refuse_restart(
                request.by,
                "it was stopped by request (`start` brings it back)",
                fx,
            ),
            (
                S::Ending {
                    pid,
                    then: AfterEnd::OwnExit { .. },
                    ..
                },
                E::Restart(mut request),
            ) => {
                // It crashed and its leftovers are being stopped: the restart comes once
                // they are gone, as after a stop.
                request.old_pid = Some(pid);
                self.set_after_end(AfterEnd::Stop(AfterStop::Restart(request)));
                Outcome::Restart(RestartOutcome::Begun)
            }
            (S::WaitingForDependencies { .. }, E::Restart(request)) => {
                self.refuse_restart(request.by, "it is waiting for what it starts after", fx)
            }
            (S::HeldForRemoved, E::Restart(request)) => self.refuse_restart(
                request.by,
                "it waits for the daemons a reload removed to stop",
                fx,
            ),

            (S::Running { .. }, E::Stop { then, deadline }) => {
                self.stop(now, then, deadline, fx);
                Outcome::Nothing
            }
            (S::Stopping { .. }, E::Stop { then, deadline }) => self.stop_sooner(then, deadline),
            (S::Ending { .. }, E::Stop { then, deadline }) => self.end_sooner(then, deadline, now),
            (S::Starting { .. }, E::Stop { then, .. }) => {
                // Its spawn is still queued behind the event that stops it: take it back,
                // so nothing starts once a shutdown or a removal began.
                fx.withdraw_spawn(self.id);
                self.stay_down_or_forget(&then)
            }
            (
                S::GaveUp | S::GaveUpWaiting | S::Done { .. } | S::Failed { .. },
                E::Stop {
                    then: AfterStop::StayDown,
                    ..
                },
            ) => {
                // Down already, and the status says why.
                Outcome::Nothing
            }
            (
                S::HeldForRemoved,
                E::Stop {
                    then: AfterStop::Hold,
                    ..
                },
            ) => {
                // Still held: it stays down once released, and never runs beside what it
                // replaces.
                self.on_release = Some(false);
                Outcome::Nothing
            }
            (S::StoppedByRequest, E::Stop { then, .. }) if !matches!(then, AfterStop::Forget) => {
                Outcome::Nothing
            }
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::HeldForRemoved
                | S::WaitingForDependencies { .. }
                | S::Backoff { .. }
                | S::StoppedByRequest,
                E::Stop { then, .. },
            ) => self.stay_down_or_forget(&then),

            (S::Running { pid, .. }, E::Redefine(spec)) => {
                let mut request = RestartRequest::new(now, Cause::Reload);
                request.old_pid = Some(pid);
                request.new_spec = Some(spec);
                self.stop(now, AfterStop::Restart(request), Time::MAX, fx);
                Outcome::Nothing
            }
            (
                S::Down
                | S::GaveUp
                | S::GaveUpWaiting
                | S::Backoff { .. }
                | S::WaitingForDependencies { .. },
                E::Redefine(spec),
            ) => {
                // Not running (crashed, in backoff, waiting): it starts with the new one,
                // with its restarts again if it was given up.
                self.crashes_in_a_row = 0;
                self.spec = *spec;
                Outcome::StartDue(None)
            }
            (S::Done { .. } | S::Failed { .. }, E::Redefine(spec)) => {
                // A oneshot that ran is not run again by a reload; `start` runs the new one.
                self.spec = *spec;
                Outcome::Nothing
            }
            (
                S::StoppedByRequest
                | S::Stopping {
                    then: AfterStop::Hold,
                    ..
                }
                | S::Ending {
                    then: AfterEnd::Stop(AfterStop::Hold),
                    ..
                },
                E::Redefine(spec),
            ) => {
                // Stopped by request: it stays down, and starts with the new one.
                self.spec = *spec;
                Outcome::Nothing
            }
            (S::HeldForRemoved | S::Starting { .. }, E::Redefine(spec)) => {
                // Not started yet: the queued or held start takes the new definition.
                self.spec = *spec;
                Outcome::Nothing
            }
            (
                S::Stopping {
                    pid,
                    since,
                    kill_at,
                    then: AfterStop::Restart(mut request),
                },
                E::Redefine(spec),
            ) => {
                request.new_spec = Some(spec);
                self.state = S::Stopping {
                    pid,
                    since,
                    kill_at,
                    then: AfterStop::Restart(request),
                };
                Outcome::Nothing
            }
            (
                S::Stopping {
                    then: AfterStop::StayDown | AfterStop::Forget,
                    ..
                }
                | S::Ending {
                    then: AfterEnd::Stop(AfterStop::StayDown | AfterStop::Forget) | AfterEnd::Down,
                    ..
                },
                E::Redefine(spec),
            ) => {
                // Stopping for good: a later start (if any) uses the new definition.
                self.spec = *spec;
                Outcome::Nothing
            }
            (
                S::Ending {
                    then: AfterEnd::Stop(AfterStop::Restart(mut request)),
                    ..
                },
                E::Redefine(spec),
            ) => {
                request.new_spec = Some(spec);
                self.set_after_end(AfterEnd::Stop(AfterStop::Restart(request)));
                Outcome::Nothing
            }
            (
                S::Ending {
                    then: AfterEnd::OwnExit { .. },
                    ..
                },
                E::Redefine(spec),
            ) if self.spec.oneshot => {
                // A oneshot that ran is not run again by a reload, whatever it left.
                self.spec = *spec;
                Outcome::Nothing
            }
            (
                S::Ending {
                    pid,
                    then: AfterEnd::OwnExit { .. },
                    ..
                },
                E::Redefine(spec),
            ) => {
                // As for a daemon that is down: it starts again, with the new definition,
                // once what it left is gone.
                let mut request = RestartRequest::new(now, Cause::Reload);
                request.old_pid = Some(pid);
                request.new_spec = Some(spec);
                self.set_after_end(AfterEnd::Stop(AfterStop::Restart(request)));
                Outcome::Nothing
            }

            (
                S::Stopping {
                    pid,
                    kill_at: Some(at),
                    ..
                },
                E::Tick,
            ) if now >= at => {
                self.kill_now(fx);
                let name = &self.spec.name;
                let (level, killed) = (super::Level::Notice, super::events::EventKind::Killed);
                fx.log_event(level, killed, name, Some(pid), None, || {
                    format!("{name} (pid {pid}) did not stop within its grace: sending SIGKILL")
                });
                Outcome::Nothing
            }
            (
                S::Ending {
                    kill_at: Some(at), ..
                },
                E::Tick,
            ) if now >= at => self.kill_leftovers(now, fx),
            (
                S::Ending {
                    kill_at: None,
                    give_up_at: Some(at),
                    ..
                },
                E::Tick,
            ) if now >= at => self.go_on_without_leftovers(now, fx),
            (S::WaitingForDependencies { .. }, E::DependencyGone(why)) => {
                self.give_up_waiting(&why, now, fx)
            }
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::HeldForRemoved
                | S::Backoff { .. }
                | S::Starting { .. }
                | S::Running { .. }
                | S::Stopping { .. }
                | S::Ending { .. }
                | S::StoppedByRequest,
                E::DependencyGone(_),
            ) => Outcome::Nothing,

            (S::Running { .. }, E::Tick)
                if self.spec.oneshot && self.deadline().is_some_and(|at| now >= at) =>
            {
                self.time_out(now, fx)
            }
            (
                S::Running {
                    pid, ready: true, ..
                },
                E::Tick,
            ) if !self.spec.oneshot => self.liveness_tick(pid, now, fx),
            (S::Backoff { until }, E::Tick) if now >= until => Outcome::StartDue(None),
            (S::WaitingForDependencies { until }, E::Tick) if now >= until => {
                let timeout = human(self.spec.ready_timeout);
                self.give_up_waiting(
                    &format!("after {timeout}: what it starts after is not ready"),
                    now,
                    fx,
                )
            }
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::HeldForRemoved
                | S::WaitingForDependencies { .. }
                | S::Backoff { .. }
                | S::Starting { .. }
                | S::Running { .. }
                | S::Stopping { .. }
                | S::Ending { .. }
                | S::StoppedByRequest,
                E::Tick,
            ) => Outcome::Nothing,

            (S::HeldForRemoved, E::Released) => {
                if self.starts_when_released() {
                    Outcome::StartDue(None)
                } else {
                    // autostart = no, or a stop asked while it was held: down until a start.
                    self.on_release = None;
                    self.state = S::StoppedByRequest;
                    Outcome::Nothing
                }
            }
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::WaitingForDependencies { .. }
                | S::Backoff { .. }
                | S::Starting { .. }
                | S::Running { .. }
                | S::Stopping { .. }
                | S::Ending { .. }
                | S::StoppedByRequest,
                E::Released,
            ) => Outcome::Nothing,

            (S::Stopping { .. }, E::KillNow) => {
                self.kill_now(fx);
                Outcome::Nothing
            }
            (S::Ending { kill_at, .. }, E::KillNow) => {
                // The shutdown budget is over: SIGKILL what is left (unless it had it), and
                // the sweep's own SIGKILL round follows; nothing more is waited for.
                if kill_at.is_some() {
                    fx.push(Action::FindLeftovers {
                        id: self.id,
                        signal: Some(Sig(libc_sig::KILL)),
                    });
                }
                self.finish_ending(now, fx)
            }
            (
                S::Down
                | S::GaveUp
                | S::Done { .. }
                | S::Failed { .. }
                | S::GaveUpWaiting
                | S::HeldForRemoved
                | S::WaitingForDependencies { .. }
                | S::Backoff { .. }
                | S::Starting { .. }
                | S::Running { .. }
                | S::StoppedByRequest,
                E::KillNow,
            ) => Outcome::Nothing,
        }
    }
}

impl State {
    /// The word `status` shows, and `health` builds on.
    pub(crate) fn word(&self) -> &'static str {
        match self {
            State::Starting { restart: None } => "starting",
            State::Starting { restart: Some(_) }
            | State::Stopping {
                then: AfterStop::Restart(_),
                ..
            } => "restarting",
            State::Running { .. } => "running",
            State::Stopping { .. } => "stopping",
            State::Backoff { .. } => "backoff",
            State::WaitingForDependencies { .. } | State::HeldForRemoved => "waiting",
            State::GaveUpWaiting => "not started",
            State::Down => "exited",
            State::GaveUp => "gave up",
            State::StoppedByRequest => "down",
            State::Ending { .. } => "ending",
            State::Done { .. } => "done",
            State::Failed { .. } => "failed",
        }
    }
}

/// The exit code a daemon stopped by bundle-init contributes: stopping the way it was asked
/// to is clean (0); anything else is reported honestly, e.g. 137 when it had to be killed.
pub(super) fn stopped_code(status: ExitStatus, stop_signal: Sig) -> u8 {
    match status {
        ExitStatus::Signal(n) if n == stop_signal.0 => 0,
        ExitStatus::Code(c) if i32::from(c) == 128 + stop_signal.0 => 0,
        other => other.code(),
    }
}
