//! What a daemon's process leaves behind when it ends: stopped before anything else
//! happens to the daemon (Hardening III, items 1 and 2).

use super::*;

/// The looks for daemon `daemon`'s leftovers asked for, with the signal each sends.
fn looks(out: &Effects, daemon: u32) -> Vec<Option<Sig>> {
    out.iter()
        .filter_map(|a| match a {
            Action::FindLeftovers { id, signal } if id.0 == daemon => Some(*signal),
            _ => None,
        })
        .collect()
}

/// pipelock (pid 101, restart policy) crashed at 1 s and left its workers 300 and 301.
fn crashed_leaving_workers() -> (Supervisor, Actions) {
    let mut sup = started(seed_plan(ExitPolicy::Restart));
    let mut out = actions();
    sup.exited_leaving(
        101,
        ExitStatus::Signal(libc_sig::KILL),
        &[300, 301],
        secs(1.0),
        &mut out,
    );
    (sup, out)
}

#[test]
fn a_crashed_daemons_leftovers_get_its_stop_signal_and_its_replacement_waits_for_them() {
    let (mut sup, mut out) = crashed_leaving_workers();
    assert_eq!(
        looks(&out, 1),
        [Some(TERM)],
        "the workers get pipelock's stop signal"
    );
    assert!(
        spawns(&out).is_empty(),
        "no replacement beside the old workers"
    );
    assert!(
        logs(&out).contains(
            "pipelock (pid 101) was killed by SIGKILL and left 2 processes (pids 300, 301): sending SIGTERM"
        ),
        "{}",
        logs(&out)
    );
    assert_eq!(state_of(&sup, 1).word(), "ending");
    let status = sup.status_lines(secs(1.0)).join("\n");
    assert!(status.contains("leftovers 300,301"), "{status}");
    let json: serde_json::Value = serde_json::from_str(&sup.status_document(secs(1.0))).unwrap();
    assert_eq!(
        json["daemons"][1]["leftovers"],
        serde_json::json!([300, 301]),
        "{json}"
    );
    assert_eq!(
        sup.health(),
        Err(vec![
            "pipelock is ending: 2 of its processes left to stop".to_string()
        ])
    );

    out.clear();
    sup.leftovers(1, &[301], secs(1.1), &mut out);
    assert!(spawns(&out).is_empty(), "one worker is still there");
    sup.leftovers(1, &[], secs(1.2), &mut out);
    assert!(
        logs(&out).contains("pipelock was killed by SIGKILL; restarting in 1s"),
        "then its exit policy: {}",
        logs(&out)
    );
    assert!(matches!(state_of(&sup, 1), State::Backoff { .. }));
    sup.tick(secs(2.2), &mut out);
    assert_eq!(
        spawns(&out),
        [1],
        "the replacement starts after the backoff"
    );
}

#[test]
fn reaped_orphans_make_the_supervisor_look_again_once_per_pass() {
    let (mut sup, mut out) = crashed_leaving_workers();
    out.clear();
    sup.exited(300, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    sup.exited(301, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    assert!(
        looks(&out, 1).is_empty(),
        "the look comes at the end of the pass"
    );
    sup.reaped(true, secs(1.1), &mut out);
    assert_eq!(
        looks(&out, 1),
        [None],
        "one look, with no signal, for two orphans"
    );
    out.clear();
    sup.reaped(true, secs(1.2), &mut out);
    assert!(looks(&out, 1).is_empty(), "no orphan reaped, no look");
}

#[test]
fn leftovers_that_ignore_the_stop_signal_get_sigkill_at_the_grace_then_are_not_waited_for_ever() {
    let (mut sup, mut out) = crashed_leaving_workers();
    assert_eq!(
        sup.next_deadline(),
        Some(secs(3.0)),
        "pipelock's grace is 2 s"
    );
    out.clear();
    sup.tick(secs(3.0), &mut out);
    assert_eq!(looks(&out, 1), [Some(KILL)]);
    sup.leftovers(1, &[300], secs(3.0), &mut out);
    assert_eq!(
        sup.next_deadline(),
        Some(secs(3.0) + daemon::LEFTOVERS_AFTER_KILL)
    );
    sup.tick(secs(4.0), &mut out);
    assert!(
        logs(&out).contains("1 process (pid 300) left by pipelock still there 1s after SIGKILL"),
        "{}",
        logs(&out)
    );
    assert!(matches!(state_of(&sup, 1), State::Backoff { .. }));
}

#[test]
fn a_restart_whose_grace_ran_out_sigkills_the_leftovers_at_once() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(USR1, secs(1.0), &mut out);
    sup.tick(secs(3.0), &mut out);
    out.clear();
    // The postmaster got SIGKILL; its backends, each in a session of its own, did not.
    sup.exited_leaving(
        101,
        ExitStatus::Signal(libc_sig::KILL),
        &[400],
        secs(3.01),
        &mut out,
    );
    assert_eq!(looks(&out, 1), [Some(KILL)], "its grace is spent");
    assert!(spawns(&out).is_empty());
    sup.leftovers(1, &[], secs(3.02), &mut out);
    assert_eq!(
        spawns(&out),
        [1],
        "the new postmaster starts once the backends are gone"
    );
}

#[test]
fn a_restart_within_the_grace_leaves_the_leftovers_the_rest_of_it() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(USR1, secs(1.0), &mut out);
    out.clear();
    sup.exited_leaving(
        101,
        ExitStatus::Signal(libc_sig::TERM),
        &[400],
        secs(1.5),
        &mut out,
    );
    assert_eq!(looks(&out, 1), [Some(TERM)]);
    assert_eq!(
        sup.next_deadline(),
        Some(secs(3.0)),
        "SIGKILL when the restart's grace ends"
    );
}

