//! Core behaviour of the built binary, as a real PID 1 and as a subreaper: exit codes,
//! signal forwarding, reaping, what children inherit, idle wakeups, the terminal.
// A test body tells one story from start to end; the 60-line limit is for src/.
#![allow(clippy::too_many_lines)]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn exit_code_of(launch: Launch) -> (i32, Init) {
    let mut init = launch.start();
    let code = init.wait_exit();
    (code, init)
}

#[test]
fn exit_codes_0_to_255_pass_through_as_pid1_and_as_subreaper() {
    for code in 0..=255 {
        let c = code.to_string();
        let args = [testd(), "--exit-after", "0s", &c];
        let as_pid1 = if code % 2 == 0 {
            Launch::pid1(&args)
        } else {
            Launch::subreaper(&args)
        };
        let (got, init) = exit_code_of(as_pid1);
        assert_eq!(got, code, "stderr: {}", init.stderr.text());
    }
}

#[test]
fn dash_e_remaps_listed_codes_to_zero_only() {
    let (code, _) = exit_code_of(Launch::pid1(&[
        "-e",
        "143",
        "-e",
        "3",
        "--",
        testd(),
        "--exit-after",
        "0s",
        "143",
    ]));
    assert_eq!(code, 0);
    let (code, _) = exit_code_of(Launch::pid1(&[
        "-e",
        "143",
        "--",
        testd(),
        "--exit-after",
        "0s",
        "4",
    ]));
    assert_eq!(code, 4);
}

#[test]
fn signals_sent_to_pid1_reach_the_child_and_its_death_is_128_plus_n() {
    for sig in [TERM, USR1, USR2] {
        let mut init =
            Launch::pid1(&["--", testd(), "--die-on", "USR1", "--die-on", "USR2"]).start();
        init.stdout.wait_for_text("started");
        init.signal(sig);
        assert_eq!(init.wait_exit(), 128 + sig);
        assert!(
            init.stdout.text().contains("got SIG"),
            "the child itself saw the signal"
        );
    }
}

#[test]
fn usage_and_exec_errors_have_their_own_documented_codes() {
    let (code, init) = exit_code_of(Launch::subreaper(&["--no-such-flag"]));
    assert_eq!(code, 2);
    assert!(init.stderr.text().contains("--no-such-flag"));
    let (code, init) = exit_code_of(Launch::pid1(&["/does/not/exist"]));
    assert_eq!(code, 127);
    assert!(
        init.stderr
            .text()
            .contains("exec /does/not/exist failed: No such file or directory"),
        "{}",
        init.stderr.text()
    );
    let (code, init) = exit_code_of(Launch::pid1(&["/etc"]));
    assert_eq!(code, 126);
    assert!(
        init.stderr
            .text()
            .contains("exec /etc failed: Permission denied"),
        "{}",
        init.stderr.text()
    );
}

/// A script without a `#!` line: the kernel refuses it (ENOEXEC), and glibc's execvp, so
/// tini, runs it with /bin/sh. bundle-init used to exit 126 instead.
#[test]
fn a_script_without_a_shebang_runs_with_bin_sh_as_execvp_does() {
    let dir = TempDir::new("no-shebang");
    let script = dir.write("script", "echo \"script got $*\"\nexit 7\n");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (code, init) = exit_code_of(Launch::pid1(&[&script, "a", "b"]));
    assert_eq!(code, 7, "{}", init.stderr.text());
    assert_eq!(init.stdout.all(), ["script got a b"]);
}

/// Single-child mode has no bundle: its log speaks of the child, even at -v.
#[test]
fn single_child_mode_speaks_of_the_child_not_a_bundle() {
    let (code, init) = exit_code_of(Launch::pid1(&["-v", "--", "sh", "-c", "exit 3"]));
    assert_eq!(code, 3);
    let lines = init.stderr.all();
    assert_eq!(
        lines.last().unwrap(),
        "[bundle-init] the child exited with code 3; exiting"
    );
    for line in &lines {
        let text = line.trim_start_matches("[bundle-init] ");
        assert!(!text.contains("bundle"), "{line}");
    }
}

