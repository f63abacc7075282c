//! bundle-init under Docker Engine: the seed scenario and the checks tests/containers.rs
//! makes under podman, with the FROM scratch demo image loaded into Docker (`podman save
//! | docker load`), and where the two engines differ (docs/docker.md). Needs a dockerd
//! reached through DOCKER_HOST (`.ci/run` starts one with tests/docker/dockerd); under
//! BUNDLE_INIT_REQUIRE_ENGINE (`just test`, CI) a missing one fails these tests.
#![allow(clippy::too_many_lines)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TempDir;
use common::engines::{Engine, Instance, in_docker, status_lines};

const DOCKER: Engine = Engine::Docker;
const SEED: [&str; 4] = ["egress", "pipelock", "git-gate", "supervise"];

fn demo() -> String {
    in_docker("localhost/bundle-init-demo:amd64")
}

/// The seed's daemons started, as their `[name] ... started` lines say.
fn seed_started(c: &Instance) {
    for name in SEED {
        c.stdout.wait_for(&format!("from {name}"), |l| {
            l.starts_with(&format!("[{name}] ")) && l.ends_with(" started")
        });
    }
}

/// A connection held to supervise (port 18090 in the container), as the agent's is.
struct Held {
    stream: std::net::TcpStream,
    reader: BufReader<std::net::TcpStream>,
}

impl Held {
    fn open(c: &Instance) -> Held {
        let stream = c.connect("127.0.0.1:18090");
        let reader = BufReader::new(stream.try_clone().unwrap());
        Held { stream, reader }
    }

    fn ask(&mut self, text: &str) -> String {
        writeln!(self.stream, "{text}").unwrap();
        let mut reply = String::new();
        self.reader.read_line(&mut reply).unwrap();
        reply
    }
}

#[test]
fn seed_usr1_restarts_pipelock_and_a_held_connection_to_supervise_survives_under_docker() {
    if !DOCKER.ready() {
        return;
    }
    let c = Instance::run(DOCKER, &["-e", "CRED_TOKEN=demo"], &demo(), &[]);
    seed_started(&c);
    let before = c.testd_pids();
    let mut held = Held::open(&c);
    assert_eq!(
        held.ask("one"),
        format!("supervise {}: one\n", before["supervise"])
    );

    c.kill("USR1");
    c.stderr.wait_for_text("pipelock restarted (SIGUSR1)");
    c.stdout.wait_for_n(2, "pipelock starting twice", |l| {
        l.starts_with("[pipelock]") && l.ends_with(" started")
    });
    let after = c.testd_pids();
    assert_ne!(after["pipelock"], before["pipelock"]);
    for name in ["egress", "git-gate", "supervise"] {
        assert_eq!(after[name], before[name], "{name} kept its pid");
    }
    assert_eq!(
        held.ask("two"),
        format!("supervise {}: two\n", before["supervise"]),
        "the held connection still works"
    );

    // `docker exec c /bundle-init status` in a FROM scratch image.
    let status = status_lines(&c.status());
    for name in SEED {
        assert!(status[name].contains(" running "), "{status:?}");
    }
    assert!(status["pipelock"].contains("restarts 1"), "{status:?}");

    let (took, code) = c.stop(10);
    assert!(took < Duration::from_secs(5), "stop took {took:?}");
    assert_eq!(code, 0);
    eprintln!(
        "[docker] seed: USR1 restarted pipelock, held connection answered, stopped in {took:.3?}"
    );
}

#[test]
fn read_only_root_and_another_user_work_under_docker() {
    if !DOCKER.ready() {
        return;
    }
    let c = Instance::run(
        DOCKER,
        &[
            "--read-only",
            "--user",
            "65534:65534",
            "-e",
            "CRED_TOKEN=demo",
        ],
        &demo(),
        &[],
    );
    seed_started(&c);
    let (_, out, _) = c.exec(&["/bundle-init", "status"]);
    assert!(out.contains("supervise "), "{out}");
    c.kill("USR1");
    c.stderr.wait_for_text("pipelock restarted (SIGUSR1)");
    let (_, code) = c.stop(10);
    assert_eq!(code, 0);
}

/// `docker run --init`: Docker's own init (tini, as docker-init) is PID 1 and bundle-init
/// its child, a subreaper. Signals pass through tini; the control socket is found the
/// same way (it is named by the PID namespace); and a setsid grandchild that ignores TERM,
/// and its child, are reaped by bundle-init itself, not left to tini.
#[test]
fn under_docker_run_init_bundle_init_is_a_subreaper_that_reaps_its_leftovers_itself() {
    if !DOCKER.ready() {
        return;
    }
    let c = Instance::run(DOCKER, &["--init", "-e", "CRED_TOKEN=demo"], &demo(), &[]);
    seed_started(&c);
    let init = c.host_pid();
    let exe = std::fs::read_link(format!("/proc/{init}/exe")).unwrap();
    assert!(
        exe.to_string_lossy().contains("tini") || exe.to_string_lossy().contains("docker-init"),
        "PID 1 is Docker's init: {exe:?}"
    );
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).unwrap();
    let child: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    let cmdline = std::fs::read_to_string(format!("/proc/{child}/cmdline")).unwrap();
    assert!(cmdline.starts_with("/bundle-init"), "{cmdline:?}");
    let (code, out, err) = c.exec(&["/bundle-init", "status"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.lines().filter(|l| l.contains(" running ")).count(),
        4,
        "{out}"
    );
    c.kill("USR1");
    c.stderr.wait_for_text("pipelock restarted (SIGUSR1)");
    let (_, code) = c.stop(10);
    assert_eq!(code, 0);

    let dir = TempDir::new("docker-tree");
    let path = dir.write(
        "t.bundle",
        "shutdown-grace = 2s\n[t]\nrun = bundle-testd --name t --tree --exit-after 0s 0\n",
    );
    let mount = format!("{path}:/etc/bundle-init/t.bundle:ro");
    let c = Instance::run(
        DOCKER,
        &[
            "--init",
            "-v",
            &mount,
            "-e",
            "BUNDLE_INIT_BUNDLE=/etc/bundle-init/t.bundle",
        ],
        &demo(),
        &["-w"],
    );
    let line = c.stdout.wait_for("the tree", |l| l.contains(" tree "));
    let out = DOCKER.ok(&["wait", &c.name]);
    assert_eq!(out.trim(), "0", "{}", c.text());
    c.stderr.wait_closed();
    for pid in line.rsplit(' ').take(2) {
        assert_eq!(
            c.stderr
                .count(|l| l.contains(&format!("Reaped zombie process with pid={pid} "))),
            1,
            "bundle-init did not reap {pid} itself:\n{}",
            c.stderr.text()
        );
    }
}