#[test]
fn a_daemon_that_put_itself_in_the_background_is_named_with_its_fix() {
    let mut plan = seed_plan(ExitPolicy::Restart);
    plan.daemons[1].argv = vec!["/usr/sbin/nginx".into()];
    let mut sup = started(plan);
    let mut out = actions();
    sup.exited_leaving(101, ExitStatus::Code(0), &[300], secs(0.05), &mut out);
    let logs = logs(&out);
    assert!(
        logs.contains(
            "pipelock (pid 101) exited with code 0 but left 1 process (pid 300) running: it put itself in the background, where bundle-init cannot supervise it; run nginx in the foreground: -g 'daemon off;'"
        ),
        "{logs}"
    );
    assert_eq!(
        looks(&out, 1),
        [Some(TERM)],
        "what it left is stopped: no second copy piles up"
    );
    assert!(spawns(&out).is_empty());
}

#[test]
fn an_exit_that_leaves_nothing_goes_on_at_once() {
    let mut sup = started(seed_plan(ExitPolicy::Restart));
    let mut out = actions();
    sup.exited(101, ExitStatus::Code(0), secs(0.05), &mut out);
    assert!(looks(&out, 1).is_empty(), "nothing to look for");
    assert!(!logs(&out).contains("background"));
    assert!(matches!(state_of(&sup, 1), State::Backoff { .. }));
}

#[test]
fn a_daemon_that_stops_the_bundle_leaves_its_leftovers_to_the_shutdown_sweep() {
    let mut sup = started(seed_plan(ExitPolicy::StopBundle));
    let mut out = actions();
    sup.exited_leaving(101, ExitStatus::Code(3), &[300], secs(1.0), &mut out);
    assert!(looks(&out, 1).is_empty());
    assert!(sup.is_shutting_down(), "the shutdown begins at once");
}

#[test]
fn a_shutdown_while_leftovers_are_stopped_starts_nothing() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal(USR1, secs(1.0), &mut out);
    sup.exited_leaving(
        101,
        ExitStatus::Signal(libc_sig::TERM),
        &[400],
        secs(1.1),
        &mut out,
    );
    sup.signal(TERM, secs(1.2), &mut out);
    out.clear();
    sup.leftovers(1, &[], secs(1.3), &mut out);
    assert!(
        spawns(&out).is_empty(),
        "the restart it waited for is dropped"
    );
    assert_eq!(state_of(&sup, 1), State::Down);
}

#[test]
fn the_shutdown_budget_ends_the_wait_for_leftovers() {
    let mut plan = seed_plan(ExitPolicy::Restart);
    plan.daemons[1].grace = secs(20.0);
    let mut sup = started(plan);
    let mut out = actions();
    sup.exited_leaving(
        101,
        ExitStatus::Signal(libc_sig::KILL),
        &[300],
        secs(1.0),
        &mut out,
    );
    sup.signal(TERM, secs(1.5), &mut out);
    assert_eq!(
        nth(&sup, 1).deadline(),
        Some(secs(9.5)),
        "the budget comes before the grace"
    );
    out.clear();
    sup.tick(secs(9.5), &mut out);
    assert_eq!(looks(&out, 1), [Some(KILL)]);
    assert!(
        !nth(&sup, 1).is_live(),
        "nothing of pipelock is waited for any more"
    );
    assert!(
        spawns(&out).is_empty(),
        "and a crash under restart does not come back"
    );
}

#[test]
fn a_restart_asked_for_while_leftovers_are_stopped_comes_once_they_are_gone() {
    let (mut sup, mut out) = crashed_leaving_workers();
    let outcome = sup.request_restart(id(1), Cause::Control, secs(1.1), &mut out);
    assert_eq!(outcome, RestartOutcome::Begun);
    assert!(spawns(&out).is_empty());
    sup.leftovers(1, &[], secs(1.2), &mut out);
    assert_eq!(spawns(&out), [1], "no backoff: it was asked for");
}