/// dumb-init's `--rewrite`: an app that stops gracefully on QUIT gets QUIT when the engine
/// (or an orchestrator that ignores the image's STOPSIGNAL) sends TERM; a rewrite to 0
/// drops a signal.
#[test]
fn rewrite_forwards_term_as_quit_and_drops_a_signal_rewritten_to_zero() {
    let mut init = Launch::pid1(&[
        "--rewrite",
        "TERM:QUIT",
        "-r",
        "USR1:0",
        "--",
        testd(),
        "--name",
        "app",
    ])
    .start();
    init.stdout.wait_for_text("app");
    init.signal(USR1);
    // The barrier: USR2 (12) is read after USR1 (10), so a forwarded USR1 would show first.
    init.signal(USR2);
    init.stdout.wait_for_text("got SIGUSR2");
    init.signal(TERM);
    assert_eq!(init.wait_exit(), 128 + 3, "the child died of its QUIT");
    let out = init.stdout.text();
    assert!(out.contains("got SIGQUIT"), "{out}");
    assert!(
        !out.contains("got SIGTERM") && !out.contains("got SIGUSR1"),
        "{out}"
    );
}

#[test]
fn a_flood_of_orphans_leaves_no_zombie_as_pid1() {
    orphan_flood(Launch::pid1(&["-w", "--", testd(), "--orphans", "500"]));
}

#[test]
fn a_flood_of_orphans_leaves_no_zombie_as_subreaper() {
    if skip_when_emulated(
        "core::a_flood_of_orphans_leaves_no_zombie_as_subreaper",
        QEMU_NO_SUBREAPER,
    ) {
        return;
    }
    orphan_flood(Launch::subreaper(&[
        "-w",
        "--",
        testd(),
        "--orphans",
        "500",
    ]));
}

fn orphan_flood(launch: Launch) {
    let init = launch.start();
    init.stdout.wait_for_text("made 500 orphans");
    // -w logs one line per reaped orphan: wait for all 500, then look for zombies.
    init.stderr.wait_for_n(500, "about reaped zombies", |l| {
        l.contains("Reaped zombie process with pid=")
    });
    assert_eq!(zombie_children(init.pid()), Vec::<i32>::new());
}

#[test]
fn dash_g_signals_reach_a_grandchild_in_the_childs_group() {
    // sh dies of USR1 (default action); bundle-testd, its child in the same group, notes it.
    // --stop-others: bundle-init waits for the grandchild (TERM after the child is gone)
    // instead of exiting at once and taking it down before it could say what it saw.
    let script = format!("{} --name grandchild & wait", testd());
    let mut init = Launch::pid1(&["-g", "--stop-others", "5s", "--", "sh", "-c", &script]).start();
    init.stdout.wait_for_text("grandchild");
    init.signal(USR1);
    init.stdout.wait_for_text("got SIGUSR1");
    assert_eq!(init.wait_exit(), 128 + USR1);

    // Without -g only sh is signalled: the grandchild hears nothing.
    let mut init = Launch::pid1(&["--stop-others", "5s", "--", "sh", "-c", &script]).start();
    init.stdout.wait_for_text("grandchild");
    init.signal(USR1);
    assert_eq!(init.wait_exit(), 128 + USR1);
    assert!(!init.stdout.text().contains("got SIGUSR1"));
}

