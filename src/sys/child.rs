//! The child's side of fork/exec: between the two, only async-signal-safe calls, each
//! failure reported over the close-on-exec pipe as the step that failed.

use std::io;
use std::os::raw::{c_char, c_int};

use super::*;

/// fork(2). Ok(0) in the child, Ok(pid) in the parent.
pub(crate) fn fork_process() -> io::Result<i32> {
    // SAFETY: bundle-init is single-threaded, so the child may go on running Rust code
    // until exec; `child` below only makes async-signal-safe calls.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid)
}

/// Everything a child needs between fork and exec, prepared (and allocated) beforehand.
pub(crate) struct ExecPlan<'a> {
    /// Paths to try in order (one, or one per PATH entry), NUL-terminated.
    pub(crate) candidates: &'a [std::ffi::CString],
    /// argv and envp as NULL-terminated pointer arrays; envp None inherits `environ`.
    pub(crate) argv: &'a [*const c_char],
    /// Per candidate, `/bin/sh CANDIDATE ARG...` (NULL-terminated), for ENOEXEC.
    pub(crate) shell_argvs: &'a [Vec<*const c_char>],
    pub(crate) envp: Option<&'a [*const c_char]>,
    pub(crate) cwd: Option<&'a std::ffi::CStr>,
    pub(crate) user: Option<(u32, u32)>,
    pub(crate) stdout: Option<c_int>,
    pub(crate) stderr: Option<c_int>,
    /// (descriptor, number the child gets it as): the readiness notification pipe.
    pub(crate) notify: Option<(c_int, c_int)>,
    pub(crate) give_terminal: bool,
    pub(crate) no_new_privs: bool,
    /// Set before the user changes, while raising a limit or lowering nice may still be
    /// allowed (see `set_up_process`).
    pub(crate) umask: Option<u32>,
    pub(crate) nice: Option<i32>,
    /// Each limit with the step that names it when it cannot be set.
    pub(crate) limits: &'a [(
        ChildStep,
        rustix::process::Resource,
        rustix::process::Rlimit,
    )],
    /// Supplementary groups for the user change (empty: none).
    pub(crate) groups: &'a [libc::gid_t],
    /// The decimal text to write to /proc/self/oom_score_adj.
    pub(crate) oom_score_adj: Option<&'a [u8]>,
    pub(crate) mask: SigSet,
    /// bundle-init's pid: the child dies with it (parent-death signal).
    pub(crate) parent: i32,
    /// RLIMIT_NOFILE as bundle-init inherited it, before it raised its own soft limit:
    /// a program written for select() must not see more than it would have.
    pub(crate) open_file_limit: Option<libc::rlimit>,
    /// The daemon's mark, as an RLIMIT_RTTIME its every process inherits (`members`).
    pub(crate) mark: Option<libc::rlimit>,
    /// Write end of the CLOEXEC pipe the child reports a failure on.
    pub(crate) report: c_int,
}

/// Which step of starting a child failed, as the child reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChildStep {
    ProcessGroup = 1,
    Redirect = 2,
    WorkingDirectory = 3,
    User = 4,
    NoNewPrivs = 5,
    Signals = 6,
    Exec = 7,
    ParentDeath = 8,
    Shell = 9,
    Nice = 10,
    OomScoreAdj = 11,
    Groups = 12,
    LimitNofile = 13,
    LimitNproc = 14,
    LimitCore = 15,
    LimitMemlock = 16,
    LimitStack = 17,
    LimitAs = 18,
}

