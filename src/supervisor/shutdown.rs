//! The bundle's shutdown: one budget for every daemon, then the sweep of leftover
//! processes (orphans bundle-init adopted), which follows adoptions until no child is left
//! or gives up a short while after the budget. The daemons' own stops are theirs
//! (`daemon.rs`); this value only knows the bundle-wide phase and the sweep.

use std::time::Duration;

use super::effects::Effects;
use super::events::{Action, Level};
use crate::signal::Sig;
use crate::sys::libc_sig;
use crate::time::{Time, human};

/// After the shutdown budget's SIGKILL round, how often leftovers are looked for again, and
/// how long past the budget bundle-init keeps looking before it exits without them.
pub(crate) const SWEEP_RESCAN: Duration = Duration::from_millis(100);
pub(crate) const SWEEP_TAIL: Duration = Duration::from_secs(2);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    ShuttingDown {
        deadline: Time,
        killed: bool,
        sweep: Sweep,
    },
    Done,
}

/// Where the sweep of leftover processes stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sweep {
    NotYet,
    /// SignalLeftovers went out; the runtime's reaping report has not come back yet.
    AwaitingReap,
    /// The runtime reported after signalling: `leftovers` is fresh.
    Reaped,
}

pub(crate) struct Shutdown {
    phase: Phase,
    /// The budget every daemon shares.
    pub(crate) grace: Duration,
    /// After the daemons are gone, TERM (then KILL at the deadline) any other process.
    stop_leftovers: bool,
    /// Whether the last reaping pass saw children still alive (true until one says not).
    leftovers: bool,
    /// Whether a child was reaped since the last reaping pass ended: its children, if it
    /// had any, were just adopted and have not been swept yet.
    reaped_in_this_pass: bool,
    /// When the last reaping pass ended.
    last_reaping: Time,
    /// The budget's end, once a shutdown began (kept after it is done: the final flush of
    /// output may use what is left of it).
    budget_ends: Option<Time>,
}

/// What the sweep asks of the supervisor.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    GoingOn,
    /// Nothing is left to wait for: exit.
    Finished,
}

impl Shutdown {
    pub(crate) fn new(grace: Duration, stop_leftovers: bool) -> Shutdown {
        Shutdown {
            phase: Phase::Running,
            grace,
            stop_leftovers,
            leftovers: true,
            reaped_in_this_pass: false,
            last_reaping: Time::ZERO,
            budget_ends: None,
        }
    }

