//! The bundle file's vocabulary, each word defined once: every daemon key (its name, how a
//! value updates a daemon, how `--check` prints it) and every route action (its name,
//! whether it names daemons, the route it makes, how it prints). The parser in `config`,
//! the reload diff and the `--check` printer below all read these tables, so a new key is
//! one entry here, its default in `plan::DaemonSpec::new`, and its test.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::plan::{
    DaemonSpec, EnvFile, ExitPolicy, GiveUp, OnFailure, Plan, ReadyCheck, Resource, Rlimit, Route,
    Routes,
};
use crate::signal::parse_signal;
use crate::sys::libc_sig;
use crate::time::{human, parse_duration};
use crate::values::{
    ValueError, check_env_name, parse_bool, parse_env_file, parse_groups, parse_instances,
    parse_limit, parse_live, parse_live_failures, parse_nice, parse_oom_score_adj, parse_ready,
    parse_umask, parse_user, split_words,
};

/// One key of a `[daemon]` section.
pub(crate) struct DaemonKey {
    pub(crate) name: &'static str,
    /// May appear more than once in a section: each line adds to the list.
    pub(crate) repeatable: bool,
    /// A reload applies a new value without restarting the daemon: the key is bookkeeping
    /// (what to do after an exit, how long to wait), not how the process is started.
    pub(crate) live: bool,
    /// `${NAME}` references in the value are expanded before it is parsed (`expand`), and
    /// `--check` prints it escaped so that it reads back the same.
    pub(crate) expand: bool,
    /// Applies one value; the error becomes `PATH:LINE: message`.
    pub(crate) parse: fn(&mut DaemonSpec, &str) -> Result<(), ValueError>,
    /// The values `--check` prints, one `key = value` line each (none: no line).
    pub(crate) print: fn(&DaemonSpec) -> Vec<String>,
}

fn one(value: String) -> Vec<String> {
    vec![value]
}

fn yes_no(value: bool) -> Vec<String> {
    one(if value { "yes" } else { "no" }.to_string())
}

/// A duration key's value (`time::parse_duration`'s error, as one a key gives).
fn duration(text: &str) -> Result<Duration, ValueError> {
    Ok(parse_duration(text)?)
}

/// A duration that must not be zero: a check every 0 s would be a busy loop.
fn at_least_a_millisecond(text: &str) -> Result<Duration, ValueError> {
    let value = duration(text)?;
    if value < Duration::from_millis(1) {
        return Err(ValueError::BelowAMillisecond(text.to_string()));
    }
    Ok(value)
}

/// Liveness settings only matter, and only print, when something checks the daemon.
fn when_live(spec: &DaemonSpec, value: Duration) -> Vec<String> {
    if spec.live.is_checked() {
        one(human(value))
    } else {
        vec![]
    }
}

/// Backoff settings only matter, and only print, under `on-exit = restart`.
fn when_restarting(spec: &DaemonSpec, value: Duration) -> Vec<String> {
    if spec.on_exit == ExitPolicy::Restart {
        one(human(value))
    } else {
        vec![]
    }
}

