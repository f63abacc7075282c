//! views: the `status --json` document, readiness for `/readyz`, the metrics text.

use serde_json::{Value, json};

use super::*;
use crate::supervisor::views::OutputCounts;

fn document(sup: &Supervisor, now: Time) -> Value {
    let text = sup.status_document(now);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// db (with a check) ready and running since 0.1 s, app waiting for it... then app started.
fn db_ready_app_running() -> Supervisor {
    let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
    sup.ready(0, secs(0.2), &mut out);
    sup.tick(secs(0.2), &mut out);
    sup.spawned(1, Ok(101), secs(0.3), &mut out);
    sup
}

#[test]
fn the_status_document_uses_json_types_for_every_field() {
    let mut sup = db_ready_app_running();
    let mut out = actions();
    sup.exited(101, ExitStatus::Code(3), secs(1.0), &mut out);
    let doc = document(&sup, secs(1.5));
    assert_eq!(doc["version"], 1);
    assert_eq!(
        doc["bundle"],
        json!({"generation": 1, "loaded_ms_ago": 1500})
    );
    assert_eq!(
        doc["daemons"][0],
        json!({
            "name": "db", "state": "running", "pid": 100, "uptime_ms": 1400, "restarts": 0,
            "ready": true, "last_exit": null, "leftovers": [], "why_down": null,
            "live": null, "notify_status": null
        })
    );
    let app = &doc["daemons"][1];
    assert_eq!(
        app["state"],
        nth(&sup, 1).state().word(),
        "the text table's word"
    );
    assert_eq!(
        (&app["pid"], &app["uptime_ms"]),
        (&json!(null), &json!(null))
    );
    assert_eq!(app["ready"], json!(null), "app has no readiness check");
    assert_eq!(app["last_exit"], json!({"code": 3}));
}

#[test]
fn a_daemon_killed_by_a_signal_shows_the_signal_and_the_shells_code() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.exited(101, ExitStatus::Signal(libc_sig::KILL), secs(1.0), &mut out);
    let doc = document(&sup, secs(1.0));
    assert_eq!(
        doc["daemons"][1]["last_exit"],
        json!({"signal": "SIGKILL", "code": 137})
    );
    assert_eq!(doc["daemons"][1]["state"], "exited", "keep-running");
}

#[test]
fn the_status_document_says_why_a_daemon_is_down() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    let stop = ControlRequest::Stop(vec!["egress".into()]);
    sup.control(1, stop, secs(1.0), &mut out);
    sup.exited(100, ExitStatus::Signal(libc_sig::TERM), secs(1.1), &mut out);
    let doc = document(&sup, secs(2.0));
    let egress = &doc["daemons"][0];
    assert_eq!(egress["why_down"], "stopped by request", "{doc}");
    assert_eq!(egress["state"], "down");
}

#[test]
fn names_that_need_escaping_stay_valid_json_and_valid_labels() {
    let mut plan = seed_plan(ExitPolicy::KeepRunning);
    plan.daemons[0].name = "we\"b\\é".into();
    let sup = started(plan);
    assert_eq!(document(&sup, secs(1.0))["daemons"][0]["name"], "we\"b\\é");
    let text = sup.metrics(OutputCounts::default(), secs(1.0));
    assert!(
        text.contains("bundle_init_daemon_up{daemon=\"we\\\"b\\\\é\"} 1\n"),
        "{text}"
    );
}

#[test]
fn readiness_names_each_daemon_with_a_check_that_is_not_ready() {
    let (mut sup, mut out) = db_running(ExitPolicy::KeepRunning);
    assert_eq!(
        sup.readiness(),
        Err(vec!["db is not ready (state: running)".to_string()])
    );
    sup.ready(0, secs(0.2), &mut out);
    assert_eq!(sup.readiness(), Ok(()), "app has no check: not waited for");
    sup.exited(100, ExitStatus::Code(1), secs(1.0), &mut out);
    assert_eq!(
        sup.readiness(),
        Err(vec!["db is not ready (state: exited)".to_string()])
    );
}

#[test]
fn metrics_have_a_help_and_a_type_line_before_their_samples() {
    let mut sup = db_ready_app_running();
    let mut out = actions();
    sup.exited(101, ExitStatus::Signal(libc_sig::KILL), secs(1.0), &mut out);
    let outputs = OutputCounts {
        own_lines_dropped: 4,
        daemon_lines_dropped: 7,
    };
    let text = sup.metrics(outputs, secs(2.5));
    let sample = |line: &str| text.lines().any(|l| l == line);
    for line in [
        "bundle_init_daemon_up{daemon=\"db\"} 1",
        "bundle_init_daemon_up{daemon=\"app\"} 0",
        "bundle_init_daemon_ready{daemon=\"db\"} 1",
        "bundle_init_daemon_ready{daemon=\"app\"} 0",
        "bundle_init_daemon_restarts_total{daemon=\"db\"} 0",
        "bundle_init_daemon_last_exit_code{daemon=\"app\"} 137",
        "bundle_init_daemon_uptime_seconds{daemon=\"db\"} 2.400",
        "bundle_init_daemon_uptime_seconds{daemon=\"app\"} 0.000",
        "bundle_init_reloads_total 0",
        "bundle_init_log_lines_dropped_total{source=\"bundle-init\"} 4",
        "bundle_init_log_lines_dropped_total{source=\"daemons\"} 7",
        &format!(
            "bundle_init_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
    ] {
        assert!(sample(line), "no {line:?} in\n{text}");
    }
    assert!(
        !text.contains("bundle_init_daemon_last_exit_code{daemon=\"db\"}"),
        "db never exited: no sample\n{text}"
    );
    let mut declared = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            declared.push(rest.split(' ').next().unwrap().to_string());
        } else if !line.starts_with("# HELP ") {
            let name = line.split(['{', ' ']).next().unwrap();
            assert_eq!(declared.last().map(String::as_str), Some(name), "{line}");
        }
    }
    // Five per daemon, two for liveness (without samples here: nothing is checked), and
    // three for the bundle.
    assert_eq!(declared.len(), 10, "{text}");
}
