//! Starting one daemon: its own process group, the signal state bundle-init inherited (not
//! the all-blocked mask it runs with), the environment and user its spec gives, and only
//! the descriptors it is meant to have.
//!
//! The child is started here (a vfork-style clone, then exec: `sys::start_child`) rather
//! than with std::process::Command: the child's steps are few and explicit (see
//! `sys::child`), a failure says which step failed (a missing working directory is not
//! reported as a missing program), and the binary is smaller.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

use crate::plan::{DaemonSpec, EnvPlan, Resource, Rlimit};
use crate::supervisor::SpawnFailure;
use crate::sys::{self, ChildStep, ExecPlan, SigSet};
use rustix::process::Gid;

/// What every child gets back from bundle-init's own start.
#[derive(Clone, Copy)]
pub(crate) struct ChildSetup {
    pub(crate) inherited_mask: SigSet,
    /// Make the child's process group the terminal's foreground group.
    pub(crate) give_terminal: bool,
    /// RLIMIT_NOFILE as bundle-init inherited it (it raised its own).
    pub(crate) open_file_limit: Option<libc::rlimit>,
    /// The marks that tell which processes are whose (`members`); None when the limit
    /// they live in has no room.
    pub(crate) marks: Option<crate::members::Marks>,
    /// bundle-init's pid, which the child checks its parent against (parent-death signal).
    pub(crate) parent: i32,
}

/// Where a child's stdout and stderr go: inherited (None), or onto this descriptor.
#[derive(Clone, Copy, Default)]
pub(crate) struct ChildOutput {
    pub(crate) stdout: Option<RawFd>,
    pub(crate) stderr: Option<RawFd>,
    /// The write end of a readiness notification pipe, and the number the child gets it as.
    pub(crate) notify: Option<(RawFd, i32)>,
}

/// Default search path when neither the daemon's environment nor bundle-init's has PATH.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Spawns `spec` as daemon `id` and returns its pid.
/// `extra_env` are variables bundle-init gives this start (`NOTIFY_SOCKET`...), set over
/// the daemon's own.
pub(crate) fn spawn(
    id: crate::id::DaemonId,
    spec: &DaemonSpec,
    setup: ChildSetup,
    output: ChildOutput,
    extra_env: Vec<(OsString, OsString)>,
) -> Result<i32, SpawnFailure> {
    let Some(program) = spec.argv.first() else {
        return Err(SpawnFailure {
            transient: false,
            code: 127,
            message: "empty command".to_string(),
        });
    };
    let strings = ExecStrings::new(spec, program, extra_env)?;
    let argv = null_terminated(&strings.argv);
    let shell_argvs: Vec<_> = strings
        .candidates
        .iter()
        .map(|path| shell_argv(path, &argv))
        .collect();
    let envp = strings.envp.as_ref().map(|e| null_terminated(e));
    let process = ProcessStrings::new(spec);
    let report_pipe = match sys::report_needs_pipe() {
        true => Some(
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(|e| pipe_failure(program, io::Error::from(e)))?,
        ),
        false => None,
    };
    let plan = ExecPlan {
        candidates: &strings.candidates,
        argv: &argv,
        shell_argvs: &shell_argvs,
        envp: envp.as_deref(),
        cwd: strings.cwd.as_deref(),
        user: user_to_switch_to(spec),
        stdout: output.stdout,
        stderr: output.stderr,
        notify: output.notify,
        give_terminal: setup.give_terminal,
        no_new_privs: spec.no_new_privs,
        umask: spec.process.umask,
        nice: spec.process.nice,
        limits: &process.limits,
        groups: &process.groups,
        oom_score_adj: process.oom_score_adj.as_deref(),
        mask: setup.inherited_mask,
        parent: setup.parent,
        // A daemon's own limit-nofile replaces the limit bundle-init inherited.
        open_file_limit: match spec.process.limit(Resource::Nofile) {
            Some(_) => None,
            None => setup.open_file_limit,
        },
        mark: setup.marks.map(|marks| marks.limit_for(id)),
        report: report_pipe
            .as_ref()
            .map_or(-1, |(_, write)| write.as_raw_fd()),
    };
    let pid = sys::start_child(&plan).map_err(|e| start_failure(program, e))?;
    match child_report(report_pipe) {
        None => Ok(pid),
        Some((step, errno)) => {
            reap_failed_child(pid);
            Err(classify(program, spec, step, errno))
        }
    }
}