/// An image built by `docker build` with an exec-form HEALTHCHECK: Docker runs it as
/// written, with no shell, so a FROM scratch image is healthy, and unhealthy once a
/// daemon is down for good.
#[test]
fn an_exec_form_healthcheck_in_a_containerfile_works_in_a_from_scratch_image_under_docker() {
    if !DOCKER.ready() {
        return;
    }
    let base = demo();
    let name = "localhost/bundle-init-demo-healthcheck:test";
    let file = format!(
        "FROM {base}\nHEALTHCHECK --interval=1s --timeout=2s --retries=1 CMD [\"/bundle-init\", \"health\"]\n"
    );
    let mut build = Command::new(DOCKER.program())
        .args(["build", "--quiet", "--network", "none", "-t", name, "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    build
        .stdin
        .take()
        .unwrap()
        .write_all(file.as_bytes())
        .unwrap();
    let out = build.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = Instance::run(DOCKER, &["-e", "CRED_TOKEN=demo"], name, &[]);
    assert_eq!(
        c.inspect("{{json .Config.Healthcheck.Test}}"),
        r#"["CMD","/bundle-init","health"]"#
    );
    seed_started(&c);
    c.wait_health("healthy");
    let (code, _, err) = c.exec(&["/bundle-init", "signal", "git-gate", "KILL"]);
    assert_eq!(code, 0, "{err}");
    c.stderr
        .wait_for_text("git-gate was killed by SIGKILL; not restarted");
    c.wait_health("unhealthy");
}

/// The known difference: `docker run --health-cmd` takes a string and makes it CMD-SHELL,
/// even one written as a JSON list, and a FROM scratch image has no /bin/sh to run it, so
/// the container turns unhealthy though every daemon runs. (podman's `--health-cmd` takes
/// the JSON list as exec form.)
#[test]
fn docker_run_health_cmd_is_a_shell_command_that_a_from_scratch_image_cannot_run() {
    if !DOCKER.ready() {
        return;
    }
    let c = Instance::run(
        DOCKER,
        &[
            "--health-cmd",
            r#"["/bundle-init","health"]"#,
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
            "-e",
            "CRED_TOKEN=demo",
        ],
        &demo(),
        &[],
    );
    assert_eq!(
        c.inspect("{{json .Config.Healthcheck.Test}}"),
        r#"["CMD-SHELL","[\"/bundle-init\",\"health\"]"]"#
    );
    seed_started(&c);
    c.wait_health("unhealthy");
    let log = c.inspect("{{range .State.Health.Log}}{{.Output}}{{end}}");
    assert!(log.contains("/bin/sh"), "{log}");
    let (code, _, _) = c.exec(&["/bundle-init", "health"]);
    assert_eq!(code, 0, "bundle-init itself says healthy");
}

/// `docker stop` sends the image's STOPSIGNAL (TERM) and waits `-t` seconds; bundle-init's
/// shutdown budget is below it, so a daemon that ignores TERM is SIGKILLed by bundle-init
/// at its grace (exit code 137), before Docker would kill everything.
#[test]
fn docker_stop_with_a_daemon_ignoring_term_ends_at_bundle_inits_grace_with_137() {
    if !DOCKER.ready() {
        return;
    }
    let dir = TempDir::new("docker-stubborn");
    let path = dir.write(
        "s.bundle",
        "shutdown-grace = 2s\n[polite]\nrun = bundle-testd --name polite\n[stubborn]\nrun = bundle-testd --name stubborn --ignore TERM\n",
    );
    let mount = format!("{path}:/etc/bundle-init/s.bundle:ro");
    let c = Instance::run(
        DOCKER,
        &[
            "-v",
            &mount,
            "-e",
            "BUNDLE_INIT_BUNDLE=/etc/bundle-init/s.bundle",
        ],
        &demo(),
        &[],
    );
    for name in ["polite", "stubborn"] {
        c.stdout.wait_for(&format!("from {name}"), |l| {
            l.starts_with(&format!("[{name}] ")) && l.ends_with(" started")
        });
    }
    let started = Instant::now();
    let (took, code) = c.stop(10);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(8),
        "stop took {took:?} ({:?} since the request)",
        started.elapsed()
    );
    assert_eq!(code, 137);
    c.stderr.wait_for_text("sending SIGKILL");
}
