//! Reloading the bundle file: a request waits while restarts or removals are under way,
//! the runtime reads the file (`Action::ReadBundle`), and `on_bundle_read` applies what
//! `crate::reload::diff` found: unchanged daemons untouched, changed ones restarted in
//! place (stopped the old way, started the new way), added ones started under new ids,
//! removed ones stopped and forgotten, routes and bundle keys replaced at once. No daemon
//! is renumbered: ids last as long as a definition.

use super::daemon::{AfterStop, Daemon, DaemonEvent};
use super::effects::Effects;
use super::events::{Action, ClientId, ReadError, ReloadRequest, Reply};
use super::views::Generation;
use super::{Level, Supervisor};
use crate::id::DaemonId;
use crate::plan::{DaemonSpec, Plan};
use crate::reload::{Change, DaemonChange};
use crate::time::Time;

pub(crate) struct Reloads {
    pub(crate) generation: Generation,
    /// The bundle file is being read for a reload (`Action::ReadBundle` is out).
    reading: bool,
    /// A reload asked for while another one, or a restart, is under way: it runs (and reads
    /// the file) once they are done. Later requests join it.
    pub(super) waiting: Option<ReloadRequest>,
}

impl Default for Reloads {
    fn default() -> Self {
        Reloads {
            generation: Generation {
                number: 1,
                loaded_at: Time::ZERO,
            },
            reading: false,
            waiting: None,
        }
    }
}

/// What a reload does to one daemon of the new plan, once the list is in place.
enum Step {
    Start(DaemonId),
    Redefine(DaemonId, Box<DaemonSpec>),
    Remove(DaemonId),
}

impl Supervisor {
    /// A reload asked for by a route or a control client.
    pub(super) fn request_reload(&mut self, request: ReloadRequest, fx: &mut Effects) {
        if self.is_shutting_down() {
            return refuse(&request, "shutting down", fx);
        }
        if request.dry_run {
            return fx.push(Action::ReadBundle(request));
        }
        if self.reloads.reading || self.reload_in_flight() || self.reloads.waiting.is_some() {
            return self.queue_reload(request, fx);
        }
        self.reloads.reading = true;
        fx.push(Action::ReadBundle(request));
    }

    /// A reload that must wait for restarts or removals under way: it joins the one
    /// waiting, which reads the file once they are done. Its clients are answered now, so
    /// none holds a control slot through a grace.
    fn queue_reload(&mut self, mut request: ReloadRequest, fx: &mut Effects) {
        let by = request.by;
        fx.log(Level::Info, || {
            format!("reload ({by}) waits for the restarts under way")
        });
        let queued = Reply::Ok(
            "reload queued: it runs once the restarts under way are done (the log says what it did)\n"
                .to_string(),
        );
        reply_to(&std::mem::take(&mut request.clients), &queued, fx);
        if self.reloads.waiting.is_none() {
            self.reloads.waiting = Some(request);
        }
    }

    /// Restarts (a reload's or anyone's) and removals still under way: a reload applied now
    /// would compare daemons that are between two definitions.
    pub(super) fn reload_in_flight(&self) -> bool {
        self.daemons
            .iter()
            .any(|d| d.is_removed() || d.is_mid_restart())
    }

    /// Runs the reload that waited, once nothing is under way any more.
    pub(super) fn resume_waiting_reload(&mut self, fx: &mut Effects) {
        if self.reloads.waiting.is_none()
            || self.reloads.reading
            || self.is_shutting_down()
            || self.reload_in_flight()
        {
            return;
        }
        if let Some(request) = self.reloads.waiting.take() {
            self.reloads.reading = true;
            fx.push(Action::ReadBundle(request));
        }
    }

    /// A shutdown began: the reload that waited will not run.
    pub(super) fn refuse_waiting_reload(&mut self, fx: &mut Effects) {
        if let Some(waiting) = self.reloads.waiting.take() {
            refuse(&waiting, "shutting down", fx);
        }
    }