impl ChildStep {
    pub(crate) fn from_code(code: u32) -> ChildStep {
        match code {
            1 => ChildStep::ProcessGroup,
            2 => ChildStep::Redirect,
            3 => ChildStep::WorkingDirectory,
            4 => ChildStep::User,
            5 => ChildStep::NoNewPrivs,
            6 => ChildStep::Signals,
            8 => ChildStep::ParentDeath,
            9 => ChildStep::Shell,
            10 => ChildStep::Nice,
            11 => ChildStep::OomScoreAdj,
            12 => ChildStep::Groups,
            13 => ChildStep::LimitNofile,
            14 => ChildStep::LimitNproc,
            15 => ChildStep::LimitCore,
            16 => ChildStep::LimitMemlock,
            17 => ChildStep::LimitStack,
            18 => ChildStep::LimitAs,
            _ => ChildStep::Exec,
        }
    }
}

/// The child's side: set up and exec, or report (step, errno) on the report pipe and exit
/// 127. Makes only async-signal-safe system calls and allocates nothing: every pointer
/// comes from `plan`, which the parent prepared (the child has its own copy of it).
pub(crate) fn child(plan: &ExecPlan<'_>) -> ! {
    let report = plan.report;
    // SAFETY: setpgid has no memory arguments.
    if unsafe { libc::setpgid(0, 0) } != 0 {
        fail(report, ChildStep::ProcessGroup);
    }
    if plan.give_terminal {
        // Still fully blocked here, so SIGTTOU cannot stop us for asking.
        // SAFETY: no memory arguments; a failure only leaves the terminal where it was.
        unsafe { libc::tcsetpgrp(0, libc::getpid()) };
    }
    for (fd, target) in [(plan.stdout, 1), (plan.stderr, 2)] {
        if let Some(fd) = fd
            && duplicate_onto(fd, target) < 0
        {
            fail(report, ChildStep::Redirect);
        }
    }
    let report = match plan.notify {
        Some((fd, target)) => place_notify_descriptor(fd, target, report),
        None => report,
    };
    if let Some(dir) = plan.cwd {
        // SAFETY: `dir` is a NUL-terminated string the parent keeps alive.
        if unsafe { libc::chdir(dir.as_ptr()) } != 0 {
            fail(report, ChildStep::WorkingDirectory);
        }
    }
    set_up_process(plan, report);
    match plan.user {
        Some((uid, gid)) => {
            give_output_pipes_to(plan, uid, gid);
            become_user(uid, gid, plan.groups, report);
        }
        // Already that user: the groups still have to be set, if bundle-init may.
        None if !plan.groups.is_empty() => set_groups(plan.groups, ChildStep::Groups, report),
        None => {}
    }
    // After the credential change, which clears the parent-death signal.
    die_with_parent(plan.parent, report);
    // SAFETY: prctl with integer arguments only.
    if plan.no_new_privs && unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        fail(report, ChildStep::NoNewPrivs);
    }
    if let Some(limit) = &plan.open_file_limit {
        // SAFETY: `limit` is a valid rlimit the parent keeps alive. Lowering a soft limit
        // cannot fail; if it did, the child would only keep the raised one.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, limit) };
    }
    if let Some(mark) = &plan.mark {
        // SAFETY: `mark` is a valid rlimit the parent keeps alive. Raising a soft limit up
        // to the hard one, which stays, is allowed to anyone; if it failed, the daemon
        // would only go unmarked (its leftovers untracked), not fail to start.
        unsafe { libc::setrlimit(libc::RLIMIT_RTTIME, mark) };
    }
    if set_signal_mask(&plan.mask).is_err() {
        fail(report, ChildStep::Signals);
    }
    exec_first_candidate(plan, report)
}

/// dup2(2): `fd` also becomes `target`, without close-on-exec.
fn duplicate_onto(fd: c_int, target: c_int) -> c_int {
    // SAFETY: no memory arguments.
    unsafe { libc::dup2(fd, target) }
}