pub(crate) const DAEMON_KEYS: &[DaemonKey] = &[
    DaemonKey {
        name: "type",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| {
            d.oneshot = match v {
                "daemon" => false,
                "oneshot" => true,
                other => return Err(ValueError::Type(other.to_string())),
            };
            Ok(())
        },
        // Printed only for a oneshot: a daemon is what a section is by default.
        print: |d| {
            if d.oneshot {
                one("oneshot".to_string())
            } else {
                vec![]
            }
        },
    },
    DaemonKey {
        name: "run",
        repeatable: false,
        live: false,
        expand: true,
        parse: |d, v| {
            let words = split_words(v)?;
            if words.is_empty() {
                return Err(ValueError::NoProgram);
            }
            d.argv = words.into_iter().map(OsString::from).collect();
            Ok(())
        },
        print: |d| {
            let words: Vec<String> = d
                .argv
                .iter()
                .map(|a| quote_word(&a.to_string_lossy()))
                .collect();
            one(words.join(" "))
        },
    },
    DaemonKey {
        name: "cwd",
        repeatable: false,
        live: false,
        expand: true,
        parse: |d, v| {
            if !v.starts_with('/') {
                return Err(ValueError::RelativeCwd(v.to_string()));
            }
            d.cwd = Some(PathBuf::from(v));
            Ok(())
        },
        print: |d| d.cwd.iter().map(|c| c.display().to_string()).collect(),
    },
    DaemonKey {
        name: "env-file",
        repeatable: true,
        live: false,
        expand: true,
        parse: |d, v| parse_env_file(v).map(|file| d.env.files.push(file)),
        // The path only: the values are read at each start and never shown.
        print: |d| {
            let path = |f: &EnvFile| match f.optional {
                true => format!("-{}", f.path.display()),
                false => f.path.display().to_string(),
            };
            d.env.files.iter().map(path).collect()
        },
    },
    DaemonKey {
        name: "env",
        repeatable: true,
        live: false,
        expand: true,
        parse: |d, v| {
            let (name, value) = v
                .split_once('=')
                .ok_or_else(|| ValueError::EnvPair(v.to_string()))?;
            let name = name.trim();
            check_env_name(name)?;
            d.env.set.push((name.into(), value.trim().into()));
            Ok(())
        },
        print: |d| {
            let pair = |(k, v): &(OsString, OsString)| {
                format!("{}={}", k.to_string_lossy(), v.to_string_lossy())
            };
            d.env.set.iter().map(pair).collect()
        },
    },
    DaemonKey {
        name: "unset",
        repeatable: true,
        live: false,
        expand: false,
        parse: |d, v| add_names(&mut d.env.unset, "unset", v),
        print: |d| names_line(&d.env.unset),
    },
    DaemonKey {
        name: "unset-prefix",
        repeatable: true,
        live: false,
        expand: false,
        parse: |d, v| add_names(&mut d.env.unset_prefixes, "unset-prefix", v),
        print: |d| names_line(&d.env.unset_prefixes),
    },
    DaemonKey {
        name: "user",
        repeatable: false,
        live: false,
        expand: true,
        parse: |d, v| parse_user(v).map(|value| d.user = Some(value)),
        print: |d| d.user.iter().map(|(u, g)| format!("{u}:{g}")).collect(),
    },
    DaemonKey {
        name: "groups",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| parse_groups(v).map(|groups| d.process.groups = groups),
        print: |d| {
            let groups: Vec<String> = d.process.groups.iter().map(u32::to_string).collect();
            match groups.is_empty() {
                true => vec![],
                false => one(groups.join(",")),
            }
        },
    },
    DaemonKey {
        name: "umask",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| parse_umask(v).map(|mask| d.process.umask = Some(mask)),
        print: |d| d.process.umask.iter().map(|m| format!("{m:04o}")).collect(),
    },
    DaemonKey {
        name: "nice",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| parse_nice(v).map(|nice| d.process.nice = Some(nice)),
        print: |d| d.process.nice.iter().map(i32::to_string).collect(),
    },
    DaemonKey {
        name: "limit-nofile",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| set_limit(d, Resource::Nofile, v),
        print: |d| print_limit(d, Resource::Nofile),
    },
    DaemonKey {
        name: "limit-nproc",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| set_limit(d, Resource::Nproc, v),
        print: |d| print_limit(d, Resource::Nproc),
    },
    DaemonKey {
        name: "limit-core",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| set_limit(d, Resource::Core, v),
        print: |d| print_limit(d, Resource::Core),
    },
    DaemonKey {
        name: "limit-memlock",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| set_limit(d, Resource::Memlock, v),
        print: |d| print_limit(d, Resource::Memlock),
    },
    DaemonKey {
        name: "limit-stack",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| set_limit(d, Resource::Stack, v),
        print: |d| print_limit(d, Resource::Stack),
    },
    DaemonKey {
        name: "limit-as",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| set_limit(d, Resource::As, v),
        print: |d| print_limit(d, Resource::As),
    },
    DaemonKey {
        name: "oom-score-adj",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| parse_oom_score_adj(v).map(|adj| d.process.oom_score_adj = Some(adj)),
        print: |d| d.process.oom_score_adj.iter().map(i32::to_string).collect(),
    },
    DaemonKey {
        name: "instances",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| parse_instances(v).map(|n| d.instances = Some(n)),
        // Each instance prints as a section of its own, which reads back as it is.
        print: |_| vec![],
    },
    DaemonKey {
        name: "stop-signal",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| {
            let sig = parse_signal(v)?;
            if sig.0 == libc_sig::STOP {
                return Err(ValueError::StopSignalStop);
            }
            d.stop_signal = sig;
            Ok(())
        },
        print: |d| one(d.stop_signal.to_string()),
    },
    DaemonKey {
        name: "grace",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| duration(v).map(|value| d.grace = value),
        print: |d| one(human(d.grace)),
    },
    DaemonKey {
        name: "on-exit",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| {
            d.on_exit = match v {
                "keep-running" => ExitPolicy::KeepRunning,
                "restart" => ExitPolicy::Restart,
                "stop-bundle" => ExitPolicy::StopBundle,
                other => return Err(ValueError::OnExit(other.to_string())),
            };
            Ok(())
        },
        print: |d| one(d.on_exit.name().to_string()),
    },
    DaemonKey {
        name: "restart-delay",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| duration(v).map(|value| d.backoff.initial = value),
        print: |d| when_restarting(d, d.backoff.initial),
    },
    DaemonKey {
        name: "restart-delay-max",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| duration(v).map(|value| d.backoff.max = value),
        print: |d| when_restarting(d, d.backoff.max),
    },
    DaemonKey {
        name: "stable-after",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| duration(v).map(|value| d.backoff.stable_after = value),
        print: |d| when_restarting(d, d.backoff.stable_after),
    },
    DaemonKey {
        name: "max-restarts",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| {
            let count = v
                .parse::<u32>()
                .ok()
                .filter(|&n| n <= 1_000_000)
                .ok_or_else(|| ValueError::Count(v.to_string()))?;
            d.max_restarts = Some(count);
            Ok(())
        },
        print: |d| d.max_restarts.iter().map(u32::to_string).collect(),
    },
    DaemonKey {
        name: "on-give-up",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| {
            d.on_give_up = match v {
                "stop-bundle" => GiveUp::StopBundle,
                "stay-down" => GiveUp::StayDown,
                other => return Err(ValueError::OnGiveUp(other.to_string())),
            };
            Ok(())
        },
        // Only matters, and only prints, with max-restarts.
        print: |d| {
            d.max_restarts
                .map(|_| d.on_give_up.name().to_string())
                .into_iter()
                .collect()
        },
    },
    DaemonKey {
        name: "timeout",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| duration(v).map(|value| d.timeout = Some(value)),
        print: |d| d.timeout.iter().map(|t| human(*t)).collect(),
    },
    DaemonKey {
        name: "on-failure",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| {
            d.on_failure = Some(match v {
                "stop-bundle" => OnFailure::StopBundle,
                "keep-running" => OnFailure::KeepRunning,
                other => return Err(ValueError::OnFailure(other.to_string())),
            });
            Ok(())
        },
        print: |d| d.on_failure.iter().map(|f| f.name().to_string()).collect(),
    },
    DaemonKey {
        name: "autostart",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| parse_bool(v).map(|value| d.autostart = value),
        // Printed only when it says something: most daemons start with the bundle.
        print: |d| if d.autostart { vec![] } else { yes_no(false) },
    },
    DaemonKey {
        name: "ready",
        repeatable: false,
        live: false,
        expand: true,
        parse: |d, v| parse_ready(v).map(|value| d.ready = Some(value)),
        print: |d| d.ready.iter().map(describe_check).collect(),
    },
    DaemonKey {
        name: "live",
        repeatable: false,
        // Read at each check: a reload changes the next one without a restart.
        live: true,
        expand: true,
        parse: |d, v| parse_live(v).map(|value| d.live.check = Some(value)),
        print: |d| d.live.check.iter().map(ToString::to_string).collect(),
    },
    DaemonKey {
        name: "live-every",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| at_least_a_millisecond(v).map(|value| d.live.every = value),
        print: |d| when_live(d, d.live.every),
    },
    DaemonKey {
        name: "live-timeout",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| at_least_a_millisecond(v).map(|value| d.live.timeout = value),
        print: |d| when_live(d, d.live.timeout),
    },
    DaemonKey {
        name: "live-failures",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| parse_live_failures(v).map(|value| d.live.failures = value),
        print: |d| {
            if d.live.is_checked() {
                one(d.live.failures.to_string())
            } else {
                vec![]
            }
        },
    },
    DaemonKey {
        name: "watchdog",
        repeatable: false,
        // WATCHDOG_USEC is in the environment the process starts with.
        live: false,
        expand: false,
        parse: |d, v| at_least_a_millisecond(v).map(|value| d.live.watchdog = Some(value)),
        print: |d| d.live.watchdog.iter().map(|w| human(*w)).collect(),
    },
    DaemonKey {
        name: "after",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| {
            let names: Vec<String> = v.split_whitespace().map(str::to_string).collect();
            if names.is_empty() {
                return Err(ValueError::NoNames("after"));
            }
            d.after = names;
            Ok(())
        },
        print: |d| names_line(&d.after),
    },
    DaemonKey {
        name: "ready-timeout",
        repeatable: false,
        live: true,
        expand: false,
        parse: |d, v| duration(v).map(|value| d.ready_timeout = value),
        // Only waiting for `after` has a timeout.
        print: |d| match d.after.is_empty() {
            true => vec![],
            false => one(human(d.ready_timeout)),
        },
    },
    DaemonKey {
        name: "prefix-output",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| parse_bool(v).map(|value| d.prefix_output = value),
        print: |d| yes_no(d.prefix_output),
    },
    DaemonKey {
        name: "signal-group",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| parse_bool(v).map(|value| d.signal_group = value),
        print: |d| yes_no(d.signal_group),
    },
    DaemonKey {
        name: "no-new-privs",
        repeatable: false,
        live: false,
        expand: false,
        parse: |d, v| parse_bool(v).map(|value| d.no_new_privs = value),
        print: |d| yes_no(d.no_new_privs),
    },
];

