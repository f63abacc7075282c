//! Readiness checks and ordered start, with bundle-init as PID 1: a daemon that starts
//! `after` others waits until they are ready, checked by bundle-init itself.
// A test body tells one story from start to end; the 60-line limit is for src/.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::{Duration, Instant};

use common::*;

fn position(lines: &[String], text: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(text))
        .unwrap_or_else(|| panic!("no line with {text:?} in {lines:#?}"))
}

#[test]
fn ordered_start_waits_for_a_tcp_check() {
    let dir = TempDir::new("ready-tcp");
    let bundle = dir.write(
        "r.bundle",
        "[db]\nrun = bundle-testd --name db --delay 400ms --listen 127.0.0.1:28432\nready = tcp:127.0.0.1:28432\n\
         [app]\nrun = bundle-testd --name app\nafter = db\n",
    );
    let started = Instant::now();
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for("app starting", |l| {
        l.starts_with("[app] ") && l.ends_with(" started")
    });
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "app started before db could be ready"
    );
    // stderr is read by its own thread: wait for it to reach the same point.
    init.stderr.wait_for_text("app started");
    let log = init.stderr.all();
    assert!(position(&log, "app waits for db to be ready") < position(&log, "db is ready"));
    assert!(position(&log, "db is ready") < position(&log, "app started"));
}

#[test]
fn unix_socket_file_and_notify_checks() {
    let dir = TempDir::new("ready-kinds");
    let d = dir.0.display();
    let bundle = dir.write(
        "r.bundle",
        &format!(
            "[sock]\nrun = bundle-testd --name sock --delay 200ms --listen-unix {d}/s.sock\nready = unix:{d}/s.sock\n\
             [flag]\nrun = bundle-testd --name flag --delay 200ms --ready-file {d}/up\nready = file:{d}/up\n\
             [note]\nrun = bundle-testd --name note --delay 200ms --notify-fd 5\nready = notify:5\n\
             [app]\nrun = bundle-testd --name app\nafter = sock flag note\n"
        ),
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stderr.wait_for_text("app started");
    let log = init.stderr.all();
    let app = position(&log, "app started");
    for name in ["sock", "flag", "note"] {
        assert!(
            position(&log, &format!("{name} is ready")) < app,
            "{name}: {log:#?}"
        );
    }
}

#[test]
fn a_readiness_timeout_follows_the_exit_policy() {
    let dir = TempDir::new("ready-timeout");
    // Nothing ever listens on the port: db never gets ready; app gives up, and being
    // stop-bundle, ends the bundle with code 1.
    let bundle = dir.write(
        "r.bundle",
        "[db]\nrun = bundle-testd --name db\nready = tcp:127.0.0.1:28499\n\
         [app]\nrun = bundle-testd --name app\nafter = db\nready-timeout = 500ms\non-exit = stop-bundle\n",
    );
    let started = Instant::now();
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    assert_eq!(init.wait_exit(), 1);
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        init.stderr
            .text()
            .contains("app gave up waiting after 500ms"),
        "{}",
        init.stderr.text()
    );
    assert!(!init.stdout.text().contains("[app]"), "app never ran");
}

#[test]
fn status_and_health_report_readiness() {
    let dir = TempDir::new("ready-status");
    let bundle = dir.write(
        "r.bundle",
        "[db]\nrun = bundle-testd --name db\nready = tcp:127.0.0.1:28498\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for_text("started");
    let run = |what: &str| in_namespace(&init, &[what]);
    let status = run("status");
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("ready no"),
        "{status:?}"
    );
    let health = run("health");
    assert_eq!(health.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&health.stderr).contains("db is running but not ready"));
}

