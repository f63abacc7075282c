//! What a reload of the bundle file changes, daemon by daemon: a pure function of the
//! running definitions and the new ones. The supervisor carries the result out.
//!
//! A daemon is known by its name. Its definition is compared key by key, through the same
//! printed form `--check` shows (so two spellings of one value are equal). Keys marked
//! `live` in `keys::DAEMON_KEYS` are bookkeeping and apply without a restart; a change to
//! any other key restarts the daemon. A renamed daemon is one removed and one added.

use crate::keys::DAEMON_KEYS;
use crate::plan::DaemonSpec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Change {
    /// Same definition: untouched.
    Unchanged,
    /// Only bookkeeping keys differ (named): the new values apply at once, no restart.
    Updated(Vec<&'static str>),
    /// Keys that define the process differ (named): restarted with the new definition.
    Changed(Vec<&'static str>),
    Added,
    Removed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DaemonChange {
    pub(crate) name: String,
    pub(crate) change: Change,
}

/// Every daemon of `new`, in its order, then every daemon only `old` has, in old order.
pub(crate) fn diff(old: &[DaemonSpec], new: &[DaemonSpec]) -> Vec<DaemonChange> {
    let mut changes: Vec<DaemonChange> = new
        .iter()
        .map(|spec| {
            let change = match old.iter().find(|o| o.name == spec.name) {
                Some(before) => compare(before, spec),
                None => Change::Added,
            };
            DaemonChange {
                name: spec.name.clone(),
                change,
            }
        })
        .collect();
    changes.extend(
        old.iter()
            .filter(|o| !new.iter().any(|n| n.name == o.name))
            .map(|o| DaemonChange {
                name: o.name.clone(),
                change: Change::Removed,
            }),
    );
    changes
}

/// How one daemon's definition changed.
fn compare(old: &DaemonSpec, new: &DaemonSpec) -> Change {
    let differing = DAEMON_KEYS.iter().filter(|key| {
        let (before, after) = ((key.print)(old), (key.print)(new));
        // A bookkeeping key that only appears or disappears with another key (backoff
        // settings under `on-exit = restart`) did not change itself.
        before != after && !(key.live && (before.is_empty() || after.is_empty()))
    });
    let (live, defining): (Vec<_>, Vec<_>) = differing.partition(|key| key.live);
    if !defining.is_empty() {
        Change::Changed(defining.iter().map(|k| k.name).collect())
    } else if !live.is_empty() {
        Change::Updated(live.iter().map(|k| k.name).collect())
    } else {
        Change::Unchanged
    }
}

/// `pipelock changed (run), metrics added, debug removed, web updated (grace), 2 unchanged`:
/// the reload's log line and its answer, before the time it took.
pub(crate) fn summary(changes: &[DaemonChange]) -> String {
    let mut parts = Vec::new();
    let mut unchanged = 0;
    for c in changes {
        let keys = |k: &[&str]| k.join(", ");
        match &c.change {
            Change::Unchanged => unchanged += 1,
            Change::Updated(k) => parts.push(format!("{} updated ({})", c.name, keys(k))),
            Change::Changed(k) => parts.push(format!("{} changed ({})", c.name, keys(k))),
            Change::Added => parts.push(format!("{} added", c.name)),
            Change::Removed => parts.push(format!("{} removed", c.name)),
        }
    }
    if unchanged > 0 || parts.is_empty() {
        parts.push(format!("{unchanged} unchanged"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Sig;
    use crate::sys::libc_sig;
    use std::time::Duration;

    fn spec(name: &str, run: &str) -> DaemonSpec {
        DaemonSpec::new(name, run.split(' ').map(Into::into).collect())
    }

    fn changes(old: &[DaemonSpec], new: &[DaemonSpec]) -> Vec<(String, Change)> {
        diff(old, new)
            .into_iter()
            .map(|c| (c.name, c.change))
            .collect()
    }

    #[test]
    fn the_same_definitions_in_another_order_change_nothing() {
        let old = [spec("a", "x"), spec("b", "y")];
        let new = [spec("b", "y"), spec("a", "x")];
        let found = changes(&old, &new);
        assert_eq!(
            found,
            vec![
                ("b".into(), Change::Unchanged),
                ("a".into(), Change::Unchanged)
            ]
        );
        assert_eq!(summary(&diff(&old, &new)), "2 unchanged");
    }

    #[test]
    fn a_key_that_starts_the_process_differently_is_a_change() {
        let old = spec("a", "x --port 1");
        let mut edits: Vec<(DaemonSpec, &str)> = Vec::new();
        let mut s = spec("a", "x --port 2");
        edits.push((s.clone(), "run"));
        s = old.clone();
        s.cwd = Some("/srv".into());
        edits.push((s, "cwd"));
        s = old.clone();
        s.env.files.push(crate::plan::EnvFile {
            path: "/run/a.env".into(),
            optional: false,
        });
        edits.push((s, "env-file"));
        s = old.clone();
        s.env.set.push(("A".into(), "1".into()));
        edits.push((s, "env"));
        s = old.clone();
        s.env.unset.push("B".into());
        edits.push((s, "unset"));
        s = old.clone();
        s.env.unset_prefixes.push("CRED_".into());
        edits.push((s, "unset-prefix"));
        s = old.clone();
        s.user = Some((1000, 1000));
        edits.push((s, "user"));
        s = old.clone();
        s.stop_signal = Sig(libc_sig::QUIT);
        edits.push((s, "stop-signal"));
        s = old.clone();
        s.prefix_output = !old.prefix_output;
        edits.push((s, "prefix-output"));
        s = old.clone();
        s.signal_group = true;
        edits.push((s, "signal-group"));
        s = old.clone();
        s.no_new_privs = true;
        edits.push((s, "no-new-privs"));
        s = old.clone();
        s.ready = Some(crate::plan::ReadyCheck::File("/ready".into()));
        edits.push((s, "ready"));
        s = old.clone();
        s.after = vec!["db".into()];
        edits.push((s, "after"));
        for (new, key) in edits {
            let found = changes(std::slice::from_ref(&old), &[new]);
            assert_eq!(
                found,
                vec![("a".into(), Change::Changed(vec![key]))],
                "{key}"
            );
        }
    }

    /// They define the process as `run` does: a change restarts the daemon.
    #[test]
    fn a_changed_process_setting_restarts_the_daemon() {
        let old = spec("a", "x");
        let mut edits: Vec<(DaemonSpec, &str)> = Vec::new();
        let mut s = old.clone();
        s.process.groups = vec![4];
        edits.push((s, "groups"));
        s = old.clone();
        s.process.umask = Some(0o027);
        edits.push((s, "umask"));
        s = old.clone();
        s.process.nice = Some(10);
        edits.push((s, "nice"));
        for resource in crate::plan::Resource::ALL {
            s = old.clone();
            s.process.limits[resource as usize] = Some(crate::plan::Rlimit { soft: 1, hard: 2 });
            edits.push((s, resource.key()));
        }
        s = old.clone();
        s.process.oom_score_adj = Some(-1000);
        edits.push((s, "oom-score-adj"));
        for (new, key) in edits {
            let found = changes(std::slice::from_ref(&old), &[new]);
            assert_eq!(
                found,
                vec![("a".into(), Change::Changed(vec![key]))],
                "{key}"
            );
        }
    }

    #[test]
    fn bookkeeping_keys_update_without_a_restart() {
        let mut old = spec("a", "x");
        old.after = vec!["db".into()];
        let mut new = old.clone();
        new.grace = Duration::from_secs(3);
        new.on_exit = crate::plan::ExitPolicy::Restart;
        new.ready_timeout = Duration::from_secs(5);
        let found = changes(std::slice::from_ref(&old), std::slice::from_ref(&new));
        assert_eq!(
            found,
            vec![(
                "a".into(),
                Change::Updated(vec!["grace", "on-exit", "ready-timeout"])
            )]
        );
        // Backoff settings count once they matter (under on-exit = restart).
        let mut faster = new.clone();
        faster.backoff.initial = Duration::from_millis(10);
        assert_eq!(
            changes(&[new], &[faster]),
            vec![("a".into(), Change::Updated(vec!["restart-delay"]))]
        );
        let mut bigger = spec("a", "x");
        bigger.log_buffer = 64 * 1024;
        assert_eq!(
            changes(&[spec("a", "x")], &[bigger]),
            vec![("a".into(), Change::Updated(vec!["log-buffer"]))],
            "read at each read of its output: no restart"
        );
        // A defining change among bookkeeping ones: a change, named by its defining keys.
        let mut both = old.clone();
        both.grace = Duration::from_secs(1);
        both.argv = vec!["y".into()];
        assert_eq!(
            changes(&[old], &[both]),
            vec![("a".into(), Change::Changed(vec!["run"]))]
        );
    }

    #[test]
    fn added_removed_and_renamed_daemons() {
        let old = [spec("a", "x"), spec("debug", "d"), spec("c", "z")];
        let new = [spec("a", "x"), spec("metrics", "m"), spec("c2", "z")];
        assert_eq!(
            changes(&old, &new),
            vec![
                ("a".into(), Change::Unchanged),
                ("metrics".into(), Change::Added),
                ("c2".into(), Change::Added),
                ("debug".into(), Change::Removed),
                ("c".into(), Change::Removed),
            ]
        );
        assert_eq!(
            summary(&diff(&old, &new)),
            "metrics added, c2 added, debug removed, c removed, 1 unchanged"
        );
    }

    #[test]
    fn a_changed_after_chain_changes_only_the_daemon_whose_after_changed() {
        let mut web = spec("web", "w");
        web.after = vec!["api".into()];
        let old = [spec("db", "d"), spec("api", "a"), web.clone()];
        let mut new_web = web;
        new_web.after = vec!["db".into()];
        let new = [spec("db", "d"), spec("api", "a"), new_web];
        assert_eq!(
            changes(&old, &new),
            vec![
                ("db".into(), Change::Unchanged),
                ("api".into(), Change::Unchanged),
                ("web".into(), Change::Changed(vec!["after"])),
            ]
        );
    }

    #[test]
    fn the_summary_names_each_kind_of_change() {
        let old = [
            spec("pipelock", "p"),
            spec("web", "w"),
            spec("debug", "d"),
            spec("e", "e"),
        ];
        let mut web = spec("web", "w");
        web.grace = Duration::from_secs(2);
        let new = [
            spec("pipelock", "p --new"),
            web,
            spec("metrics", "m"),
            spec("e", "e"),
        ];
        assert_eq!(
            summary(&diff(&old, &new)),
            "pipelock changed (run), web updated (grace), metrics added, debug removed, 1 unchanged"
        );
        assert_eq!(summary(&[]), "0 unchanged");
    }
}
