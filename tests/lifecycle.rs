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

/// `stop` then `start` of one daemon: its sibling keeps its pid and a connection held to
/// it; a restart route does not revive the stopped one; `status` says it was stopped.
#[test]
fn stop_then_start_of_one_daemon_leaves_its_sibling_and_a_held_connection_alone() {
    let dir = TempDir::new("stop-start");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let bundle = dir.write(
        "s.bundle",
        &format!(
            "on SIGUSR1 = restart job\n\
             [web]\nrun = bundle-testd --name web --listen 127.0.0.1:{port}\n\
             [job]\nrun = bundle-testd --name job\non-exit = restart\n"
        ),
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    for name in ["web", "job"] {
        init.stdout.wait_for(&format!("{name} to start"), |l| {
            l.starts_with(&format!("[{name}] {name} ")) && l.ends_with(" started")
        });
    }
    let before = daemon_pids(&init.stdout);
    let mut web = HeldConnection::open(&format!("127.0.0.1:{port}"));
    assert_eq!(web.ask("hello"), format!("web {}: hello\n", before["web"]));

    let stop = in_namespace(&init, &["stop", "job"]);
    assert!(stop.status.success(), "{stop:?}");
    assert_eq!(
        String::from_utf8_lossy(&stop.stdout),
        format!("job stopped (was pid {})\n", before["job"])
    );
    init.signal(USR1);
    init.stderr
        .wait_for("the restart route to be refused", |l| {
            l.contains("restart of job (SIGUSR1) ignored: it was stopped by request")
        });
    let status = in_namespace(&init, &["status"]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status.lines().any(|l| l.starts_with("job ")
            && l.contains(" down ")
            && l.ends_with("(stopped by request)")),
        "{status}"
    );
    assert!(
        in_namespace(&init, &["health"]).status.success(),
        "down as asked is healthy"
    );

    let start = in_namespace(&init, &["start", "job"]);
    assert!(start.status.success(), "{start:?}");
    let reply = String::from_utf8_lossy(&start.stdout).into_owned();
    assert!(reply.starts_with("job started: pid "), "{reply}");
    assert_eq!(
        web.ask("still there?"),
        format!("web {}: still there?\n", before["web"]),
        "the sibling and its connection were never touched"
    );
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0, "{}", init.stderr.text());
}

/// `autostart = no`: the daemon is not started with the bundle, only by `start`.
#[test]
fn a_daemon_with_autostart_no_runs_only_once_started() {
    let dir = TempDir::new("autostart");
    let bundle = dir.write(
        "a.bundle",
        "[web]\nrun = bundle-testd --name web\n[debug]\nrun = bundle-testd --name debug\nautostart = no\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for("web to start", |l| {
        l.starts_with("[web] web ") && l.ends_with(" started")
    });
    let status = in_namespace(&init, &["status"]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("(autostart = no)"), "{status}");
    assert_eq!(init.stdout.count(|l| l.starts_with("[debug]")), 0);
    let start = in_namespace(&init, &["start", "debug"]);
    assert!(start.status.success(), "{start:?}");
    init.stdout.wait_for("debug to start", |l| {
        l.starts_with("[debug] debug ") && l.ends_with(" started")
    });
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0);
}

/// Ordered stop, as PID 1: at TERM the app gets its stop signal first and the database
/// only once the app has exited; an app that ignores TERM is killed at its grace, and the
/// database still gets its own stop within the budget (graces 1 s + 2 s fit the 6 s).
#[test]
fn at_shutdown_the_app_stops_before_the_database_it_writes_to() {
    let dir = TempDir::new("ordered-stop");
    let bundle = dir.write(
        "o.bundle",
        "shutdown-grace = 6s\n\
         [db]\nrun = bundle-testd --name db\ngrace = 2s\n\
         [app]\nrun = bundle-testd --name app --ignore TERM\nafter = db\ngrace = 1s\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for("app to start", |l| {
        l.starts_with("[app] app ") && l.ends_with(" started")
    });
    let asked = std::time::Instant::now();
    init.signal(TERM);
    let (code, took) = init.wait_exit_timed(asked);
    let log = init.stderr.all();
    let at = |what: &str| {
        log.iter()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no \"{what}\" in {log:#?}"))
    };
    assert!(
        at("app was killed by SIGKILL") < at("db was killed by SIGTERM"),
        "{log:#?}"
    );
    let out = init.stdout.text();
    assert!(
        out.contains("[db] db ") && out.contains(" got SIGTERM"),
        "{out}"
    );
    assert_eq!(code, 137, "the app had to be killed");
    assert!(
        took >= std::time::Duration::from_secs(1),
        "the app had its grace: {took:?}"
    );
    assert!(
        took < std::time::Duration::from_secs(6),
        "within the budget: {took:?}"
    );
}

/// A setup task between a database and an app: it runs once the database is ready, the
/// app starts only after it exited 0, and `status` says it is done.
#[test]
fn a_migration_runs_after_the_database_is_ready_and_before_the_app() {
    let dir = TempDir::new("migrate");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    // bundle-testd's --write-to opens an existing file, as a program writing to
    // /dev/stdout does.
    let marker = dir.write("migrated", "");
    let bundle = dir.write(
        "m.bundle",
        &format!(
            "[db]\nrun = bundle-testd --name db --listen 127.0.0.1:{port}\nready = tcp:127.0.0.1:{port}\n\
             [migrate]\ntype = oneshot\nrun = bundle-testd --name migrate --write-to {marker} migrated --exit-after 0s 0\nafter = db\n\
             [app]\nrun = bundle-testd --name app\nafter = migrate\n"
        ),
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stderr
        .wait_for("app to start", |l| l.contains("] app started: pid "));
    let log = init.stderr.all();
    let at = |what: &str| {
        log.iter()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no \"{what}\" in {log:#?}"))
    };
    assert!(at("db is ready") < at("migrate started"), "{log:#?}");
    assert!(
        at("migrate done (exit 0 after ") < at("app started"),
        "{log:#?}"
    );
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "migrated\n");
    let status = in_namespace(&init, &["status"]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("migrate ") && l.contains(" done ")),
        "{status}"
    );
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0, "{}", init.stderr.text());
}

/// A setup task that exits 3 ends the bundle with 3, and the app that waits for it never
/// starts.
#[test]
fn a_failing_migration_ends_the_bundle_with_its_code_and_the_app_never_starts() {
    let dir = TempDir::new("migrate-fails");
    let bundle = dir.write(
        "f.bundle",
        "[db]\nrun = bundle-testd --name db\n\
         [migrate]\ntype = oneshot\nrun = bundle-testd --name migrate --exit-after 0s 3\nafter = db\n\
         [app]\nrun = bundle-testd --name app\nafter = migrate\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    assert_eq!(init.wait_exit(), 3, "{}", init.stderr.text());
    assert!(
        init.stderr
            .text()
            .contains("migrate failed (exit 3): stopping the bundle"),
        "{}",
        init.stderr.text()
    );
    assert_eq!(
        init.stdout.count(|l| l.starts_with("[app]")),
        0,
        "{}",
        init.stdout.text()
    );
}
