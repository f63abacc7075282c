//! Real daemons from Debian under bundle-init in podman: nginx (a master and two workers in
//! its process group) and postgres (a postmaster whose backends each have a session of
//! their own), side by side in one image (`just daemons-image`). How they fork, signal and
//! hold their ports and shared memory is what these tests are about; bundle-testd cannot
//! stand in for that. They run on the host architecture only.
#![allow(clippy::too_many_lines)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::engine::{Container, podman};

const IMAGE: &str = "localhost/bundle-init-daemons-test:latest";

/// True when the image is there; false (after saying so loudly) when the tests must skip,
/// unless BUNDLE_INIT_REQUIRE_ENGINE says they must not.
fn image_ready() -> bool {
    let exists = Command::new("podman")
        .args(["image", "exists", IMAGE])
        .status()
        .is_ok_and(|s| s.success());
    if exists {
        return true;
    }
    let why = "podman or the real-daemon image is missing: run `just daemons-image`";
    if std::env::var_os("BUNDLE_INIT_REQUIRE_ENGINE").is_some() {
        panic!("{why} (BUNDLE_INIT_REQUIRE_ENGINE is set, so this fails instead of skipping)");
    }
    eprintln!("\n*** SKIPPED: real-daemon test: {why} ***\n");
    false
}

/// The bundle with nginx and postgres, both up and ready.
fn both_ready() -> Container {
    let c = Container::run(&["--network", "none"], IMAGE, &[]);
    for name in ["nginx", "db"] {
        c.stderr.wait_for(&format!("{name} to be ready"), |l| {
            l.contains(&format!("] {name} is ready"))
        });
    }
    c
}

