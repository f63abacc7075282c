//! Whether a ready daemon still answers: its liveness checks (`live`) and its watchdog
//! pings (`watchdog`), and what its process says on its notify socket. The checks run in
//! the runtime (`live`); this part only decides when one is due and what a result means.
//! After `live-failures` failures in a row the daemon is restarted, alone, as a restart
//! request would (stop signal, grace, SIGKILL).

use super::{AfterStop, Daemon, Outcome, RestartRequest, State};
use crate::plan::{DaemonSpec, ReadyCheck};
use crate::supervisor::Level;
use crate::supervisor::effects::Effects;
use crate::supervisor::events::{Action, Cause, NotifyMessage};
use crate::time::{Time, human};

/// One daemon's liveness, as far as its current process goes (but the totals and the last
/// failure, which an operator wants to see after the restart they caused).
#[derive(Clone, Debug, Default)]
pub(crate) struct LiveState {
    /// When the next check is due; None while one runs, or when nothing is checked.
    next_check: Option<Time>,
    /// The process a check under way is about.
    checking: Option<i32>,
    /// When the next `WATCHDOG=1` must have come.
    watchdog_due: Option<Time>,
    /// Failures in a row, of the `live` check and of the watchdog, each its own row: a
    /// check that passes says nothing of a process that stopped pinging (a hung one keeps
    /// the socket the kernel accepts connections on), nor a ping of a dead port.
    in_a_row: [u32; 2],
    /// Every failure, over every process: a counter for metrics.
    pub(crate) failures: u32,
    pub(crate) last_failure: Option<String>,
    /// The shutdown began: it is not checked again, even if it becomes ready now.
    ended: bool,
}

/// What the current process said on its notify socket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Notes {
    /// Its last `STATUS=` line.
    pub(crate) status: Option<String>,
    /// `RELOADING=1` came, and no `READY=1` since.
    pub(crate) reloading: bool,
    /// `STOPPING=1` came.
    pub(crate) stopping: bool,
    /// A `MAINPID=` was already answered with a line in the log.
    main_pid_said: bool,
}

/// What failed or answered: the `live` check, or the watchdog.
#[derive(Clone, Copy)]
enum Probe {
    Check = 0,
    Watchdog = 1,
}

impl LiveState {
    /// The longer of the two rows: what `status`, `health` and the metrics show.
    pub(crate) fn failures_in_a_row(&self) -> u32 {
        self.in_a_row[0].max(self.in_a_row[1])
    }
}

impl Daemon {
    /// A new process runs: what the last one failed or said is not held against it.
    pub(super) fn new_process(&mut self) {
        let live = &mut self.liveness;
        live.next_check = None;
        live.checking = None;
        live.watchdog_due = None;
        live.in_a_row = [0; 2];
        self.notes = Notes::default();
    }

    /// It became ready: its checks begin one interval from now, and so does its watchdog.
    pub(super) fn arm_liveness(&mut self, now: Time) {
        if self.liveness.ended {
            return;
        }
        let settings = &self.spec.live;
        self.liveness.next_check = settings.check.as_ref().map(|_| now + settings.every);
        self.liveness.watchdog_due = settings.watchdog.map(|every| now + every);
    }

    /// A reload changed only keys that apply without a restart. Changed liveness keys
    /// check a ready process from now on.
    pub(crate) fn take_bookkeeping(&mut self, spec: DaemonSpec, now: Time) {
        let live_changed = self.spec.live != spec.live;
        self.spec = spec;
        if live_changed && let State::Running { ready: true, .. } = self.state {
            self.liveness.checking = None;
            self.arm_liveness(now);
        }
    }

    /// The shutdown began: nothing checks it any more (it stops, in its turn, as it is).
    pub(crate) fn stop_checking_liveness(&mut self, fx: &mut Effects) {
        self.liveness.ended = true;
        self.liveness.next_check = None;
        self.liveness.checking = None;
        self.liveness.watchdog_due = None;
        fx.withdraw_live_check(self.id);
    }

    /// The next time a check is due or a watchdog ping is missed.
    pub(super) fn liveness_deadline(&self) -> Option<Time> {
        let next_check = self
            .liveness
            .next_check
            .filter(|_| self.liveness.checking.is_none());
        next_check
            .into_iter()
            .chain(self.liveness.watchdog_due)
            .min()
    }

    /// Time passed while it runs, ready: a check that is due is asked for, and a watchdog
    /// ping that did not come is a failure.
    pub(super) fn liveness_tick(&mut self, pid: i32, now: Time, fx: &mut Effects) -> Outcome {
        let live = &mut self.liveness;
        if live.checking.is_none() && live.next_check.is_some_and(|at| now >= at) {
            live.next_check = None;
            live.checking = Some(pid);
            fx.push(Action::CheckLive { id: self.id, pid });
        }
        match (self.liveness.watchdog_due, self.spec.live.watchdog) {
            (Some(due), Some(every)) if now >= due => {
                self.liveness.watchdog_due = Some(now + every);
                let why = format!("no WATCHDOG=1 within {}", human(every));
                self.live_failed(Probe::Watchdog, pid, why, now, fx)
            }
            _ => Outcome::Nothing,
        }
    }

