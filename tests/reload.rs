//! Live reload of the bundle file, with bundle-init as PID 1 (`unshare --pid --fork`):
//! only what changed is touched, an invalid file changes nothing, removed daemons stop
//! within their grace, and reloading over and over costs nothing.
// A test body tells one story from start to end; the 60-line limit is for src/.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The seed's four daemons on their own ports, with HUP reloading the file.
fn seed(pipelock_flags: &str) -> String {
    format!(
        "shutdown-grace = 8s\non SIGHUP = reload\non SIGUSR1 = restart pipelock\n\
         [egress]\nrun = bundle-testd --name egress --listen 127.0.0.1:28080\n\
         [pipelock]\nrun = bundle-testd --name pipelock --listen 127.0.0.1:28081 --die-on USR1{pipelock_flags}\n\
         [git-gate]\nrun = bundle-testd --name git-gate --listen 127.0.0.1:29418\n\
         [supervise]\nrun = bundle-testd --name supervise --listen 127.0.0.1:28090\n"
    )
}

const SEED: [&str; 4] = ["egress", "pipelock", "git-gate", "supervise"];

fn wait_started(init: &Init, name: &str, count: usize) {
    init.stdout
        .wait_for_n(count, &format!("{name} started"), |l| {
            l.starts_with(&format!("[{name}] {name} ")) && l.ends_with(" started")
        });
}