/// What the child that just started reported: from its pipe, when this start made one
/// (and what that shows of the memory the child shares), else from memory.
fn child_report(pipe: Option<(OwnedFd, OwnedFd)>) -> Option<(ChildStep, i32)> {
    let Some((read, write)) = pipe else {
        return sys::reported_in_memory();
    };
    drop(write);
    let report = read_exec_report(&read);
    sys::note_memory_sharing();
    report
}

/// A child that reported a failure exited 127 right after writing: it is reaped here,
/// before the loop's wait(-1) could mistake it for something else.
fn reap_failed_child(pid: i32) {
    let _ = rustix::process::waitpid(
        rustix::process::Pid::from_raw(pid),
        rustix::process::WaitOptions::empty(),
    );
}

/// The `user =` the child must change to, if any: none when bundle-init already runs as
/// that user without the privilege to change (which the child would then lack too).
fn user_to_switch_to(spec: &DaemonSpec) -> Option<(u32, u32)> {
    let (uid, gid) = spec.user?;
    sys::Credentials::current()
        .must_switch_to(uid, gid)
        .then_some((uid, gid))
}

/// The process settings in the form the child's calls take, made before the clone.
struct ProcessStrings {
    limits: Vec<(
        ChildStep,
        rustix::process::Resource,
        rustix::process::Rlimit,
    )>,
    oom_score_adj: Option<Vec<u8>>,
    /// The supplementary groups as rustix's setgroups takes them.
    groups: Vec<Gid>,
}

impl ProcessStrings {
    fn new(spec: &DaemonSpec) -> ProcessStrings {
        let limits = Resource::ALL
            .iter()
            .filter_map(|&r| spec.process.limit(r).map(|limit| (r, limit)))
            .map(|(r, limit)| (limit_step(r), kernel_resource(r), kernel_limit(limit)))
            .collect();
        ProcessStrings {
            limits,
            oom_score_adj: spec
                .process
                .oom_score_adj
                .map(|n| n.to_string().into_bytes()),
            groups: spec
                .process
                .groups
                .iter()
                .map(|&g| Gid::from_raw_unchecked(g))
                .collect(),
        }
    }
}

fn kernel_limit(limit: Rlimit) -> rustix::process::Rlimit {
    let value = |n| (n != Rlimit::UNLIMITED).then_some(n);
    rustix::process::Rlimit {
        current: value(limit.soft),
        maximum: value(limit.hard),
    }
}

fn kernel_resource(resource: Resource) -> rustix::process::Resource {
    use rustix::process::Resource as R;
    match resource {
        Resource::Nofile => R::Nofile,
        Resource::Nproc => R::Nproc,
        Resource::Core => R::Core,
        Resource::Memlock => R::Memlock,
        Resource::Stack => R::Stack,
        Resource::As => R::As,
    }
}

fn limit_step(resource: Resource) -> ChildStep {
    match resource {
        Resource::Nofile => ChildStep::LimitNofile,
        Resource::Nproc => ChildStep::LimitNproc,
        Resource::Core => ChildStep::LimitCore,
        Resource::Memlock => ChildStep::LimitMemlock,
        Resource::Stack => ChildStep::LimitStack,
        Resource::As => ChildStep::LimitAs,
    }
}

/// The resource a limit step sets, for its message.
fn step_resource(step: ChildStep) -> Option<Resource> {
    Resource::ALL.into_iter().find(|&r| limit_step(r) == step)
}

/// The strings a child needs, made before the clone: the child may not allocate.
struct ExecStrings {
    argv: Vec<CString>,
    /// None: the child inherits bundle-init's environment unchanged.
    envp: Option<Vec<CString>>,
    /// Paths to try in order, as execvp would.
    candidates: Vec<CString>,
    cwd: Option<CString>,
}

