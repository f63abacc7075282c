//! The supervisor: a pure state machine, and the only code that reads or changes a
//! daemon's state. Events go in through `Supervisor::handle` (a signal arrived, a child was
//! reaped, a spawn was carried out, a probe found a daemon ready, a control client asked
//! something, time passed); actions come out through `Effects` (spawn, signal, start or
//! stop a probe, reply, log, exit). It does no I/O and reads no clock, so tests drive every
//! rule directly, and a model of the runtime drives it through random interleavings.
//!
//! The parts, each in its own file: one daemon's state and transition table (`daemon`),
//! the shutdown and its sweep of leftovers (`shutdown`), the control clients waiting for
//! restarts (`waiting`), reloads (`reload`), the status and health views (`views`), and the
//! log policy in front of the action queue (`effects`). `Supervisor` only ties them
//! together: it routes each event to the daemons it concerns and reacts to what their
//! transitions mean for the bundle.

mod daemon;
mod effects;
mod events;
mod reload;
mod requests;
mod shutdown;
mod views;
mod waiting;

#[cfg(test)]
mod tests;

pub(crate) use daemon::RestartOutcome;
use daemon::{AfterStop, Daemon, DaemonEvent, Outcome, RestartRequest};
pub(crate) use effects::Effects;
pub(crate) use events::{
    Action, Cause, ClientId, ControlRequest, Event, ExitStatus, Level, LogEvent, NotifyMessage,
    ReadError, ReloadRequest, Reply, SpawnFailure,
};
use shutdown::{Progress, Shutdown};
pub(crate) use views::OutputCounts;
use waiting::WaitingClients;

use crate::id::{DaemonId, IdMap};
use crate::plan::{DaemonSpec, LogStyle, Plan, Route, Routes, StopOrder};
use crate::signal::Sig;
use crate::time::Time;

pub(crate) struct Supervisor {
    /// The bundle's daemons in file order, then those a reload removed that are still
    /// stopping.
    daemons: Vec<Daemon>,
    /// Each daemon's position in `daemons`, by id.
    positions: IdMap<usize>,
    routes: Routes<DaemonId>,
    /// Exit codes reported as 0 (tini's `-e`).
    success_codes: Vec<u8>,
    /// Single-child mode: the exit code is the child's.
    exit_code: u8,
    /// The id the next daemon a reload adds gets.
    next_id: u32,
    shutdown: Shutdown,
    waiting: WaitingClients,
    reloads: reload::Reloads,
    /// A process that was no daemon's was reaped in this reaping pass: an ending daemon's
    /// leftovers may be gone.
    orphans_reaped: bool,
    /// At shutdown, whether a daemon waits for what starts after it to exit first.
    stop_order: StopOrder,
    /// How the runtime writes lines: set at start; a reload does not change it.
    log_style: LogStyle,
    /// Where the HTTP endpoint was asked to listen at start: it listens there (or nowhere)
    /// until bundle-init restarts, whatever a reload says.
    http: Option<String>,
}

impl Supervisor {
    pub(crate) fn new(plan: Plan) -> Supervisor {
        let mut sup = Supervisor {
            daemons: Vec::with_capacity(plan.daemons.len()),
            positions: IdMap::default(),
            routes: Routes::forward_everything().map(|_| None),
            success_codes: plan.success_codes,
            exit_code: 0,
            next_id: 0,
            shutdown: Shutdown::new(plan.shutdown_grace, plan.stop_leftovers),
            waiting: WaitingClients::default(),
            reloads: reload::Reloads::default(),
            orphans_reaped: false,
            stop_order: plan.stop_order,
            log_style: plan.log_style,
            http: plan.http.as_ref().map(ToString::to_string),
        };
        let ids: Vec<DaemonId> = plan
            .daemons
            .into_iter()
            .map(|spec| {
                let id = sup.new_id();
                sup.daemons.push(Daemon::new(id, spec));
                id
            })
            .collect();
        sup.routes = plan.routes.map(|&position| ids.get(position).copied());
        sup.reindex();
        sup.resolve_every_after();
        sup
    }

