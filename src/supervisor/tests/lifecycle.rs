//! Lifecycle II: giving up on a daemon that keeps crashing.

use super::*;

/// pipelock (restart policy, `max-restarts = 2` with `on-give-up` as given) crashes with
/// code 1 three times in a row, each replacement started after its backoff.
fn crashing_three_times(give_up: crate::plan::GiveUp) -> (Supervisor, Actions) {
    let mut plan = seed_plan(ExitPolicy::Restart);
    plan.daemons[1].max_restarts = Some(2);
    plan.daemons[1].on_give_up = give_up;
    let mut sup = started(plan);
    let mut out = actions();
    let mut now = 1.0;
    for pid in [101, 201] {
        sup.exited(pid, ExitStatus::Code(1), secs(now), &mut out);
        let due = sup.next_deadline().expect("a backoff");
        sup.tick(due, &mut out);
        now = due.as_secs_f64();
        sup.spawned(1, Ok(pid + 100), secs(now), &mut out);
    }
    assert_eq!(spawns(&out), [1, 1], "two restarts");
    out.clear();
    sup.exited(301, ExitStatus::Code(1), secs(now + 0.5), &mut out);
    (sup, out)
}

#[test]
fn a_daemon_that_keeps_crashing_is_given_up_and_ends_the_bundle_with_its_code() {
    let (mut sup, mut out) = crashing_three_times(crate::plan::GiveUp::StopBundle);
    assert!(
        logs(&out).contains(
            "pipelock exited with code 1; gave up after 2 restarts: stopping the bundle (on-give-up = stop-bundle)"
        ),
        "{}",
        logs(&out)
    );
    assert!(spawns(&out).is_empty());
    assert_eq!(state_of(&sup, 1), State::GaveUp);
    assert!(sup.is_shutting_down());
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(4.0), &mut out);
    sup.exited(102, ExitStatus::Signal(libc_sig::TERM), secs(4.0), &mut out);
    nothing_left(&mut sup, &mut out);
    assert_eq!(exit_code(&out), Some(1), "the code it last crashed with");
}

#[test]
fn stay_down_leaves_it_down_and_its_siblings_running() {
    let (sup, out) = crashing_three_times(crate::plan::GiveUp::StayDown);
    assert!(
        logs(&out).contains("gave up after 2 restarts: it stays down (on-give-up = stay-down)"),
        "{}",
        logs(&out)
    );
    assert!(!sup.is_shutting_down());
    assert_eq!((pid_of(&sup, 0), pid_of(&sup, 2)), (Some(100), Some(102)));
    let status = sup.status_lines(secs(5.0)).join("\n");
    assert!(
        status.contains("gave up after 2 restarts (last: exited with code 1)"),
        "{status}"
    );
    assert_eq!(
        sup.health(),
        Err(vec![
            "pipelock gave up after 2 restarts (last: exited with code 1)".to_string()
        ])
    );
    assert_eq!(
        sup.next_deadline(),
        None,
        "nothing is due: it is not restarted"
    );
}

#[test]
fn a_stable_run_resets_the_count_toward_giving_up() {
    let mut plan = seed_plan(ExitPolicy::Restart);
    plan.daemons[1].max_restarts = Some(1);
    let mut sup = started(plan);
    let mut out = actions();
    sup.exited(101, ExitStatus::Code(1), secs(1.0), &mut out);
    sup.tick(secs(2.0), &mut out);
    sup.spawned(1, Ok(201), secs(2.0), &mut out);
    // Ran longer than stable-after (10 s): its next crash is the first in a row.
    sup.exited(201, ExitStatus::Code(1), secs(20.0), &mut out);
    assert!(matches!(state_of(&sup, 1), State::Backoff { .. }));
    assert!(!logs(&out).contains("gave up"));
}

