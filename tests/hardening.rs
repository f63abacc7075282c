//! Trying to break bundle-init: signal storms, crash loops, exec and fork failures, broken
//! outputs, and long runs of restarts. The long versions are `#[ignore]`d and run by
//! `just soak`; the short ones run with every `cargo test`.
// A test body tells one story from start to end; the 60-line limit is for src/.
#![allow(clippy::too_many_lines)]

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Whether `just soak` asked for the long settings.
fn soak() -> bool {
    std::env::var_os("BUNDLE_INIT_SOAK").is_some()
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    // After the command name: state is field 0, utime field 11, stime field 12 (in ticks).
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Tens of thousands of mixed signals: USR1 restarts, HUP forwards, USR2 to everyone, the
/// SIGCHLDs of a daemon that crashes and restarts all the time, then TERM in the middle.
///
/// TERM waits until a restart was honoured and churn came back: pending signals of one
/// number merge, so a TERM sent blindly can arrive in the same read as the first USR1, and
/// the shutdown then rightly drops that restart.
#[test]
fn a_signal_storm_loses_no_request_and_shutdown_still_completes() {
    let dir = TempDir::new("storm");
    let bundle = dir.write(
        "storm.bundle",
        "shutdown-grace = 3s\non SIGHUP = forward egress\non SIGUSR1 = restart pipelock\n\
         on SIGUSR2 = forward egress bystander\n\
         [egress]\nrun = bundle-testd --name egress\n\
         [pipelock]\nrun = bundle-testd --name pipelock --die-on USR1\n\
         [bystander]\nrun = bundle-testd --name bystander\n\
         [churn]\nrun = bundle-testd --name churn --exit-after 0s 1\non-exit = restart\n\
         restart-delay = 1ms\nrestart-delay-max = 1ms\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    for name in ["egress", "pipelock", "bystander"] {
        init.stdout.wait_for(&format!("from {name}"), |l| {
            l.starts_with(&format!("[{name}] ")) && l.ends_with(" started")
        });
    }
    let pid = init.pid();
    let total = if soak() { 200_000 } else { 30_000 };
    let storm = |range: std::ops::Range<usize>| {
        for i in range {
            let sig = [USR1, HUP, USR2][i % 3];
            // Once it has exited, the rest of the storm has nobody to hit.
            if bundle_init::sys::send_signal(pid, sig).is_err() {
                return;
            }
        }
    };
    let term_at = total / 2 + (std::process::id() as usize % (total / 4));
    storm(0..term_at);
    init.stderr.wait_for_text("pipelock restarted (SIGUSR1)");
    init.stderr.wait_for_text("churn started again");
    rustix_kill(pid, TERM);
    let term_sent = Instant::now();
    storm(term_at..total);
    let code = init.wait_exit();
    let took = term_sent.elapsed();
    assert!(
        took < Duration::from_secs(3) + Duration::from_secs(2),
        "shutdown took {took:?}"
    );
    // The exit-code rule (docs/bundle-file.md): stopped daemons count 0, except churn if TERM found it running: it
    // then exits 1 on its own while being stopped, and that is reported honestly.
    let churn_failed = init
        .stderr
        .all()
        .iter()
        .any(|l| l.contains("churn exited with code 1 (pid"));
    assert_eq!(
        code,
        if churn_failed { 1 } else { 0 },
        "{}",
        init.stderr.text()
    );

    let out = init.stdout.all();
    let err = init.stderr.all();
    // Every honoured restart is logged as `pid A -> B`: the chain must be unbroken (each
    // restart replaced the instance the previous one started: exactly one replacement
    // each), and the last replacement is the one the shutdown stopped. A replacement can
    // die of the next restart's TERM before it prints anything, so the daemons' own lines
    // are not counted here.
    let restarted = |l: &String| l.contains("pipelock restarted (SIGUSR1)");
    let chain: Vec<(i32, i32)> = err
        .iter()
        .filter(|l| restarted(l))
        .map(|l| {
            let pids = l.split("pid ").nth(1).unwrap();
            let (old, new) = pids.split_once(" -> ").unwrap();
            (
                old.parse().unwrap(),
                new.split_whitespace().next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    for pair in chain.windows(2) {
        assert_eq!(
            pair[0].1, pair[1].0,
            "a restart did not replace the previous replacement: {pair:?}"
        );
    }
    // The thousands of USR1s sent after TERM are no-ops: no restart completes once the
    // shutdown has begun.
    let shutdown = err
        .iter()
        .position(|l| l.ends_with("received SIGTERM: shutting down"))
        .expect("the shutdown is logged");
    assert!(
        !err[shutdown..].iter().any(restarted),
        "a restart was honoured during the shutdown:\n{}",
        err[shutdown..].join("\n")
    );
    let last = chain.last().unwrap().1;
    assert!(
        err.iter()
            .any(|l| l.starts_with("[bundle-init] pipelock ")
                && l.ends_with(&format!("(pid {last})"))),
        "the last replacement (pid {last}) was not the one stopped at shutdown"
    );
    // No daemon ever saw USR1, HUP went to egress only, and the siblings were stopped once.
    assert!(
        !out.iter().any(|l| l.ends_with("got SIGUSR1")),
        "USR1 was forwarded"
    );
    assert!(
        out.iter()
            .filter(|l| l.ends_with("got SIGHUP"))
            .all(|l| l.starts_with("[egress] "))
    );
    for name in ["egress", "bystander"] {
        let terms = out
            .iter()
            .filter(|l| l.starts_with(&format!("[{name}] ")) && l.ends_with("got SIGTERM"))
            .count();
        assert_eq!(
            terms, 1,
            "{name} got a stop signal that was not the shutdown"
        );
    }
}

/// A daemon that dies at once under `restart`: backoff grows to its cap, bundle-init
/// sleeps in between, the sibling is untouched, and a request starts it at once.
#[test]
fn a_crash_loop_backs_off_to_its_cap_and_costs_no_cpu() {
    let dir = TempDir::new("crashloop");
    let bundle = dir.write(
        "c.bundle",
        "on SIGUSR1 = restart crasher\non SIGUSR2 = forward sibling\n[crasher]\nrun = bundle-testd --name crasher --exit-after 0s 1\n\
         on-exit = restart\nrestart-delay = 10ms\nrestart-delay-max = 300ms\n\
         [sibling]\nrun = bundle-testd --name sibling\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    let sibling = started_pid(&init.stdout.wait_for("from sibling", |l| {
        l.starts_with("[sibling] ") && l.ends_with(" started")
    }));
    init.stderr
        .wait_for_n(6, "about backoff", |l| l.contains("restarting in"));
    let delays: Vec<String> = init
        .stderr
        .all()
        .into_iter()
        .filter(|l| l.contains("crasher exited"))
        .collect();
    let expected = ["10ms", "20ms", "40ms", "80ms", "160ms", "300ms"];
    for (line, delay) in delays.iter().zip(expected) {
        assert!(line.ends_with(&format!("restarting in {delay}")), "{line}");
    }
    // At the cap: measure bundle-init's CPU over a stretch of crashes.
    let pid = init.pid();
    let cpu_before = cpu_time(pid);
    let crashes_before = init.stderr.count(|l| l.contains("crasher exited"));
    let window = Instant::now();
    init.stderr
        .wait_for_n(crashes_before + 8, "more crashes", |l| {
            l.contains("crasher exited")
        });
    let used = cpu_time(pid) - cpu_before;
    let elapsed = window.elapsed();
    assert!(
        used <= elapsed / 20,
        "bundle-init used {used:?} of CPU in {elapsed:?} of crash loop"
    );
    // A request during backoff starts it now, not at the end of the 300ms.
    init.stderr.wait_for_n(crashes_before + 9, "a crash", |l| {
        l.contains("crasher exited")
    });
    init.signal(USR1);
    init.stderr
        .wait_for_text("crasher started on request (SIGUSR1)");
    // Barrier: the sibling notes a USR2 sent now, after anything the crash loop sent it.
    init.signal(USR2);
    wait_for_usr2_barrier(&init.stdout, 1);
    let noted = init
        .stdout
        .count(|l| l.contains(&format!("sibling {sibling} got")));
    assert_eq!(
        noted,
        1,
        "the sibling was disturbed:\n{}",
        init.stdout.text()
    );
}

/// A run longer than stable-after brings the delay back to restart-delay.
#[test]
fn a_stable_run_resets_the_backoff() {
    let dir = TempDir::new("stable");
    let bundle = dir.write(
        "s.bundle",
        "[steady]\nrun = bundle-testd --name steady --exit-after 150ms 1\non-exit = restart\n\
         restart-delay = 10ms\nstable-after = 100ms\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    let lines = init
        .stderr
        .wait_for_n(4, "about backoff", |l| l.contains("steady exited"));
    assert!(
        lines.iter().all(|l| l.ends_with("restarting in 10ms")),
        "{lines:?}"
    );
}

#[test]
fn exec_failures_are_logged_with_the_daemon_name_and_follow_the_exit_policy() {
    let dir = TempDir::new("exec");
    let garbage = dir.write("garbage", "\u{7f}ELF this is not a program\n");
    let noexec = dir.write("noexec", "#!/bin/sh\nexit 0\n");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&noexec, std::fs::Permissions::from_mode(0o644)).unwrap();
    let d = dir.0.display();
    let bundle = dir.write(
        "e.bundle",
        &format!(
            "[missing]\nrun = /no/such/program\n[dir]\nrun = {d}\n[noexec]\nrun = {noexec}\n[garbage]\nrun = {garbage}\n\
             [retry]\nrun = /no/such/retry\non-exit = restart\nrestart-delay = 50ms\nrestart-delay-max = 200ms\n\
             [steady]\nrun = bundle-testd --name steady\n"
        ),
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stderr.wait_for_text(
        "cannot start missing: exec /no/such/program failed: No such file or directory",
    );
    init.stderr.wait_for_text(&format!(
        "cannot start dir: exec {d} failed: Permission denied"
    ));
    init.stderr.wait_for_text(&format!(
        "cannot start noexec: exec {noexec} failed: Permission denied"
    ));
    // musl's execvp reports ENOEXEC; glibc's hands the file to /bin/sh, which fails on it.
    // Either way: a line naming the daemon, and its exit policy applies.
    init.stderr.wait_for("about garbage", |l| {
        l.contains("garbage") && (l.contains("cannot start") || l.contains("exited with code"))
    });
    // Under `restart`, an exec failure backs off like a crash: no busy loop.
    let retries = init
        .stderr
        .wait_for_n(4, "retries", |l| l.contains("retry exited with code 127"));
    assert!(retries[3].ends_with("restarting in 200ms"), "{retries:?}");
    init.signal(TERM);
    assert_eq!(
        init.wait_exit(),
        127,
        "the highest keep-running failure: not found"
    );
}

/// A step that fails in the starting child before exec (where it still runs in
/// bundle-init's memory) is named with what it was given, start after start, while a
/// sibling keeps running undisturbed.
#[test]
fn a_step_that_fails_before_exec_is_named_at_every_start() {
    let dir = TempDir::new("pre-exec");
    let bundle = dir.write(
        "p.bundle",
        "[nocwd]\nrun = bundle-testd --name nocwd\ncwd = /no/such/dir\non-exit = restart\n\
         restart-delay = 10ms\nrestart-delay-max = 10ms\n\
         [steady]\nrun = bundle-testd --name steady\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    let failures = init.stderr.wait_for_n(20, "failed starts", |l| {
        l.contains("cannot start nocwd: cwd /no/such/dir: No such file or directory")
    });
    assert_eq!(failures.len(), 20);
    init.stdout.wait_for_text("steady");
    let out = init.stdout.text();
    assert!(
        !out.lines()
            .any(|l| l.contains("steady") && l.contains("got SIG")),
        "the sibling was signalled: {out}"
    );
    init.signal(TERM);
    init.wait_exit();
}

/// fork() failing with EAGAIN under RLIMIT_NPROC: bundle-init survives, logs, retries.
#[test]
fn fork_failure_under_a_process_limit_is_survived_and_retried() {
    if skip_when_emulated(
        "hardening::fork_failure_under_a_process_limit_*",
        "qemu-user's own threads count against RLIMIT_NPROC, so the limit means another thing",
    ) {
        return;
    }
    let dir = TempDir::new("nproc");
    let bundle = dir.write(
        "n.bundle",
        "[first]\nrun = bundle-testd --name first\n[second]\nrun = bundle-testd --name second\n",
    );
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // As uid 54321 (nobody else runs as it) with at most 2 processes: bundle-init and one
    // daemon fit, the second daemon's fork fails.
    let mut init = Launch::subreaper(&["--bundle", &bundle])
        .user(54321)
        .prepare(|| {
            rustix::process::setrlimit(
                rustix::process::Resource::Nproc,
                rustix::process::Rlimit {
                    current: Some(2),
                    maximum: Some(2),
                },
            )?;
            Ok(())
        })
        .start();
    let (stdout, stderr) = (init.stdout.clone(), init.stderr.clone());
    let line = stderr.wait_for_text("cannot start second");
    assert!(
        line.contains("fork failed") && line.contains("retrying in"),
        "{line}"
    );
    stderr.wait_for_n(2, "a retry that fails again", |l| {
        l.contains("cannot start second")
    });
    // Make room: the first daemon goes away for good, then the second starts on retry.
    let first = started_pid(&stdout.wait_for("from first", |l| {
        l.starts_with("[first] ") && l.ends_with(" started")
    }));
    rustix_kill(first, KILL);
    stderr.wait_for_text("first was killed by SIGKILL");
    stdout.wait_for("from second", |l| {
        l.starts_with("[second] ") && l.ends_with(" started")
    });
    init.signal(TERM);
    assert_eq!(
        init.wait_exit(),
        128 + 9,
        "first was SIGKILLed before shutdown"
    );
}

/// Restarts racing a daemon that exits on its own: every exit is matched to the right
/// daemon, no stray stop signal reaches anyone else, and the daemon keeps coming back.
#[test]
fn restarts_racing_exits_never_signal_the_wrong_process() {
    let dir = TempDir::new("race");
    let bundle = dir.write(
        "r.bundle",
        "on SIGUSR1 = restart racer\n[racer]\nrun = bundle-testd --name racer --exit-after 3ms 0\n\
         on-exit = restart\nrestart-delay = 1ms\nrestart-delay-max = 1ms\n\
         [bystander]\nrun = bundle-testd --name bystander\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for("from bystander", |l| {
        l.starts_with("[bystander] ") && l.ends_with(" started")
    });
    // At least `rounds` requests, and on until one has met the racer running: under
    // qemu-user the racer's 3 ms are often over before the bystander is up, and a burst
    // of requests could then land entirely in its restart delays.
    let rounds = if soak() { 20_000 } else { 2_000 };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    while sent < rounds || !init.stderr.text().contains("racer restarted (SIGUSR1)") {
        for _ in 0..100 {
            init.signal(USR1);
        }
        sent += 100;
        std::thread::yield_now();
        assert!(
            Instant::now() < deadline,
            "no request met the racer running in 20 s"
        );
    }
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0);
    let out = init.stdout.all();
    let bystander: Vec<&String> = out
        .iter()
        .filter(|l| l.starts_with("[bystander] ") && l.contains(" got "))
        .collect();
    assert_eq!(
        bystander.len(),
        1,
        "the bystander got only the shutdown's TERM: {bystander:?}"
    );
    assert!(bystander[0].ends_with("got SIGTERM"));
}

