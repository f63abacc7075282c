//! shutdown

use super::*;

#[test]
fn shutdown_stops_everyone_then_kills_at_the_deadline_and_ignores_a_second_request() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    for d in &mut sup.daemons {
        d.spec.grace = secs(30.0); // longer than the budget: the budget wins
    }
    let mut out = actions();
    sup.signal(TERM, secs(1.0), &mut out);
    assert_eq!(signals(&out), vec![(100, TERM), (101, TERM), (102, TERM)]);
    out.clear();
    sup.signal(Sig(libc_sig::INT), secs(2.0), &mut out);
    assert!(signals(&out).is_empty());
    assert!(logs(&out).contains("already shutting down"));
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(2.0), &mut out);
    sup.exited(102, ExitStatus::Code(0), secs(2.0), &mut out);
    sup.reaped(true, secs(0.0), &mut out);
    assert_eq!(exit_code(&out), None);
    assert_eq!(sup.next_deadline(), Some(secs(9.0)));
    out.clear();
    sup.tick(secs(9.0), &mut out);
    assert_eq!(signals(&out), vec![(101, KILL)]);
    assert!(out.contains(&Action::SignalLeftovers(KILL)));
    sup.exited(
        101,
        ExitStatus::Signal(libc_sig::KILL),
        secs(9.01),
        &mut out,
    );
    nothing_left(&mut sup, &mut out);
    assert_eq!(
        exit_code(&out),
        Some(137),
        "a daemon that had to be killed is not a clean stop"
    );
}

#[test]
fn a_clean_shutdown_exits_zero_after_terming_leftovers() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(TERM, secs(1.0), &mut out);
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    sup.exited(101, ExitStatus::Code(143), secs(1.1), &mut out);
    sup.exited(102, ExitStatus::Code(0), secs(1.1), &mut out);
    sup.reaped(true, secs(0.0), &mut out);
    assert!(
        out.contains(&Action::SignalLeftovers(TERM)),
        "orphans get TERM once the daemons are gone"
    );
    assert_eq!(exit_code(&out), None);
    nothing_left(&mut sup, &mut out);
    assert_eq!(exit_code(&out), Some(0));
}

/// The seed bundle shut down at 1 s, its three daemons gone at 1.1 s by their TERM,
/// orphans left: the first sweep (TERM) went out, and the driver's pass after it
/// reported children still there.
fn shut_down_leaving_orphans() -> (Supervisor, Actions) {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(TERM, secs(1.0), &mut out);
    for pid in [100, 101, 102] {
        sup.exited(pid, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    }
    sup.reaped(true, secs(1.1), &mut out);
    assert!(out.contains(&Action::SignalLeftovers(TERM)), "{out:?}");
    sup.reaped(true, secs(1.1), &mut out);
    (sup, out)
}

/// With no daemon left but orphans still alive, only the shutdown deadline can wake
/// the loop to SIGKILL them.
#[test]
fn leftovers_that_outlive_their_term_are_killed_at_the_deadline() {
    let (mut sup, mut out) = shut_down_leaving_orphans();
    assert_eq!(sup.next_deadline(), Some(secs(9.0)));
    out.clear();
    sup.tick(secs(9.0), &mut out);
    assert!(out.contains(&Action::SignalLeftovers(KILL)), "{out:?}");
}

/// Orphans adopted during the sweep are swept too: a pass that reaped someone while
/// children remain signals again (TERM before the budget is over, KILL after). After
/// the KILL round it looks again every 100 ms, and gives up 2 s after the budget.
#[test]
fn the_sweep_follows_adoptions_until_no_child_is_left() {
    let sweeps = |out: &Actions| -> Vec<Sig> {
        out.iter()
            .filter_map(|a| match a {
                Action::SignalLeftovers(sig) => Some(*sig),
                _ => None,
            })
            .collect()
    };
    let (mut sup, mut out) = shut_down_leaving_orphans();
    out.clear();
    sup.exited(200, ExitStatus::Code(0), secs(2.0), &mut out);
    sup.reaped(true, secs(2.0), &mut out);
    assert_eq!(sweeps(&out), [TERM], "200's children were adopted");
    sup.reaped(true, secs(2.0), &mut out);
    out.clear();
    sup.reaped(true, secs(3.0), &mut out);
    assert!(
        sweeps(&out).is_empty(),
        "nobody reaped: nothing new to sweep"
    );
    sup.tick(secs(9.0), &mut out);
    assert_eq!(sweeps(&out), [KILL], "the budget is over");
    sup.reaped(true, secs(9.0), &mut out);
    assert_eq!(exit_code(&out), None, "children remain: no exit yet");
    assert_eq!(sup.next_deadline(), Some(secs(9.1)));
    out.clear();
    sup.tick(secs(9.1), &mut out);
    assert_eq!(sweeps(&out), [KILL], "looked again");
    sup.reaped(true, secs(9.1), &mut out);
    out.clear();
    sup.exited(
        201,
        ExitStatus::Signal(libc_sig::KILL),
        secs(9.15),
        &mut out,
    );
    sup.reaped(true, secs(9.15), &mut out);
    assert_eq!(sweeps(&out), [KILL], "201's children were adopted");
    sup.reaped(true, secs(9.15), &mut out);
    assert_eq!(sup.next_deadline(), Some(secs(9.25)));
    out.clear();
    sup.tick(secs(11.0), &mut out);
    assert!(logs(&out).contains("processes are still left 2s after SIGKILL"));
    assert_eq!(exit_code(&out), Some(0));
}

/// A daemon that outlives its SIGKILL (stuck in the kernel) is waited for through
/// SIGCHLD. The sweep's rescan must not become a deadline that stays in the past: the
/// loop would spin at full CPU until the daemon is reaped.
#[test]
fn no_rescan_deadline_while_a_killed_daemon_is_not_reaped_yet() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(TERM, secs(1.0), &mut out);
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    sup.exited(102, ExitStatus::Code(0), secs(1.1), &mut out);
    sup.reaped(true, secs(1.1), &mut out);
    sup.tick(secs(9.0), &mut out);
    sup.reaped(true, secs(9.0), &mut out);
    assert!(pid_of(&sup, 1).is_some(), "101 is killed but not reaped");
    assert_eq!(
        sup.next_deadline(),
        None,
        "only its SIGCHLD can change anything"
    );
    out.clear();
    sup.tick(secs(20.0), &mut out);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn the_sweep_ends_when_no_child_is_left_after_the_kill_round() {
    let (mut sup, mut out) = shut_down_leaving_orphans();
    sup.tick(secs(9.0), &mut out);
    sup.reaped(true, secs(9.0), &mut out);
    sup.exited(
        200,
        ExitStatus::Signal(libc_sig::KILL),
        secs(9.01),
        &mut out,
    );
    sup.reaped(false, secs(9.01), &mut out);
    assert_eq!(exit_code(&out), Some(0));
}

/// -v levels: 0 errors only, 1 adds notices (the default), 2 info, 3 debug.
#[test]
fn exit_code_is_the_highest_failure_before_shutdown() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.exited(100, ExitStatus::Code(3), secs(1.0), &mut out);
    sup.exited(102, ExitStatus::Signal(libc_sig::SEGV), secs(1.0), &mut out);
    assert!(logs(&out).contains("supervise was killed by SIGSEGV; not restarted (keep-running)"));
    assert_eq!(pid_of(&sup, 1), Some(101), "siblings keep running");
    sup.signal(TERM, secs(2.0), &mut out);
    sup.exited(101, ExitStatus::Signal(libc_sig::TERM), secs(2.1), &mut out);
    nothing_left(&mut sup, &mut out);
    assert_eq!(exit_code(&out), Some(128 + 11));
}

