//! reload

use super::*;
use crate::supervisor::daemon::AfterStop;

fn ids_in_order(sup: &Supervisor) -> Vec<u32> {
    sup.daemons().map(|d| d.id.0).collect()
}

/// The signals among `done`, but the SIGCONT after each stop signal (as `signals`).
fn signals_in(done: &[Action]) -> Vec<(i32, Sig)> {
    done.iter()
        .filter_map(|a| match a {
            Action::Signal { pid, sig, .. } if sig.0 != libc_sig::CONT => Some((*pid, *sig)),
            _ => None,
        })
        .collect()
}

fn edited(edit: impl FnOnce(&mut Plan)) -> Plan {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    edit(&mut plan);
    plan
}

fn bundle_reads(out: &Actions) -> Vec<ReloadRequest> {
    out.iter()
        .filter_map(|a| match a {
            Action::ReadBundle(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// A control client asks for a reload at `at`; the driver reads `plan`.
fn reload(sup: &mut Supervisor, plan: Result<Plan, String>, at: f64) -> Actions {
    let mut out = actions();
    sup.control(
        9,
        ControlRequest::Reload { dry_run: false },
        secs(at),
        &mut out,
    );
    let reads = bundle_reads(&out);
    assert_eq!(reads.len(), 1, "{out:?}");
    sup.bundle_read(reads[0].clone(), plan, secs(at), &mut out);
    out
}

const QUEUED: &str =
    "reload queued: it runs once the restarts under way are done (the log says what it did)\n";

#[test]
fn a_changed_daemon_is_stopped_the_old_way_and_started_the_new_way() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let out = reload(
        &mut sup,
        Ok(edited(|p| {
            p.daemons[1].argv = vec!["pipelock".into(), "--new".into()];
            p.daemons[1].stop_signal = QUIT;
            p.daemons[1].grace = secs(5.0);
        })),
        10.0,
    );
    // Only pipelock gets a signal: its old stop signal, killed at its old grace.
    assert_eq!(signals(&out), [(101, TERM)]);
    assert_eq!(sup.next_deadline(), Some(secs(12.0)));
    assert_eq!(ids_in_order(&sup), [0, 1, 2], "nobody is renumbered");
    assert_eq!(
        replies(&out),
        [(
            9,
            Reply::Ok(
                "reloaded (generation 2): pipelock changed (run, stop-signal), 2 unchanged\n"
                    .into()
            )
        )]
    );
    assert!(
        logs(&out).contains(
            "reload (control): pipelock changed (run, stop-signal), 2 unchanged (0.000 ms)"
        )
    );
    let mut out = actions();
    sup.exited(101, ExitStatus::Signal(15), secs(10.5), &mut out);
    assert_eq!(spawns(&out), [1]);
    assert_eq!(nth(&sup, 1).spec.argv[1], "--new");
    sup.spawned(1, Ok(200), secs(10.5), &mut out);
    assert!(logs(&out).contains("pipelock restarted (reload): pid 101 -> 200 in 500.000 ms"));
    assert_eq!(nth(&sup, 1).restarts, 1);
    assert_eq!((pid_of(&sup, 0), pid_of(&sup, 2)), (Some(100), Some(102)));
    // The new stop signal and grace from now on.
    sup.signal(USR1, secs(20.0), &mut out);
    assert_eq!(signals(&out).last(), Some(&(200, QUIT)));
    let status = sup.status_lines(secs(20.0));
    assert_eq!(
        status.last().unwrap(),
        "bundle file generation 2, loaded 10s ago"
    );
}

#[test]
fn added_daemons_start_and_removed_ones_are_stopped_and_forgotten() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    // egress's history, which must survive.
    sup.signal(HUP, secs(1.0), &mut out);
    let out = reload(
        &mut sup,
        Ok(edited(|p| {
            p.daemons[2] = daemon("metrics", ExitPolicy::KeepRunning);
        })),
        10.0,
    );
    assert_eq!(names(&sup), ["egress", "pipelock", "metrics"]);
    // supervise (102) stays, last, until it is reaped.
    assert_eq!(ids_in_order(&sup), [0, 1, 3], "metrics gets a new id");
    assert_eq!(
        sup.daemons.len(),
        4,
        "supervise (2) is still there, stopping"
    );
    assert_eq!(signals(&out), [(102, TERM)]);
    // metrics waits until supervise has stopped: a renamed daemon never runs beside
    // its old self.
    assert_eq!(spawns(&out), [0u32; 0]);
    assert!(sup.status_lines(secs(10.0))[2].starts_with("metrics          waiting"));
    let mut out = actions();
    sup.control(
        4,
        ControlRequest::Restart(vec!["supervise".into()]),
        secs(10.1),
        &mut out,
    );
    assert!(
        matches!(&replies(&out)[0].1, Reply::Err { reason, .. } if reason.starts_with("unknown daemon \"supervise\""))
    );
    out.clear();
    sup.exited(102, ExitStatus::Signal(15), secs(10.2), &mut out);
    assert!(logs(&out).contains("supervise was killed by SIGTERM (pid 102): removed"));
    let forget = out.iter().position(|a| *a == Action::Forget(id(2)));
    let spawn = out.iter().position(|a| *a == Action::Spawn(id(3)));
    assert!(
        forget.is_some() && forget < spawn,
        "the old pipes close first: {out:?}"
    );
    sup.spawned(3, Ok(300), secs(10.2), &mut out);
    assert_eq!(names(&sup), ["egress", "pipelock", "metrics"]);
    assert_eq!(exit_code(&out), None);
    // A removed daemon that needed SIGKILL does not count toward the exit code either.
    assert_eq!(sup.exit_code, 0);
}

#[test]
fn a_removed_daemon_that_ignores_its_stop_signal_is_killed_at_its_grace() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    reload(
        &mut sup,
        Ok(edited(|p| {
            p.daemons.truncate(2);
        })),
        10.0,
    );
    let mut out = actions();
    sup.tick(secs(12.0), &mut out);
    assert_eq!(signals(&out), [(102, KILL)]);
    sup.exited(102, ExitStatus::Signal(9), secs(12.1), &mut out);
    assert_eq!(out.iter().last(), Some(&Action::Forget(id(2))), "{out:?}");
    assert_eq!(sup.exit_code, 0);
    // It is gone: its id is retired, nothing else moved.
    assert_eq!(sup.daemons.len(), 2);
    assert_eq!(ids_in_order(&sup), [0, 1]);
}

#[test]
fn a_reordered_file_restarts_nothing_and_bookkeeping_applies_at_once() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let out = reload(
        &mut sup,
        Ok(edited(|p| {
            p.daemons.swap(0, 2);
            p.daemons[1].on_exit = ExitPolicy::Restart;
            // Routes name daemons by their new place.
            p.routes.set(USR1, Route::Restart(vec![1]));
            p.routes.set(HUP, Route::Forward(vec![2]));
        })),
        10.0,
    );
    assert_eq!(signals(&out), []);
    assert_eq!(spawns(&out), [0u32; 0]);
    assert_eq!(
        ids_in_order(&sup),
        [2, 1, 0],
        "each keeps its id in its new place"
    );
    assert_eq!(names(&sup), ["supervise", "pipelock", "egress"]);
    assert!(logs(&out).contains("pipelock updated (on-exit), 2 unchanged"));
    // pipelock now restarts after a crash: the new policy, with no restart to get it.
    let mut out = actions();
    sup.exited(101, ExitStatus::Code(1), secs(11.0), &mut out);
    assert!(logs(&out).contains("pipelock exited with code 1; restarting in 1s"));
    // The changed routes: HUP goes to egress at its new place.
    out.clear();
    sup.signal(HUP, secs(12.0), &mut out);
    assert_eq!(signals(&out), [(100, HUP)]);
}