/// bundle-init's stdout is a pipe nobody reads any more (EPIPE), its stderr is closed:
/// it keeps supervising, and daemons keep their signal handling.
#[test]
fn broken_outputs_do_not_stop_supervision() {
    let dir = TempDir::new("broken");
    let log = dir.0.join("signals.log");
    let bundle = dir.write(
        "b.bundle",
        &format!(
            "on SIGUSR1 = restart target\n[flood]\nrun = bundle-testd --name flood --flood 5000000\n\
             [target]\nrun = bundle-testd --name target --log {}\n",
            log.display()
        ),
    );
    let mut init = Launch::pid1(&["--bundle", &bundle])
        .prepare(|| {
            // stderr closed outright: bundle-init opens /dev/null there and carries on.
            rustix::io::fcntl_setfd(rustix::stdio::stderr(), rustix::io::FdFlags::CLOEXEC)?;
            Ok(())
        })
        .hold_stdout()
        .start();
    // Close the read end of stdout at once: every write bundle-init makes gets EPIPE.
    init.close_stdout();
    let log = log.to_string_lossy();
    let wait_log = |pattern: &str, count: usize| {
        wait_for_file(&log, &format!("{count} x {pattern:?}"), |text| {
            text.lines().filter(|l| l.contains(pattern)).count() >= count
        })
    };
    wait_log("started", 1);
    for round in 1..=3 {
        init.signal(USR1);
        wait_log("got SIGTERM", round);
        wait_log("started", round + 1);
    }
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0);
}

