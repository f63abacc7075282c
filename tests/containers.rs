//! bundle-init where it lives: as the entrypoint of FROM scratch images under a real
//! container engine (podman with runc). The images come from `just image`.
//!
//! Without podman these tests print a loud SKIPPED line and pass, unless
//! BUNDLE_INIT_REQUIRE_ENGINE is set (as `just test` and CI do): then they fail.
// A test body tells one story from start to end; the 60-line limit is for src/.
#![allow(clippy::too_many_lines)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::engine::{Container, arch, demo, dist, engine_ready, podman, run_flags};
use common::{Lines, TempDir, zombie_children};

/// The seed bundle publishes fixed ports: its tests take turns.
static SEED_PORTS: Mutex<()> = Mutex::new(());

fn seed_ports() -> MutexGuard<'static, ()> {
    SEED_PORTS.lock().unwrap_or_else(|p| p.into_inner())
}

const SEED: [&str; 4] = ["egress", "pipelock", "git-gate", "supervise"];

/// A bundle file mounted read-only at /etc/bundle-init/test.bundle.
fn with_bundle(dir: &TempDir, text: &str) -> Vec<String> {
    let path = dir.write("test.bundle", text);
    vec![
        "-v".into(),
        format!("{path}:/etc/bundle-init/test.bundle:ro"),
        "-e".into(),
        "BUNDLE_INIT_BUNDLE=/etc/bundle-init/test.bundle".into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn seed_usr1_restarts_pipelock_and_a_connection_from_outside_survives() {
    if !engine_ready() {
        return;
    }
    let _ports = seed_ports();
    let c = Container::run(&["-p", "127.0.0.1:28090:18090"], demo(), &[]);
    c.wait_started(&SEED);
    let before = c.pids();
    let mut supervise = common::HeldConnection::open("127.0.0.1:28090");
    let mut ask = |text: &str| supervise.ask(text);
    assert_eq!(
        ask("one"),
        format!("supervise {}: one\n", before["supervise"])
    );

    c.kill("USR1");
    c.stderr.wait_for_text("pipelock restarted (SIGUSR1)");
    c.stdout.wait_for_n(2, "from pipelock starting twice", |l| {
        l.starts_with("[pipelock]") && l.ends_with(" started")
    });
    let after = c.pids();
    assert_ne!(after["pipelock"], before["pipelock"]);
    for name in ["egress", "git-gate", "supervise"] {
        assert_eq!(after[name], before[name], "{name} kept its pid");
    }
    assert_eq!(
        ask("two"),
        format!("supervise {}: two\n", before["supervise"]),
        "the held connection still works"
    );
    c.kill("USR2"); // unrouted: all four note it, after any stray USR1
    common::wait_for_usr2_barrier(&c.stdout, 4);
    assert!(!c.stdout.text().contains("got SIGUSR1"));

    let stop = Instant::now();
    let out = podman(&["stop", "-t", "10", &c.name]);
    assert!(out.status.success());
    assert!(
        stop.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        stop.elapsed()
    );
    assert_eq!(c.exit_code(), 0);
}

#[test]
fn hup_reaches_egress_only() {
    if !engine_ready() {
        return;
    }
    let _ports = seed_ports();
    let c = Container::run(&[], demo(), &[]);
    c.wait_started(&SEED);
    c.kill("HUP");
    c.kill("USR2"); // unrouted: goes to all four, after the HUP
    common::assert_hup_reached_egress_only(&c.stdout);
}

#[test]
fn stop_with_a_daemon_ignoring_term_kills_it_at_the_grace_before_the_engine_would() {
    if !engine_ready() {
        return;
    }
    let dir = TempDir::new("c-stubborn");
    let flags = with_bundle(
        &dir,
        "shutdown-grace = 2s\n[polite]\nrun = bundle-testd --name polite\n[stubborn]\nrun = bundle-testd --name stubborn --ignore TERM\n",
    );
    let c = Container::run(&strs(&flags), demo(), &[]);
    c.wait_started(&["polite", "stubborn"]);
    let stop = Instant::now();
    assert!(podman(&["stop", "-t", "10", &c.name]).status.success());
    let took = stop.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(8),
        "stop took {took:?}"
    );
    // The exit-code rule (docs/bundle-file.md): a daemon that had to be SIGKILLed did not stop cleanly: 128+9.
    assert_eq!(c.exit_code(), 137);
    c.stderr.wait_for_text("sending SIGKILL");
}

#[test]
fn crashing_daemons_under_each_exit_policy() {
    if !engine_ready() {
        return;
    }
    let dir = TempDir::new("c-policies");
    let flags = with_bundle(
        &dir,
        "[crasher]\nrun = bundle-testd --name crasher --exit-after 0s 3\n\
         [flaky]\nrun = bundle-testd --name flaky --exit-after 0s 1\non-exit = restart\nrestart-delay = 10ms\n\
         [sibling]\nrun = bundle-testd --name sibling\n",
    );
    let c = Container::run(&strs(&flags), demo(), &[]);
    c.stderr
        .wait_for_text("crasher exited with code 3; not restarted (keep-running)");
    c.stderr.wait_for_n(2, "about flaky restarting", |l| {
        l.contains("flaky started again")
    });
    c.wait_started(&["sibling"]);
    assert!(podman(&["stop", "-t", "10", &c.name]).status.success());
    assert_eq!(
        c.exit_code(),
        3,
        "the keep-running crash before shutdown is the exit code"
    );

    let dir = TempDir::new("c-stop-bundle");
    let flags = with_bundle(
        &dir,
        "[sibling]\nrun = bundle-testd --name sibling\n[job]\nrun = bundle-testd --name job --exit-after 300ms 5\non-exit = stop-bundle\n",
    );
    let c = Container::run(&strs(&flags), demo(), &[]);
    assert_eq!(c.wait(), 5);
    c.stderr
        .wait_for_text("job exited with code 5; stopping the bundle (stop-bundle)");
}

#[test]
fn selection_variable_runs_one_daemon_and_a_typo_fails_the_container() {
    if !engine_ready() {
        return;
    }
    let _ports = seed_ports();
    let c = Container::run(&["-e", "BUNDLE_INIT_DAEMONS=pipelock"], demo(), &[]);
    c.wait_started(&["pipelock"]);
    c.kill("USR1");
    c.stderr.wait_for_text("pipelock restarted (SIGUSR1)");
    let names: Vec<String> = c.pids().into_keys().collect();
    assert_eq!(names, vec!["pipelock".to_string()]);

    let c = Container::run(&["-e", "BUNDLE_INIT_DAEMONS=pipelok"], demo(), &[]);
    assert_eq!(c.wait(), 2);
    let err = c.stderr.wait_for_text("unknown daemon");
    assert!(err.contains("\"pipelok\""), "{err}");
    assert!(!c.stdout.text().contains("started"));
}

#[test]
fn a_zombie_flood_inside_the_container_leaves_no_zombie() {
    if !engine_ready() {
        return;
    }
    let dir = TempDir::new("c-zombies");
    let flags = with_bundle(
        &dir,
        "[spawner]\nrun = bundle-testd --name spawner --orphans 2000\n",
    );
    let mut all = strs(&flags);
    all.extend(["-e", "BUNDLE_INIT_VERBOSITY=3"]);
    let c = Container::run(&all, demo(), &[]);
    c.stdout.wait_for_text("made 2000 orphans");
    c.stderr.wait_for_n(2000, "about reaped zombies", |l| {
        l.contains("Reaped zombie process with pid=")
    });
    // From the host: bundle-init is the container's PID 1; none of its children is a zombie.
    assert_eq!(zombie_children(c.host_pid()), Vec::<i32>::new());
}

#[test]
fn non_root_and_read_only_root_work() {
    if !engine_ready() {
        return;
    }
    let _ports = seed_ports();
    let c = Container::run(&["--user", "65534:65534", "--read-only"], demo(), &[]);
    c.wait_started(&SEED);
    c.kill("USR1");
    c.stderr.wait_for_text("pipelock restarted (SIGUSR1)");
    assert!(podman(&["stop", "-t", "10", &c.name]).status.success());
    assert_eq!(c.exit_code(), 0);
}

#[test]
fn per_daemon_uid_gid_when_started_as_root() {
    if !engine_ready() {
        return;
    }
    let dir = TempDir::new("c-user");
    let flags = with_bundle(
        &dir,
        "[nobody]\nrun = bundle-testd --name nobody --report\nuser = 65534:65534\n",
    );
    let c = Container::run(&strs(&flags), demo(), &[]);
    assert_eq!(
        common::report_value(&c.stdout, "Uid"),
        "65534 65534 65534 65534"
    );
    assert_eq!(common::report_value(&c.stdout, "Groups"), "");
}

/// The distribution pattern: COPY --from the one-file image into another FROM scratch
/// image, tini-style entrypoint.
fn single_child_image() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        let root = env!("CARGO_MANIFEST_DIR");
        let name = format!("localhost/bundle-init-single:{}", arch());
        let out = podman(&[
            "build",
            "--quiet",
            "--platform",
            &format!("linux/{}", arch()),
            "-f",
            &format!("{root}/tests/containers/Containerfile.single"),
            "-t",
            &name,
            root,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        name
    })
}

