//! Bundle mode end to end, as PID 1 of a PID namespace: the seed's contract, routes,
//! shutdown, selection, environment, users, prefixed output and exit policies.
// A test body tells one story from start to end; the 60-line limit is for src/.
#![allow(clippy::too_many_lines)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

fn seed_bundle() -> String {
    format!("{}/tests/bundles/seed.bundle", env!("CARGO_MANIFEST_DIR"))
}

fn wait_started(init: &Init, names: &[&str]) -> HashMap<String, i32> {
    for name in names {
        init.stdout.wait_for(&format!("from {name} starting"), |l| {
            l.starts_with(&format!("[{name}] {name} ")) && l.ends_with(" started")
        });
    }
    daemon_pids(&init.stdout)
}

const SEED: [&str; 4] = ["egress", "pipelock", "git-gate", "supervise"];

/// The seed bundle listens on fixed ports: its tests take turns.
static SEED_PORTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seed_ports() -> std::sync::MutexGuard<'static, ()> {
    SEED_PORTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The bug that started it all: reloading pipelock must not drop the agent's connection to
/// supervise, and must not send pipelock the USR1 that would kill it.
#[test]
fn seed_usr1_restarts_pipelock_only_and_a_held_connection_survives() {
    let _ports = seed_ports();
    let bundle = seed_bundle();
    let mut init = Launch::pid1(&["--bundle", &bundle])
        .env("CRED_TOKEN", "s3cret")
        .start();
    let before = wait_started(&init, &SEED);

    let mut supervise = common::HeldConnection::open("127.0.0.1:18090");
    let mut ask = |text: &str| supervise.ask(text);
    assert_eq!(
        ask("hello"),
        format!("supervise {}: hello\n", before["supervise"])
    );

    init.signal(USR1);
    let restarted = init.stderr.wait_for_text("pipelock restarted (SIGUSR1)");
    init.stdout
        .wait_for_n(2, "from pipelock starting twice", |l| {
            l.starts_with("[pipelock]") && l.ends_with(" started")
        });
    let after = daemon_pids(&init.stdout);
    assert_ne!(
        after["pipelock"], before["pipelock"],
        "pipelock has a new pid"
    );
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

    // USR2 is unrouted in the seed bundle: all four note it, after any stray USR1.
    init.signal(USR2);
    wait_for_usr2_barrier(&init.stdout, 4);
    let out = init.stdout.text();
    assert!(
        out.contains(&format!("pipelock {} got SIGTERM", before["pipelock"])),
        "stopped with its stop signal"
    );
    assert!(
        !out.contains("got SIGUSR1"),
        "USR1 reached a daemon:\n{out}"
    );

    init.signal(TERM);
    assert_eq!(
        init.wait_exit(),
        0,
        "a clean shutdown exits 0\n{}",
        init.stderr.text()
    );
}

#[test]
fn hup_reaches_egress_only() {
    let _ports = seed_ports();
    let bundle = seed_bundle();
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    wait_started(&init, &SEED);
    init.signal(HUP);
    init.signal(USR2); // unrouted: goes to all four, after the HUP
    assert_hup_reached_egress_only(&init.stdout);
}