#[test]
fn a_restart_request_starts_a_daemon_that_was_given_up_with_its_restarts_again() {
    let (mut sup, mut out) = crashing_three_times(crate::plan::GiveUp::StayDown);
    let outcome = sup.request_restart(id(1), Cause::Control, secs(6.0), &mut out);
    assert_eq!(outcome, RestartOutcome::Begun);
    assert_eq!(spawns(&out), [1]);
    sup.spawned(1, Ok(401), secs(6.0), &mut out);
    out.clear();
    sup.exited(401, ExitStatus::Code(1), secs(6.5), &mut out);
    assert!(
        matches!(state_of(&sup, 1), State::Backoff { .. }),
        "one crash after the request is the first of a new count"
    );
}

fn stop(sup: &mut Supervisor, client: ClientId, name: &str, now: f64, out: &mut Effects) {
    sup.control(
        client,
        ControlRequest::Stop(vec![name.into()]),
        secs(now),
        out,
    );
}

fn start(sup: &mut Supervisor, client: ClientId, name: &str, now: f64, out: &mut Effects) {
    sup.control(
        client,
        ControlRequest::Start(vec![name.into()]),
        secs(now),
        out,
    );
}

#[test]
fn a_daemon_stopped_by_request_stays_down_whatever_its_policy_and_routes_say() {
    let mut sup = started(seed_plan(ExitPolicy::Restart));
    let mut out = actions();
    stop(&mut sup, 7, "pipelock", 1.0, &mut out);
    assert_eq!(signals(&out), [(101, TERM)]);
    assert!(replies(&out).is_empty(), "answered once it is down");
    sup.exited(101, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    assert_eq!(
        replies(&out),
        [(7, Reply::Ok("pipelock stopped (was pid 101)\n".into()))]
    );
    assert_eq!(state_of(&sup, 1), State::StoppedByRequest);
    assert_eq!(sup.next_deadline(), None, "no backoff: it is not restarted");
    out.clear();
    sup.signal(USR1, secs(2.0), &mut out);
    assert!(
        spawns(&out).is_empty(),
        "a restart route does not revive it"
    );
    assert!(
        logs(&out).contains("it was stopped by request"),
        "{}",
        logs(&out)
    );
    assert_eq!(sup.health(), Ok(()), "down as asked is healthy");
    let status = sup.status_lines(secs(2.0)).join("\n");
    assert!(status.contains("(stopped by request)"), "{status}");
    assert_eq!((pid_of(&sup, 0), pid_of(&sup, 2)), (Some(100), Some(102)));

    sup.signal(TERM, secs(3.0), &mut out);
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(3.1), &mut out);
    sup.exited(102, ExitStatus::Signal(libc_sig::TERM), secs(3.1), &mut out);
    nothing_left(&mut sup, &mut out);
    assert_eq!(exit_code(&out), Some(0), "its stop counts for nothing");
}

#[test]
fn start_brings_a_stopped_daemon_back_and_is_answered_once_it_runs() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    stop(&mut sup, 7, "pipelock", 1.0, &mut out);
    sup.exited(101, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    out.clear();
    start(&mut sup, 8, "pipelock", 2.0, &mut out);
    assert_eq!(spawns(&out), [1]);
    assert!(replies(&out).is_empty());
    sup.spawned(1, Ok(201), secs(2.0), &mut out);
    assert_eq!(
        replies(&out),
        [(8, Reply::Ok("pipelock started: pid 201\n".into()))]
    );
    out.clear();
    start(&mut sup, 9, "pipelock", 3.0, &mut out);
    assert!(spawns(&out).is_empty());
    assert_eq!(
        replies(&out),
        [(9, Reply::Ok("pipelock started: pid 201\n".into()))]
    );
}

#[test]
fn a_start_asked_for_while_the_stop_is_under_way_comes_once_it_is_down() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    stop(&mut sup, 7, "pipelock", 1.0, &mut out);
    start(&mut sup, 8, "pipelock", 1.05, &mut out);
    assert!(spawns(&out).is_empty(), "not beside the old process");
    sup.exited(101, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    assert_eq!(spawns(&out), [1]);
    sup.spawned(1, Ok(201), secs(1.1), &mut out);
    let answers = replies(&out);
    assert!(
        answers.contains(&(8, Reply::Ok("pipelock started: pid 201\n".into()))),
        "{answers:?}"
    );
    assert!(
        matches!(
            &answers[..],
            [(7, Reply::Err { .. }), _] | [_, (7, Reply::Err { .. })]
        ),
        "the stop was overtaken by the start: {answers:?}"
    );
}