/// `bundle-init reload ARGS` inside the namespace: (exit code, stdout, stderr).
fn reload(init: &Init, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["reload"];
    all.extend(args);
    let out = in_namespace(init, &all);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The operator's case: pipelock gets a new flag, the file is reloaded with HUP, and only
/// pipelock is touched, while a connection held to supervise goes on working.
#[test]
fn a_changed_run_line_restarts_only_that_daemon_and_a_held_connection_survives() {
    let dir = TempDir::new("reload-seed");
    let bundle = dir.write("seed.bundle", &seed(""));
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    for name in SEED {
        wait_started(&init, name, 1);
    }
    let before = daemon_pids(&init.stdout);
    let mut supervise = common::HeldConnection::open("127.0.0.1:28090");
    let mut ask = |text: &str| supervise.ask(text);
    assert_eq!(
        ask("hello"),
        format!("supervise {}: hello\n", before["supervise"])
    );

    dir.write("seed.bundle", &seed(" --delay 0s"));
    init.signal(HUP);
    init.stderr
        .wait_for_text("reload (SIGHUP): pipelock changed (run), 3 unchanged");
    let restarted = init
        .stderr
        .wait_for_text("pipelock restarted (reload): pid ");
    wait_started(&init, "pipelock", 2);
    let after = daemon_pids(&init.stdout);
    assert_ne!(after["pipelock"], before["pipelock"]);
    assert!(
        restarted.contains(&format!(
            "pid {} -> {}",
            before["pipelock"], after["pipelock"]
        )),
        "{restarted}"
    );
    for name in ["egress", "git-gate", "supervise"] {
        assert_eq!(after[name], before[name], "{name} kept its pid");
    }
    assert_eq!(
        ask("still there?"),
        format!("supervise {}: still there?\n", before["supervise"])
    );
    // A barrier, then: pipelock's old process got its stop signal, nobody else got any.
    init.signal(USR2);
    wait_for_usr2_barrier(&init.stdout, 4);
    let noted: Vec<String> = init
        .stdout
        .all()
        .into_iter()
        .filter(|l| l.contains(" got ") && !l.contains("got SIGUSR2"))
        .collect();
    assert_eq!(
        noted,
        [format!(
            "[pipelock] pipelock {} got SIGTERM",
            before["pipelock"]
        )]
    );
    // The status says which file generation runs, and pipelock's restart count.
    let status = String::from_utf8_lossy(&in_namespace(&init, &["status"]).stdout).into_owned();
    assert!(
        status.contains("bundle file generation 2, loaded "),
        "{status}"
    );
    let pipelock = status.lines().find(|l| l.starts_with("pipelock ")).unwrap();
    assert!(pipelock.contains("restarts 1"), "{status}");
}

#[test]
fn an_invalid_or_unreadable_file_changes_nothing() {
    let dir = TempDir::new("reload-invalid");
    let bundle = dir.write("b.bundle", "[a]\nrun = bundle-testd --name a\n");
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    wait_started(&init, "a", 1);
    dir.write(
        "b.bundle",
        "[a]\nrun = bundle-testd --name a --v2\nbogus = 1\n",
    );
    let (code, out, err) = reload(&init, &[]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert_eq!(
        err,
        format!("bundle-init: {bundle}:3: unknown key \"bogus\" in [a]\n")
    );
    init.stderr.wait_for_text(&format!(
        "reload (control) refused, nothing changed: {bundle}:3: unknown key \"bogus\" in [a]"
    ));
    std::fs::remove_file(&bundle).unwrap();
    let (code, _, err) = reload(&init, &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("No such file or directory"), "{err}");
    let status = String::from_utf8_lossy(&in_namespace(&init, &["status"]).stdout).into_owned();
    assert!(status.contains("bundle file generation 1,"), "{status}");
    assert_eq!(init.stderr.count(|l| l.contains("a started")), 1);
}

#[test]
fn a_dry_run_says_what_would_change_and_changes_nothing() {
    let dir = TempDir::new("reload-dry");
    let bundle = dir.write("b.bundle", "[a]\nrun = bundle-testd --name a\n");
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    wait_started(&init, "a", 1);
    dir.write("b.bundle", "[b]\nrun = bundle-testd --name b\n");
    let (code, out, err) = reload(&init, &["--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "would reload: b added, a removed\n");
    let status = String::from_utf8_lossy(&in_namespace(&init, &["status"]).stdout).into_owned();
    assert!(
        status.starts_with("a ") && status.contains("generation 1,"),
        "{status}"
    );
}

/// A removed daemon that ignores its stop signal is killed at its grace and forgotten; an
/// added one starts; the control client hears what was done.
#[test]
fn a_removed_daemon_stops_within_its_grace_and_an_added_one_starts() {
    let dir = TempDir::new("reload-add-remove");
    let bundle = dir.write(
        "b.bundle",
        "[keep]\nrun = bundle-testd --name keep\n\
         [stubborn]\nrun = bundle-testd --name stubborn --ignore TERM\ngrace = 1s\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    wait_started(&init, "keep", 1);
    wait_started(&init, "stubborn", 1);
    dir.write(
        "b.bundle",
        "[keep]\nrun = bundle-testd --name keep\n[fresh]\nrun = bundle-testd --name fresh\n",
    );
    let asked = Instant::now();
    let (code, out, err) = reload(&init, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "reloaded (generation 2): fresh added, stubborn removed, 1 unchanged\n"
    );
    wait_started(&init, "fresh", 1);
    init.stderr.wait_for_text("stubborn (pid ");
    init.stderr.wait_for_text("stubborn was killed by SIGKILL");
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_secs(1),
        "killed before its grace: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    let status = String::from_utf8_lossy(&in_namespace(&init, &["status"]).stdout).into_owned();
    let names: Vec<&str> = status
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["keep", "fresh", "bundle"], "{status}");
}

/// Reload after reload, adding and removing a prefixed daemon each time: bundle-init's
/// memory and descriptor count stay where they were.
#[test]
fn a_thousand_alternating_reloads_leave_memory_and_descriptors_where_they_were() {
    let dir = TempDir::new("reload-stability");
    let one = "[keep]\nrun = bundle-testd --name keep\n";
    let two = format!("{one}[extra]\nrun = bundle-testd --name extra\nready = notify:5\n");
    let bundle = dir.write("b.bundle", one);
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    wait_started(&init, "keep", 1);
    let pid = init.pid();
    let reload_to = |text: &str| {
        dir.write("b.bundle", text);
        let (code, out, err) = reload(&init, &[]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.starts_with("reloaded "), "applied at once: {out}");
    };
    // One round adds extra and removes it again; the next round starts once the removal
    // is done (its "removed" line is out), so no reload has to wait.
    let round = |n: usize| {
        reload_to(&two);
        reload_to(one);
        init.stderr
            .wait_for_n(n, "removals", |l| l.ends_with(": removed"));
    };
    for n in 1..=50 {
        round(n);
    }
    wait_until_idle(pid);
    let (rss_before, fds_before) = (status_field(pid, "VmRSS:"), open_fds(pid));
    for n in 51..=550 {
        round(n);
    }
    wait_until_idle(pid);
    let (rss_after, fds_after) = (status_field(pid, "VmRSS:"), open_fds(pid));
    assert_eq!(
        fds_after, fds_before,
        "descriptor count changed over 1,000 reloads"
    );
    let why = "under qemu-user VmRSS is the emulator's, whose translation cache and heap grow on their own";
    if !skip_when_emulated("RSS after 1,000 reloads", why) {
        assert!(
            rss_after <= rss_before + 8,
            "RSS grew from {rss_before} KiB to {rss_after} KiB over 1,000 reloads"
        );
    }
}

/// The selection read at start applies to every reload: a daemon it leaves out is not
/// started, and a file that drops a daemon it names is refused, as at start.
#[test]
fn a_reload_applies_the_selection_read_at_start() {
    let dir = TempDir::new("reload-selection");
    let bundle = dir.write(
        "b.bundle",
        "[a]\nrun = bundle-testd --name a\n[b]\nrun = bundle-testd --name b\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle])
        .env("BUNDLE_INIT_DAEMONS", "a")
        .start();
    wait_started(&init, "a", 1);
    dir.write(
        "b.bundle",
        "[a]\nrun = bundle-testd --name a --delay 0s\n[b]\nrun = bundle-testd --name b\n[c]\nrun = bundle-testd --name c\n",
    );
    let (code, out, err) = reload(&init, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "reloaded (generation 2): a changed (run)\n");
    // Once a's restart is done: a reload asked while it is under way is queued (exit 0)
    // instead of read now. Under load the restart took long enough for that to happen.
    init.stderr.wait_for_text("a restarted (reload)");
    dir.write("b.bundle", "[b]\nrun = bundle-testd --name b\n");
    let (code, out, err) = reload(&init, &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        err.starts_with("bundle-init: BUNDLE_INIT_DAEMONS: "),
        "{err}"
    );
    let status = String::from_utf8_lossy(&in_namespace(&init, &["status"]).stdout).into_owned();
    let names: Vec<&str> = status
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["a", "bundle"], "{status}");
}

/// A reload is checked against RLIMIT_NOFILE as a start is, on top of what was open
/// before the bundle had anything: the same file passes at the limit it just fits under,
/// and one more prefixed daemon is refused, changing nothing.
#[test]
fn a_reload_is_checked_against_the_descriptor_limit_as_a_start_is() {
    let dir = TempDir::new("reload-nofile");
    let two = "[a]\nrun = bundle-testd --name a\n[b]\nrun = bundle-testd --name b\n";
    let bundle = dir.write("b.bundle", two);
    // What the file needs here, from the refusal under a limit far too low.
    let mut check = Launch::pid1(&["--check", "--bundle", &bundle])
        .prepare(open_file_limit(8, 8))
        .start();
    assert_eq!(check.wait_exit(), 1);
    let refusal = check.stderr.all().join("\n");
    let needed: u64 = refusal
        .split("needs up to ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{refusal}"));
    let init = Launch::pid1(&["--bundle", &bundle])
        .prepare(open_file_limit(needed, needed))
        .start();
    wait_started(&init, "a", 1);
    wait_started(&init, "b", 1);
    let (code, out, err) = reload(&init, &[]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "reloaded (generation 2): 2 unchanged\n"),
        "{err}"
    );
    dir.write(
        "b.bundle",
        &format!("{two}[c]\nrun = bundle-testd --name c\n"),
    );
    let (code, _, err) = reload(&init, &[]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(&format!(
            "the bundle needs up to {} open descriptors",
            needed + 4
        )) && err.contains(&format!("the limit (RLIMIT_NOFILE) is {needed}")),
        "{err}"
    );
}

/// A daemon whose prefix-output changed is restarted with output the new way: its own
/// lines straight on bundle-init's stdout, then prefixed again, each through a reload; a
/// reorder moves a prefixed daemon's pipes with it (its lines keep their name).
#[test]
fn prefix_output_follows_each_reload_and_reordered_daemons_keep_their_names() {
    let dir = TempDir::new("reload-prefix");
    let text = |prefix: &str, first: &str, second: &str| {
        format!(
            "[{first}]\nrun = bundle-testd --name {first}\n[{second}]\nrun = bundle-testd --name {second}\n\
             prefix-output = {}\n",
            if second == "b" { prefix } else { "yes" }
        )
    };
    let bundle = dir.write("b.bundle", &text("yes", "a", "b"));
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    wait_started(&init, "a", 1);
    wait_started(&init, "b", 1);
    let step = |file: String, expect: &str| {
        dir.write("b.bundle", &file);
        let (code, out, err) = reload(&init, &[]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, expect);
    };
    step(
        text("no", "a", "b"),
        "reloaded (generation 2): b changed (prefix-output), 1 unchanged\n",
    );
    init.stdout.wait_for("b unprefixed", |l| {
        l.starts_with("b ") && l.ends_with(" started")
    });
    step(
        text("yes", "a", "b"),
        "reloaded (generation 3): b changed (prefix-output), 1 unchanged\n",
    );
    wait_started(&init, "b", 2);
    // b first now: nothing restarts, and each daemon's lines still carry its own name.
    let file = "[b]\nrun = bundle-testd --name b\n[a]\nrun = bundle-testd --name a\n".to_string();
    step(file, "reloaded (generation 4): 2 unchanged\n");
    in_namespace(&init, &["signal", "a", "USR2"]);
    in_namespace(&init, &["signal", "b", "USR2"]);
    init.stdout.wait_for("a's USR2 under its name", |l| {
        l.starts_with("[a] a ") && l.ends_with("got SIGUSR2")
    });
    init.stdout.wait_for("b's USR2 under its name", |l| {
        l.starts_with("[b] b ") && l.ends_with("got SIGUSR2")
    });
}

/// A renamed daemon (one removed, one added) that keeps its port: the new one starts only
/// once the old one has stopped, so the port is free for it.
#[test]
fn a_renamed_daemon_starts_once_its_old_self_has_stopped() {
    let dir = TempDir::new("reload-rename");
    let bundle = dir.write(
        "b.bundle",
        "[web]\nrun = bundle-testd --name web --listen 127.0.0.1:28555 --ignore TERM\ngrace = 1s\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    wait_started(&init, "web", 1);
    dir.write(
        "b.bundle",
        "[www]\nrun = bundle-testd --name www --listen 127.0.0.1:28555\n",
    );
    let (code, out, err) = reload(&init, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "reloaded (generation 2): www added, web removed\n");
    let status = String::from_utf8_lossy(&in_namespace(&init, &["status"]).stdout).into_owned();
    assert!(status.starts_with("www              waiting"), "{status}");
    wait_started(&init, "www", 1);
    let removed = init.stderr.wait_for_text("web was killed by SIGKILL");
    let lines = init.stderr.all();
    let at = |text: &str| lines.iter().position(|l| l.contains(text)).unwrap();
    assert!(at(&removed) < at("www started: pid"), "{lines:?}");
    assert!(!init.stdout.text().contains("Address already in use"));
}

/// A reload reads the included files again: a drop-in added after the start is started,
/// and the main file's daemon is untouched.
#[test]
fn a_reload_reads_the_included_files_again() {
    let dir = TempDir::new("reload-include");
    std::fs::create_dir_all(dir.path("conf.d")).unwrap();
    let bundle = dir.write(
        "main.bundle",
        "include = conf.d/*.bundle\n[web]\nrun = bundle-testd --name web\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    wait_started(&init, "web", 1);
    dir.write(
        "conf.d/extra.bundle",
        "[extra]\nrun = bundle-testd --name extra\n",
    );
    let (code, out, err) = reload(&init, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("extra added, 1 unchanged"), "{out}");
    wait_started(&init, "extra", 1);
}

/// A reload that changes `instances` adds or removes only the instances beyond the change:
/// the others keep their pids.
#[test]
fn a_reload_changing_instances_touches_only_the_instances_beyond_the_change() {
    let dir = TempDir::new("reload-instances");
    let file = |n: u32| format!("[w]\nrun = bundle-testd --name w\ninstances = {n}\n");
    let bundle = dir.write("i.bundle", &file(2));
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for_n(2, "two instances", |l| {
        l.starts_with("[w-") && l.ends_with(" started")
    });
    let before = daemon_pids(&init.stdout);

    dir.write("i.bundle", &file(4));
    let (code, out, err) = reload(&init, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("w-3 added, w-4 added, 2 unchanged"), "{out}");
    init.stdout.wait_for_n(4, "four instances", |l| {
        l.starts_with("[w-") && l.ends_with(" started")
    });

    dir.write("i.bundle", &file(1));
    let (code, out, err) = reload(&init, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("w-2 removed, w-3 removed, w-4 removed, 1 unchanged"),
        "{out}"
    );
    init.stderr.wait_for_text("w-4 was killed by SIGTERM");
    let after = daemon_pids(&init.stdout);
    assert_eq!(after["w-1"], before["w-1"], "w-1 kept its pid");
}