#[test]
fn a_changed_route_applies_at_once() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    reload(
        &mut sup,
        Ok(edited(|p| p.routes.set(HUP, Route::Forward(vec![2])))),
        10.0,
    );
    let mut out = actions();
    sup.signal(HUP, secs(11.0), &mut out);
    assert_eq!(signals(&out), [(102, HUP)]);
}

#[test]
fn an_invalid_file_changes_nothing_and_says_why() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let out = reload(&mut sup, Err("[a]\nrun = a\nx = 1\n".into()), 10.0);
    assert_eq!(signals(&out), []);
    assert_eq!(ids_in_order(&sup), [0, 1, 2]);
    assert_eq!(
        replies(&out),
        [(9, refused("b.bundle:3: unknown key \"x\" in [a]", ""))]
    );
    assert!(logs(&out).contains("reload (control) refused, nothing changed: b.bundle:3"));
    assert_eq!(sup.reloads.generation.number, 1);
    assert_eq!(names(&sup), ["egress", "pipelock", "supervise"]);
}

#[test]
fn a_dry_run_answers_with_the_plan_and_changes_nothing() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.control(
        9,
        ControlRequest::Reload { dry_run: true },
        secs(10.0),
        &mut out,
    );
    let read = bundle_reads(&out).remove(0);
    let plan = edited(|p| p.daemons[0].argv.push("--x".into()));
    sup.bundle_read(read, Ok(plan), secs(10.0), &mut out);
    assert_eq!(
        replies(&out),
        [(
            9,
            Reply::Ok("would reload: egress changed (run), 2 unchanged\n".into())
        )]
    );
    assert_eq!(signals(&out), []);
    assert_eq!(sup.reloads.generation.number, 1);
    assert_eq!(nth(&sup, 0).spec.argv.len(), 1);
}

