//! Lifecycle II, as PID 1 of a PID namespace: giving up on a daemon that keeps crashing.
// A test body tells one story from start to end; the 60-line limit is for src/.
#![allow(clippy::too_many_lines)]

mod common;

use common::*;

/// `max-restarts = 2` on a daemon that always fails: it runs three times (two restarts),
/// then the bundle ends with its code, so the orchestrator restarts the container.
#[test]
fn a_daemon_that_always_fails_ends_the_bundle_after_its_restarts_with_its_code() {
    let dir = TempDir::new("give-up");
    let bundle = dir.write(
        "g.bundle",
        "[flaky]\nrun = bundle-testd --name flaky --exit-after 0s 3\non-exit = restart\n\
         restart-delay = 10ms\nmax-restarts = 2\n\
         [steady]\nrun = bundle-testd --name steady\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    assert_eq!(init.wait_exit(), 3, "{}", init.stderr.text());
    let runs = init
        .stdout
        .count(|l| l.starts_with("[flaky] flaky ") && l.ends_with(" started"));
    assert_eq!(runs, 3, "{}", init.stdout.text());
    assert!(
        init.stderr
            .text()
            .contains("flaky exited with code 3; gave up after 2 restarts: stopping the bundle"),
        "{}",
        init.stderr.text()
    );
}

/// `on-give-up = stay-down`: the daemon stays down, its sibling keeps its pid, `status`
/// and `health` say it was given up.
#[test]
fn stay_down_leaves_a_given_up_daemon_down_and_its_sibling_running() {
    let dir = TempDir::new("stay-down");
    let bundle = dir.write(
        "s.bundle",
        "[flaky]\nrun = bundle-testd --name flaky --exit-after 0s 3\non-exit = restart\n\
         restart-delay = 10ms\nmax-restarts = 1\non-give-up = stay-down\n\
         [steady]\nrun = bundle-testd --name steady\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    let steady = init.stdout.wait_for("steady to start", |l| {
        l.starts_with("[steady] steady ") && l.ends_with(" started")
    });
    init.stderr.wait_for("flaky to be given up", |l| {
        l.contains("flaky exited with code 3; gave up after 1 restart: it stays down")
    });
    let status = in_namespace(&init, &["status"]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.contains("gave up after 1 restart (last: exited with code 3)"),
        "{status}"
    );
    assert!(
        status.contains(&format!("pid {} ", started_pid(&steady))),
        "the sibling kept its pid: {status}"
    );
    let health = in_namespace(&init, &["health"]);
    assert!(!health.status.success(), "a given-up daemon is not healthy");
    init.signal(TERM);
    assert_eq!(
        init.wait_exit(),
        3,
        "its last code counts, as keep-running's would"
    );
}
