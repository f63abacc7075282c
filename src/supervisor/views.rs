//! What `status` and `health` say: read-only views of the daemons, in the words the code
//! uses for their states.

use std::time::Duration;

use super::daemon::{Daemon, State};
use super::events::ExitStatus;
use crate::json;
use crate::signal::Sig;
use crate::time::Time;

/// Which bundle file runs: reloads count up from 1.
pub(crate) struct Generation {
    pub(crate) number: u32,
    pub(crate) loaded_at: Time,
}

/// The version of the `status --json` document: fields may be added within a version,
/// never renamed, retyped or removed.
pub(crate) const STATUS_VERSION: i64 = 1;

/// One line per daemon: name, state, pid, uptime, restarts, last exit; then one about the
/// bundle file.
pub(crate) fn status_lines<'a>(
    daemons: impl Iterator<Item = &'a Daemon>,
    generation: &Generation,
    now: Time,
) -> Vec<String> {
    let mut lines: Vec<String> = daemons.map(|d| status_line(d, now)).collect();
    let loaded = now.saturating_sub(generation.loaded_at).as_secs();
    let number = generation.number;
    lines.push(format!(
        "bundle file generation {number}, loaded {loaded}s ago"
    ));
    lines
}

/// The `status --json` document: `{"version":1,"bundle":{...},"daemons":[...]}`, with
/// JSON's own types (docs/http.md describes each field).
pub(crate) fn status_document<'a>(
    daemons: impl Iterator<Item = &'a Daemon>,
    generation: &Generation,
    now: Time,
) -> String {
    let mut out = String::new();
    let mut doc = json::Object::begin(&mut out);
    doc.number("version", STATUS_VERSION);
    doc.value("bundle", |out| {
        let mut bundle = json::Object::begin(out);
        bundle.number("generation", generation.number);
        bundle.number(
            "loaded_ms_ago",
            millis(now.saturating_sub(generation.loaded_at)),
        );
        bundle.end();
    });
    doc.value("daemons", |out| {
        json::push_array(out, daemons, |out, d| daemon_object(out, d, now));
    });
    doc.end();
    out
}

fn daemon_object(out: &mut String, d: &Daemon, now: Time) {
    let mut o = json::Object::begin(out);
    o.string("name", &d.spec.name);
    o.string("state", d.state().word());
    match d.pid() {
        Some(pid) => o.number("pid", pid),
        None => o.null("pid"),
    };
    match uptime(d, now) {
        Some(up) => o.number("uptime_ms", millis(up)),
        None => o.null("uptime_ms"),
    };
    o.number("restarts", d.restarts);
    match d.spec.ready {
        Some(_) => o.boolean("ready", d.is_ready()),
        None => o.null("ready"),
    };
    o.value("last_exit", |out| exit_object(out, d.last_exit));
    o.value("leftovers", |out| {
        json::push_array(out, d.leftovers(), |out, pid| {
            out.push_str(&pid.to_string())
        });
    });
    match why_down(d) {
        Some(why) => o.string("why_down", &why),
        None => o.null("why_down"),
    };
    if d.spec.live.is_checked() {
        o.value("live", |out| live_object(out, d));
    } else {
        o.null("live");
    }
    match &d.notes.status {
        Some(status) => o.string("notify_status", status),
        None => o.null("notify_status"),
    };
    o.end();
}

/// `{"failures_in_a_row":0,"failures_total":2,"last_failure":"connect to ... refused"}`.
fn live_object(out: &mut String, d: &Daemon) {
    let live = &d.liveness;
    let mut o = json::Object::begin(out);
    o.number("failures_in_a_row", live.failures_in_a_row());
    o.number("failures_total", live.failures);
    match &live.last_failure {
        Some(why) => o.string("last_failure", why),
        None => o.null("last_failure"),
    };
    o.end();
}

/// `{"code":3}`, `{"signal":"SIGKILL","code":137}` (the code a shell would show), or null.
fn exit_object(out: &mut String, exit: Option<ExitStatus>) {
    let Some(exit) = exit else {
        out.push_str("null");
        return;
    };
    let mut o = json::Object::begin(out);
    if let ExitStatus::Signal(n) = exit {
        o.string("signal", &Sig(n).to_string());
    }
    o.number("code", exit.code());
    o.end();
}

/// How long the daemon's process has run, while it has one.
fn uptime(d: &Daemon, now: Time) -> Option<Duration> {
    match d.state() {
        State::Running { since, .. } | State::Stopping { since, .. } => {
            Some(now.saturating_sub(*since))
        }
        _ => None,
    }
}

