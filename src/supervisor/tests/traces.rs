//! Traces the model-based test found, kept as regression tests: each replays the shrunk
//! sequence that broke a promise, and must now keep every promise.

use super::model::{Edit, Request, Scene, Step, replay};

/// Hardening III, item 7. A reload renamed db (db removed and still stopping, renamed1
/// held behind it); USR1 restarts the first daemon, which is now renamed1: it started at
/// once, beside the db it replaces. A held daemon refuses a restart until it is released.
#[test]
fn a_restart_of_a_daemon_held_behind_a_removed_one_does_not_start_it() {
    replay(&[
        Step::Edit(Edit::Rename(0)),
        Step::Control(Request::Reload { dry_run: false }),
        Step::Signal(2),
    ])
    .unwrap();
}

/// Found by the model: `signal worker HUP` from a control client and worker's death in the
/// same pass of the loop. The signal was queued first, the pid reaped next, and the signal
/// then sent to a number that was free (and could have been a new process's). Signals
/// queued for a pid are taken back when it is reaped.
#[test]
fn a_signal_queued_for_a_daemon_reaped_in_the_same_pass_is_not_sent() {
    replay(&[Step::Batch(vec![
        Step::Control(Request::SignalTo(6)),
        Step::Crash {
            slot: 7,
            code: 3,
            orphan: false,
        },
    ])])
    .unwrap();
}

/// Hardening III, item 6, found by the model by itself. Two restarts asked in one request,
/// the first one's program cannot run and its daemon is stop-bundle: the shutdown began
/// while the second one's spawn was still queued, and it ran during the shutdown. A stop
/// takes back a daemon's queued spawn.
#[test]
fn a_spawn_queued_before_the_shutdown_began_does_not_run() {
    replay(&[
        Step::Edit(Edit::Remove(6)),
        Step::Batch(vec![
            Step::Crash {
                slot: 5,
                code: 0,
                orphan: true,
            },
            Step::Ready(1),
        ]),
        Step::Edit(Edit::Reorder),
        Step::Batch(vec![Step::Signal(2), Step::DeliverExits]),
        Step::DeliverExits,
        Step::Edit(Edit::Add),
        Step::Crash {
            slot: 2,
            code: 3,
            orphan: true,
        },
        Step::Edit(Edit::ChangePolicy(6)),
        Step::Signal(1),
        Step::Crash {
            slot: 2,
            code: 3,
            orphan: false,
        },
        Step::FailNextSpawn { transient: false },
        Step::Control(Request::Restart(vec![2, 4])),
    ])
    .unwrap();
}

/// Found by the model: a signal read in the same pass as the exits that ended the bundle
/// queued a log line after the exit. Once Exit is out, events change nothing.
#[test]
fn nothing_follows_the_exit_action() {
    replay(&[
        Step::Crash {
            slot: 4,
            code: 0,
            orphan: true,
        },
        Step::Signal(0),
        Step::Advance(6000),
        Step::Batch(vec![
            Step::DeliverExits,
            Step::Signal(2),
            Step::Crash {
                slot: 5,
                code: 3,
                orphan: false,
            },
        ]),
    ])
    .unwrap();
}

/// Found by the model: a control request read in the same pass as the exits that ended the
/// bundle was never answered. After the exit, a client is told bundle-init is exiting.
#[test]
fn a_client_who_asks_as_the_bundle_exits_is_answered() {
    replay(&[
        Step::Batch(vec![
            Step::Crash {
                slot: 0,
                code: 0,
                orphan: true,
            },
            Step::Signal(0),
        ]),
        Step::DeliverExits,
        Step::Batch(vec![
            Step::DeliverExits,
            Step::DeliverExits,
            Step::Control(Request::SignalTo(7)),
        ]),
    ])
    .unwrap();
}