    /// A check of its process `pid` ended with `result`.
    pub(super) fn live_checked(
        &mut self,
        pid: i32,
        result: Result<(), String>,
        now: Time,
        fx: &mut Effects,
    ) -> Outcome {
        if self.liveness.checking != Some(pid) {
            return Outcome::Nothing;
        }
        self.liveness.checking = None;
        // The next one from now, with the settings as they are now (a reload may have
        // changed them while this one ran).
        let settings = &self.spec.live;
        self.liveness.next_check = settings.check.as_ref().map(|_| now + settings.every);
        match result {
            Ok(()) => {
                self.answers_again(Probe::Check, "answered its liveness check", fx);
                Outcome::Nothing
            }
            Err(why) => self.live_failed(Probe::Check, pid, why, now, fx),
        }
    }

    /// A check passed or a ping came (`what`): that probe's failures in a row are over.
    fn answers_again(&mut self, probe: Probe, what: &str, fx: &mut Effects) {
        let name = &self.spec.name;
        if self.liveness.in_a_row[probe as usize] > 0 {
            fx.log(Level::Notice, || {
                format!("{name} answers its liveness check again")
            });
        } else {
            fx.log(Level::Debug, || format!("{name} {what}"));
        }
        self.liveness.in_a_row[probe as usize] = 0;
    }

    /// One more failure of `probe` in a row; at `live-failures` of them, it is restarted.
    fn live_failed(
        &mut self,
        probe: Probe,
        pid: i32,
        why: String,
        now: Time,
        fx: &mut Effects,
    ) -> Outcome {
        let live = &mut self.liveness;
        let row = &mut live.in_a_row[probe as usize];
        *row += 1;
        live.failures = live.failures.saturating_add(1);
        let (count, limit) = (*row, self.spec.live.failures);
        let name = &self.spec.name;
        if count < limit {
            fx.log(Level::Notice, || {
                format!("{name} failed its liveness check ({why}; {count} of {limit} in a row)")
            });
            self.liveness.last_failure = Some(why);
            return Outcome::Nothing;
        }
        let mut request = RestartRequest::new(now, Cause::Liveness);
        request.old_pid = Some(pid);
        request.detail = Some(format!("{why}, {count} in a row"));
        self.liveness.last_failure = Some(why);
        self.stop(now, AfterStop::Restart(request), Time::MAX, fx);
        Outcome::Nothing
    }

    /// Its process (running, or stopping) said `message` on its notify socket.
    pub(super) fn notified(
        &mut self,
        message: NotifyMessage,
        now: Time,
        fx: &mut Effects,
    ) -> Outcome {
        if let Some(status) = message.status {
            self.notes.status = Some(status);
        }
        self.notes.stopping |= message.stopping;
        if message.reloading {
            self.notes.reloading = true;
            let name = &self.spec.name;
            fx.log(Level::Info, || format!("{name} says it is reloading"));
        }
        if let Some(pid) = message.main_pid {
            self.main_pid_ignored(&pid, fx);
        }
        if message.watchdog && self.liveness.watchdog_due.is_some() {
            let every = self.spec.live.watchdog;
            self.liveness.watchdog_due = every.map(|every| now + every);
            self.answers_again(Probe::Watchdog, "pinged its watchdog", fx);
        }
        if message.ready {
            self.notes.reloading = false;
            return self.ready_by_notification(now, fx);
        }
        Outcome::Nothing
    }

    /// `READY=1`: the readiness a `ready = sd-notify` daemon waits for. Said again (after
    /// a reload of its own), it changes nothing.
    fn ready_by_notification(&mut self, now: Time, fx: &mut Effects) -> Outcome {
        match self.state {
            State::Running {
                pid,
                since,
                ready: false,
            } if self.spec.ready == Some(ReadyCheck::SdNotify) => {
                fx.push(Action::StopProbe(self.id));
                self.became_ready(pid, since, now, fx)
            }
            _ => Outcome::Nothing,
        }
    }

    /// systemd follows a `MAINPID=` to another process; bundle-init watches the one it
    /// started, whose exit is the daemon's, so it says so once per process.
    fn main_pid_ignored(&mut self, pid: &str, fx: &mut Effects) {
        if std::mem::replace(&mut self.notes.main_pid_said, true) {
            return;
        }
        let name = &self.spec.name;
        fx.log(Level::Notice, || {
            format!(
                "{name} sent MAINPID={pid}: ignored, bundle-init watches the process it started"
            )
        });
    }

    /// A datagram on its notify socket from a process that is not its running one: one of
    /// its children, or a process it left behind. Dropped, as systemd's NotifyAccess=main
    /// drops it.
    pub(super) fn notified_by_a_stranger(&self, from: i32, fx: &mut Effects) -> Outcome {
        let name = &self.spec.name;
        fx.log(Level::Debug, || {
            format!("{name}: a notification from pid {from}, not its main process: dropped")
        });
        Outcome::Nothing
    }
}
