//! The named transitions `Daemon::on` calls: one step each, setting the new state and
//! saying what it means for the bundle.

use std::time::Duration;

use super::{
    AfterEnd, AfterStop, Daemon, LEFTOVERS_AFTER_KILL, Outcome, RestartOutcome, RestartRequest,
    State, foreground, stopped_code,
};
use crate::plan::{ExitPolicy, GiveUp, OnFailure, TIMED_OUT_CODE};
use crate::signal::Sig;
use crate::supervisor::Level;
use crate::supervisor::effects::Effects;
use crate::supervisor::events::{Action, Cause, ExitStatus, SpawnFailure};
use crate::sys::libc_sig;
use crate::time::{Time, human};

impl Daemon {
    /// Spawns it if nothing it starts after is missing; otherwise it waits for them, until
    /// its ready-timeout.
    pub(super) fn start(
        &mut self,
        waiting_for: &[String],
        restart: Option<RestartRequest>,
        now: Time,
        fx: &mut Effects,
    ) -> Outcome {
        if waiting_for.is_empty() {
            self.spawn(restart, fx);
            return Outcome::Nothing;
        }
        self.state = State::WaitingForDependencies {
            until: now + self.spec.ready_timeout,
        };
        let name = &self.spec.name;
        fx.log(Level::Notice, || {
            format!("{name} waits for {} to be ready", waiting_for.join(", "))
        });
        Outcome::Nothing
    }

    pub(super) fn spawn(&mut self, restart: Option<RestartRequest>, fx: &mut Effects) {
        self.on_release = None;
        self.state = State::Starting { restart };
        fx.push(Action::Spawn(self.id));
    }

    /// It runs as `pid`: logs how it came to be, starts its readiness check.
    pub(super) fn started(
        &mut self,
        pid: i32,
        request: Option<RestartRequest>,
        now: Time,
        fx: &mut Effects,
    ) -> Outcome {
        let has_check = self.spec.ready.is_some();
        let oneshot = self.spec.oneshot;
        self.timed_out = false;
        self.new_process();
        self.state = State::Running {
            pid,
            since: now,
            // A oneshot is ready for what waits for it only once it exited 0.
            ready: !has_check && !oneshot,
        };
        let again = self.last_exit.is_some();
        // A first start asked for (`start` of a daemon that never ran) is no restart.
        if again || request.as_ref().is_some_and(|r| r.old_pid.is_some()) {
            self.restarts += 1;
        }
        self.starts += 1;
        let name = &self.spec.name;
        fx.lifecycle(|| match request {
            Some(RestartRequest {
                asked_at,
                by,
                old_pid: Some(old),
                detail,
                ..
            }) => {
                let micros = now.saturating_sub(asked_at).as_micros() as u64;
                let why = match detail {
                    Some(detail) => format!("{by}: {detail}"),
                    None => by.to_string(),
                };
                format!(
                    "{name} restarted ({why}): pid {old} -> {pid} in {}.{:03} ms",
                    micros / 1000,
                    micros % 1000
                )
            }
            Some(RestartRequest {
                by, old_pid: None, ..
            }) => format!("{name} started on request ({by}): pid {pid}"),
            None if again => format!("{name} started again: pid {pid}"),
            None => format!("{name} started: pid {pid}"),
        });
        if has_check {
            fx.push(Action::StartProbe { id: self.id, pid });
            Outcome::Nothing
        } else if oneshot {
            Outcome::Nothing
        } else {
            // Without a readiness check, running is ready.
            self.arm_liveness(now);
            Outcome::BecameReady
        }
    }

    /// fork itself failed: try again after a backoff, whatever the exit policy says.
    pub(super) fn retry_start(
        &mut self,
        failure: &SpawnFailure,
        now: Time,
        fx: &mut Effects,
    ) -> Outcome {
        let delay = self.next_backoff(Duration::ZERO);
        self.state = State::Backoff { until: now + delay };
        let name = &self.spec.name;
        fx.log(Level::Error, || {
            format!(
                "cannot start {name}: {}; retrying in {}",
                failure.message,
                human(delay)
            )
        });
        Outcome::Nothing
    }

