//! bundle-init under the ways people start containers besides `podman run`: Kubernetes pod
//! specs (run locally with `podman kube play`) and compose files (`podman-compose`). Every
//! pod and compose file is in tests/orchestrators/, and is what docs/containers.md points to.
//!
//! Like the container suite, these fail instead of skipping when BUNDLE_INIT_REQUIRE_ENGINE
//! is set (`just test`, CI). They run on this machine's architecture: the files name the
//! `:latest` images, which `just image` tags for it.
// A test body tells one story from start to end; the 60-line limit is for src/.
#![allow(clippy::too_many_lines)]

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::engine::{engine_ready, podman};
use common::{Lines, started_pid};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/orchestrators");

/// podman with the pod tests' containers.conf (runc, and limits the infra container gets).
fn podman_conf(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .env("CONTAINERS_CONF", format!("{DIR}/containers.conf"))
        .output()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A pod from one of the files, torn down when the test ends, however it ends.
struct Pod {
    file: String,
    name: String,
}

impl Pod {
    fn play(file: &str, name: &str) -> Pod {
        let file = format!("{DIR}/{file}");
        // A pod left by an interrupted run would make kube play fail.
        let _ = podman(&["pod", "rm", "-f", "-t", "0", name]);
        // The guard first: a play that fails half-way is torn down too.
        let pod = Pod {
            file,
            name: name.to_string(),
        };
        let out = podman_conf("podman", &["kube", "play", &pod.file]);
        assert!(
            out.status.success(),
            "kube play {}: {}",
            pod.file,
            text(&out.stderr)
        );
        pod
    }

    /// `podman logs -f` of one container of the pod (named POD-CONTAINER by kube play).
    fn logs(&self, container: &str) -> Logs {
        Logs::follow(&format!("{}-{container}", self.name))
    }

    /// What the kubelet does when a pod is deleted: the stop signal, then SIGKILL at a
    /// grace. podman 4.3 does not read `terminationGracePeriodSeconds` (4.7 does): its
    /// containers get podman's default of 10 s, the value the files give, so the tests hold
    /// bundle-init to it. `podman kube down` of podman 4.3 stops with a timeout of 0, so the
    /// tests stop the pod first and only then tear it down.
    fn stop(&self) -> Duration {
        let start = Instant::now();
        let out = podman(&["pod", "stop", &self.name]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        start.elapsed()
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        let _ = podman_conf("podman", &["kube", "down", &self.file]);
        let _ = podman(&["pod", "rm", "-f", "-t", "0", &self.name]);
    }
}

/// A container's output, followed until the container is removed.
struct Logs {
    container: String,
    stdout: Lines,
    stderr: Lines,
    follower: std::process::Child,
}

impl Logs {
    fn follow(container: &str) -> Logs {
        let mut follower = Command::new("podman")
            .args(["logs", "-f", container])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Logs {
            container: container.to_string(),
            stdout: Lines::from_reader(follower.stdout.take().unwrap()),
            stderr: Lines::from_reader(follower.stderr.take().unwrap()),
            follower,
        }
    }

    fn wait_started(&self, names: &[&str]) {
        for name in names {
            self.stdout.wait_for(&format!("from {name}"), |l| {
                l.starts_with(&format!("[{name}] ")) && l.ends_with(" started")
            });
        }
    }

    /// The latest pid each daemon announced.
    fn pids(&self) -> HashMap<String, i32> {
        common::daemon_pids(&self.stdout)
    }

    /// `podman exec` of a program in this container: (exit code, stdout, stderr).
    fn exec(&self, env: &[&str], program: &[&str]) -> (Option<i32>, String, String) {
        let mut args = vec!["exec"];
        for e in env {
            args.extend(["-e", e]);
        }
        args.push(&self.container);
        args.extend(program);
        let out = podman(&args);
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    }

    fn inspect(&self, format: &str) -> String {
        let out = podman(&["inspect", &self.container, "--format", format]);
        text(&out.stdout).trim().to_string()
    }

    fn host_pid(&self) -> i32 {
        self.inspect("{{.State.Pid}}").parse().unwrap()
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        let _ = self.follower.kill();
        let _ = self.follower.wait();
    }
}

const SEED: [&str; 4] = ["egress", "pipelock", "git-gate", "supervise"];
const PROBE: [&str; 2] = ["/bundle-init", "health"];

/// The probe as the file gives it, run as a kubelet or docker compose runs an exec check:
/// directly, no shell. podman 4.3's kube play and podman-compose 1.0.3 wrap it in
/// `/bin/sh -c`, which a FROM scratch image does not have; docs/containers.md says so.
fn assert_probe_passes(c: &Logs) {
    let (code, out, err) = c.exec(&[], &PROBE);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.trim(), "healthy");
}

#[test]
fn the_demo_pod_passes_its_exec_probes_and_stops_within_its_grace() {
    if !engine_ready() {
        return;
    }
    let spec = std::fs::read_to_string(format!("{DIR}/demo-pod.yaml")).unwrap();
    let probe_line = format!("command: {PROBE:?}");
    assert_eq!(
        spec.matches(&probe_line).count(),
        2,
        "both probes run {PROBE:?}"
    );
    let pod = Pod::play("demo-pod.yaml", "bundle-init-demo");
    let c = pod.logs("bundle");
    c.wait_started(&SEED);
    // The pod's settings reached the container: the probe and the read-only root.
    assert!(
        c.inspect("{{.Config.Healthcheck.Test}}")
            .contains("/bundle-init health")
    );
    assert_eq!(c.inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");
    for _ in 0..3 {
        assert_probe_passes(&c);
    }
    let took = pod.stop();
    // Every daemon stopped on TERM: the exit-code rule (docs/bundle-file.md) gives 0, and it came before the grace.
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{}", c.stderr.text());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    for name in SEED {
        c.stderr
            .wait_for_text(&format!("{name} was killed by SIGTERM"));
    }
}

#[test]
fn a_sibling_container_in_the_pod_finds_the_control_socket_and_is_refused() {
    if !engine_ready() {
        return;
    }
    let pod = Pod::play("sibling-pod.yaml", "bundle-init-sibling");
    let bundle = pod.logs("bundle");
    let sibling = pod.logs("sibling");
    bundle.wait_started(&SEED);
    sibling.stdout.wait_for_text("sibling");
    // The socket is named after bundle-init's PID namespace; the sibling sees it in the
    // network namespace they share.
    let pid_ns = std::fs::read_link(format!("/proc/{}/ns/pid", bundle.host_pid())).unwrap();
    let inode: String = pid_ns
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let name = format!("@bundle-init.{inode}");
    let sockets =
        std::fs::read_to_string(format!("/proc/{}/net/unix", sibling.host_pid())).unwrap();
    assert!(
        sockets.lines().any(|l| l.ends_with(&format!(" {name}"))),
        "{name} is not in the sibling's /proc/net/unix:\n{sockets}"
    );
    let control = format!("BUNDLE_INIT_CONTROL={name}");
    let refusal = "permission denied: the client is outside bundle-init's PID namespace";
    for request in [
        &["status"][..],
        &["health"],
        &["restart", "pipelock"],
        &["signal", "egress", "HUP"],
    ] {
        let mut program = vec!["/bundle-init"];
        program.extend(request);
        let (code, out, err) = sibling.exec(&[&control], &program);
        assert_eq!(code, Some(1), "{request:?}: {out}{err}");
        assert!(err.contains(refusal), "{request:?}: {err}");
        assert_eq!(out, "", "{request:?}");
    }
    // Without the name the sibling's client looks for its own namespace's socket: none.
    let (code, _, err) = sibling.exec(&[], &["/bundle-init", "status"]);
    assert_eq!(code, Some(3), "{err}");
    // Nothing the sibling asked for happened; the same restart from inside is served. A
    // restart the sibling got through would have been logged before this one.
    let before = bundle.pids();
    let (code, out, err) = bundle.exec(&[], &["/bundle-init", "restart", "pipelock"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("pipelock restarted"), "{out}");
    bundle.stderr.wait_for_text("pipelock restarted (control)");
    assert_eq!(
        bundle.stderr.count(|l| l.contains(" restarted (")),
        1,
        "{}",
        bundle.stderr.text()
    );
    bundle.stdout.wait_for("pipelock's new pid", |l| {
        l.starts_with("[pipelock] ")
            && l.ends_with(" started")
            && started_pid(l) != before["pipelock"]
    });
    let after = bundle.pids();
    for name in SEED {
        assert_eq!(before[name] == after[name], name != "pipelock", "{name}");
    }
    // A barrier: once egress notes this USR2, anything sent to it before would show.
    let (code, _, err) = bundle.exec(&[], &["/bundle-init", "signal", "egress", "USR2"]);
    assert_eq!(code, Some(0), "{err}");
    bundle.stdout.wait_for_text("got SIGUSR2");
    assert_eq!(bundle.stdout.count(|l| l.contains("got SIGHUP")), 0);
    assert_probe_passes(&bundle);
    pod.stop();
}

#[test]
fn with_a_shared_pid_namespace_bundle_init_is_a_subreaper_that_leaves_the_sibling_alone() {
    if !engine_ready() {
        return;
    }
    let pod = Pod::play("shared-pid-pod.yaml", "bundle-init-shared-pid");
    let bundle = pod.logs("bundle");
    let sibling = pod.logs("sibling");
    bundle.wait_started(&["spawner", "server"]);
    sibling.stdout.wait_for_text("sibling");
    // The infra process is PID 1 of the shared namespace; bundle-init is not.
    let status = std::fs::read_to_string(format!("/proc/{}/status", bundle.host_pid())).unwrap();
    let nspid = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    assert_ne!(nspid.split_whitespace().last(), Some("1"), "{nspid}");
    // The orphans come to bundle-init (a subreaper), not to PID 1: it reaps every one.
    bundle.stdout.wait_for_text("made 2000 orphans");
    bundle.stderr.wait_for_n(2000, "about reaped zombies", |l| {
        l.contains("Reaped zombie process with pid=")
    });
    let took = pod_stop_one(&bundle);
    assert_eq!(
        bundle.inspect("{{.State.ExitCode}}"),
        "0",
        "{}",
        bundle.stderr.text()
    );
    assert!(
        took < Duration::from_secs(5),
        "past the shutdown-grace: {took:?}"
    );
    // The sibling's process shared the namespace the whole time and got no signal. A
    // barrier: once it notes this USR2, a signal bundle-init had sent would show first.
    assert_eq!(sibling.inspect("{{.State.Running}}"), "true");
    let out = podman(&["kill", "--signal", "USR2", &sibling.container]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    sibling.stdout.wait_for_text("got SIGUSR2");
    let noted: Vec<String> = sibling
        .stdout
        .all()
        .into_iter()
        .filter(|l| l.contains(" got "))
        .collect();
    assert_eq!(noted.len(), 1, "{noted:?}");
    pod.stop();
}

/// `podman stop` of one container of a pod, with the grace the pod spec gave it.
fn pod_stop_one(c: &Logs) -> Duration {
    let start = Instant::now();
    let out = podman(&["stop", &c.container]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    start.elapsed()
}

#[test]
fn a_single_child_pod_stops_its_app_with_the_rewritten_signal() {
    if !engine_ready() {
        return;
    }
    let pod = Pod::play("rewrite-pod.yaml", "bundle-init-rewrite");
    let app = pod.logs("app");
    app.stdout.wait_for("the app", |l| {
        l.starts_with("app ") && l.ends_with(" started")
    });
    let took = pod.stop();
    // The app got QUIT instead of TERM and died of it: 128+3, long before the grace's KILL.
    app.stdout.wait_for_text("got SIGQUIT");
    assert_eq!(
        app.stdout.count(|l| l.contains("got SIGTERM")),
        0,
        "{}",
        app.stdout.text()
    );
    assert_eq!(app.inspect("{{.State.ExitCode}}"), "131");
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[test]
fn the_compose_example_restarts_only_pipelock_and_stops_cleanly() {
    if !engine_ready() {
        return;
    }
    let file = format!("{DIR}/compose.yaml");
    let project = "bundle-init-compose-test";
    let compose = |args: &[&str]| {
        let mut all = vec!["-f", file.as_str(), "-p", project];
        all.extend(args);
        podman_conf("podman-compose", &all)
    };
    struct Down<'a>(&'a dyn Fn(&[&str]) -> std::process::Output);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = (self.0)(&["down"]);
            // podman-compose 1.0.3's down leaves the project's network.
            let _ = podman(&["network", "rm", "-f", "bundle-init-compose-test_default"]);
        }
    }
    let _ = compose(&["down"]);
    let _down = Down(&compose);
    let up = compose(&["up", "-d"]);
    assert!(
        up.status.success(),
        "{}{}",
        text(&up.stdout),
        text(&up.stderr)
    );
    let c = Logs::follow(&format!("{project}_bundle_1"));
    c.wait_started(&SEED);
    assert_probe_passes(&c);
    let before = c.pids();
    // podman-compose 1.0.3 has no `kill`: the signal goes through podman.
    let out = podman(&["kill", "--signal", "USR1", &c.container]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    c.stderr.wait_for_text("pipelock restarted (SIGUSR1)");
    c.wait_started(&["pipelock"]);
    c.stdout.wait_for("pipelock's new pid", |l| {
        l.starts_with("[pipelock] ")
            && l.ends_with(" started")
            && started_pid(l) != before["pipelock"]
    });
    let after = c.pids();
    for name in SEED {
        assert_eq!(
            before[name] == after[name],
            name != "pipelock",
            "{name}: {before:?} {after:?}"
        );
    }
    // podman-compose 1.0.3 does not pass stop_grace_period on (podman's default of 10 s
    // applies, the value the file gives) and its `down` stops with a timeout of 1 s: so
    // `stop` first.
    let start = Instant::now();
    let stop = compose(&["stop"]);
    assert!(stop.status.success(), "{}", text(&stop.stderr));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(c.inspect("{{.State.ExitCode}}"), "0", "{}", c.stderr.text());
    let down = compose(&["down"]);
    assert!(down.status.success(), "{}", text(&down.stderr));
}
