//! The control channel end to end: `bundle-init status | restart | signal | health` run in
//! the bundle's PID namespace (as `podman exec` would), against bundle-init as PID 1.
// A test body tells one story from start to end; the 60-line limit is for src/.
#![allow(clippy::too_many_lines)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// Runs the client inside bundle-init's PID namespace; returns (exit code, stdout, stderr).
fn client(init: &Init, args: &[&str]) -> (i32, String, String) {
    let out = in_namespace(init, args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends daemon `name` a USR2 through the control channel and waits until it noted it (the
/// only daemon that will); returns every signal `name` noted, the barrier last.
fn signals_noted_after_a_barrier(init: &Init, name: &str) -> Vec<String> {
    assert_eq!(client(init, &["signal", name, "USR2"]).0, 0);
    wait_for_usr2_barrier(&init.stdout, 1);
    let prefix = format!("[{name}] ");
    init.stdout
        .all()
        .into_iter()
        .filter(|l| l.starts_with(&prefix) && l.contains(" got "))
        .collect()
}

fn two_daemons(dir: &TempDir, extra: &str) -> Init {
    let bundle = dir.write(
        "c.bundle",
        &format!(
            "{extra}[web]\nrun = bundle-testd --name web\n[worker]\nrun = bundle-testd --name worker\n\
             [job]\nrun = bundle-testd --name job --exit-after 60s 3\n"
        ),
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    for name in ["web", "worker", "job"] {
        init.stdout.wait_for(&format!("from {name}"), |l| {
            l.starts_with(&format!("[{name}] ")) && l.ends_with(" started")
        });
    }
    init
}

#[test]
fn status_lists_every_daemon_in_text_and_json() {
    let dir = TempDir::new("ctl-status");
    let init = two_daemons(&dir, "");
    let (code, out, _) = client(&init, &["status"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[3].starts_with("bundle file generation 1, loaded "),
        "{out}"
    );
    assert!(
        lines[0].starts_with("web ")
            && lines[0].contains("running")
            && lines[0].contains("restarts 0"),
        "{out}"
    );
    let (code, json, _) = client(&init, &["status", "--json"]);
    assert_eq!(code, 0);
    let doc: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("one JSON document: {e}: {json}"));
    assert_eq!(doc["version"], 1, "{json}");
    assert_eq!(doc["bundle"]["generation"], 1, "{json}");
    assert!(doc["bundle"]["loaded_ms_ago"].is_u64(), "{json}");
    let daemons = doc["daemons"].as_array().expect("an array of daemons");
    let names: Vec<&str> = daemons
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "worker", "job"], "{json}");
    let worker = &daemons[1];
    assert_eq!(worker["state"], "running", "{json}");
    assert!(worker["pid"].as_i64().is_some_and(|p| p > 1), "{json}");
    assert!(worker["uptime_ms"].is_u64(), "{json}");
    assert_eq!(worker["restarts"], 0, "{json}");
    assert_eq!(worker["ready"], serde_json::Value::Null, "no check: {json}");
    assert_eq!(worker["last_exit"], serde_json::Value::Null, "{json}");
    assert_eq!(worker["leftovers"], serde_json::json!([]), "{json}");
}

#[test]
fn restart_by_name_prints_old_and_new_pid_and_leaves_siblings_alone() {
    let dir = TempDir::new("ctl-restart");
    let init = two_daemons(&dir, "");
    let (code, out, err) = client(&init, &["restart", "worker"]);
    assert_eq!(code, 0, "{err}");
    let (old, new) = out
        .trim()
        .strip_prefix("worker restarted: pid ")
        .unwrap()
        .split_once(" -> ")
        .unwrap();
    assert_ne!(old, new);
    init.stderr
        .wait_for_text(&format!("worker restarted (control): pid {old} -> {new}"));
    // Once the new worker has spoken, stdout has caught up past the restart.
    init.stdout.wait_for("from the new worker", |l| {
        l == format!("[worker] worker {new} started")
    });
    let web = started_pid(&init.stdout.wait_for("web's start", |l| {
        l.starts_with("[web] web ") && l.ends_with(" started")
    }));
    // Anything the restart had sent web comes before the barrier.
    let web_noted = signals_noted_after_a_barrier(&init, "web");
    assert_eq!(
        web_noted,
        [format!("[web] web {web} got SIGUSR2")],
        "web was sent a signal"
    );
    let (_, status, _) = client(&init, &["status"]);
    let line_of = |name: &str| {
        status
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .split_whitespace()
            .collect::<Vec<_>>()
    };
    let worker = line_of("worker");
    assert_eq!(worker[3], new, "{status}");
    assert_eq!(worker[7], "1", "{status}");
    let web_now = line_of("web");
    assert_eq!(web_now[3], web.to_string(), "web was replaced: {status}");
    assert_eq!(web_now[7], "0", "{status}");
}

#[test]
fn errors_are_clear_unknown_names_permissions_and_no_server() {
    let dir = TempDir::new("ctl-errors");
    let init = two_daemons(&dir, "");
    let (code, _, err) = client(&init, &["restart", "wrker"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unknown daemon \"wrker\" (known: web, worker, job)"),
        "{err}"
    );
    let (code, _, err) = client(&init, &["signal", "web", "SIGWAT"]);
    assert_eq!(code, 2, "a bad signal name is a usage error: {err}");
    // Another uid is refused.
    let pid = init.pid().to_string();
    let out = Command::new("nsenter")
        .args([
            "--target", &pid, "--pid", "--mount", "--", "setpriv", "--reuid", "65534", "--regid",
            "65534",
        ])
        .args(["--clear-groups", bundle_init_bin(), "status"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied: uid 65534"));
    // Outside the namespace there is nobody to talk to.
    let out = Command::new(bundle_init_bin())
        .arg("status")
        .env("BUNDLE_INIT_CONTROL", "@bundle-init-test-nobody")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no bundle-init is reachable"));
}

#[test]
fn signal_reaches_one_daemon() {
    let dir = TempDir::new("ctl-signal");
    let init = two_daemons(&dir, "");
    let (code, out, _) = client(&init, &["signal", "web", "HUP"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("sent SIGHUP to web (pid "), "{out}");
    init.stdout.wait_for("web noting HUP", |l| {
        l.starts_with("[web] ") && l.ends_with("got SIGHUP")
    });
    // A stray HUP would come before the barrier.
    let worker = signals_noted_after_a_barrier(&init, "worker");
    assert_eq!(
        worker.len(),
        1,
        "worker got more than the barrier: {worker:?}"
    );
}

#[test]
fn health_fails_when_a_daemon_is_down_and_says_which() {
    let dir = TempDir::new("ctl-health");
    let init = two_daemons(&dir, "");
    assert_eq!(client(&init, &["health"]).0, 0);
    // Take `job` down for good (keep-running): health turns bad and names it.
    // Its pid is a namespace pid: the control channel is the way to reach it.
    assert_eq!(client(&init, &["signal", "job", "KILL"]).0, 0);
    init.stderr
        .wait_for_text("job was killed by SIGKILL; not restarted");
    let (code, _, err) = client(&init, &["health"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("unhealthy") && err.contains("job is down: it was killed by SIGKILL"),
        "{err}"
    );
    // A restart brings it back, and health with it.
    assert_eq!(client(&init, &["restart", "job"]).0, 0);
    assert_eq!(client(&init, &["health"]).0, 0);
}

#[test]
fn a_client_that_sends_nothing_does_not_delay_a_signal_route() {
    let dir = TempDir::new("ctl-silent");
    let init = two_daemons(&dir, "on SIGUSR1 = restart worker\n");
    // More than the 8 slots: the extra ones evict earlier ones or are refused, and none
    // blocks anything.
    let _holder = silent_clients(&init, 12);
    let asked = Instant::now();
    init.signal(USR1);
    init.stderr.wait_for_text("worker restarted (SIGUSR1)");
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "restart took {:?}",
        asked.elapsed()
    );
    assert_eq!(
        client(&init, &["health"]).0,
        0,
        "still answering with silent clients connected"
    );
}

#[test]
fn a_status_route_writes_the_status_to_the_log() {
    let dir = TempDir::new("ctl-route");
    let init = two_daemons(&dir, "on SIGUSR2 = status\n");
    init.signal(USR2);
    let lines = init.stderr.wait_for_n(3, "status lines", |l| {
        l.contains(" running ") && l.contains("restarts")
    });
    assert!(
        lines.iter().any(|l| l.contains("[bundle-init] web ")),
        "{lines:?}"
    );
}

/// `bundle-init ARGS` from the test's own namespace, against the socket at `path`.
fn path_client(path: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bundle_init_bin())
        .args(args)
        .env("BUNDLE_INIT_CONTROL", path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A bundle of one daemon named `name`, controlled through the socket at `path`.
fn on_a_path(dir: &TempDir, name: &str, path: &str) -> Init {
    let bundle = dir.write(
        &format!("{name}.bundle"),
        &format!("[{name}]\nrun = bundle-testd --name {name}\n"),
    );
    let init = Launch::subreaper(&["--bundle", &bundle])
        .env("BUNDLE_INIT_CONTROL", path)
        .start();
    init.stdout.wait_for(&format!("{name} started"), |l| {
        l.starts_with(&format!("[{name}] ")) && l.ends_with(" started")
    });
    init
}

/// A regular file where the control socket should go is never removed: bundle-init warns
/// and runs without control.
#[test]
fn a_control_path_that_is_not_a_socket_is_left_alone() {
    let dir = TempDir::new("ctl-file");
    let path = dir.write("precious", "keep me\n");
    let mut init = on_a_path(&dir, "web", &path);
    init.stderr.wait_for_text(&format!(
        "warning: no control socket ({path} exists and is not a socket; it is left alone)"
    ));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me\n");
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me\n");
}

/// A second bundle-init on the same path does not take a live socket from the first, which
/// stays reachable; the first removes its socket file at exit.
#[test]
fn a_live_control_socket_is_not_taken_and_is_removed_at_exit() {
    let dir = TempDir::new("ctl-live");
    let path = dir.path("control.sock");
    let mut first = on_a_path(&dir, "first", &path);
    let mut second = on_a_path(&dir, "second", &path);
    second.stderr.wait_for_text(&format!(
        "warning: no control socket ({path} is served by another live process; it is left to that one)"
    ));
    let (code, out, err) = path_client(&path, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("first "), "the first still answers: {out}");
    second.signal(TERM);
    assert_eq!(second.wait_exit(), 0);
    assert!(
        std::path::Path::new(&path).exists(),
        "the second removed the first's socket"
    );
    assert_eq!(path_client(&path, &["health"]).0, 0);
    first.signal(TERM);
    assert_eq!(first.wait_exit(), 0);
    assert!(
        !std::path::Path::new(&path).exists(),
        "the socket file is removed at exit"
    );
}

/// A socket file nobody listens on (connection refused) is stale: it is replaced.
#[test]
fn a_stale_control_socket_is_replaced() {
    let dir = TempDir::new("ctl-stale");
    let path = dir.path("control.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(std::path::Path::new(&path).exists(), "a stale socket file");
    let mut init = on_a_path(&dir, "web", &path);
    let (code, out, err) = path_client(&path, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("web "), "{out}");
    assert!(!init.stderr.text().contains("no control socket"));
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0);
}

/// A client, timed: every refusal must come at once, not after a restart's deadline.
fn timed_client(init: &Init, args: &[&str]) -> (i32, String, Duration) {
    let asked = Instant::now();
    let (code, _, err) = client(init, args);
    (code, err, asked.elapsed())
}

/// Every request that is refused or ignored is answered at once, with the reason the log
/// gives. A restart of a daemon waiting for `after` used to wait out grace + 5 s (13 s)
/// and then say "did not come back up".
#[test]
fn every_refused_request_is_answered_at_once_with_the_reason_the_log_gives() {
    let dir = TempDir::new("ctl-refusals");
    let bundle = dir.write(
        "r.bundle",
        &format!(
            "shutdown-grace = 60s\n\
             [a]\nrun = bundle-testd --name a --ignore TERM\nready = file:{}\nready-timeout = 10m\ngrace = 60s\n\
             [b]\nrun = bundle-testd --name b\nafter = a\n",
            dir.path("never")
        ),
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for("a started", |l| {
        l.starts_with("[a] ") && l.ends_with(" started")
    });
    let prompt = Duration::from_secs(2);

    let (code, err, took) = timed_client(&init, &["restart", "b"]);
    assert_eq!(
        (code, err.as_str()),
        (
            1,
            "bundle-init: restart failed\nb not restarted: it is waiting for what it starts after (was pid -)\n"
        )
    );
    assert!(took < prompt, "answered after {took:?}");
    init.stderr.wait_for_text(
        "[bundle-init] restart of b (control) ignored: it is waiting for what it starts after",
    );

    let (code, err, took) = timed_client(&init, &["signal", "b", "HUP"]);
    assert_eq!((code, err.as_str()), (1, "bundle-init: b is not running\n"));
    assert!(took < prompt, "answered after {took:?}");

    let (code, err, took) = timed_client(&init, &["restart", "nobody"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "bundle-init: unknown daemon \"nobody\" (known: a, b)\n")
    );
    assert!(took < prompt, "answered after {took:?}");

    // a ignores TERM and has 60 s: the shutdown stays under way while we ask.
    init.signal(TERM);
    init.stderr.wait_for_text("received SIGTERM: shutting down");
    let (code, err, took) = timed_client(&init, &["restart", "a"]);
    let a = init.stdout.wait_for("a's pid", |l| {
        l.starts_with("[a] ") && l.ends_with(" started")
    });
    assert_eq!(
        (code, err),
        (
            1,
            format!(
                "bundle-init: restart failed\na not restarted: shutting down (was pid {})\n",
                started_pid(&a)
            )
        )
    );
    assert!(took < prompt, "answered after {took:?}");
    init.stderr
        .wait_for_text("[bundle-init] restart of a (control) ignored: shutting down");
}

/// bundle-testd in `init`'s PID namespace (where a client must be) holding silent
/// connections to its control socket; killed and waited for when dropped.
struct SilentClients {
    tag: ProcessTag,
    nsenter: std::process::Child,
}

impl Drop for SilentClients {
    fn drop(&mut self) {
        self.tag.kill_all();
        let _ = self.nsenter.wait();
    }
}

/// Starts a SilentClients with `count` connections; returns once they are made.
fn silent_clients(init: &Init, count: usize) -> SilentClients {
    let tag = ProcessTag::new();
    let pid = init.pid().to_string();
    let count = count.to_string();
    let mut holder = Command::new("nsenter");
    holder
        .args(["--target", &pid, "--pid", "--mount", "--", testd()])
        .args(["--name", "holder", "--silent-clients", &count])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    tag.mark(&mut holder);
    let mut nsenter = holder.spawn().unwrap();
    let lines = Lines::from_reader(nsenter.stdout.take().unwrap());
    lines.wait_for("the holder's connections", |l| {
        l.ends_with(&format!("holding {count} connections"))
    });
    SilentClients { tag, nsenter }
}

/// Eight silent clients in bundle-init's own namespace take every slot. A health probe
/// used to be told `busy` (a failed liveness probe); now the client silent the longest
/// makes room for it.
#[test]
fn a_probe_gets_through_while_eight_silent_clients_hold_every_slot() {
    let dir = TempDir::new("ctl-evict");
    let init = two_daemons(&dir, "");
    let _holder = silent_clients(&init, 8);
    let (code, out, err) = client(&init, &["health"]);
    assert_eq!((code, out.as_str()), (0, "healthy\n"), "{err}");
}

/// A client outside bundle-init's PID namespace (a sibling container in a pod shares the
/// network namespace, and so the abstract socket) is refused by design, with one clear
/// line. Its SO_PEERCRED pid is 0; rustix's UCred could not hold that, and the client used
/// to see "No error information (os error 0)", or "(os error -1000)" as uid 1000.
#[test]
fn a_client_outside_the_pid_namespace_is_refused_with_a_clear_line() {
    let dir = TempDir::new("ctl-outside");
    let init = two_daemons(&dir, "");
    let ns = std::fs::read_link(format!("/proc/{}/ns/pid", init.pid())).unwrap();
    let inode: String = ns
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let name = format!("@bundle-init.{inode}");
    for user in [None, Some("1000")] {
        let mut command = match user {
            None => Command::new(bundle_init_bin()),
            Some(id) => {
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid",
                    id,
                    "--regid",
                    id,
                    "--clear-groups",
                    bundle_init_bin(),
                ]);
                c
            }
        };
        let out = command
            .arg("status")
            .env("BUNDLE_INIT_CONTROL", &name)
            .output()
            .unwrap();
        assert_eq!(
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned()
            ),
            (
                Some(1),
                "bundle-init: permission denied: the client is outside bundle-init's PID namespace\n"
                    .to_string()
            ),
            "as {user:?}"
        );
    }
}

/// An exec probe every 100 ms through a restart storm: `health` and `status` are answered
/// within 100 ms each, restarts and their graces notwithstanding. (Connected directly, as a
/// probe's client would, so the time is bundle-init's, not a process start's.)
#[test]
fn health_and_status_answer_within_100_ms_through_a_restart_storm() {
    use std::io::{Read, Write};
    use std::os::linux::net::SocketAddrExt;
    let dir = TempDir::new("ctl-probe");
    let name = format!("bundle-init-test-probe-{}", std::process::id());
    let bundle = dir.write(
        "p.bundle",
        "on SIGUSR1 = restart web\n[web]\nrun = bundle-testd --name web --ignore TERM\ngrace = 200ms\n\
         [db]\nrun = bundle-testd --name db\n",
    );
    let init = Launch::subreaper(&["--bundle", &bundle])
        .env("BUNDLE_INIT_CONTROL", &format!("@{name}"))
        .start();
    for daemon in ["web", "db"] {
        init.stdout.wait_for(&format!("{daemon} started"), |l| {
            l.starts_with(&format!("[{daemon}] ")) && l.ends_with(" started")
        });
    }
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let storming = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let storm = {
        let storming = storming.clone();
        let pid = init.pid();
        std::thread::spawn(move || {
            while storming.load(std::sync::atomic::Ordering::SeqCst) {
                rustix_kill(pid, USR1);
                std::thread::sleep(Duration::from_millis(30));
            }
        })
    };
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        for request in ["health\n", "status\n"] {
            let asked = Instant::now();
            let mut stream = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            let took = asked.elapsed();
            assert!(!answer.is_empty(), "{request:?} got no answer");
            slowest = slowest.max(took);
        }
        // A probe's period, not a wait for an event.
        std::thread::sleep(Duration::from_millis(100));
    }
    storming.store(false, std::sync::atomic::Ordering::SeqCst);
    storm.join().unwrap();
    assert!(
        slowest < Duration::from_millis(100),
        "slowest answer {slowest:?}"
    );
    assert!(
        init.stderr.count(|l| l.contains("web restarted (SIGUSR1)")) >= 3,
        "the storm restarted web: {}",
        init.stderr.text()
    );
}

/// `instances = 3` runs w-1, w-2 and w-3, each with its number; `restart w-2` restarts
/// that one only, `restart w` all three.
#[test]
fn instances_run_with_their_numbers_and_restart_alone_or_all_together() {
    let dir = TempDir::new("ctl-instances");
    let bundle = dir.write(
        "i.bundle",
        "[w]\nrun = bundle-testd --name w${BUNDLE_INIT_INSTANCE} --show-env BUNDLE_INIT_INSTANCE\ninstances = 3\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    for n in 1..=3 {
        init.stdout.wait_for(&format!("instance {n}"), |l| {
            l.starts_with(&format!("[w-{n}] w{n} "))
                && l.ends_with(&format!(" env BUNDLE_INIT_INSTANCE={n}"))
        });
    }
    let (code, out, err) = client(&init, &["restart", "w-2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("w-2 restarted: pid "), "{out}");
    init.stdout.wait_for_n(2, "w-2 again", |l| {
        l.starts_with("[w-2] w2 ") && l.ends_with(" started")
    });

    let (code, out, err) = client(&init, &["restart", "w"]);
    assert_eq!(code, 0, "{err}");
    for n in 1..=3 {
        assert!(out.contains(&format!("w-{n} restarted: pid ")), "{out}");
    }
    let log = init.stderr.text();
    assert_eq!(log.matches("w-1 restarted (control)").count(), 1, "{log}");
    assert_eq!(log.matches("w-2 restarted (control)").count(), 2, "{log}");
    assert_eq!(log.matches("w-3 restarted (control)").count(), 1, "{log}");
}