    pub(crate) fn under_way(&self) -> bool {
        !matches!(self.phase, Phase::Running)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Begins the shutdown now; returns its deadline, or None if it had begun already.
    pub(crate) fn begin(&mut self, now: Time) -> Option<Time> {
        if self.under_way() {
            return None;
        }
        let deadline = now + self.grace;
        self.budget_ends = Some(deadline);
        self.phase = Phase::ShuttingDown {
            deadline,
            killed: false,
            sweep: Sweep::NotYet,
        };
        Some(deadline)
    }

    /// When the shutdown budget ends (or ended), once a shutdown began.
    pub(crate) fn budget_ends(&self) -> Option<Time> {
        self.budget_ends
    }

    pub(crate) fn finish(&mut self) {
        self.phase = Phase::Done;
    }

    pub(crate) fn note_reaped(&mut self) {
        self.reaped_in_this_pass = true;
    }

    /// The sweep's signal: TERM before the budget is over, KILL after.
    fn sweep_signal(killed: bool) -> Action {
        Action::SignalLeftovers(Sig(if killed {
            libc_sig::KILL
        } else {
            libc_sig::TERM
        }))
    }

    /// After every reaping pass. During the sweep, a pass that reaped someone while
    /// children remain sweeps again: the children of the one that died were just adopted
    /// (a subreaper's only sign of an adoption), and the earlier signal never reached them.
    /// Each new sweep needs a death, so this ends.
    pub(crate) fn after_reaping(
        &mut self,
        children_remain: bool,
        daemons_live: bool,
        now: Time,
        fx: &mut Effects,
    ) -> Progress {
        let reaped = std::mem::take(&mut self.reaped_in_this_pass);
        self.leftovers = children_remain;
        self.last_reaping = now;
        let stop_leftovers = self.stop_leftovers;
        if let Phase::ShuttingDown { sweep, killed, .. } = &mut self.phase {
            match sweep {
                Sweep::AwaitingReap | Sweep::Reaped
                    if stop_leftovers && !daemons_live && children_remain && reaped =>
                {
                    *sweep = Sweep::AwaitingReap;
                    fx.push(Self::sweep_signal(*killed));
                    return Progress::GoingOn;
                }
                Sweep::AwaitingReap => *sweep = Sweep::Reaped,
                Sweep::NotYet | Sweep::Reaped => {}
            }
        }
        self.check_done(daemons_live, fx)
    }

    /// Whether the budget ends now: then the caller SIGKILLs every daemon, and calls
    /// `end_budget`.
    pub(crate) fn budget_is_over(&self, now: Time) -> bool {
        matches!(self.phase, Phase::ShuttingDown { deadline, killed: false, .. } if now >= deadline)
    }

    /// The budget is over: SIGKILL to the leftovers too.
    pub(crate) fn end_budget(&mut self, daemons_live: bool, fx: &mut Effects) -> Progress {
        let stop_leftovers = self.stop_leftovers;
        let Phase::ShuttingDown { killed, sweep, .. } = &mut self.phase else {
            return Progress::GoingOn;
        };
        *killed = true;
        if stop_leftovers {
            *sweep = Sweep::AwaitingReap;
            fx.push(Action::SignalLeftovers(Sig(libc_sig::KILL)));
        }
        let grace = self.grace;
        fx.log(Level::Notice, || {
            format!(
                "shutdown budget of {} is over: sending SIGKILL to what is left",
                human(grace)
            )
        });
        self.check_done(daemons_live, fx)
    }

    /// Once every daemon is gone: the sweep's first round, or the end when it found nobody.
    pub(crate) fn check_done(&mut self, daemons_live: bool, fx: &mut Effects) -> Progress {
        let Phase::ShuttingDown { killed, sweep, .. } = &mut self.phase else {
            return Progress::GoingOn;
        };
        if daemons_live {
            return Progress::GoingOn;
        }
        if self.stop_leftovers {
            match sweep {
                Sweep::NotYet => {
                    *sweep = Sweep::AwaitingReap;
                    fx.push(Self::sweep_signal(*killed));
                    return Progress::GoingOn;
                }
                Sweep::AwaitingReap => return Progress::GoingOn,
                Sweep::Reaped if self.leftovers => return Progress::GoingOn,
                Sweep::Reaped => {}
            }
        }
        Progress::Finished
    }

    /// The shutdown deadline, while the sweep looks for leftovers on a timer: after the
    /// SIGKILL round, with every daemon reaped (until then a SIGCHLD is what comes next,
    /// and a rescan time that stays in the past would spin the loop) and children left.
    fn rescanning_after_the_budget(&self, daemons_live: bool) -> Option<Time> {
        match self.phase {
            Phase::ShuttingDown {
                deadline,
                killed: true,
                sweep: Sweep::Reaped,
            } if self.stop_leftovers && self.leftovers && !daemons_live => Some(deadline),
            _ => None,
        }
    }

    /// After the SIGKILL round, leftovers may still be adopted without any event (the
    /// parent of an orphan was not our child): look again every SWEEP_RESCAN until wait
    /// says there are no children, or give up SWEEP_TAIL after the budget.
    pub(crate) fn sweep_again(
        &mut self,
        daemons_live: bool,
        now: Time,
        fx: &mut Effects,
    ) -> Progress {
        let Some(deadline) = self.rescanning_after_the_budget(daemons_live) else {
            return Progress::GoingOn;
        };
        if now >= deadline + SWEEP_TAIL {
            fx.log(Level::Notice, || {
                format!(
                    "processes are still left {} after SIGKILL: exiting without them",
                    human(SWEEP_TAIL)
                )
            });
            return Progress::Finished;
        }
        if now >= self.last_reaping + SWEEP_RESCAN
            && let Phase::ShuttingDown { sweep, .. } = &mut self.phase
        {
            *sweep = Sweep::AwaitingReap;
            fx.push(Action::SignalLeftovers(Sig(libc_sig::KILL)));
        }
        Progress::GoingOn
    }

    /// The earliest time the shutdown has something to do, if any.
    pub(crate) fn next_deadline(&self, daemons_live: bool) -> Option<Time> {
        match self.phase {
            Phase::ShuttingDown {
                deadline,
                killed: false,
                ..
            } => Some(deadline),
            _ => self
                .rescanning_after_the_budget(daemons_live)
                .map(|deadline| (self.last_reaping + SWEEP_RESCAN).min(deadline + SWEEP_TAIL)),
        }
    }
}