    /// The program cannot run: that counts as an exit with the failure's code.
    pub(super) fn could_not_start(
        &mut self,
        failure: &SpawnFailure,
        now: Time,
        fx: &mut Effects,
    ) -> Outcome {
        let name = &self.spec.name;
        fx.log(Level::Error, || {
            format!("cannot start {name}: {}", failure.message)
        });
        self.ended_on_its_own(ExitStatus::Code(failure.code), Duration::ZERO, now, fx)
    }

    /// A spawn nobody waits for came back (it was withdrawn, yet ran): a process that
    /// started anyway must not run untracked beside this daemon's own, so it is killed.
    pub(super) fn spawned_unasked(
        &mut self,
        result: Result<i32, SpawnFailure>,
        fx: &mut Effects,
    ) -> Outcome {
        if let Ok(pid) = result {
            let name = &self.spec.name;
            fx.log(Level::Error, || {
                format!("{name}: a start nobody waits for any more ran as pid {pid}: killed")
            });
            fx.push(Action::Signal {
                pid,
                sig: Sig(libc_sig::KILL),
                group: true,
            });
        }
        Outcome::Nothing
    }

    pub(super) fn became_ready(
        &mut self,
        pid: i32,
        since: Time,
        now: Time,
        fx: &mut Effects,
    ) -> Outcome {
        self.state = State::Running {
            pid,
            since,
            ready: true,
        };
        self.arm_liveness(now);
        let name = &self.spec.name;
        fx.log(Level::Notice, || format!("{name} is ready"));
        Outcome::BecameReady
    }

    /// It stops running (stopped, or it died): a readiness check still looking at it stops,
    /// and a liveness check not carried out yet is not.
    pub(super) fn left_running(&mut self, fx: &mut Effects) {
        fx.withdraw_live_check(self.id);
        if let State::Running { ready: false, .. } = self.state
            && self.spec.ready.is_some()
        {
            fx.push(Action::StopProbe(self.id));
        }
    }

    pub(super) fn ended_on_its_own(
        &mut self,
        status: ExitStatus,
        ran_for: Duration,
        now: Time,
        fx: &mut Effects,
    ) -> Outcome {
        self.last_exit = Some(status);
        let name = &self.spec.name;
        match self.spec.on_exit {
            ExitPolicy::KeepRunning => {
                self.state = State::Down;
                fx.log(Level::Notice, || {
                    format!("{name} {status}; not restarted (keep-running)")
                });
                Outcome::EndedStayingDown(status)
            }
            ExitPolicy::Restart => {
                let delay = self.next_backoff(ran_for);
                if let Some(max) = self.spec.max_restarts
                    && self.crashes_in_a_row > max
                {
                    return self.give_up_restarting(status, max, fx);
                }
                self.state = State::Backoff { until: now + delay };
                let name = &self.spec.name;
                fx.log(Level::Notice, || {
                    format!("{name} {status}; restarting in {}", human(delay))
                });
                Outcome::Nothing
            }
            ExitPolicy::StopBundle => {
                self.state = State::Down;
                let single = fx.single_child();
                fx.lifecycle(|| {
                    if single {
                        // Single-child mode: the child is all there is.
                        format!("the child {status}; exiting")
                    } else {
                        format!("{name} {status}; stopping the bundle (stop-bundle)")
                    }
                });
                Outcome::EndedStoppingBundle(status)
            }
        }
    }