fn set_limit(d: &mut DaemonSpec, resource: Resource, text: &str) -> Result<(), ValueError> {
    d.process.limits[resource as usize] = Some(parse_limit(resource.key(), text)?);
    Ok(())
}

/// `SOFT:HARD`, or one value when both are the same, as the parser reads it back.
fn print_limit(d: &DaemonSpec, resource: Resource) -> Vec<String> {
    let value = |n: u64| match n {
        Rlimit::UNLIMITED => "unlimited".to_string(),
        n => n.to_string(),
    };
    let Some(limit) = d.process.limit(resource) else {
        return vec![];
    };
    match limit.soft == limit.hard {
        true => one(value(limit.soft)),
        false => one(format!("{}:{}", value(limit.soft), value(limit.hard))),
    }
}

/// The definition of daemon key `name`.
pub(crate) fn daemon_key(name: &str) -> Option<&'static DaemonKey> {
    DAEMON_KEYS.iter().find(|k| k.name == name)
}

/// Adds the names of an `unset` or `unset-prefix` line.
fn add_names(list: &mut Vec<OsString>, key: &'static str, value: &str) -> Result<(), ValueError> {
    let names: Vec<&str> = value.split_whitespace().collect();
    if names.is_empty() {
        return Err(ValueError::NoNames(key));
    }
    for name in names {
        check_env_name(name)?;
        list.push(name.into());
    }
    Ok(())
}