#[test]
fn a_reload_during_shutdown_is_ignored_and_said_to_be() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(TERM, secs(1.0), &mut out);
    out.clear();
    sup.control(
        9,
        ControlRequest::Reload { dry_run: false },
        secs(2.0),
        &mut out,
    );
    assert_eq!(bundle_reads(&out), []);
    assert_eq!(replies(&out), [(9, refused("shutting down", ""))]);
    assert!(logs(&out).contains("reload (control) ignored: shutting down"));
}

#[test]
fn a_reload_during_a_restart_waits_for_it_and_then_reads_the_file() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(USR1, secs(1.0), &mut out);
    out.clear();
    sup.control(
        9,
        ControlRequest::Reload { dry_run: false },
        secs(1.1),
        &mut out,
    );
    assert_eq!(
        bundle_reads(&out),
        [],
        "not while pipelock is between two processes"
    );
    // The client hears at once that it is queued: it holds no control slot meanwhile.
    assert_eq!(replies(&out), [(9, Reply::Ok(QUEUED.into()))]);
    sup.exited(101, ExitStatus::Signal(15), secs(1.2), &mut out);
    assert_eq!(bundle_reads(&out), [], "nor while its replacement starts");
    sup.spawned(1, Ok(200), secs(1.2), &mut out);
    let reads = bundle_reads(&out);
    assert_eq!(reads.len(), 1);
    assert_eq!(reads[0].clients, Vec::<ClientId>::new());
    // Compared now, pipelock is its new process: a change restarts that one.
    out.clear();
    let plan = edited(|p| p.daemons[1].argv.push("--v2".into()));
    sup.bundle_read(reads[0].clone(), Ok(plan), secs(1.3), &mut out);
    assert_eq!(signals(&out), [(200, TERM)]);
}

#[test]
fn a_storm_of_reload_requests_runs_one_reload_after_the_one_under_way() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let changed = || edited(|p| p.daemons[1].argv.push("--v2".into()));
    let out = reload(&mut sup, Ok(changed()), 1.0);
    assert_eq!(signals(&out), [(101, TERM)]);
    let mut out = actions();
    for client in 10..110 {
        sup.control(
            client,
            ControlRequest::Reload { dry_run: false },
            secs(1.1),
            &mut out,
        );
        sup.signal(HUP, secs(1.1), &mut out);
    }
    sup.routes.set(HUP, Route::Reload);
    for _ in 0..100 {
        sup.signal(HUP, secs(1.1), &mut out);
    }
    assert_eq!(bundle_reads(&out), []);
    // Every client is answered at once, each exactly once.
    let answered: Vec<ClientId> = replies(&out).iter().map(|(c, _)| *c).collect();
    assert_eq!(answered, (10..110).collect::<Vec<_>>());
    sup.exited(101, ExitStatus::Signal(15), secs(1.2), &mut out);
    sup.spawned(1, Ok(200), secs(1.2), &mut out);
    let reads = bundle_reads(&out);
    assert_eq!(reads.len(), 1, "one more reload, not 200");
    out.clear();
    sup.bundle_read(reads[0].clone(), Ok(changed()), secs(1.3), &mut out);
    // The file did not change again: nothing restarts.
    assert_eq!(signals(&out), []);
    assert_eq!(sup.reloads.generation.number, 3);
}