/// The child gets the mask and ignored set bundle-init inherited, not its own all-blocked
/// mask. Read by the child from /proc/self/status, with no shell in between.
#[test]
fn the_child_inherits_the_original_signal_mask_and_ignored_signals() {
    for as_pid1 in [true, false] {
        let args = ["--", testd(), "--report"];
        let launch = if as_pid1 {
            Launch::pid1(&args)
        } else {
            Launch::subreaper(&args)
        };
        let init = launch
            .prepare(|| {
                let mut set = bundle_init::sys::SigSet::empty();
                set.add(USR2);
                bundle_init::sys::block_signals(&set)?;
                bundle_init::sys::ignore_signal(HUP)?;
                bundle_init::sys::ignore_signal(13) // SIGPIPE: std resets it in children
            })
            .start();
        // Bits: USR2 is signal 12 -> 0x800; HUP 1 -> 0x1, PIPE 13 -> 0x1000.
        assert_eq!(report_value(&init.stdout, "SigBlk"), "0000000000000800");
        let ignored = u64::from_str_radix(&report_value(&init.stdout, "SigIgn"), 16).unwrap();
        if skip_when_emulated(
            "core::the_child_inherits_*: ignored signals",
            "qemu-user installs a handler for every signal, so no emulated program hands an ignored disposition on across exec",
        ) {
            continue;
        }
        assert_eq!(ignored & 0x1001, 0x1001, "HUP and PIPE stay ignored");
        // bundle-init never changes a disposition, so its own SigIgn is what it inherited
        // (the test runner may add bits of its own, such as glibc's signal 32; the child
        // asks sigaction, which musl does not answer for its reserved signals 32 to 34).
        let status = std::fs::read_to_string(format!("/proc/{}/status", init.pid())).unwrap();
        let own = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .unwrap()
            .trim();
        let musl_reserved = 0b111 << 31;
        assert_eq!(
            ignored,
            u64::from_str_radix(own, 16).unwrap() & !musl_reserved
        );
    }
    let init = Launch::pid1(&["--", testd(), "--report"]).start();
    assert_eq!(report_value(&init.stdout, "SigBlk"), "0000000000000000");
}

/// Until exec, a starting daemon runs in bundle-init's own memory (a vfork-style clone), so
/// a signal handler of bundle-init's must never run there: bundle-init catches no signal at
/// all, in either mode (every one it takes is blocked and read from a signalfd).
#[test]
fn bundle_init_catches_no_signal_so_none_can_run_a_handler_in_a_starting_child() {
    if skip_when_emulated(
        "core::bundle_init_catches_no_signal_*",
        "qemu-user installs a handler for every signal, so /proc shows the emulator's own",
    ) {
        return;
    }
    let dir = TempDir::new("no-handlers");
    let bundle = dir.write("b.bundle", "[d]\nrun = bundle-testd --name d\n");
    for launch in [
        Launch::pid1(&["--", testd(), "--name", "d"]),
        Launch::pid1(&["--bundle", &bundle]),
        Launch::subreaper(&["--bundle", &bundle]),
    ] {
        let init = launch.start();
        init.stdout.wait_for_text("started");
        let caught = status_text(init.pid(), "SigCgt:");
        assert_eq!(caught, "0000000000000000", "signals with a handler");
    }
}

/// A field of /proc/PID/status as text.
fn status_text(pid: i32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix(key)).unwrap();
    line.trim().to_string()
}

#[test]
fn the_child_gets_only_its_standard_descriptors_and_its_own_group() {
    for launch in [
        Launch::pid1(&["--", testd(), "--report"]),
        Launch::subreaper(&["--", testd(), "--report"]),
    ] {
        let init = launch.start();
        assert_eq!(report_value(&init.stdout, "fds"), "0,1,2");
        assert_eq!(report_value(&init.stdout, "own-process-group"), "true");
    }
}