/// All the names on one line, or no line when there are none.
fn names_line<T: AsRef<std::ffi::OsStr>>(names: &[T]) -> Vec<String> {
    if names.is_empty() {
        return vec![];
    }
    let words: Vec<String> = names
        .iter()
        .map(|n| n.as_ref().to_string_lossy().into_owned())
        .collect();
    one(words.join(" "))
}

fn describe_check(check: &ReadyCheck) -> String {
    match check {
        ReadyCheck::Tcp(addr) => format!("tcp:{addr}"),
        ReadyCheck::Unix(path) => format!("unix:{}", path.display()),
        ReadyCheck::File(path) => format!("file:{}", path.display()),
        ReadyCheck::Notify(fd) => format!("notify:{fd}"),
        ReadyCheck::SdNotify => "sd-notify".to_string(),
    }
}

/// One action a signal route can take: `on SIGNAL = ACTION [NAME...]`.
pub(crate) struct RouteAction {
    pub(crate) name: &'static str,
    /// Whether the action names daemons (`restart a b`) or takes none (`shutdown`).
    pub(crate) takes_names: bool,
    /// The route, given the named daemons' indices (empty when it takes none).
    pub(crate) route: fn(Vec<usize>) -> Route,
    /// The named daemons if `route` is this action's, for printing it back.
    pub(crate) names_in: fn(&Route) -> Option<&[usize]>,
}