#[test]
fn single_child_mode_in_the_copy_from_pattern_propagates_exit_codes() {
    if !engine_ready() {
        return;
    }
    let image = single_child_image();
    for code in ["0", "42", "255"] {
        let c = Container::run(&[], image, &["--exit-after", "0s", code]);
        assert_eq!(c.wait().to_string(), code);
    }
    // Killed by a signal: 128+N, as tini reports it.
    let c = Container::run(&[], image, &["--die-on", "USR1"]);
    c.stdout.wait_for_text("started");
    c.kill("USR1");
    assert_eq!(c.wait(), 128 + 10);
}

#[test]
fn the_distribution_image_holds_one_file() {
    if !engine_ready() {
        return;
    }
    let out = podman(&[
        "image",
        "inspect",
        dist(),
        "--format",
        "{{len .RootFS.Layers}}",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    let mount = podman(&["image", "mount", dist()]);
    let dir = String::from_utf8_lossy(&mount.stdout).trim().to_string();
    assert!(
        mount.status.success() && !dir.is_empty(),
        "{}",
        String::from_utf8_lossy(&mount.stderr)
    );
    let entries: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let _ = podman(&["image", "unmount", dist()]);
    assert_eq!(entries, vec!["bundle-init".to_string()]);
}

/// `podman run -it`: Ctrl-C on the terminal reaches the single child, which dies of it.
#[test]
fn ctrl_c_through_podman_run_it_exits_130() {
    if !engine_ready() {
        return;
    }
    let image = single_child_image();
    let name = format!("bundle-init-test-tty-{}", std::process::id());
    let flags = run_flags().join(" ");
    let command = format!("podman run -it --rm --name {name} {flags} {image}");
    let mut script = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = script.stdin.take().unwrap();
    let lines = Lines::from_reader(script.stdout.take().unwrap());
    lines.wait_for("from the child", |l| {
        l.starts_with("testd ") && l.contains(" started")
    });
    stdin.write_all(&[3]).unwrap();
    stdin.flush().unwrap();
    let status = script.wait().unwrap();
    lines.wait_closed();
    let _ = podman(&["rm", "-f", &name]);
    assert_eq!(status.code(), Some(130), "{}", lines.text());
    assert!(lines.text().contains("got SIGINT"), "{}", lines.text());
}

/// `podman exec … /bundle-init status | restart | health` on a read-only root with nothing
/// else in the image, and a health check that turns the container unhealthy.
#[test]
fn control_through_podman_exec_and_a_healthcheck() {
    if !engine_ready() {
        return;
    }
    let _ports = seed_ports();
    let c = Container::run(
        &[
            "--read-only",
            "--health-cmd",
            "[\"/bundle-init\",\"health\"]",
            "--health-interval",
            "disable",
            "--health-retries",
            "1",
        ],
        demo(),
        &[],
    );
    c.wait_started(&SEED);
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", c.name.as_str(), "/bundle-init"];
        all.extend(args);
        let out = podman(&all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, status, _) = exec(&["status"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        status.lines().filter(|l| l.contains(" running ")).count(),
        4,
        "{status}"
    );
    let (code, out, err) = exec(&["restart", "git-gate"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("git-gate restarted: pid "), "{out}");
    let health = |c: &Container| {
        let out = podman(&["healthcheck", "run", &c.name]);
        let state = podman(&["inspect", &c.name, "--format", "{{.State.Health.Status}}"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&state.stdout).trim().to_string(),
        )
    };
    assert_eq!(health(&c), (Some(0), "healthy".to_string()));
    // git-gate goes down for good (keep-running): the health check fails.
    assert_eq!(exec(&["signal", "git-gate", "KILL"]).0, Some(0));
    c.stderr
        .wait_for_text("git-gate was killed by SIGKILL; not restarted");
    let (code, state) = health(&c);
    assert_ne!(code, Some(0));
    assert_eq!(state, "unhealthy");
    let (code, _, err) = exec(&["health"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("git-gate is down"), "{err}");
}

/// Ordered start inside a container: the app starts only once the database accepts
/// connections, which bundle-init checks itself (the image has no tool to do it).
#[test]
fn ordered_start_waits_for_readiness_in_a_container() {
    if !engine_ready() {
        return;
    }
    let dir = TempDir::new("c-ready");
    let flags = with_bundle(
        &dir,
        "[db]\nrun = bundle-testd --name db --delay 300ms --listen 127.0.0.1:5432\nready = tcp:127.0.0.1:5432\n\
         [app]\nrun = bundle-testd --name app\nafter = db\n",
    );
    let c = Container::run(&strs(&flags), demo(), &[]);
    c.wait_started(&["db", "app"]);
    c.stderr.wait_for_text("app started");
    let log = c.stderr.all();
    let at = |text: &str| log.iter().position(|l| l.contains(text)).unwrap();
    assert!(
        at("app waits for db to be ready") < at("db is ready")
            && at("db is ready") < at("app started"),
        "{log:#?}"
    );
}

/// The mixed-writer run of the hardening suite with podman's own pipes: `--log-driver
/// passthrough` hands the test's pipe to the container as its stdout, and the test reads it
/// slowly.
#[test]
fn prefixed_records_stay_whole_beside_an_unprefixed_writer_in_a_container() {
    if !engine_ready() {
        return;
    }
    let dir = TempDir::new("c-mixed");
    let bundle = with_bundle(&dir, common::MIXED_WRITERS_BUNDLE);
    let mut child = Command::new("podman")
        .args(["run", "--rm", "--log-driver", "passthrough"])
        .args(run_flags())
        .args(strs(&bundle))
        .arg(demo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Lines::from_reader(common::SlowReader(child.stdout.take().unwrap()));
    let stderr = Lines::from_reader(child.stderr.take().unwrap());
    let status = child.wait().unwrap();
    stdout.wait_closed();
    assert!(status.success(), "{status:?}: {}", stderr.text());
    common::assert_no_spliced_line(&stdout.all());
}

/// The leftover tree of the hardening suite (a setsid child that ignores TERM, and its
/// child) in a container: as PID 1, and as a subreaper under `podman run --init`
/// (catatonit as PID 1). bundle-init sweeps until wait reports no children, so it reaps
/// both itself (`-w` logs each), instead of leaving the last one to the kernel or catatonit.
#[test]
fn a_leftover_tree_is_swept_to_the_last_process_in_a_container() {
    if !engine_ready() {
        return;
    }
    let dir = TempDir::new("c-tree");
    let bundle = with_bundle(
        &dir,
        "shutdown-grace = 2s\n[t]\nrun = bundle-testd --name t --tree --exit-after 0s 0\n",
    );
    for init_flag in [&[][..], &["--init"][..]] {
        if !init_flag.is_empty()
            && common::skip_when_emulated(
                "containers::a_leftover_tree_*: under --init",
                common::QEMU_NO_SUBREAPER,
            )
        {
            continue;
        }
        let extra = [strs(&bundle), init_flag.to_vec()].concat();
        let c = Container::run(&extra, demo(), &["-w"]);
        let line = c.stdout.wait_for("the tree", |l| l.contains(" tree "));
        assert_eq!(c.wait(), 0, "{}", c.stderr.text());
        c.stderr.wait_closed();
        for pid in line.rsplit(' ').take(2) {
            assert_eq!(
                c.stderr
                    .count(|l| l.contains(&format!("Reaped zombie process with pid={pid} "))),
                1,
                "{init_flag:?}: bundle-init did not reap {pid} itself:\n{}",
                c.stderr.text()
            );
        }
    }
}

/// Under the project's `--ulimit nofile=1024:1024`: 256 prefixed daemons (4 descriptors
/// each) cannot fit, and both --check and the start say so plainly, before anything
/// starts (the start used to fail part-way with `cannot create output pipes`). 250, the
/// most that fit as docs/bundle-file.md (Descriptors) works out (3 + 20 + 4 x 250 = 1023), all start.
#[test]
fn the_descriptor_limit_is_checked_before_anything_starts_in_a_container() {
    if !engine_ready() {
        return;
    }
    let bundle_of = |dir: &TempDir, count: usize| {
        let text: String = (0..count)
            .map(|i| format!("[d{i}]\nrun = bundle-testd --name d{i}\n"))
            .collect();
        with_bundle(dir, &text)
    };
    let dir = TempDir::new("c-nofile");
    let over = bundle_of(&dir, 256);
    for args in [&["--check"][..], &[][..]] {
        let c = Container::run(&strs(&over), demo(), args);
        assert_eq!(c.wait(), 1, "{args:?}");
        c.stderr.wait_closed();
        let err = c.stderr.all();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(
            err[0].contains("the bundle needs up to 1047 open descriptors (4 per prefixed daemon), but the limit (RLIMIT_NOFILE) is 1024"),
            "{err:?}"
        );
        c.stdout.wait_closed();
        assert!(c.stdout.all().is_empty(), "nothing started: {args:?}");
    }
    let dir = TempDir::new("c-nofile-fits");
    let fits = bundle_of(&dir, 250);
    let c = Container::run(&strs(&fits), demo(), &[]);
    c.stdout
        .wait_for_n(250, "250 daemons started", |l| l.ends_with(" started"));
    c.kill("TERM");
    assert_eq!(c.wait(), 0, "{}", c.stderr.text());
}

/// A script without `#!` in a FROM scratch image: there is no /bin/sh to fall back on, so
/// the start fails with 126 and says why.
#[test]
fn a_script_without_a_shebang_and_no_shell_is_126_with_a_clear_message() {
    if !engine_ready() {
        return;
    }
    let dir = TempDir::new("c-no-shell");
    let script = dir.write("script", "echo hello\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mount = format!("{script}:/script:ro");
    let c = Container::run(&["-v", &mount], dist(), &["/script"]);
    assert_eq!(c.wait(), 126);
    c.stderr.wait_closed();
    assert_eq!(
        c.stderr.all(),
        [
            "[bundle-init] error: cannot start script: exec /script failed: not a format this system can run, and no /bin/sh to run it as a script"
        ]
    );
}

/// `just image` writes each manifest list as an OCI archive. `podman run --arch A` picks
/// that architecture's instance: the init runs itself as its child and says which build
/// it is. (From an archive: podman 4.3 cannot pick an instance from a local list.)
#[test]
fn the_multi_arch_archive_runs_each_architecture() {
    if !engine_ready() {
        return;
    }
    let archive = format!(
        "oci-archive:{}/target/image/bundle-init.oci.tar",
        env!("CARGO_MANIFEST_DIR")
    );
    // This machine's last: running an archive tags what it ran as :latest.
    for (arch, uname) in [("arm64", "aarch64"), ("amd64", "x86_64")] {
        let flags: Vec<&str> = include_str!("containers/podman-run-flags")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        let out = Command::new("podman")
            .args(["run", "--rm", "--arch", arch])
            .args(&flags)
            .args([archive.as_str(), "--", "/bundle-init", "--version"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.ends_with(&format!(" linux/{uname}\n")),
            "{arch}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The seed's daemons with HUP reloading the file, which is mounted read-only from the
/// host (the directory, so an edit on the host shows).
fn reload_bundle(pipelock: &str, last: &str) -> String {
    format!(
        "shutdown-grace = 8s\non SIGHUP = reload\n\
         [egress]\nrun = bundle-testd --name egress --listen 0.0.0.0:18080\n\
         [pipelock]\nrun = bundle-testd --name pipelock --listen 0.0.0.0:18081 {pipelock}\n\
         [supervise]\nrun = bundle-testd --name supervise --listen 0.0.0.0:18090\n{last}"
    )
}

/// Live reload in a container: the operator edits the bundle file on the host and sends
/// HUP with `podman kill`, then reloads again with `podman exec`. Only what changed is
/// touched, and a connection held from outside to supervise goes on working.
#[test]
fn an_edited_bundle_file_is_reloaded_in_a_container_touching_only_what_changed() {
    if !engine_ready() {
        return;
    }
    let _ports = seed_ports();
    let dir = TempDir::new("c-reload");
    let git_gate = "[git-gate]\nrun = bundle-testd --name git-gate --listen 0.0.0.0:19418\n";
    dir.write("r.bundle", &reload_bundle("", git_gate));
    let mount = format!("{}:/etc/bundle-init:ro", dir.0.display());
    let c = Container::run(
        &[
            "-v",
            &mount,
            "-e",
            "BUNDLE_INIT_BUNDLE=/etc/bundle-init/r.bundle",
            "-p",
            "127.0.0.1:28090:18090",
        ],
        demo(),
        &[],
    );
    c.wait_started(&SEED);
    let before = c.pids();
    let mut supervise = common::HeldConnection::open("127.0.0.1:28090");
    let mut ask = |text: &str| supervise.ask(text);
    assert_eq!(
        ask("one"),
        format!("supervise {}: one\n", before["supervise"])
    );

    // 1. A new flag for pipelock, applied with HUP.
    dir.write("r.bundle", &reload_bundle("--delay 0s", git_gate));
    c.kill("HUP");
    c.stderr
        .wait_for_text("reload (SIGHUP): pipelock changed (run), 3 unchanged");
    c.stderr.wait_for_text("pipelock restarted (reload)");
    c.stdout.wait_for_n(2, "pipelock starting twice", |l| {
        l.starts_with("[pipelock]") && l.ends_with(" started")
    });
    let after = c.pids();
    assert_ne!(after["pipelock"], before["pipelock"]);
    for name in ["egress", "git-gate", "supervise"] {
        assert_eq!(after[name], before[name], "{name} kept its pid");
    }
    assert_eq!(
        ask("two"),
        format!("supervise {}: two\n", before["supervise"])
    );

    // 2. git-gate out, metrics in, with `podman exec`: the answer says what was done.
    let metrics = "[metrics]\nrun = bundle-testd --name metrics\n";
    dir.write("r.bundle", &reload_bundle("--delay 0s", metrics));
    let exec = |args: &[&str]| {
        let mut all = vec!["exec", c.name.as_str(), "/bundle-init"];
        all.extend(args);
        let out = podman(&all);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = exec(&["reload"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "reloaded (generation 3): metrics added, git-gate removed, 3 unchanged\n"
    );
    c.wait_started(&["metrics"]);
    c.stderr.wait_for_text(&format!(
        "git-gate was killed by SIGTERM (pid {}): removed",
        before["git-gate"]
    ));
    // 3. A broken file changes nothing.
    dir.write("r.bundle", "[egress]\nrun =\n");
    let (code, _, err) = exec(&["reload"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        err,
        "bundle-init: /etc/bundle-init/r.bundle:2: \"run\" needs a program\n"
    );
    let (_, status, _) = exec(&["status"]);
    assert!(status.contains("bundle file generation 3,"), "{status}");
    assert_eq!(
        ask("three"),
        format!("supervise {}: three\n", before["supervise"])
    );
    let out = podman(&["stop", "-t", "10", &c.name]);
    assert!(out.status.success());
    assert_eq!(c.exit_code(), 0);
}

/// A daemon whose port died is restarted by its liveness check, alone: a connection held
/// from the host through a published port to its sibling answers before and after, and
/// the sibling keeps its pid.
#[test]
fn a_daemon_that_stops_answering_is_restarted_alone_in_a_container() {
    if !engine_ready() {
        return;
    }
    let _ports = seed_ports();
    let dir = TempDir::new("c-live");
    let mut flags = with_bundle(
        &dir,
        "[web]\nrun = bundle-testd --name web --listen 0.0.0.0:18091 --close-on USR2\n\
         live = tcp:127.0.0.1:18091\nlive-every = 100ms\n\
         [db]\nrun = bundle-testd --name db --listen 0.0.0.0:18090\n",
    );
    flags.extend(["-p".into(), "127.0.0.1:28090:18090".into()]);
    let c = Container::run(&strs(&flags), demo(), &[]);
    c.wait_started(&["web", "db"]);
    let before = c.pids();
    let mut db = common::HeldConnection::open("127.0.0.1:28090");
    assert_eq!(db.ask("one"), format!("db {}: one\n", before["db"]));
    let out = podman(&["exec", &c.name, "/bundle-init", "signal", "web", "USR2"]);
    assert!(out.status.success(), "{out:?}");
    c.stderr
        .wait_for_text("web restarted (liveness: connect to 127.0.0.1:18091 refused, 3 in a row)");
    c.stdout.wait_for_n(2, "web starting again", |l| {
        l.starts_with("[web] ") && l.ends_with(" started")
    });
    assert_eq!(db.ask("two"), format!("db {}: two\n", before["db"]));
    let after = c.pids();
    assert_eq!(after["db"], before["db"]);
    assert_ne!(after["web"], before["web"]);
}

/// `curl http://127.0.0.1:PORT{path}` from the host: (status, body).
fn curl_from_host(port: u16, path: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args([
            "--silent",
            "--max-time",
            "10",
            "--write-out",
            "\n%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (status.parse().unwrap_or(0), body.to_string())
}

#[test]
fn the_http_endpoint_answers_the_host_through_a_published_port() {
    if !engine_ready() {
        return;
    }
    let dir = TempDir::new("ctr-http");
    let flags = with_bundle(
        &dir,
        "http = 0.0.0.0:8080\n[web]\nrun = bundle-testd --name web\n\
         [worker]\nrun = bundle-testd --name worker\non-exit = keep-running\n",
    );
    // A host port nothing listens on now (released before podman binds it).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let publish = format!("127.0.0.1:{port}:8080");
    let mut all = vec!["-p", publish.as_str()];
    all.extend(strs(&flags));
    let c = Container::run(&all, demo(), &[]);
    c.wait_started(&["web", "worker"]);
    assert_eq!(curl_from_host(port, "/healthz"), (200, "healthy\n".into()));
    assert_eq!(curl_from_host(port, "/readyz").0, 200);
    let (code, status) = curl_from_host(port, "/status");
    assert_eq!(code, 200);
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(doc["daemons"][1]["name"], "worker", "{doc}");
    let (code, metrics) = curl_from_host(port, "/metrics");
    assert_eq!(code, 200);
    let parsed = openmetrics_parser::prometheus::parse_prometheus(&metrics)
        .unwrap_or_else(|e| panic!("{e:?}\n{metrics}"));
    assert!(parsed.families.contains_key("bundle_init_daemon_up"));
    let out = podman(&["exec", &c.name, "/bundle-init", "signal", "worker", "KILL"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.stderr.wait_for_text("worker was killed by SIGKILL");
    assert_eq!(
        curl_from_host(port, "/healthz"),
        (503, "worker is down: it was killed by SIGKILL\n".into())
    );
    let out = podman(&["stop", "-t", "10", &c.name]);
    assert!(out.status.success());
}