    /// The one entry point: what `event` changes, and what must be done about it.
    pub(crate) fn handle(&mut self, event: Event, now: Time, fx: &mut Effects) {
        if self.shutdown.is_done() {
            return after_exit(event, fx);
        }
        match event {
            Event::Start => self.start(now, fx),
            Event::Signal(sig) => self.on_signal(sig, now, fx),
            Event::Spawned { id, result } => {
                self.deliver(id, DaemonEvent::Spawned(result), now, fx);
                self.settle(now, fx);
            }
            Event::Exited {
                pid,
                status,
                leftovers,
            } => self.on_exit(pid, status, leftovers, now, fx),
            Event::Leftovers { id, pids } => {
                self.deliver(id, DaemonEvent::Leftovers(pids), now, fx);
                self.settle(now, fx);
            }
            Event::ReapingDone { children_remain } => {
                self.look_for_leftovers_again(fx);
                let live = self.daemons_live();
                let progress = self.shutdown.after_reaping(children_remain, live, now, fx);
                self.go_on(progress, fx);
            }
            Event::Ready(id) => {
                self.deliver(id, DaemonEvent::Ready, now, fx);
            }
            Event::LiveChecked { id, pid, result } => {
                self.deliver(id, DaemonEvent::LiveChecked { pid, result }, now, fx);
            }
            Event::Notified { id, from, message } => {
                self.deliver(id, DaemonEvent::Notified { from, message }, now, fx);
            }
            Event::Control { client, request } => self.on_control(client, request, now, fx),
            Event::BundleRead { request, plan } => self.on_bundle_read(request, plan, now, fx),
            Event::Tick => self.on_tick(now, fx),
            Event::SignalFailed { target, sig, error } => fx.log(Level::Debug, || {
                format!("sending {sig} to {target} failed: {error}")
            }),
            Event::DriverFailed { what, error } => {
                fx.log(Level::Error, || format!("{what} failed: {error}"));
            }
            event @ (Event::LogLinesDropped(_) | Event::OutputShed { .. }) => after_exit(event, fx),
        }
    }

    /// The bundle's daemons as they are now, in file order: not the ones a reload removed.
    pub(crate) fn daemons(&self) -> impl Iterator<Item = &Daemon> {
        self.daemons.iter().filter(|d| !d.is_removed())
    }

    /// The definition daemon `id` starts with, while it exists.
    pub(crate) fn spec(&self, id: DaemonId) -> Option<&DaemonSpec> {
        self.find(id).map(|d| &d.spec)
    }

    /// The daemon whose live process is `pid`.
    pub(crate) fn daemon_of(&self, pid: i32) -> Option<DaemonId> {
        self.daemons
            .iter()
            .find(|d| d.pid() == Some(pid))
            .map(|d| d.id)
    }

    /// The live process of daemon `id`, if it has one.
    pub(crate) fn daemon_pid(&self, id: DaemonId) -> Option<i32> {
        self.find(id).and_then(Daemon::pid)
    }

    /// How the runtime writes lines (`log-format`, `log-time`), as bundle-init started.
    pub(crate) fn log_style(&self) -> LogStyle {
        self.log_style
    }

    /// How many bytes of daemon `id`'s last lines to keep (0 for one no longer defined).
    pub(crate) fn log_buffer(&self, id: DaemonId) -> usize {
        self.spec(id).map_or(0, |spec| spec.log_buffer)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutdown.under_way()
    }

    /// When the shutdown budget ends, once a shutdown began: what is left of it after the
    /// exit is the final flush's.
    pub(crate) fn shutdown_budget_ends(&self) -> Option<Time> {
        self.shutdown.budget_ends()
    }