/// A daemon with `prefix-output = no` shares bundle-init's stdout pipe. Behind a slow
/// reader, a write that ended mid-record let its line land inside a `[name] ` record, and
/// the rest of that record showed up later without its prefix.
#[test]
fn prefixed_records_stay_whole_beside_an_unprefixed_writer_behind_a_slow_reader() {
    let dir = TempDir::new("mixed");
    let bundle = dir.write("m.bundle", MIXED_WRITERS_BUNDLE);
    let mut init = Launch::pid1(&["--bundle", &bundle]).hold_stdout().start();
    let stdout = init.release_stdout_slowly();
    assert_eq!(init.wait_exit(), 0);
    stdout.wait_closed();
    assert_no_spliced_line(&stdout.all());
}

/// bundle-init not as PID 1, killed outright (SIGKILL, or a fault signal from outside): its
/// daemons must not run on, orphaned under the host's init. One daemon changed its uid,
/// which clears a parent-death signal set before the change.
#[test]
fn no_daemon_outlives_a_killed_bundle_init() {
    let dir = TempDir::new("pdeath");
    let bundle = dir.write(
        "p.bundle",
        "[root]
run = bundle-testd --name root --ignore TERM
         [nobody]
run = bundle-testd --name nobody --ignore TERM
user = 65534:65534
",
    );
    const ABRT: i32 = 6;
    for (launch, daemons, signal) in [
        (Launch::subreaper(&["--bundle", &bundle]), 2, ABRT),
        (
            Launch::subreaper(&["--", testd(), "--name", "single", "--ignore", "TERM"]),
            1,
            KILL,
        ),
    ] {
        let mut init = launch.start();
        let started = init
            .stdout
            .wait_for_n(daemons, "started lines", |l| l.ends_with(" started"));
        let daemons: Vec<_> = started
            .iter()
            .map(|line| {
                let pid = rustix::process::Pid::from_raw(started_pid(line)).unwrap();
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap()
            })
            .collect();
        init.signal(signal);
        assert_eq!(init.wait_exit(), 128 + signal);
        for (daemon, line) in daemons.iter().zip(&started) {
            assert!(
                wait_readable(daemon, PATIENCE),
                "outlived bundle-init: {line}"
            );
        }
    }
}

/// A leftover tree: a child in its own session that ignores TERM, with a child of its own
/// that ignores TERM too. The first is adopted and gets TERM, then SIGKILL at the deadline;
/// only then is the second adopted. bundle-init used to exit right after the SIGKILL round,
/// and the second ran on (as a subreaper) or was left to the kernel (as PID 1). Now it
/// sweeps until wait reports no children: it reaps both itself, and `-w` says so.
#[test]
fn a_leftover_tree_that_ignores_term_is_swept_to_the_last_process() {
    let dir = TempDir::new("tree");
    let bundle = dir.write(
        "t.bundle",
        "shutdown-grace = 3s\n[t]\nrun = bundle-testd --name t --tree --exit-after 0s 0\n",
    );
    let single = [
        "--stop-others",
        "3s",
        "--",
        testd(),
        "--name",
        "t",
        "--tree",
    ];
    let single = [&single[..], &["--exit-after", "0s", "0"]].concat();
    for (launch, as_pid1) in [
        (Launch::pid1(&[&["-w"], &single[..]].concat()), true),
        (Launch::subreaper(&[&["-w"], &single[..]].concat()), false),
        (Launch::subreaper(&["-w", "--bundle", &bundle]), false),
    ] {
        if !as_pid1
            && skip_when_emulated(
                "hardening::a_leftover_tree_*: as a subreaper",
                QEMU_NO_SUBREAPER,
            )
        {
            continue;
        }
        let mut init = launch.start();
        let line = init.stdout.wait_for("the tree", |l| l.contains(" tree "));
        let tree: Vec<i32> = line
            .rsplit(' ')
            .take(2)
            .map(|w| w.parse().unwrap())
            .collect();
        let pidfds: Vec<_> = tree
            .iter()
            .filter(|_| !as_pid1) // namespace pids mean nothing out here
            .map(|&pid| {
                let pid = rustix::process::Pid::from_raw(pid).unwrap();
                rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).unwrap()
            })
            .collect();
        assert_eq!(init.wait_exit(), 0, "{}", init.stderr.text());
        for pid in &tree {
            assert!(
                init.stderr
                    .count(|l| l.contains(&format!("Reaped zombie process with pid={pid} ")))
                    == 1,
                "bundle-init did not reap {pid} itself:\n{}",
                init.stderr.text()
            );
        }
        for pidfd in &pidfds {
            assert!(
                wait_readable(pidfd, Duration::ZERO),
                "outlived the sweep: {line}"
            );
        }
    }
}

/// "Max open files" of `pid` as (soft, hard), from /proc/PID/limits.
fn max_open_files(pid: i32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[3].to_string(), words[4].to_string())
}

/// A bundle of `count` prefixed daemons.
fn many_daemons(dir: &TempDir, count: usize) -> String {
    let text: String = (0..count)
        .map(|i| format!("[d{i}]\nrun = bundle-testd --name d{i}\n"))
        .collect();
    dir.write("many.bundle", &text)
}

/// 40 prefixed daemons need 160 descriptors for their output alone. With a soft limit of
/// 64 and a hard one of 4096, bundle-init raises its own soft limit and starts them all
/// (it used to stop at `cannot create output pipes`), and each daemon gets the limit
/// bundle-init inherited, 64:4096.
#[test]
fn bundle_init_raises_its_descriptor_limit_and_children_get_the_inherited_one() {
    let dir = TempDir::new("nofile");
    let bundle = many_daemons(&dir, 40);
    let init = Launch::pid1(&["--bundle", &bundle])
        .prepare(open_file_limit(64, 4096))
        .start();
    let started = init
        .stdout
        .wait_for_n(40, "40 daemons started", |l| l.ends_with(" started"));
    assert_eq!(max_open_files(init.pid()), ("4096".into(), "4096".into()));
    // Inside the namespace the daemon's pid means nothing here: find it among the tagged.
    let daemon = init
        .tagged_processes()
        .into_iter()
        .find(|&pid| pid != init.pid() && pid != init.child.id() as i32)
        .unwrap();
    assert_eq!(max_open_files(daemon), ("64".into(), "4096".into()));
    assert_eq!(started.len(), 40);
}

/// When the descriptors cannot fit even at the hard limit, --check and the start both say
/// how many are needed and what the limit is, and nothing starts.
#[test]
fn a_bundle_over_the_descriptor_limit_is_refused_before_anything_starts() {
    let dir = TempDir::new("nofile-over");
    let bundle = many_daemons(&dir, 40);
    for args in [
        vec!["--check", "--bundle", &bundle],
        vec!["--bundle", &bundle],
    ] {
        let mut init = Launch::pid1(&args)
            .prepare(open_file_limit(100, 100))
            .start();
        assert_eq!(init.wait_exit(), 1);
        let err = init.stderr.all();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(
            err[0].starts_with(&format!("bundle-init: {bundle}: the bundle needs up to "))
                && err[0].contains(
                    "open descriptors (4 per prefixed daemon), but the limit (RLIMIT_NOFILE) is 100"
                ),
            "{err:?}"
        );
        assert!(init.stdout.all().is_empty(), "nothing started");
    }
}