#[test]
fn autostart_no_leaves_a_daemon_down_until_a_start() {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.daemons[2].autostart = false;
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    assert_eq!(spawns(&out), [0, 1], "supervise is not started");
    let status = sup.status_lines(secs(0.0)).join("\n");
    assert!(status.contains("(autostart = no)"), "{status}");
    start(&mut sup, 7, "supervise", 1.0, &mut out);
    assert_eq!(spawns(&out), [0, 1, 2]);
}

#[test]
fn the_bundle_does_not_end_when_its_last_running_daemon_is_stopped_by_request() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.exited(100, ExitStatus::Code(0), secs(1.0), &mut out);
    sup.exited(102, ExitStatus::Code(0), secs(1.0), &mut out);
    stop(&mut sup, 7, "pipelock", 1.5, &mut out);
    sup.exited(101, ExitStatus::Signal(libc_sig::TERM), secs(1.6), &mut out);
    assert!(!sup.is_shutting_down(), "{}", logs(&out));
    assert_eq!(exit_code(&out), None);
}

#[test]
fn a_stop_of_a_daemon_in_backoff_takes_its_restart_back() {
    let mut sup = started(seed_plan(ExitPolicy::Restart));
    let mut out = actions();
    sup.exited(101, ExitStatus::Code(1), secs(1.0), &mut out);
    stop(&mut sup, 7, "pipelock", 1.2, &mut out);
    assert_eq!(
        replies(&out),
        [(7, Reply::Ok("pipelock stopped (was pid -)\n".into()))]
    );
    sup.tick(secs(5.0), &mut out);
    assert!(spawns(&out).is_empty());
}

/// db (pid 100) and app (pid 101, after db) running, each with a 2 s grace, the shutdown
/// budget `budget` seconds.
fn app_after_db(budget: f64, order: crate::plan::StopOrder) -> Supervisor {
    let mut plan = ordered_plan(false, ExitPolicy::KeepRunning);
    plan.shutdown_grace = secs(budget);
    plan.stop_order = order;
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    sup.spawned(0, Ok(100), secs(0.0), &mut out);
    sup.spawned(1, Ok(101), secs(0.0), &mut out);
    assert_eq!(spawns(&out), [0, 1]);
    sup
}

#[test]
fn at_shutdown_a_daemon_stops_only_once_what_starts_after_it_has_exited() {
    let mut sup = app_after_db(8.0, crate::plan::StopOrder::Dependencies);
    let mut out = actions();
    sup.signal(TERM, secs(1.0), &mut out);
    assert_eq!(
        signals(&out),
        [(101, TERM)],
        "app first; db keeps serving it"
    );
    out.clear();
    sup.exited(101, ExitStatus::Signal(libc_sig::TERM), secs(1.5), &mut out);
    assert_eq!(signals(&out), [(100, TERM)], "then db");
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(1.6), &mut out);
    nothing_left(&mut sup, &mut out);
    assert_eq!(exit_code(&out), Some(0));
}

#[test]
fn a_dependent_that_ignores_its_stop_signal_is_killed_in_time_for_what_it_depends_on() {
    let mut sup = app_after_db(8.0, crate::plan::StopOrder::Dependencies);
    let mut out = actions();
    sup.signal(TERM, secs(1.0), &mut out);
    assert_eq!(
        sup.next_deadline(),
        Some(secs(3.0)),
        "app's own grace fits the budget"
    );
    sup.tick(secs(3.0), &mut out);
    assert_eq!(signals(&out), [(101, TERM), (101, KILL)]);
    out.clear();
    sup.exited(
        101,
        ExitStatus::Signal(libc_sig::KILL),
        secs(3.01),
        &mut out,
    );
    assert_eq!(signals(&out), [(100, TERM)]);
    assert_eq!(
        nth(&sup, 0).deadline(),
        Some(secs(5.01)),
        "db gets its whole grace, inside the budget (ends at 9 s)"
    );
}