impl std::fmt::Debug for RouteAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

pub(crate) const ROUTE_ACTIONS: &[RouteAction] = &[
    RouteAction {
        name: "restart",
        takes_names: true,
        route: Route::Restart,
        names_in: |r| match r {
            Route::Restart(list) => Some(list),
            _ => None,
        },
    },
    RouteAction {
        name: "forward",
        takes_names: true,
        route: Route::Forward,
        names_in: |r| match r {
            Route::Forward(list) | Route::ForwardAs(list, _) => Some(list),
            _ => None,
        },
    },
    RouteAction {
        name: "forward-all",
        takes_names: false,
        route: |_| Route::ForwardAll,
        names_in: |r| matches!(r, Route::ForwardAll).then_some(&[]),
    },
    RouteAction {
        name: "shutdown",
        takes_names: false,
        route: |_| Route::Shutdown,
        names_in: |r| matches!(r, Route::Shutdown).then_some(&[]),
    },
    RouteAction {
        name: "ignore",
        takes_names: false,
        route: |_| Route::Ignore,
        names_in: |r| matches!(r, Route::Ignore).then_some(&[]),
    },
    RouteAction {
        name: "status",
        takes_names: false,
        route: |_| Route::Status,
        names_in: |r| matches!(r, Route::Status).then_some(&[]),
    },
    RouteAction {
        name: "reload",
        takes_names: false,
        route: |_| Route::Reload,
        names_in: |r| matches!(r, Route::Reload).then_some(&[]),
    },
];

/// The definition of route action `name`.
pub(crate) fn route_action(name: &str) -> Option<&'static RouteAction> {
    ROUTE_ACTIONS.iter().find(|a| a.name == name)
}

/// "restart, forward, forward-all, shutdown, ignore, status or reload", for error messages.
pub(crate) fn route_action_names() -> String {
    let names: Vec<&str> = ROUTE_ACTIONS.iter().map(|a| a.name).collect();
    let (last, rest) = names.split_last().unwrap_or((&"", &[]));
    format!("{} or {last}", rest.join(", "))
}

