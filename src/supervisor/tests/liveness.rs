//! liveness checks, the watchdog and systemd's notify protocol

use super::*;
use crate::plan::{LiveCheck, ReadyCheck};

const CHECK: &str = "connect to 127.0.0.1:8080 refused";

/// The seed plan with pipelock (pid 101) checked over TCP every second, restarted after
/// three failures in a row; every daemon started at time 0, and ready (no readiness check).
fn checked_pipelock() -> (Supervisor, Actions) {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    let live = &mut plan.daemons[1].live;
    live.check = Some(LiveCheck::Tcp("127.0.0.1:8080".into()));
    live.every = secs(1.0);
    live.failures = 3;
    (started(plan), actions())
}

/// Time `at` comes; the check it asks for ends with `result`.
fn check_at(sup: &mut Supervisor, at: f64, result: Result<(), &str>, out: &mut Actions) {
    sup.tick(secs(at), out);
    let asked = out
        .iter()
        .find_map(|a| match a {
            Action::CheckLive { id, pid } => Some((*id, *pid)),
            _ => None,
        })
        .expect("a check is due");
    assert_eq!(asked, (id(1), 101), "pipelock's process is checked");
    out.clear();
    let result = result.map_err(str::to_string);
    let (id, pid) = asked;
    sup.handle(Event::LiveChecked { id, pid, result }, secs(at + 0.01), out);
}

fn notified(sup: &mut Supervisor, daemon: u32, from: i32, text: &[u8], at: f64, out: &mut Actions) {
    let message = crate::notify::parse(text);
    let id = id(daemon);
    sup.handle(Event::Notified { id, from, message }, secs(at), out);
}

#[test]
fn a_daemon_that_fails_its_check_three_times_in_a_row_is_restarted_alone() {
    let (mut sup, mut out) = checked_pipelock();
    assert_eq!(
        sup.next_deadline(),
        Some(secs(1.0)),
        "one interval after ready"
    );
    check_at(&mut sup, 1.0, Err(CHECK), &mut out);
    assert!(
        logs(&out).contains(&format!(
            "pipelock failed its liveness check ({CHECK}; 1 of 3 in a row)"
        )),
        "{}",
        logs(&out)
    );
    let health = sup.health().expect_err("a failing daemon is not healthy");
    assert_eq!(
        health,
        [format!(
            "pipelock is not answering (liveness: {CHECK}, 1 in a row)"
        )]
    );
    check_at(&mut sup, 2.01, Err(CHECK), &mut out);
    assert!(signals(&out).is_empty(), "two failures restart nothing");
    check_at(&mut sup, 3.02, Err(CHECK), &mut out);
    assert_eq!(
        signals(&out),
        [(101, TERM)],
        "only pipelock gets its stop signal"
    );
    out.clear();
    sup.exited(101, ExitStatus::Signal(libc_sig::TERM), secs(3.1), &mut out);
    sup.spawned(1, Ok(103), secs(3.1), &mut out);
    assert!(
        logs(&out).contains(&format!(
            "pipelock restarted (liveness: {CHECK}, 3 in a row): pid 101 -> 103"
        )),
        "{}",
        logs(&out)
    );
    assert_eq!(nth(&sup, 1).restarts, 1, "counted as a restart");
    assert_eq!((pid_of(&sup, 0), pid_of(&sup, 2)), (Some(100), Some(102)));
    assert_eq!(sup.health(), Ok(()), "the new process has failed nothing");
    let status = sup.status_lines(secs(3.2)).join("\n");
    assert!(
        status.contains(&format!("live ok (last failure: {CHECK})")),
        "{status}"
    );
    assert_eq!(
        sup.next_deadline(),
        Some(secs(4.1)),
        "the new process is checked one interval after it is ready"
    );
}