/// Found by the model: a reload's file read was queued when a crash in the same pass ended
/// the bundle; the read's answer came after the exit and was dropped, so its client never
/// heard back. After the exit, a reload's clients are told bundle-init is exiting.
#[test]
fn a_reload_read_as_the_bundle_exits_is_answered() {
    replay(&[
        Step::FailNextSpawn { transient: false },
        Step::Crash {
            slot: 1,
            code: 3,
            orphan: false,
        },
        Step::Edit(Edit::ChangePolicy(4)),
        Step::Batch(vec![Step::Signal(2), Step::Ready(4)]),
        Step::Crash {
            slot: 0,
            code: 3,
            orphan: false,
        },
        Step::Control(Request::Reload { dry_run: false }),
        Step::Batch(vec![
            Step::Control(Request::Reload { dry_run: false }),
            Step::Crash {
                slot: 7,
                code: 3,
                orphan: false,
            },
            Step::Crash {
                slot: 5,
                code: 0,
                orphan: true,
            },
        ]),
    ])
    .unwrap();
}

/// Hardening III, item 6, as the issue tells it: a restart route for a daemon that is down
/// and TERM in one read. The restart's spawn was queued before the shutdown began, and ran
/// after it.
#[test]
fn a_restart_and_a_shutdown_in_one_read_start_nothing() {
    replay(&[
        Step::Crash {
            slot: 4,
            code: 3,
            orphan: false,
        },
        Step::Batch(vec![
            Step::Control(Request::Restart(vec![0, 7])),
            Step::Control(Request::Restart(vec![0, 6])),
            Step::Signal(0),
        ]),
    ])
    .unwrap();
}

/// Found by the model once the review extended it: a reload whose steps ended the bundle
/// (everything it kept was down, and leftovers were not swept) logged its summary after
/// the exit. The reload says what it does before doing it.
#[test]
fn a_reload_that_ends_the_bundle_says_so_before_the_exit() {
    replay(&[
        Step::Scene(Scene::KeepLeftovers),
        Step::Scene(Scene::Edit(Edit::ChangePolicy(4))),
        Step::Crash {
            slot: 1,
            code: 0,
            orphan: false,
        },
        Step::Edit(Edit::ChangePolicy(4)),
        Step::Crash {
            slot: 7,
            code: 0,
            orphan: false,
        },
        Step::Control(Request::Reload { dry_run: false }),
        Step::Edit(Edit::Rename(5)),
        Step::Crash {
            slot: 0,
            code: 3,
            orphan: false,
        },
        Step::Edit(Edit::Remove(2)),
        Step::Batch(vec![
            Step::Ready(7),
            Step::Control(Request::Status),
            Step::Signal(1),
        ]),
    ])
    .unwrap();
}

/// Found by the model: a `stop` request in single-child mode stopped the only child, and
/// nothing could start it again or end the bundle. It is refused there: the child is the
/// container's whole life.
#[test]
fn a_stop_request_in_single_child_mode_is_refused() {
    replay(&[
        Step::Scene(Scene::SingleChild {
            stop_others: false,
            success: false,
        }),
        Step::Control(Request::Stop(4)),
    ])
    .unwrap();
}

/// Found by the model in the ordered stop: a daemon whose stop waited for what starts
/// after it crashed during the shutdown, and its restart policy put it in a backoff that
/// could never end (a deadline in the past after every tick: a busy loop). It now ends as
/// a daemon the shutdown stopped.
#[test]
fn a_daemon_whose_stop_waits_for_its_dependents_and_crashes_meanwhile_stays_down() {
    replay(&[
        Step::Ready(3),
        Step::Ready(5),
        Step::Signal(0),
        Step::Crash {
            slot: 6,
            code: 1,
            orphan: false,
        },
        Step::ToDeadline,
    ])
    .unwrap();
}

/// Found by the model: a `stop` request came while a reload was restarting a daemon with
/// its new definition; the stop replaced the restart, and the new definition went with it:
/// the daemon kept its old one, and the reload was lost. A dropped restart's definition
/// is kept now.
#[test]
fn a_stop_during_a_reloads_restart_keeps_the_new_definition() {
    replay(&[
        Step::Edit(Edit::Remove(3)),
        Step::Edit(Edit::ChangeReady(5)),
        Step::Control(Request::Restart(vec![3, 0])),
        Step::Signal(1),
        Step::DeliverExits,
        Step::Control(Request::Stop(1)),
    ])
    .unwrap();
}