/// The keys before the first `[section]`, besides the `on SIGNAL` routes. The parser takes
/// only these as bundle keys (a key missing here is unknown to it), and docs/bundle-file.md's
/// table of bundle keys is checked against this list.
pub(crate) const BUNDLE_KEYS: &[&str] = &["shutdown-grace", "stop-order", "include"];

/// What `--check` prints: the plan after selection, in a form the parser reads back
/// (besides the header and the trailing note on other signals).
pub fn describe_plan(path: &str, plan: &Plan) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{path}: OK, {} daemon(s) in start order",
        plan.daemons.len()
    );
    let _ = writeln!(text, "shutdown-grace = {}", human(plan.shutdown_grace));
    let _ = writeln!(text, "stop-order = {}", plan.stop_order.name());
    for (sig, route) in plan.routes.changed_from(&Routes::forward_everything()) {
        let _ = writeln!(text, "on {sig} = {}", describe_route(plan, route));
    }
    let _ = writeln!(text, "any other signal = forward-all");
    for daemon in &plan.daemons {
        let _ = writeln!(text, "[{}]", daemon.name);
        for key in DAEMON_KEYS {
            for value in (key.print)(daemon) {
                let value = match key.expand {
                    true => crate::expand::escape(&value),
                    false => value,
                };
                let _ = writeln!(text, "{} = {value}", key.name);
            }
        }
    }
    text
}

fn describe_route(plan: &Plan, route: &Route) -> String {
    let Some((action, indices)) = ROUTE_ACTIONS
        .iter()
        .find_map(|a| (a.names_in)(route).map(|names| (a, names)))
    else {
        return String::new();
    };
    if !action.takes_names {
        return action.name.to_string();
    }
    let names: Vec<&str> = indices
        .iter()
        .map(|&i| plan.daemons[i].name.as_str())
        .collect();
    let as_signal = match route {
        Route::ForwardAs(_, to) => format!(" as {to}"),
        _ => String::new(),
    };
    if names.is_empty() {
        format!("{} (no selected daemon){as_signal}", action.name)
    } else {
        format!("{} {}{as_signal}", action.name, names.join(" "))
    }
}