impl ExecStrings {
    fn new(
        spec: &DaemonSpec,
        program: &OsStr,
        extra_env: Vec<(OsString, OsString)>,
    ) -> Result<ExecStrings, SpawnFailure> {
        let invalid = |what: &str| SpawnFailure {
            transient: false,
            code: 126,
            message: format!("{what} contains a NUL byte"),
        };
        let from_files = crate::envfile::read_all(&spec.env.files).map_err(|e| SpawnFailure {
            transient: false,
            code: 126,
            message: e.to_string(),
        })?;
        let env = with_extra_env(child_environment(&spec.env, from_files), extra_env);
        let argv: Option<Vec<CString>> = spec.argv.iter().map(|a| c_string(a)).collect();
        let envp = match &env {
            Some(vars) => {
                Some(environment_strings(vars).ok_or_else(|| invalid("the environment"))?)
            }
            None => None,
        };
        let path_var = match &env {
            Some(vars) => vars
                .iter()
                .find(|(k, _)| k == "PATH")
                .map(|(_, v)| v.clone()),
            None => std::env::var_os("PATH"),
        };
        let cwd = match &spec.cwd {
            Some(dir) => Some(c_string(dir.as_os_str()).ok_or_else(|| invalid("cwd"))?),
            None => None,
        };
        Ok(ExecStrings {
            argv: argv.ok_or_else(|| invalid("the command"))?,
            envp,
            candidates: search_path(program, path_var.as_deref())
                .ok_or_else(|| invalid("the program path"))?,
            cwd,
        })
    }
}

/// `NAME=VALUE` strings; None if one contains a NUL byte.
fn environment_strings(vars: &[(OsString, OsString)]) -> Option<Vec<CString>> {
    vars.iter()
        .map(|(k, v)| {
            let mut pair = k.clone();
            pair.push("=");
            pair.push(v);
            c_string(&pair)
        })
        .collect()
}

/// What the child wrote on the report pipe before it exited: (step, errno), or None when
/// the pipe closed empty because exec succeeded (it is CLOEXEC).
fn read_exec_report(report: &OwnedFd) -> Option<(ChildStep, i32)> {
    let mut bytes = [0u8; 8];
    if read_full(report, &mut bytes) < bytes.len() {
        return None;
    }
    let word = |at: usize| [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
    let step = ChildStep::from_code(u32::from_ne_bytes(word(0)));
    Some((step, i32::from_ne_bytes(word(4))))
}

fn c_string(text: &OsStr) -> Option<CString> {
    CString::new(text.as_bytes()).ok()
}

/// The shell that runs a program the kernel will not (ENOEXEC: a script without `#!`),
/// as glibc's execvp does.
pub(crate) const SHELL: &std::ffi::CStr = c"/bin/sh";

/// `/bin/sh PATH ARG...`: the argv for running candidate `path` with the shell.
fn shell_argv(path: &CString, argv: &[*const std::ffi::c_char]) -> Vec<*const std::ffi::c_char> {
    let args = argv.get(1..).unwrap_or_default();
    [SHELL.as_ptr(), path.as_ptr()]
        .into_iter()
        .chain(args.iter().copied())
        .collect()
}

fn null_terminated(strings: &[CString]) -> Vec<*const std::ffi::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Reads until `buf` is full or EOF; returns how much was read.
fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
    got
}

/// execvp's search: a program with a `/` is used as it is; otherwise each PATH entry in
/// turn (an empty entry means the current directory).
fn search_path(program: &OsStr, path: Option<&OsStr>) -> Option<Vec<CString>> {
    if program.as_bytes().contains(&b'/') {
        return Some(vec![c_string(program)?]);
    }
    let path = path.map(OsStr::as_bytes).unwrap_or(DEFAULT_PATH.as_bytes());
    path.split(|&b| b == b':')
        .map(|dir| {
            let mut full = if dir.is_empty() {
                b".".to_vec()
            } else {
                dir.to_vec()
            };
            full.push(b'/');
            full.extend_from_slice(program.as_bytes());
            CString::new(full).ok()
        })
        .collect()
}