    /// A oneshot ended: exit 0 within its timeout is done, and what waits for it may start;
    /// anything else is a failure, which `on-failure` decides about.
    pub(super) fn task_ended(
        &mut self,
        status: ExitStatus,
        took: Duration,
        fx: &mut Effects,
    ) -> Outcome {
        let timed_out = std::mem::take(&mut self.timed_out);
        self.last_exit = Some(status);
        let name = &self.spec.name;
        if status == ExitStatus::Code(0) && !timed_out {
            self.state = State::Done { took };
            fx.lifecycle(|| format!("{name} done (exit 0 after {})", seconds(took)));
            return Outcome::TaskDone;
        }
        self.state = State::Failed { status, timed_out };
        let why = failure(status, timed_out, self.spec.timeout);
        let code = if timed_out {
            TIMED_OUT_CODE
        } else {
            status.code()
        };
        match self.spec.on_failure.unwrap_or(OnFailure::StopBundle) {
            OnFailure::StopBundle => {
                fx.log(Level::Error, || {
                    format!("{name} failed ({why}): stopping the bundle; nothing that waits for it starts (on-failure = stop-bundle)")
                });
                Outcome::EndedStoppingBundle(ExitStatus::Code(code))
            }
            OnFailure::KeepRunning => {
                fx.log(Level::Error, || {
                    format!("{name} failed ({why}); what waits for it goes on waiting (on-failure = keep-running)")
                });
                Outcome::TaskFailed(code)
            }
        }
    }

    /// A oneshot ran past its timeout: it is stopped as at a shutdown, and its exit is
    /// its failure.
    pub(super) fn time_out(&mut self, now: Time, fx: &mut Effects) -> Outcome {
        self.timed_out = true;
        let name = &self.spec.name;
        let timeout = self.spec.timeout.map(human).unwrap_or_default();
        let stop = self.spec.stop_signal;
        fx.log(Level::Error, || {
            format!("{name} did not finish within its timeout ({timeout}): sending {stop}")
        });
        self.stop(now, AfterStop::StayDown, Time::MAX, fx);
        Outcome::Nothing
    }

    /// It crashed once more than `max-restarts` allows in a row: it is not restarted, and
    /// `on-give-up` says whether the bundle goes on without it.
    fn give_up_restarting(&mut self, status: ExitStatus, max: u32, fx: &mut Effects) -> Outcome {
        self.state = State::GaveUp;
        let name = &self.spec.name;
        let restarts = if max == 1 { "restart" } else { "restarts" };
        match self.spec.on_give_up {
            GiveUp::StopBundle => {
                fx.log(Level::Error, || {
                    format!("{name} {status}; gave up after {max} {restarts}: stopping the bundle (on-give-up = stop-bundle)")
                });
                Outcome::EndedStoppingBundle(status)
            }
            GiveUp::StayDown => {
                fx.log(Level::Error, || {
                    format!("{name} {status}; gave up after {max} {restarts}: it stays down (on-give-up = stay-down)")
                });
                Outcome::EndedStayingDown(status)
            }
        }
    }

    /// A daemon stopped for a restart was reaped: its replacement starts at once, or, with
    /// the new definition a reload gave it, after what that one waits for, as at start.
    pub(super) fn replace(
        &mut self,
        mut request: RestartRequest,
        status: ExitStatus,
        fx: &mut Effects,
    ) -> Outcome {
        self.last_exit = Some(status);
        match request.new_spec.take() {
            Some(spec) => {
                self.spec = *spec;
                self.state = State::Down;
                Outcome::StartDue(Some(request))
            }
            None => {
                self.spawn(Some(request), fx);
                Outcome::Nothing
            }
        }
    }

    pub(super) fn stopped(&mut self, pid: i32, status: ExitStatus, fx: &mut Effects) -> Outcome {
        self.last_exit = Some(status);
        self.state = State::Down;
        let name = &self.spec.name;
        fx.lifecycle(|| format!("{name} {status} (pid {pid})"));
        Outcome::Stopped(stopped_code(status, self.spec.stop_signal))
    }

    pub(super) fn removed(&mut self, pid: i32, status: ExitStatus, fx: &mut Effects) -> Outcome {
        self.last_exit = Some(status);
        self.state = State::Down;
        let name = &self.spec.name;
        fx.lifecycle(|| format!("{name} {status} (pid {pid}): removed"));
        Outcome::Forgotten
    }