/// A word as the bundle file's `run` line would take it back: bare when it can be,
/// double-quoted (escaping `"` and `\`) otherwise.
pub(crate) fn quote_word(word: &str) -> String {
    let plain = !word.is_empty()
        && !word
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '"' | '\'' | '\\'));
    if plain {
        return word.to_string();
    }
    let mut quoted = String::from("\"");
    for c in word.chars() {
        if matches!(c, '"' | '\\') {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod documented;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    #[test]
    fn printed_words_split_back_into_the_same_words() {
        let words = [
            "plain",
            "two words",
            "say \"hi\"",
            "back\\slash",
            "it's",
            "",
        ];
        let line: Vec<String> = words.iter().map(|w| quote_word(w)).collect();
        assert_eq!(split_words(&line.join(" ")).unwrap(), words);
    }

    #[test]
    fn check_prints_a_plan_that_names_every_route_and_daemon() {
        let bundle = config::parse(
            "b",
            b"on USR1 = restart a\n[a]\nrun = /bin/a \"x y\"\nuser = 1:2\nready = tcp:localhost:80\n",
        )
        .unwrap();
        let plan = config::select(&bundle, None).unwrap();
        let text = describe_plan("b", &plan);
        assert!(
            text.contains("ready = tcp:localhost:80\n"),
            "as written: {text}"
        );
        assert!(text.contains("on SIGUSR1 = restart a"), "{text}");
        assert!(text.contains("on SIGTERM = shutdown"), "{text}");
        assert!(text.contains("run = /bin/a \"x y\""), "{text}");
        assert!(text.contains("user = 1:2"), "{text}");
    }

    /// Every key prints what it parsed: the printed plan, read back, is the same plan.
    #[test]
    fn a_printed_plan_parses_back_to_the_same_daemons() {
        let source = "on SIGHUP = forward b\non SIGUSR1 = restart a b\non SIGUSR2 = ignore\n\
            on SIGWINCH = forward a b as SIGQUIT\n\
            [a]\nrun = /bin/a \"x y\"\ncwd = /srv\nenv-file = /run/a.env\nenv-file = -/run/b.env\n\
            env = MODE=strict\nenv = X=1\n\
            unset = DEBUG NOISY\nunset-prefix = CRED_\nuser = 1:2\ngroups = 4,27\numask = 027\n\
            nice = -5\nlimit-nofile = 1024:4096\nlimit-nproc = 100\nlimit-core = unlimited\n\
            limit-memlock = 0:unlimited\nlimit-stack = 8388608\nlimit-as = unlimited:unlimited\n\
            oom-score-adj = -1000\nstop-signal = INT\n\
            grace = 1.5s\non-exit = restart\nrestart-delay = 10ms\nrestart-delay-max = 2s\n\
            stable-after = 1m\nready = tcp:127.0.0.1:80\nprefix-output = no\n\
            signal-group = yes\nno-new-privs = yes\n\
            [b]\nrun = b\nafter = a\nready-timeout = 5s\nready = notify:5\n";
        let plan = config::select(&config::parse("b", source.as_bytes()).unwrap(), None).unwrap();
        let printed = describe_plan("b", &plan);
        let body: String = printed
            .lines()
            .filter(|l| !l.starts_with("b: OK") && !l.starts_with("any other signal"))
            .map(|l| format!("{l}\n"))
            .collect();
        let again = config::select(&config::parse("b", body.as_bytes()).unwrap(), None).unwrap();
        assert_eq!(again.daemons, plan.daemons, "{printed}");
        assert_eq!(again.routes, plan.routes, "{printed}");
    }

    /// The defaults docs/bundle-file.md's table of daemon keys gives are what `DaemonSpec::new` sets,
    /// as `--check` prints them (backoff keys under `restart`, the timeout with `after`).
    #[test]
    fn check_prints_the_documented_defaults() {
        let daemon = |name: &str| DaemonSpec::new(name, vec!["x".into()]);
        let mut restarting = daemon("r");
        restarting.on_exit = ExitPolicy::Restart;
        restarting.after = vec!["d".into()];
        let plan = Plan {
            daemons: vec![daemon("d"), restarting],
            routes: Routes::bundle_defaults(),
            shutdown_grace: Duration::from_secs(8),
            stop_leftovers: true,
            success_codes: vec![],
            single_child: false,
            stop_order: crate::plan::StopOrder::Dependencies,
        };
        let text = describe_plan("b", &plan);
        let daemons = &text[text.find("[d]").unwrap()..];
        assert_eq!(
            daemons,
            "[d]\nrun = x\nstop-signal = SIGTERM\ngrace = 8s\non-exit = keep-running\n\
             prefix-output = yes\nsignal-group = no\nno-new-privs = no\n\
             [r]\nrun = x\nstop-signal = SIGTERM\ngrace = 8s\non-exit = restart\n\
             restart-delay = 1s\nrestart-delay-max = 30s\nstable-after = 10s\nafter = d\n\
             ready-timeout = 30s\nprefix-output = yes\nsignal-group = no\nno-new-privs = no\n"
        );
    }

    #[test]
    fn every_key_and_action_is_defined_once() {
        for (i, key) in DAEMON_KEYS.iter().enumerate() {
            assert!(
                !DAEMON_KEYS[..i].iter().any(|k| k.name == key.name),
                "{}",
                key.name
            );
        }
        for (i, action) in ROUTE_ACTIONS.iter().enumerate() {
            assert!(!ROUTE_ACTIONS[..i].iter().any(|a| a.name == action.name));
        }
        assert_eq!(
            route_action_names(),
            "restart, forward, forward-all, shutdown, ignore, status or reload"
        );
    }
}