#[test]
fn when_every_keep_running_daemon_has_died_the_bundle_exits() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.exited(100, ExitStatus::Code(0), secs(1.0), &mut out);
    sup.exited(101, ExitStatus::Code(2), secs(1.0), &mut out);
    sup.exited(102, ExitStatus::Code(0), secs(1.0), &mut out);
    nothing_left(&mut sup, &mut out);
    assert_eq!(exit_code(&out), Some(2));
}

#[test]
fn stop_bundle_ends_everything_with_its_code() {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.daemons[1].on_exit = ExitPolicy::StopBundle;
    let mut sup = started(plan);
    let mut out = actions();
    sup.exited(101, ExitStatus::Code(4), secs(1.0), &mut out);
    assert_eq!(signals(&out), vec![(100, TERM), (102, TERM)]);
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    sup.exited(102, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    nothing_left(&mut sup, &mut out);
    assert_eq!(exit_code(&out), Some(4));
}

#[test]
fn zero_daemons_exit_zero_at_once() {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.daemons.clear();
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    assert_eq!(exit_code(&out), Some(0));
    assert!(logs(&out).contains("no daemon selected"));
}

#[test]
fn single_child_exits_with_the_childs_code_and_remaps_success_codes() {
    let plan = |codes: Vec<u8>| Plan {
        daemons: vec![daemon("app", ExitPolicy::StopBundle)],
        routes: Routes::forward_everything(),
        shutdown_grace: Duration::ZERO,
        stop_leftovers: false,
        success_codes: codes,
        single_child: true,
        stop_order: crate::plan::StopOrder::Dependencies,
        log_style: Default::default(),
        http: None,
    };
    let mut sup = started(plan(vec![]));
    let mut out = actions();
    sup.signal(TERM, secs(1.0), &mut out);
    assert_eq!(
        signals(&out),
        vec![(100, TERM)],
        "TERM is forwarded, not a shutdown"
    );
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    assert_eq!(
        exit_code(&out),
        Some(143),
        "no waiting for leftovers without --stop-others"
    );

    let mut sup = started(plan(vec![143]));
    let mut out = actions();
    sup.exited(100, ExitStatus::Code(143), secs(1.0), &mut out);
    assert_eq!(exit_code(&out), Some(0));
}

#[test]
fn no_deadline_means_the_loop_may_sleep_for_ever() {
    let sup = started(seed_plan(ExitPolicy::Restart));
    assert_eq!(sup.next_deadline(), None);
}

/// The final flush of output writes until the budget's end: the one the shutdown began
/// with, from the bundle file as reloaded, kept after the exit.
#[test]
fn the_budget_end_is_known_after_the_exit_and_follows_a_reload() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    assert_eq!(sup.shutdown_budget_ends(), None);
    let mut out = actions();
    let mut longer = seed_plan(ExitPolicy::KeepRunning);
    longer.shutdown_grace = secs(20.0);
    sup.control(
        1,
        ControlRequest::Reload { dry_run: false },
        secs(1.0),
        &mut out,
    );
    let read = out
        .iter()
        .find_map(|a| match a {
            Action::ReadBundle(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    sup.bundle_read(read, Ok(longer), secs(1.0), &mut out);
    sup.signal(TERM, secs(2.0), &mut out);
    for pid in [100, 101, 102] {
        sup.exited(pid, ExitStatus::Signal(libc_sig::TERM), secs(2.5), &mut out);
    }
    nothing_left(&mut sup, &mut out);
    assert_eq!(exit_code(&out), Some(0));
    assert_eq!(sup.shutdown_budget_ends(), Some(secs(22.0)));
}