/// Lowers bundle-init's soft RLIMIT_NOFILE to the descriptors it has open, so that the
/// next one it opens fails with EMFILE. Returns the limit to put back.
fn leave_no_descriptor_free(init: &Init) -> rustix::process::Rlimit {
    let pid = rustix::process::Pid::from_raw(init.pid()).unwrap();
    let open = std::fs::read_dir(format!("/proc/{}/fd", init.pid()))
        .unwrap()
        .count() as u64;
    // Only the soft limit: raising a hard one back needs CAP_SYS_RESOURCE.
    let hard = max_open_files(init.pid()).1.parse().ok();
    let tight = rustix::process::Rlimit {
        current: Some(open),
        maximum: hard,
    };
    rustix::process::prlimit(Some(pid), rustix::process::Resource::Nofile, tight).unwrap()
}

/// Lowers bundle-init's soft RLIMIT_NOFILE to its lowest unused descriptor number, so
/// that no descriptor can be had at all (`leave_no_descriptor_free` counts them, and a
/// hole below the count still takes one). Returns the limit to put back.
fn leave_no_descriptor_number_free(init: &Init) -> rustix::process::Rlimit {
    let pid = rustix::process::Pid::from_raw(init.pid()).unwrap();
    let open: std::collections::BTreeSet<u64> =
        std::fs::read_dir(format!("/proc/{}/fd", init.pid()))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
    let lowest_free = (0..).find(|n| !open.contains(n)).unwrap();
    let hard = max_open_files(init.pid()).1.parse().ok();
    let tight = rustix::process::Rlimit {
        current: Some(lowest_free),
        maximum: hard,
    };
    rustix::process::prlimit(Some(pid), rustix::process::Resource::Nofile, tight).unwrap()
}

/// Out of descriptors at a later start that needs one (the limit lowered from outside; a
/// `notify:` daemon gets a new readiness pipe at every start): the failure is a pipe
/// failure, retried with backoff like a failed fork, not "fork failed" (126) and given up,
/// and never a start without the descriptor the daemon was promised.
#[test]
fn a_start_out_of_descriptors_is_a_pipe_failure_and_is_retried() {
    let dir = TempDir::new("emfile");
    let bundle = dir.write(
        "e.bundle",
        "on SIGUSR1 = restart a\n[a]\nrun = bundle-testd --name a --notify-fd 3\nready = notify:3\nrestart-delay = 200ms\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for("a started", |l| {
        l.starts_with("[a] ") && l.ends_with(" started")
    });
    let pid = rustix::process::Pid::from_raw(init.pid()).unwrap();
    let old = leave_no_descriptor_free(&init);
    init.signal(USR1);
    init.stderr.wait_for_text(
        "cannot start a: bundle-testd: cannot create a pipe to start it: too many open descriptors (RLIMIT_NOFILE?); retrying in 200ms",
    );
    rustix::process::prlimit(Some(pid), rustix::process::Resource::Nofile, old).unwrap();
    init.stdout.wait_for_n(2, "a started again", |l| {
        l.starts_with("[a] ") && l.ends_with(" started")
    });
    assert!(
        !init.stderr.text().contains("fork failed"),
        "{}",
        init.stderr.text()
    );
}

/// A restart needs no descriptor of its own: the output pipes stay, and the child reports
/// a failed step in the memory it shares with bundle-init, not on a pipe. So at the
/// descriptor limit a daemon is still restarted.
#[test]
fn a_restart_at_the_descriptor_limit_needs_no_new_descriptor() {
    if skip_when_emulated(
        "hardening::a_restart_at_the_descriptor_limit_needs_no_new_descriptor",
        "qemu-user carries out a CLONE_VM | CLONE_VFORK clone as a fork, so each start there reports on a pipe",
    ) {
        return;
    }
    let dir = TempDir::new("emfile-restart");
    let bundle = dir.write(
        "e.bundle",
        "on SIGUSR1 = restart a\n[a]\nrun = bundle-testd --name a\nrestart-delay = 200ms\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for("a started", |l| {
        l.starts_with("[a] ") && l.ends_with(" started")
    });
    let _old = leave_no_descriptor_free(&init);
    init.signal(USR1);
    init.stdout.wait_for_n(2, "a started again", |l| {
        l.starts_with("[a] ") && l.ends_with(" started")
    });
    assert!(
        !init.stderr.text().contains("cannot start"),
        "{}",
        init.stderr.text()
    );
}

/// From the hostile review: a restart at the descriptor limit of a daemon with
/// `oom-score-adj` does need a descriptor, in the child (it opens
/// /proc/self/oom_score_adj in the child's copy of bundle-init's full table). Before the
/// memory report, the parent's report pipe failed first: a transient pipe failure,
/// retried. Now the child's open fails with EMFILE and is reported as a permanent
/// `oom-score-adj 100: Too many open files`, so the daemon is given up instead of being
/// restarted once descriptors are free again.
#[test]
fn a_restart_at_the_descriptor_limit_with_oom_score_adj_is_retried_not_given_up() {
    // Under qemu-user every start still makes a report pipe, which fails first: retried too.
    let dir = TempDir::new("emfile-oom");
    let bundle = dir.write(
        "e.bundle",
        "on SIGUSR1 = restart a\n[a]\nrun = bundle-testd --name a\noom-score-adj = 100\nrestart-delay = 200ms\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for("a started", |l| {
        l.starts_with("[a] ") && l.ends_with(" started")
    });
    let pid = rustix::process::Pid::from_raw(init.pid()).unwrap();
    let old = leave_no_descriptor_number_free(&init);
    init.signal(USR1);
    // Either it restarts at the limit, or it fails and is retried: never given up.
    init.stderr.wait_for("a's restart at the limit", |l| {
        l.contains("cannot start a") || l.contains("a restarted")
    });
    // (bundle-init may have exited already: every daemon given up.)
    let _ = rustix::process::prlimit(Some(pid), rustix::process::Resource::Nofile, old);
    init.stdout.wait_for_n(2, "a started again", |l| {
        l.starts_with("[a] ") && l.ends_with(" started")
    });
    assert!(
        !init.stderr.text().contains("not restarted"),
        "a descriptor shortage is not the daemon's permanent failure:\n{}",
        init.stderr.text()
    );
}

/// A daemon blocked writing to its full output pipe cannot act on TERM. With a log reader
/// that never reads, a clean stop used to end in SIGKILL at the grace (137). Now, a second
/// after shutdown began, bundle-init drops the daemon's output instead, says how many
/// lines it dropped, and the daemon stops on its TERM.
#[test]
fn a_stuck_log_reader_at_shutdown_costs_lines_not_a_sigkill() {
    let dir = TempDir::new("stuck");
    let bundle = dir.write(
        "s.bundle",
        "[flood]\nrun = bundle-testd --name flood --flood 50000000\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).hold_stdout().start();
    init.stderr.wait_for_text("flood started");
    // Nobody reads stdout: the pipe and bundle-init's queue fill, then the flood blocks.
    let flood = init.daemon_processes();
    assert_eq!(flood.len(), 1, "{flood:?}");
    wait_until_blocked_writing(flood[0]);
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0, "{}", init.stderr.text());
    let err = init.stderr.text();
    assert!(!err.contains("SIGKILL"), "{err}");
    let dropped = init.stderr.wait_for("the dropped count", |l| {
        l.ends_with(
            " lines of daemon output were dropped at shutdown: the log reader never caught up",
        )
    });
    let count: u64 = dropped
        .trim_start_matches("[bundle-init] ")
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(count > 0, "{dropped}");
}

