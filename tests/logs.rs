//! Each daemon's recent log (`bundle-init logs`), followers, and the structured and
//! timestamped lines (`log-format = json`, `log-time = yes`), against bundle-init as PID 1.
// A test body tells one story from start to end; the 60-line limit is for src/.
#![allow(clippy::too_many_lines)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs the client inside bundle-init's PID namespace; returns (exit code, stdout, stderr).
fn client(init: &Init, args: &[&str]) -> (i32, String, String) {
    let out = in_namespace(init, args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `logs NAME -n 20` prints that daemon's last 20 lines, `logs NAME` all it holds; an
/// unknown name and a daemon whose output is not kept are refused with exit 1.
#[test]
fn logs_n_prints_the_last_lines_of_that_daemon_only() {
    let dir = TempDir::new("logs-n");
    let bundle = dir.write(
        "l.bundle",
        "[chatty]\nrun = bundle-testd --name chatty --lines 300\n\
         [other]\nrun = bundle-testd --name other --lines 5\n\
         [raw]\nrun = bundle-testd --name raw\nprefix-output = no\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for_text("[chatty] 300");
    init.stdout.wait_for_text("[other] 5");
    let (code, out, err) = client(&init, &["logs", "chatty", "-n", "20"]);
    assert_eq!(code, 0, "{err}");
    let expected: Vec<String> = (281..=300).map(|n| format!("[chatty] {n}")).collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
    let (code, all, _) = client(&init, &["logs", "chatty"]);
    assert_eq!(code, 0);
    assert!(all.lines().all(|l| l.starts_with("[chatty] ")), "{all}");
    assert!(all.ends_with("[chatty] 299\n[chatty] 300\n"));
    let held = all.lines().count();
    assert!(
        held > 20 && all.len() <= 8192,
        "the 8 KiB default: {held} lines"
    );
    let (code, _, err) = client(&init, &["logs", "nobody"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown daemon \"nobody\""), "{err}");
    let (code, _, err) = client(&init, &["logs", "raw"]);
    assert_eq!(code, 1);
    assert!(err.contains("prefix-output = no"), "{err}");
}

/// A restart keeps the held lines: the last words of a crashed run are still there.
#[test]
fn a_restart_keeps_what_the_crashed_run_wrote() {
    let dir = TempDir::new("logs-restart");
    let runs = dir.0.join("runs");
    let bundle = dir.write(
        "r.bundle",
        &format!(
            "[crashy]\nrun = bundle-testd --name crashy --exit-after 200ms 3 --exit-runs 1 {} \
             --last-words famous-last-words\non-exit = restart\nrestart-delay = 100ms\n",
            runs.display()
        ),
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stderr.wait_for_text("crashy started again");
    let (code, out, err) = client(&init, &["logs", "crashy"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[crashy] famous-last-words\n"), "{out}");
    let started = out.lines().filter(|l| l.ends_with(" started")).count();
    assert_eq!(started, 2, "both runs' lines: {out}");
}

/// A `logs -f` client that never reads, once per follower slot, with a daemon flooding:
/// `health` still answers at once (followers hold no request slot), one follower more is
/// refused busy, and the loop never waits for them.
#[test]
fn health_answers_while_every_follower_slot_is_taken_under_a_flood() {
    let dir = TempDir::new("logs-follow");
    let bundle = dir.write(
        "f.bundle",
        "[flood]\nrun = bundle-testd --name flood --flood 4000000000\n\
         [quiet]\nrun = bundle-testd --name quiet\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout
        .wait_for("the flood", |l| l.starts_with("[flood] flood line"));
    let tag = ProcessTag::new();
    let pid = init.pid().to_string();
    let mut followers = Vec::new();
    for _ in 0..4 {
        let mut follower = Command::new("nsenter");
        follower
            .args(["--target", &pid, "--pid", "--mount", "--"])
            .args([bundle_init_bin(), "logs", "flood", "-f"])
            .stdout(Stdio::piped()) // never read: the follower stops reading its socket
            .stderr(Stdio::null());
        tag.mark(&mut follower);
        followers.push(follower.spawn().unwrap());
    }
    // Each follower got its OK and lines, then stalled: its pipe to us is full.
    let deadline = Instant::now() + Duration::from_secs(10);
    for follower in &mut followers {
        let out = follower.stdout.as_ref().unwrap();
        assert!(
            wait_readable(out, deadline - Instant::now()),
            "a follower got lines"
        );
    }
    for _ in 0..20 {
        let asked = Instant::now();
        let (code, out, err) = client(&init, &["health"]);
        assert_eq!((code, out.as_str()), (0, "healthy\n"), "{err}");
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
    }
    let (code, _, err) = client(&init, &["logs", "flood", "-f"]);
    assert_eq!(code, 1);
    assert!(err.contains("busy"), "{err}");
    let (code, out, _) = client(&init, &["logs", "quiet"]);
    assert_eq!(
        (code, out.contains("[quiet] quiet")),
        (1, false),
        "the set is full"
    );
    drop(followers);
    tag.kill_all();
}

/// Every record bundle-init writes, on stdout and stderr, under `log-format = json`.
fn json_records(lines: &Lines) -> Vec<serde_json::Value> {
    lines
        .all()
        .iter()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object: {e}: {l:?}"))
        })
        .collect()
}

/// A daemon's lines of one stream, joined from their records (a record with "partial"
/// goes on in the next one).
fn reassembled(records: &[serde_json::Value], daemon: &str, stream: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for r in records {
        if r["daemon"] != daemon || r["stream"] != stream || r.get("level").is_some() {
            continue;
        }
        line.push_str(r["text"].as_str().expect("text is a string"));
        if r.get("partial").is_none() {
            lines.push(std::mem::take(&mut line));
        }
    }
    lines
}

/// With `log-format = json`, a daemon writing control characters, invalid UTF-8,
/// characters of every length and lines far longer than a record: every line bundle-init
/// writes parses as JSON, each at most PIPE_BUF bytes, and each stream's texts join back
/// to exactly what the daemon wrote, each invalid sequence as U+FFFD.
#[test]
fn every_json_line_parses_and_the_texts_join_back_to_what_the_daemon_wrote() {
    let dir = TempDir::new("logs-json");
    let copy = dir.0.join("copy");
    let bundle = dir.write(
        "j.bundle",
        &format!(
            "log-format = json\n[h]\nrun = bundle-testd --name h --hostile-lines 400 {}\n",
            copy.display()
        ),
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    let copy_out = format!("{}.stderr", copy.display());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::path::Path::new(&copy_out).exists() {
        assert!(Instant::now() < deadline, "the daemon wrote its lines");
        std::thread::sleep(Duration::from_millis(20)); // polling a file the daemon writes
    }
    let expected = |stream: &str| -> Vec<String> {
        let bytes = std::fs::read(format!("{}.{stream}", copy.display())).unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // Not `lines()`: it would take a "\r" before each newline away.
        text.split_terminator('\n').map(str::to_string).collect()
    };
    let (want_out, want_err) = (expected("stdout"), expected("stderr"));
    // The daemon's own notes ("h PID started") go to stdout too.
    let note = |l: &String| l.starts_with("h ") && l.ends_with(" started");
    let ends = |lines: &Lines, stream: &str, count: usize| {
        lines.wait_for_n(count, "the last line's record", |l| {
            l.contains(&format!("\"stream\":\"{stream}\",\"text\"")) && !l.contains("\"partial\"")
        });
    };
    ends(&init.stdout, "stdout", want_out.len() + 1);
    ends(&init.stderr, "stderr", want_err.len());
    for lines in [&init.stdout, &init.stderr] {
        for l in lines.all() {
            assert!(l.len() < 4096, "a record of {} bytes", l.len() + 1);
        }
    }
    let out = json_records(&init.stdout);
    let err = json_records(&init.stderr);
    for r in out.iter().chain(&err) {
        let time = r["time"].as_str().expect("every record has a time");
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
    }
    let got_out: Vec<String> = reassembled(&out, "h", "stdout")
        .into_iter()
        .filter(|l| !note(l))
        .collect();
    assert_eq!(got_out.len(), want_out.len());
    assert!(got_out == want_out, "stdout texts differ");
    assert!(
        reassembled(&err, "h", "stderr") == want_err,
        "stderr texts differ"
    );
    let own: Vec<&serde_json::Value> = err.iter().filter(|r| r.get("level").is_some()).collect();
    assert!(!own.is_empty());
    assert!(own.iter().all(|r| r["source"] == "bundle-init"));
}

/// bundle-init's own lifecycle lines carry their event's fields: started with its pid,
/// exited with its pid and code 3.
#[test]
fn json_lifecycle_records_carry_event_pid_and_code() {
    let dir = TempDir::new("logs-events");
    let bundle = dir.write(
        "e.bundle",
        "log-format = json\n[x]\nrun = bundle-testd --name x --exit-after 300ms 3\n\
         [stay]\nrun = bundle-testd --name stay\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    let line = init
        .stderr
        .wait_for("x exited", |l| l.contains("\"event\":\"exited\""));
    let exited: serde_json::Value = serde_json::from_str(&line).unwrap();
    let started = json_records(&init.stderr)
        .into_iter()
        .find(|r| r["event"] == "started" && r["daemon"] == "x")
        .expect("a started record for x");
    let pid = started["pid"].as_i64().expect("started has a pid");
    assert!(pid > 1);
    assert_eq!(exited["daemon"], "x");
    assert_eq!(exited["pid"].as_i64(), Some(pid));
    assert_eq!(exited["code"].as_i64(), Some(3));
    assert_eq!(exited["level"], "notice");
    assert_eq!(exited["stream"], "stderr");
    let text = exited["text"].as_str().unwrap();
    assert!(text.starts_with("x exited with code 3"), "{text}");
}

/// `log-time = yes`: text lines start with the RFC 3339 time, before the prefix; the rest
/// of the line is as without it.
#[test]
fn log_time_puts_the_utc_time_before_each_text_line() {
    let dir = TempDir::new("logs-time");
    let bundle = dir.write(
        "t.bundle",
        "log-time = yes\n[a]\nrun = bundle-testd --name a --lines 3\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    let line = init
        .stdout
        .wait_for("a's line 3", |l| l.ends_with(" [a] 3"));
    let own = init
        .stderr
        .wait_for("a started", |l| l.contains("[bundle-init] a started"));
    for line in [line, own] {
        let (time, rest) = line.split_at(24);
        let b = time.as_bytes();
        let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22];
        assert!(digits.iter().all(|&i| b[i].is_ascii_digit()), "{line}");
        assert_eq!(
            (b[4], b[10], b[19], b[23]),
            (b'-', b'T', b'.', b'Z'),
            "{line}"
        );
        assert!(rest.starts_with(" ["), "{line}");
    }
}

/// `logs NAME -f` sends what is held, then each new line as it comes: here the lines of
/// the restarted process, and bundle-init's own lines are not among them.
#[test]
fn a_follower_gets_the_held_lines_then_each_new_one() {
    let dir = TempDir::new("logs-follow-new");
    let bundle = dir.write(
        "n.bundle",
        "[web]\nrun = bundle-testd --name web\n[other]\nrun = bundle-testd --name other\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    let first = init.stdout.wait_for("web started", |l| {
        l.starts_with("[web] web ") && l.ends_with(" started")
    });
    init.stdout.wait_for_text("[other] other");
    let tag = ProcessTag::new();
    let pid = init.pid().to_string();
    let mut follower = Command::new("nsenter");
    follower
        .args(["--target", &pid, "--pid", "--mount", "--"])
        .args([bundle_init_bin(), "logs", "web", "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    tag.mark(&mut follower);
    let mut child = follower.spawn().unwrap();
    let followed = Lines::from_reader(child.stdout.take().unwrap());
    followed.wait_for_text(&first);
    let (code, _, err) = client(&init, &["restart", "web"]);
    assert_eq!(code, 0, "{err}");
    let second = followed.wait_for("the new process's first line", |l| {
        l.starts_with("[web] web ") && l.ends_with(" started") && l != first
    });
    assert_ne!(second, first);
    assert!(
        followed.all().iter().all(|l| l.starts_with("[web] ")),
        "only web's lines: {:?}",
        followed.all()
    );
    tag.kill_all();
    let _ = child.wait();
}

/// A reload that removes a daemon drops its lines: added back, it starts with none.
#[test]
fn a_daemon_removed_by_a_reload_leaves_no_lines_behind() {
    let dir = TempDir::new("logs-reload");
    let two = "[a]\nrun = bundle-testd --name a --lines 3\n[b]\nrun = bundle-testd --name b\n";
    let bundle = dir.write("r.bundle", two);
    let init = Launch::pid1(&["--bundle", &bundle]).start();
    init.stdout.wait_for_text("[a] 3");
    init.stdout.wait_for_text("[b] b");
    dir.write("r.bundle", "[b]\nrun = bundle-testd --name b\n");
    assert_eq!(client(&init, &["reload"]).0, 0);
    let (code, _, err) = client(&init, &["logs", "a"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown daemon \"a\""), "{err}");
    dir.write(
        "r.bundle",
        "[a]\nrun = bundle-testd --name a\n[b]\nrun = bundle-testd --name b\n",
    );
    assert_eq!(client(&init, &["reload"]).0, 0);
    init.stdout.wait_for_n(2, "a's second start", |l| {
        l.starts_with("[a] a ") && l.ends_with(" started")
    });
    let (code, out, err) = client(&init, &["logs", "a"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "only the new a's line: {out}");
    assert!(out.ends_with(" started\n"), "{out}");
}

/// A warning bundle-init gives before its loop runs (here: no control socket, a file is in
/// the way) is a JSON record too, once the bundle file asked for JSON.
#[test]
fn a_warning_before_the_loop_runs_is_a_json_record_too() {
    let dir = TempDir::new("logs-json-warning");
    let in_the_way = dir.write("not-a-socket", "a file\n");
    let bundle = dir.write(
        "w.bundle",
        "log-format = json\n[a]\nrun = bundle-testd --name a\n",
    );
    let init = Launch::pid1(&["--bundle", &bundle])
        .env("BUNDLE_INIT_CONTROL", &in_the_way)
        .start();
    let line = init
        .stderr
        .wait_for("the warning", |l| l.contains("no control socket"));
    let record: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
    assert_eq!(record["source"], "bundle-init");
    assert_eq!(record["level"], "notice");
    assert!(
        record["text"]
            .as_str()
            .unwrap()
            .starts_with("warning: no control socket")
    );
    init.stderr
        .wait_for("a started", |l| l.contains("\"event\":\"started\""));
    assert!(
        std::fs::read(&in_the_way).unwrap() == b"a file\n",
        "left alone"
    );
}