#[test]
fn dash_p_delivers_the_parent_death_signal() {
    // sh starts bundle-init in the background and waits on stdin; closing stdin ends sh,
    // bundle-init's parent. -p turns that into SIGUSR1, which is forwarded to the child.
    let script = format!("{} -p SIGUSR1 -- {} & read _", bundle_init_bin(), testd());
    let mut sh = Command::new("sh")
        .args(["-c", &script])
        .env("PATH", test_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = Lines::from_reader(sh.stdout.take().unwrap());
    let child = started_pid(&lines.wait_for_text("started"));
    drop(sh.stdin.take());
    sh.wait().unwrap();
    lines.wait_for_text("got SIGUSR1");
    // Clean up: the child dies of TERM, so bundle-init exits and the pipe closes.
    rustix_kill(child, TERM);
    lines.wait_closed();
}

#[test]
fn the_idle_loop_makes_no_wakeups() {
    for launch in [
        Launch::pid1(&["--", testd()]),
        Launch::subreaper(&["--", testd()]),
    ] {
        let init = launch.start();
        init.stdout.wait_for_text("started");
        let pid = init.pid();
        wait_until_idle(pid);
        let before = context_switches(pid);
        std::thread::sleep(Duration::from_secs(3)); // the measuring window, not a wait
        let after = context_switches(pid);
        assert_eq!(
            after - before,
            0,
            "bundle-init woke up {} times while idle",
            after - before
        );
    }
}

#[test]
fn stop_others_terms_leftovers_and_waits_for_them() {
    // The child leaves a grandchild behind and exits 5: with --stop-others the grandchild
    // gets TERM (and notes it) before bundle-init exits with the child's code.
    // The ready file is a FIFO: the shell's read blocks until the grandchild has written
    // it, that is, until its signal handling is set up.
    let dir = TempDir::new("stop-others");
    let ready = dir.path("ready");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        ready.as_str(),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let script = format!(
        "{} --name leftover --ready-file {ready} & read pid < {ready}; exit 5",
        testd()
    );
    let mut init = Launch::pid1(&["--stop-others", "5s", "--", "sh", "-c", &script]).start();
    assert_eq!(init.wait_exit(), 5);
    assert!(
        init.stdout.text().contains("leftover"),
        "{}",
        init.stdout.text()
    );
    assert!(
        init.stdout.text().contains("got SIGTERM"),
        "{}",
        init.stdout.text()
    );
}

#[test]
fn version_names_the_commit() {
    let out = Command::new(bundle_init_bin())
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!("bundle-init {} (", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    // The emulated run is the aarch64 build; otherwise the build for this machine.
    let arch = if emulated() {
        "aarch64"
    } else {
        std::env::consts::ARCH
    };
    assert!(text.ends_with(&format!(") linux/{arch}\n")), "{text}");
    assert!(out.status.success());
}

/// Ctrl-C on a terminal goes to the foreground process group. bundle-init hands the
/// terminal to its child's group, so the child gets SIGINT straight from the terminal and
/// bundle-init never has to forward it (-vv would log a forward).
#[test]
fn ctrl_c_on_a_terminal_reaches_the_child_and_exits_130() {
    let (code, text) = ctrl_c_on_a_terminal("");
    assert_eq!(code, Some(130), "output: {text}");
    assert!(text.contains("got SIGINT"), "{text}");
    assert!(
        !text.contains("forwarded SIGINT"),
        "the terminal, not bundle-init, delivered it: {text}"
    );
}

/// With a rewrite of a keyboard signal, bundle-init keeps the terminal: Ctrl-C comes to it
/// and goes on to the child rewritten, as dumb-init does it.
#[test]
fn a_rewritten_keyboard_signal_from_a_terminal_is_rewritten() {
    let (code, text) = ctrl_c_on_a_terminal("-r INT:QUIT");
    assert!(text.contains("got SIGQUIT"), "{text}");
    assert!(!text.contains("got SIGINT"), "{text}");
    assert_eq!(code, Some(128 + 3), "output: {text}");
}

/// Runs bundle-init with `flags` on a new terminal, presses Ctrl-C once the child runs:
/// the exit code and everything printed.
fn ctrl_c_on_a_terminal(flags: &str) -> (Option<i32>, String) {
    let command = format!("exec {} -vv {flags} -- {}", bundle_init_bin(), testd());
    let mut script = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env("PATH", test_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    let mut stdin = script.stdin.take().unwrap();
    let lines = Lines::from_reader(script.stdout.take().unwrap());
    // The child's own line (not bundle-init's "started" log): its signals are set up.
    lines.wait_for("from the child", |l| {
        l.starts_with("testd ") && l.contains(" started")
    });
    stdin.write_all(&[3]).unwrap(); // ^C
    stdin.flush().unwrap();
    let status = script.wait().unwrap();
    lines.wait_closed();
    (status.code(), lines.text())
}
