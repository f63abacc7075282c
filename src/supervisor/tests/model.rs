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
    /// A probed daemon's check passes in the same pass of the loop as its process exits:
    /// the runtime reads the probe first and reaps next, and hands over the Ready last.
    ReadyAfterExit {
        slot: usize,
        code: u8,
    },
    /// The next `count` spawns fail (fork failed when `transient`).
    FailSpawns {
        transient: bool,
        count: u8,
    },
    /// Signalled processes die at once: the reap the runtime does right after
    /// SignalLeftovers finds them (kill(-1, SIGKILL) as PID 1 reaches the daemons too).
    FastDeaths(bool),
    /// A process is adopted without any exit bundle-init sees (its parent was not
    /// bundle-init's child): only the sweep's rescan can find it.
    Adopt,
    /// The liveness check under way in `slot` (among those asked for) ends: it passes or
    /// fails.
    Live {
        slot: usize,
        pass: bool,
    },
    /// A datagram on the notify socket of the sd-notify daemon in `slot`, from its own
    /// process or from a stranger: `what` picks READY, WATCHDOG, STATUS, RELOADING,
    /// STOPPING or MAINPID.
    Notify {
        slot: usize,
        own: bool,
        what: u8,
    },
    /// Before the start only: how bundle-init was started.
    Scene(Scene),
    /// Several of the steps above in one pass of the loop: their events all reach the
    /// supervisor before any action is carried out (signals read together, children
    /// reaped together, a control request beside them).
    Batch(Vec<Step>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Scene {
    /// tini's mode: one stop-bundle child, every signal forwarded, no bundle file;
    /// `stop_others` is --stop-others (a sweep of leftovers), `success` is -e 3.
    SingleChild { stop_others: bool, success: bool },
    /// `stop-leftovers = no`.
    KeepLeftovers,
    /// The file as it is at the start (an edit before the bundle starts).
    Edit(Edit),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Request {
    Status,
    Health,
    Restart(Vec<usize>),
    RestartUnknown,
    SignalTo(usize),
    /// `stop NAME`: down until a `start`.
    Stop(usize),
    Start(usize),
    Reload {
        dry_run: bool,
    },
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
    /// `ready`: a file check appears or disappears (a defining key: a restart).
    ChangeReady(usize),
    /// `ready-timeout` (bookkeeping): 3 s or 300 ms.
    ChangeReadyTimeout(usize),
    ChangeAutostart(usize),
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
    /// Orphans a daemon's process left behind, with that daemon's mark: its workers, or a
    /// backend in a session of its own.
    marked: BTreeMap<i32, DaemonId>,
    /// When SIGKILL was sent to a marked orphan: the supervisor may go on without it
    /// `LEFTOVERS_AFTER_KILL` later.
    killed_at: BTreeMap<i32, Time>,
    probes: BTreeMap<DaemonId, i32>,
    /// Liveness checks asked for and not answered yet, with the process each is about.
    live_checks: BTreeMap<DaemonId, i32>,
    next_client: ClientId,
    waiting: BTreeSet<ClientId>,
    fail_next_spawn: Option<bool>,
    /// More spawns to fail after the next one, and how.
    fail_more: Option<(bool, u8)>,
    fast_deaths: bool,
    /// Successful spawns per daemon, and the restart clients with the count they saw.
    spawns: BTreeMap<DaemonId, u32>,
    restart_clients: BTreeMap<ClientId, Vec<(DaemonId, u32)>>,
    started: bool,
    single: bool,
    /// Single-child mode: how the child first ended, which is the exit code.
    child_ended: Option<u8>,
    exit_code: Option<u8>,
    exited: Option<Time>,
    shutdown_began: Option<(Time, Duration)>,
    /// Restarts asked for and accepted, not yet honoured by a spawn.
    owed: BTreeSet<DaemonId>,
    /// Daemons the last reload added, while daemons it removed are alive.
    held_back: BTreeSet<DaemonId>,
    /// Daemons a `stop` request was made for, since their last `start` request.
    held_by_request: BTreeSet<DaemonId>,
    names_made: u32,
    /// A reload was asked for since the file was last edited: the file as it is must be
    /// what runs once things settle.
    reload_since_edit: bool,
}

fn first_plan() -> Plan {
    let mut db = daemon("db", ExitPolicy::Restart);
    db.ready = Some(ReadyCheck::File("/run/db.ready".into()));
    db.max_restarts = Some(5);
    let mut app = daemon("app", ExitPolicy::KeepRunning);
    app.after = vec!["db".into()];
    app.ready_timeout = secs(3.0);
    let mut worker = daemon("worker", ExitPolicy::Restart);
    worker.grace = secs(1.0);
    worker.signal_group = true;
    worker.max_restarts = Some(3);
    worker.on_give_up = crate::plan::GiveUp::StayDown;
    // app is checked for liveness; cache speaks systemd's protocol and has a watchdog.
    app.live.check = Some(crate::plan::LiveCheck::Tcp("127.0.0.1:80".into()));
    app.live.every = secs(1.0);
    app.live.failures = 2;
    let mut cache = daemon("cache", ExitPolicy::KeepRunning);
    cache.ready = Some(ReadyCheck::SdNotify);
    cache.live.watchdog = Some(secs(1.5));
    cache.live.failures = 2;
    // A setup task, which worker starts after.
    let mut setup = daemon("setup", ExitPolicy::KeepRunning);
    setup.oneshot = true;
    setup.timeout = Some(secs(2.0));
    setup.on_failure = Some(crate::plan::OnFailure::KeepRunning);
    worker.after = vec!["setup".into()];
    let mut plan = Plan {
        daemons: vec![setup, db, app, worker, cache],
        routes: Routes::bundle_defaults(),
        shutdown_grace: secs(5.0),
        stop_leftovers: true,
        success_codes: vec![],
        single_child: false,
        stop_order: crate::plan::StopOrder::Dependencies,
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
            marked: BTreeMap::new(),
            killed_at: BTreeMap::new(),
            probes: BTreeMap::new(),
            live_checks: BTreeMap::new(),
            next_client: 1,
            waiting: BTreeSet::new(),
            fail_next_spawn: None,
            fail_more: None,
            fast_deaths: false,
            spawns: BTreeMap::new(),
            restart_clients: BTreeMap::new(),
            started: false,
            single: false,
            child_ended: None,
            exit_code: None,
            exited: None,
            shutdown_began: None,
            owed: BTreeSet::new(),
            held_back: BTreeSet::new(),
            held_by_request: BTreeSet::new(),
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

    #[allow(clippy::too_many_lines)] // one arm per action, as the runtime has
    fn carry_out_one(&mut self, action: Action) -> Checked {
        match action {
            Action::Spawn(id) => self.spawn(id),
            Action::Signal { pid, sig, group } => self.signal(pid, sig, group),
            Action::SignalLeftovers(sig) => {
                for (pid, dying) in self.orphans.iter_mut() {
                    // Every third orphan ignores SIGTERM (a setsid tree that traps it).
                    if sig == KILL || pid % 3 != 0 {
                        *dying = true;
                    }
                    if sig == KILL {
                        self.killed_at.entry(*pid).or_insert(self.now);
                    }
                }
                if sig == KILL {
                    // kill(-1, SIGKILL) as PID 1: daemons still alive die too.
                    for process in self.processes.values_mut() {
                        process.dying = Some(ExitStatus::Signal(libc_sig::KILL));
                    }
                }
                if self.fast_deaths {
                    // The runtime reaps right after signalling: whoever died already.
                    return self.deliver_exits();
                }
                let children_remain = !self.processes.is_empty() || !self.orphans.is_empty();
                self.handle(Event::ReapingDone { children_remain })
            }
            Action::FindLeftovers { id, signal } => {
                let pids = self.leftovers_of(id);
                if let Some(sig) = signal {
                    for pid in &pids {
                        if sig == KILL || pid % 3 != 0 {
                            self.orphans.insert(*pid, true);
                        }
                        if sig == KILL {
                            self.killed_at.entry(*pid).or_insert(self.now);
                        }
                    }
                }
                self.handle(Event::Leftovers { id, pids })
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
            Action::CheckLive { id, pid } => {
                let ready = self
                    .sup
                    .daemons()
                    .any(|d| d.id == id && matches!(d.state(), State::Running { pid: p, ready: true, .. } if *p == pid));
                if self.live_pid_of(id) != Some(pid) || !ready {
                    let state = self
                        .sup
                        .daemons()
                        .find(|d| d.id == id)
                        .map(|d| d.state().clone());
                    return broke(
                        "a liveness check is about the daemon's running, ready process",
                        format!(
                            "{id} {pid}: {state:?}, live process {:?}",
                            self.live_pid_of(id)
                        ),
                    );
                }
                if self.live_checks.get(&id) == Some(&pid) {
                    return broke(
                        "one liveness check at a time per process",
                        format!("{id} {pid}"),
                    );
                }
                self.live_checks.insert(id, pid);
                Ok(())
            }
            Action::Reply { client, reply } => {
                if let (Some(asked), Reply::Ok(body)) =
                    (self.restart_clients.remove(&client), &reply)
                {
                    for (id, before) in asked {
                        if self.spawns.get(&id).copied().unwrap_or(0) <= before {
                            return broke(
                                "a restart is answered OK only once a new process runs",
                                format!("{id}: {body:?}"),
                            );
                        }
                    }
                }
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
            Action::Exit(code) => {
                self.exit_code = Some(code);
                self.exit()
            }
        }
    }

    /// Whether daemon `id` is ready by systemd's protocol.
    fn notifies(&self, id: DaemonId) -> bool {
        self.sup
            .spec(id)
            .is_some_and(|spec| spec.ready == Some(ReadyCheck::SdNotify))
    }

    /// A liveness check ends. A pass never stops anything; a failure stops at most the
    /// process it was about.
    fn live_check_ends(&mut self, slot: usize, pass: bool) -> Checked {
        let asked: Vec<(DaemonId, i32)> = self
            .live_checks
            .iter()
            .map(|(id, pid)| (*id, *pid))
            .collect();
        let Some(&(id, pid)) = asked.get(slot % asked.len().max(1)) else {
            return Ok(());
        };
        self.live_checks.remove(&id);
        let result = if pass {
            Ok(())
        } else {
            Err("connect to 127.0.0.1:80 refused".to_string())
        };
        let queued = self.fx.len();
        self.handle(Event::LiveChecked { id, pid, result })?;
        let stops: Vec<(i32, Sig)> = self
            .fx
            .iter()
            .skip(queued)
            .filter_map(|a| match a {
                Action::Signal { pid, sig, .. } => Some((*pid, *sig)),
                _ => None,
            })
            .collect();
        if (pass && !stops.is_empty()) || stops.iter().any(|(to, _)| *to != pid) {
            return broke(
                "a liveness result stops at most the process it was about, and a pass nothing",
                format!("{id} {pid} pass={pass}: {stops:?}"),
            );
        }
        Ok(())
    }

    /// A datagram on an sd-notify daemon's socket.
    fn notify(&mut self, slot: usize, own: bool, what: u8) -> Checked {
        let notifying: Vec<(DaemonId, i32)> = self
            .processes
            .iter()
            .filter(|(_, p)| self.notifies(p.daemon))
            .map(|(pid, p)| (p.daemon, *pid))
            .collect();
        let Some(&(id, pid)) = notifying.get(slot % notifying.len().max(1)) else {
            return Ok(());
        };
        let text: &[u8] = match what % 6 {
            0 => b"READY=1",
            1 => b"WATCHDOG=1",
            2 => b"STATUS=busy",
            3 => b"RELOADING=1",
            4 => b"STOPPING=1",
            _ => b"MAINPID=1",
        };
        let from = if own { pid } else { 99_999 };
        let message = crate::notify::parse(text);
        let queued = self.fx.len();
        self.handle(Event::Notified { id, from, message })?;
        let acted = self
            .fx
            .iter()
            .skip(queued)
            .any(|a| !matches!(a, Action::Log(..)));
        if !own && acted {
            return broke(
                "a notification from another process changes nothing",
                format!(
                    "{id}: {:?}",
                    self.fx.iter().skip(queued).collect::<Vec<_>>()
                ),
            );
        }
        Ok(())
    }

    fn live_pid_of(&self, id: DaemonId) -> Option<i32> {
        self.processes
            .iter()
            .find(|(_, p)| p.daemon == id)
            .map(|(pid, _)| *pid)
    }

    #[allow(clippy::too_many_lines)] // each promise about a spawn, checked in turn
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
        let given_up = |pid: &i32| {
            self.killed_at
                .get(pid)
                .is_some_and(|at| self.now >= *at + daemon::LEFTOVERS_AFTER_KILL)
        };
        if let Some(pid) = self.leftovers_of(id).into_iter().find(|pid| !given_up(pid)) {
            return broke(
                "a daemon starts again only once what its last process left is gone",
                format!("{} spawned while its leftover {pid} lives", spec.name),
            );
        }
        if self.held_by_request.contains(&id) {
            return broke(
                "a daemon stopped by request starts only on a start request",
                spec.name.clone(),
            );
        }
        if self.held_back.contains(&id) && self.sup.daemons.iter().any(Daemon::is_removed) {
            return broke(
                "a daemon a reload added never runs beside one it removed",
                spec.name.clone(),
            );
        }
        self.owed.remove(&id);
        let failing = self.fail_next_spawn.take();
        if let Some((transient, more)) = self.fail_more.take()
            && more > 0
        {
            self.fail_next_spawn = Some(transient);
            self.fail_more = (more > 1).then_some((transient, more - 1));
        }
        if self.single
            && self.child_ended.is_none()
            && let Some(false) = failing
        {
            self.child_ended = Some(127);
        }
        let result = match failing {
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
                *self.spawns.entry(id).or_default() += 1;
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
        let plan = if self.single {
            Err(ReadError::NoBundleFile)
        } else if self.file_broken || !loads(&self.file) {
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
        if self.single
            && let (Some(code), Some(ended)) = (self.exit_code, self.child_ended)
        {
            let expected = if self.file.success_codes.contains(&ended) {
                0
            } else {
                ended
            };
            if code != expected {
                return broke(
                    "single-child mode exits with the child's code",
                    format!("the child ended with {ended}, exit {code}"),
                );
            }
        }
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

    #[allow(clippy::too_many_lines)] // one arm per kind of step
    fn step(&mut self, step: &Step) -> Checked {
        if self.exited.is_some() {
            return Ok(());
        }
        match step {
            Step::Signal(i) => self.send_signal(Sig(SIGNALS[i % SIGNALS.len()])),
            Step::Crash { slot, code, orphan } => self.crash(*slot, *code, *orphan),
            Step::DeliverExits => self.deliver_exits(),
            Step::Ready(slot) => {
                // An sd-notify daemon's readiness comes only by its socket (`Notify`).
                let probed: Vec<DaemonId> = self
                    .probes
                    .keys()
                    .copied()
                    .filter(|&id| !self.notifies(id))
                    .collect();
                match probed.get(slot % probed.len().max(1)) {
                    Some(&id) => {
                        self.probes.remove(&id);
                        self.handle(Event::Ready(id))
                    }
                    None => Ok(()),
                }
            }
            Step::Live { slot, pass } => self.live_check_ends(*slot, *pass),
            Step::Notify { slot, own, what } => self.notify(*slot, *own, *what),
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
            Step::FailSpawns { transient, count } => {
                self.fail_next_spawn = Some(*transient);
                self.fail_more = (*count > 1).then_some((*transient, count - 1));
                Ok(())
            }
            Step::Adopt => {
                self.next_pid += 1;
                self.orphans.insert(self.next_pid, false);
                Ok(())
            }
            Step::FastDeaths(fast) => {
                self.fast_deaths = *fast;
                Ok(())
            }
            Step::Scene(scene) => {
                if !self.started {
                    self.set_scene(scene);
                }
                Ok(())
            }
            Step::ReadyAfterExit { slot, code } => {
                let probed: Vec<(DaemonId, i32)> =
                    self.probes.iter().map(|(id, pid)| (*id, *pid)).collect();
                let Some(&(id, pid)) = probed.get(slot % probed.len().max(1)) else {
                    return Ok(());
                };
                self.probes.remove(&id);
                self.reap(vec![(pid, ExitStatus::Code(*code))])?;
                if self.exited.is_some() {
                    return Ok(());
                }
                self.handle(Event::Ready(id))
            }
            Step::Batch(steps) => {
                for step in steps {
                    self.step(step)?;
                }
                Ok(())
            }
        }
    }

    /// One pass of the loop: the step's events, the Tick that ends every dispatch, then
    /// every action they led to. Then, as poll with a timeout of 0 would, the loop passes
    /// again while a deadline is due: if it stays due, the loop spins.
    fn pass(&mut self, step: &Step) -> Checked {
        self.step(step)?;
        if self.exited.is_none() {
            self.handle(Event::Tick)?;
        }
        self.carry_out()?;
        for _ in 0..20 {
            match self.sup.next_deadline() {
                Some(deadline) if deadline <= self.now && self.exited.is_none() => {
                    self.handle(Event::Tick)?;
                    self.carry_out()?;
                }
                _ => return self.check_settled(),
            }
        }
        broke(
            "the loop never spins: a deadline that came is acted on",
            format!("{:?} stays due at {:?}", self.sup.next_deadline(), self.now),
        )
    }

    /// Between two passes, with no action left: nothing is stuck.
    #[allow(clippy::too_many_lines)] // each settled promise, checked in turn
    fn check_settled(&self) -> Checked {
        if self.exited.is_some() {
            return Ok(());
        }
        let sup = &self.sup;
        let removed_alive = sup.daemons.iter().any(Daemon::is_removed);
        for d in sup.daemons() {
            let name = &d.spec.name;
            match d.state() {
                State::Starting { .. } => {
                    return broke(
                        "a daemon is Starting only while its spawn is queued",
                        name.clone(),
                    );
                }
                State::HeldForRemoved if !removed_alive => {
                    return broke(
                        "a daemon a reload held starts once the removed ones are gone",
                        name.clone(),
                    );
                }
                State::WaitingForDependencies { .. } => {
                    let missing = d
                        .spec
                        .after
                        .iter()
                        .any(|dep| sup.daemons().any(|o| o.spec.name == *dep && !o.is_ready()));
                    if !missing {
                        return broke(
                            "a daemon waits only for daemons of the bundle that are not ready",
                            format!("{name} waits for {:?}", d.spec.after),
                        );
                    }
                }
                _ => {}
            }
            let probing =
                matches!(d.state(), State::Running { ready: false, .. }) && d.spec.ready.is_some();
            let probe = self.probes.get(&d.id).copied();
            if probing && probe != d.pid() {
                return broke(
                    "a daemon that is not ready yet has its probe running",
                    format!("{name} pid {:?}, probe {probe:?}", d.pid()),
                );
            }
            if !probing && probe.is_some() {
                return broke(
                    "no probe runs for a daemon that is not waiting to be ready",
                    format!("{name} {:?} probe {probe:?}", d.state()),
                );
            }
        }
        for (pid, id) in &self.marked {
            let dying = self.orphans.get(pid).copied().unwrap_or(false);
            let ending = sup.daemons.iter().any(|d| d.id == *id && d.is_ending());
            if !dying && !ending && !sup.is_shutting_down() {
                return broke(
                    "what a daemon's process leaves behind is stopped before its daemon goes on",
                    format!("pid {pid} of {id}"),
                );
            }
        }
        for (pid, process) in &self.processes {
            let tracked = sup.daemon_of(*pid) == Some(process.daemon);
            let killed = process.dying == Some(ExitStatus::Signal(libc_sig::KILL));
            if !tracked && !killed {
                return broke(
                    "every process bundle-init started is a daemon's, or is being killed",
                    format!("pid {pid}"),
                );
            }
        }
        Ok(())
    }

    fn set_scene(&mut self, scene: &Scene) {
        match scene {
            Scene::KeepLeftovers => self.file.stop_leftovers = false,
            Scene::Edit(edit) => self.edit(edit),
            Scene::SingleChild {
                stop_others,
                success,
            } => {
                self.single = true;
                let mut child = DaemonSpec::new("child", vec!["child".into()]);
                child.on_exit = ExitPolicy::StopBundle;
                child.prefix_output = false;
                self.file = Plan {
                    daemons: vec![child],
                    routes: Routes::forward_everything(),
                    shutdown_grace: if *stop_others {
                        secs(2.0)
                    } else {
                        Duration::ZERO
                    },
                    stop_leftovers: *stop_others,
                    success_codes: if *success { vec![3] } else { vec![] },
                    single_child: true,
                    stop_order: crate::plan::StopOrder::Dependencies,
                };
            }
        }
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
    /// What a `stop` or `start` of the daemon in `slot` promises, noted before it is asked.
    fn stop_or_start(&mut self, request: &Request, slot: usize) -> Option<ControlRequest> {
        let (id, name) = self.daemon_in(slot).map(|d| (d.id, d.spec.name.clone()))?;
        if matches!(request, Request::Stop(_)) {
            // Refused in single-child mode and during shutdown.
            if !self.sup.is_shutting_down() && !self.single {
                self.owed.remove(&id);
                self.held_by_request.insert(id);
            }
            return Some(ControlRequest::Stop(vec![name]));
        }
        self.held_by_request.remove(&id);
        self.owe_start(id);
        Some(ControlRequest::Start(vec![name]))
    }

    /// A start is owed to a daemon that is down by request (or on its way there).
    fn owe_start(&mut self, id: DaemonId) {
        let Some(daemon) = self.sup.daemons().find(|d| d.id == id) else {
            return;
        };
        let down_by_request = matches!(
            daemon.state(),
            State::StoppedByRequest
                | State::Stopping {
                    then: daemon::AfterStop::Hold,
                    ..
                }
                | State::Ending {
                    then: daemon::AfterEnd::Stop(daemon::AfterStop::Hold),
                    ..
                }
        );
        if down_by_request && !self.sup.is_shutting_down() {
            self.owed.insert(id);
        }
    }

    fn owe_restart(&mut self, id: DaemonId) {
        let Some(daemon) = self.sup.daemons().find(|d| d.id == id) else {
            return;
        };
        let accepted = matches!(
            daemon.state(),
            State::Running { .. }
                | State::Down
                | State::GaveUp
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
            self.leave_orphan_of(pid);
        }
        self.reap(vec![(pid, ExitStatus::Code(code))])
    }

    /// Process `pid` leaves a worker behind, with its daemon's mark (when it is a daemon's
    /// own process: one whose start was withdrawn is killed with its group).
    fn leave_orphan_of(&mut self, pid: i32) {
        self.next_pid += 1;
        self.orphans.insert(self.next_pid, false);
        if let Some(process) = self.processes.get(&pid)
            && self.sup.daemon_of(pid) == Some(process.daemon)
        {
            self.marked.insert(self.next_pid, process.daemon);
        }
    }

    /// The marked orphans of daemon `id` still alive (reaped or not), as /proc shows them.
    fn leftovers_of(&self, id: DaemonId) -> Vec<i32> {
        self.marked
            .iter()
            .filter(|(_, mark)| **mark == id)
            .map(|(pid, _)| *pid)
            .collect()
    }

    fn deliver_exits(&mut self) -> Checked {
        // Every seventh process killed by a signal leaves a backend in a session of its
        // own, which no signal to its group reached.
        let killed: Vec<i32> = self
            .processes
            .iter()
            .filter(|(pid, p)| matches!(p.dying, Some(ExitStatus::Signal(_))) && *pid % 7 == 0)
            .map(|(pid, _)| *pid)
            .collect();
        for pid in killed {
            self.leave_orphan_of(pid);
        }
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
            let ended_on_its_own = self
                .sup
                .daemon_of(pid)
                .and_then(|id| self.sup.daemons().find(|d| d.id == id))
                .is_some_and(|d| matches!(d.state(), State::Running { .. }));
            let mut leftovers = Vec::new();
            if let Some(process) = self.processes.remove(&pid) {
                self.probes
                    .retain(|id, probe_pid| *id != process.daemon || *probe_pid != pid);
                if self.single && self.child_ended.is_none() && ended_on_its_own {
                    self.child_ended = Some(status.code());
                }
                if self.sup.daemon_of(pid) == Some(process.daemon) {
                    leftovers = self.leftovers_of(process.daemon);
                }
            }
            self.orphans.remove(&pid);
            self.marked.remove(&pid);
            self.killed_at.remove(&pid);
            self.reaped.insert(pid);
            self.handle(Event::Exited {
                pid,
                status,
                leftovers,
            })?;
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
                let seen: Vec<(DaemonId, u32)> = ids
                    .iter()
                    .map(|id| (*id, self.spawns.get(id).copied().unwrap_or(0)))
                    .collect();
                self.restart_clients.insert(client, seen);
                for id in ids {
                    self.owe_restart(id);
                }
                ControlRequest::Restart(names)
            }
            Request::RestartUnknown => ControlRequest::Restart(vec!["nobody".into()]),
            Request::Stop(slot) | Request::Start(slot) => {
                match self.stop_or_start(request, *slot) {
                    Some(request) => request,
                    None => return Ok(()),
                }
            }
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

    #[allow(clippy::too_many_lines)] // one arm per kind of edit
    fn edit(&mut self, edit: &Edit) {
        self.reload_since_edit = false;
        if self.single {
            return;
        }
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
            Edit::ChangeReady(slot) if n > 0 => {
                let ready = &mut daemons[at(slot)].ready;
                *ready = match ready {
                    Some(_) => None,
                    None => Some(ReadyCheck::File("/run/changed.ready".into())),
                };
            }
            Edit::ChangeReadyTimeout(slot) if n > 0 => {
                let timeout = &mut daemons[at(slot)].ready_timeout;
                *timeout = if *timeout == secs(3.0) {
                    Duration::from_millis(300)
                } else {
                    secs(3.0)
                };
            }
            Edit::ChangeAutostart(slot) if n > 0 => {
                let autostart = &mut daemons[at(slot)].autostart;
                *autostart = !*autostart;
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
        let running: Vec<DaemonSpec> = self.sup.daemons().map(|d| d.spec.clone()).collect();
        let differs = running.len() != self.file.daemons.len()
            || running
                .iter()
                .zip(&self.file.daemons)
                .any(|(a, b)| a.name != b.name)
            || crate::reload::diff(&running, &self.file.daemons)
                .iter()
                .any(|c| c.change != crate::reload::Change::Unchanged);
        let running: Vec<&str> = names(&self.sup);
        let written: Vec<&str> = self.file.daemons.iter().map(|d| d.name.as_str()).collect();
        if self.reload_since_edit
            && !self.single
            && !self.file_broken
            && loads(&self.file)
            && self.exited.is_none()
            && !self.sup.is_shutting_down()
            && differs
        {
            return broke(
                "a reload asked for is applied, never lost",
                format!("running {running:?}, the file says {written:?}"),
            );
        }
        if self.exited.is_none() && self.single {
            // TERM is only forwarded to a single child, which may ignore it: the end
            // comes from outside (a SIGKILL to the child, as `docker kill` sends).
            for process in self.processes.values_mut() {
                process.dying = Some(ExitStatus::Signal(libc_sig::KILL));
            }
        } else if self.exited.is_none() {
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

/// Whether the real loader would accept the file: `after` names only daemons defined above
/// (config's AfterNotAbove). Edits can break that; such a file is refused like a broken one.
fn loads(plan: &Plan) -> bool {
    plan.daemons.iter().enumerate().all(|(i, d)| {
        let restarts_without_restart = d.max_restarts.is_some() && d.on_exit != ExitPolicy::Restart;
        let oneshot_wrong = if d.oneshot {
            d.on_exit != ExitPolicy::KeepRunning
                || d.ready.is_some()
                || d.timeout.is_some_and(|t| t.is_zero())
        } else {
            d.timeout.is_some() || d.on_failure.is_some()
        };
        let after_never_started = d.autostart
            && d.after
                .iter()
                .any(|name| plan.daemons.iter().any(|o| o.name == *name && !o.autostart));
        !restarts_without_restart
            && !oneshot_wrong
            && !after_never_started
            && d.after
                .iter()
                .all(|name| plan.daemons[..i].iter().any(|above| above.name == *name))
    })
}

/// Runs `steps` from the first plan, then lets the bundle finish; a panic is a violation.
pub(super) fn replay(steps: &[Step]) -> Checked {
    let run = catch_unwind(AssertUnwindSafe(|| {
        let mut world = World::new();
        let (before_start, after_start) = steps.split_at(first_start(steps));
        for step in before_start {
            world.step(step)?;
        }
        // The bundle starts from the file as the scene left it.
        world.sup = Supervisor::new(world.file.clone());
        world.fx = Effects::new(3, world.single, false);
        world.started = true;
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

/// How many leading steps set the scene before the bundle starts: how it was started, the
/// file as it is then (`Scene`), spawns set to fail (so the first spawns themselves can
/// fail). A leading `Edit` stays after the start, as the traces in traces.rs expect.
fn first_start(steps: &[Step]) -> usize {
    steps
        .iter()
        .take_while(|s| {
            matches!(
                s,
                Step::FailNextSpawn { .. }
                    | Step::FailSpawns { .. }
                    | Step::Scene(_)
                    | Step::FastDeaths(_)
            )
        })
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

/// A control request about the daemon in `slot` (or two).
fn random_request(rng: &mut Rng, slot: usize) -> Request {
    match rng.below(9) {
        0 => Request::Status,
        1 => Request::Health,
        2 => Request::Restart(vec![slot]),
        3 => Request::Restart(vec![slot, rng.below(8)]),
        4 => Request::RestartUnknown,
        5 => Request::SignalTo(slot),
        6 => Request::Stop(slot),
        7 => Request::Start(slot),
        _ => Request::Reload {
            dry_run: rng.below(4) == 0,
        },
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
        40..=44 => Step::Ready(slot),
        45..=46 => Step::Live {
            slot,
            pass: rng.below(3) == 0,
        },
        47 => Step::Notify {
            slot,
            own: rng.below(5) != 0,
            what: rng.below(6) as u8,
        },
        48..=55 => Step::Advance([50, 400, 1500, 6000][rng.below(4)]),
        56..=65 => Step::ToDeadline,
        66..=81 => Step::Control(random_request(rng, slot)),
        82..=95 => Step::Edit(match rng.below(13) {
            0 => Edit::Add,
            1 => Edit::Remove(slot),
            2 => Edit::Rename(slot),
            3 => Edit::Reorder,
            4 => Edit::ChangeRun(slot),
            5 => Edit::ChangeGrace(slot),
            6 => Edit::ChangeAfter(slot),
            7 => Edit::ChangePolicy(slot),
            8 => Edit::Break,
            9 => Edit::Mend,
            10 => Edit::ChangeReady(slot),
            11 => Edit::ChangeReadyTimeout(slot),
            _ => Edit::ChangeAutostart(slot),
        }),
        96 => Step::ReadyAfterExit {
            slot,
            code: [0, 1][rng.below(2)],
        },
        97 => match rng.below(2) {
            0 => Step::FastDeaths(rng.below(2) == 0),
            _ => Step::Adopt,
        },
        98 => Step::FailSpawns {
            transient: rng.below(2) == 0,
            count: 1 + rng.below(3) as u8,
        },
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
            | Step::Live { .. }
            | Step::Notify { .. }
            | Step::Control(_)
            | Step::ReadyAfterExit { .. }
    )
}

fn random_steps(seed: u64) -> Vec<Step> {
    let mut rng = Rng(seed);
    let len = 10 + rng.below(70);
    let steps: Vec<Step> = (0..len)
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
    // The scene: how bundle-init was started and what the file says at first.
    let mut scene = Vec::new();
    match rng.below(10) {
        0 | 1 => scene.push(Step::Scene(Scene::SingleChild {
            stop_others: rng.below(2) == 0,
            success: rng.below(2) == 0,
        })),
        2 => scene.push(Step::Scene(Scene::KeepLeftovers)),
        _ => {}
    }
    if rng.below(4) == 0 {
        scene.push(Step::Scene(Scene::Edit(Edit::ChangePolicy(rng.below(8)))));
    }
    if rng.below(4) == 0 {
        scene.push(Step::Scene(Scene::Edit(Edit::ChangePolicy(rng.below(8)))));
    }
    if rng.below(6) == 0 {
        scene.push(Step::FastDeaths(true));
    }
    match rng.below(6) {
        0 => scene.push(Step::FailNextSpawn { transient: false }),
        1 => scene.push(Step::FailNextSpawn { transient: true }),
        2 => scene.push(Step::FailSpawns {
            transient: rng.below(2) == 0,
            count: 2 + rng.below(3) as u8,
        }),
        _ => {}
    }
    scene.extend(steps);
    scene
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
