//! The supervisor's tests, one file per concern, all behind this harness: plans to start
//! from, a `Drive` trait that feeds events through `Supervisor::handle` with the short
//! names the tests read well with, and extractors for the actions that came out.

mod control;
mod leftovers;
mod lifecycle;
mod liveness;
mod logging;
mod logs;
mod model;
mod readiness;
mod reload;
mod restart;
mod review;
mod shutdown;
mod traces;
mod views;

use std::time::Duration;

pub(super) use super::daemon::{Daemon, State};
pub(super) use super::*;
pub(super) use crate::plan::{Backoff, DaemonSpec, ExitPolicy, Plan, Route, Routes};
pub(super) use crate::sys::libc_sig;

pub(super) const USR1: Sig = Sig(libc_sig::USR1);
pub(super) const HUP: Sig = Sig(libc_sig::HUP);
pub(super) const TERM: Sig = Sig(libc_sig::TERM);
pub(super) const KILL: Sig = Sig(libc_sig::KILL);
pub(super) const QUIT: Sig = Sig(libc_sig::QUIT);

/// The action queue the tests collect into: everything shown (debug verbosity).
pub(super) type Actions = Effects;

pub(super) fn actions() -> Effects {
    Effects::new(3, false, false)
}

pub(super) fn secs(s: f64) -> Time {
    Duration::from_secs_f64(s)
}

pub(super) fn id(n: u32) -> DaemonId {
    DaemonId(n)
}

/// Events by their short names, each one call of `Supervisor::handle`.
pub(super) trait Drive {
    fn begin(&mut self, now: Time, out: &mut Effects);
    fn signal(&mut self, sig: Sig, now: Time, out: &mut Effects);
    fn spawned(
        &mut self,
        daemon: u32,
        result: Result<i32, SpawnFailure>,
        now: Time,
        out: &mut Effects,
    );
    fn exited(&mut self, pid: i32, status: ExitStatus, now: Time, out: &mut Effects);
    /// A daemon's process was reaped, and these processes with its mark were found.
    fn exited_leaving(
        &mut self,
        pid: i32,
        status: ExitStatus,
        leftovers: &[i32],
        now: Time,
        out: &mut Effects,
    );
    /// A look for daemon `daemon`'s leftovers found `pids`.
    fn leftovers(&mut self, daemon: u32, pids: &[i32], now: Time, out: &mut Effects);
    fn reaped(&mut self, children_remain: bool, now: Time, out: &mut Effects);
    fn ready(&mut self, daemon: u32, now: Time, out: &mut Effects);
    fn control(&mut self, client: ClientId, request: ControlRequest, now: Time, out: &mut Effects);
    fn bundle_read(
        &mut self,
        request: ReloadRequest,
        plan: Result<Plan, String>,
        now: Time,
        out: &mut Effects,
    );
    fn tick(&mut self, now: Time, out: &mut Effects);
    fn driver_failed(&mut self, what: &'static str, error: &str, out: &mut Effects);
    fn dropped(&mut self, count: u64, out: &mut Effects);
    fn signal_failed(&mut self, target: i32, sig: Sig, error: &str, out: &mut Effects);
}

impl Drive for Supervisor {
    fn begin(&mut self, now: Time, out: &mut Effects) {
        self.handle(Event::Start, now, out);
    }
    fn signal(&mut self, sig: Sig, now: Time, out: &mut Effects) {
        self.handle(Event::Signal(sig), now, out);
    }
    fn spawned(
        &mut self,
        daemon: u32,
        result: Result<i32, SpawnFailure>,
        now: Time,
        out: &mut Effects,
    ) {
        let id = DaemonId(daemon);
        self.handle(Event::Spawned { id, result }, now, out);
    }
    fn exited(&mut self, pid: i32, status: ExitStatus, now: Time, out: &mut Effects) {
        self.exited_leaving(pid, status, &[], now, out);
    }
    fn exited_leaving(
        &mut self,
        pid: i32,
        status: ExitStatus,
        leftovers: &[i32],
        now: Time,
        out: &mut Effects,
    ) {
        let leftovers = leftovers.to_vec();
        let exited = Event::Exited {
            pid,
            status,
            leftovers,
        };
        self.handle(exited, now, out);
    }
    fn leftovers(&mut self, daemon: u32, pids: &[i32], now: Time, out: &mut Effects) {
        let id = DaemonId(daemon);
        let pids = pids.to_vec();
        self.handle(Event::Leftovers { id, pids }, now, out);
    }
    fn reaped(&mut self, children_remain: bool, now: Time, out: &mut Effects) {
        self.handle(Event::ReapingDone { children_remain }, now, out);
    }
    fn ready(&mut self, daemon: u32, now: Time, out: &mut Effects) {
        self.handle(Event::Ready(DaemonId(daemon)), now, out);
    }
    fn control(&mut self, client: ClientId, request: ControlRequest, now: Time, out: &mut Effects) {
        self.handle(Event::Control { client, request }, now, out);
    }
    fn bundle_read(
        &mut self,
        request: ReloadRequest,
        plan: Result<Plan, String>,
        now: Time,
        out: &mut Effects,
    ) {
        let plan = plan.map_err(|text| invalid_file(&text));
        self.handle(Event::BundleRead { request, plan }, now, out);
    }
    fn tick(&mut self, now: Time, out: &mut Effects) {
        self.handle(Event::Tick, now, out);
    }
    fn driver_failed(&mut self, what: &'static str, error: &str, out: &mut Effects) {
        let error = error.to_string();
        self.handle(Event::DriverFailed { what, error }, Time::ZERO, out);
    }
    fn dropped(&mut self, count: u64, out: &mut Effects) {
        self.handle(Event::LogLinesDropped(count), Time::ZERO, out);
    }
    fn signal_failed(&mut self, target: i32, sig: Sig, error: &str, out: &mut Effects) {
        let error = error.to_string();
        self.handle(Event::SignalFailed { target, sig, error }, Time::ZERO, out);
    }
}

pub(super) fn daemon(name: &str, on_exit: ExitPolicy) -> DaemonSpec {
    let mut spec = DaemonSpec::new(name, vec![name.into()]);
    spec.on_exit = on_exit;
    spec.grace = secs(2.0);
    spec.backoff = Backoff {
        initial: secs(1.0),
        max: secs(8.0),
        stable_after: secs(10.0),
    };
    spec
}

/// egress(0) and pipelock(1) and supervise(2); USR1 restarts pipelock, HUP goes to egress.
pub(super) fn seed_plan(policy: ExitPolicy) -> Plan {
    let mut routes = Routes::bundle_defaults();
    routes.set(USR1, Route::Restart(vec![1]));
    routes.set(HUP, Route::Forward(vec![0]));
    Plan {
        daemons: vec![
            daemon("egress", policy),
            daemon("pipelock", policy),
            daemon("supervise", policy),
        ],
        routes,
        shutdown_grace: secs(8.0),
        stop_leftovers: true,
        success_codes: vec![],
        single_child: false,
        stop_order: crate::plan::StopOrder::Dependencies,
        log_style: Default::default(),
        http: None,
    }
}

/// A supervisor whose daemons were started as pids 100, 101, 102 at time 0.
pub(super) fn started(plan: Plan) -> Supervisor {
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    let spawned = spawns(&out);
    assert_eq!(
        spawned,
        (0..sup.daemons().count() as u32).collect::<Vec<_>>(),
        "daemons start in file order"
    );
    for i in spawned {
        sup.spawned(i, Ok(100 + i as i32), secs(0.0), &mut out);
    }
    sup
}

/// The signals sent, but the SIGCONT that follows every stop signal (checked on its own,
/// in `restart::every_stop_signal_is_followed_by_sigcont`).
pub(super) fn signals(out: &Effects) -> Vec<(i32, Sig)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Signal { pid, sig, .. } if sig.0 != libc_sig::CONT => Some((*pid, *sig)),
            _ => None,
        })
        .collect()
}