#[test]
fn a_failing_check_shows_in_the_status_document_and_the_metrics() {
    let (mut sup, mut out) = checked_pipelock();
    check_at(&mut sup, 1.0, Err(CHECK), &mut out);
    let doc: serde_json::Value =
        serde_json::from_str(&sup.status_document(secs(1.1))).expect("one JSON document");
    assert_eq!(
        doc["daemons"][1]["live"],
        serde_json::json!({"failures_in_a_row": 1, "failures_total": 1, "last_failure": CHECK})
    );
    assert_eq!(
        doc["daemons"][0]["live"],
        serde_json::Value::Null,
        "egress is not checked"
    );
    let metrics = sup.metrics(Default::default(), secs(1.1));
    assert!(
        metrics.contains("bundle_init_daemon_liveness_failing{daemon=\"pipelock\"} 1\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("liveness_failing{daemon=\"egress\"}"),
        "{metrics}"
    );
}

#[test]
fn a_check_that_passes_ends_the_failures_in_a_row() {
    let (mut sup, mut out) = checked_pipelock();
    check_at(&mut sup, 1.0, Err(CHECK), &mut out);
    check_at(&mut sup, 2.01, Err(CHECK), &mut out);
    check_at(&mut sup, 3.02, Ok(()), &mut out);
    assert!(logs(&out).contains("pipelock answers its liveness check again"));
    assert_eq!(sup.health(), Ok(()));
    check_at(&mut sup, 4.03, Err(CHECK), &mut out);
    check_at(&mut sup, 5.04, Err(CHECK), &mut out);
    assert!(signals(&out).is_empty(), "{:?}", out);
    assert_eq!(pid_of(&sup, 1), Some(101));
    assert_eq!(
        nth(&sup, 1).liveness.failures,
        4,
        "every failure is counted"
    );
}

#[test]
fn one_check_runs_at_a_time_and_the_next_is_due_an_interval_after_its_result() {
    let (mut sup, mut out) = checked_pipelock();
    sup.tick(secs(1.0), &mut out);
    assert_eq!(out.len(), 1, "{out:?}");
    out.clear();
    assert_eq!(
        sup.next_deadline(),
        None,
        "nothing to wake up for while the check runs"
    );
    sup.tick(secs(5.0), &mut out);
    assert!(out.is_empty(), "no second check beside the first: {out:?}");
    let result = Ok(());
    sup.handle(
        Event::LiveChecked {
            id: id(1),
            pid: 101,
            result,
        },
        secs(5.5),
        &mut out,
    );
    assert_eq!(sup.next_deadline(), Some(secs(6.5)));
}

#[test]
fn checks_begin_once_the_daemon_is_ready() {
    let mut plan = ordered_plan(true, ExitPolicy::KeepRunning);
    plan.daemons[0].live.check = Some(LiveCheck::Tcp("127.0.0.1:5432".into()));
    plan.daemons[0].live.every = secs(2.0);
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    sup.spawned(0, Ok(100), secs(0.1), &mut out);
    sup.tick(secs(3.0), &mut out);
    assert!(
        !out.iter().any(|a| matches!(a, Action::CheckLive { .. })),
        "not ready, not checked"
    );
    sup.ready(0, secs(3.0), &mut out);
    sup.spawned(1, Ok(101), secs(3.0), &mut out);
    out.clear();
    sup.tick(secs(4.9), &mut out);
    assert!(out.is_empty(), "{out:?}");
    sup.tick(secs(5.0), &mut out);
    assert!(out.contains(&Action::CheckLive {
        id: id(0),
        pid: 100
    }));
}

#[test]
fn a_result_about_a_process_that_was_replaced_counts_for_nothing() {
    let (mut sup, mut out) = checked_pipelock();
    sup.tick(secs(1.0), &mut out);
    sup.request_restart(id(1), Cause::Control, secs(1.1), &mut out);
    sup.exited(101, ExitStatus::Signal(libc_sig::TERM), secs(1.2), &mut out);
    sup.spawned(1, Ok(103), secs(1.2), &mut out);
    out.clear();
    let result = Err(CHECK.to_string());
    let late = Event::LiveChecked {
        id: id(1),
        pid: 101,
        result,
    };
    sup.handle(late, secs(1.5), &mut out);
    assert_eq!(nth(&sup, 1).liveness.failures, 0);
    assert_eq!(sup.health(), Ok(()));
    assert_eq!(sup.next_deadline(), Some(secs(2.2)));
}

/// db speaks systemd's protocol (`ready = sd-notify`) and pings a 1 s watchdog; two
/// missed pings in a row restart it. app starts after it.
fn notifying_db() -> (Supervisor, Actions) {
    let mut plan = ordered_plan(false, ExitPolicy::KeepRunning);
    plan.daemons[0].ready = Some(ReadyCheck::SdNotify);
    plan.daemons[0].live.watchdog = Some(secs(1.0));
    plan.daemons[0].live.failures = 2;
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    sup.spawned(0, Ok(100), secs(0.0), &mut out);
    out.clear();
    (sup, out)
}

#[test]
fn ready_comes_from_ready_1_sent_by_the_daemons_own_process_only() {
    let (mut sup, mut out) = notifying_db();
    notified(&mut sup, 0, 555, b"READY=1", 0.5, &mut out);
    assert!(
        !nth(&sup, 0).is_ready(),
        "another process cannot speak for db"
    );
    assert!(spawns(&out).is_empty());
    notified(
        &mut sup,
        0,
        100,
        b"STATUS=Accepting connections",
        0.6,
        &mut out,
    );
    assert!(!nth(&sup, 0).is_ready(), "a status is no readiness");
    notified(&mut sup, 0, 100, b"READY=1\nSTATUS=Ready", 0.7, &mut out);
    assert!(nth(&sup, 0).is_ready());
    assert!(out.contains(&Action::StopProbe(id(0))));
    assert_eq!(spawns(&out), [1], "app, which starts after db, starts now");
    let status = sup.status_lines(secs(0.8)).join("\n");
    assert!(status.contains("status \"Ready\""), "{status}");
}

#[test]
fn a_missed_watchdog_ping_counts_as_a_liveness_failure() {
    let (mut sup, mut out) = notifying_db();
    notified(&mut sup, 0, 100, b"READY=1", 0.5, &mut out);
    assert_eq!(
        sup.next_deadline(),
        Some(secs(1.5)),
        "the watchdog from ready"
    );
    notified(&mut sup, 0, 100, b"WATCHDOG=1", 1.0, &mut out);
    assert_eq!(sup.next_deadline(), Some(secs(2.0)), "a ping moves it on");
    out.clear();
    sup.tick(secs(2.0), &mut out);
    assert!(
        logs(&out)
            .contains("db failed its liveness check (no WATCHDOG=1 within 1s; 1 of 2 in a row)"),
        "{}",
        logs(&out)
    );
    assert!(signals(&out).is_empty());
    sup.tick(secs(3.0), &mut out);
    assert_eq!(signals(&out), [(100, TERM)], "the second miss restarts db");
}

#[test]
fn a_ping_after_a_miss_ends_the_failures_in_a_row() {
    let (mut sup, mut out) = notifying_db();
    notified(&mut sup, 0, 100, b"READY=1", 0.0, &mut out);
    sup.spawned(1, Ok(101), secs(0.0), &mut out);
    sup.tick(secs(1.0), &mut out);
    notified(&mut sup, 0, 100, b"WATCHDOG=1", 1.5, &mut out);
    sup.tick(secs(2.4), &mut out);
    assert_eq!(nth(&sup, 0).liveness.failures_in_a_row(), 0);
    assert_eq!(sup.health(), Ok(()));
    sup.tick(secs(2.5), &mut out);
    assert_eq!(nth(&sup, 0).liveness.failures_in_a_row(), 1);
    assert!(signals(&out).is_empty());
}

#[test]
fn main_pid_is_not_followed_and_said_once() {
    let (mut sup, mut out) = notifying_db();
    notified(&mut sup, 0, 100, b"MAINPID=4242", 0.1, &mut out);
    notified(&mut sup, 0, 100, b"MAINPID=4242", 0.2, &mut out);
    let said = logs(&out).matches("MAINPID=4242: ignored").count();
    assert_eq!(said, 1, "{}", logs(&out));
    assert_eq!(pid_of(&sup, 0), Some(100));
}

#[test]
fn a_reload_that_gives_a_running_daemon_a_check_checks_it_from_then() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    assert_eq!(sup.next_deadline(), None, "nothing is checked");
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.daemons[1].live.check = Some(LiveCheck::Tcp("127.0.0.1:8080".into()));
    plan.daemons[1].live.every = secs(1.0);
    let request = ReloadRequest {
        asked_at: secs(5.0),
        by: Cause::Control,
        clients: vec![],
        dry_run: false,
    };
    sup.handle(
        Event::BundleRead {
            request,
            plan: Ok(plan),
        },
        secs(5.0),
        &mut out,
    );
    assert_eq!(
        pid_of(&sup, 1),
        Some(101),
        "a liveness key restarts nothing"
    );
    assert_eq!(sup.next_deadline(), Some(secs(6.0)));
}

