//! The model-based test: random sequences of events driven through `Supervisor::handle`,
//! with a small model of the runtime carrying out the actions (spawns get pids, stop
//! signals lead to exits, probes answer, control clients wait for their replies, reloads
//! read an edited bundle file, the clock advances), and the supervisor's promises checked
//! after every step. A failing sequence is shrunk to the fewest steps that still break the
//! same promise and printed as Rust, to paste into a regression test (`replay`).
//!
//! `cargo test` runs a few thousand sequences; `just model SECONDS` runs for that long
//! (BUNDLE_INIT_MODEL_SECONDS), from a seed that changes each run unless
//! BUNDLE_INIT_MODEL_SEED is set.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use super::*;
use crate::plan::ReadyCheck;
use crate::supervisor::shutdown::SWEEP_TAIL;

/// One thing that happens, naming daemons by their position (a slot, taken modulo the
/// daemons there are), so that a step still means something when a shrink removes the
/// steps before it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// A signal arrives: one of `SIGNALS` (shutdown, reload, restart and forward routes).
    Signal(usize),
    /// The live process of the daemon in `slot` exits by itself; with `orphan`, it leaves
    /// a child behind, which bundle-init adopts.
    Crash {
        slot: usize,
        code: u8,
        orphan: bool,
    },
    /// Every process that was signalled to death exits now, and is reaped.
    DeliverExits,
    /// The readiness check of the daemon in `slot` (among those being probed) passes.
    Ready(usize),
    /// Time passes by this many milliseconds, then the loop ticks.
    Advance(u64),
    /// Time jumps to the supervisor's next deadline, then the loop ticks.
    ToDeadline,
    Control(Request),
    /// The bundle file is edited (not reloaded yet).
    Edit(Edit),
    /// The next spawn fails: fork failed (`transient`) or the program cannot run.
    FailNextSpawn {
        transient: bool,
    },
    /// Several of the steps above in one pass of the loop: their events all reach the
    /// supervisor before any action is carried out (signals read together, children
    /// reaped together, a control request beside them).
    Batch(Vec<Step>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Request {
    Status,
    Health,
    Restart(Vec<usize>),
    RestartUnknown,
    SignalTo(usize),
    Reload { dry_run: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Edit {
    Add,
    Remove(usize),
    Rename(usize),
    Reorder,
    /// A key that defines the process (`run`): the daemon is restarted by a reload.
    ChangeRun(usize),
    /// A bookkeeping key (`grace`): applies at once, no restart.
    ChangeGrace(usize),
    /// `after` names the daemon before it, or nothing.
    ChangeAfter(usize),
    /// `on-exit`: keep-running, then restart, then stop-bundle, then keep-running again.
    ChangePolicy(usize),
    Break,
    Mend,
}

const SIGNALS: [i32; 6] = [
    libc_sig::TERM,
    libc_sig::HUP,
    libc_sig::USR1,
    libc_sig::USR2,
    libc_sig::WINCH,
    libc::SIGALRM,
];

/// A promise the supervisor broke, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Violation {
    pub(super) promise: &'static str,
    pub(super) detail: String,
}

type Checked = Result<(), Violation>;

fn broke(promise: &'static str, detail: String) -> Checked {
    Err(Violation { promise, detail })
}

/// A process the model runs for a daemon.
struct Process {
    daemon: DaemonId,
    stop_signal: Sig,
    /// It ignores its stop signal: only SIGKILL ends it (every fifth pid).
    stubborn: bool,
    /// How it will end, once signalled to death.
    dying: Option<ExitStatus>,
}

/// The runtime, as far as the supervisor can tell: processes, orphans, probes, clients,
/// the bundle file, the clock.
struct World {
    sup: Supervisor,
    fx: Effects,
    now: Time,
    file: Plan,
    file_broken: bool,
    next_pid: i32,
    processes: BTreeMap<i32, Process>,
    reaped: BTreeSet<i32>,
    /// Adopted orphans, and whether they were signalled to death.
    orphans: BTreeMap<i32, bool>,
    probes: BTreeMap<DaemonId, i32>,
    next_client: ClientId,
    waiting: BTreeSet<ClientId>,
    fail_next_spawn: Option<bool>,
    exited: Option<Time>,
    shutdown_began: Option<(Time, Duration)>,
    /// Restarts asked for and accepted, not yet honoured by a spawn.
    owed: BTreeSet<DaemonId>,
    /// Daemons the last reload added, while daemons it removed are alive.
    held_back: BTreeSet<DaemonId>,
    names_made: u32,
    /// A reload was asked for since the file was last edited: the file as it is must be
    /// what runs once things settle.
    reload_since_edit: bool,
}

fn first_plan() -> Plan {
    let mut db = daemon("db", ExitPolicy::Restart);
    db.ready = Some(ReadyCheck::File("/run/db.ready".into()));
    let mut app = daemon("app", ExitPolicy::KeepRunning);
    app.after = vec!["db".into()];
    app.ready_timeout = secs(3.0);
    let mut worker = daemon("worker", ExitPolicy::Restart);
    worker.grace = secs(1.0);
    worker.signal_group = true;
    let mut cache = daemon("cache", ExitPolicy::KeepRunning);
    cache.ready = Some(ReadyCheck::File("/run/cache.ready".into()));
    let mut plan = Plan {
        daemons: vec![db, app, worker, cache],
        routes: Routes::bundle_defaults(),
        shutdown_grace: secs(5.0),
        stop_leftovers: true,
        success_codes: vec![],
        single_child: false,
    };
    set_routes(&mut plan);
    plan
}

/// HUP reloads, USR1 restarts the first daemon, USR2 the last, ALRM goes to the second.
fn set_routes(plan: &mut Plan) {
    let n = plan.daemons.len();
    plan.routes = Routes::bundle_defaults();
    plan.routes.set(HUP, Route::Reload);
    if n > 0 {
        plan.routes.set(USR1, Route::Restart(vec![0]));
        plan.routes
            .set(Sig(libc_sig::USR2), Route::Restart(vec![n - 1]));
        plan.routes
            .set(Sig(libc::SIGALRM), Route::Forward(vec![1.min(n - 1)]));
    }
}

impl World {
    fn new() -> World {
        let file = first_plan();
        World {
            sup: Supervisor::new(file.clone()),
            fx: Effects::new(3, false, false),
            now: secs(1.0),
            file,
            file_broken: false,
            next_pid: 100,
            processes: BTreeMap::new(),
            reaped: BTreeSet::new(),
            orphans: BTreeMap::new(),
            probes: BTreeMap::new(),
            next_client: 1,
            waiting: BTreeSet::new(),
            fail_next_spawn: None,
            exited: None,
            shutdown_began: None,
            owed: BTreeSet::new(),
            held_back: BTreeSet::new(),
            names_made: 0,
            reload_since_edit: false,
        }
    }

    /// Hands `event` to the supervisor; its actions wait for `carry_out`.
    fn handle(&mut self, event: Event) -> Checked {
        let tick = matches!(event, Event::Tick);
        self.sup.handle(event, self.now, &mut self.fx);
        if tick
            && let Some(deadline) = self.sup.next_deadline()
            && deadline <= self.now
        {
            return broke(
                "next_deadline() is later than now after a tick",
                format!("{deadline:?} at {:?}", self.now),
            );
        }
        self.note_shutdown();
        self.excuse_restarts_waiting_for_dependencies();
        Ok(())
    }

    /// A restart that leads to a wait for what the daemon starts after (its new definition
    /// has an `after`) is honoured by that wait: the start comes when they are ready; and
    /// one whose dependency ended for good cannot be (the daemon gives up instead).
    fn excuse_restarts_waiting_for_dependencies(&mut self) {
        let sup = &self.sup;
        let excused = |d: &Daemon| {
            matches!(
                d.state(),
                State::WaitingForDependencies { .. } | State::GaveUpWaiting
            ) || d
                .after
                .iter()
                .any(|dep| sup.daemons().any(|x| x.id == *dep && x.is_gone_for_good()))
        };
        self.owed
            .retain(|id| !sup.daemons().any(|d| d.id == *id && excused(d)));
    }

    fn note_shutdown(&mut self) {
        if self.shutdown_began.is_none() && self.sup.is_shutting_down() {
            self.shutdown_began = Some((self.now, self.sup.shutdown.grace));
            self.owed.clear();
        }
    }

    fn carry_out(&mut self) -> Checked {
        while let Some(action) = self.fx.pop() {
            // After the exit, only the answers to clients who asked in the same pass.
            if self.exited.is_some() && !matches!(action, Action::Reply { .. }) {
                return broke(
                    "one exit action and nothing after it",
                    format!("{action:?}"),
                );
            }
            self.carry_out_one(action)?;
        }
        Ok(())
    }

    fn carry_out_one(&mut self, action: Action) -> Checked {
        match action {
            Action::Spawn(id) => self.spawn(id),
            Action::Signal { pid, sig, group } => self.signal(pid, sig, group),
            Action::SignalLeftovers(sig) => {
                for dying in self.orphans.values_mut() {
                    *dying = true;
                }
                let _ = sig;
                let children_remain = !self.processes.is_empty() || !self.orphans.is_empty();
                self.handle(Event::ReapingDone { children_remain })
            }
            Action::StartProbe { id, pid } => {
                if self.live_pid_of(id) != Some(pid) {
                    return broke(
                        "a probe starts for the daemon's live process",
                        format!("{id} {pid}"),
                    );
                }
                self.probes.insert(id, pid);
                Ok(())
            }
            Action::StopProbe(id) => {
                self.probes.remove(&id);
                Ok(())
            }
            Action::Reply { client, .. } => {
                if !self.waiting.remove(&client) {
                    return broke(
                        "every control client is answered exactly once",
                        format!("client {client} answered again"),
                    );
                }
                Ok(())
            }
            Action::Log(..) => Ok(()),
            Action::ReadBundle(request) => self.read_bundle(request),
            Action::Forget(id) => {
                if self.sup.daemons().any(|d| d.id == id) {
                    return broke("only a removed daemon is forgotten", format!("{id}"));
                }
                self.probes.remove(&id);
                Ok(())
            }
            Action::Exit(_) => self.exit(),
        }
    }

    fn live_pid_of(&self, id: DaemonId) -> Option<i32> {
        self.processes
            .iter()
            .find(|(_, p)| p.daemon == id)
            .map(|(pid, _)| *pid)
    }

    fn spawn(&mut self, id: DaemonId) -> Checked {
        if self.sup.is_shutting_down() {
            return broke(
                "never a spawn after shutdown began",
                format!("{id} spawned during shutdown"),
            );
        }
        let Some(spec) = self
            .sup
            .daemons()
            .find(|d| d.id == id)
            .map(|d| d.spec.clone())
        else {
            return broke("never a spawn for a removed daemon", format!("{id}"));
        };
        if let Some(pid) = self.live_pid_of(id) {
            return broke(
                "at most one live process per daemon",
                format!("{} spawned while pid {pid} runs", spec.name),
            );
        }
        if self.held_back.contains(&id) && self.sup.daemons.iter().any(Daemon::is_removed) {
            return broke(
                "a daemon a reload added never runs beside one it removed",
                spec.name.clone(),
            );
        }
        self.owed.remove(&id);
        let result = match self.fail_next_spawn.take() {
            Some(transient) => Err(SpawnFailure {
                transient,
                code: 127,
                message: "model".into(),
            }),
            None => {
                self.next_pid += 1;
                let pid = self.next_pid;
                let process = Process {
                    daemon: id,
                    stop_signal: spec.stop_signal,
                    stubborn: pid % 5 == 0,
                    dying: None,
                };
                self.processes.insert(pid, process);
                Ok(pid)
            }
        };
        self.handle(Event::Spawned { id, result })
    }

    /// A signal to `pid`, or with `group` to its process group (which outlives a reaped
    /// leader while its members run).
    fn signal(&mut self, pid: i32, sig: Sig, group: bool) -> Checked {
        if self.reaped.contains(&pid) {
            if group {
                return Ok(());
            }
            return broke(
                "never a signal to a pid that was reaped",
                format!("{sig} to {pid}"),
            );
        }
        let Some(process) = self.processes.get_mut(&pid) else {
            return broke("signals go to live processes", format!("{sig} to {pid}"));
        };
        if sig == KILL {
            process.dying = Some(ExitStatus::Signal(libc_sig::KILL));
        } else if sig == process.stop_signal && !process.stubborn {
            process.dying = Some(ExitStatus::Signal(sig.0));
        }
        Ok(())
    }

    fn read_bundle(&mut self, request: ReloadRequest) -> Checked {
        let plan = if self.file_broken {
            Err(invalid_file("[a]\nrun = a\nx = 1\n"))
        } else {
            Ok(self.file.clone())
        };
        let before: Vec<(String, DaemonSpec, Option<i32>, bool)> = self
            .sup
            .daemons()
            .map(|d| {
                let running = matches!(d.state(), State::Running { .. });
                (d.spec.name.clone(), d.spec.clone(), d.pid(), running)
            })
            .collect();
        let generation = self.sup.reloads.generation.number;
        let removed_before: BTreeSet<DaemonId> = self.sup.daemons().map(|d| d.id).collect();
        let queued = self.fx.len();
        self.sup
            .handle(Event::BundleRead { request, plan }, self.now, &mut self.fx);
        if self.sup.reloads.generation.number != generation && !self.sup.is_shutting_down() {
            let added: BTreeSet<DaemonId> = self
                .sup
                .daemons()
                .map(|d| d.id)
                .filter(|id| !removed_before.contains(id))
                .collect();
            self.held_back = added;
            let new: Vec<Action> = self.fx.iter().skip(queued).cloned().collect();
            check_reload(&before, &self.file, &new)?;
        }
        self.note_shutdown();
        Ok(())
    }

    fn exit(&mut self) -> Checked {
        if self.exited.is_some() {
            return broke(
                "one exit action and nothing after it",
                "a second Exit".into(),
            );
        }
        self.exited = Some(self.now);
        Ok(())
    }

    /// Once the run is over: every client heard back, and the exit came in time.
    fn check_the_end(&self) -> Checked {
        if !self.waiting.is_empty() {
            return broke(
                "every control client is answered exactly once",
                format!("never answered: {:?}", self.waiting),
            );
        }
        if let (Some((began, grace)), Some(exit)) = (self.shutdown_began, self.exited)
            && exit > began + grace + SWEEP_TAIL
        {
            return broke(
                "shutdown ends within its budget plus the sweep's tail",
                format!("began {began:?}, budget {grace:?}, exit {exit:?}"),
            );
        }
        Ok(())
    }

    /// The `slot`-th of the current daemons, if there are any.
    fn daemon_in(&self, slot: usize) -> Option<&Daemon> {
        let n = self.sup.daemons().count();
        (n > 0).then(|| nth(&self.sup, slot % n))
    }

    fn step(&mut self, step: &Step) -> Checked {
        if self.exited.is_some() {
            return Ok(());
        }
        match step {
            Step::Signal(i) => self.send_signal(Sig(SIGNALS[i % SIGNALS.len()])),
            Step::Crash { slot, code, orphan } => self.crash(*slot, *code, *orphan),
            Step::DeliverExits => self.deliver_exits(),
            Step::Ready(slot) => {
                let probed: Vec<DaemonId> = self.probes.keys().copied().collect();
                match probed.get(slot % probed.len().max(1)) {
                    Some(&id) => {
                        self.probes.remove(&id);
                        self.handle(Event::Ready(id))
                    }
                    None => Ok(()),
                }
            }
            Step::Advance(ms) => self.advance_to(self.now + Duration::from_millis(*ms)),
            Step::ToDeadline => match self.sup.next_deadline() {
                Some(deadline) => self.advance_to(self.now.max(deadline)),
                None => Ok(()),
            },
            Step::Control(request) => self.control(request),
            Step::Edit(edit) => {
                self.edit(edit);
                Ok(())
            }
            Step::FailNextSpawn { transient } => {
                self.fail_next_spawn = Some(*transient);
                Ok(())
            }
            Step::Batch(steps) => {
                for step in steps {
                    self.step(step)?;
                }
                Ok(())
            }
        }
    }

    /// One pass of the loop: the step's events, then every action they led to.
    fn pass(&mut self, step: &Step) -> Checked {
        self.step(step)?;
        self.carry_out()
    }

    /// Time passes until `then`, the loop waking at each deadline on the way, as poll's
    /// timeout makes it. SIGKILL is not a request: what got it dies and is reaped first.
    fn advance_to(&mut self, then: Time) -> Checked {
        self.carry_out()?;
        loop {
            self.reap_the_killed()?;
            self.carry_out()?;
            if self.exited.is_some() {
                return Ok(());
            }
            match self.sup.next_deadline() {
                Some(deadline) if deadline < then => {
                    self.now = self.now.max(deadline);
                    self.handle(Event::Tick)?;
                    self.carry_out()?;
                }
                _ => break,
            }
        }
        self.now = then;
        self.handle(Event::Tick)
    }

    fn reap_the_killed(&mut self) -> Checked {
        let killed: Vec<(i32, ExitStatus)> = self
            .processes
            .iter()
            .filter(|(_, p)| p.dying == Some(ExitStatus::Signal(libc_sig::KILL)))
            .map(|(pid, _)| (*pid, ExitStatus::Signal(libc_sig::KILL)))
            .collect();
        if killed.is_empty() {
            return Ok(());
        }
        self.reap(killed)
    }

    fn send_signal(&mut self, sig: Sig) -> Checked {
        match self.sup.routes.route(sig).cloned() {
            Some(Route::Restart(targets)) => {
                for id in targets {
                    self.owe_restart(id);
                }
            }
            Some(Route::Reload) => self.reload_since_edit = true,
            _ => {}
        }
        self.handle(Event::Signal(sig))
    }

    /// A restart of `id` is asked for: the supervisor must honour it with a spawn, unless
    /// it refuses (a daemon waiting or held) or shutdown comes first.
    fn owe_restart(&mut self, id: DaemonId) {
        let Some(daemon) = self.sup.daemons().find(|d| d.id == id) else {
            return;
        };
        let accepted = matches!(
            daemon.state(),
            State::Running { .. }
                | State::Down
                | State::GaveUpWaiting
                | State::Backoff { .. }
                | State::Starting { .. }
                | State::Stopping {
                    then: daemon::AfterStop::Restart(_),
                    ..
                }
        );
        if accepted && !self.sup.is_shutting_down() {
            self.owed.insert(id);
        }
    }

    fn crash(&mut self, slot: usize, code: u8, orphan: bool) -> Checked {
        let live: Vec<i32> = self
            .processes
            .iter()
            .filter(|(_, p)| p.dying.is_none())
            .map(|(pid, _)| *pid)
            .collect();
        let Some(&pid) = live.get(slot % live.len().max(1)) else {
            return Ok(());
        };
        if orphan {
            self.next_pid += 1;
            self.orphans.insert(self.next_pid, false);
        }
        self.reap(vec![(pid, ExitStatus::Code(code))])
    }

    fn deliver_exits(&mut self) -> Checked {
        let mut exits: Vec<(i32, ExitStatus)> = self
            .processes
            .iter()
            .filter_map(|(pid, p)| p.dying.map(|status| (*pid, status)))
            .collect();
        exits.extend(
            self.orphans
                .iter()
                .filter(|(_, dying)| **dying)
                .map(|(pid, _)| (*pid, ExitStatus::Signal(libc_sig::TERM))),
        );
        self.reap(exits)
    }

    /// A reaping pass that finds `exits`, as the runtime's `reap` reports it.
    fn reap(&mut self, exits: Vec<(i32, ExitStatus)>) -> Checked {
        for (pid, status) in exits {
            if self.exited.is_some() {
                return Ok(());
            }
            if let Some(process) = self.processes.remove(&pid) {
                self.probes
                    .retain(|id, probe_pid| *id != process.daemon || *probe_pid != pid);
            }
            self.orphans.remove(&pid);
            self.reaped.insert(pid);
            self.handle(Event::Exited { pid, status })?;
        }
        if self.exited.is_some() {
            return Ok(());
        }
        let children_remain = !self.processes.is_empty() || !self.orphans.is_empty();
        self.handle(Event::ReapingDone { children_remain })
    }

    fn control(&mut self, request: &Request) -> Checked {
        if self.exited.is_some() {
            return Ok(());
        }
        let client = self.next_client;
        self.next_client += 1;
        let name = |slot: &usize| self.daemon_in(*slot).map(|d| d.spec.name.clone());
        let request = match request {
            Request::Status => ControlRequest::Status {
                json: client.is_multiple_of(2),
            },
            Request::Health => ControlRequest::Health,
            Request::Restart(slots) => {
                let names: Vec<String> = slots.iter().filter_map(name).collect();
                if names.is_empty() {
                    return Ok(());
                }
                let ids: Vec<DaemonId> = slots
                    .iter()
                    .filter_map(|s| self.daemon_in(*s).map(|d| d.id))
                    .collect();
                for id in ids {
                    self.owe_restart(id);
                }
                ControlRequest::Restart(names)
            }
            Request::RestartUnknown => ControlRequest::Restart(vec!["nobody".into()]),
            Request::SignalTo(slot) => match name(slot) {
                Some(name) => ControlRequest::Signal(name, HUP),
                None => return Ok(()),
            },
            Request::Reload { dry_run } => {
                self.reload_since_edit |= !dry_run;
                ControlRequest::Reload { dry_run: *dry_run }
            }
        };
        self.waiting.insert(client);
        self.handle(Event::Control { client, request })
    }

    fn edit(&mut self, edit: &Edit) {
        self.reload_since_edit = false;
        let n = self.file.daemons.len();
        let at = |slot: &usize| slot % n.max(1);
        let daemons = &mut self.file.daemons;
        match edit {
            Edit::Add if n < 8 => {
                self.names_made += 1;
                let mut added = daemon(&format!("new{}", self.names_made), ExitPolicy::Restart);
                if self.names_made.is_multiple_of(2) {
                    added.ready = Some(ReadyCheck::File("/run/new.ready".into()));
                }
                daemons.push(added);
            }
            Edit::Remove(slot) if n > 0 => {
                daemons.remove(at(slot));
            }
            Edit::Rename(slot) if n > 0 => {
                self.names_made += 1;
                daemons[at(slot)].name = format!("renamed{}", self.names_made);
            }
            Edit::Reorder if n > 1 => daemons.rotate_left(1),
            Edit::ChangeRun(slot) if n > 0 => {
                daemons[at(slot)].argv.push("--changed".into());
            }
            Edit::ChangeGrace(slot) if n > 0 => {
                let grace = &mut daemons[at(slot)].grace;
                *grace = if *grace == secs(2.0) {
                    secs(1.5)
                } else {
                    secs(2.0)
                };
            }
            Edit::ChangeAfter(slot) if n > 1 => {
                let i = at(slot);
                let before = daemons[(i + n - 1) % n].name.clone();
                let after = &mut daemons[i].after;
                if after.is_empty() {
                    after.push(before);
                } else {
                    after.clear();
                }
            }
            Edit::ChangePolicy(slot) if n > 0 => {
                let policy = &mut daemons[at(slot)].on_exit;
                *policy = match policy {
                    ExitPolicy::KeepRunning => ExitPolicy::Restart,
                    ExitPolicy::Restart => ExitPolicy::StopBundle,
                    ExitPolicy::StopBundle => ExitPolicy::KeepRunning,
                };
            }
            Edit::Break => self.file_broken = true,
            Edit::Mend => self.file_broken = false,
            _ => {}
        }
        set_routes(&mut self.file);
    }

    /// After the steps: let everything under way finish (exits, deadlines), check that
    /// every restart asked for was honoured, then shut down and check the exit.
    fn finish(&mut self) -> Checked {
        for _ in 0..40 {
            if self.exited.is_some() {
                break;
            }
            self.pass(&Step::DeliverExits)?;
            self.pass(&Step::ToDeadline)?;
        }
        if self.exited.is_none() && !self.sup.is_shutting_down() && !self.owed.is_empty() {
            return broke(
                "a restart request is honoured or coalesced into one that is, never lost",
                format!("still owed: {:?}", self.owed),
            );
        }
        let running: Vec<&str> = names(&self.sup);
        let written: Vec<&str> = self.file.daemons.iter().map(|d| d.name.as_str()).collect();
        if self.reload_since_edit
            && !self.file_broken
            && self.exited.is_none()
            && !self.sup.is_shutting_down()
            && running != written
        {
            return broke(
                "a reload asked for is applied, never lost",
                format!("running {running:?}, the file says {written:?}"),
            );
        }
        if self.exited.is_none() {
            self.handle(Event::Signal(TERM))?;
            self.carry_out()?;
        }
        for _ in 0..200 {
            if self.exited.is_some() {
                return self.check_the_end();
            }
            self.pass(&Step::DeliverExits)?;
            self.pass(&Step::ToDeadline)?;
        }
        broke(
            "shutdown ends within its budget plus the sweep's tail",
            "no exit action".into(),
        )
    }
}

/// The actions a reload produced restart exactly the daemons whose definition changed:
/// a running changed daemon gets its stop signal, an unchanged one gets none and is not
/// spawned.
fn check_reload(
    before: &[(String, DaemonSpec, Option<i32>, bool)],
    file: &Plan,
    actions: &[Action],
) -> Checked {
    let olds: Vec<DaemonSpec> = before.iter().map(|b| b.1.clone()).collect();
    let changes = crate::reload::diff(&olds, &file.daemons);
    for (name, spec, pid, running) in before {
        let Some(change) = changes.iter().find(|c| c.name == *name) else {
            continue;
        };
        let stopped = |pid: i32| {
            actions.iter().any(|a| {
                matches!(a, Action::Signal { pid: p, sig, .. } if *p == pid && *sig == spec.stop_signal)
            })
        };
        match (&change.change, pid) {
            (crate::reload::Change::Changed(_), Some(pid)) if *running && !stopped(*pid) => {
                return broke(
                    "a reload restarts exactly the daemons whose definition changed",
                    format!("{name} changed but pid {pid} was not stopped"),
                );
            }
            (crate::reload::Change::Unchanged | crate::reload::Change::Updated(_), Some(pid))
                if stopped(*pid) =>
            {
                return broke(
                    "a reload restarts exactly the daemons whose definition changed",
                    format!("{name} did not change but pid {pid} was stopped"),
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// Runs `steps` from the first plan, then lets the bundle finish; a panic is a violation.
pub(super) fn replay(steps: &[Step]) -> Checked {
    let run = catch_unwind(AssertUnwindSafe(|| {
        let mut world = World::new();
        let (before_start, after_start) = steps.split_at(first_start(steps));
        for step in before_start {
            world.step(step)?;
        }
        world.handle(Event::Start)?;
        world.carry_out()?;
        for step in after_start {
            world.pass(step)?;
        }
        world.finish()
    }));
    match run {
        Ok(checked) => checked,
        Err(panic) => {
            let detail = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            broke("PID 1 never panics", detail)
        }
    }
}

/// How many leading steps set the scene before the bundle starts: edits of the file and a
/// spawn set to fail (so the first spawns themselves can fail).
fn first_start(steps: &[Step]) -> usize {
    steps
        .iter()
        .take_while(|s| matches!(s, Step::FailNextSpawn { .. }))
        .count()
}

/// splitmix64: small, seedable, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

fn random_step(rng: &mut Rng) -> Step {
    let slot = rng.below(8);
    match rng.below(100) {
        0..=11 => Step::Signal(rng.below(SIGNALS.len() as u64)),
        12..=23 => Step::Crash {
            slot,
            code: [0, 1, 3][rng.below(3)],
            orphan: rng.below(4) == 0,
        },
        24..=39 => Step::DeliverExits,
        40..=47 => Step::Ready(slot),
        48..=55 => Step::Advance([50, 400, 1500, 6000][rng.below(4)]),
        56..=65 => Step::ToDeadline,
        66..=81 => Step::Control(match rng.below(7) {
            0 => Request::Status,
            1 => Request::Health,
            2 => Request::Restart(vec![slot]),
            3 => Request::Restart(vec![slot, rng.below(8)]),
            4 => Request::RestartUnknown,
            5 => Request::SignalTo(slot),
            _ => Request::Reload {
                dry_run: rng.below(4) == 0,
            },
        }),
        82..=95 => Step::Edit(match rng.below(10) {
            0 => Edit::Add,
            1 => Edit::Remove(slot),
            2 => Edit::Rename(slot),
            3 => Edit::Reorder,
            4 => Edit::ChangeRun(slot),
            5 => Edit::ChangeGrace(slot),
            6 => Edit::ChangeAfter(slot),
            7 => Edit::ChangePolicy(slot),
            8 => Edit::Break,
            _ => Edit::Mend,
        }),
        _ => Step::FailNextSpawn {
            transient: rng.below(2) == 0,
        },
    }
}

/// Steps whose events can share a pass of the loop.
fn batchable(step: &Step) -> bool {
    matches!(
        step,
        Step::Signal(_)
            | Step::Crash { .. }
            | Step::DeliverExits
            | Step::Ready(_)
            | Step::Control(_)
    )
}

fn random_steps(seed: u64) -> Vec<Step> {
    let mut rng = Rng(seed);
    let len = 10 + rng.below(70);
    let mut steps: Vec<Step> = (0..len)
        .map(|_| match rng.below(6) {
            0 => Step::Batch(
                (0..2 + rng.below(2))
                    .map(|_| random_step(&mut rng))
                    .filter(batchable)
                    .collect(),
            ),
            _ => random_step(&mut rng),
        })
        .collect();
    if rng.below(8) == 0 {
        steps.insert(0, Step::FailNextSpawn { transient: false });
    }
    steps
}

/// The fewest steps (by removing runs of them, then single ones) that still break the
/// same promise.
pub(super) fn shrink(mut steps: Vec<Step>, promise: &'static str) -> Vec<Step> {
    let still_fails = |candidate: &[Step]| replay(candidate).is_err_and(|v| v.promise == promise);
    let mut chunk = steps.len().div_ceil(2).max(1);
    loop {
        let mut at = 0;
        let mut removed = false;
        while at < steps.len() {
            let mut candidate = steps.clone();
            candidate.drain(at..(at + chunk).min(steps.len()));
            if still_fails(&candidate) {
                steps = candidate;
                removed = true;
            } else {
                at += chunk;
            }
        }
        if chunk == 1 && !removed {
            return steps;
        }
        chunk = (chunk / 2).max(1);
    }
}

/// Runs sequences from `seed` on until `count` ran or `until` passed; panics with the
/// shrunk trace of the first failure.
fn explore(first_seed: u64, count: u64, until: Option<std::time::Instant>) -> u64 {
    let mut ran = 0;
    for seed in first_seed.. {
        if ran >= count || until.is_some_and(|t| std::time::Instant::now() >= t) {
            break;
        }
        let steps = random_steps(seed);
        if let Err(violation) = replay(&steps) {
            let shrunk = shrink(steps, violation.promise);
            let again = replay(&shrunk).expect_err("the shrunk trace fails");
            panic!(
                "seed {seed} broke \"{}\": {}\nreplay with:\n    model::replay(&[\n{}    ])",
                again.promise,
                again.detail,
                shrunk
                    .iter()
                    .map(|s| format!("        Step::{s:?},\n"))
                    .collect::<String>()
            );
        }
        ran += 1;
    }
    ran
}

#[test]
fn random_interleavings_keep_every_promise() {
    let seconds: Option<u64> = std::env::var("BUNDLE_INIT_MODEL_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let seed: u64 = std::env::var("BUNDLE_INIT_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| match seconds {
            // A long run explores new ground each time; the short one is the same every run.
            Some(_) => crate::time::now().as_nanos() as u64,
            None => 1,
        });
    let started = std::time::Instant::now();
    let ran = match seconds {
        Some(s) => explore(seed, u64::MAX, Some(started + Duration::from_secs(s))),
        None => explore(seed, 3000, None),
    };
    eprintln!(
        "model: {ran} sequences from seed {seed} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(ran > 0);
}