/// Milliseconds, as a JSON number: i64 holds 292 million years of them.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn status_line(d: &Daemon, now: Time) -> String {
    let state = d.state().word();
    let pid = d.pid();
    let ready = match (&d.spec.ready, d.is_ready()) {
        (None, _) => "-",
        (Some(_), true) => "yes",
        (Some(_), false) => "no",
    };
    let uptime = uptime(d, now).map(|u| u.as_secs());
    let last = d.last_exit.map(|e| e.to_string());
    let leftovers: Vec<String> = d.leftovers().iter().map(i32::to_string).collect();
    let mut line = format!(
        "{:<16} {state:<9} pid {:<7} up {:<9} restarts {:<4} ready {ready:<3} last {}",
        d.spec.name,
        pid.map_or("-".to_string(), |p| p.to_string()),
        uptime.map_or("-".to_string(), |u| format!("{u}s")),
        d.restarts,
        last.unwrap_or_else(|| "-".to_string())
    );
    if !leftovers.is_empty() {
        line.push_str(&format!(" leftovers {}", leftovers.join(",")));
    }
    if let Some(live) = liveness(d) {
        line.push_str(&format!(" live {live}"));
    }
    if let Some(status) = &d.notes.status {
        line.push_str(&format!(" status \"{status}\""));
    }
    if let Some(why) = why_down(d) {
        line.push_str(&format!(" ({why})"));
    }
    line
}

/// What its liveness checks found, for `status`: `ok`, or the failures in a row and the
/// last one's reason; `ok (last failure: ...)` once it answered again.
fn liveness(d: &Daemon) -> Option<String> {
    if !d.spec.live.is_checked() {
        return None;
    }
    let live = &d.liveness;
    Some(match (&live.last_failure, live.failures_in_a_row()) {
        (None, _) => "ok".to_string(),
        (Some(why), 0) => format!("ok (last failure: {why})"),
        (Some(why), n) => format!("failing {n} in a row ({why})"),
    })
}

/// Why a daemon that is down is down, when its state word alone does not say it.
fn why_down(d: &Daemon) -> Option<String> {
    match d.state() {
        State::GaveUp => Some(gave_up(d)),
        State::Done { took } => Some(format!("exit 0 after {}", super::daemon::seconds(*took))),
        State::Failed { status, timed_out } => {
            Some(super::daemon::failure(*status, *timed_out, d.spec.timeout))
        }
        State::StoppedByRequest if d.spec.autostart || d.last_exit.is_some() => {
            Some("stopped by request".to_string())
        }
        State::StoppedByRequest => Some("autostart = no".to_string()),
        _ => None,
    }
}

/// Ok when every daemon runs (and is ready, if it has a check); otherwise what is wrong,
/// daemon by daemon.
pub(crate) fn health<'a>(daemons: impl Iterator<Item = &'a Daemon>) -> Result<(), Vec<String>> {
    let problems: Vec<String> = daemons.filter_map(problem).collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn problem(d: &Daemon) -> Option<String> {
    let name = &d.spec.name;
    match d.state() {
        State::Running { ready: false, .. } => Some(format!("{name} is running but not ready")),
        State::Running { ready: true, .. } if d.liveness.failures_in_a_row() > 0 => {
            let why = d.liveness.last_failure.as_deref().unwrap_or("?");
            let n = d.liveness.failures_in_a_row();
            Some(format!(
                "{name} is not answering (liveness: {why}, {n} in a row)"
            ))
        }
        State::Running { ready: true, .. } => None,
        State::WaitingForDependencies { .. } => {
            Some(format!("{name} is waiting for what it starts after"))
        }
        State::Backoff { .. } => Some(format!(
            "{name} is waiting to restart after it {}",
            describe(d.last_exit)
        )),
        State::HeldForRemoved => Some(format!(
            "{name} waits for the daemons a reload removed to stop"
        )),
        State::Down => Some(format!("{name} is down: it {}", describe(d.last_exit))),
        State::GaveUp => Some(format!("{name} {}", gave_up(d))),
        // Down as asked, or a oneshot that did its job: not a problem.
        State::StoppedByRequest | State::Done { .. } => None,
        State::Failed { status, timed_out } => Some(format!(
            "{name} failed ({})",
            super::daemon::failure(*status, *timed_out, d.spec.timeout)
        )),
        State::GaveUpWaiting => Some(format!(
            "{name} was not started: what it starts after was not ready"
        )),
        State::Ending { leftovers, .. } => Some(format!(
            "{name} is ending: {} of its processes left to stop",
            leftovers.len()
        )),
        state @ (State::Starting { .. } | State::Stopping { .. }) => {
            Some(format!("{name} is {}", state.word()))
        }
    }
}

/// "gave up after 2 restarts (last: exited with code 1)".
fn gave_up(d: &Daemon) -> String {
    let max = d.spec.max_restarts.unwrap_or(0);
    let restarts = if max == 1 { "restart" } else { "restarts" };
    format!(
        "gave up after {max} {restarts} (last: {})",
        describe(d.last_exit)
    )
}

fn describe(exit: Option<ExitStatus>) -> String {
    exit.map_or("never started".to_string(), |e| e.to_string())
}

/// Ok when every daemon that has a readiness check is ready; otherwise who is not, one
/// line each. Daemons without a check have nothing to say here (`health` covers them).
pub(crate) fn readiness<'a>(daemons: impl Iterator<Item = &'a Daemon>) -> Result<(), Vec<String>> {
    let not_ready: Vec<String> = daemons
        .filter(|d| d.spec.ready.is_some() && !d.is_ready())
        .map(|d| format!("{} is not ready (state: {})", d.spec.name, d.state().word()))
        .collect();
    if not_ready.is_empty() {
        Ok(())
    } else {
        Err(not_ready)
    }
}