/// The same stuck reader when bundle-init cannot open a private non-blocking description
/// of its stdout (a pipe owned by another uid: /proc/self/fd/1 is EACCES). Its writes are
/// then blocking and may only follow poll's word that the pipe has room; a write made
/// after reading a daemon's pipe used to block bundle-init itself, and nothing (not even
/// SIGKILL at the grace) happened any more.
#[test]
fn a_stuck_reader_never_blocks_bundle_init_on_a_blocking_stdout() {
    let dir = TempDir::new("stuck-blocking");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let bundle = dir.write(
        "s.bundle",
        "[flood]\nrun = bundle-testd --name flood --flood 50000000\n",
    );
    let mut init = Launch::subreaper(&["--bundle", &bundle])
        .user(54321)
        .hold_stdout()
        .start();
    init.stderr.wait_for_text("flood started");
    let flood = init.daemon_processes();
    assert_eq!(flood.len(), 1, "{flood:?}");
    wait_until_blocked_writing(flood[0]);
    wait_until_idle(init.pid());
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0, "{}", init.stderr.text());
    init.stderr.wait_for("the dropped count", |l| {
        l.ends_with(
            " lines of daemon output were dropped at shutdown: the log reader never caught up",
        )
    });
}

/// A daemon restarted again and again while nobody reads bundle-init's stdout: what it
/// left in its pipe at each exit used to be queued whatever the queue held, 60 KB more
/// per restart, for ever. Now the rest stays in the pipe, and memory stays flat.
#[test]
fn restarts_behind_a_stuck_reader_do_not_grow_the_queue() {
    let dir = TempDir::new("drain");
    let ready = dir.path("flooded");
    let bundle = dir.write(
        "d.bundle",
        &format!(
            "on SIGUSR1 = restart d\n[d]\nrun = bundle-testd --name d --flood 60000 --ready-file {ready}\ngrace = 200ms\n"
        ),
    );
    let init = Launch::pid1(&["--bundle", &bundle]).hold_stdout().start();
    // Each run writes its 60 KB before it is restarted: it says so in the file, or, once
    // its own pipe holds what bundle-init left there, it waits in the write. Sampled, as
    // wait_until_idle is: going to sleep in a write makes no event.
    let flooded = || {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if std::fs::remove_file(&ready).is_ok() {
                return;
            }
            let blocked = init.daemon_processes().into_iter().any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/wchan"))
                    .is_ok_and(|w| w.contains("pipe_write"))
            });
            if blocked {
                return;
            }
            assert!(Instant::now() < deadline, "the daemon never flooded");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let restart = |n: usize| {
        flooded();
        init.signal(USR1);
        init.stderr
            .wait_for_n(n, "restarts", |l| l.contains("d restarted (SIGUSR1)"));
    };
    // Fill the stdout pipe and the queue first.
    for n in 1..=4 {
        restart(n);
    }
    let before = status_field(init.pid(), "VmRSS");
    for n in 5..=20 {
        restart(n);
    }
    let grown = status_field(init.pid(), "VmRSS").saturating_sub(before);
    assert!(
        grown < 256,
        "bundle-init grew by {grown} KiB over 16 restarts"
    );
}

/// Thousands of restarts of one daemon: bundle-init's memory and descriptors end where
/// they started.
#[test]
fn many_restarts_leave_memory_and_descriptors_where_they_were() {
    restarts_are_stable(if soak() { 10_000 } else { 1_000 });
}

fn restarts_are_stable(rounds: usize) {
    let dir = TempDir::new("stability");
    let bundle = dir.write(
        "s.bundle",
        "on SIGUSR1 = restart target\n[target]\nrun = bundle-testd --name target\nlog-buffer = 4KiB\n\
         [other]\nrun = bundle-testd --name other\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout
        .wait_for_n(2, "both daemons", |l| l.ends_with(" started"));
    let pid = init.pid();
    let restart = |n: usize| {
        init.signal(USR1);
        init.stderr
            .wait_for_n(n, "restarts", |l| l.contains("target restarted (SIGUSR1)"));
    };
    // Warm up: allocator pools, the log queue and target's log buffer reach their working
    // size (each start leaves a line of about 30 bytes in the 4 KiB buffer, which it
    // fills in about 140 starts; the default 8 KiB would take twice as many).
    for n in 1..=200 {
        restart(n);
    }
    wait_until_idle(pid);
    let rss_before = status_field(pid, "VmRSS:");
    let size_before = status_field(pid, "VmSize:");
    let fds_before = open_fds(pid);
    for n in 201..=200 + rounds {
        restart(n);
    }
    wait_until_idle(pid);
    let rss_after = status_field(pid, "VmRSS:");
    let size_after = status_field(pid, "VmSize:");
    let fds_after = open_fds(pid);
    assert_eq!(
        fds_after, fds_before,
        "descriptor count changed over {rounds} restarts"
    );
    let why = "under qemu-user VmSize and VmRSS are the emulator's, whose translation cache and heap grow on their own";
    if skip_when_emulated("address space and RSS after many restarts", why) {
        return;
    }
    // Each start runs its child on a stack of 64 KiB and a guard page: one left mapped by a
    // single start would show as 68 KiB more address space.
    assert!(
        size_after < size_before + 68,
        "address space grew from {size_before} KiB to {size_after} KiB over {rounds} restarts"
    );
    assert!(
        rss_after <= rss_before + 8,
        "RSS grew from {rss_before} KiB to {rss_after} KiB over {rounds} restarts"
    );
}

/// Idle, bundle-init blocks in the signalfd read itself. The clock must be read after that
/// read: a grace measured from the moment it went idle would SIGKILL at once.
#[test]
fn a_restart_after_a_long_idle_still_gets_its_full_grace() {
    let dir = TempDir::new("idle-grace");
    let bundle = dir.write(
        "g.bundle",
        "on SIGUSR1 = restart stubborn\n[stubborn]\nrun = bundle-testd --name stubborn --ignore TERM\n\
         grace = 1500ms\nprefix-output = no\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for_text("stubborn");
    wait_until_idle(init.pid());
    // Idle for longer than the grace: the condition under test, not a synchronisation.
    std::thread::sleep(Duration::from_millis(2500));
    let asked = Instant::now();
    init.signal(USR1);
    init.stderr.wait_for_text("stubborn restarted (SIGUSR1)");
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(1400),
        "SIGKILL came after {took:?}, before the grace"
    );
}

/// bundle-init serving its control socket at an abstract name of its own (not as PID 1: the
/// test connects directly, so it must be in bundle-init's PID namespace).
fn with_control_socket(dir: &TempDir, name: &str) -> (Init, std::os::unix::net::SocketAddr) {
    use std::os::linux::net::SocketAddrExt;
    let socket = format!("bundle-init-test-{name}-{}", std::process::id());
    let bundle = dir.write("c.bundle", "[web]\nrun = bundle-testd --name web\n");
    let init = Launch::subreaper(&["--bundle", &bundle])
        .env("BUNDLE_INIT_CONTROL", &format!("@{socket}"))
        .start();
    init.stdout.wait_for("web started", |l| {
        l.starts_with("[web] ") && l.ends_with(" started")
    });
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&socket).unwrap();
    (init, addr)
}

