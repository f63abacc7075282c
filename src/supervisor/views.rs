//! What `status` and `health` say: read-only views of the daemons, in the words the code
//! uses for their states.

use super::daemon::{Daemon, State};
use super::events::ExitStatus;
use crate::time::Time;

/// Which bundle file runs: reloads count up from 1.
pub(crate) struct Generation {
    pub(crate) number: u32,
    pub(crate) loaded_at: Time,
}

/// One line per daemon: name, state, pid, uptime, restarts, last exit; then one about the
/// bundle file. With `json`, one JSON object per line.
pub(crate) fn status_lines<'a>(
    daemons: impl Iterator<Item = &'a Daemon>,
    generation: &Generation,
    now: Time,
    json: bool,
) -> Vec<String> {
    let mut lines: Vec<String> = daemons.map(|d| status_line(d, now, json)).collect();
    let loaded = now.saturating_sub(generation.loaded_at).as_secs();
    let number = generation.number;
    lines.push(if json {
        format!("{{\"bundle\":{{\"generation\":{number},\"loaded_s_ago\":{loaded}}}}}")
    } else {
        format!("bundle file generation {number}, loaded {loaded}s ago")
    });
    lines
}

fn status_line(d: &Daemon, now: Time, json: bool) -> String {
    let state = d.state().word();
    let since = match d.state() {
        State::Running { since, .. } | State::Stopping { since, .. } => Some(*since),
        _ => None,
    };
    let pid = d.pid();
    let ready = match (&d.spec.ready, d.is_ready()) {
        (None, _) => "-",
        (Some(_), true) => "yes",
        (Some(_), false) => "no",
    };
    let uptime = since.map(|t| now.saturating_sub(t).as_secs());
    let last = d.last_exit.map(|e| e.to_string());
    let leftovers: Vec<String> = d.leftovers().iter().map(i32::to_string).collect();
    if json {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "null".to_string());
        format!(
            "{{\"name\":\"{}\",\"state\":\"{state}\",\"pid\":{},\"uptime_s\":{},\"restarts\":{},\"last_exit\":{},\"ready\":\"{ready}\",\"leftovers\":[{}]}}",
            d.spec.name,
            opt(pid.map(|p| p.to_string())),
            opt(uptime.map(|u| u.to_string())),
            d.restarts,
            opt(last.map(|l| format!("\"{l}\""))),
            leftovers.join(",")
        )
    } else {
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
}

/// What its liveness checks found, for `status`: `ok`, or the failures in a row and the
/// last one's reason; `ok (last failure: ...)` once it answered again.
fn liveness(d: &Daemon) -> Option<String> {
    if !d.spec.live.is_checked() {
        return None;
    }
    let live = &d.liveness;
    Some(match (&live.last_failure, live.failures_in_a_row) {
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
        State::Running { ready: true, .. } if d.liveness.failures_in_a_row > 0 => {
            let why = d.liveness.last_failure.as_deref().unwrap_or("?");
            let n = d.liveness.failures_in_a_row;
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