/// A pipe a start needs (the report pipe, a readiness pipe) could not be made. Out of
/// descriptors (EMFILE, ENFILE) can pass, as a process limit can: retried with backoff,
/// like a fork failure.
pub(crate) fn pipe_failure(program: &OsStr, error: io::Error) -> SpawnFailure {
    let errno = error.raw_os_error().unwrap_or(0);
    let text = if matches!(errno, libc::EMFILE | libc::ENFILE) {
        "cannot create a pipe to start it: too many open descriptors (RLIMIT_NOFILE?)".to_string()
    } else {
        format!(
            "cannot create a pipe to start it: {}",
            describe_errno(errno)
        )
    };
    SpawnFailure {
        transient: matches!(errno, libc::EMFILE | libc::ENFILE | ENOMEM),
        code: 126,
        message: format!("{}: {text}", program.to_string_lossy()),
    }
}

fn start_failure(program: &OsStr, error: sys::StartError) -> SpawnFailure {
    match error {
        sys::StartError::Clone(e) => fork_failure(program, e),
        sys::StartError::Stack(e) => stack_failure(program, e),
    }
}

/// The child's stack could not be mapped (out of memory, or an address-space limit):
/// retried with backoff, as a fork failure is.
fn stack_failure(program: &OsStr, error: io::Error) -> SpawnFailure {
    let errno = error.raw_os_error().unwrap_or(0);
    SpawnFailure {
        transient: matches!(errno, EAGAIN | ENOMEM),
        code: 126,
        message: format!(
            "{}: cannot map a stack to start it: {}",
            program.to_string_lossy(),
            describe_errno(errno)
        ),
    }
}

fn fork_failure(program: &OsStr, error: io::Error) -> SpawnFailure {
    let errno = error.raw_os_error().unwrap_or(0);
    let transient = matches!(errno, EAGAIN | ENOMEM);
    let text = if errno == EAGAIN {
        "fork failed: resource temporarily unavailable (process limit?)".to_string()
    } else {
        format!("fork failed: {}", describe_errno(errno))
    };
    SpawnFailure {
        transient,
        code: 126,
        message: format!("{}: {text}", program.to_string_lossy()),
    }
}

/// Sorts a failure the child reported: a program that is not there counts as exit code
/// 127, anything else that stops it from running as 126, as shells report them.
fn classify(program: &OsStr, spec: &DaemonSpec, step: ChildStep, errno: i32) -> SpawnFailure {
    let reason = if step == ChildStep::Exec && errno == libc::ENOEXEC {
        "not a format this system can run, and no /bin/sh to run it as a script".to_string()
    } else {
        describe_errno(errno)
    };
    let program = program.to_string_lossy();
    let (code, message) = match step {
        ChildStep::Exec => {
            let code = if matches!(errno, ENOENT | ENOTDIR) {
                127
            } else {
                126
            };
            // tini's wording, which scripts match.
            (code, format!("exec {program} failed: {reason}"))
        }
        ChildStep::WorkingDirectory => {
            let dir = spec
                .cwd
                .as_deref()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
            (126, format!("cwd {dir}: {reason}"))
        }
        ChildStep::User => {
            let (uid, gid) = spec.user.unwrap_or_default();
            // EPERM: not privileged; say what would be needed rather than the errno.
            let reason = match sys::can_switch_to(uid, gid) {
                Err(why) if errno == libc::EPERM => why.to_string(),
                _ => reason,
            };
            (126, format!("user {uid}:{gid}: {reason}"))
        }
        ChildStep::ProcessGroup => (126, format!("setpgid: {reason}")),
        ChildStep::Redirect => (126, format!("output redirection: {reason}")),
        ChildStep::NoNewPrivs => (126, format!("no-new-privs: {reason}")),
        ChildStep::Signals => (126, format!("signal setup: {reason}")),
        ChildStep::ParentDeath => (126, format!("parent-death signal: {reason}")),
        ChildStep::Shell => (
            126,
            format!("{program}: a script without #!, and /bin/sh could not run it: {reason}"),
        ),
        ChildStep::Nice | ChildStep::OomScoreAdj | ChildStep::Groups => {
            (126, process_setting_failure(spec, step, errno, &reason))
        }
        limit => (126, limit_failure(spec, limit, errno, &reason)),
    };
    SpawnFailure {
        // Out of descriptors (a step that opens one: the child's table is a copy of
        // bundle-init's) passes, as at the pipes a start needs: retried with backoff.
        transient: matches!(errno, libc::EMFILE | libc::ENFILE),
        code,
        message,
    }
}