/// The ids of the daemons spawned, as numbers.
pub(super) fn spawns(out: &Effects) -> Vec<u32> {
    out.iter()
        .filter_map(|a| match a {
            Action::Spawn(id) => Some(id.0),
            _ => None,
        })
        .collect()
}

pub(super) fn exit_code(out: &Effects) -> Option<u8> {
    out.iter().find_map(|a| match a {
        Action::Exit(c) => Some(*c),
        _ => None,
    })
}

pub(super) fn logs(out: &Effects) -> String {
    out.iter()
        .filter_map(|a| match a {
            Action::Log(_, l) | Action::LogEvent(_, l, _) => Some(l.as_str()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn replies(out: &Effects) -> Vec<(ClientId, Reply)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Reply { client, reply } => Some((*client, reply.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn refused(reason: &str, body: &str) -> Reply {
    Reply::Err {
        reason: reason.to_string(),
        body: body.to_string(),
    }
}

/// What the runtime does once every child is reaped: report it, and report again after
/// carrying out a SignalLeftovers (it reaps right after signalling).
pub(super) fn nothing_left(sup: &mut Supervisor, out: &mut Effects) {
    sup.reaped(false, secs(0.0), out);
    if matches!(out.iter().last(), Some(Action::SignalLeftovers(_))) {
        sup.reaped(false, secs(0.0), out);
    }
}

/// The daemon at position `i` of the bundle as it is now.
pub(super) fn nth(sup: &Supervisor, i: usize) -> &Daemon {
    sup.daemons().nth(i).expect("a daemon at that position")
}

pub(super) fn pid_of(sup: &Supervisor, i: usize) -> Option<i32> {
    nth(sup, i).pid()
}

pub(super) fn state_of(sup: &Supervisor, i: usize) -> State {
    nth(sup, i).state().clone()
}

pub(super) fn names(sup: &Supervisor) -> Vec<&str> {
    sup.daemons().map(|d| d.spec.name.as_str()).collect()
}

/// The ordered plan with db's check, db running as pid 100 (not ready yet) and app
/// waiting for it; the actions that came out so far.
pub(super) fn db_running(app_policy: ExitPolicy) -> (Supervisor, Actions) {
    let mut sup = Supervisor::new(ordered_plan(true, app_policy));
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    sup.spawned(0, Ok(100), secs(0.1), &mut out);
    (sup, out)
}

pub(super) fn ordered_plan(check: bool, app_policy: ExitPolicy) -> Plan {
    let mut db = daemon("db", ExitPolicy::KeepRunning);
    if check {
        db.ready = Some(crate::plan::ReadyCheck::Tcp("127.0.0.1:5432".into()));
    }
    let mut app = daemon("app", app_policy);
    app.after = vec!["db".into(), "not-selected".into()];
    app.ready_timeout = secs(5.0);
    Plan {
        daemons: vec![db, app],
        routes: Routes::bundle_defaults(),
        shutdown_grace: secs(8.0),
        stop_leftovers: true,
        success_codes: vec![],
        single_child: false,
        stop_order: crate::plan::StopOrder::Dependencies,
        log_style: Default::default(),
        http: None,
    }
}

/// A reload's read that failed: `text` is a bundle file the parser refuses (as `b.bundle`).
pub(super) fn invalid_file(text: &str) -> ReadError {
    let error = crate::config::parse("b.bundle", text.as_bytes()).expect_err("an invalid file");
    ReadError::Load(crate::bundle::LoadError::Plan(
        crate::bundle::PlanError::Config(error),
    ))
}