/// Runs `script` with sh inside the container; its stdout.
fn sh(c: &Container, script: &str) -> String {
    let out = podman(&["exec", &c.name, "sh", "-c", script]);
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (pid, parent pid, command line) of every process in the container, from its /proc.
fn processes(c: &Container) -> Vec<(i32, i32, String)> {
    let listing = sh(
        c,
        r#"for d in /proc/[0-9]*; do s=$(cat $d/stat 2>/dev/null) || continue; c=$(tr '\0' ' ' < $d/cmdline 2>/dev/null); echo "${d#/proc/} $(echo "${s##*) }" | cut -d' ' -f2) $c"; done"#,
    );
    listing
        .lines()
        .filter_map(|line| {
            let mut words = line.splitn(3, ' ');
            let pid = words.next()?.parse().ok()?;
            let ppid = words.next()?.parse().ok()?;
            Some((pid, ppid, words.next().unwrap_or("").trim().to_string()))
        })
        .collect()
}

/// The pid a `[bundle-init] NAME started...: pid N` line names, the latest one.
fn started_pid(c: &Container, name: &str) -> i32 {
    let lines = c.stderr.all();
    let line = lines
        .iter()
        .rev()
        .find(|l| l.contains(&format!("] {name} started")))
        .unwrap_or_else(|| panic!("no start of {name}: {lines:?}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

fn status(c: &Container) -> String {
    let out = podman(&["exec", &c.name, "/bundle-init", "status"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status line of daemon `name`.
fn status_of(status: &str, name: &str) -> String {
    status
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
        .to_string()
}

/// nginx's master killed from outside, as the OOM killer does: its two workers used to be
/// adopted and keep port 8080, every new master failed with "bind() ... Address already
/// in use", and the readiness check, met by the orphans, said "ready" before each failure.
/// Now the workers are stopped first and the new master binds within its backoff; the
/// postgres beside it is not touched.
#[test]
fn nginx_killed_from_outside_comes_back_on_its_port_without_its_old_workers() {
    if !image_ready() {
        return;
    }
    let c = both_ready();
    let master = started_pid(&c, "nginx");
    let db = started_pid(&c, "db");
    let old_workers: Vec<i32> = processes(&c)
        .into_iter()
        .filter(|(_, ppid, cmd)| *ppid == master && cmd.starts_with("nginx: worker process"))
        .map(|(pid, _, _)| pid)
        .collect();
    assert_eq!(old_workers.len(), 2, "{:?}", processes(&c));

    sh(&c, &format!("kill -KILL {master}"));
    c.stderr.wait_for("the workers to be named", |l| {
        l.contains(&format!(
            "nginx (pid {master}) was killed by SIGKILL and left 2 processes"
        ))
    });
    c.stderr.wait_for("a new master", |l| {
        l.contains("] nginx started again: pid ")
    });
    c.stderr.wait_for_n(2, "the new master to be ready", |l| {
        l.contains("] nginx is ready")
    });
    let new_master = started_pid(&c, "nginx");
    let now = processes(&c);
    for worker in &old_workers {
        assert!(
            !now.iter().any(|(pid, _, _)| pid == worker),
            "old worker {worker} is still there: {now:?}"
        );
    }
    let new_workers = now
        .iter()
        .filter(|(_, ppid, cmd)| *ppid == new_master && cmd.starts_with("nginx: worker process"))
        .count();
    assert_eq!(new_workers, 2, "{now:?}");
    let log = c.stderr.text();
    assert!(!log.contains("Address already in use"), "{log}");
    let status = status(&c);
    let nginx = status_of(&status, "nginx");
    assert!(
        nginx.contains(&format!(" running   pid {new_master} ")) && nginx.contains("restarts 1"),
        "{status}"
    );
    assert!(
        status_of(&status, "db").contains(&format!("pid {db} ")),
        "the sibling kept its pid: {status}"
    );
}

/// postgres restarted while a client's query keeps it from stopping: TERM is its smart
/// shutdown, which waits; the grace runs out and SIGKILL goes to the postmaster's group,
/// which none of its backends is in. A busy backend used to outlive it, holding the shared
/// memory, and each new postmaster exited with "pre-existing shared memory block ... is
/// still in use" for as long as the query ran. Now what the postmaster left gets SIGKILL at
/// once (its grace is spent) and postgres comes back up.
#[test]
fn postgres_restarted_past_its_grace_comes_back_up_without_its_old_backends() {
    if !image_ready() {
        return;
    }
    let c = both_ready();
    let postmaster = started_pid(&c, "db");
    let nginx = started_pid(&c, "nginx");
    let mut client = Command::new("podman")
        .args([
            "exec",
            &c.name,
            "su",
            "postgres",
            "-s",
            "/bin/sh",
            "-c",
            "psql -h 127.0.0.1 -c 'select count(*) from generate_series(1, 100000000000)'",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("podman exec");
    let busy = Instant::now();
    let backend = loop {
        let found = processes(&c)
            .into_iter()
            .find(|(_, ppid, cmd)| *ppid == postmaster && cmd.contains("SELECT"));
        if let Some((pid, _, _)) = found {
            break pid;
        }
        assert!(
            busy.elapsed() < Duration::from_secs(30),
            "{:?}",
            processes(&c)
        );
        std::thread::sleep(Duration::from_millis(50));
    };

    let restart = podman(&["exec", &c.name, "/bundle-init", "restart", "db"]);
    let reply = String::from_utf8_lossy(&restart.stdout).into_owned();
    let _ = client.kill();
    let _ = client.wait();
    assert!(restart.status.success(), "{reply}\n{}", c.stderr.text());
    assert!(
        reply.contains(&format!("db restarted: pid {postmaster} -> ")),
        "{reply}"
    );
    c.stderr.wait_for("the SIGKILL at the grace", |l| {
        l.contains(&format!(
            "db (pid {postmaster}) did not stop within its grace: sending SIGKILL"
        ))
    });
    let left = c.stderr.wait_for("what the postmaster left", |l| {
        l.contains(&format!(
            "db (pid {postmaster}) was killed by SIGKILL and left "
        ))
    });
    assert!(
        left.ends_with("sending SIGKILL; it starts again only once they are gone"),
        "its grace was spent: {left}"
    );
    c.stderr.wait_for_n(2, "postgres to be ready again", |l| {
        l.contains("] db is ready")
    });
    assert!(
        !processes(&c).iter().any(|(pid, _, _)| *pid == backend),
        "the busy backend {backend} outlived its postmaster"
    );
    // The port accepts before crash recovery is over ("the database system is starting
    // up"): ask until postgres itself answers.
    let asked = Instant::now();
    let answer = loop {
        let out = podman(&[
            "exec",
            &c.name,
            "su",
            "postgres",
            "-s",
            "/bin/sh",
            "-c",
            "psql -h 127.0.0.1 -tAc 'select 1'",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() || asked.elapsed() > Duration::from_secs(30) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(answer, "1");
    let log = c.stderr.text();
    assert!(!log.contains("pre-existing shared memory block"), "{log}");
    let status = status(&c);
    assert!(status_of(&status, "db").contains("restarts 1"), "{status}");
    assert!(
        status_of(&status, "nginx").contains(&format!("pid {nginx} ")),
        "the sibling kept its pid: {status}"
    );
}

/// Debian's redis 7, built with systemd support and run with `--supervised systemd`: it
/// sends `STATUS=` and `READY=1` on the socket bundle-init gave it in `NOTIFY_SOCKET`, once
/// it accepts connections, and what starts after it finds it answering at once.
#[test]
fn redis_supervised_by_systemds_protocol_is_ready_when_it_says_so() {
    if !image_ready() {
        return;
    }
    let bundle = "BUNDLE_INIT_BUNDLE=/etc/bundle-init/redis.bundle";
    let c = Container::run(&["--network", "none", "-e", bundle], IMAGE, &[]);
    c.stderr.wait_for("redis to say it is ready", |l| {
        l.contains("] redis is ready")
    });
    c.stdout
        .wait_for("the worker's ping", |l| l == "[worker] PONG");
    c.stderr
        .wait_for("app to start", |l| l.contains("] app started"));
    let log = c.stderr.all();
    let at = |text: &str| {
        log.iter()
            .position(|l| l.contains(text))
            .unwrap_or_else(|| panic!("no {text:?} in {log:#?}"))
    };
    assert!(at("] redis is ready") < at("] worker started"), "{log:#?}");
    let redis_said = c.stdout.text();
    assert!(
        !redis_said.contains("NOTIFY_SOCKET not found"),
        "redis found its socket: {redis_said}"
    );
    let redis = status_of(&status(&c), "redis");
    assert!(redis.contains("ready yes"), "{redis}");
    assert!(
        redis.contains("status \"Ready to accept connections\""),
        "redis's own STATUS= line is shown: {redis}"
    );
    assert!(redis.contains("live ok"), "{redis}");
}