    pub(super) fn coalesce(&self, by: Cause, fx: &mut Effects) -> Outcome {
        let name = &self.spec.name;
        fx.log(Level::Info, || {
            format!("restart of {name} ({by}) already under way: coalesced")
        });
        Outcome::Restart(RestartOutcome::Coalesced)
    }

    pub(crate) fn refuse_restart(&self, by: Cause, why: &'static str, fx: &mut Effects) -> Outcome {
        let name = &self.spec.name;
        fx.log(Level::Notice, || {
            format!("restart of {name} ({by}) ignored: {why}")
        });
        Outcome::Restart(RestartOutcome::Refused(why))
    }

    /// Sends the stop signal and arms the SIGKILL: after its grace, and no later than
    /// `deadline` (the shutdown's, when one runs).
    pub(super) fn stop(&mut self, now: Time, then: AfterStop, deadline: Time, fx: &mut Effects) {
        self.left_running(fx);
        let State::Running { pid, since, .. } = self.state else {
            return;
        };
        let (stop, group) = (self.spec.stop_signal, self.spec.signal_group);
        let by = match &then {
            AfterStop::Restart(request) => Some(request.by),
            AfterStop::StayDown | AfterStop::Forget | AfterStop::Hold => None,
        };
        self.state = State::Stopping {
            pid,
            since,
            kill_at: Some((now + self.spec.grace).min(deadline)),
            then,
        };
        fx.push(Action::Signal {
            pid,
            sig: stop,
            group,
        });
        // A stopped process (SIGSTOP, or TSTP/TTIN/TTOU forwarded to it) cannot act on its
        // stop signal until it is continued, as s6, runit and systemd know.
        if stop.0 != libc_sig::CONT {
            fx.push(Action::Signal {
                pid,
                sig: Sig(libc_sig::CONT),
                group,
            });
        }
        if let Some(by) = by {
            let name = &self.spec.name;
            fx.log(Level::Info, || {
                format!("restarting {name} ({by}): sent {stop} to pid {pid}")
            });
        }
    }

    /// Already stopping: a restart under way is dropped (it stops for good now), a removal
    /// stays a removal, and the SIGKILL comes no later than `deadline`.
    pub(super) fn stop_sooner(&mut self, then: AfterStop, deadline: Time) -> Outcome {
        if let State::Stopping {
            kill_at, then: now, ..
        } = &mut self.state
        {
            *kill_at = kill_at.map(|at| at.min(deadline));
            if !matches!(now, AfterStop::Forget) {
                let dropped = std::mem::replace(now, then);
                self.keep_definition_of(dropped);
            }
        }
        Outcome::Nothing
    }

    /// A restart that was dropped (a stop or a shutdown came first) may have carried a
    /// reload's new definition: the daemon keeps it, so what runs next, and what a later
    /// reload compares with, is the file as it is.
    fn keep_definition_of(&mut self, dropped: AfterStop) {
        if let AfterStop::Restart(RestartRequest {
            new_spec: Some(spec),
            ..
        }) = dropped
        {
            self.spec = *spec;
        }
    }

    pub(super) fn stay_down_or_forget(&mut self, then: &AfterStop) -> Outcome {
        match then {
            AfterStop::Forget => {
                self.state = State::Down;
                Outcome::Forgotten
            }
            AfterStop::Hold => {
                self.state = State::StoppedByRequest;
                Outcome::Nothing
            }
            AfterStop::StayDown | AfterStop::Restart(_) => {
                self.state = State::Down;
                Outcome::Nothing
            }
        }
    }

    /// Stopped by a `stop` request and reaped: down until a `start`; neither its exit
    /// policy nor the exit code hears of it.
    pub(super) fn stopped_by_request(
        &mut self,
        pid: i32,
        status: ExitStatus,
        fx: &mut Effects,
    ) -> Outcome {
        self.last_exit = Some(status);
        self.state = State::StoppedByRequest;
        let name = &self.spec.name;
        fx.lifecycle(|| format!("{name} {status} (pid {pid}): stopped by request"));
        Outcome::Nothing
    }