#[test]
fn graces_longer_than_the_budget_shrink_in_proportion_along_the_chain() {
    // Graces 2 s + 2 s along the chain, budget 2 s: each gets half.
    let mut sup = app_after_db(2.0, crate::plan::StopOrder::Dependencies);
    let mut out = actions();
    sup.signal(TERM, secs(1.0), &mut out);
    assert_eq!(
        nth(&sup, 1).deadline(),
        Some(secs(2.0)),
        "app is killed with 1 s of the budget left for db"
    );
}

#[test]
fn stop_order_together_stops_every_daemon_at_once() {
    let mut sup = app_after_db(8.0, crate::plan::StopOrder::Together);
    let mut out = actions();
    sup.signal(TERM, secs(1.0), &mut out);
    assert_eq!(signals(&out), [(100, TERM), (101, TERM)]);
}

#[test]
fn a_daemon_still_waiting_for_its_dependents_at_the_budgets_end_is_killed_with_the_rest() {
    let mut sup = app_after_db(8.0, crate::plan::StopOrder::Dependencies);
    let mut out = actions();
    sup.signal(TERM, secs(1.0), &mut out);
    sup.tick(secs(3.0), &mut out);
    out.clear();
    // app is SIGKILLed but never reaped (stuck in the kernel): db still waits.
    sup.tick(secs(9.0), &mut out);
    assert!(
        signals(&out).contains(&(100, KILL)),
        "db is killed at the budget's end: {:?}",
        signals(&out)
    );
}

/// db (0), then migrate (1, a oneshot after db), then app (2, after migrate); migrate
/// runs as pid 101, app is waiting for it.
fn migrating(on_failure: Option<crate::plan::OnFailure>) -> (Supervisor, Actions) {
    let db = daemon("db", ExitPolicy::KeepRunning);
    let mut migrate = daemon("migrate", ExitPolicy::KeepRunning);
    migrate.oneshot = true;
    migrate.after = vec!["db".into()];
    migrate.timeout = Some(secs(5.0));
    migrate.on_failure = on_failure;
    let mut app = daemon("app", ExitPolicy::KeepRunning);
    app.after = vec!["migrate".into()];
    app.ready_timeout = secs(10.0);
    let plan = Plan {
        daemons: vec![db, migrate, app],
        ..ordered_plan(false, ExitPolicy::KeepRunning)
    };
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    sup.spawned(0, Ok(100), secs(0.0), &mut out);
    assert_eq!(spawns(&out), [0, 1], "migrate runs once db is ready");
    sup.spawned(1, Ok(101), secs(0.0), &mut out);
    assert_eq!(spawns(&out), [0, 1], "app waits for migrate to exit 0");
    out.clear();
    (sup, out)
}

#[test]
fn a_setup_task_runs_once_and_what_starts_after_it_waits_for_its_exit_0() {
    let (mut sup, mut out) = migrating(None);
    sup.exited(101, ExitStatus::Code(0), secs(1.2), &mut out);
    assert_eq!(spawns(&out), [2], "app starts once migrate is done");
    assert!(
        logs(&out).contains("migrate done (exit 0 after 1.200 s)"),
        "{}",
        logs(&out)
    );
    let status = sup.status_lines(secs(2.0)).join("\n");
    assert!(
        status.lines().any(|l| l.starts_with("migrate ")
            && l.contains(" done ")
            && l.ends_with("(exit 0 after 1.200 s)")),
        "{status}"
    );
    sup.spawned(2, Ok(102), secs(1.2), &mut out);
    assert_eq!(sup.health(), Ok(()), "a task that did its job is healthy");
    assert_eq!(sup.next_deadline(), None, "it is not run again");
}