/// A daemon gets its notification descriptor under the number it asked for, even when that
/// number is the one the notification pipe itself got: a chain of daemons, each started once
/// the one before is ready, asks for every number from 3 to 40 in turn. One start at a time
/// means every start finds the same free descriptors, so one link asks for exactly that one
/// (without prefixed output bundle-init holds few descriptors, so that number is below 40).
#[test]
fn notify_works_for_every_descriptor_number_even_those_bundle_init_holds() {
    let dir = TempDir::new("ready-fds");
    let mut text = String::new();
    for fd in 3..=40 {
        text += &format!(
            "[n{fd}]\nrun = bundle-testd --name n{fd} --notify-fd {fd}\nready = notify:{fd}\nprefix-output = false\n"
        );
        if fd > 3 {
            text += &format!("after = n{}\n", fd - 1);
        }
    }
    text += "[app]\nrun = bundle-testd --name app\nafter = n40\n";
    let bundle = dir.write("r.bundle", &text);
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stderr.wait_for_text("app started");
}

/// A failed start is reported as such even when the notification number asked for is the
/// one the start's failure-report pipe got: every number from 3 to 40 is asked for by a
/// daemon whose program does not exist (and no prefixed output, to keep the numbers low).
/// A failed start frees its pipes, so each of them finds the same free descriptors.
#[test]
fn exec_failures_are_reported_whatever_notify_number_is_asked_for() {
    let dir = TempDir::new("ready-fds-fail");
    let mut text = String::new();
    for fd in 3..=40 {
        text += &format!(
            "[m{fd}]\nrun = /no/such/program\nready = notify:{fd}\nprefix-output = false\n"
        );
    }
    let bundle = dir.write("r.bundle", &text);
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    assert_eq!(init.wait_exit(), 127);
    for fd in 3..=40 {
        let line =
            format!("cannot start m{fd}: exec /no/such/program failed: No such file or directory");
        assert!(
            init.stderr.text().contains(&line),
            "m{fd}:\n{}",
            init.stderr.text()
        );
    }
}

/// Hardening III, item 5: what app waits for exited for good (keep-running): app gives up
/// at once, saying why, instead of waiting out its 30 s ready-timeout, and is not said to
/// have exited, having never run.
#[test]
fn a_wait_for_a_daemon_that_ended_for_good_gives_up_at_once() {
    let dir = TempDir::new("ready-gone");
    let bundle = dir.write(
        "r.bundle",
        "[db]\nrun = bundle-testd --name db --exit-after 10ms 3\nready = tcp:127.0.0.1:28497\n\
         [app]\nrun = bundle-testd --name app\nafter = db\nready-timeout = 30s\n",
    );
    let started = Instant::now();
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    assert_eq!(init.wait_exit(), 3, "db's code: {}", init.stderr.text());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "waited {:?} for a daemon that was gone",
        started.elapsed()
    );
    let log = init.stderr.text();
    assert!(
        log.contains(
            "app gave up waiting for db: it exited with code 3 and stays down; not started (keep-running)"
        ),
        "{log}"
    );
    assert!(!log.contains("app exited"), "app never ran: {log}");
    assert!(!init.stdout.text().contains("[app]"), "app never ran");
}

/// `after = w` waits for every instance of `w`: with w-1 ready and w-2 not yet, app waits;
/// it starts only once w-2 is ready too.
#[test]
fn after_a_section_with_instances_waits_for_every_instance() {
    let dir = TempDir::new("ready-instances");
    let d = dir.0.display();
    let bundle = dir.write(
        "r.bundle",
        &format!(
            "[w]\nrun = bundle-testd --name w\nready = file:{d}/ready-${{BUNDLE_INIT_INSTANCE}}\ninstances = 2\n\
             [app]\nrun = bundle-testd --name app\nafter = w\n"
        ),
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stderr
        .wait_for_text("app waits for w-1, w-2 to be ready");
    dir.write("ready-1", "");
    init.stderr.wait_for_text("w-1 is ready");
    dir.write("ready-2", "");
    init.stderr.wait_for_text("app started");
    let log = init.stderr.all();
    assert!(
        position(&log, "w-2 is ready") < position(&log, "app started"),
        "{log:#?}"
    );
}