    /// The earliest time `Event::Tick` has something to do, or None: then nothing but an
    /// event can change anything, and the loop may sleep for ever.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        let daemons = self.daemons.iter().filter_map(Daemon::deadline);
        let shutdown = self.shutdown.next_deadline(self.daemons_live());
        daemons
            .chain(shutdown)
            .chain(self.waiting.next_deadline())
            .min()
    }

    /// Ok when every daemon runs (and is ready, if it has a check); otherwise what is
    /// wrong, daemon by daemon.
    pub(crate) fn health(&self) -> Result<(), Vec<String>> {
        views::health(self.daemons())
    }

    /// The text table `status` prints, a line per daemon and one about the bundle file.
    pub(crate) fn status_lines(&self, now: Time) -> Vec<String> {
        views::status_lines(self.daemons(), &self.reloads.generation, now)
    }

    /// The `status --json` document (and `GET /status`'s).
    pub(crate) fn status_document(&self, now: Time) -> String {
        views::status_document(self.daemons(), &self.reloads.generation, now)
    }

    /// Ok when every daemon that has a readiness check is ready; otherwise who is not.
    pub(crate) fn readiness(&self) -> Result<(), Vec<String>> {
        views::readiness(self.daemons())
    }

    /// The metrics in Prometheus's text format; `outputs` are the runtime's counts.
    pub(crate) fn metrics(&self, outputs: OutputCounts, now: Time) -> String {
        let daemons: Vec<&Daemon> = self.daemons().collect();
        views::metrics(&daemons, &self.reloads.generation, outputs, now)
    }

    fn new_id(&mut self) -> DaemonId {
        let id = DaemonId(self.next_id);
        self.next_id += 1;
        id
    }

    fn find(&self, id: DaemonId) -> Option<&Daemon> {
        self.position(id).map(|at| &self.daemons[at])
    }

    /// A daemon of the bundle as it is now (not one a reload removed).
    fn current(&self, id: DaemonId) -> Option<&Daemon> {
        self.find(id).filter(|d| !d.is_removed())
    }

    /// Where daemon `id` is in `daemons`: a lookup, so what runs once per daemon (a start
    /// after its dependencies, a tick) stays linear in the bundle's size.
    fn position(&self, id: DaemonId) -> Option<usize> {
        self.positions.get(id).copied()
    }

    /// `daemons` changed shape (a start, a reload, a daemon forgotten).
    fn reindex(&mut self) {
        self.positions = IdMap::default();
        for (at, daemon) in self.daemons.iter().enumerate() {
            self.positions.insert(daemon.id, at);
        }
    }

    fn ids(&self) -> Vec<DaemonId> {
        self.daemons.iter().map(|d| d.id).collect()
    }

    fn daemons_live(&self) -> bool {
        self.daemons.iter().any(Daemon::is_live)
    }

    /// Passes `event` to daemon `id` and reacts to what it means for the bundle.
    fn deliver(
        &mut self,
        id: DaemonId,
        event: DaemonEvent,
        now: Time,
        fx: &mut Effects,
    ) -> Option<RestartOutcome> {
        let at = self.position(id)?;
        let outcome = self.daemons[at].on(event, now, fx);
        self.react(id, outcome, now, fx)
    }

    /// What a daemon's transition means for the bundle.
    fn react(
        &mut self,
        id: DaemonId,
        outcome: Outcome,
        now: Time,
        fx: &mut Effects,
    ) -> Option<RestartOutcome> {
        match outcome {
            Outcome::Nothing => {}
            Outcome::BecameReady => self.start_waiters(Some(id), now, fx),
            Outcome::EndedStayingDown(status) => {
                self.exit_code = self.exit_code.max(status.code());
                self.tell_waiters_it_is_gone(id, now, fx);
                self.end_if_every_daemon_is_down(now, fx);
            }
            Outcome::GaveUp => {
                // A failed start, for the exit code.
                self.exit_code = self.exit_code.max(1);
                self.tell_waiters_it_is_gone(id, now, fx);
                self.end_if_every_daemon_is_down(now, fx);
            }
            Outcome::EndedStoppingBundle(status) => {
                self.exit_code = self.exit_code.max(status.code());
                self.begin_shutdown(now, fx);
            }
            Outcome::Stopped(code) => self.exit_code = self.exit_code.max(code),
            Outcome::TaskDone => {
                self.start_waiters(Some(id), now, fx);
                self.end_if_every_daemon_is_down(now, fx);
            }
            Outcome::TaskFailed(code) => {
                self.exit_code = self.exit_code.max(code);
                self.end_if_every_daemon_is_down(now, fx);
            }
            Outcome::Forgotten => self.forget(id, now, fx),
            Outcome::StartDue(restart) => {
                self.resolve_after(id);
                self.try_start(id, restart, now, fx);
            }
            Outcome::Restart(outcome) => return Some(outcome),
        }
        None
    }

    /// Starts every daemon, in order.
    fn start(&mut self, now: Time, fx: &mut Effects) {
        self.reloads.generation.loaded_at = now;
        if self.daemons.is_empty() {
            fx.log(Level::Notice, || {
                "no daemon selected; nothing to do".to_string()
            });
            self.finish(fx);
            return;
        }
        for id in self.ids() {
            self.try_start(id, None, now, fx);
        }
    }

    /// Starts daemon `id` once what it starts after is ready; until then it waits.
    fn try_start(
        &mut self,
        id: DaemonId,
        restart: Option<RestartRequest>,
        now: Time,
        fx: &mut Effects,
    ) {
        if self.is_shutting_down() {
            return;
        }
        let waiting_for = self.not_ready_yet(id);
        let gone = self.gone_for_good(id);
        let start = DaemonEvent::Start {
            waiting_for,
            gone,
            restart,
        };
        self.deliver(id, start, now, fx);
    }

    /// Why daemon `id` would wait in vain: one of what it starts after ended for good.
    fn gone_for_good(&self, id: DaemonId) -> Option<String> {
        let daemon = self.find(id)?;
        daemon
            .after
            .iter()
            .filter_map(|&dep| self.current(dep))
            .find(|dep| dep.is_gone_for_good())
            .map(why_gone)
    }

    /// Daemon `id` ended for good: whatever waits for it gives up now rather than at its
    /// ready-timeout.
    fn tell_waiters_it_is_gone(&mut self, id: DaemonId, now: Time, fx: &mut Effects) {
        let Some(why) = self.find(id).map(why_gone) else {
            return;
        };
        let waiters: Vec<DaemonId> = self
            .daemons
            .iter()
            .filter(|d| matches!(d.state(), daemon::State::WaitingForDependencies { .. }))
            .filter(|d| d.after.contains(&id))
            .map(|d| d.id)
            .collect();
        for waiter in waiters {
            self.deliver(waiter, DaemonEvent::DependencyGone(why.clone()), now, fx);
        }
    }

    /// The names of what daemon `id` starts after that is not ready.
    fn not_ready_yet(&self, id: DaemonId) -> Vec<String> {
        let Some(daemon) = self.find(id) else {
            return Vec::new();
        };
        daemon
            .after
            .iter()
            .filter_map(|&dep| self.current(dep))
            .filter(|dep| !dep.is_ready())
            .map(|dep| dep.spec.name.clone())
            .collect()
    }

    /// Whether everything daemon `id` starts after is ready (what is gone is not waited for).
    fn dependencies_ready(&self, id: DaemonId) -> bool {
        self.find(id).is_none_or(|daemon| {
            daemon
                .after
                .iter()
                .all(|&dep| self.current(dep).is_none_or(Daemon::is_ready))
        })
    }

    /// Daemons waiting for what just became ready may start now.
    /// With `ready`, only those that wait for it are looked at: a long `after` chain comes
    /// up in linear time.
    fn start_waiters(&mut self, ready: Option<DaemonId>, now: Time, fx: &mut Effects) {
        let waiting: Vec<DaemonId> = self
            .daemons
            .iter()
            .filter(|d| matches!(d.state(), daemon::State::WaitingForDependencies { .. }))
            .filter(|d| ready.is_none_or(|ready| d.after.contains(&ready)))
            .map(|d| d.id)
            .collect();
        for id in waiting {
            if self.dependencies_ready(id) {
                self.try_start(id, None, now, fx);
            }
        }
    }

    /// Resolves every daemon's `after` names among the bundle's daemons.
    fn resolve_every_after(&mut self) {
        for id in self.ids() {
            self.resolve_after(id);
        }
    }

    /// Daemon `id`'s `after` names, as ids of daemons of the bundle now. Names that are not
    /// there (not selected, removed) are simply not waited for.
    fn resolve_after(&mut self, id: DaemonId) {
        let Some(at) = self.position(id) else { return };
        let after: Vec<DaemonId> = self.daemons[at]
            .spec
            .after
            .iter()
            .filter_map(|name| self.daemons().find(|d| d.spec.name == *name).map(|d| d.id))
            .collect();
        self.daemons[at].after = after;
    }

    fn on_exit(
        &mut self,
        pid: i32,
        status: ExitStatus,
        leftovers: Vec<i32>,
        now: Time,
        fx: &mut Effects,
    ) {
        self.shutdown.note_reaped();
        let Some(id) = self.daemon_of(pid) else {
            self.orphans_reaped = true;
            // tini's words, which scripts grep for; the status is ours.
            fx.orphan(|| format!("Reaped zombie process with pid={pid} ({status})"));
            return;
        };
        let deferred = self
            .find(id)
            .is_some_and(|d| matches!(d.state(), daemon::State::Running { .. }));
        if deferred && self.is_shutting_down() {
            // Its stop was held back for what starts after it, and it ended first: it ends
            // as a daemon the shutdown stopped (no policy applies any more). The stop signal
            // this queues for its pid is taken back just below.
            self.stop_for_shutdown(id, now, fx);
        }
        fx.withdraw_signals_to(pid);
        let exited = DaemonEvent::Exited {
            pid,
            status,
            leftovers,
        };
        self.deliver(id, exited, now, fx);
        self.settle(now, fx);
    }

    /// Orphans were reaped: what an ending daemon left may be gone (the last of them is
    /// always reaped here, since bundle-init adopts whatever they leave). One look per
    /// daemon and reaping pass, however many were reaped.
    fn look_for_leftovers_again(&mut self, fx: &mut Effects) {
        if !std::mem::take(&mut self.orphans_reaped) {
            return;
        }
        for daemon in self.daemons.iter().filter(|d| d.is_ending()) {
            fx.push(Action::FindLeftovers {
                id: daemon.id,
                signal: daemon.leftovers_signal(),
            });
        }
    }

    /// After anything that may finish a restart: answer the clients waiting for one, and
    /// run a reload that waited for it.
    pub(super) fn settle(&mut self, now: Time, fx: &mut Effects) {
        self.stop_what_dependents_freed(now, fx);
        let shutting_down = self.is_shutting_down();
        let daemons = &self.daemons;
        let current = |id| {
            daemons
                .iter()
                .find(|d: &&Daemon| d.id == id && !d.is_removed())
        };
        self.waiting.settle(now, shutting_down, current, fx);
        self.resume_waiting_reload(fx);
    }

    fn on_signal(&mut self, sig: Sig, now: Time, fx: &mut Effects) {
        match self.routes.route(sig).unwrap_or(&Route::Ignore) {
            Route::Shutdown if self.is_shutting_down() => fx.log(Level::Notice, || {
                format!("received {sig} again: already shutting down, ignored")
            }),
            Route::Shutdown => {
                fx.log(Level::Notice, || format!("received {sig}: shutting down"));
                self.begin_shutdown(now, fx);
            }
            Route::Status => {
                for line in self.status_lines(now) {
                    fx.log(Level::Notice, || line);
                }
            }
            Route::Ignore => fx.log(Level::Info, || format!("received {sig}: ignored by route")),
            // Forwarding is the hot path (every signal, in single-child mode): no allocation.
            Route::ForwardAll => forward(sig, self.daemons(), fx),
            Route::Forward(targets) => {
                forward(sig, targets.iter().filter_map(|&id| self.current(id)), fx);
            }
            Route::ForwardAs(targets, to) => {
                fx.log(Level::Info, || format!("received {sig}: forwarded as {to}"));
                forward(*to, targets.iter().filter_map(|&id| self.current(id)), fx);
            }
            Route::Restart(targets) => {
                for id in targets.clone() {
                    self.request_restart(id, Cause::Signal(sig), now, fx);
                }
            }
            Route::Reload => {
                let request = ReloadRequest {
                    asked_at: now,
                    by: Cause::Signal(sig),
                    clients: Vec::new(),
                    dry_run: false,
                };
                self.request_reload(request, fx);
            }
        }
    }

    /// Restart one daemon in place; the same rules whoever asks.
    fn request_restart(
        &mut self,
        id: DaemonId,
        by: Cause,
        now: Time,
        fx: &mut Effects,
    ) -> RestartOutcome {
        let Some(daemon) = self.current(id) else {
            return RestartOutcome::Refused("no such daemon");
        };
        if self.is_shutting_down() {
            daemon.refuse_restart(by, "shutting down", fx);
            return RestartOutcome::Refused("shutting down");
        }
        let request = RestartRequest::new(now, by);
        self.deliver(id, DaemonEvent::Restart(request), now, fx)
            .unwrap_or(RestartOutcome::Refused("no such daemon"))
    }

    /// A `stop` request: the daemon stops (stop signal, grace, SIGKILL) and stays down.
    fn request_stop(&mut self, id: DaemonId, now: Time, fx: &mut Effects) -> RestartOutcome {
        let Some(daemon) = self.current(id) else {
            return RestartOutcome::Refused("no such daemon");
        };
        if self.is_shutting_down() {
            return RestartOutcome::Refused("shutting down");
        }
        let name = daemon.spec.name.clone();
        fx.log(Level::Notice, || format!("stopping {name} (control)"));
        let stop = DaemonEvent::Stop {
            then: AfterStop::Hold,
            deadline: Time::MAX,
        };
        self.deliver(id, stop, now, fx);
        RestartOutcome::Begun
    }

    /// A `start` request: the daemon starts (after what it waits for), whatever stopped it.
    fn request_start(&mut self, id: DaemonId, now: Time, fx: &mut Effects) -> RestartOutcome {
        if self.current(id).is_none() {
            return RestartOutcome::Refused("no such daemon");
        }
        if self.is_shutting_down() {
            return RestartOutcome::Refused("shutting down");
        }
        // Its definition may have changed while it was down (a stop kept what a reload's
        // dropped restart carried): it waits for what that one names.
        self.resolve_after(id);
        let start = DaemonEvent::StartOnRequest {
            waiting_for: self.not_ready_yet(id),
            gone: self.gone_for_good(id),
            request: RestartRequest::new(now, Cause::Control),
        };
        self.deliver(id, start, now, fx)
            .unwrap_or(RestartOutcome::Refused("no such daemon"))
    }

    /// Acts on every deadline that has come: SIGKILL after a grace, the end of a backoff or
    /// of a wait for dependencies, the end of the shutdown budget, a control reply's
    /// deadline.
    fn on_tick(&mut self, now: Time, fx: &mut Effects) {
        // Every pass of the loop ends with a tick: only the daemons whose deadline came are
        // looked at (no allocation when none did).
        let due: Vec<DaemonId> = self
            .daemons
            .iter()
            .filter(|d| d.deadline().is_some_and(|at| now >= at))
            .map(|d| d.id)
            .collect();
        for id in due {
            self.deliver(id, DaemonEvent::Tick, now, fx);
        }
        if self.shutdown.budget_is_over(now) {
            // Whatever still waited for its dependents to exit is stopped now, then killed
            // with everything else.
            for id in self.ids() {
                if self
                    .find(id)
                    .is_some_and(|d| matches!(d.state(), daemon::State::Running { .. }))
                {
                    self.stop_for_shutdown(id, now, fx);
                }
                self.deliver(id, DaemonEvent::KillNow, now, fx);
            }
            let progress = self.shutdown.end_budget(self.daemons_live(), fx);
            self.go_on(progress, fx);
        }
        let progress = self.shutdown.sweep_again(self.daemons_live(), now, fx);
        self.go_on(progress, fx);
        self.settle(now, fx);
    }

    /// keep-running: when no daemon of the bundle is left running, and none a reload
    /// removed is still stopping, the bundle ends.
    fn end_if_every_daemon_is_down(&mut self, now: Time, fx: &mut Effects) {
        let removed_alive = self.daemons.iter().any(Daemon::is_removed);
        let all_down = self.daemons().all(Daemon::is_down);
        if !self.is_shutting_down() && !removed_alive && all_down {
            fx.log(Level::Notice, || "every daemon has exited".to_string());
            self.begin_shutdown(now, fx);
        }
    }

    fn begin_shutdown(&mut self, now: Time, fx: &mut Effects) {
        if self.shutdown.begin(now).is_none() {
            return;
        }
        self.refuse_waiting_reload(fx);
        // A daemon that waits for its turn to stop still runs: no liveness check or missed
        // ping may restart it now.
        for daemon in &mut self.daemons {
            daemon.stop_checking_liveness(fx);
        }
        for id in self.ids() {
            if self.must_wait_for_dependents(id) {
                if let Some(daemon) = self.find(id) {
                    let name = &daemon.spec.name;
                    fx.log(Level::Info, || {
                        format!("{name} stops once what starts after it has exited")
                    });
                }
                continue;
            }
            self.stop_for_shutdown(id, now, fx);
        }
        let progress = self.shutdown.check_done(self.daemons_live(), fx);
        self.go_on(progress, fx);
    }

    /// Daemon `id` gets its stop signal now, with the SIGKILL no later than its share of
    /// the budget allows.
    fn stop_for_shutdown(&mut self, id: DaemonId, now: Time, fx: &mut Effects) {
        let deadline = self.stop_deadlines(now).get(id).copied().unwrap_or(now);
        let stop = DaemonEvent::Stop {
            then: AfterStop::StayDown,
            deadline,
        };
        self.deliver(id, stop, now, fx);
        if deadline <= now {
            // Its share of the budget is spent already (what it waited for took it): the
            // SIGKILL goes with the stop signal, not one pass of the loop later.
            self.deliver(id, DaemonEvent::KillNow, now, fx);
        }
    }

    /// Ordered stop: a daemon whose process runs waits while anything that starts after
    /// it (directly; through it, what starts after that) is alive. What is not running
    /// is stopped at once: a queued start is taken back, a backoff ends.
    fn must_wait_for_dependents(&self, id: DaemonId) -> bool {
        if self.stop_order == StopOrder::Together {
            return false;
        }
        let running = self
            .find(id)
            .is_some_and(|d| matches!(d.state(), daemon::State::Running { .. }));
        running && self.has_live_dependent(id)
    }

    /// Whether anything that starts after daemon `id` is alive: a direct dependent, or
    /// what starts after a dependent that is not alive (a oneshot that is done, a daemon
    /// that is down). In db, then migrate (a oneshot), then app, db waits for app. A
    /// live dependent ends the search: it waits for its own dependents itself.
    fn has_live_dependent(&self, id: DaemonId) -> bool {
        let mut seen: IdMap<()> = IdMap::default();
        let mut todo = vec![id];
        while let Some(at) = todo.pop() {
            for dependent in self.daemons.iter().filter(|d| d.after.contains(&at)) {
                if dependent.is_live() {
                    return true;
                }
                if seen.get(dependent.id).is_none() {
                    seen.insert(dependent.id, ());
                    todo.push(dependent.id);
                }
            }
        }
        false
    }

    /// During an ordered shutdown: the daemons nothing alive waits for any more get their
    /// stop signal.
    fn stop_what_dependents_freed(&mut self, now: Time, fx: &mut Effects) {
        if self.stop_order == StopOrder::Together || !self.is_shutting_down() {
            return;
        }
        let freed: Vec<DaemonId> = self
            .daemons
            .iter()
            .filter(|d| matches!(d.state(), daemon::State::Running { .. }))
            .map(|d| d.id)
            .filter(|&id| !self.must_wait_for_dependents(id))
            .collect();
        for id in freed {
            self.stop_for_shutdown(id, now, fx);
        }
    }

    /// When each daemon must be dead, at the latest, for the daemons it starts after to get
    /// the time they need within the budget: the budget's end less the graces along the
    /// longest chain below it. When the graces along the bundle's longest chain add up to
    /// more than the budget, each share shrinks in proportion. Never before `now`.
    fn stop_deadlines(&self, now: Time) -> IdMap<Time> {
        let end = self.shutdown.budget_ends().unwrap_or(now);
        let reserves = self.reserves();
        let longest = self
            .daemons
            .iter()
            .filter_map(|d| Some(d.spec.grace + *reserves.get(d.id)?))
            .max()
            .unwrap_or_default();
        let budget = self.shutdown.grace;
        let scale = if longest > budget {
            budget.as_secs_f64() / longest.as_secs_f64()
        } else {
            1.0
        };
        let mut deadlines = IdMap::default();
        for (id, reserve) in reserves.iter() {
            let share = match self.stop_order {
                StopOrder::Together => Time::ZERO,
                StopOrder::Dependencies => reserve.mul_f64(scale),
            };
            deadlines.insert(id, end.saturating_sub(share).max(now));
        }
        deadlines
    }

    /// Per daemon, the graces of the longest chain of daemons it starts after (they stop
    /// after it). One pass in file order: `after` only names daemons above.
    fn reserves(&self) -> IdMap<std::time::Duration> {
        let mut reserves: IdMap<std::time::Duration> = IdMap::default();
        for daemon in &self.daemons {
            let below = daemon
                .after
                .iter()
                .filter_map(|&dep| {
                    // Only what still runs needs time to stop: a oneshot that is done, a
                    // daemon that is down, need none.
                    let dep_daemon = self.find(dep)?;
                    let grace = if dep_daemon.is_live() {
                        dep_daemon.spec.grace
                    } else {
                        std::time::Duration::ZERO
                    };
                    Some(grace + reserves.get(dep).copied().unwrap_or_default())
                })
                .max()
                .unwrap_or_default();
            reserves.insert(daemon.id, below);
        }
        reserves
    }

    fn go_on(&mut self, progress: Progress, fx: &mut Effects) {
        if progress == Progress::Finished {
            self.finish(fx);
        }
    }

    fn finish(&mut self, fx: &mut Effects) {
        if self.shutdown.is_done() {
            return;
        }
        self.shutdown.finish();
        // Whoever still waits for a restart hears that it will not come.
        self.settle(Time::MAX, fx);
        let code = if self.success_codes.contains(&self.exit_code) {
            0
        } else {
            self.exit_code
        };
        fx.push(Action::Exit(code));
    }

    /// A removed daemon is gone: its id is retired, and what a reload held back for it may
    /// start.
    fn forget(&mut self, id: DaemonId, now: Time, fx: &mut Effects) {
        self.daemons.retain(|d| d.id != id);
        self.reindex();
        fx.push(Action::Forget(id));
        self.start_held(now, fx);
        self.end_if_every_daemon_is_down(now, fx);
    }
}