#[test]
fn a_daemon_waiting_for_its_turn_to_stop_is_checked_no_more() {
    let (mut sup, mut out) = notifying_db();
    // app starts after db, so at shutdown db stops only once app has exited.
    notified(&mut sup, 0, 100, b"READY=1", 0.0, &mut out);
    sup.spawned(1, Ok(101), secs(0.0), &mut out);
    out.clear();
    sup.signal(TERM, secs(0.5), &mut out);
    assert_eq!(signals(&out), [(101, TERM)], "app first");
    out.clear();
    assert_eq!(
        sup.next_deadline(),
        Some(secs(2.5)),
        "app's grace, no watchdog"
    );
    sup.tick(secs(2.0), &mut out);
    notified(&mut sup, 0, 100, b"WATCHDOG=1", 2.1, &mut out);
    sup.tick(secs(2.4), &mut out);
    assert!(signals(&out).is_empty(), "db is not restarted: {out:?}");
    assert_eq!(nth(&sup, 0).liveness.failures, 0);
}

/// db (checked every second, one failure restarts it) waits at shutdown for app, which
/// starts after it, to exit: its failing check must not stop it before app is gone, nor
/// start a new db while the bundle shuts down.
#[test]
fn a_daemon_waiting_at_shutdown_for_its_dependents_is_not_restarted_by_its_liveness_check() {
    let mut plan = ordered_plan(false, ExitPolicy::KeepRunning);
    plan.daemons[0].live.check = Some(LiveCheck::Tcp("127.0.0.1:5432".into()));
    plan.daemons[0].live.every = secs(1.0);
    plan.daemons[0].live.failures = 1;
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    sup.spawned(0, Ok(100), secs(0.0), &mut out);
    sup.spawned(1, Ok(101), secs(0.0), &mut out);
    sup.signal(TERM, secs(0.5), &mut out);
    assert_eq!(
        signals(&out),
        [(101, TERM)],
        "app first; db keeps serving it"
    );
    out.clear();
    sup.tick(secs(1.0), &mut out);
    let asked = out.iter().find_map(|a| match a {
        Action::CheckLive { id, pid } => Some((*id, *pid)),
        _ => None,
    });
    if let Some((id, pid)) = asked {
        let result = Err("connect to 127.0.0.1:5432 refused".to_string());
        sup.handle(Event::LiveChecked { id, pid, result }, secs(1.01), &mut out);
    }
    assert_eq!(
        signals(&out),
        [],
        "db is not stopped while app, which starts after it, still runs"
    );
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    assert_eq!(
        spawns(&out),
        [] as [u32; 0],
        "nothing starts during a shutdown"
    );
}