/// The recipe in examples/postgres-app: app waits for db through migrate, a oneshot that is
/// done by the time of the stop. db used to get its stop signal with app's, since nothing
/// alive started after it directly, and app lost its database while it stopped.
#[test]
fn at_shutdown_a_daemon_waits_for_what_starts_after_it_through_a_finished_setup_task() {
    let (mut sup, mut out) = migrating(None);
    sup.exited(101, ExitStatus::Code(0), secs(1.0), &mut out);
    sup.spawned(2, Ok(102), secs(1.0), &mut out);
    out.clear();
    sup.signal(TERM, secs(2.0), &mut out);
    assert_eq!(
        signals(&out),
        [(102, TERM)],
        "app first; db keeps serving it"
    );
    out.clear();
    sup.exited(102, ExitStatus::Signal(libc_sig::TERM), secs(2.5), &mut out);
    assert_eq!(signals(&out), [(100, TERM)], "then db");
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(2.6), &mut out);
    nothing_left(&mut sup, &mut out);
    assert_eq!(exit_code(&out), Some(0));
}

#[test]
fn a_failed_setup_task_ends_the_bundle_with_its_code_and_nothing_after_it_starts() {
    let (mut sup, mut out) = migrating(None);
    sup.exited(101, ExitStatus::Code(3), secs(1.0), &mut out);
    assert!(spawns(&out).is_empty());
    assert!(sup.is_shutting_down());
    assert!(
        logs(&out).contains("migrate failed (exit 3): stopping the bundle; nothing that waits for it starts (on-failure = stop-bundle)"),
        "{}",
        logs(&out)
    );
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    nothing_left(&mut sup, &mut out);
    assert_eq!(exit_code(&out), Some(3));
}

#[test]
fn a_setup_task_past_its_timeout_is_stopped_and_fails_with_124() {
    let (mut sup, mut out) = migrating(None);
    assert_eq!(sup.next_deadline(), Some(secs(5.0)));
    sup.tick(secs(5.0), &mut out);
    assert_eq!(signals(&out), [(101, TERM)]);
    assert!(logs(&out).contains("migrate did not finish within its timeout (5s): sending SIGTERM"));
    sup.exited(101, ExitStatus::Signal(libc_sig::TERM), secs(5.1), &mut out);
    assert!(
        logs(&out).contains("migrate failed (timed out after 5s)"),
        "{}",
        logs(&out)
    );
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(5.2), &mut out);
    nothing_left(&mut sup, &mut out);
    assert_eq!(exit_code(&out), Some(124));
    assert!(spawns(&out).is_empty(), "app never started");
}

#[test]
fn keep_running_leaves_what_waits_for_a_failed_task_waiting_until_its_ready_timeout() {
    let (mut sup, mut out) = migrating(Some(crate::plan::OnFailure::KeepRunning));
    sup.exited(101, ExitStatus::Code(3), secs(1.0), &mut out);
    assert!(!sup.is_shutting_down());
    assert!(spawns(&out).is_empty());
    assert_eq!(
        sup.health(),
        Err(vec![
            "migrate failed (exit 3)".to_string(),
            "app is waiting for what it starts after".to_string()
        ])
    );
    sup.tick(secs(10.0), &mut out);
    assert!(logs(&out).contains("app gave up waiting"), "{}", logs(&out));
}

#[test]
fn start_runs_a_setup_task_again() {
    let (mut sup, mut out) = migrating(None);
    sup.exited(101, ExitStatus::Code(0), secs(1.0), &mut out);
    sup.spawned(2, Ok(102), secs(1.0), &mut out);
    out.clear();
    sup.control(
        7,
        ControlRequest::Start(vec!["migrate".into()]),
        secs(2.0),
        &mut out,
    );
    assert_eq!(spawns(&out), [1]);
    sup.spawned(1, Ok(201), secs(2.0), &mut out);
    assert_eq!(
        replies(&out),
        [(7, Reply::Ok("migrate started: pid 201\n".into()))]
    );
}
