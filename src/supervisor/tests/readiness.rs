//! readiness

use super::*;

#[test]
fn probes_start_with_a_running_daemon_and_stop_when_it_leaves() {
    let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
    assert!(out.contains(&Action::StartProbe {
        id: id(0),
        pid: 100
    }));
    out.clear();
    // Restarted before it was ready: the probe about the old process stops.
    sup.request_restart(id(0), Cause::Control, secs(1.0), &mut out);
    assert_eq!(out.iter().next(), Some(&Action::StopProbe(id(0))));
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    sup.spawned(0, Ok(101), secs(1.2), &mut out);
    assert!(out.contains(&Action::StartProbe {
        id: id(0),
        pid: 101
    }));
    out.clear();
    // Ready: the probe stopped by itself, so a later exit stops nothing.
    sup.ready(0, secs(2.0), &mut out);
    assert_eq!(spawns(&out), [1], "app, which starts after db, starts now");
    out.clear();
    sup.exited(101, ExitStatus::Code(1), secs(3.0), &mut out);
    assert!(
        !out.iter().any(|a| matches!(a, Action::StopProbe(_))),
        "{out:?}"
    );
}

#[test]
fn a_daemon_starts_only_after_what_it_waits_for_is_ready() {
    let mut sup = Supervisor::new(ordered_plan(true, ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    assert_eq!(spawns(&out), vec![0], "app waits");
    assert!(logs(&out).contains("app waits for db to be ready"));
    out.clear();
    sup.spawned(0, Ok(100), secs(0.1), &mut out);
    assert!(
        spawns(&out).is_empty(),
        "running is not ready when there is a check"
    );
    assert_eq!(sup.next_deadline(), Some(secs(5.0)));
    sup.ready(0, secs(0.5), &mut out);
    assert_eq!(spawns(&out), vec![1]);
    assert!(logs(&out).contains("db is ready"));
    assert!(nth(&sup, 0).is_ready());
    sup.spawned(1, Ok(101), secs(0.6), &mut out);
    assert_eq!(
        sup.health(),
        Ok(()),
        "ready with a check, and running without one"
    );
}

/// A probe's report counts once, and only for a process that is running: one that
/// arrives late (the daemon died meanwhile) or twice changes nothing.
#[test]
fn a_ready_report_counts_once_and_only_while_running() {
    let (mut sup, mut out) = db_running(ExitPolicy::Restart);
    sup.ready(0, secs(0.5), &mut out);
    out.clear();
    sup.ready(0, secs(0.6), &mut out);
    assert!(out.is_empty(), "a second report: {out:?}");
    sup.exited(100, ExitStatus::Code(1), secs(1.0), &mut out);
    out.clear();
    sup.ready(0, secs(1.1), &mut out);
    assert!(out.is_empty(), "a late report for a dead process: {out:?}");
    assert!(!nth(&sup, 0).is_ready());
    assert!(sup.health().unwrap_err()[0].starts_with("db is down"));
}

/// `restarts` counts every start after the first, whatever caused it, and the log says
/// which kind of start it was.
#[test]
fn starts_are_counted_and_named_by_their_cause() {
    let mut plan = seed_plan(ExitPolicy::Restart);
    plan.daemons.truncate(1);
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    sup.spawned(0, Ok(100), secs(0.0), &mut out);
    assert_eq!(logs(&out), "egress started: pid 100");
    assert_eq!(nth(&sup, 0).restarts, 0);
    out.clear();
    sup.exited(100, ExitStatus::Code(1), secs(20.0), &mut out);
    sup.tick(secs(21.0), &mut out);
    sup.spawned(0, Ok(101), secs(21.0), &mut out);
    assert!(
        logs(&out).ends_with("egress started again: pid 101"),
        "{}",
        logs(&out)
    );
    assert_eq!(nth(&sup, 0).restarts, 1, "a crash restart counts");
    out.clear();
    sup.request_restart(id(0), Cause::Control, secs(30.0), &mut out);
    sup.exited(
        101,
        ExitStatus::Signal(libc_sig::TERM),
        secs(30.1),
        &mut out,
    );
    sup.spawned(0, Ok(102), secs(30.2), &mut out);
    assert!(logs(&out).contains("egress restarted (control): pid 101 -> 102"));
    assert_eq!(nth(&sup, 0).restarts, 2, "a requested restart counts");
}

#[test]
fn without_a_check_running_is_ready() {
    let mut sup = Supervisor::new(ordered_plan(false, ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    sup.spawned(0, Ok(100), secs(0.1), &mut out);
    assert_eq!(spawns(&out), vec![0, 1]);
}

#[test]
fn a_wait_that_times_out_follows_the_exit_policy() {
    let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
    out.clear();
    sup.tick(secs(5.0), &mut out);
    assert!(
        logs(&out).contains("app gave up waiting after 5s"),
        "{}",
        logs(&out)
    );
    assert!(
        !logs(&out).contains("exited"),
        "a daemon that never ran did not exit: {}",
        logs(&out)
    );
    assert_eq!(state_of(&sup, 1), State::GaveUpWaiting);
    assert_eq!(
        sup.health().unwrap_err(),
        vec![
            "db is running but not ready".to_string(),
            "app was not started: what it starts after was not ready".to_string()
        ]
    );

    let (mut sup, mut out) = db_running(ExitPolicy::Restart);
    sup.tick(secs(5.0), &mut out);
    assert_eq!(state_of(&sup, 1), State::Backoff { until: secs(6.0) });
    sup.tick(secs(6.0), &mut out);
    assert_eq!(
        state_of(&sup, 1),
        State::WaitingForDependencies { until: secs(11.0) },
        "waits again after the backoff"
    );

    let (mut sup, mut out) = db_running(ExitPolicy::StopBundle);
    sup.tick(secs(5.0), &mut out);
    assert_eq!(
        signals(&out),
        vec![(100, TERM)],
        "stop-bundle: everything stops"
    );
}

#[test]
fn readiness_ends_with_the_process() {
    let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
    sup.ready(0, secs(0.2), &mut out);
    sup.exited(100, ExitStatus::Code(0), secs(1.0), &mut out);
    assert!(!nth(&sup, 0).is_ready());
    assert!(sup.status_lines(secs(1.0))[0].contains("ready no"));
}

// ------------------------------------------------------------------ reload

/// Hardening III, item 5: what a daemon waits for ended for good (keep-running): it gives
/// up at once, saying why, instead of waiting out its ready-timeout; and a later start
/// does not wait at all.
#[test]
fn a_wait_for_a_daemon_that_ended_for_good_gives_up_at_once() {
    let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
    out.clear();
    sup.exited(100, ExitStatus::Code(3), secs(0.5), &mut out);
    assert!(
        logs(&out).contains(
            "app gave up waiting for db: it exited with code 3 and stays down; not started (keep-running)"
        ),
        "{}",
        logs(&out)
    );
    assert_eq!(state_of(&sup, 1), State::GaveUpWaiting);
    assert!(
        logs(&out).contains("every daemon has exited"),
        "nothing is left to wait for"
    );
    assert_eq!(
        sup.next_deadline(),
        Some(secs(8.5)),
        "only the shutdown budget"
    );

    // Under restart, it tries again after its backoff, and gives up again at once.
    let (mut sup, mut out) = db_running(ExitPolicy::Restart);
    sup.exited(100, ExitStatus::Code(3), secs(0.5), &mut out);
    assert_eq!(state_of(&sup, 1), State::Backoff { until: secs(1.5) });
    out.clear();
    sup.tick(secs(1.5), &mut out);
    assert!(
        logs(&out).contains("app gave up waiting for db"),
        "{}",
        logs(&out)
    );
    assert_eq!(state_of(&sup, 1), State::Backoff { until: secs(3.5) });
}
