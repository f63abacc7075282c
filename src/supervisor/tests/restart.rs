//! restart

use super::*;

#[test]
fn restart_replaces_in_place_and_leaves_siblings_alone() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(USR1, secs(1.0), &mut out);
    assert_eq!(
        signals(&out),
        vec![(101, TERM)],
        "only pipelock gets its stop signal, never USR1"
    );
    out.clear();
    sup.exited(
        101,
        ExitStatus::Signal(libc_sig::TERM),
        secs(1.001),
        &mut out,
    );
    assert_eq!(
        spawns(&out),
        vec![1],
        "replacement starts as soon as the old one is reaped"
    );
    sup.spawned(1, Ok(200), secs(1.002), &mut out);
    assert_eq!(pid_of(&sup, 1), Some(200));
    assert_eq!((pid_of(&sup, 0), pid_of(&sup, 2)), (Some(100), Some(102)));
    assert!(
        logs(&out).contains("pipelock restarted (SIGUSR1): pid 101 -> 200 in 2.000 ms"),
        "{}",
        logs(&out)
    );
    assert_eq!(nth(&sup, 1).restarts, 1);
    assert_eq!(exit_code(&out), None, "a restart is not a crash");
}

#[test]
fn restart_of_a_daemon_that_ignores_its_stop_signal_kills_it_at_the_grace() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(USR1, secs(1.0), &mut out);
    assert_eq!(sup.next_deadline(), Some(secs(3.0)));
    out.clear();
    sup.tick(secs(2.9), &mut out);
    assert!(signals(&out).is_empty());
    sup.tick(secs(3.0), &mut out);
    assert_eq!(signals(&out), vec![(101, KILL)]);
    assert!(
        out.contains(&Action::Signal {
            pid: 101,
            sig: KILL,
            group: true
        }),
        "SIGKILL takes its helpers too"
    );
    out.clear();
    sup.exited(
        101,
        ExitStatus::Signal(libc_sig::KILL),
        secs(3.01),
        &mut out,
    );
    assert_eq!(spawns(&out), vec![1]);
}

#[test]
fn restart_requests_during_a_restart_coalesce() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    for _ in 0..5 {
        sup.signal(USR1, secs(1.0), &mut out);
    }
    assert_eq!(
        signals(&out),
        vec![(101, TERM)],
        "one stop signal for five requests"
    );
    sup.exited(101, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    assert_eq!(spawns(&out), vec![1], "exactly one replacement");
}

#[test]
fn a_route_to_an_unknown_or_unselected_daemon_is_a_no_op() {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.routes.set(USR1, Route::Restart(vec![]));
    plan.routes
        .set(Sig(libc_sig::USR2), Route::Restart(vec![7]));
    let mut sup = started(plan);
    let mut out = actions();
    sup.signal(USR1, secs(1.0), &mut out);
    sup.signal(Sig(libc_sig::USR2), secs(1.0), &mut out);
    assert!(signals(&out).is_empty() && spawns(&out).is_empty());
}

#[test]
fn restart_during_shutdown_is_a_no_op_and_pending_restarts_are_dropped() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(USR1, secs(1.0), &mut out); // pipelock is restarting
    sup.signal(TERM, secs(1.5), &mut out);
    out.clear();
    sup.signal(USR1, secs(1.6), &mut out);
    assert!(signals(&out).is_empty());
    assert!(logs(&out).contains("ignored: shutting down"));
    sup.exited(101, ExitStatus::Signal(libc_sig::TERM), secs(1.7), &mut out);
    assert!(spawns(&out).is_empty(), "the pending restart was dropped");
}

#[test]
fn hup_is_forwarded_to_egress_only() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(HUP, secs(1.0), &mut out);
    assert_eq!(signals(&out), vec![(100, HUP)]);
}

#[test]
fn unrouted_signals_go_to_every_daemon() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(Sig(libc_sig::USR2), secs(1.0), &mut out);
    assert_eq!(
        signals(&out),
        vec![(100, Sig(12)), (101, Sig(12)), (102, Sig(12))]
    );
}