    /// The stop under way now leads to `next` (a `start` after a `stop`: a restart).
    pub(super) fn set_after_stop(&mut self, next: AfterStop) {
        if let State::Stopping { then, .. } = &mut self.state {
            *then = next;
        }
    }

    /// SIGKILLs a stopping daemon (its whole group) and disarms its kill deadline.
    pub(super) fn kill_now(&mut self, fx: &mut Effects) {
        if let State::Stopping {
            pid,
            kill_at: kill_at @ Some(_),
            ..
        } = &mut self.state
        {
            *kill_at = None;
            fx.push(Action::Signal {
                pid: *pid,
                sig: Sig(libc_sig::KILL),
                group: true,
            });
        }
    }

    /// It will not be started: what it starts after did not become ready (`why`). Its
    /// exit policy decides what comes next, as for a failed start, but it never ran: it
    /// has no exit of its own to report.
    pub(super) fn give_up_waiting(&mut self, why: &str, now: Time, fx: &mut Effects) -> Outcome {
        let name = &self.spec.name;
        match self.spec.on_exit {
            ExitPolicy::KeepRunning => {
                self.state = State::GaveUpWaiting;
                fx.log(Level::Error, || {
                    format!("{name} gave up waiting {why}; not started (keep-running)")
                });
                Outcome::GaveUp
            }
            ExitPolicy::Restart => {
                let delay = self.next_backoff(Duration::ZERO);
                self.state = State::Backoff { until: now + delay };
                let name = &self.spec.name;
                fx.log(Level::Error, || {
                    format!(
                        "{name} gave up waiting {why}; trying again in {}",
                        human(delay)
                    )
                });
                Outcome::Nothing
            }
            ExitPolicy::StopBundle => {
                self.state = State::GaveUpWaiting;
                fx.log(Level::Error, || {
                    format!("{name} gave up waiting {why}; stopping the bundle (stop-bundle)")
                });
                Outcome::EndedStoppingBundle(ExitStatus::Code(1))
            }
        }
    }

    /// Doubles the delay for each crash in a row; a run of at least `stable_after` resets it.
    pub(super) fn next_backoff(&mut self, ran_for: Duration) -> Duration {
        let backoff = self.spec.backoff;
        if ran_for >= backoff.stable_after {
            self.crashes_in_a_row = 0;
        }
        self.crashes_in_a_row = self.crashes_in_a_row.saturating_add(1);
        let doublings = (self.crashes_in_a_row - 1).min(31);
        backoff
            .initial
            .saturating_mul(1u32 << doublings)
            .min(backoff.max)
    }

