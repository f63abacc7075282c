//! The container engine the image tests need: podman with runc, and the images `just image`
//! built. Shared by the container suite and the pod and compose suite.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use super::Lines;

/// The architecture under test, as podman names it: amd64 unless BUNDLE_INIT_ARCH says
/// otherwise (`just test-containers-arm64` runs the suite on the arm64 images under qemu).
pub fn arch() -> &'static str {
    static ARCH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ARCH.get_or_init(|| std::env::var("BUNDLE_INIT_ARCH").unwrap_or_else(|_| "amd64".into()))
}

/// The demo image of that architecture (`just image` tags each one), or the image
/// BUNDLE_INIT_DEMO_IMAGE names: a change's container tests can then run against an image
/// of its own, leaving the shared tags to the other test runs on the machine.
pub fn demo() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("BUNDLE_INIT_DEMO_IMAGE")
            .unwrap_or_else(|_| format!("localhost/bundle-init-demo:{}", arch()))
    })
}

/// The one-file distribution image of that architecture.
pub fn dist() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| format!("localhost/bundle-init:{}", arch()))
}

/// The flags every `podman run` needs on this kind of machine; see the file for why.
pub fn run_flags() -> Vec<&'static str> {
    include_str!("../containers/podman-run-flags")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .chain(["--arch", arch()])
        .collect()
}

/// True when the tests can run; false (after saying so loudly) when they must skip.
pub fn engine_ready() -> bool {
    let works = Command::new("podman")
        .args(["image", "exists", demo()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
        && Command::new("podman")
            .args(["image", "exists", dist()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
    if works {
        return true;
    }
    let why = "podman or the images are missing: install podman and runc, then run `just image`";
    if std::env::var_os("BUNDLE_INIT_REQUIRE_ENGINE").is_some() {
        panic!("{why} (BUNDLE_INIT_REQUIRE_ENGINE is set, so this fails instead of skipping)");
    }
    eprintln!("\n*** SKIPPED: container test: {why} ***\n");
    false
}

pub fn podman(args: &[&str]) -> std::process::Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs")
}

/// A container that is removed when the test ends, however it ends.
pub struct Container {
    pub name: String,
    pub stdout: Lines,
    pub stderr: Lines,
    /// `podman logs -f`, which ends when the container is removed.
    follower: std::process::Child,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Container {
    /// `podman run -d` with the standard flags, `extra` flags, the image and its arguments.
    pub fn run(extra: &[&str], image: &str, args: &[&str]) -> Container {
        let name = format!(
            "bundle-init-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend(run_flags());
        all.extend(extra);
        all.push(image);
        all.extend(args);
        let out = podman(&all);
        assert!(
            out.status.success(),
            "podman run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut follower = Command::new("podman")
            .args(["logs", "-f", &name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = Lines::from_reader(follower.stdout.take().unwrap());
        let stderr = Lines::from_reader(follower.stderr.take().unwrap());
        Container {
            name,
            stdout,
            stderr,
            follower,
        }
    }

    pub fn host_pid(&self) -> i32 {
        let out = podman(&["inspect", &self.name, "--format", "{{.State.Pid}}"]);
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    pub fn kill(&self, signal: &str) {
        let out = podman(&["kill", "--signal", signal, &self.name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits for the container to stop; returns its exit code as podman inspect reports it.
    pub fn wait(&self) -> i32 {
        let out = podman(&["wait", &self.name]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.exit_code()
    }

    pub fn exit_code(&self) -> i32 {
        let out = podman(&["inspect", &self.name, "--format", "{{.State.ExitCode}}"]);
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// `[name] name PID started` lines, latest pid per daemon.
    pub fn pids(&self) -> std::collections::HashMap<String, i32> {
        super::daemon_pids(&self.stdout)
    }

    pub fn wait_started(&self, names: &[&str]) {
        for name in names {
            self.stdout.wait_for(&format!("from {name}"), |l| {
                l.starts_with(&format!("[{name}] ")) && l.ends_with(" started")
            });
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
        let _ = self.follower.kill();
        let _ = self.follower.wait();
    }
}
