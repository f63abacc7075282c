//! control

use super::*;

#[test]
fn control_status_health_and_signal_are_answered_at_once() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.control(
        1,
        ControlRequest::Status { json: false },
        secs(5.0),
        &mut out,
    );
    let [(1, Reply::Ok(status))] = &replies(&out)[..] else {
        panic!("{out:?}");
    };
    assert_eq!(status.lines().count(), 4);
    assert!(status.ends_with("bundle file generation 1, loaded 5s ago\n"));
    assert!(
        status.starts_with("egress           running   pid 100     up 5s        restarts 0"),
        "{status}"
    );
    out.clear();
    sup.control(2, ControlRequest::Health, secs(5.0), &mut out);
    assert_eq!(replies(&out), [(2, Reply::Ok("healthy\n".into()))]);
    out.clear();
    sup.control(
        3,
        ControlRequest::Signal("egress".into(), HUP),
        secs(5.0),
        &mut out,
    );
    assert_eq!(signals(&out), [(100, HUP)]);
    assert_eq!(
        replies(&out),
        [(3, Reply::Ok("sent SIGHUP to egress (pid 100)\n".into()))]
    );
    out.clear();
    sup.control(
        4,
        ControlRequest::Signal("egres".into(), HUP),
        secs(5.0),
        &mut out,
    );
    assert!(signals(&out).is_empty());
    let why = "unknown daemon \"egres\" (known: egress, pipelock, supervise)";
    assert_eq!(replies(&out), [(4, refused(why, ""))]);
}

#[test]
fn control_restart_is_answered_when_the_replacement_runs() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.control(
        7,
        ControlRequest::Restart(vec!["pipelock".into()]),
        secs(1.0),
        &mut out,
    );
    assert_eq!(signals(&out), [(101, TERM)]);
    assert!(replies(&out).is_empty(), "not before the new process runs");
    out.clear();
    sup.exited(101, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    assert!(replies(&out).is_empty());
    sup.spawned(1, Ok(200), secs(1.2), &mut out);
    assert_eq!(
        replies(&out),
        [(7, Reply::Ok("pipelock restarted: pid 101 -> 200\n".into()))]
    );
    assert_eq!(sup.next_deadline(), None, "nobody is waiting any more");
}

#[test]
fn control_restart_that_never_finishes_is_answered_at_its_deadline() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.control(
        7,
        ControlRequest::Restart(vec!["pipelock".into()]),
        secs(1.0),
        &mut out,
    );
    // The grace is 2 s: SIGKILL at 3 s, and the reply's deadline at 2 + 5 s after asking.
    assert_eq!(sup.next_deadline(), Some(secs(3.0)));
    sup.tick(secs(3.0), &mut out);
    assert_eq!(sup.next_deadline(), Some(secs(8.0)));
    out.clear();
    sup.tick(secs(8.0), &mut out);
    let body = "pipelock not restarted: did not come back up (was pid 101)\n";
    assert_eq!(replies(&out), [(7, refused("restart failed", body))]);
}

#[test]
fn control_restart_whose_replacement_cannot_start_is_answered_at_once() {
    let mut plan = seed_plan(ExitPolicy::Restart);
    plan.daemons.truncate(1);
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    sup.spawned(0, Ok(100), secs(0.0), &mut out);
    sup.control(
        3,
        ControlRequest::Restart(vec!["egress".into()]),
        secs(1.0),
        &mut out,
    );
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    out.clear();
    let failure = SpawnFailure {
        transient: true,
        code: 126,
        message: "fork failed".into(),
    };
    sup.spawned(0, Err(failure), secs(1.2), &mut out);
    let body = "egress not restarted: did not come back up (was pid 100)\n";
    assert_eq!(replies(&out), [(3, refused("restart failed", body))]);
}

#[test]
fn control_restarts_refused_are_answered_at_once_with_the_reason() {
    let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
    out.clear();
    sup.control(
        1,
        ControlRequest::Restart(vec!["app".into()]),
        secs(1.0),
        &mut out,
    );
    let body = "app not restarted: it is waiting for what it starts after (was pid -)\n";
    assert_eq!(replies(&out), [(1, refused("restart failed", body))]);
    assert!(logs(&out).contains("restart of app (control) ignored: it is waiting"));
    out.clear();
    sup.signal(TERM, secs(2.0), &mut out);
    out.clear();
    sup.control(
        2,
        ControlRequest::Restart(vec!["db".into()]),
        secs(2.0),
        &mut out,
    );
    let db = pid_of(&sup, 0).unwrap();
    let body = format!("db not restarted: shutting down (was pid {db})\n");
    assert_eq!(replies(&out), [(2, refused("restart failed", &body))]);
    assert!(logs(&out).contains("restart of db (control) ignored: shutting down"));
}

#[test]
fn a_shutdown_answers_the_clients_still_waiting_for_a_restart() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.control(
        5,
        ControlRequest::Restart(vec!["egress".into()]),
        secs(1.0),
        &mut out,
    );
    out.clear();
    sup.signal(TERM, secs(1.5), &mut out);
    sup.tick(secs(1.5), &mut out);
    let body = "egress not restarted: shutting down (was pid 100)\n";
    assert_eq!(replies(&out), [(5, refused("restart failed", body))]);
}

#[test]
fn orphans_are_not_mistaken_for_daemons() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.exited(4242, ExitStatus::Code(0), secs(1.0), &mut out);
    assert_eq!(
        logs(&out),
        "Reaped zombie process with pid=4242 (exited with code 0)"
    );
    assert!(
        out.iter()
            .all(|a| matches!(a, Action::Log(Level::Debug, _)))
    );
    assert!(
        sup.daemons()
            .all(|d| matches!(d.state(), State::Running { .. }))
    );
    out.clear();
    let mut out = Effects::new(1, false, false);
    sup.exited(4243, ExitStatus::Code(0), secs(1.0), &mut out);
    assert!(
        out.is_empty(),
        "a flood of orphans costs no line by default"
    );
    let mut out = Effects::new(1, false, true);
    sup.exited(4244, ExitStatus::Signal(9), secs(1.0), &mut out);
    assert_eq!(
        logs(&out),
        "Reaped zombie process with pid=4244 (was killed by SIGKILL)"
    );
}

/// A section's name signals every running instance; an instance's name only that one.
#[test]
fn control_signal_by_a_section_name_reaches_every_instance() {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    for daemon in &mut plan.daemons[1..] {
        daemon.instance_of = Some("w".into());
    }
    let mut sup = started(plan);
    let mut out = actions();
    sup.control(
        1,
        ControlRequest::Signal("w".into(), HUP),
        secs(1.0),
        &mut out,
    );
    assert_eq!(signals(&out), [(101, HUP), (102, HUP)]);
    assert_eq!(
        replies(&out),
        [(
            1,
            Reply::Ok(
                "sent SIGHUP to pipelock (pid 101)\nsent SIGHUP to supervise (pid 102)\n".into()
            )
        )]
    );
    out.clear();
    sup.control(
        2,
        ControlRequest::Signal("supervise".into(), HUP),
        secs(1.0),
        &mut out,
    );
    assert_eq!(signals(&out), [(102, HUP)]);
}