/// Sends `parts` one after the other, each once bundle-init has read the one before (it is
/// back in poll: what was readable has been read); returns the whole answer.
fn ask_in_parts(init: &Init, addr: &std::os::unix::net::SocketAddr, parts: &[&[u8]]) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect_addr(addr).unwrap();
    for part in parts {
        wait_until_idle(init.pid());
        // A refusal may come before the last part: the answer is there all the same.
        if stream.write_all(part).is_err() {
            break;
        }
    }
    // A refusal with bytes left unread resets the connection once the answer is read.
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Requests are at most 512 bytes (without the newline), however they arrive. One whose
/// newline came in a later read than its first 512 bytes used to be accepted: a valid
/// request padded with spaces to 600 bytes was answered OK.
#[test]
fn a_control_request_over_512_bytes_is_refused_however_it_arrives() {
    let dir = TempDir::new("ctl-long");
    let (mut init, addr) = with_control_socket(&dir, "long");
    let padded = |len: usize| format!("{:<len$}", "status").into_bytes();
    let refused = "ERR request longer than 512 bytes\n";
    // 300 bytes, read on their own, then 300 more with the newline.
    let long = padded(600);
    let rest = [&long[300..], b"\n"].concat();
    let answer = ask_in_parts(&init, &addr, &[&long[..300], &rest]);
    assert_eq!(answer, refused, "600 bytes in two reads");
    // All of it at once.
    let answer = ask_in_parts(&init, &addr, &[&[&long[..], b"\n"].concat()]);
    assert_eq!(answer, refused, "600 bytes in one write");
    // One byte over, the newline alone in the second read.
    let answer = ask_in_parts(&init, &addr, &[&padded(513), b"\n"]);
    assert_eq!(answer, refused, "513 bytes");
    // The limit itself is fine, split or not.
    let answer = ask_in_parts(&init, &addr, &[&padded(512), b"\n"]);
    assert!(answer.starts_with("OK\nweb "), "512 bytes: {answer:?}");
    let limit = padded(512);
    let answer = ask_in_parts(
        &init,
        &addr,
        &[&limit[..100], &[&limit[100..], b"\n"].concat()],
    );
    assert!(
        answer.starts_with("OK\nweb "),
        "512 bytes in two parts: {answer:?}"
    );
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0);
}

/// The lowest descriptor number `pid` does not have open: with RLIMIT_NOFILE there, it
/// can open nothing more.
fn lowest_free_descriptor(pid: i32) -> u64 {
    let open: std::collections::HashSet<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    (0..).find(|n| !open.contains(n)).unwrap()
}

/// `prlimit --pid PID --nofile=N:`, the soft limit of a running process, from outside.
/// (Only the soft one: the hard one cannot be raised back without CAP_SYS_RESOURCE.)
fn set_open_file_limit_of(pid: i32, soft: u64) {
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={soft}:")])
        .output()
        .expect("prlimit from util-linux");
    assert!(
        out.status.success(),
        "prlimit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The abstract name bundle-init `pid` serves by default: from its PID namespace.
fn control_socket_name(pid: i32) -> String {
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid")).unwrap();
    let inode: String = ns
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    format!("bundle-init.{inode}")
}

/// Out of descriptors with clients waiting to be accepted, the listener stays readable
/// and every accept fails with EMFILE: the loop used to go round at once, 100 % of a CPU
/// (about 200 ticks in 2 s). It now leaves the listener alone for a moment, and serves the
/// clients once descriptors are there again.
#[test]
fn control_clients_waiting_at_the_descriptor_limit_cost_no_cpu() {
    use std::io::Read;
    use std::os::linux::net::SocketAddrExt;
    let dir = TempDir::new("emfile");
    let bundle = dir.write("e.bundle", "[web]\nrun = bundle-testd --name web\n");
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for("web started", |l| {
        l.starts_with("[web] ") && l.ends_with(" started")
    });
    let pid = init.pid();
    let socket = control_socket_name(pid);
    wait_until_idle(pid);
    set_open_file_limit_of(pid, lowest_free_descriptor(pid));
    // Connected from outside bundle-init's PID namespace: each would be refused once
    // accepted, but the accept is what fails now.
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(&socket).unwrap();
    let mut waiting: Vec<_> = (0..4)
        .map(|_| std::os::unix::net::UnixStream::connect_addr(&addr).unwrap())
        .collect();
    let before = cpu_time(pid);
    // A window to measure over, not a wait for an event.
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_time(pid) - before;
    assert!(
        used <= Duration::from_millis(50),
        "bundle-init used {used:?} of CPU in 1 s at the descriptor limit"
    );
    let said = "[bundle-init] error: accepting a control client failed: too many open descriptors (RLIMIT_NOFILE?); new control clients wait, tried again every 200 ms and whenever a client leaves";
    init.stderr.wait_for_text(said);
    assert_eq!(init.stderr.count(|l| l == said), 1, "said once");
    let hard = max_open_files(pid).1;
    set_open_file_limit_of(pid, hard.parse().unwrap());
    let client = &mut waiting[0];
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut answer = String::new();
    let _ = client.read_to_string(&mut answer);
    assert_eq!(
        answer, "ERR permission denied: the client is outside bundle-init's PID namespace\n",
        "a waiting client is served once descriptors are free"
    );
    let health = in_namespace(&init, &["health"]);
    assert_eq!(health.status.code(), Some(0), "{health:?}");
}

/// A bundle whose daemon floods stdout, with stdout on `output`, which nobody reads: once
/// the daemon waits for room, TERM must stop it within the 3 s budget (plus a margin).
/// 1 MB is more than the output, bundle-init's queue and the daemon's pipe hold, and
/// little enough that, once shed, the rest of it passes well within the budget (the
/// daemon reads its signals only after its flood).
fn a_stop_with_an_unread_stdout(output: std::os::fd::OwnedFd, what: &str) {
    use std::os::fd::AsRawFd;
    let dir = TempDir::new("stuck-output");
    let bundle = dir.write(
        "t.bundle",
        "shutdown-grace = 3s\n[flood]\nrun = bundle-testd --name flood --flood 1000000\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle])
        .prepare(stdout_onto(output.as_raw_fd()))
        .start();
    init.stderr.wait_for_text("flood started");
    let flood = init.daemon_processes();
    assert_eq!(flood.len(), 1, "{flood:?}");
    // The output is full and bundle-init's queue too: it no longer reads the daemon.
    wait_until_blocked_writing(flood[0]);
    let asked = Instant::now();
    init.signal(TERM);
    let (code, took) = init.wait_exit_timed(asked);
    assert_eq!(code, 0, "{what}: {}", init.stderr.text());
    assert!(
        took < Duration::from_secs(3 + 2),
        "{what}: the stop took {took:?} with a 3 s budget"
    );
    init.stderr.wait_for("the dropped count", |l| {
        l.ends_with(
            " lines of daemon output were dropped at shutdown: the log reader never caught up",
        )
    });
}

/// stdout on a terminal nobody reads (`podman run -t` with nothing attached, a stuck
/// terminal): a pty said "writable" with little room, and a 4 KiB write blocked bundle-init
/// itself, so the TERM was never even read. Now a terminal is written through a
/// non-blocking description of bundle-init's own and the stop takes its usual course:
/// daemon lines are dropped at shutdown, and the loop never waits. (A Unix socket only
/// says "writable" with a quarter of its buffer free, so it did not block before; it is
/// now written with MSG_DONTWAIT all the same, whatever kind of socket it is.)
#[test]
fn a_terminal_or_socket_that_stops_reading_never_blocks_bundle_init() {
    // The other ends stay open, and unread, until the stop is over.
    let (_master, slave) = pty_pair();
    a_stop_with_an_unread_stdout(slave, "a terminal");
    let (ours, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
    a_stop_with_an_unread_stdout(ours.into(), "a socket");
}

/// `podman run --user 1000:1000` with `user = 1000:1000` in the bundle: bundle-init already
/// runs as that user, so there is nothing to change. It used to call setgroups anyway,
/// which needs CAP_SETGID: `Operation not permitted`, exit 126. A `user =` it cannot honour
/// without root is refused with one line that names the daemon and says why.
#[test]
fn user_is_honoured_without_root_when_bundle_init_already_runs_as_that_user() {
    let dir = TempDir::new("same-user");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let same = dir.write(
        "same.bundle",
        "[same]\nrun = bundle-testd --name same --report\nuser = 1000:1000\n",
    );
    let mut init = Launch::pid1(&["--bundle", &same])
        .pid1_as_user(1000)
        .start();
    let line = init.stderr.wait_for("same's start", |l| l.contains("same"));
    assert!(line.contains("same started: pid"), "{line}");
    assert_eq!(report_value(&init.stdout, "Uid"), "1000 1000 1000 1000");
    assert_eq!(report_value(&init.stdout, "Gid"), "1000 1000 1000 1000");
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0, "{}", init.stderr.text());

    let other = dir.write(
        "other.bundle",
        "[other]\nrun = bundle-testd --name other\nuser = 1001:1001\n",
    );
    let mut init = Launch::pid1(&["--bundle", &other])
        .pid1_as_user(1000)
        .start();
    let line = init.stderr.wait_for_text("user 1001:1001: ");
    assert!(
        line.contains("other")
            && line.ends_with(
                "user 1001:1001: only root can change to another user, and bundle-init runs as 1000:1000"
            ),
        "{line}"
    );
    assert_eq!(init.wait_exit(), 1, "refused at start");
    assert_eq!(
        init.stdout.count(|l| l.starts_with("[other] ")),
        0,
        "other ran"
    );
    // --check says the same, and starts nothing.
    let check = std::process::Command::new("setpriv")
        .args(["--reuid", "1000", "--regid", "1000", "--clear-groups"])
        .args([bundle_init_bin(), "--check", "--bundle", &other])
        .output()
        .unwrap();
    assert_eq!(
        (
            check.status.code(),
            String::from_utf8_lossy(&check.stderr).into_owned()
        ),
        (
            Some(1),
            format!(
                "bundle-init: {other}: [other] user 1001:1001: only root can change to another user, and bundle-init runs as 1000:1000\n"
            )
        )
    );
}

/// A `user =` daemon with prefixed output that opens /dev/stdout or /dev/stderr, as `echo
/// hi > /dev/stderr` in a script does: its output pipes were root's, mode 0600, and the
/// open failed with `Permission denied`. Its ends now belong to its user.
#[test]
fn a_user_daemon_can_open_dev_stdout_and_dev_stderr() {
    let dir = TempDir::new("dev-stdout");
    let bundle = dir.write(
        "o.bundle",
        "[nobody]\nrun = bundle-testd --name nobody --write-to /dev/stdout via-stdout \
         --write-to /dev/stderr via-stderr\nuser = 65534:65534\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    // The second write, or the first failure, whichever comes: both go to stderr.
    let line = init.stderr.wait_for("nobody's writes", |l| {
        l.starts_with("[nobody] ") && (l.contains("via-stderr") || l.contains("cannot open"))
    });
    assert_eq!(line, "[nobody] via-stderr");
    init.stdout.wait_for_text("[nobody] via-stdout");
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0, "{}", init.stderr.text());
}

/// Hardening III, item 11: a daemon that was stopped (SIGSTOP, or TSTP and TTIN forwarded
/// to it) gets SIGCONT after its stop signal, so it can act on it: the shutdown ends with
/// its clean exit instead of a SIGKILL at the budget (exit 137).
#[test]
fn a_stopped_daemon_is_continued_after_its_stop_signal() {
    let dir = TempDir::new("stopped");
    let bundle = dir.write(
        "s.bundle",
        "shutdown-grace = 10s\n[paused]\nrun = bundle-testd --name paused\ngrace = 10s\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for("paused to start", |l| {
        l.starts_with("[paused] ") && l.ends_with(" started")
    });
    let stop = in_namespace(&init, &["signal", "paused", "STOP"]);
    assert!(stop.status.success(), "{stop:?}");
    let [daemon] = init.daemon_processes()[..] else {
        panic!("one daemon process: {:?}", init.daemon_processes());
    };
    wait_for_file(
        &format!("/proc/{daemon}/stat"),
        "the daemon to be stopped",
        |stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
        },
    );
    let asked = Instant::now();
    init.signal(TERM);
    let (code, took) = init.wait_exit_timed(asked);
    assert_eq!(
        code,
        0,
        "it stopped on its TERM, not by SIGKILL at the budget\n{}",
        init.stderr.text()
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        init.stdout.text().contains("got SIGTERM"),
        "{}",
        init.stdout.text()
    );
}

/// A daemon's last line has no newline, and it exits while bundle-init's queue for stdout
/// is full (nobody reads it), then is restarted. That line used to stay open, and the next
/// run's first line was glued to it: `[x] PARTIALx 12 started`. Now it ends where the old
/// process's output ends, and comes out alone.
#[test]
fn a_final_partial_line_ends_at_its_exit_even_behind_a_stuck_reader() {
    let dir = TempDir::new("partial");
    let runs = dir.path("runs");
    // 160 kB is more than stdout's pipe and the queue take (their 128 KiB stop the reading)
    // and less than they and the daemon's own pipe hold: the run exits behind the full
    // queue. Two runs exit so; the third keeps running.
    let bundle = dir.write(
        "p.bundle",
        &format!(
            "[x]\nrun = bundle-testd --name x --flood 160000 --exit-runs 2 {runs} --exit-after 0s 0 --last-words PARTIAL\n\
             on-exit = restart\nrestart-delay = 10ms\n"
        ),
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).hold_stdout().start();
    // The first run was reaped behind the full queue; the second one writes into the same
    // pipe, after what the first one left there.
    init.stderr.wait_for_text("x started again: pid");
    let stdout = init.release_stdout();
    stdout.wait_for_n(3, "the third run's start", |l| {
        l.starts_with("[x] ") && l.ends_with(" started")
    });
    let partial: Vec<String> = stdout
        .all()
        .into_iter()
        .filter(|l| l.contains("PARTIAL"))
        .collect();
    assert_eq!(
        partial,
        ["[x] PARTIAL", "[x] PARTIAL"],
        "{}",
        init.stderr.text()
    );
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 0, "{}", init.stderr.text());
}