#[test]
fn a_changed_daemon_in_backoff_or_down_starts_at_once_with_its_new_definition() {
    let mut sup = started(seed_plan(ExitPolicy::Restart));
    let mut out = actions();
    sup.exited(101, ExitStatus::Code(1), secs(1.0), &mut out);
    assert_eq!(state_of(&sup, 1), State::Backoff { until: secs(2.0) });
    let out = reload(
        &mut sup,
        Ok(edited(|p| {
            p.daemons[1].argv.push("--fixed".into());
            p.daemons[1].on_exit = ExitPolicy::Restart;
        })),
        1.5,
    );
    assert_eq!(spawns(&out), [1]);
    assert_eq!(nth(&sup, 1).spec.argv[1], "--fixed");
    assert!(
        matches!(state_of(&sup, 1), State::Starting { restart: None }),
        "it starts now, with nothing of the old definition pending"
    );
    // A keep-running daemon that ended: it starts with the new definition too.
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.exited(102, ExitStatus::Code(3), secs(1.0), &mut out);
    let out = reload(
        &mut sup,
        Ok(edited(|p| p.daemons[2].argv.push("--v2".into()))),
        2.0,
    );
    assert_eq!(spawns(&out), [2]);
    assert_eq!(
        nth(&sup, 2).last_exit,
        Some(ExitStatus::Code(3)),
        "history kept"
    );
}

#[test]
fn changed_daemons_restart_in_after_order() {
    // api after db, both with checks; both change.
    let plan = |version: &str| {
        let mut plan = ordered_plan(true, ExitPolicy::KeepRunning);
        for d in &mut plan.daemons {
            d.argv.push(version.into());
        }
        plan
    };
    let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
    sup.ready(0, secs(0.1), &mut out);
    sup.spawned(1, Ok(101), secs(0.1), &mut out);
    sup.ready(1, secs(0.2), &mut out);
    let out = reload(&mut sup, Ok(plan("v2")), 10.0);
    assert_eq!(signals(&out), [(100, TERM), (101, TERM)]);
    let mut out = actions();
    // app is reaped first: it waits for db, which is not ready.
    sup.exited(101, ExitStatus::Signal(15), secs(10.1), &mut out);
    assert_eq!(spawns(&out), [0u32; 0]);
    assert!(logs(&out).contains("app waits for db to be ready"));
    sup.exited(100, ExitStatus::Signal(15), secs(10.2), &mut out);
    assert_eq!(spawns(&out), [0]);
    sup.spawned(0, Ok(200), secs(10.2), &mut out);
    assert_eq!(spawns(&out), [0], "app still waits for db's check");
    sup.ready(0, secs(10.3), &mut out);
    assert_eq!(spawns(&out), [0, 1]);
}

/// Carries out `out` in queue order, as the runtime does: ReadBundle reads `plan`, a
/// Spawn succeeds with the next pid. Returns every action carried out.
fn drive(sup: &mut Supervisor, out: &mut Actions, plan: &Plan, now: f64) -> Vec<Action> {
    let mut done = Vec::new();
    let mut next_pid = 500;
    while let Some(action) = out.pop() {
        match &action {
            Action::ReadBundle(r) => sup.bundle_read(r.clone(), Ok(plan.clone()), secs(now), out),
            Action::Spawn(id) => {
                next_pid += 1;
                sup.spawned(id.0, Ok(next_pid), secs(now), out);
            }
            _ => {}
        }
        done.push(action);
    }
    done
}

