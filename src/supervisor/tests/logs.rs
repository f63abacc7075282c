//! logs: who may be asked for their last lines, and the fields of lifecycle records

use super::*;
use crate::supervisor::LogEvent;
use crate::supervisor::events::EventKind;

fn logs_request(sup: &mut Supervisor, name: &str, follow: bool) -> Actions {
    let mut out = actions();
    let request = ControlRequest::Logs {
        name: name.into(),
        lines: Some(20),
        follow,
    };
    sup.control(5, request, secs(1.0), &mut out);
    out
}

fn log_sent(out: &Actions) -> Option<(Vec<DaemonId>, Option<usize>, bool)> {
    out.iter().find_map(|a| match a {
        Action::SendLog {
            client: 5,
            ids,
            lines,
            follow,
        } => Some((ids.clone(), *lines, *follow)),
        _ => None,
    })
}

/// The supervisor says which daemons a name means; the runtime answers from the buffers.
#[test]
fn logs_of_a_known_daemon_hand_the_client_to_the_runtime_with_its_ids() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let out = logs_request(&mut sup, "pipelock", false);
    assert_eq!(log_sent(&out), Some((vec![id(1)], Some(20), false)));
    assert!(replies(&out).is_empty(), "the runtime answers, not a Reply");
}

#[test]
fn logs_of_an_unknown_daemon_are_refused_with_the_names_known() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let out = logs_request(&mut sup, "nobody", true);
    assert_eq!(log_sent(&out), None);
    let why = "unknown daemon \"nobody\" (known: egress, pipelock, supervise)";
    assert_eq!(replies(&out), [(5, refused(why, ""))]);
}

/// Unprefixed output is never read by bundle-init: nothing to show or follow. With
/// `log-buffer = 0` nothing is held, but new lines can still be followed.
#[test]
fn logs_of_a_daemon_whose_output_is_not_kept_are_refused() {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.daemons[0].prefix_output = false;
    plan.daemons[1].log_buffer = 0;
    let mut sup = started(plan);
    for follow in [false, true] {
        let out = logs_request(&mut sup, "egress", follow);
        let [(5, Reply::Err { reason, .. })] = &replies(&out)[..] else {
            panic!("{out:?}");
        };
        assert!(reason.contains("prefix-output = no"), "{reason}");
    }
    let out = logs_request(&mut sup, "pipelock", false);
    assert_eq!(replies(&out).len(), 1, "nothing held: refused");
    let out = logs_request(&mut sup, "pipelock", true);
    assert_eq!(log_sent(&out), Some((vec![id(1)], Some(20), true)));
}

/// A section's name with instances means all of them, in order.
#[test]
fn logs_of_a_section_with_instances_mean_every_instance() {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    for (i, d) in plan.daemons.iter_mut().enumerate().skip(1) {
        d.name = format!("worker-{i}");
        d.instance_of = Some("worker".into());
    }
    let mut sup = started(plan);
    let out = logs_request(&mut sup, "worker", true);
    assert_eq!(log_sent(&out), Some((vec![id(1), id(2)], Some(20), true)));
}

fn events(out: &Actions) -> Vec<(String, LogEvent)> {
    out.iter()
        .filter_map(|a| match a {
            Action::LogEvent(_, text, event) => Some((text.clone(), *event)),
            _ => None,
        })
        .collect()
}

/// Lifecycle lines carry their event: started with the pid, exited with pid and status,
/// the daemon named by the start of the text (no copy of the name).
#[test]
fn lifecycle_lines_carry_the_event_the_pid_and_the_status() {
    let mut sup = Supervisor::new(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.begin(secs(0.0), &mut out);
    out.clear();
    sup.spawned(1, Ok(101), secs(0.0), &mut out);
    let started = events(&out);
    let [(text, event)] = &started[..] else {
        panic!("{out:?}");
    };
    assert!(text.starts_with("pipelock started: pid 101"), "{text}");
    assert_eq!(event.kind, EventKind::Started);
    assert_eq!((event.pid, event.status), (Some(101), None));
    assert_eq!(&text[..event.name_len], "pipelock");
    out.clear();
    sup.exited(101, ExitStatus::Code(3), secs(1.0), &mut out);
    let [(text, event)] = &events(&out)[..] else {
        panic!("{out:?}");
    };
    assert!(text.starts_with("pipelock exited with code 3"), "{text}");
    assert_eq!(event.kind, EventKind::Exited);
    assert_eq!(event.pid, Some(101));
    assert_eq!(event.status, Some(ExitStatus::Code(3)));
    assert_eq!(&text[..event.name_len], "pipelock");
}

/// A reload applies what it can, but not a new log format: one line says so.
#[test]
fn a_reload_that_changes_the_log_format_says_it_applies_at_the_next_start() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.log_style.json = true;
    let mut out = actions();
    sup.control(
        9,
        ControlRequest::Reload { dry_run: false },
        secs(1.0),
        &mut out,
    );
    let request = out
        .iter()
        .find_map(|a| match a {
            Action::ReadBundle(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap();
    sup.bundle_read(request, Ok(plan), secs(1.0), &mut out);
    let line = "log-format and log-time changes apply at the next start of bundle-init";
    assert_eq!(logs(&out).matches(line).count(), 1, "{}", logs(&out));
    assert!(!sup.log_style().json, "as bundle-init started");
}
