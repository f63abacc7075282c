//! Readiness checks and ordered start, with bundle-init as PID 1: a daemon that starts
//! `after` others waits until they are ready, checked by bundle-init itself.

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