/// `nice 10: Permission denied (lowering nice needs CAP_SYS_NICE)`.
fn process_setting_failure(spec: &DaemonSpec, step: ChildStep, errno: i32, reason: &str) -> String {
    let settings = &spec.process;
    let denied = matches!(errno, libc::EPERM | libc::EACCES);
    let (setting, needs) = match step {
        ChildStep::Nice => (
            format!("nice {}", settings.nice.unwrap_or_default()),
            "lowering nice needs CAP_SYS_NICE",
        ),
        ChildStep::OomScoreAdj => (
            format!(
                "oom-score-adj {}",
                settings.oom_score_adj.unwrap_or_default()
            ),
            "lowering it needs CAP_SYS_RESOURCE",
        ),
        _ => {
            let groups: Vec<String> = settings.groups.iter().map(u32::to_string).collect();
            (
                format!("groups {}", groups.join(",")),
                "setting groups needs CAP_SETGID",
            )
        }
    };
    match denied {
        true => format!("{setting}: {reason} ({needs})"),
        false => format!("{setting}: {reason}"),
    }
}

/// `limit-nofile 1024:1048576: Operation not permitted (raising a hard limit needs
/// CAP_SYS_RESOURCE)`.
fn limit_failure(spec: &DaemonSpec, step: ChildStep, errno: i32, reason: &str) -> String {
    let Some(resource) = step_resource(step) else {
        return format!("setup: {reason}");
    };
    let value = crate::keys::daemon_key(resource.key())
        .map(|key| (key.print)(spec).join(""))
        .unwrap_or_default();
    match errno {
        libc::EPERM => format!(
            "{} {value}: {reason} (raising a hard limit needs CAP_SYS_RESOURCE)",
            resource.key()
        ),
        _ => format!("{} {value}: {reason}", resource.key()),
    }
}