#[test]
fn backoff_doubles_to_its_cap_and_resets_after_a_stable_run() {
    let mut sup = started(seed_plan(ExitPolicy::Restart));
    let mut out = actions();
    let mut now = 0.5;
    let mut pid = 101;
    let mut delays = Vec::new();
    for _ in 0..6 {
        sup.exited(pid, ExitStatus::Code(1), secs(now), &mut out);
        let State::Backoff { until } = state_of(&sup, 1) else {
            panic!("not in backoff")
        };
        delays.push((until - secs(now)).as_secs_f64());
        assert_eq!(sup.next_deadline(), Some(until));
        out.clear();
        sup.tick(until, &mut out);
        assert_eq!(spawns(&out), vec![1]);
        pid += 1000;
        now = until.as_secs_f64() + 0.5;
        sup.spawned(1, Ok(pid), until, &mut out);
    }
    assert_eq!(delays, vec![1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
    // A run longer than stable-after brings the delay back to the start.
    let since = now;
    sup.exited(pid, ExitStatus::Code(1), secs(since + 20.0), &mut out);
    let State::Backoff { until } = state_of(&sup, 1) else {
        panic!()
    };
    assert_eq!((until - secs(since + 20.0)).as_secs_f64(), 1.0);
}

#[test]
fn a_restart_request_during_backoff_starts_it_at_once() {
    let mut sup = started(seed_plan(ExitPolicy::Restart));
    let mut out = actions();
    sup.exited(101, ExitStatus::Code(1), secs(1.0), &mut out);
    out.clear();
    sup.signal(USR1, secs(1.1), &mut out);
    assert_eq!(spawns(&out), vec![1]);
    sup.spawned(1, Ok(300), secs(1.1), &mut out);
    assert!(logs(&out).contains("pipelock started on request (SIGUSR1): pid 300"));
    assert_eq!(sup.next_deadline(), None, "the backoff timer is gone");
}

#[test]
fn an_exec_failure_follows_the_exit_policy_and_a_fork_failure_retries() {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.daemons[2].on_exit = ExitPolicy::StopBundle;
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    let not_found = SpawnFailure {
        transient: false,
        code: 127,
        message: "/x: No such file".into(),
    };
    let fork = SpawnFailure {
        transient: true,
        code: 1,
        message: "fork failed".into(),
    };
    sup.spawned(0, Err(not_found.clone()), secs(0.0), &mut out);
    assert_eq!(state_of(&sup, 0), State::Down);
    sup.spawned(1, Err(fork), secs(0.0), &mut out);
    assert_eq!(
        state_of(&sup, 1),
        State::Backoff { until: secs(1.0) },
        "keep-running, but a fork failure retries"
    );
    sup.spawned(2, Err(not_found), secs(0.0), &mut out);
    assert!(logs(&out).contains("cannot start supervise: /x: No such file"));
    nothing_left(&mut sup, &mut out);
    assert_eq!(exit_code(&out), Some(127));
}

#[test]
fn every_stop_signal_is_followed_by_sigcont() {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.daemons[1].signal_group = true;
    let mut sup = started(plan);
    let mut out = actions();
    sup.signal(USR1, secs(1.0), &mut out);
    let sent: Vec<&Action> = out
        .iter()
        .filter(|a| matches!(a, Action::Signal { .. }))
        .collect();
    let cont = Sig(libc_sig::CONT);
    assert_eq!(
        sent,
        [
            &Action::Signal {
                pid: 101,
                sig: TERM,
                group: true
            },
            &Action::Signal {
                pid: 101,
                sig: cont,
                group: true
            }
        ],
        "a stopped daemon is continued, so it can act on its stop signal"
    );
    out.clear();
    sup.signal(TERM, secs(2.0), &mut out);
    let conts = out
        .iter()
        .filter(|a| matches!(a, Action::Signal { sig, .. } if *sig == cont))
        .count();
    assert_eq!(
        conts, 2,
        "at shutdown too, each daemon still running: {out:?}"
    );
}