/// db pings a 1 s watchdog (two missed periods in a row restart it) and has a TCP check
/// every 0.5 s. A hung process keeps its listening socket, whose backlog the kernel fills
/// for it, so each connect passes while no ping comes: ten periods without a ping must
/// restart it all the same.
#[test]
fn a_daemon_that_stops_pinging_its_watchdog_is_restarted_while_its_port_still_accepts() {
    let mut plan = ordered_plan(false, ExitPolicy::KeepRunning);
    let db = &mut plan.daemons[0];
    db.ready = Some(ReadyCheck::SdNotify);
    db.live.watchdog = Some(secs(1.0));
    db.live.failures = 2;
    db.live.check = Some(LiveCheck::Tcp("127.0.0.1:5432".into()));
    db.live.every = secs(0.5);
    let mut sup = Supervisor::new(plan);
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    sup.spawned(0, Ok(100), secs(0.0), &mut out);
    notified(&mut sup, 0, 100, b"READY=1", 0.0, &mut out);
    sup.spawned(1, Ok(101), secs(0.0), &mut out);
    out.clear();
    while let Some(at) = sup.next_deadline().filter(|&at| at <= secs(10.0)) {
        sup.tick(at, &mut out);
        let asked = out.iter().find_map(|a| match a {
            Action::CheckLive { id, pid } => Some((*id, *pid)),
            _ => None,
        });
        if let Some((id, pid)) = asked {
            let passed = Event::LiveChecked {
                id,
                pid,
                result: Ok(()),
            };
            sup.handle(passed, at, &mut out);
        }
        if !signals(&out).is_empty() {
            break;
        }
        out.clear();
    }
    assert_eq!(
        signals(&out),
        [(100, TERM)],
        "no ping for 10 s, watchdog 1 s, live-failures = 2; missed periods counted: {}",
        nth(&sup, 0).liveness.failures
    );
}
