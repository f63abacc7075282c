//! Both container engines behind one face: podman (with the flags this kind of machine
//! needs) and Docker Engine (a `dockerd` that `.ci/run` starts, reached through
//! DOCKER_HOST). The recipe tests (tests/examples.rs) and the Docker suite
//! (tests/docker.rs) run the same checks on each.
//!
//! Containers run with `--network none`: the dockerd here has no bridge, and the same
//! flags then work under both engines. Clients reach a container's loopback from the host
//! by entering its network namespace (`nsenter --net`, or `setns` for a socket the test
//! holds itself), so the real client programs of the host (curl, psql, redis-cli) talk to
//! the real daemons.

use std::collections::HashMap;
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{Lines, PATIENCE};

/// The base image of the recipes: Debian bookworm from debootstrap (`just daemons-image`).
pub const BASE: &str = "localhost/debian:bookworm";
/// The image holding /bundle-init that the recipes copy it from (`just image`).
pub const BUNDLE_INIT: &str = "localhost/bundle-init:amd64";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    Podman,
    Docker,
}

impl Engine {
    /// The program that drives the engine. For Docker: Debian's CLI, the one `.ci/run`
    /// installs with the daemon (same version, same API), unless BUNDLE_INIT_DOCKER names
    /// another; a `docker` found first on PATH may be any other version.
    pub fn program(self) -> String {
        match self {
            Engine::Podman => "podman".into(),
            Engine::Docker => {
                std::env::var("BUNDLE_INIT_DOCKER").unwrap_or_else(|_| "/usr/bin/docker".into())
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Podman => "podman",
            Engine::Docker => "docker",
        }
    }

    pub fn cmd(self, args: &[&str]) -> Output {
        Command::new(self.program())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{} cannot run: {e}", self.program()))
    }

    /// Like `cmd`, and the command must succeed.
    pub fn ok(self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "{} {}: {}",
            self.name(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The flags every `run` needs here: podman's from tests/containers/podman-run-flags;
    /// both get `--network none` (see the module's comment).
    pub fn run_flags(self) -> Vec<&'static str> {
        let mut flags: Vec<&'static str> = match self {
            Engine::Podman => include_str!("../containers/podman-run-flags")
                .lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .collect(),
            Engine::Docker => vec![],
        };
        flags.extend(["--network", "none"]);
        flags
    }

    /// Whether the engine and the images the tests start from are there. When not: a
    /// loud SKIPPED line, or a failure when BUNDLE_INIT_REQUIRE_ENGINE is set (`just
    /// test`, CI), so CI cannot pass without running them.
    pub fn ready(self) -> bool {
        let missing = match self {
            Engine::Podman => [BASE, BUNDLE_INIT]
                .into_iter()
                .find(|image| {
                    !Engine::Podman
                        .cmd(&["image", "exists", image])
                        .status
                        .success()
                })
                .map(|image| {
                    format!("podman image {image} is missing: run `just image daemons-image`")
                }),
            Engine::Docker => docker_missing(),
        };
        let Some(why) = missing else {
            return true;
        };
        if std::env::var_os("BUNDLE_INIT_REQUIRE_ENGINE").is_some() {
            panic!("{why} (BUNDLE_INIT_REQUIRE_ENGINE is set, so this fails instead of skipping)");
        }
        eprintln!("\n*** SKIPPED: {} test: {why} ***\n", self.name());
        false
    }
}

/// Why Docker cannot be used, or None when `docker info` answers.
fn docker_missing() -> Option<String> {
    if std::env::var_os("DOCKER_HOST").is_none() {
        return Some(
            "DOCKER_HOST is not set: start a dockerd with `eval $(bash tests/docker/dockerd start DIR)` (what .ci/run does)".into(),
        );
    }
    let out = Command::new(Engine::Docker.program())
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match out {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "docker info fails: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("{} cannot run: {e}", Engine::Docker.program())),
    }
}

/// Podman's image `name` in Docker's store too: `podman save | docker load`, once per
/// image and test process (Docker cannot read podman's storage).
pub fn in_docker(name: &str) -> String {
    static LOADED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if !loaded.iter().any(|n| n == name) {
        let mut save = Command::new("podman")
            .args(["save", name])
            .stdout(Stdio::piped())
            .spawn()
            .expect("podman save");
        let load = Command::new(Engine::Docker.program())
            .arg("load")
            .stdin(save.stdout.take().unwrap())
            .output()
            .expect("docker load");
        assert!(save.wait().unwrap().success(), "podman save {name} failed");
        assert!(
            load.status.success(),
            "docker load of {name}: {}",
            String::from_utf8_lossy(&load.stderr)
        );
        loaded.push(name.to_string());
    }
    name.to_string()
}

/// The image of recipe `examples/RECIPE`, built from its Containerfile as written with
/// BASE and BUNDLE_INIT pointed at the local images; once per engine and test process.
/// Returns its name and how long the build took (zero when built before).
pub fn recipe_image(engine: Engine, recipe: &str) -> (String, Duration) {
    static BUILT: Mutex<Vec<(Engine, String)>> = Mutex::new(Vec::new());
    static BUILDING: OnceLock<Mutex<()>> = OnceLock::new();
    // One build at a time: each runs apt-get, and two at once only fight for the CPU.
    let _one = BUILDING
        .get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let name = format!("localhost/bundle-init-example-{recipe}:test");
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if built.iter().any(|(e, r)| *e == engine && r == recipe) {
        return (name, Duration::ZERO);
    }
    let started = Instant::now();
    let out = build(engine, recipe, &name);
    assert!(
        out.status.success(),
        "{} build of {recipe}: {}",
        engine.name(),
        String::from_utf8_lossy(&out.stderr)
    );
    built.push((engine, recipe.to_string()));
    let took = started.elapsed();
    eprintln!("built {name} with {} in {took:.1?}", engine.name());
    (name, took)
}

/// `build` of recipe `examples/RECIPE` as image `name`, with the engine's flags.
fn build(engine: Engine, recipe: &str, name: &str) -> Output {
    let dir = format!("{}/examples/{recipe}", env!("CARGO_MANIFEST_DIR"));
    let file = format!("{dir}/Containerfile");
    let base = format!("BASE={BASE}");
    let init = format!("BUNDLE_INIT={BUNDLE_INIT}");
    let args = [
        "--build-arg",
        &base,
        "--build-arg",
        &init,
        "-f",
        &file,
        "-t",
        name,
        &dir,
    ];
    match engine {
        // --format docker: podman's own format drops HEALTHCHECK.
        Engine::Podman => {
            let flags = [
                "build",
                "--quiet",
                "--runtime",
                "runc",
                "--format",
                "docker",
            ];
            engine.cmd(&[&flags[..], &args[..]].concat())
        }
        Engine::Docker => {
            in_docker(BASE);
            in_docker(BUNDLE_INIT);
            // --network host: this dockerd has no bridge for the build's apt-get.
            let flags = ["build", "--quiet", "--network", "host"];
            engine.cmd(&[&flags[..], &args[..]].concat())
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A container of either engine, removed (with its anonymous volumes) when dropped.
pub struct Instance {
    pub engine: Engine,
    pub name: String,
    pub stdout: Lines,
    pub stderr: Lines,
    /// `logs -f`, which ends when the container stops.
    follower: Child,
}

impl Instance {
    /// `run -d` with the engine's flags, `extra`, the image and its arguments.
    pub fn run(engine: Engine, extra: &[&str], image: &str, args: &[&str]) -> Instance {
        let name = format!(
            "bundle-init-{}-{}-{}",
            engine.name(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut all = vec!["run", "-d", "--name", &name];
        all.extend(engine.run_flags());
        all.extend(extra);
        all.push(image);
        all.extend(args);
        engine.ok(&all);
        let (follower, stdout, stderr) = follow(engine, &name);
        Instance {
            engine,
            name,
            stdout,
            stderr,
            follower,
        }
    }

    /// `start` again after a stop; the logs are followed from the beginning again (the
    /// first run's lines included).
    pub fn start_again(&mut self) {
        let _ = self.follower.kill();
        let _ = self.follower.wait();
        self.engine.ok(&["start", &self.name]);
        let (follower, stdout, stderr) = follow(self.engine, &self.name);
        self.follower = follower;
        self.stdout = stdout;
        self.stderr = stderr;
    }

    /// Both outputs, stderr first (bundle-init's own lines are there).
    pub fn text(&self) -> String {
        format!("{}\n{}", self.stderr.text(), self.stdout.text())
    }

    pub fn host_pid(&self) -> i32 {
        let out = self
            .engine
            .ok(&["inspect", &self.name, "--format", "{{.State.Pid}}"]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("no pid: {out}"))
    }

    pub fn inspect(&self, format: &str) -> String {
        self.engine
            .ok(&["inspect", &self.name, "--format", format])
            .trim()
            .to_string()
    }

    pub fn exit_code(&self) -> i32 {
        self.inspect("{{.State.ExitCode}}").parse().unwrap()
    }

    pub fn kill(&self, signal: &str) {
        self.engine.ok(&["kill", "--signal", signal, &self.name]);
    }

    /// `exec NAME ARGS...`: (exit code, stdout, stderr).
    pub fn exec(&self, args: &[&str]) -> (i32, String, String) {
        let mut all = vec!["exec", self.name.as_str()];
        all.extend(args);
        let out = self.engine.cmd(&all);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The pid of each bundle-testd daemon, from its `[name] name PID started` lines.
    pub fn testd_pids(&self) -> HashMap<String, i32> {
        super::daemon_pids(&self.stdout)
    }

    /// `/bundle-init status` through `exec`.
    pub fn status(&self) -> String {
        let (code, out, err) = self.exec(&["/bundle-init", "status"]);
        assert_eq!(code, 0, "status: {err}");
        out
    }

    /// `stop -t TIMEOUT`: how long it took, and the exit code.
    pub fn stop(&self, timeout: u32) -> (Duration, i32) {
        let started = Instant::now();
        self.engine
            .ok(&["stop", "-t", &timeout.to_string(), &self.name]);
        let took = started.elapsed();
        (took, self.exit_code())
    }

    /// (pid, parent pid, command line) of every process in the container, read from its
    /// /proc with the image's sh.
    pub fn processes(&self) -> Vec<(i32, i32, String)> {
        let script = r#"for d in /proc/[0-9]*; do s=$(cat $d/stat 2>/dev/null) || continue; c=$(tr '\0' ' ' < $d/cmdline 2>/dev/null); echo "${d#/proc/} $(echo "${s##*) }" | cut -d' ' -f2) $c"; done"#;
        let (code, out, err) = self.exec(&["sh", "-c", script]);
        assert_eq!(code, 0, "{err}");
        out.lines()
            .filter_map(|line| {
                let mut words = line.splitn(3, ' ');
                let pid = words.next()?.parse().ok()?;
                let ppid = words.next()?.parse().ok()?;
                let cmd = words.next().unwrap_or("").trim().to_string();
                // The listing's own sh and its children.
                (!cmd.starts_with("sh -c for d in") && !cmd.is_empty()).then_some((pid, ppid, cmd))
            })
            .collect()
    }

    /// Waits until `check` of the health status (`{{.State.Health.Status}}`) holds.
    pub fn wait_health(&self, want: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let state = self.inspect("{{.State.Health.Status}}");
            if state == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "health is {state:?}, not {want:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A command of the host run in the container's network namespace.
    pub fn net_command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["--target", &self.host_pid().to_string(), "--net", "--"])
            .arg(program);
        command
    }

    /// A TCP connection to `addr` inside the container's network namespace, held by the
    /// test.
    pub fn connect(&self, addr: &str) -> TcpStream {
        connect_in_netns(self.host_pid(), addr)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.engine.cmd(&["rm", "-f", "-v", &self.name]);
        let _ = self.follower.kill();
        let _ = self.follower.wait();
    }
}

fn follow(engine: Engine, name: &str) -> (Child, Lines, Lines) {
    let mut follower = Command::new(engine.program())
        .args(["logs", "-f", name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = Lines::from_reader(follower.stdout.take().unwrap());
    let stderr = Lines::from_reader(follower.stderr.take().unwrap());
    (follower, stdout, stderr)
}

/// A TCP connection made from inside process `pid`'s network namespace. A thread of its
/// own enters it (setns changes only the calling thread); the socket stays in the
/// namespace it was made in, wherever it is used from.
pub fn connect_in_netns(pid: i32, addr: &str) -> TcpStream {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .unwrap_or_else(|e| panic!("network namespace of {pid}: {e}"));
    let addr = addr.to_string();
    std::thread::spawn(move || {
        rustix::thread::move_into_link_name_space(
            ns.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("setns into the container's network namespace");
        let stream = TcpStream::connect(&addr)
            .unwrap_or_else(|e| panic!("nothing listens on {addr} in the container: {e}"));
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
    })
    .join()
    .expect("the connecting thread")
}

/// Daemon `name`'s pid by bundle-init's log: the latest `NAME started...: pid N` or
/// `NAME restarted (WHY): pid A -> N in ...` line.
pub fn started_pid(lines: &Lines, name: &str) -> i32 {
    let started = format!("[bundle-init] {name} started");
    let restarted = format!("[bundle-init] {name} restarted (");
    let all = lines.all();
    all.iter()
        .rev()
        .find_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            if l.starts_with(&started) && l.contains(": pid ") {
                words.last()?.parse().ok()
            } else if l.starts_with(&restarted) {
                let arrow = words.iter().position(|w| *w == "->")?;
                words.get(arrow + 1)?.parse().ok()
            } else {
                None
            }
        })
        .unwrap_or_else(|| panic!("no start of {name}:\n{}", all.join("\n")))
}

/// Daemon name → its status line.
pub fn status_lines(status: &str) -> HashMap<String, String> {
    status
        .lines()
        .filter_map(|l| Some((l.split_whitespace().next()?.to_string(), l.to_string())))
        .collect()
}
