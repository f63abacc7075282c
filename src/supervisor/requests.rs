//! Control requests: status, health, signal, restart and reload by name. Each is answered
//! with `Action::Reply`, at once or, for a restart, once the replacements run (the clients
//! waiting are `waiting.rs`'s).

use std::time::Duration;

use super::daemon::State;
use super::effects::Effects;
use super::events::{Action, Cause, ClientId, ControlRequest, ReloadRequest, Reply};
use super::waiting::{AwaitedRestart, Goal};
use super::{RestartOutcome, Supervisor};
use crate::id::DaemonId;
use crate::signal::Sig;
use crate::time::Time;

impl Supervisor {
    /// A control client's request. Every request is answered with `Action::Reply`: at once,
    /// or for a restart when the replacements run (or gave up, or the deadline passed).
    pub(super) fn on_control(
        &mut self,
        client: ClientId,
        request: ControlRequest,
        now: Time,
        fx: &mut Effects,
    ) {
        let reply = match request {
            ControlRequest::Status { json: false } => {
                Reply::Ok(self.status_lines(now).join("\n") + "\n")
            }
            ControlRequest::Status { json: true } => Reply::Ok(self.status_document(now) + "\n"),
            ControlRequest::Health => match self.health() {
                Ok(()) => Reply::Ok("healthy\n".to_string()),
                Err(problems) => Reply::Err {
                    reason: "unhealthy".to_string(),
                    body: problems.join("\n") + "\n",
                },
            },
            ControlRequest::Signal(name, sig) => self.signal_by_name(&name, sig, fx),
            ControlRequest::Restart(names) => match self.ids_of(&names) {
                Ok(ids) => return self.restart_for_client(client, &ids, now, fx),
                Err(why) => Reply::refused(why),
            },
            ControlRequest::Stop(_) | ControlRequest::Start(_) if fx.single_child() => {
                // The child is the container's whole life: stop the container instead.
                Reply::refused("single-child mode: stop or start the container instead")
            }
            ControlRequest::Stop(names) => match self.ids_of(&names) {
                Ok(ids) => return self.for_client(client, &ids, Goal::Stop, now, fx),
                Err(why) => Reply::refused(why),
            },
            ControlRequest::Start(names) => match self.ids_of(&names) {
                Ok(ids) => {
                    let goal = Goal::Start {
                        already_running: None,
                    };
                    return self.for_client(client, &ids, goal, now, fx);
                }
                Err(why) => Reply::refused(why),
            },
            ControlRequest::Logs {
                name,
                lines,
                follow,
            } => match self.ids_with_log(&name, follow) {
                Ok(ids) => {
                    let send = Action::SendLog {
                        client,
                        ids,
                        lines,
                        follow,
                    };
                    return fx.push(send);
                }
                Err(why) => Reply::refused(why),
            },
            ControlRequest::Reload { dry_run } => {
                let request = ReloadRequest {
                    asked_at: now,
                    by: Cause::Control,
                    clients: vec![client],
                    dry_run,
                };
                return self.request_reload(request, fx);
            }
        };
        fx.push(Action::Reply { client, reply });
    }

    /// The daemons `name` names: one, or every instance of a section with `instances`.
    fn ids_named(&self, name: &str) -> Result<Vec<DaemonId>, String> {
        let ids: Vec<DaemonId> = self
            .daemons()
            .filter(|d| d.spec.is_named(name))
            .map(|d| d.id)
            .collect();
        if ids.is_empty() {
            let known: Vec<&str> = self.daemons().map(|d| d.spec.name.as_str()).collect();
            return Err(format!(
                "unknown daemon \"{name}\" (known: {})",
                known.join(", ")
            ));
        }
        Ok(ids)
    }

    /// The daemons `name` names whose output bundle-init keeps (`prefix-output = yes`, and
    /// unless following, `log-buffer` not 0).
    fn ids_with_log(&self, name: &str, follow: bool) -> Result<Vec<DaemonId>, String> {
        let named = self.ids_named(name)?;
        let kept = |id: &DaemonId| {
            self.current(*id)
                .is_some_and(|d| d.spec.prefix_output && (follow || d.spec.log_buffer > 0))
        };
        let ids: Vec<DaemonId> = named.into_iter().filter(kept).collect();
        if ids.is_empty() {
            return Err(format!(
                "{name} keeps no log: its output is not prefixed (prefix-output = no) or log-buffer = 0"
            ));
        }
        Ok(ids)
    }

    fn ids_of(&self, names: &[String]) -> Result<Vec<DaemonId>, String> {
        let mut ids = Vec::new();
        for name in names {
            ids.extend(self.ids_named(name)?);
        }
        Ok(ids)
    }

    /// Sends `sig` to the daemon `name` names, or to each running instance it names.
    fn signal_by_name(&self, name: &str, sig: Sig, fx: &mut Effects) -> Reply {
        let ids = match self.ids_named(name) {
            Ok(ids) => ids,
            Err(why) => return Reply::refused(why),
        };
        let mut sent = String::new();
        for daemon in ids.iter().filter_map(|&id| self.current(id)) {
            if let Some(pid) = daemon.pid() {
                let group = daemon.spec.signal_group;
                fx.push(Action::Signal { pid, sig, group });
                sent.push_str(&format!("sent {sig} to {} (pid {pid})\n", daemon.spec.name));
            }
        }
        if sent.is_empty() {
            return Reply::refused(format!("{name} is not running"));
        }
        Reply::Ok(sent)
    }

    /// Restarts `ids` for a control client, whose reply waits for the outcome.
    fn restart_for_client(
        &mut self,
        client: ClientId,
        ids: &[DaemonId],
        now: Time,
        fx: &mut Effects,
    ) {
        self.for_client(client, ids, Goal::Restart, now, fx);
    }

    /// Restarts, starts or stops `ids` for a control client, whose reply waits until each
    /// is where it was asked to be (or cannot be), at most the longest grace (or, for a
    /// start, ready-timeout) plus a margin.
    fn for_client(
        &mut self,
        client: ClientId,
        ids: &[DaemonId],
        goal: Goal,
        now: Time,
        fx: &mut Effects,
    ) {
        let mut longest = Duration::ZERO;
        let mut awaited = Vec::with_capacity(ids.len());
        for &id in ids {
            let Some(daemon) = self.current(id) else {
                continue;
            };
            longest = longest.max(daemon.spec.grace);
            if matches!(goal, Goal::Start { .. }) {
                longest = longest.max(daemon.spec.ready_timeout);
            }
            let (name, starts_before, old_pid) =
                (daemon.spec.name.clone(), daemon.starts, daemon.pid());
            let running = matches!(daemon.state(), State::Running { .. });
            let outcome = match goal {
                Goal::Restart => self.request_restart(id, Cause::Control, now, fx),
                Goal::Start { .. } => self.request_start(id, now, fx),
                Goal::Stop => self.request_stop(id, now, fx),
            };
            let refused = match outcome {
                RestartOutcome::Refused(why) => Some(why),
                RestartOutcome::Begun | RestartOutcome::Coalesced => None,
            };
            let goal = match goal {
                Goal::Start { .. } if running => Goal::Start {
                    already_running: old_pid,
                },
                other => other,
            };
            awaited.push(AwaitedRestart {
                id,
                name,
                starts_before,
                old_pid,
                refused,
                goal,
            });
        }
        self.waiting.add(client, awaited, longest, now);
        self.settle(now, fx);
    }
}