    /// The runtime read the bundle file for `request`: the new plan (validated as at start,
    /// with the same selection), or why it cannot be used. An error changes nothing.
    pub(super) fn on_bundle_read(
        &mut self,
        request: ReloadRequest,
        plan: Result<Plan, ReadError>,
        now: Time,
        fx: &mut Effects,
    ) {
        if !request.dry_run {
            self.reloads.reading = false;
        }
        let plan = match plan {
            Ok(_) if self.is_shutting_down() => return refuse(&request, "shutting down", fx),
            // A start or a restart began after the file was asked for: compare once it is
            // done, not halfway.
            Ok(_) if !request.dry_run && self.reload_in_flight() => {
                return self.queue_reload(request, fx);
            }
            Ok(plan) => plan,
            Err(why) => {
                let by = request.by;
                fx.log(Level::Error, || {
                    format!("reload ({by}) refused, nothing changed: {why}")
                });
                reply_to(&request.clients, &Reply::refused(why.to_string()), fx);
                self.resume_waiting_reload(fx);
                return;
            }
        };
        // A daemon a reload is restarting is compared by the definition it restarts with.
        let now_defined: Vec<DaemonSpec> = self.daemons().map(|d| d.defined().clone()).collect();
        let changes = crate::reload::diff(&now_defined, &plan.daemons);
        let summary = crate::reload::summary(&changes);
        if request.dry_run {
            let reply = Reply::Ok(format!("would reload: {summary}\n"));
            return reply_to(&request.clients, &reply, fx);
        }
        // Said before it is carried out: what it starts and stops may end the bundle, and
        // nothing comes after the exit.
        self.answer_reload(&request, &summary, now, fx);
        self.apply_reload(plan, &changes, now, fx);
        self.settle(now, fx);
        self.end_if_every_daemon_is_down(now, fx);
    }

    fn answer_reload(
        &mut self,
        request: &ReloadRequest,
        summary: &str,
        now: Time,
        fx: &mut Effects,
    ) {
        let generation = &mut self.reloads.generation;
        generation.number = generation.number.saturating_add(1);
        generation.loaded_at = now;
        let micros = now.saturating_sub(request.asked_at).as_micros() as u64;
        let by = request.by;
        fx.log(Level::Notice, || {
            format!(
                "reload ({by}): {summary} ({}.{:03} ms)",
                micros / 1000,
                micros % 1000
            )
        });
        let number = generation.number;
        let reply = Reply::Ok(format!("reloaded (generation {number}): {summary}\n"));
        reply_to(&request.clients, &reply, fx);
    }

    /// A reload cannot move the HTTP endpoint (its socket is opened once, before the
    /// daemons start): a changed `http` line is said to wait for the next start.
    fn http_is_kept(&self, asked: Option<String>, fx: &mut Effects) {
        if asked == self.http {
            return;
        }
        let describe = |http: &Option<String>| match http {
            Some(at) => format!("http = {at}"),
            None => "no http line".to_string(),
        };
        fx.log(Level::Notice, || {
            format!(
                "the reloaded file has {}: the HTTP endpoint keeps {} until bundle-init restarts",
                describe(&asked),
                describe(&self.http)
            )
        });
    }