/// A start queued in the same loop iteration as the file read (a backoff that ended):
/// the reload waits for it, and no start lands on a renumbered daemon.
#[test]
fn a_start_queued_behind_the_file_read_is_not_renumbered_under_it() {
    let mut plan = seed_plan(ExitPolicy::Restart);
    plan.routes.set(HUP, Route::Reload);
    let mut sup = started(plan.clone());
    let mut out = actions();
    sup.exited(101, ExitStatus::Code(1), secs(1.0), &mut out);
    out.clear();
    sup.signal(HUP, secs(2.0), &mut out);
    sup.tick(secs(2.0), &mut out); // pipelock's backoff is over: Spawn(1)
    let mut swapped = plan.clone();
    swapped.daemons.swap(0, 1);
    let done = drive(&mut sup, &mut out, &swapped, 2.0);
    let spawned: Vec<&Action> = done
        .iter()
        .filter(|a| matches!(a, Action::Spawn(_)))
        .collect();
    assert_eq!(spawned, [&Action::Spawn(id(1))], "{done:?}");
    assert_eq!(pid_of(&sup, 0), Some(501), "pipelock started");
    assert_eq!(pid_of(&sup, 1), Some(100), "egress untouched");
    // The reload ran once the start was done: the file's order now.
    assert_eq!(names(&sup), ["pipelock", "egress", "supervise"]);
    assert!(!sup.reload_in_flight());
    // A changed daemon being started is started once, and then restarted the new way.
    let mut sup = started(plan.clone());
    let mut out = actions();
    sup.exited(101, ExitStatus::Code(1), secs(1.0), &mut out);
    out.clear();
    sup.signal(HUP, secs(2.0), &mut out);
    sup.tick(secs(2.0), &mut out);
    let mut fixed = plan.clone();
    fixed.daemons[1].argv.push("--fixed".into());
    let done = drive(&mut sup, &mut out, &fixed, 2.0);
    let spawned = done
        .iter()
        .filter(|a| matches!(a, Action::Spawn(_)))
        .count();
    assert_eq!(spawned, 1, "{done:?}");
    assert_eq!(signals_in(&done), [(501, TERM)]);
}

/// HUP (reload) and USR1 (restart) in one signalfd read: the reload waits for the
/// restart; no replacement starts beside the old process.
#[test]
fn a_restart_in_the_same_iteration_as_a_reload_finishes_first() {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.routes.set(HUP, Route::Reload);
    let mut sup = started(plan.clone());
    let mut out = actions();
    sup.signal(HUP, secs(1.0), &mut out);
    sup.signal(USR1, secs(1.0), &mut out);
    let mut changed = plan.clone();
    changed.daemons[1].argv.push("--v2".into());
    let done = drive(&mut sup, &mut out, &changed, 1.0);
    assert!(
        !done.iter().any(|a| matches!(a, Action::Spawn(_))),
        "{done:?}"
    );
    assert!(sup.reloads.waiting.is_some());
    sup.exited(101, ExitStatus::Signal(15), secs(1.1), &mut out);
    let done = drive(&mut sup, &mut out, &changed, 1.1);
    // The restart's replacement (old definition), then the reload restarts it again.
    assert_eq!(signals_in(&done), [(501, TERM)]);
    let State::Stopping {
        then: AfterStop::Restart(request),
        ..
    } = state_of(&sup, 1)
    else {
        panic!("pipelock is not restarting: {:?}", state_of(&sup, 1));
    };
    assert_eq!(request.new_spec.unwrap().argv.len(), 2);
}

/// Two requests in one iteration: the first is applied, the second waited and runs
/// right after even though the first left nothing under way.
#[test]
fn a_reload_asked_while_the_file_is_read_is_not_lost() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.control(
        1,
        ControlRequest::Reload { dry_run: false },
        secs(1.0),
        &mut out,
    );
    sup.control(
        2,
        ControlRequest::Reload { dry_run: false },
        secs(1.0),
        &mut out,
    );
    let done = drive(&mut sup, &mut out, &seed_plan(ExitPolicy::KeepRunning), 1.0);
    let answered: Vec<ClientId> = done
        .iter()
        .filter_map(|a| match a {
            Action::Reply { client, .. } => Some(*client),
            _ => None,
        })
        .collect();
    assert_eq!(answered, [2, 1]);
    assert_eq!(
        done.iter()
            .filter(|a| matches!(a, Action::ReadBundle(_)))
            .count(),
        2
    );
    assert_eq!(sup.reloads.generation.number, 3);
    assert!(sup.reloads.waiting.is_none());
}