/// Why what waits for `dep` waits in vain, in the log's words.
fn why_gone(dep: &Daemon) -> String {
    let name = &dep.spec.name;
    match dep.last_exit {
        Some(status) if matches!(dep.state(), daemon::State::Down) => {
            format!("for {name}: it {status} and stays down")
        }
        _ => format!("for {name}: it was not started"),
    }
}

/// Exit went out: whatever the same pass of the loop still brings changes nothing. A
/// client that asked in it is told so; the exit's own count of dropped lines is said.
fn after_exit(event: Event, fx: &mut Effects) {
    match event {
        Event::Control { client, .. } => fx.push(Action::Reply {
            client,
            reply: Reply::refused("bundle-init is exiting"),
        }),
        Event::BundleRead { request, .. } => {
            for client in request.clients {
                let reply = Reply::refused("bundle-init is exiting");
                fx.push(Action::Reply { client, reply });
            }
        }
        Event::LogLinesDropped(count) if count > 0 => fx.log(Level::Notice, || {
            format!("{count} of bundle-init's own log lines were dropped")
        }),
        Event::OutputShed { lines, at_exit } => on_output_shed(lines, at_exit, fx),
        _ => {}
    }
}

fn forward<'a>(sig: Sig, targets: impl Iterator<Item = &'a Daemon>, fx: &mut Effects) {
    for daemon in targets {
        if let Some(pid) = daemon.pid() {
            fx.push(Action::Signal {
                pid,
                sig,
                group: daemon.spec.signal_group,
            });
            fx.log(Level::Info, || {
                format!("forwarded {sig} to {} (pid {pid})", daemon.spec.name)
            });
        }
    }
}

/// Daemons' output lines were dropped because the log reader was stuck at shutdown.
fn on_output_shed(lines: u64, at_exit: bool, fx: &mut Effects) {
    if lines == 0 {
        return;
    }
    let when = if at_exit {
        "the log reader never caught up"
    } else {
        "the log reader was stuck"
    };
    fx.log(Level::Notice, || {
        format!("{lines} lines of daemon output were dropped at shutdown: {when}")
    });
}