/// A daemon whose 20,000 short lines fit in the pipes and bundle-init's queue, behind a
/// stdout nobody reads yet: it exits, and so does the bundle.
fn chatty_bundle(dir: &TempDir, shutdown_grace: &str) -> String {
    dir.write(
        "c.bundle",
        &format!(
            "shutdown-grace = {shutdown_grace}\n\
             [p]\nrun = bundle-testd --name p --lines 20000 --exit-after 0s 0\n"
        ),
    )
}

/// The numbers of the `[p] N` lines, in the order they came.
fn numbered_lines(lines: &Lines) -> Vec<u64> {
    lines
        .all()
        .iter()
        .filter_map(|l| l.strip_prefix("[p] ")?.parse().ok())
        .collect()
}

/// What bundle-init still held when it decided to exit was given a fixed 500 ms: a log
/// reader 2 s late found what stdout's pipe held (about 6,500 of 20,000 lines), and the
/// rest was gone without a word. Now bundle-init writes until the shutdown budget is over.
#[test]
fn output_queued_at_exit_reaches_a_late_reader_within_the_budget() {
    let dir = TempDir::new("late-reader");
    let bundle = chatty_bundle(&dir, "8s");
    let mut init = Launch::pid1(&["--bundle", &bundle]).hold_stdout().start();
    init.stderr.wait_for_text("every daemon has exited");
    // The reader comes 2 s late (the scenario, not a wait for anything), or as soon as
    // bundle-init is gone.
    let gone_early = init.exits_within(Duration::from_secs(2));
    let stdout = init.release_stdout();
    assert_eq!(init.wait_exit(), 0, "{}", init.stderr.text());
    let numbers = numbered_lines(&stdout);
    assert_eq!(
        numbers.len(),
        20_000,
        "bundle-init exited before the reader came: {gone_early}; stderr:\n{}",
        init.stderr.text()
    );
    assert!(numbers.iter().copied().eq(1..=20_000), "out of order");
    assert!(
        !init.stderr.text().contains("dropped"),
        "{}",
        init.stderr.text()
    );
}