#[test]
fn when_a_removal_leaves_no_daemon_running_the_bundle_ends() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    reload(&mut sup, Ok(edited(|p| p.daemons.truncate(2))), 10.0);
    let mut out = actions();
    sup.exited(100, ExitStatus::Code(0), secs(10.1), &mut out);
    sup.exited(101, ExitStatus::Code(0), secs(10.2), &mut out);
    assert!(
        !sup.is_shutting_down(),
        "supervise (removed) is still stopping"
    );
    sup.exited(102, ExitStatus::Signal(15), secs(10.3), &mut out);
    assert!(sup.is_shutting_down(), "{}", logs(&out));
    assert!(logs(&out).contains("every daemon has exited"));
}

/// A reload waiting, or a file being read, when shutdown begins: refused, never applied.
#[test]
fn a_reload_overtaken_by_shutdown_is_refused() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(USR1, secs(1.0), &mut out);
    sup.control(
        7,
        ControlRequest::Reload { dry_run: false },
        secs(1.1),
        &mut out,
    );
    out.clear();
    sup.signal(TERM, secs(1.2), &mut out);
    assert!(logs(&out).contains("reload (control) ignored: shutting down"));
    sup.exited(101, ExitStatus::Signal(15), secs(1.3), &mut out);
    assert_eq!(bundle_reads(&out), []);
    // The file was being read when TERM came.
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.control(
        8,
        ControlRequest::Reload { dry_run: false },
        secs(1.0),
        &mut out,
    );
    let read = bundle_reads(&out).remove(0);
    sup.signal(TERM, secs(1.1), &mut out);
    out.clear();
    sup.bundle_read(
        read,
        Ok(edited(|p| p.daemons.truncate(1))),
        secs(1.2),
        &mut out,
    );
    assert_eq!(replies(&out), [(8, refused("shutting down", ""))]);
    assert_eq!(sup.reloads.generation.number, 1);
    assert_eq!(names(&sup), ["egress", "pipelock", "supervise"]);
}

/// An unchanged daemon's `after` follows its dependency to its new place.
#[test]
fn after_follows_a_reordered_dependency() {
    let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
    sup.ready(0, secs(0.1), &mut out);
    sup.spawned(1, Ok(101), secs(0.1), &mut out);
    let mut plan = ordered_plan(true, ExitPolicy::KeepRunning);
    plan.daemons
        .insert(0, daemon("first", ExitPolicy::KeepRunning));
    reload(&mut sup, Ok(plan), 1.0);
    assert_eq!(names(&sup), ["first", "db", "app"]);
    assert_eq!(nth(&sup, 2).after, [id(0)], "db kept its id");
}

/// An action queued before the reload was applied (a probe to stop, for a daemon that
/// died in the same loop iteration) is carried out on the right daemon: it names an id,
/// which the reload does not change.
#[test]
fn actions_queued_behind_the_file_read_stay_with_their_daemon() {
    let mut plan = ordered_plan(true, ExitPolicy::KeepRunning);
    plan.routes.set(HUP, Route::Reload);
    // db comes back after its exit, so app keeps waiting and the bundle goes on.
    plan.daemons[0].on_exit = ExitPolicy::Restart;
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    sup.spawned(0, Ok(100), secs(0.1), &mut out);
    out.clear();
    sup.signal(HUP, secs(1.0), &mut out);
    sup.exited(100, ExitStatus::Code(1), secs(1.0), &mut out);
    assert!(out.contains(&Action::StopProbe(id(0))), "{out:?}");
    let mut plan = ordered_plan(true, ExitPolicy::KeepRunning);
    plan.daemons
        .insert(0, daemon("first", ExitPolicy::KeepRunning));
    let done = drive(&mut sup, &mut out, &plan, 1.0);
    assert!(
        done.contains(&Action::StopProbe(id(0))),
        "db's probe: {done:?}"
    );
    assert_eq!(names(&sup), ["first", "db", "app"]);
    assert_eq!(nth(&sup, 1).id, id(0), "db is still #0 in its new place");
}