/// Gives the notification pipe `fd` to the daemon as `target`. The number the daemon
/// asked for may be one of the two pipes of this very start: the report pipe moves out of
/// its way (to the lowest free number, which cannot be `target` while the report sits
/// there); a notification pipe already on `target` only loses its CLOEXEC, which dup2 onto
/// itself would leave set. Returns where the report pipe is now.
fn place_notify_descriptor(fd: c_int, target: c_int, mut report: c_int) -> c_int {
    if report == target {
        // SAFETY: fcntl with integer arguments only.
        let moved = unsafe { libc::fcntl(report, libc::F_DUPFD_CLOEXEC, 3) };
        if moved < 0 {
            fail(report, ChildStep::Redirect);
        }
        report = moved;
    }
    let placed = if fd == target {
        // SAFETY: fcntl with integer arguments only.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }
    } else {
        duplicate_onto(fd, target)
    };
    if placed < 0 {
        fail(report, ChildStep::Redirect);
    }
    report
}

/// Makes the daemon's output pipes (now its 1 and 2) its user's, while the child is still
/// root: a pipe is mode 0600, so a daemon that opens /dev/stdout (/proc/self/fd/1) again,
/// as `echo > /dev/stderr` does, would be refused a pipe that belongs to root. The inode is
/// shared by both ends; bundle-init's read end was opened already and stays readable. Only
/// bundle-init's own pipes, never an output it inherited (that is the engine's). A failure
/// (no CAP_CHOWN) leaves the pipe as it was: the daemon still has its 1 and 2.
fn give_output_pipes_to(plan: &ExecPlan<'_>, uid: u32, gid: u32) {
    for (fd, target) in [(plan.stdout, 1), (plan.stderr, 2)] {
        if fd.is_some() {
            // SAFETY: no memory arguments.
            unsafe { libc::fchown(target, uid, gid) };
        }
    }
}

/// umask, nice, the limits and oom_score_adj, while the child still has bundle-init's
/// privileges: raising a hard limit (CAP_SYS_RESOURCE), lowering nice (CAP_SYS_NICE) or
/// oom_score_adj (CAP_SYS_RESOURCE) is refused after the change to an unprivileged user.
fn set_up_process(plan: &ExecPlan<'_>, report: c_int) {
    use rustix::process;
    if let Some(mask) = plan.umask {
        process::umask(rustix::fs::Mode::from_raw_mode(mask as _));
    }
    if let Some(nice) = plan.nice
        && let Err(e) = process::setpriority_process(None, nice)
    {
        fail_with(report, ChildStep::Nice, e.raw_os_error());
    }
    for &(step, resource, limit) in plan.limits {
        if let Err(e) = process::setrlimit(resource, limit) {
            fail_with(report, step, e.raw_os_error());
        }
    }
    if let Some(text) = plan.oom_score_adj {
        write_oom_score_adj(text, report);
    }
}

/// open, write and close: each async-signal-safe; the path is a static string.
fn write_oom_score_adj(text: &[u8], report: c_int) {
    const PATH: &std::ffi::CStr = c"/proc/self/oom_score_adj";
    // SAFETY: PATH is a NUL-terminated static string.
    let fd = unsafe { libc::open(PATH.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        fail(report, ChildStep::OomScoreAdj);
    }
    // SAFETY: `text` is a buffer the parent keeps alive, of this length.
    let written = unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) };
    if written != text.len() as isize {
        fail(report, ChildStep::OomScoreAdj);
    }
    // SAFETY: `fd` was opened above and is not used again.
    unsafe { libc::close(fd) };
}

fn set_groups(groups: &[libc::gid_t], step: ChildStep, report: c_int) {
    // SAFETY: `groups` is a list the parent keeps alive, of this length (0 with a dangling
    // but never-read pointer clears the groups).
    if unsafe { libc::setgroups(groups.len() as _, groups.as_ptr()) } != 0 {
        fail(report, step);
    }
}