    /// Its process is gone: if it left processes of its own, they get its stop signal (or
    /// SIGKILL, when its stop's grace is spent) and `then` waits until they are gone.
    /// A daemon that takes the bundle down with it needs no wait: the shutdown's sweep
    /// stops what it left with everything else.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn end(
        &mut self,
        pid: i32,
        status: ExitStatus,
        leftovers: Vec<i32>,
        kill_at: Option<Time>,
        then: AfterEnd,
        now: Time,
        fx: &mut Effects,
    ) -> Outcome {
        let own_exit = matches!(then, AfterEnd::OwnExit { .. });
        // (A oneshot's policy is its on-failure: its leftovers are always waited for.)
        let swept =
            own_exit && !self.spec.oneshot && matches!(self.spec.on_exit, ExitPolicy::StopBundle);
        if own_exit && status == ExitStatus::Code(0) && !leftovers.is_empty() {
            self.say_it_went_into_the_background(pid, &leftovers, fx);
        }
        self.last_exit = Some(status);
        self.state = State::Ending {
            pid,
            status,
            since: now,
            kill_at: None,
            give_up_at: None,
            leftovers,
            then,
        };
        let leftovers = self.leftovers();
        if leftovers.is_empty() || swept {
            return self.finish_ending(now, fx);
        }
        let grace_left = kill_at.filter(|&at| at > now);
        let signal = if grace_left.is_some() {
            self.spec.stop_signal
        } else {
            Sig(libc_sig::KILL)
        };
        let name = &self.spec.name;
        fx.log(Level::Notice, || {
            format!(
                "{name} (pid {pid}) {status} and left {}: sending {signal}; it starts again only once they are gone",
                processes(leftovers)
            )
        });
        fx.push(Action::FindLeftovers {
            id: self.id,
            signal: Some(signal),
        });
        if let State::Ending {
            kill_at,
            give_up_at,
            ..
        } = &mut self.state
        {
            *kill_at = grace_left;
            *give_up_at = grace_left.is_none().then_some(now + LEFTOVERS_AFTER_KILL);
        }
        Outcome::Nothing
    }

    /// The main process exited 0 and left its own running: a daemon that forks into the
    /// background, which no supervisor can follow. Said once per exit, with the flag that
    /// keeps it in the foreground when the program is a known one.
    fn say_it_went_into_the_background(&self, pid: i32, leftovers: &[i32], fx: &mut Effects) {
        let name = &self.spec.name;
        let fix = foreground::hint(self.spec.argv.first().map(|p| p.as_os_str()));
        fx.log(Level::Error, || {
            format!(
                "{name} (pid {pid}) exited with code 0 but left {} running: it put itself in the background, where bundle-init cannot supervise it; {fix}",
                processes(leftovers)
            )
        });
    }

    /// What a new look for its leftovers sends: once SIGKILL went out, SIGKILL again, for
    /// what they forked meanwhile (a forking loop is killed to the last child); before,
    /// nothing (the grace's SIGKILL reaches whatever is found then).
    pub(crate) fn leftovers_signal(&self) -> Option<Sig> {
        match self.state {
            State::Ending { kill_at: None, .. } => Some(Sig(libc_sig::KILL)),
            _ => None,
        }
    }

    /// The leftovers an ending daemon saw last (none in any other state).
    pub(crate) fn leftovers(&self) -> &[i32] {
        match &self.state {
            State::Ending { leftovers, .. } => leftovers,
            _ => &[],
        }
    }

    /// A look for its leftovers found `pids`: none left means it has ended.
    pub(super) fn leftovers_seen(
        &mut self,
        pids: Vec<i32>,
        now: Time,
        fx: &mut Effects,
    ) -> Outcome {
        if pids.is_empty() {
            let name = &self.spec.name;
            fx.log(Level::Info, || format!("what {name} left behind is gone"));
            return self.finish_ending(now, fx);
        }
        if let State::Ending { leftovers, .. } = &mut self.state {
            *leftovers = pids;
        }
        Outcome::Nothing
    }

    pub(super) fn set_after_end(&mut self, next: AfterEnd) {
        if let State::Ending { then, .. } = &mut self.state {
            *then = next;
        }
    }

    /// A shutdown or a removal while its leftovers are being stopped: a restart it was
    /// waiting for is dropped, a removal stays a removal, its own exit keeps its policy
    /// (which counts its exit code and starts nothing once a shutdown runs), and the
    /// SIGKILL comes no later than `deadline`.
    pub(super) fn end_sooner(&mut self, next: AfterStop, deadline: Time, now: Time) -> Outcome {
        if let State::Ending { then, kill_at, .. } = &mut self.state {
            *kill_at = kill_at.map(|at| at.min(deadline).max(now));
            let replaced = match (&*then, &next) {
                (AfterEnd::Stop(AfterStop::Forget), _) => None,
                (_, AfterStop::Forget) => Some(AfterEnd::Stop(AfterStop::Forget)),
                (AfterEnd::Stop(AfterStop::Restart(_)), _) => Some(AfterEnd::Stop(next)),
                (AfterEnd::OwnExit { .. } | AfterEnd::Down, AfterStop::Hold) => {
                    Some(AfterEnd::Stop(AfterStop::Hold))
                }
                (AfterEnd::OwnExit { .. }, AfterStop::StayDown)
                    if matches!(self.spec.on_exit, ExitPolicy::Restart) =>
                {
                    Some(AfterEnd::Down)
                }
                _ => None,
            };
            if let Some(replaced) = replaced {
                let dropped = std::mem::replace(then, replaced);
                if let AfterEnd::Stop(dropped) = dropped {
                    self.keep_definition_of(dropped);
                }
            }
        }
        Outcome::Nothing
    }

    /// Its grace is over and leftovers remain: SIGKILL, and a last short wait for them.
    pub(super) fn kill_leftovers(&mut self, now: Time, fx: &mut Effects) -> Outcome {
        let name = &self.spec.name;
        if let State::Ending {
            kill_at,
            give_up_at,
            leftovers,
            ..
        } = &mut self.state
        {
            *kill_at = None;
            *give_up_at = Some(now + LEFTOVERS_AFTER_KILL);
            let what = processes(leftovers);
            fx.log(Level::Notice, || {
                format!("{what} left by {name} did not stop within its grace: sending SIGKILL")
            });
        }
        fx.push(Action::FindLeftovers {
            id: self.id,
            signal: Some(Sig(libc_sig::KILL)),
        });
        Outcome::Nothing
    }

    /// Leftovers that survive SIGKILL (uninterruptible sleep, or reaped by a parent of
    /// theirs bundle-init cannot see): waiting longer would hold the daemon down for good.
    pub(super) fn go_on_without_leftovers(&mut self, now: Time, fx: &mut Effects) -> Outcome {
        let name = &self.spec.name;
        let what = processes(self.leftovers());
        fx.log(Level::Error, || {
            format!(
                "{what} left by {name} still there {} after SIGKILL: going on without waiting for them",
                human(LEFTOVERS_AFTER_KILL)
            )
        });
        // A last SIGKILL for whatever appeared since the last look.
        fx.push(Action::FindLeftovers {
            id: self.id,
            signal: Some(Sig(libc_sig::KILL)),
        });
        self.finish_ending(now, fx)
    }

    /// What its leftovers held back happens now: its exit policy, its replacement, its
    /// stop or its removal.
    pub(super) fn finish_ending(&mut self, now: Time, fx: &mut Effects) -> Outcome {
        let State::Ending {
            pid, status, then, ..
        } = std::mem::replace(&mut self.state, State::Down)
        else {
            return Outcome::Nothing;
        };
        match then {
            AfterEnd::OwnExit { ran_for } if self.spec.oneshot => {
                self.task_ended(status, ran_for, fx)
            }
            AfterEnd::OwnExit { ran_for } => self.ended_on_its_own(status, ran_for, now, fx),
            AfterEnd::Stop(AfterStop::Restart(request)) => self.replace(request, status, fx),
            AfterEnd::Stop(AfterStop::StayDown) => self.stopped(pid, status, fx),
            AfterEnd::Stop(AfterStop::Forget) => self.removed(pid, status, fx),
            AfterEnd::Stop(AfterStop::Hold) => self.stopped_by_request(pid, status, fx),
            AfterEnd::Down => Outcome::Nothing,
        }
    }
}

/// "1 process (pid 8)", "3 processes (pids 8, 9, 10)", at most five pids shown.
fn processes(pids: &[i32]) -> String {
    let shown: Vec<String> = pids.iter().take(5).map(i32::to_string).collect();
    let more = if pids.len() > 5 { ", ..." } else { "" };
    match pids.len() {
        1 => format!("1 process (pid {})", shown[0]),
        n => format!("{n} processes (pids {}{more})", shown.join(", ")),
    }
}

/// "1.234 s".
pub(crate) fn seconds(took: Duration) -> String {
    let millis = took.as_millis();
    format!("{}.{:03} s", millis / 1000, millis % 1000)
}

/// Why a oneshot failed, in the log's and status's words: "exit 3", "killed by SIGKILL",
/// "timed out after 30s".
pub(crate) fn failure(status: ExitStatus, timed_out: bool, timeout: Option<Duration>) -> String {
    match status {
        _ if timed_out => format!("timed out after {}", timeout.map(human).unwrap_or_default()),
        ExitStatus::Code(code) => format!("exit {code}"),
        ExitStatus::Signal(n) => format!("killed by {}", Sig(n)),
    }
}
