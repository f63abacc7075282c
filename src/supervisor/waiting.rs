//! Control clients waiting for the restarts they asked for. Each is answered once: when
//! every daemon it named is back up (or cannot be), or at its deadline. Daemons are held by
//! id, so a reload that reorders or removes daemons cannot point an answer at the wrong one.

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
    pub(crate) restarts_before: u32,
    pub(crate) old_pid: Option<i32>,
    pub(crate) refused: Option<&'static str>,
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
    match daemon.state() {
        State::Running { pid, .. } if daemon.restarts > awaited.restarts_before => {
            Standing::Done(*pid)
        }
        State::Backoff { .. } | State::Down | State::GaveUp | State::GaveUpWaiting => {
            Standing::Failed("did not come back up")
        }
        State::Running { .. }
        | State::Starting { .. }
        | State::Stopping { .. }
        | State::Ending { .. }
        | State::WaitingForDependencies { .. }
        | State::HeldForRemoved => Standing::UnderWay,
    }
}

fn reply(awaited: &[AwaitedRestart], standing: &impl Fn(&AwaitedRestart) -> Standing) -> Reply {
    let mut body = String::new();
    let mut failed = false;
    for a in awaited {
        let name = &a.name;
        let old = a.old_pid.map_or("-".to_string(), |p| p.to_string());
        match standing(a) {
            Standing::Done(new) => {
                body.push_str(&format!("{name} restarted: pid {old} -> {new}\n"))
            }
            Standing::Failed(why) => {
                failed = true;
                body.push_str(&format!("{name} not restarted: {why} (was pid {old})\n"));
            }
            Standing::UnderWay => {
                failed = true;
                body.push_str(&format!(
                    "{name} not restarted: did not come back up (was pid {old})\n"
                ));
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