/// Sets the supplementary groups (`groups`, often none), then the gid, then the uid: the
/// order in which each step is still allowed.
fn become_user(uid: u32, gid: u32, groups: &[libc::gid_t], report: c_int) {
    let step = match groups.is_empty() {
        true => ChildStep::User,
        false => ChildStep::Groups,
    };
    set_groups(groups, step, report);
    // SAFETY: no memory arguments.
    if unsafe { libc::setgid(gid) } != 0 {
        fail(report, ChildStep::User);
    }
    // SAFETY: no memory arguments.
    if unsafe { libc::setuid(uid) } != 0 {
        fail(report, ChildStep::User);
    }
}

/// Asks for SIGKILL when bundle-init dies, so no daemon outlives it (with no bundle-init
/// left, nobody would escalate after a gentler signal). Then checks the parent again: if
/// it died before the request, the signal will never come.
fn die_with_parent(parent: i32, report: c_int) {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) } != 0 {
        fail(report, ChildStep::ParentDeath);
    }
    // SAFETY: getppid has no arguments and cannot fail.
    if unsafe { libc::getppid() } != parent {
        // SAFETY: _exit ends this process at once; nothing of the parent's is shared.
        unsafe { libc::_exit(127) };
    }
}

fn exec_first_candidate(plan: &ExecPlan<'_>, report: c_int) -> ! {
    let envp = match plan.envp {
        Some(envp) => envp.as_ptr(),
        // SAFETY: reading the C runtime's `environ` pointer; nothing writes it here.
        None => unsafe { environ },
    };
    let mut saw_eacces = false;
    for (path, shell_argv) in plan.candidates.iter().zip(plan.shell_argvs) {
        // SAFETY: path, argv and envp are NUL-terminated strings in NULL-terminated arrays
        // that the parent keeps alive; execve returns only on failure.
        unsafe { libc::execve(path.as_ptr(), plan.argv.as_ptr(), envp) };
        match errno() {
            libc::EACCES => saw_eacces = true,
            libc::ENOENT | libc::ENOTDIR => {} // try the next one
            libc::ENOEXEC => run_with_shell(shell_argv, envp, report),
            _ => fail(report, ChildStep::Exec),
        }
    }
    if saw_eacces {
        // SAFETY: errno is this thread's, always valid to write.
        unsafe { *libc::__errno_location() = libc::EACCES };
    }
    fail(report, ChildStep::Exec)
}

/// A file the kernel will not run (a script without `#!`): run it with /bin/sh, as
/// glibc's execvp and so tini do. Without /bin/sh it stays ENOEXEC.
fn run_with_shell(shell_argv: &[*const c_char], envp: *const *const c_char, report: c_int) -> ! {
    // SAFETY: shell_argv is a NULL-terminated array of strings the parent keeps alive
    // (its first entry is the static "/bin/sh"); execve returns only on failure.
    unsafe { libc::execve(shell_argv[0], shell_argv.as_ptr(), envp) };
    if matches!(errno(), libc::ENOENT | libc::ENOTDIR) {
        // No shell: the program's own failure is the one to report.
        // SAFETY: errno is this thread's, always valid to write.
        unsafe { *libc::__errno_location() = libc::ENOEXEC };
        fail(report, ChildStep::Exec)
    }
    fail(report, ChildStep::Shell)
}

/// Reports (step, errno) on the report pipe and exits 127.
fn fail(report: c_int, step: ChildStep) -> ! {
    fail_with(report, step, errno())
}

/// `fail` for a call that returns its error instead of setting errno (rustix's).
fn fail_with(report: c_int, step: ChildStep, errno: i32) -> ! {
    let words = [step as u32, errno as u32];
    // SAFETY: the buffer lives on this stack for the call.
    unsafe { libc::write(report, words.as_ptr().cast(), std::mem::size_of_val(&words)) };
    // SAFETY: _exit ends the child at once, running none of the parent's exit handlers.
    unsafe { libc::_exit(127) }
}

unsafe extern "C" {
    /// The C runtime's environment (POSIX declares it; the `libc` crate does not).
    static environ: *const *const c_char;
}