/// What the runtime counts that the supervisor does not see: lines the outputs dropped.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct OutputCounts {
    /// bundle-init's own log lines dropped (queue full, or output broken).
    pub(crate) own_lines_dropped: u64,
    /// Daemons' lines dropped while a stuck output was shed at shutdown.
    pub(crate) daemon_lines_dropped: u64,
}

/// One per-daemon metric: its name, type and help, and a daemon's sample (None: no sample).
struct DaemonMetric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&Daemon, Time) -> Option<String>,
}

const DAEMON_METRICS: &[DaemonMetric] = &[
    DaemonMetric {
        name: "bundle_init_daemon_up",
        kind: "gauge",
        help: "1 when the daemon's process runs (state running), else 0.",
        value: |d, _| Some(flag(matches!(d.state(), State::Running { .. }))),
    },
    DaemonMetric {
        name: "bundle_init_daemon_ready",
        kind: "gauge",
        help: "1 when the daemon runs and is ready (it passed its readiness check, or has none), else 0.",
        value: |d, _| {
            Some(flag(matches!(
                d.state(),
                State::Running { ready: true, .. }
            )))
        },
    },
    DaemonMetric {
        name: "bundle_init_daemon_restarts_total",
        kind: "counter",
        help: "Restarts of the daemon since bundle-init started.",
        value: |d, _| Some(d.restarts.to_string()),
    },
    DaemonMetric {
        name: "bundle_init_daemon_last_exit_code",
        kind: "gauge",
        help: "The code the daemon's last process exited with (128+N for signal N); no sample before its first exit.",
        value: |d, _| d.last_exit.map(|e| e.code().to_string()),
    },
    DaemonMetric {
        name: "bundle_init_daemon_uptime_seconds",
        kind: "gauge",
        help: "How long the daemon's process has run; 0 without a process.",
        value: |d, now| Some(seconds(uptime(d, now).unwrap_or_default())),
    },
    DaemonMetric {
        name: "bundle_init_daemon_liveness_failures_total",
        kind: "counter",
        help: "Failed liveness checks and missed watchdog pings of the daemon since bundle-init started; no sample without live or watchdog.",
        value: |d, _| {
            d.spec
                .live
                .is_checked()
                .then(|| d.liveness.failures.to_string())
        },
    },
    DaemonMetric {
        name: "bundle_init_daemon_liveness_failing",
        kind: "gauge",
        help: "Liveness failures in a row now (0 when its last check passed); no sample without live or watchdog.",
        value: |d, _| {
            d.spec
                .live
                .is_checked()
                .then(|| d.liveness.failures_in_a_row().to_string())
        },
    },
];

/// Prometheus's text exposition format, version 0.0.4: each metric's HELP and TYPE lines,
/// then its samples; per-daemon samples carry `daemon="NAME"`.
pub(crate) fn metrics(
    daemons: &[&Daemon],
    generation: &Generation,
    outputs: OutputCounts,
    now: Time,
) -> String {
    let mut out = String::new();
    for metric in DAEMON_METRICS {
        header(&mut out, metric.name, metric.kind, metric.help);
        for d in daemons {
            if let Some(v) = (metric.value)(d, now) {
                let label = escape_label(&d.spec.name);
                out.push_str(&format!("{}{{daemon=\"{label}\"}} {v}\n", metric.name));
            }
        }
    }
    bundle_metrics(&mut out, generation, outputs);
    out
}

fn bundle_metrics(out: &mut String, generation: &Generation, outputs: OutputCounts) {
    let name = "bundle_init_reloads_total";
    header(
        out,
        name,
        "counter",
        "Reloads of the bundle file that were applied.",
    );
    out.push_str(&format!("{name} {}\n", generation.number.saturating_sub(1)));
    let name = "bundle_init_log_lines_dropped_total";
    let help = "Output lines dropped: bundle-init's own (source=\"bundle-init\") when its output was full or broken, daemons' (source=\"daemons\") when a stuck output was shed at shutdown.";
    header(out, name, "counter", help);
    out.push_str(&format!(
        "{name}{{source=\"bundle-init\"}} {}\n",
        outputs.own_lines_dropped
    ));
    out.push_str(&format!(
        "{name}{{source=\"daemons\"}} {}\n",
        outputs.daemon_lines_dropped
    ));
    let name = "bundle_init_build_info";
    header(
        out,
        name,
        "gauge",
        "Always 1; the labels say which bundle-init this is.",
    );
    let version = escape_label(env!("CARGO_PKG_VERSION"));
    out.push_str(&format!("{name}{{version=\"{version}\"}} 1\n"));
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    out.push_str(&format!(
        "# HELP {name} {}\n# TYPE {name} {kind}\n",
        escape_help(help)
    ));
}

fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_string()
}

/// Seconds to the millisecond, written with integers: `12.345`.
fn seconds(d: Duration) -> String {
    let ms = d.as_millis();
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// A label value as the format requires: backslash, double quote and line feed escaped.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// HELP text as the format requires: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}
