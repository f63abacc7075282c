//! Starting one daemon: its own process group, the signal state bundle-init inherited (not
//! the all-blocked mask it runs with), the environment and user its spec gives, and only
//! the descriptors it is meant to have.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::plan::{DaemonSpec, EnvPlan};
use crate::supervisor::SpawnFailure;
use crate::sys::{self, SigSet, libc_sig};

/// What every child gets back from bundle-init's own start.
#[derive(Clone, Copy)]
pub struct ChildSetup {
    pub inherited_mask: SigSet,
    /// std resets SIGPIPE to default in children; give back an inherited SIG_IGN.
    pub sigpipe_ignored: bool,
    /// Make the child's process group the terminal's foreground group.
    pub give_terminal: bool,
}

/// Where a child's stdout and stderr go: inherited, or the write end of a pipe.
pub struct ChildOutput {
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// Spawns `spec` and returns its pid.
pub fn spawn(
    spec: &DaemonSpec,
    setup: ChildSetup,
    output: ChildOutput,
) -> Result<i32, SpawnFailure> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(SpawnFailure {
            transient: false,
            code: 127,
            message: "empty command".to_string(),
        });
    };
    let mut command = Command::new(program);
    command.args(args).process_group(0);
    if let Some(env) = child_environment(&spec.env) {
        command.env_clear().envs(env);
    }
    if let Some(dir) = &spec.cwd {
        command.current_dir(dir);
    }
    if let Some((uid, gid)) = spec.user {
        // std clears supplementary groups when root drops to another uid.
        command.uid(uid).gid(gid);
    }
    if let Some(fd) = output.stdout {
        command.stdout(Stdio::from(fd));
    }
    if let Some(fd) = output.stderr {
        command.stderr(Stdio::from(fd));
    }
    let no_new_privs = spec.no_new_privs;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
    // system calls; it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if setup.give_terminal {
                // Still fully blocked here, so SIGTTOU cannot stop us for asking.
                let _ = rustix::termios::tcsetpgrp(
                    crate::output::borrow_stdio(0),
                    rustix::process::getpid(),
                );
            }
            if no_new_privs {
                rustix::thread::set_no_new_privs(true)?;
            }
            if setup.sigpipe_ignored {
                sys::ignore_signal(libc_sig::PIPE)?;
            }
            sys::set_signal_mask(&setup.inherited_mask)
        });
    }
    match command.spawn() {
        Ok(child) => Ok(child.id() as i32),
        Err(error) => Err(classify(program, &spec.name, &error)),
    }
}

/// Sorts a spawn error: fork failures are transient; exec failures count as exit code 127
/// (not found) or 126 (found but not runnable), as shells report them.
fn classify(program: &OsString, name: &str, error: &io::Error) -> SpawnFailure {
    let errno = error.raw_os_error().unwrap_or(0);
    let (transient, code) = match errno {
        EAGAIN | ENOMEM => (true, 1),
        ENOENT | ENOTDIR => (false, 127),
        _ => (false, 126),
    };
    let reason = io::Error::from_raw_os_error(errno).kind();
    let text = match (errno, reason) {
        (EAGAIN, _) => "fork failed: resource temporarily unavailable (process limit?)".to_string(),
        (0, _) => error.to_string(),
        _ => strip_os_error(error),
    };
    let program = program.to_string_lossy();
    let message = if program == name {
        text
    } else {
        format!("{program}: {text}")
    };
    SpawnFailure {
        transient,
        code,
        message,
    }
}

/// `No such file or directory (os error 2)` -> `No such file or directory`.
fn strip_os_error(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

const ENOENT: i32 = 2;
const EAGAIN: i32 = 11;
const ENOMEM: i32 = 12;
const ENOTDIR: i32 = 20;

/// The environment for a daemon whose spec changes it, or None to inherit unchanged.
pub fn child_environment(plan: &EnvPlan) -> Option<Vec<(OsString, OsString)>> {
    if plan.set.is_empty() && plan.unset.is_empty() && plan.unset_prefixes.is_empty() {
        return None;
    }
    Some(apply_env_plan(std::env::vars_os(), plan))
}

/// Pure part of `child_environment`: removes by name and by prefix, then sets.
pub fn apply_env_plan(
    base: impl Iterator<Item = (OsString, OsString)>,
    plan: &EnvPlan,
) -> Vec<(OsString, OsString)> {
    use std::os::unix::ffi::OsStrExt;
    let removed = |name: &OsString| {
        plan.unset.contains(name)
            || plan
                .unset_prefixes
                .iter()
                .any(|p| name.as_bytes().starts_with(p.as_bytes()))
            || plan.set.iter().any(|(n, _)| n == name)
    };
    let mut env: Vec<(OsString, OsString)> = base.filter(|(name, _)| !removed(name)).collect();
    env.extend(plan.set.iter().cloned());
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        list.iter()
            .map(|(a, b)| (OsString::from(a), OsString::from(b)))
            .collect()
    }

    #[test]
    fn env_plan_unsets_by_name_and_prefix_then_sets() {
        let base = pairs(&[
            ("PATH", "/bin"),
            ("CRED_TOKEN", "s3cret"),
            ("CRED_KEY", "k"),
            ("DEBUG", "1"),
            ("HOME", "/"),
        ]);
        let plan = EnvPlan {
            set: pairs(&[("MODE", "strict"), ("HOME", "/home/d")]),
            unset: vec!["DEBUG".into()],
            unset_prefixes: vec!["CRED_".into()],
        };
        let env = apply_env_plan(base.into_iter(), &plan);
        assert_eq!(
            env,
            pairs(&[("PATH", "/bin"), ("MODE", "strict"), ("HOME", "/home/d")])
        );
    }

    #[test]
    fn an_empty_plan_inherits() {
        assert_eq!(child_environment(&EnvPlan::default()), None);
    }

    #[test]
    fn exec_errors_map_to_shell_codes() {
        let p = OsString::from("/nope");
        let not_found = classify(&p, "d", &io::Error::from_raw_os_error(ENOENT));
        assert_eq!((not_found.transient, not_found.code), (false, 127));
        assert_eq!(not_found.message, "/nope: No such file or directory");
        let denied = classify(&p, "d", &io::Error::from_raw_os_error(13));
        assert_eq!((denied.transient, denied.code), (false, 126));
        assert!(classify(&p, "d", &io::Error::from_raw_os_error(EAGAIN)).transient);
    }
}