/// `No such file or directory` for ENOENT: the OS's text without std's "(os error 2)".
fn describe_errno(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

use libc::{EAGAIN, ENOENT, ENOMEM, ENOTDIR};

/// The environment for a daemon whose spec changes it, or None to inherit unchanged.
/// `from_files` are the variables its env files gave at this start.
pub(crate) fn child_environment(
    plan: &EnvPlan,
    from_files: Vec<(OsString, OsString)>,
) -> Option<Vec<(OsString, OsString)>> {
    if plan.files.is_empty()
        && plan.set.is_empty()
        && plan.unset.is_empty()
        && plan.unset_prefixes.is_empty()
    {
        return None;
    }
    Some(apply_env_plan(std::env::vars_os(), plan, from_files))
}

/// `env` (None: bundle-init's own) with `extra` set over it, each name once.
fn with_extra_env(
    env: Option<Vec<(OsString, OsString)>>,
    extra: Vec<(OsString, OsString)>,
) -> Option<Vec<(OsString, OsString)>> {
    if extra.is_empty() {
        return env;
    }
    let mut vars: Vec<(OsString, OsString)> = env.unwrap_or_else(|| std::env::vars_os().collect());
    vars.retain(|(name, _)| !extra.iter().any(|(n, _)| n == name));
    vars.extend(extra);
    Some(vars)
}

/// Pure part of `child_environment`: removes by name and by prefix, then sets the files'
/// variables and `env`'s, in that order, each name once (the last value wins: execve
/// would pass both, and which one a program sees depends on its C library).
pub(crate) fn apply_env_plan(
    base: impl Iterator<Item = (OsString, OsString)>,
    plan: &EnvPlan,
    from_files: Vec<(OsString, OsString)>,
) -> Vec<(OsString, OsString)> {
    let mut set: Vec<(OsString, OsString)> = Vec::new();
    for (name, value) in from_files.into_iter().chain(plan.set.iter().cloned()) {
        match set.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => set.push((name, value)),
        }
    }
    let removed = |name: &OsString| {
        plan.unset.contains(name)
            || plan
                .unset_prefixes
                .iter()
                .any(|p| name.as_bytes().starts_with(p.as_bytes()))
            || set.iter().any(|(n, _)| n == name)
    };
    let mut env: Vec<(OsString, OsString)> = base.filter(|(name, _)| !removed(name)).collect();
    env.extend(set);
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
            ..EnvPlan::default()
        };
        let env = apply_env_plan(base.into_iter(), &plan, vec![]);
        assert_eq!(
            env,
            pairs(&[("PATH", "/bin"), ("MODE", "strict"), ("HOME", "/home/d")])
        );
    }

    /// Files come after the unsets and before `env`; each name is passed once, with its
    /// last value. (Two `env` lines for one name used to pass both to execve.)
    #[test]
    fn env_files_apply_in_order_before_env_and_each_name_is_passed_once() {
        let base = pairs(&[("PATH", "/bin"), ("CRED_A", "old"), ("MODE", "base")]);
        let plan = EnvPlan {
            set: pairs(&[("MODE", "env"), ("X", "1"), ("X", "2")]),
            unset_prefixes: vec!["CRED_".into()],
            ..EnvPlan::default()
        };
        let files = pairs(&[("CRED_A", "file1"), ("MODE", "file"), ("CRED_A", "file2")]);
        assert_eq!(
            apply_env_plan(base.into_iter(), &plan, files),
            pairs(&[
                ("PATH", "/bin"),
                ("CRED_A", "file2"),
                ("MODE", "env"),
                ("X", "2")
            ])
        );
    }

    #[test]
    fn an_empty_plan_inherits() {
        assert_eq!(child_environment(&EnvPlan::default(), vec![]), None);
        let with_file = EnvPlan {
            files: vec![crate::plan::EnvFile {
                path: "/a".into(),
                optional: true,
            }],
            ..EnvPlan::default()
        };
        assert!(child_environment(&with_file, vec![]).is_some());
    }

    /// The seed's pipelock stanza: `unset-prefix` is its only environment key.
    #[test]
    fn an_unset_prefix_alone_is_a_change() {
        let plan = EnvPlan {
            unset_prefixes: vec!["CRED_".into()],
            ..EnvPlan::default()
        };
        let env = child_environment(&plan, vec![]).expect("the prefix is applied");
        assert!(!env.iter().any(|(n, _)| n.as_bytes().starts_with(b"CRED_")));
        let base = pairs(&[("CRED_TOKEN", "s3cret"), ("PATH", "/bin")]);
        assert_eq!(
            apply_env_plan(base.into_iter(), &plan, vec![]),
            pairs(&[("PATH", "/bin")])
        );
    }

    #[test]
    fn the_path_is_searched_like_execvp() {
        let found = search_path(OsStr::new("app"), Some(OsStr::new("/a::/b"))).unwrap();
        let found: Vec<&[u8]> = found.iter().map(|c| c.as_bytes()).collect();
        assert_eq!(found, [&b"/a/app"[..], b"./app", b"/b/app"]);
        let direct = search_path(OsStr::new("./x"), Some(OsStr::new("/a"))).unwrap();
        assert_eq!(direct[0].as_bytes(), b"./x");
        assert_eq!(search_path(OsStr::new("sh"), None).unwrap().len(), 6);
    }

    #[test]
    fn a_script_the_shell_could_not_run_says_which_part_failed() {
        let spec = DaemonSpec::new("d", vec!["/s".into()]);
        let no_shell = classify(OsStr::new("/s"), &spec, ChildStep::Exec, libc::ENOEXEC);
        assert_eq!(
            (no_shell.code, no_shell.message.as_str()),
            (
                126,
                "exec /s failed: not a format this system can run, and no /bin/sh to run it as a script"
            )
        );
        let shell_failed = classify(OsStr::new("/s"), &spec, ChildStep::Shell, libc::E2BIG);
        assert_eq!(
            (shell_failed.code, shell_failed.message.as_str()),
            (
                126,
                "/s: a script without #!, and /bin/sh could not run it: Argument list too long"
            )
        );
    }

    #[test]
    fn a_process_setting_that_cannot_be_set_is_named_with_its_value() {
        let mut spec = DaemonSpec::new("d", vec!["/x".into()]);
        spec.process.nice = Some(-5);
        spec.process.groups = vec![4, 27];
        spec.process.oom_score_adj = Some(-1000);
        spec.process.limits[Resource::Core as usize] = Some(Rlimit {
            soft: 0,
            hard: Rlimit::UNLIMITED,
        });
        let message = |step, errno| classify(OsStr::new("/x"), &spec, step, errno).message;
        assert_eq!(
            message(ChildStep::Nice, libc::EACCES),
            "nice -5: Permission denied (lowering nice needs CAP_SYS_NICE)"
        );
        assert_eq!(
            message(ChildStep::Groups, libc::EPERM),
            "groups 4,27: Operation not permitted (setting groups needs CAP_SETGID)"
        );
        assert_eq!(
            message(ChildStep::LimitCore, libc::EPERM),
            "limit-core 0:unlimited: Operation not permitted (raising a hard limit needs CAP_SYS_RESOURCE)"
        );
        assert_eq!(
            message(ChildStep::OomScoreAdj, libc::ENOENT),
            "oom-score-adj -1000: No such file or directory"
        );
        assert_eq!(
            classify(OsStr::new("/x"), &spec, ChildStep::LimitAs, libc::EINVAL).code,
            126
        );
    }

    /// Out of descriptors in a step of the child (its table is a copy of bundle-init's) can
    /// pass: retried, as a pipe failure is. Any other step failure is the daemon's own.
    #[test]
    fn a_step_out_of_descriptors_is_transient_and_nothing_else_is() {
        let spec = DaemonSpec::new("d", vec!["/x".into()]);
        let failure = |step, errno| classify(OsStr::new("/x"), &spec, step, errno);
        assert!(failure(ChildStep::OomScoreAdj, libc::EMFILE).transient);
        assert!(failure(ChildStep::Exec, libc::ENFILE).transient);
        assert!(!failure(ChildStep::OomScoreAdj, libc::EACCES).transient);
        assert!(!failure(ChildStep::Exec, ENOENT).transient);
    }

    /// Every step the child reports comes back as itself.
    #[test]
    fn every_child_step_survives_the_report_pipe() {
        for code in 1..=18 {
            assert_eq!(ChildStep::from_code(code) as u32, code);
        }
    }

    /// No memory for the child's stack is retried with backoff, as a failed fork is, and
    /// says what could not be had.
    #[test]
    fn a_stack_that_cannot_be_mapped_is_a_transient_failure_that_says_so() {
        let failure = stack_failure(OsStr::new("app"), io::Error::from_raw_os_error(ENOMEM));
        assert!(failure.transient);
        assert_eq!(failure.code, 126);
        assert_eq!(
            failure.message,
            "app: cannot map a stack to start it: Cannot allocate memory"
        );
    }

    #[test]
    fn failures_say_which_step_failed_and_map_to_shell_codes() {
        let mut spec = DaemonSpec::new("d", vec!["/nope".into()]);
        let not_found = classify(OsStr::new("/nope"), &spec, ChildStep::Exec, ENOENT);
        assert_eq!((not_found.transient, not_found.code), (false, 127));
        assert_eq!(
            not_found.message,
            "exec /nope failed: No such file or directory"
        );
        let denied = classify(OsStr::new("/nope"), &spec, ChildStep::Exec, libc::EACCES);
        assert_eq!(
            (denied.code, denied.message.as_str()),
            (126, "exec /nope failed: Permission denied")
        );
        spec.cwd = Some("/srv/missing".into());
        let cwd = classify(
            OsStr::new("/nope"),
            &spec,
            ChildStep::WorkingDirectory,
            ENOENT,
        );
        assert_eq!(
            (cwd.code, cwd.message.as_str()),
            (126, "cwd /srv/missing: No such file or directory")
        );
        assert!(fork_failure(OsStr::new("x"), io::Error::from_raw_os_error(EAGAIN)).transient);
    }
}
