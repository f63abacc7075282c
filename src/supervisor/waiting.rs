//! Control clients waiting for the restarts, starts and stops they asked for. Each is
//! answered once: when every daemon it named is where it asked (or cannot be), or at its
//! deadline. Daemons are held by id, so a reload that reorders or removes daemons cannot
//! point an answer at the wrong one.

use std::time::Duration;

use super::daemon::{Daemon, State};
use super::effects::Effects;
use super::events::{Action, ClientId, Reply};
use crate::id::DaemonId;
use crate::time::Time;

/// How long past the longest grace a control client waits for a restart to finish.
const RESTART_REPLY_MARGIN: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
struct WaitingClient {
    client: ClientId,
    awaited: Vec<AwaitedRestart>,
    /// The answer goes out by then whatever happened: the longest grace plus a margin.
    deadline: Time,
}

/// One daemon a client waits for.
#[derive(Clone, Debug)]
pub(crate) struct AwaitedRestart {
    pub(crate) id: DaemonId,
    /// For the answer: a reload may remove the daemon before it is given.
    pub(crate) name: String,
    /// The daemon's `starts` when the client asked: done once a new process ran.
    pub(crate) starts_before: u32,
    pub(crate) old_pid: Option<i32>,
    pub(crate) refused: Option<&'static str>,
    pub(crate) goal: Goal,
}

/// What a client asked for one daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Goal {
    Restart,
    /// `already_running`: its pid, when it ran at the request (answered at once).
    Start {
        already_running: Option<i32>,
    },
    Stop,
}

/// How one awaited restart stands: done with the new pid, failed and why, or under way.
enum Standing {
    Done(i32),
    Failed(&'static str),
    UnderWay,
}

#[derive(Default)]
pub(crate) struct WaitingClients {
    clients: Vec<WaitingClient>,
}

impl WaitingClients {
    /// `client` waits for `awaited`, at most the longest of their graces plus a margin.
    pub(crate) fn add(
        &mut self,
        client: ClientId,
        awaited: Vec<AwaitedRestart>,
        longest_grace: Duration,
        now: Time,
    ) {
        self.clients.push(WaitingClient {
            client,
            awaited,
            deadline: now + longest_grace + RESTART_REPLY_MARGIN,
        });
    }

    /// Answers the clients whose restarts have all finished one way or the other, or whose
    /// deadline has passed. `daemon` finds a daemon of the bundle as it is now.
    pub(crate) fn settle<'a>(
        &mut self,
        now: Time,
        shutting_down: bool,
        daemon: impl Fn(DaemonId) -> Option<&'a Daemon>,
        fx: &mut Effects,
    ) {
        if self.clients.is_empty() {
            return;
        }
        let standing = |a: &AwaitedRestart| standing(a, daemon(a.id), shutting_down);
        self.clients.retain(|waiting| {
            let finished = waiting
                .awaited
                .iter()
                .all(|a| !matches!(standing(a), Standing::UnderWay));
            if !finished && now < waiting.deadline {
                return true;
            }
            let reply = reply(&waiting.awaited, &standing);
            fx.push(Action::Reply {
                client: waiting.client,
                reply,
            });
            false
        });
    }

    pub(crate) fn next_deadline(&self) -> Option<Time> {
        self.clients.iter().map(|c| c.deadline).min()
    }
}

fn standing(awaited: &AwaitedRestart, daemon: Option<&Daemon>, shutting_down: bool) -> Standing {
    if let Some(why) = awaited.refused {
        return Standing::Failed(why);
    }
    let Some(daemon) = daemon else {
        return Standing::Failed("removed by a reload");
    };
    if shutting_down {
        return Standing::Failed("shutting down");
    }
    match awaited.goal {
        Goal::Stop => stop_standing(daemon),
        Goal::Start {
            already_running: Some(pid),
        } => Standing::Done(pid),
        Goal::Restart | Goal::Start { .. } => start_standing(awaited, daemon),
    }
}

/// A restart or a start is done once a new process of the daemon runs.
fn start_standing(awaited: &AwaitedRestart, daemon: &Daemon) -> Standing {
    match daemon.state() {
        State::Running { pid, .. } if daemon.starts > awaited.starts_before => Standing::Done(*pid),
        State::Backoff { .. } | State::Down | State::GaveUp | State::GaveUpWaiting => {
            Standing::Failed("did not come back up")
        }
        State::StoppedByRequest => Standing::Failed("it was stopped by request"),
        // A oneshot that ran again, fast: done is up and gone.
        State::Done { .. } if daemon.starts > awaited.starts_before => Standing::Done(0),
        State::Done { .. } | State::Failed { .. } => Standing::Failed("it failed"),
        State::Running { .. }
        | State::Starting { .. }
        | State::Stopping { .. }
        | State::Ending { .. }
        | State::WaitingForDependencies { .. }
        | State::HeldForRemoved => Standing::UnderWay,
    }
}

/// A stop is done once nothing of the daemon runs any more.
fn stop_standing(daemon: &Daemon) -> Standing {
    match daemon.state() {
        State::StoppedByRequest => Standing::Done(0),
        State::HeldForRemoved if daemon.on_release == Some(false) => Standing::Done(0),
        State::Stopping { .. } | State::Ending { .. } => Standing::UnderWay,
        _ => Standing::Failed("it was started again"),
    }
}

fn reply(awaited: &[AwaitedRestart], standing: &impl Fn(&AwaitedRestart) -> Standing) -> Reply {
    let mut body = String::new();
    let mut failed = false;
    for a in awaited {
        let name = &a.name;
        let old = a.old_pid.map_or("-".to_string(), |p| p.to_string());
        let (done, not_done) = match a.goal {
            Goal::Restart => ("restarted", "not restarted"),
            Goal::Start { .. } => ("started", "not started"),
            Goal::Stop => ("stopped", "not stopped"),
        };
        match standing(a) {
            Standing::Done(_) if a.goal == Goal::Stop => {
                body.push_str(&format!("{name} {done} (was pid {old})\n"));
            }
            Standing::Done(new) if a.goal == Goal::Restart => {
                body.push_str(&format!("{name} {done}: pid {old} -> {new}\n"));
            }
            Standing::Done(new) => body.push_str(&format!("{name} {done}: pid {new}\n")),
            Standing::Failed(why) => {
                failed = true;
                body.push_str(&format!("{name} {not_done}: {why} (was pid {old})\n"));
            }
            Standing::UnderWay => {
                failed = true;
                let why = if a.goal == Goal::Stop {
                    "it did not stop in time"
                } else {
                    "did not come back up"
                };
                body.push_str(&format!("{name} {not_done}: {why} (was pid {old})\n"));
            }
        }
    }
    if failed {
        let what = match awaited.first().map(|a| a.goal) {
            Some(Goal::Stop) => "stop failed",
            Some(Goal::Start { .. }) => "start failed",
            _ => "restart failed",
        };
        Reply::Err {
            reason: what.to_string(),
            body,
        }
    } else {
        Reply::Ok(body)
    }
}