    /// Replaces the daemons by the new plan's, in its order, keeping each continuing
    /// daemon's id, state and history; removed daemons still alive go last, to be stopped.
    pub(super) fn apply_reload(
        &mut self,
        plan: Plan,
        changes: &[DaemonChange],
        now: Time,
        fx: &mut Effects,
    ) {
        let mut old = std::mem::take(&mut self.daemons);
        let mut steps = Vec::new();
        let mut ids = Vec::with_capacity(plan.daemons.len());
        // A renamed daemon never runs beside its old self: what this reload adds waits for
        // the daemons it removes to be gone.
        let removed_alive = old
            .iter()
            .any(|d| d.is_live() && !plan.daemons.iter().any(|s| s.name == d.spec.name));
        for spec in plan.daemons {
            let found = old.iter().position(|d| d.spec.name == spec.name);
            let daemon = match found.map(|at| old.remove(at)) {
                Some(daemon) if is_changed(changes, &spec.name) => {
                    steps.push(Step::Redefine(daemon.id, Box::new(spec)));
                    daemon
                }
                Some(mut daemon) => {
                    daemon.take_bookkeeping(spec, now);
                    daemon
                }
                None => {
                    let id = self.new_id();
                    if removed_alive {
                        Daemon::held(id, spec)
                    } else {
                        steps.push(Step::Start(id));
                        Daemon::new(id, spec)
                    }
                }
            };
            ids.push(daemon.id);
            self.daemons.push(daemon);
        }
        for gone in old {
            if gone.is_live() {
                steps.push(Step::Remove(gone.id));
                self.daemons.push(gone);
            } else {
                fx.push(Action::Forget(gone.id));
            }
        }
        self.reindex();
        self.routes = plan.routes.map(|&position| ids.get(position).copied());
        self.shutdown.grace = plan.shutdown_grace;
        self.stop_order = plan.stop_order;
        if plan.log_style != self.log_style {
            fx.log(Level::Notice, || {
                "log-format and log-time changes apply at the next start of bundle-init".to_string()
            });
        }
        self.http_is_kept(plan.http.as_ref().map(ToString::to_string), fx);
        // Removals first: what the others start after is then resolved among the daemons
        // that stay, and one that waited only for a removed daemon waits no more.
        let (removals, others): (Vec<Step>, Vec<Step>) = steps
            .into_iter()
            .partition(|s| matches!(s, Step::Remove(_)));
        for step in removals {
            self.take_step(step, now, fx);
        }
        self.resolve_every_after();
        for step in others {
            self.take_step(step, now, fx);
        }
        self.start_waiters(None, now, fx);
    }

    fn take_step(&mut self, step: Step, now: Time, fx: &mut Effects) {
        match step {
            Step::Start(id) => self.try_start(id, None, now, fx),
            Step::Redefine(id, spec) => {
                self.deliver(id, DaemonEvent::Redefine(spec), now, fx);
                // One that took the new definition at once and stays down (stopped by
                // request, a oneshot that ran) starts after what the new one names.
                self.resolve_after(id);
            }
            Step::Remove(id) => {
                let stop = DaemonEvent::Stop {
                    then: AfterStop::Forget,
                    deadline: Time::MAX,
                };
                self.deliver(id, stop, now, fx);
            }
        }
    }

    /// Once no removed daemon is alive, the daemons a reload held start, in file order.
    pub(super) fn start_held(&mut self, now: Time, fx: &mut Effects) {
        if self.daemons.iter().any(Daemon::is_removed) {
            return;
        }
        let held: Vec<DaemonId> = self
            .daemons
            .iter()
            .filter(|d| matches!(d.state(), super::daemon::State::HeldForRemoved))
            .map(|d| d.id)
            .collect();
        for id in held {
            self.deliver(id, DaemonEvent::Released, now, fx);
        }
    }
}

fn is_changed(changes: &[DaemonChange], name: &str) -> bool {
    changes
        .iter()
        .any(|c| c.name == name && matches!(c.change, Change::Changed(_)))
}

fn refuse(request: &ReloadRequest, why: &str, fx: &mut Effects) {
    let by = request.by;
    fx.log(Level::Notice, || format!("reload ({by}) ignored: {why}"));
    reply_to(&request.clients, &Reply::refused(why), fx);
}

fn reply_to(clients: &[ClientId], reply: &Reply, fx: &mut Effects) {
    for &client in clients {
        fx.push(Action::Reply {
            client,
            reply: reply.clone(),
        });
    }
}