#[test]
fn env_credentials_stay_with_egress_only() {
    let dir = TempDir::new("env");
    let bundle = dir.write(
        "env.bundle",
        "[egress]\nrun = bundle-testd --name egress --report\n\
         [pipelock]\nrun = bundle-testd --name pipelock --report\nunset-prefix = CRED_\nunset = NOISY\nenv = MODE=strict\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle])
        .env("CRED_TOKEN", "x")
        .env("CRED_KEY", "y")
        .env("NOISY", "1")
        .start();
    init.stdout
        .wait_for_n(2, "env reports", |l| l.contains("report env="));
    let env_of = |name: &str| -> Vec<String> {
        let line = init
            .stdout
            .all()
            .into_iter()
            .find(|l| l.starts_with(&format!("[{name}]")) && l.contains("report env="))
            .unwrap();
        line.split_once("report env=")
            .unwrap()
            .1
            .split(',')
            .map(str::to_string)
            .collect()
    };
    let egress = env_of("egress");
    let pipelock = env_of("pipelock");
    for var in ["CRED_TOKEN", "CRED_KEY", "NOISY"] {
        assert!(egress.contains(&var.to_string()), "egress lost {var}");
        assert!(!pipelock.contains(&var.to_string()), "pipelock kept {var}");
    }
    assert!(pipelock.contains(&"MODE".to_string()) && pipelock.contains(&"PATH".to_string()));
}

/// The seed's own pipelock stanza: `unset-prefix` is its only environment key, and that
/// alone must change the environment.
#[test]
fn an_unset_prefix_alone_removes_the_credentials() {
    let dir = TempDir::new("env-prefix");
    let bundle = dir.write(
        "env.bundle",
        "[egress]\nrun = bundle-testd --name egress --report\n\
         [pipelock]\nrun = bundle-testd --name pipelock --report\nunset-prefix = CRED_\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle])
        .env("CRED_TOKEN", "s3cret")
        .start();
    let reports = init
        .stdout
        .wait_for_n(2, "env reports", |l| l.contains("report env="));
    let env_of = |name: &str| -> Vec<String> {
        let line = reports
            .iter()
            .find(|l| l.starts_with(&format!("[{name}]")))
            .unwrap();
        let list = line.split_once("report env=").unwrap().1;
        list.split(',').map(str::to_string).collect()
    };
    assert!(env_of("egress").contains(&"CRED_TOKEN".to_string()));
    let pipelock = env_of("pipelock");
    assert!(
        !pipelock.contains(&"CRED_TOKEN".to_string()),
        "{pipelock:?}"
    );
    assert!(pipelock.contains(&"PATH".to_string()), "{pipelock:?}");
}

/// A second restart request while the first is stopping the daemon is coalesced: no
/// second stop signal, and the grace is not re-armed. The daemon ignores TERM, so the
/// replacement starts when the first request's grace ends.
#[test]
fn a_second_restart_request_joins_the_first_and_keeps_its_grace() {
    let dir = TempDir::new("coalesce");
    let bundle = dir.write(
        "c.bundle",
        "on SIGUSR1 = restart stubborn\n\
         [stubborn]\nrun = bundle-testd --name stubborn --ignore TERM --timestamps\ngrace = 1s\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for_text("started t=");
    let now_ns = || {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
    };
    let first_request = now_ns();
    init.signal(USR1);
    init.stdout.wait_for_text("got SIGTERM");
    // The second request comes half-way through the grace: the window under test.
    std::thread::sleep(Duration::from_millis(500));
    init.signal(USR1);
    init.stderr.wait_for_text("stubborn restarted (SIGUSR1)");
    let started = init
        .stdout
        .wait_for_n(2, "two starts", |l| l.contains(" started t="));
    let stamp = |line: &str| line.rsplit_once("t=").unwrap().1.parse::<u128>().unwrap();
    let after_ms = (stamp(&started[1]) - first_request) / 1_000_000;
    assert!(
        (950..1400).contains(&after_ms),
        "the replacement started {after_ms} ms after the first request, not about 1000"
    );
    let terms = init.stdout.count(|l| l.contains("got SIGTERM"));
    assert_eq!(
        terms,
        1,
        "the stop signal was sent again:\n{}",
        init.stdout.text()
    );
}

#[test]
fn a_daemon_ignoring_term_is_killed_at_the_budget_and_the_exit_code_says_so() {
    let dir = TempDir::new("stubborn");
    let bundle = dir.write(
        "b.bundle",
        "shutdown-grace = 1s\n[polite]\nrun = bundle-testd --name polite\n\
         [stubborn]\nrun = bundle-testd --name stubborn --ignore TERM\ngrace = 30s\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    wait_started(&init, &["polite", "stubborn"]);
    let asked = Instant::now();
    init.signal(TERM);
    let (code, took) = init.wait_exit_timed(asked);
    assert!(
        took >= Duration::from_millis(900),
        "did not wait for the budget: {took:?}"
    );
    assert!(
        took < Duration::from_secs(4),
        "took {took:?}, far past the 1s budget"
    );
    assert_eq!(
        code,
        137,
        "killed after the budget: not a clean stop\n{}",
        init.stderr.text()
    );
    assert!(init.stdout.text().contains("stubborn") && init.stdout.text().contains("got SIGTERM"));
    assert!(init.stderr.text().contains("shutdown budget of 1s is over"));
}

#[test]
fn a_second_shutdown_signal_is_logged_and_ignored() {
    let dir = TempDir::new("second");
    let bundle = dir.write(
        "b.bundle",
        "shutdown-grace = 1s\n[slow]\nrun = bundle-testd --name slow --ignore TERM\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    wait_started(&init, &["slow"]);
    init.signal(TERM);
    init.stderr.wait_for_text("received SIGTERM: shutting down");
    init.signal(INT);
    init.stderr
        .wait_for_text("received SIGINT again: already shutting down, ignored");
    assert_eq!(init.wait_exit(), 137);
}

#[test]
fn selection_runs_only_the_named_daemons_and_a_typo_starts_nothing() {
    let _ports = seed_ports();
    let bundle = seed_bundle();
    let init = Launch::pid1(&["--bundle", &bundle])
        .env("BUNDLE_INIT_DAEMONS", " pipelock ")
        .start();
    wait_started(&init, &["pipelock"]);
    init.signal(USR1);
    init.stderr.wait_for_text("pipelock restarted (SIGUSR1)");
    let started: Vec<String> = daemon_pids(&init.stdout).into_keys().collect();
    assert_eq!(started, vec!["pipelock".to_string()]);

    let mut init = Launch::pid1(&["--bundle", &bundle])
        .env("BUNDLE_INIT_DAEMONS", "egress,pipelok")
        .start();
    assert_eq!(init.wait_exit(), 2);
    let err = init.stderr.text();
    assert!(err.contains("unknown daemon \"pipelok\""), "{err}");
    assert!(
        !init.stdout.text().contains("started") && !err.contains("started"),
        "nothing may start"
    );

    let mut init = Launch::pid1(&["--bundle", &bundle])
        .env("BUNDLE_INIT_DAEMONS", "")
        .start();
    assert_eq!(init.wait_exit(), 0);
    assert!(init.stderr.text().contains("no daemon selected"));
}

#[test]
fn bad_bundle_files_fail_with_path_and_line_and_check_prints_the_plan() {
    let dir = TempDir::new("check");
    let bad = dir.write("bad.bundle", "[a]\nrun = x\n\nstop-signal = SIGWAT\n");
    let mut init = Launch::subreaper(&["--bundle", &bad]).start();
    assert_eq!(init.wait_exit(), 2);
    assert_eq!(
        init.stderr.text(),
        format!("bundle-init: {bad}:4: unknown signal \"SIGWAT\"")
    );

    let mut init = Launch::subreaper(&["--check", "--bundle", &bad]).start();
    assert_eq!(init.wait_exit(), 2);

    let bundle = seed_bundle();
    let mut init = Launch::subreaper(&["--check", "--bundle", &bundle]).start();
    assert_eq!(init.wait_exit(), 0);
    let plan = init.stdout.text();
    assert!(
        plan.contains("4 daemon(s)") && plan.contains("on SIGUSR1 = restart pipelock"),
        "{plan}"
    );
    assert!(
        plan.contains("on SIGHUP = forward egress") && plan.contains("unset-prefix = CRED_"),
        "{plan}"
    );

    let mut init = Launch::subreaper(&["--bundle", "/no/such/bundle"]).start();
    assert_eq!(init.wait_exit(), 2);
    assert!(
        init.stderr
            .text()
            .starts_with("bundle-init: /no/such/bundle: cannot open")
    );
}

/// `--bundle` must name a regular file. A FIFO used to hang bundle-init for ever in open(),
/// with every signal already blocked, so only SIGKILL could end it.
#[test]
fn a_bundle_path_that_is_not_a_regular_file_is_refused_at_once() {
    let dir = TempDir::new("not-regular");
    let fifo = dir.path("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        fifo.as_str(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let directory = dir.0.to_string_lossy().into_owned();
    for (path, kind) in [
        (fifo.as_str(), "a FIFO"),
        (directory.as_str(), "a directory"),
        ("/dev/null", "a character device"),
        // bundle-init's own stdin, which the tests set to /dev/null.
        ("/proc/self/fd/0", "a character device"),
    ] {
        let mut init = Launch::pid1(&["--bundle", path]).start();
        assert_eq!(init.wait_exit(), 2, "{path}");
        assert_eq!(
            init.stderr.all(),
            [format!(
                "bundle-init: {path}: is {kind}, not a regular file"
            )]
        );
    }
}

#[test]
fn exit_policies_keep_running_restart_and_stop_bundle() {
    let dir = TempDir::new("policies");
    // keep-running: crashes with 3, the sibling carries on, the bundle later exits 3.
    let bundle = dir.write(
        "keep.bundle",
        "[crasher]\nrun = bundle-testd --name crasher --exit-after 0s 3\n[sibling]\nrun = bundle-testd --name sibling\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stderr
        .wait_for_text("crasher exited with code 3; not restarted (keep-running)");
    // Wait for the sibling's own line: a signal forwarded before a daemon has set up its
    // handling would kill it by the default action, and that race is the daemon's.
    wait_started(&init, &["sibling"]);
    init.signal(USR2);
    init.stdout.wait_for_text("got SIGUSR2");
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 3);

    // restart: comes back after its backoff, again and again. The first three runs crash at
    // once; the fourth stays up, so the TERM below meets a daemon that is surely running
    // (a run that crashed at the very moment of the TERM would rightly count as code 1).
    let runs = dir.path("flaky.runs");
    let bundle = dir.write(
        "restart.bundle",
        &format!("[flaky]\nrun = bundle-testd --name flaky --exit-after 0s 1 --exit-runs 3 {runs}\non-exit = restart\nrestart-delay = 10ms\nrestart-delay-max = 40ms\n"),
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stderr
        .wait_for_n(3, "restarts", |l| l.contains("flaky started again"));
    init.stdout.wait_for_n(4, "the fourth run up", |l| {
        l.starts_with("[flaky] flaky ") && l.ends_with(" started")
    });
    let delays: Vec<String> = init
        .stderr
        .all()
        .into_iter()
        .filter(|l| l.contains("restarting in"))
        .collect();
    assert!(
        delays[0].ends_with("restarting in 10ms") && delays[1].ends_with("restarting in 20ms"),
        "{delays:?}"
    );
    init.signal(TERM);
    assert_eq!(
        init.wait_exit(),
        0,
        "restarted crashes do not make the exit code"
    );

    // stop-bundle: its code ends the bundle, the sibling gets TERM.
    let bundle = dir.write(
        "stop.bundle",
        "[sibling]\nrun = bundle-testd --name sibling\n[job]\nrun = bundle-testd --name job --exit-after 200ms 4\non-exit = stop-bundle\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    assert_eq!(init.wait_exit(), 4);
    assert!(
        init.stdout.text().contains("got SIGTERM"),
        "the sibling was stopped"
    );
    assert!(
        init.stderr
            .text()
            .contains("job exited with code 4; stopping the bundle (stop-bundle)")
    );
}

#[test]
fn daemons_run_as_their_numeric_user_without_supplementary_groups() {
    let dir = TempDir::new("user");
    let bundle = dir.write(
        "u.bundle",
        "[nobody]\nrun = bundle-testd --name nobody --report\nuser = 65534:65534\nno-new-privs = yes\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    assert_eq!(report_value(&init.stdout, "Uid"), "65534 65534 65534 65534");
    assert_eq!(report_value(&init.stdout, "Gid"), "65534 65534 65534 65534");
    assert_eq!(report_value(&init.stdout, "Groups"), "");
    assert_eq!(report_value(&init.stdout, "NoNewPrivs"), "1");
}

#[test]
fn daemons_get_only_their_own_descriptors_even_when_bundle_init_inherited_more() {
    let dir = TempDir::new("fds");
    // The notify daemon first: a leaked notify pipe would show in its report and, still
    // open in bundle-init, in the reports of the daemons started after it.
    let bundle = dir.write(
        "f.bundle",
        "[n]\nrun = bundle-testd --name n --report --notify-fd 5\nready = notify:5\n\
         [d]\nrun = bundle-testd --name d --report\n\
         [raw]\nrun = bundle-testd --name raw --report\nprefix-output = no\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle])
        .prepare(|| {
            // Leave descriptor 7 open without close-on-exec, as a careless parent might.
            let null = std::fs::File::open("/dev/null")?;
            // SAFETY: 7 is only a dup2 target here, and forgotten, never closed, afterwards.
            let mut seven =
                unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(7) };
            rustix::io::dup2(&null, &mut seven)?;
            std::mem::forget(seven);
            Ok(())
        })
        .start();
    let reports = init
        .stdout
        .wait_for_n(3, "fd reports", |l| l.contains("report fds="));
    for line in reports {
        let expected = if line.starts_with("[n] ") {
            "report fds=0,1,2,5"
        } else {
            "report fds=0,1,2"
        };
        assert!(line.ends_with(expected), "{line}");
    }
}

#[test]
fn prefixed_lines_stay_whole_and_complete_under_two_floods() {
    let dir = TempDir::new("flood");
    let bundle = dir.write(
        "f.bundle",
        "[a]\nrun = bundle-testd --name a --flood 3000000 --exit-after 0s 0\n\
         [b]\nrun = bundle-testd --name b --flood 3000000 --exit-after 0s 0\n\
         [tail]\nrun = sh -c \"printf 'no newline at the end'\"\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    assert_eq!(init.wait_exit(), 0);
    let mut next = HashMap::from([("a", 0u64), ("b", 0u64)]);
    for line in init.stdout.all() {
        let (name, rest) = line
            .split_once("] ")
            .unwrap_or_else(|| panic!("unprefixed: {line:?}"));
        let name = name.trim_start_matches('[');
        if name == "tail" {
            assert_eq!(rest, "no newline at the end");
            continue;
        }
        if let Some(number) = rest.strip_prefix("flood line ") {
            let (n, filler) = number.split_once(' ').unwrap();
            assert_eq!(
                n.parse::<u64>().unwrap(),
                next[name],
                "lost or reordered line from {name}"
            );
            assert_eq!(filler.len(), 71, "a line was cut or mixed: {line:?}");
            *next.get_mut(name).unwrap() += 1;
        } else {
            assert!(rest.starts_with(&format!("{name} ")), "{line:?}");
        }
    }
    assert!(next["a"] > 30000 && next["a"] == next["b"], "{next:?}");
    assert!(init.stdout.text().contains("[tail] no newline at the end"));
}

/// A daemon floods while nobody reads bundle-init's stdout: the loop must still act on a
/// restart at once, and no line may be lost once the reader comes back.
#[test]
fn a_restart_is_prompt_while_a_daemon_floods_a_reader_that_does_not_read() {
    let dir = TempDir::new("slow-reader");
    let bundle = dir.write(
        "s.bundle",
        "on USR1 = restart target\n[flood]\nrun = bundle-testd --name flood --flood 20000000\n\
         [target]\nrun = bundle-testd --name target\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).hold_stdout().start();
    init.stderr.wait_for_text("target started");
    init.stderr.wait_for_text("flood started");
    // Nobody reads stdout: the pipe and bundle-init's queue fill, then the flood blocks.
    wait_until_idle(init.pid());
    let asked = Instant::now();
    init.signal(USR1);
    init.stderr.wait_for_text("target restarted (SIGUSR1)");
    let took = asked.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "restart took {took:?} while the output was stuck"
    );
    let stdout = init.release_stdout();
    // bundle-testd's flood lines are 94 bytes; it writes until it reached the byte count.
    let flood_lines = stdout.wait_for_n(
        20000000usize.div_ceil(94),
        "flood lines after the reader came back",
        |l| l.starts_with("[flood] flood line"),
    );
    let last: u64 = flood_lines.last().unwrap()[19..29].parse().unwrap();
    assert_eq!(
        last as usize + 1,
        flood_lines.len(),
        "no line lost while the reader was away"
    );
}

/// `forward NAME as SIGNAL`: the bundle's rewrite. Only b gets the signal, and as USR2.
#[test]
fn a_forward_route_can_rewrite_the_signal_for_its_daemons() {
    let dir = TempDir::new("forward-as");
    let bundle = dir.write(
        "f.bundle",
        "on SIGHUP = forward b as SIGUSR2\n[a]\nrun = bundle-testd --name a\n[b]\nrun = bundle-testd --name b\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    for name in ["a", "b"] {
        init.stdout.wait_for(&format!("{name} started"), |l| {
            l.starts_with(&format!("[{name}] ")) && l.ends_with(" started")
        });
    }
    init.signal(HUP);
    init.stdout.wait_for("b's USR2", |l| {
        l.starts_with("[b] ") && l.ends_with("got SIGUSR2")
    });
    // The barrier: USR1 (10) goes to both and is read after a HUP (1) would have been.
    init.signal(USR1);
    wait_for_n_usr1(&init.stdout);
    let out = init.stdout.text();
    assert!(!out.contains("got SIGHUP"), "{out}");
    assert!(
        !out.lines()
            .any(|l| l.starts_with("[a] ") && l.ends_with("got SIGUSR2")),
        "{out}"
    );
}

fn wait_for_n_usr1(lines: &Lines) {
    lines.wait_for_n(2, "both noting USR1", |l| l.ends_with("got SIGUSR1"));
}

/// An env file is read at each start, in bundle-init: the daemon sees its variables, a
/// restart after an edit sees the new value, a bad line is that start's failure naming
/// PATH:LINE, and the secret's value is in no line of bundle-init's, in `status` or in
/// `--check`.
#[test]
fn an_env_file_is_read_at_each_start_and_its_secret_is_never_shown() {
    let dir = TempDir::new("env-file");
    let secrets = dir.write("app.env", "# rotated\nMODE=one\nAPI_TOKEN=s3cr3t-one\n");
    let missing = dir.path("missing.env");
    let bundle = dir.write(
        "e.bundle",
        &format!(
            "[app]\nrun = bundle-testd --name app --show-env MODE --report\n\
             env-file = {secrets}\nenv-file = -{missing}\n\
             [sibling]\nrun = bundle-testd --name sibling\n"
        ),
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    let shown = init.stdout.wait_for_text("env MODE=one");
    assert!(shown.starts_with("[app] app "), "{shown}");
    let names = report_value(&init.stdout, "env");
    assert!(names.split(',').any(|n| n == "API_TOKEN"), "{names}");

    std::fs::write(&secrets, "MODE=two\nAPI_TOKEN=s3cr3t-two\n").unwrap();
    let restart = in_namespace(&init, &["restart", "app"]);
    assert!(restart.status.success(), "{restart:?}");
    init.stdout.wait_for_text("env MODE=two");

    // A line without `=` (a pasted secret) fails this start, and is not shown.
    std::fs::write(&secrets, "MODE=three\ns3cr3t-three\n").unwrap();
    let _ = in_namespace(&init, &["restart", "app"]);
    let failed = init.stderr.wait_for_text("cannot start app");
    assert!(
        failed.ends_with(&format!(
            "cannot start app: env-file {secrets}:2: expected NAME=VALUE (the line is not shown)"
        )),
        "{failed}"
    );
    let status = in_namespace(&init, &["status"]);
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("app "), "{status:?}");

    let mut check = Launch::subreaper(&["--check", "--bundle", &bundle]).start();
    assert_eq!(check.wait_exit(), 0);
    let plan = check.stdout.text();
    assert!(
        plan.contains(&format!("env-file = {secrets}\nenv-file = -{missing}\n")),
        "{plan}"
    );
    for (what, text) in [
        ("status", status),
        ("--check", plan),
        ("the log", init.stderr.text()),
        ("the output", init.stdout.text()),
    ] {
        assert!(!text.contains("s3cr3t"), "a secret in {what}:\n{text}");
    }
}

/// `${PORT:-8080}` takes bundle-init's PORT when it is set and the default otherwise, and
/// `--check` prints the expanded plan.
#[test]
fn a_variable_with_a_default_runs_with_and_without_it_set() {
    let dir = TempDir::new("expand");
    let bundle = dir.write(
        "x.bundle",
        "[app]\nrun = bundle-testd --name app-${PORT:-8080}\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for("the default port", |l| {
        l.starts_with("[app] app-8080 ") && l.ends_with(" started")
    });
    let init = Launch::pid1(&["--bundle", &bundle])
        .env("PORT", "9000")
        .start();
    init.stdout.wait_for("the port set", |l| {
        l.starts_with("[app] app-9000 ") && l.ends_with(" started")
    });
    let mut check = Launch::subreaper(&["--check", "--bundle", &bundle])
        .env("PORT", "9000")
        .start();
    assert_eq!(check.wait_exit(), 0);
    let plan = check.stdout.text();
    assert!(
        plan.contains("run = bundle-testd --name app-9000\n"),
        "{plan}"
    );
}

/// An unset `${DB_URL}` without a default is a load error: exit 2, one line naming the
/// file, the line and the variable, and nothing started.
#[test]
fn an_unset_variable_without_a_default_exits_2_naming_it_and_its_line() {
    let dir = TempDir::new("expand-unset");
    let bundle = dir.write(
        "x.bundle",
        "[first]\nrun = bundle-testd --name first\n[app]\nrun = bundle-testd --name app\nenv = DB=${DB_URL}\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    assert_eq!(init.wait_exit(), 2);
    assert_eq!(
        init.stderr.text(),
        format!(
            "bundle-init: {bundle}:5: variable DB_URL is not set (${{DB_URL:-DEFAULT}} gives a default)"
        )
    );
    assert_eq!(init.stdout.text(), "", "nothing started");
}

/// A derived image adds a daemon by dropping a file into the base image's conf.d: it runs,
/// `--check` shows it, and a name the base already uses is refused naming both places.
#[test]
fn a_drop_in_file_adds_a_daemon_and_a_duplicate_name_is_refused_naming_both_files() {
    let dir = TempDir::new("include");
    std::fs::create_dir_all(dir.path("conf.d")).unwrap();
    let bundle = dir.write(
        "base.bundle",
        "include = conf.d/*.bundle\n[web]\nrun = bundle-testd --name web\n",
    );
    dir.write(
        "conf.d/metrics.bundle",
        "# added by the derived image\n[metrics]\nrun = bundle-testd --name metrics\nafter = web\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    wait_started(&init, &["web", "metrics"]);
    let mut check = Launch::subreaper(&["--check", "--bundle", &bundle]).start();
    assert_eq!(check.wait_exit(), 0);
    let plan = check.stdout.text();
    assert!(
        plan.contains("2 daemon(s)")
            && plan.contains("[metrics]\nrun = bundle-testd --name metrics\n"),
        "{plan}"
    );

    let again = dir.write(
        "conf.d/web.bundle",
        "\n[web]\nrun = bundle-testd --name other-web\n",
    );
    let mut init = Launch::pid1(&["--bundle", &bundle]).start();
    assert_eq!(init.wait_exit(), 2);
    assert_eq!(
        init.stderr.text(),
        format!("bundle-init: {again}:2: daemon \"web\" is defined twice (first at {bundle}:2)")
    );
    assert_eq!(init.stdout.text(), "", "nothing started");
}

/// umask, nice, each limit, the groups and oom_score_adj, as the daemon reports them from
/// inside, are the file's.
#[test]
fn a_daemon_gets_the_umask_nice_limits_groups_and_oom_score_its_file_gives() {
    let dir = TempDir::new("process");
    let bundle = dir.write(
        "p.bundle",
        "[app]\nrun = bundle-testd --name app --report\nuser = 65534:65534\ngroups = 4,27\n\
         umask = 0027\nnice = 15\nlimit-nofile = 512:1024\nlimit-nproc = 100:200\n\
         limit-core = 0:unlimited\nlimit-memlock = 65536\nlimit-stack = 4194304:unlimited\n\
         limit-as = unlimited\noom-score-adj = 500\n\
         [plain]\nrun = bundle-testd --name plain --report\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout
        .wait_for_n(2, "both reports", |l| l.contains("report oom_score_adj="));
    let value = |daemon: &str, key: &str| -> String {
        let prefix = format!("[{daemon}] report {key}=");
        let line = init
            .stdout
            .all()
            .into_iter()
            .find(|l| l.starts_with(&prefix));
        line.unwrap_or_else(|| panic!("no {prefix}"))[prefix.len()..].to_string()
    };
    let expected = [
        ("Umask", "0027"),
        ("nice", "15"),
        ("limit-nofile", "512:1024"),
        ("limit-nproc", "100:200"),
        ("limit-core", "0:unlimited"),
        ("limit-memlock", "65536:65536"),
        ("limit-stack", "4194304:unlimited"),
        ("limit-as", "unlimited:unlimited"),
        ("Groups", "4 27"),
        ("Uid", "65534 65534 65534 65534"),
        ("oom_score_adj", "500"),
    ];
    for (key, want) in expected {
        // qemu-user keeps the stack and address-space limits to itself (its setrlimit of
        // them does nothing): under the emulator the daemon cannot show them.
        if matches!(key, "limit-stack" | "limit-as")
            && skip_when_emulated(
                "bundle::a_daemon_gets_the_*: limit-stack and limit-as",
                "qemu-user ignores setrlimit of RLIMIT_STACK and RLIMIT_AS",
            )
        {
            continue;
        }
        assert_eq!(value("app", key), want, "{key}");
    }
    // Without the keys, the daemon keeps what bundle-init has (so the values above are
    // the keys' doing): its own umask and oom score, no groups.
    assert_ne!(value("plain", "Umask"), "0027");
    assert_ne!(value("plain", "oom_score_adj"), "500");
    assert_ne!(value("plain", "limit-nofile"), "512:1024");
}

/// oom_score_adj is written before the limits are set: writing it opens a descriptor in the
/// child, whose table is a copy of bundle-init's (about twenty here, all closed at exec),
/// so a daemon's low limit-nofile set first would make that open fail.
#[test]
fn oom_score_adj_is_set_whatever_limit_nofile_the_daemon_has() {
    let dir = TempDir::new("process-oom-nofile");
    let bundle = dir.write(
        "p.bundle",
        "[b]\nrun = bundle-testd --name b\n[c]\nrun = bundle-testd --name c\n\
         [d]\nrun = bundle-testd --name d\n\
         [app]\nrun = bundle-testd --name app --report\nlimit-nofile = 8\noom-score-adj = 300\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for("app's report", |l| {
        l.starts_with("[app] report oom_score_adj=")
    });
    // Started last, app was started by a bundle-init with every other daemon's pipes.
    let open = std::fs::read_dir(format!("/proc/{}/fd", init.pid()))
        .unwrap()
        .count();
    assert!(
        open > 8,
        "bundle-init holds more descriptors than the limit: {open}"
    );
    assert!(
        init.stdout
            .all()
            .contains(&"[app] report oom_score_adj=300".to_string()),
        "{:?}\n{}",
        init.stdout.all(),
        init.stderr.text()
    );
}

/// A limit that cannot be set (a hard limit raised without privilege) fails that start,
/// named, under the daemon's policy; bundle-init and the sibling carry on.
#[test]
fn a_limit_that_cannot_be_set_fails_that_start_naming_the_limit() {
    let dir = TempDir::new("process-limit");
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hard = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .expect("a finite hard limit on descriptors");
    let bundle = dir.write(
        "l.bundle",
        &format!(
            "[sibling]\nrun = bundle-testd --name sibling\n\
             [greedy]\nrun = bundle-testd --name greedy\nlimit-nofile = {}\n",
            hard + 1
        ),
    );
    let mut init = Launch::pid1(&["--bundle", &bundle])
        .pid1_as_user(1000)
        .start();
    let line = init.stderr.wait_for_text("cannot start greedy");
    assert!(
        line.ends_with(&format!(
            "cannot start greedy: limit-nofile {}: Operation not permitted (raising a hard limit needs CAP_SYS_RESOURCE)",
            hard + 1
        )),
        "{line}"
    );
    init.stderr
        .wait_for_text("greedy exited with code 126; not restarted (keep-running)");
    wait_started(&init, &["sibling"]);
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 126);
}