/// With a budget too short for the reader, what bundle-init must drop at exit is counted
/// in one line on stderr: the count and the lines that arrived make every line printed.
#[test]
fn output_dropped_at_exit_is_counted_in_one_line() {
    let dir = TempDir::new("dropped-at-exit");
    let bundle = chatty_bundle(&dir, "100ms");
    let mut init = Launch::pid1(&["--bundle", &bundle]).hold_stdout().start();
    init.stderr.wait_for_text("every daemon has exited");
    assert_eq!(init.wait_exit(), 0, "{}", init.stderr.text());
    // Only now does the reader come: it gets what stdout's pipe still holds.
    let stdout = init.release_stdout();
    stdout.wait_closed();
    let received = stdout.count(|l| l.starts_with("[p] ")) as u64;
    let counts: Vec<u64> = init
        .stderr
        .all()
        .iter()
        .filter_map(|l| {
            let l = l.strip_prefix("[bundle-init] ")?;
            let count = l.strip_suffix(
                " lines of daemon output were dropped at shutdown: the log reader never caught up",
            )?;
            count.parse().ok()
        })
        .collect();
    assert_eq!(
        counts.len(),
        1,
        "one count line; stderr:\n{}",
        init.stderr.text()
    );
    assert!(
        received > 0 && counts[0] > 0,
        "{received} received, {counts:?}"
    );
    // Its 20,000 lines, and the lines that say it started and that it exits.
    assert_eq!(counts[0] + received, 20_002, "{received} received");
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    probe.local_addr().expect("its address").port()
}

/// Host pids of the processes bundle-init started itself: its daemons' main processes.
fn main_processes(init: &Init) -> Vec<i32> {
    let parent = init.pid();
    init.daemon_processes()
        .into_iter()
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|w| w.parse::<i32>().ok());
            ppid == Some(parent)
        })
        .collect()
}

/// nginx's case: its master is killed from outside (the OOM killer does this) and its two
/// workers, in its process group, keep its port. They used to be adopted and left serving,
/// and every replacement failed with "Address already in use", for good. Now they get the
/// daemon's stop signal (these ignore it, so `status` can be asked meanwhile), SIGKILL at
/// its grace, and the replacement starts only after: it binds.
#[test]
fn a_killed_masters_workers_are_stopped_before_its_replacement_binds() {
    let dir = TempDir::new("workers");
    let port = free_port();
    let bundle = dir.write(
        "w.bundle",
        &format!(
            "[web]\nrun = bundle-testd --name web --listen 127.0.0.1:{port} --workers 2 --ignore TERM\n\
             on-exit = restart\ngrace = 2s\nready = tcp:127.0.0.1:{port}\n"
        ),
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout
        .wait_for_n(2, "two workers", |l| l.ends_with(" worker"));
    init.stderr
        .wait_for("web to be ready", |l| l.contains("web is ready"));
    let [master] = main_processes(&init)[..] else {
        panic!("one main process: {:?}", main_processes(&init));
    };
    rustix_kill(master, KILL);
    init.stderr.wait_for("the leftovers to be named", |l| {
        l.contains("was killed by SIGKILL and left 2 processes")
    });
    let status = in_namespace(&init, &["status"]);
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(
        status.contains(" ending ") && status.contains(" leftovers "),
        "status tells the story: {status}"
    );
    init.stderr.wait_for("SIGKILL for the workers", |l| {
        l.contains("left by web did not stop within its grace: sending SIGKILL")
    });
    init.stdout.wait_for_n(2, "a second master", |l| {
        l.starts_with("[web] web ") && l.ends_with(" started")
    });
    init.stderr
        .wait_for_n(2, "the new master to be ready", |l| {
            l.contains("web is ready")
        });
    init.stdout
        .wait_for_n(4, "its own two workers", |l| l.ends_with(" worker"));
    let all = format!("{}{}", init.stdout.text(), init.stderr.text());
    assert!(!all.contains("Address already in use"), "{all}");
    assert_eq!(
        init.daemon_processes().len(),
        3,
        "the old workers are gone: {all}"
    );
    init.signal(TERM);
    init.wait_exit();
}

/// postgres's case: a hung postmaster (it ignores TERM) is restarted; its grace runs out and
/// the SIGKILL to its group misses the backends, each in a session of its own. They held
/// the shared memory (here, the port) and the new postmaster could not start while they
/// lived. Now what it left gets SIGKILL at once (its grace is spent) and the restart comes
/// back up.
#[test]
fn a_hung_masters_backends_in_their_own_sessions_are_killed_before_it_comes_back() {
    let dir = TempDir::new("backends");
    let port = free_port();
    let bundle = dir.write(
        "b.bundle",
        &format!(
            "[db]\nrun = bundle-testd --name db --listen 127.0.0.1:{port} --workers 2 --worker-sessions --ignore TERM\n\
             grace = 1s\n"
        ),
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout
        .wait_for_n(2, "two backends", |l| l.ends_with(" worker"));
    let restart = in_namespace(&init, &["restart", "db"]);
    let reply = String::from_utf8_lossy(&restart.stdout).to_string();
    let all = format!("{}{}", init.stdout.text(), init.stderr.text());
    assert!(restart.status.success(), "{reply}{all}");
    assert!(reply.contains("db restarted: pid "), "{reply}");
    assert!(
        init.stderr.text().contains("and left 2 processes") && all.contains("sending SIGKILL"),
        "{all}"
    );
    init.stdout.wait_for_n(2, "the new postmaster", |l| {
        l.starts_with("[db] db ") && l.ends_with(" started")
    });
    assert!(!all.contains("Address already in use"), "{all}");
    init.signal(TERM);
    init.wait_exit();
}

/// redis with `daemonize yes`: the process bundle-init started exits 0 and its child runs
/// on, unsupervised; under `on-exit = restart` every replacement met the copy before it.
/// Now one line names the daemon and the fix each time, and what it left is stopped before
/// the next start, so no copy piles up (each new one binds the port).
#[test]
fn a_daemon_that_puts_itself_in_the_background_is_named_and_never_piles_up() {
    let dir = TempDir::new("daemonize");
    let port = free_port();
    let bundle = dir.write(
        "d.bundle",
        &format!(
            "[redis]\nrun = bundle-testd --name redis --listen 127.0.0.1:{port} --daemonize\non-exit = restart\n"
        ),
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    let line = init.stderr.wait_for_n(2, "two background starts", |l| {
        l.contains("put itself in the background")
    });
    assert!(
        line[0].contains("redis (pid ")
            && line[0].contains("exited with code 0 but left 1 process (pid ")
            && line[0]
                .ends_with("run it in the foreground (docs/bundle-file.md: Foreground flags)"),
        "{line:?}"
    );
    init.stdout
        .wait_for_n(2, "two copies started, one after the other", |l| {
            l.starts_with("[redis] redis ") && l.ends_with(" started")
        });
    init.stdout.wait_for("the first copy to be stopped", |l| {
        l.ends_with(" got SIGTERM")
    });
    let all = format!("{}{}", init.stdout.text(), init.stderr.text());
    assert!(!all.contains("Address already in use"), "{all}");
    assert!(init.daemon_processes().len() <= 2, "{all}");
    init.signal(TERM);
    init.wait_exit();
}

/// Under `unshare --pid` without a /proc of its own, /proc lists the host's pids: a
/// leftover found there carries a number bundle-init cannot signal (it would name another
/// process in its namespace). Leftover tracking is off then, and nothing is ever signalled
/// by a number read from a /proc that is not bundle-init's.
#[test]
fn leftovers_are_not_tracked_through_a_proc_that_is_not_bundle_inits() {
    let dir = TempDir::new("foreign-proc");
    let bundle = dir.write(
        "f.bundle",
        &format!(
            "[x]\nrun = {} --name x --workers 1 --exit-after 0s 1\n",
            testd()
        ),
    );
    let mut child = std::process::Command::new("unshare")
        .args([
            "--pid",
            "--fork",
            "--kill-child",
            bundle_init_bin(),
            "--bundle",
            &bundle,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unshare");
    let stderr = Lines::from_reader(child.stderr.take().unwrap());
    let _stdout = Lines::from_reader(child.stdout.take().unwrap());
    let line = stderr.wait_for("x to exit", |l| {
        l.contains("] x ") && l.contains("exited with code 1")
    });
    assert!(!line.contains(" and left "), "{line}");
    rustix_kill(child.id() as i32, TERM);
    let _ = child.wait();
}
