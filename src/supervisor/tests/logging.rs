//! logging

use super::*;

#[test]
fn verbosity_levels_show_what_they_promise() {
    let shown = |verbosity: u8| -> Vec<Level> {
        let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
        let mut out = Effects::new(verbosity, false, false);
        sup.driver_failed("poll", "x", &mut out); // Error
        sup.dropped(1, &mut out); // Notice
        sup.signal(HUP, secs(1.0), &mut out); // Info: forwarded
        sup.signal_failed(1, HUP, "x", &mut out); // Debug
        let mut levels: Vec<Level> = out
            .iter()
            .filter_map(|a| match a {
                Action::Log(level, _) | Action::LogEvent(level, ..) => Some(*level),
                _ => None,
            })
            .collect();
        levels.dedup();
        levels
    };
    use Level::*;
    assert_eq!(shown(0), [Error]);
    assert_eq!(shown(1), [Error, Notice]);
    assert_eq!(shown(2), [Error, Notice, Info]);
    assert_eq!(shown(3), [Error, Notice, Info, Debug]);
}

#[test]
fn the_drivers_failures_are_logged_at_their_levels() {
    let mut sup = started(seed_plan(ExitPolicy::KeepRunning));
    let mut out = actions();
    sup.signal_failed(-7, TERM, "No such process", &mut out);
    assert_eq!(
        out.pop(),
        Some(Action::Log(
            Level::Debug,
            "sending SIGTERM to -7 failed: No such process".into()
        ))
    );
    sup.dropped(0, &mut out);
    assert!(out.is_empty(), "nothing dropped, nothing said");
    sup.dropped(3, &mut out);
    assert_eq!(logs(&out), "3 of bundle-init's own log lines were dropped");
    out.clear();
    sup.driver_failed("poll", "Bad address", &mut out);
    assert_eq!(
        out.pop(),
        Some(Action::Log(Level::Error, "poll failed: Bad address".into()))
    );
}