/// A client waiting for a restart gets its answer about its own daemon after a reload
/// moved that daemon, and after one removed it.
#[test]
fn a_restart_reply_names_its_daemon_after_a_reload_moved_or_removed_it() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.control(
        5,
        ControlRequest::Restart(vec!["supervise".into()]),
        secs(1.0),
        &mut out,
    );
    let mut moved = seed_plan(ExitPolicy::KeepRunning);
    moved.daemons.swap(0, 2);
    sup.apply_reload(moved, &[], secs(1.1), &mut out);
    sup.exited(102, ExitStatus::Signal(15), secs(1.2), &mut out);
    sup.spawned(2, Ok(300), secs(1.2), &mut out);
    assert_eq!(
        replies(&out),
        [(5, Reply::Ok("supervise restarted: pid 102 -> 300\n".into()))]
    );
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.control(
        6,
        ControlRequest::Restart(vec!["supervise".into()]),
        secs(1.0),
        &mut out,
    );
    sup.apply_reload(edited(|p| p.daemons.truncate(2)), &[], secs(1.1), &mut out);
    sup.settle(secs(1.1), &mut out);
    let answers = replies(&out);
    assert!(
        matches!(&answers[..], [(6, Reply::Err { body, .. })] if body == "supervise not restarted: removed by a reload (was pid 102)\n"),
        "{answers:?}"
    );
}

/// From the hostile review: app waited for db, and a reload removed db. app has nothing
/// left to wait for: it starts, instead of giving up at its ready-timeout.
#[test]
fn a_daemon_that_waited_only_for_a_removed_one_starts() {
    let (mut sup, _) = db_running(ExitPolicy::KeepRunning);
    assert!(matches!(
        state_of(&sup, 1),
        State::WaitingForDependencies { .. }
    ));
    let mut plan = ordered_plan(true, ExitPolicy::KeepRunning);
    plan.daemons.remove(0);
    let out = reload(&mut sup, Ok(plan), 1.0);
    assert_eq!(names(&sup), ["app"]);
    assert_eq!(spawns(&out), [1], "app starts: {}", logs(&out));
}

/// From the hostile review: while a reload restarts pipelock (its old process still
/// stopping), a dry run of the same file has nothing more to change.
#[test]
fn a_dry_run_during_a_reload_restart_compares_with_the_definition_on_its_way() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.daemons[1].argv.push("--new".into());
    reload(&mut sup, Ok(plan.clone()), 1.0);
    assert!(matches!(state_of(&sup, 1), State::Stopping { .. }));
    let mut out = actions();
    sup.control(
        3,
        ControlRequest::Reload { dry_run: true },
        secs(1.1),
        &mut out,
    );
    let read = bundle_reads(&out).remove(0);
    out.clear();
    sup.bundle_read(read, Ok(plan), secs(1.1), &mut out);
    assert_eq!(
        replies(&out),
        [(3, Reply::Ok("would reload: 3 unchanged\n".into()))]
    );
}

/// The HTTP socket is opened once, before the daemons: a reload says so rather than
/// leaving the operator to think the endpoint moved.
#[test]
fn a_reload_that_changes_http_says_the_endpoint_stays_until_a_restart() {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.http = Some("127.0.0.1:8080".into());
    let mut sup = started(plan);
    let out = reload(
        &mut sup,
        Ok(edited(|p| p.http = Some("0.0.0.0:9090".into()))),
        1.0,
    );
    assert!(
        logs(&out).contains(
            "the reloaded file has http = 0.0.0.0:9090: the HTTP endpoint keeps http = 127.0.0.1:8080 until bundle-init restarts"
        ),
        "{}",
        logs(&out)
    );
    let out = reload(
        &mut sup,
        Ok(edited(|p| p.http = Some("127.0.0.1:8080".into()))),
        2.0,
    );
    assert!(!logs(&out).contains("HTTP endpoint"), "{}", logs(&out));
    let out = reload(&mut sup, Ok(edited(|_| {})), 3.0);
    assert!(
        logs(&out).contains(
            "the reloaded file has no http line: the HTTP endpoint keeps http = 127.0.0.1:8080"
        ),
        "{}",
        logs(&out)
    );
}
