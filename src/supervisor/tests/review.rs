//! From the hostile review of Hardening III and Lifecycle II: each test failed before its fix.

use super::*;

fn finds(out: &Effects, daemon: u32) -> Vec<Option<Sig>> {
    out.iter()
        .filter_map(|a| match a {
            Action::FindLeftovers { id, signal } if id.0 == daemon => Some(*signal),
            _ => None,
        })
        .collect()
}

fn reads(out: &Actions) -> Vec<ReloadRequest> {
    out.iter()
        .filter_map(|a| match a {
            Action::ReadBundle(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// egress(0) runs; migrate(1) is a oneshot with on-failure = stop-bundle.
fn task_plan(env: &str) -> Plan {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.daemons.truncate(2);
    plan.daemons[1] = daemon("migrate", ExitPolicy::KeepRunning);
    plan.daemons[1].oneshot = true;
    plan.daemons[1].argv = vec![env.into()];
    plan
}

/// docs/bundle-file.md (Reload): "a oneshot that already ran, changed: not run again". A oneshot
/// whose process exited (code 3, a failure under on-failure = stop-bundle) while what
/// it left is still being stopped is changed by a reload: it must not be run again,
/// and its failure must still end the bundle with code 3.
#[test]
fn a_reload_does_not_run_again_a_oneshot_whose_leftovers_are_being_stopped() {
    let mut sup = started(task_plan("A"));
    let mut out = actions();
    sup.exited_leaving(101, ExitStatus::Code(3), &[300], secs(1.0), &mut out);
    assert_eq!(state_of(&sup, 1).word(), "ending");
    out.clear();
    sup.control(
        9,
        ControlRequest::Reload { dry_run: false },
        secs(1.5),
        &mut out,
    );
    let r = reads(&out);
    assert_eq!(r.len(), 1, "{out:?}");
    sup.bundle_read(r[0].clone(), Ok(task_plan("B")), secs(1.5), &mut out);
    sup.leftovers(1, &[], secs(2.0), &mut out);
    assert!(
        spawns(&out).is_empty(),
        "the oneshot ran already; a reload does not run it again: {}",
        logs(&out)
    );
    assert!(
        sup.is_shutting_down(),
        "its failure (on-failure = stop-bundle) ends the bundle: {}",
        logs(&out)
    );
}

/// Processes a leftover forks after the look that sent SIGKILL (a forking loop, killed
/// between the /proc walk and its signal) are found by the later looks, but those send
/// nothing: they are never sent SIGKILL, and after 1 s bundle-init "goes on without"
/// them although they were killable all along (reproduced with a real forking loop: 8
/// sleeping, marked processes left alive, the daemon restarted beside them).
#[test]
fn leftovers_found_after_the_sigkill_round_get_sigkill_too() {
    let mut sup = started(seed_plan(ExitPolicy::Restart));
    let mut out = actions();
    sup.exited_leaving(101, ExitStatus::Code(1), &[300], secs(1.0), &mut out);
    sup.tick(secs(3.0), &mut out);
    assert_eq!(finds(&out, 1), [Some(TERM), Some(KILL)]);
    out.clear();
    // 300 is killed; the child it forked meanwhile, 301, was not in that look.
    sup.exited(
        300,
        ExitStatus::Signal(libc_sig::KILL),
        secs(3.01),
        &mut out,
    );
    sup.reaped(true, secs(3.01), &mut out);
    sup.leftovers(1, &[301], secs(3.01), &mut out);
    sup.tick(secs(4.01), &mut out);
    assert!(
        finds(&out, 1).contains(&Some(KILL)),
        "301 never got SIGKILL, yet bundle-init gives up on it: {:?}\n{}",
        finds(&out, 1),
        logs(&out)
    );
}

/// Found by the model (seed 3292967740779, 300 s run): a reload renamed daemon 4 while it
/// was stopping for a restart; renamed4 is held behind the removed one. `stop renamed4`
/// turns HeldForRemoved into StoppedByRequest (the catch-all arm of `Stop`), so it is no
/// longer held, and `start renamed4` runs it at once beside its old self.
#[test]
fn a_stop_then_start_of_a_daemon_held_behind_a_removed_one_does_not_run_it_beside_it() {
    use super::model::{Edit, Request, Step, replay};
    replay(&[
        Step::Control(Request::Restart(vec![1, 4])),
        Step::Control(Request::Reload { dry_run: false }),
        Step::Edit(Edit::Rename(4)),
        Step::DeliverExits,
        Step::Control(Request::Stop(4)),
        Step::Control(Request::Start(4)),
    ])
    .unwrap();
}

/// Found by the model (seed 3641881143256, second run): a reload drops app's `after`
/// while app is stopping for a restart (the new definition rides in the restart request;
/// `resolve_after` in reload's take_step resolves the ids from the OLD spec). A `stop`
/// then drops the restart and `keep_definition_of` installs the new spec, without
/// resolving `after` again: `start app` waits for db (crashed, in backoff), which app's
/// definition no longer names, and gives up at its ready-timeout.
#[test]
fn a_daemon_started_on_request_does_not_wait_for_nothing() {
    use super::model::{Edit, Request, Step, replay};
    replay(&[
        Step::Edit(Edit::ChangeAfter(2)),
        Step::ToDeadline,
        Step::ToDeadline,
        Step::Control(Request::Restart(vec![7])),
        Step::Batch(vec![
            Step::Crash {
                slot: 6,
                code: 3,
                orphan: false,
            },
            Step::Control(Request::Reload { dry_run: false }),
        ]),
        Step::Control(Request::Stop(7)),
        Step::Advance(1500),
        Step::Advance(1500),
        Step::Control(Request::Start(7)),
    ])
    .unwrap();
}

/// `start app` while app waits for db (it never ran): the start joins the wait, app
/// starts once db is ready, and the client must hear "app started: pid N". `start_standing`
/// (waiting.rs) counts it done only when `restarts` grew, which a first start does not
/// do: the client is held to its deadline and told "did not come back up" (exit 1). The
/// same with a daemon held behind removed ones (reproduced with bundle-init: 35 s, exit
/// 1, while the daemon ran).
#[test]
fn a_start_that_joins_a_first_wait_is_answered_when_the_daemon_runs() {
    let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
    out.clear();
    sup.control(
        7,
        ControlRequest::Start(vec!["app".into()]),
        secs(0.2),
        &mut out,
    );
    assert!(
        replies(&out).is_empty(),
        "app waits for db: {:?}",
        replies(&out)
    );
    sup.ready(0, secs(1.0), &mut out);
    assert_eq!(spawns(&out), [1]);
    sup.spawned(1, Ok(101), secs(1.0), &mut out);
    sup.tick(secs(1.1), &mut out);
    assert_eq!(
        replies(&out),
        [(7, Reply::Ok("app started: pid 101\n".into()))],
        "{}",
        logs(&out)
    );
}

/// Found by the model (third run, seed 3843736246816): after a tick at 4 s, worker is
/// Stopping with kill_at = 4 s: the ordered stop freed it during the tick after its
/// share of the budget had passed (its reserve counts the grace of `setup`, a oneshot
/// that is long done), so `stop` got deadline.max(now) = now, and the SIGKILL is left to
/// one more pass of the loop (next_deadline() == now). Zero grace, one extra pass.
#[test]
fn every_deadline_that_came_is_handled_by_the_tick() {
    use super::model::{Edit, Step, replay};
    replay(&[
        Step::Edit(Edit::ChangeAfter(4)),
        Step::Crash {
            slot: 6,
            code: 0,
            orphan: false,
        },
        Step::Signal(1),
        Step::Batch(vec![Step::DeliverExits, Step::DeliverExits]),
        Step::Crash {
            slot: 5,
            code: 3,
            orphan: true,
        },
        Step::Signal(0),
        Step::Advance(6000),
    ])
    .unwrap();
}