/// Found by the model: a oneshot whose on-exit said stop-bundle (a file the loader refuses,
/// started by the model all the same) crashed leaving a worker, which was left to a
/// shutdown sweep that never came (a oneshot's failure is on-failure's). A oneshot's
/// leftovers are always stopped.
#[test]
fn what_a_oneshot_leaves_is_stopped_whatever_its_on_exit_says() {
    replay(&[
        Step::Scene(Scene::Edit(Edit::ChangePolicy(0))),
        Step::Scene(Scene::Edit(Edit::ChangePolicy(0))),
        Step::Crash {
            slot: 6,
            code: 1,
            orphan: true,
        },
    ])
    .unwrap();
}

/// Found by the model: a reload changed the `after` of a daemon stopped by request; it
/// took the new definition at once (it stays down), but what it starts after was still
/// the old one's, and the `start` that followed waited for a daemon it no longer names.
#[test]
fn a_start_after_a_reload_changed_what_a_stopped_daemon_starts_after_waits_for_the_new() {
    replay(&[
        Step::Batch(vec![Step::Control(Request::Stop(7))]),
        Step::Edit(Edit::ChangeAfter(2)),
        Step::Batch(vec![
            Step::Control(Request::Reload { dry_run: false }),
            Step::DeliverExits,
        ]),
        Step::Control(Request::Start(2)),
    ])
    .unwrap();
}

/// Found by the model: a reload renamed a daemon with `autostart = no` while the daemons it
/// removed were still stopping; it was not held behind them (it was simply down), and a
/// `start` ran it beside its old self. It is held like any other, and a start asked for
/// meanwhile comes once they are gone.
#[test]
fn a_start_of_a_renamed_daemon_with_autostart_no_waits_for_the_removed_ones() {
    replay(&[
        Step::Edit(Edit::ChangeAutostart(5)),
        Step::Edit(Edit::Remove(6)),
        Step::Edit(Edit::Remove(5)),
        Step::Control(Request::Restart(vec![1, 1])),
        Step::Edit(Edit::Remove(4)),
        Step::Edit(Edit::Rename(4)),
        Step::Signal(1),
        Step::Batch(vec![Step::DeliverExits, Step::DeliverExits]),
        Step::Batch(vec![
            Step::Control(Request::Start(2)),
            Step::Control(Request::SignalTo(7)),
        ]),
    ])
    .unwrap();
}

/// Found by the model: app's liveness check was due at the tick of the pass in which the
/// shutdown began; the check was queued, then app got its stop signal, and the runtime
/// would have checked a process that was stopping. A stop takes back a queued check.
#[test]
fn a_liveness_check_queued_before_a_stop_in_the_same_pass_is_taken_back() {
    replay(&[
        Step::Scene(Scene::Edit(Edit::ChangePolicy(3))),
        Step::FailNextSpawn { transient: true },
        Step::Batch(vec![Step::Ready(5)]),
        Step::FailNextSpawn { transient: false },
    ])
    .unwrap();
}

/// Found by the model: at shutdown, cache waited for what starts after it to stop first
/// (ordered stop), still running; its watchdog ran out meanwhile, liveness restarted it,
/// and the restart spawned it during the shutdown. Checks end when the shutdown begins.
#[test]
fn a_daemon_waiting_for_its_turn_to_stop_is_not_restarted_by_its_watchdog() {
    replay(&[
        Step::Edit(Edit::Add),
        Step::Batch(vec![
            Step::Control(Request::Restart(vec![5, 5])),
            Step::Ready(6),
        ]),
        Step::Edit(Edit::ChangeAfter(5)),
        Step::Batch(vec![
            Step::DeliverExits,
            Step::ReadyAfterExit { slot: 3, code: 0 },
        ]),
        Step::Crash {
            slot: 7,
            code: 0,
            orphan: true,
        },
        Step::Edit(Edit::ChangeAfter(2)),
        Step::Batch(vec![
            Step::Crash {
                slot: 1,
                code: 0,
                orphan: false,
            },
            Step::DeliverExits,
        ]),
        Step::Crash {
            slot: 1,
            code: 0,
            orphan: false,
        },
        Step::Edit(Edit::ChangeReady(4)),
        Step::Batch(vec![
            Step::Control(Request::SignalTo(6)),
            Step::Control(Request::Restart(vec![2])),
        ]),
        Step::Crash {
            slot: 2,
            code: 3,
            orphan: true,
        },
        Step::DeliverExits,
        Step::Advance(1500),
        Step::Signal(1),
        Step::Signal(3),
    ])
    .unwrap();
}
