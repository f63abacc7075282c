//! The child's side of starting a daemon: a vfork-style clone, then, until exec, only
//! async-signal-safe calls, each failure reported over the close-on-exec pipe as the step
//! that failed.
//!
//! # What the child may touch
//!
//! The child is made with `clone(CLONE_VM | CLONE_VFORK | SIGCHLD)`: it runs in
//! bundle-init's own memory, on a stack of its own (`map_stack`), while bundle-init's only
//! thread is suspended in `clone` until the child has called execve or exited (the kernel
//! releases the parent at either, or at the child's death). Only the memory is shared:
//! without CLONE_FILES, CLONE_FS, CLONE_SIGHAND or CLONE_THREAD the child has its own
//! descriptor table, cwd and umask, signal dispositions, credentials, limits and
//! oom_score_adj, so what its steps change there is its own, as after fork. So, between
//! clone and exec the child
//! - reads `ExecPlan` and everything it points to (prepared and allocated before clone, in
//!   the parent's suspended frame) and `environ`, and writes nothing of the parent's but
//!   `REPORT`, which the parent reads only once `clone` has returned;
//! - writes only its own stack, and errno (the parent's, through the shared thread
//!   pointer: harmless, the parent reads errno only right after a call that failed, and
//!   `clone` set it last if clone failed);
//! - allocates nothing, takes no lock, never panics or unwinds and never returns: every way
//!   out is execve or `_exit`, so it cannot run on into the parent's frames;
//! - makes raw system calls (rustix, or libc wrappers that are a bare syscall), never a C
//!   library call that keeps process-wide state: the user change and the limits go through
//!   rustix's per-thread calls, which for a one-thread child are the process's, rather
//!   than musl's setuid or setrlimit, which synchronise all threads through libc state;
//! - runs no signal handler: bundle-init installs none (`no_main`, so std's runtime does
//!   not set its stack-overflow handler; signals arrive through a signalfd), so a signal
//!   that reaches the child between its mask restore and execve meets only SIG_DFL or
//!   SIG_IGN, as it would after exec.
//!
//! # How a failure is reported
//!
//! The child stores (step, errno) in `REPORT`, in the memory it shares with the parent,
//! before it exits, and the parent reads it once `clone` has returned: no descriptors, no
//! system calls. That needs CLONE_VM | CLONE_VFORK to be what it promises, and under
//! qemu-user (the aarch64 test run) it is not: qemu carries the clone out as a plain fork,
//! so the child writes to a copy and the parent is not held. So the first start also
//! reports on a close-on-exec pipe, read to its end, and the child marks `REPORT` as soon
//! as it runs: if the parent then sees the mark, it shares the child's memory and every
//! later start reports through memory alone; if not, every start keeps the pipe.

use std::io;
use std::os::raw::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, Ordering};

use rustix::process::Gid;

use super::*;

/// Room for the child's frames until exec: it neither recurses nor keeps large buffers,
/// and a few KiB would do in a release build; 64 KiB leaves a debug build's frames room.
const CHILD_STACK_BYTES: usize = 64 * 1024;

/// The top of the child's stack, or null until the first start maps it. One stack serves
/// every start: bundle-init starts one child at a time, and with CLONE_VFORK that child has
/// left the stack (exec replaced its memory, or it exited) before `clone` returns.
static CHILD_STACK_TOP: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());

/// What the child of the current start reported, in the memory it shares with the parent
/// (see "How a failure is reported"). The child writes it, the parent reads it only after
/// `clone` returned, when the child has exec'd or exited.
struct MemoryReport {
    /// `CHILD_RAN` once the child runs, then the failed step's code, if one failed.
    step: AtomicU32,
    errno: AtomicI32,
}

/// The child has started running (not a step: a step's code is 1 to 18).
const CHILD_RAN: u32 = u32::MAX;

static REPORT: MemoryReport = MemoryReport {
    step: AtomicU32::new(0),
    errno: AtomicI32::new(0),
};

/// Whether a start has shown that children share bundle-init's memory until they exec.
static MEMORY_SHARED: AtomicBool = AtomicBool::new(false);

/// Whether this start needs the report pipe: until a start has shown that the child's
/// writes reach the parent's memory, and always where they do not.
pub(crate) fn report_needs_pipe() -> bool {
    !MEMORY_SHARED.load(Ordering::Relaxed)
}

/// After a start whose report was read from its pipe: remembers whether the child's mark
/// reached this memory, which decides whether later starts need the pipe.
pub(crate) fn note_memory_sharing() {
    let seen = REPORT.step.load(Ordering::Acquire) != 0;
    MEMORY_SHARED.store(seen, Ordering::Relaxed);
}

/// What the child of the start that just returned stored before it exited: (step, errno),
/// or None when it exec'd (or died before a step failed).
pub(crate) fn reported_in_memory() -> Option<(ChildStep, i32)> {
    match REPORT.step.load(Ordering::Acquire) {
        0 | CHILD_RAN => None,
        code => Some((
            ChildStep::from_code(code),
            REPORT.errno.load(Ordering::Relaxed),
        )),
    }
}

/// Starts a child that runs `child(plan)` and returns its pid once it has exec'd or
/// exited (see the module's comment for what it may touch meanwhile).
pub(crate) fn start_child(plan: &ExecPlan<'_>) -> Result<i32, StartError> {
    let top = child_stack().map_err(StartError::Stack)?;
    REPORT.step.store(0, Ordering::Relaxed);
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    let arg = std::ptr::from_ref(plan).cast_mut().cast::<c_void>();
    // SAFETY: `top` is the upper end of a mapped, writable stack that nothing else uses
    // while this start lasts; `run_child` keeps to what the module's comment allows, and
    // `plan` stays alive in this frame, which clone does not leave until the child has
    // exec'd or exited.
    let pid = unsafe { libc::clone(run_child, top.cast(), flags, arg) };
    if pid < 0 {
        return Err(StartError::Clone(io::Error::last_os_error()));
    }
    Ok(pid)
}

/// Why no child could be made.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The child's stack could not be mapped.
    Stack(io::Error),
    /// clone itself failed (EAGAIN at a process limit, ENOMEM).
    Clone(io::Error),
}

/// The child's entry: the clone wrapper calls it on the new stack.
extern "C" fn run_child(plan: *mut c_void) -> c_int {
    // SAFETY: `plan` is the ExecPlan `start_child` passed, alive in the parent's suspended
    // frame; the child only reads it.
    let plan = unsafe { &*plan.cast_const().cast::<ExecPlan<'_>>() };
    child(plan)
}

/// The child's stack, mapped on first use.
fn child_stack() -> io::Result<*mut u8> {
    let top = CHILD_STACK_TOP.load(Ordering::Relaxed);
    if !top.is_null() {
        return Ok(top);
    }
    let top = map_stack(CHILD_STACK_BYTES)?;
    CHILD_STACK_TOP.store(top, Ordering::Relaxed);
    Ok(top)
}

/// Maps `bytes` of stack with an inaccessible guard page below it, so that a child that
/// overran it would fault rather than write over bundle-init's memory. Returns the top.
pub(crate) fn map_stack(bytes: usize) -> io::Result<*mut u8> {
    let page = page_size();
    let total = bytes
        .checked_add(page)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK;
    // SAFETY: a new anonymous mapping where the kernel chooses; nothing existing is touched.
    let base = unsafe { libc::mmap(std::ptr::null_mut(), total, libc::PROT_NONE, flags, -1, 0) };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let usable = base.cast::<u8>().wrapping_add(page);
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    // SAFETY: the range lies inside the mapping just made, above its guard page.
    if unsafe { libc::mprotect(usable.cast(), bytes, rw) } != 0 {
        let error = io::Error::last_os_error();
        // SAFETY: the mapping was made above and nothing refers to it.
        unsafe { libc::munmap(base, total) };
        return Err(error);
    }
    Ok(usable.wrapping_add(bytes))
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory arguments.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(4096)
}

/// Everything a child needs between clone and exec, prepared (and allocated) beforehand.
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
    pub(crate) groups: &'a [Gid],
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
    /// Write end of the CLOEXEC pipe the child also reports a failure on, or -1 for none
    /// (the report in memory is enough: see "How a failure is reported").
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

/// The child's side: set up and exec, or report (step, errno) and exit
/// 127. Makes only async-signal-safe system calls and allocates nothing: every pointer
/// comes from `plan`, which the parent prepared and the child only reads.
pub(crate) fn child(plan: &ExecPlan<'_>) -> ! {
    REPORT.step.store(CHILD_RAN, Ordering::Release);
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
        // Lowering a soft limit cannot fail; if it did, the child would only keep the
        // raised one.
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, as_rlimit(limit));
    }
    if let Some(mark) = &plan.mark {
        // Raising a soft limit up to the hard one, which stays, is allowed to anyone; if it
        // failed, the daemon would only go unmarked (its leftovers untracked), not fail to
        // start.
        let _ = rustix::process::setrlimit(rustix::process::Resource::Rttime, as_rlimit(mark));
    }
    if set_signal_mask(&plan.mask).is_err() {
        fail(report, ChildStep::Signals);
    }
    exec_first_candidate(plan, report)
}

/// A limit as rustix's setrlimit takes it (RLIM_INFINITY: None). Plain arithmetic.
fn as_rlimit(limit: &libc::rlimit) -> rustix::process::Rlimit {
    let value = |n: libc::rlim_t| (n != libc::RLIM_INFINITY).then_some(n);
    rustix::process::Rlimit {
        current: value(limit.rlim_cur),
        maximum: value(limit.rlim_max),
    }
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
    // Before the limits: writing it opens a descriptor, which the daemon's own
    // limit-nofile, below the child's copy of bundle-init's descriptors, would refuse.
    if let Some(text) = plan.oom_score_adj {
        write_oom_score_adj(text, report);
    }
    for &(step, resource, limit) in plan.limits {
        if let Err(e) = process::setrlimit(resource, limit) {
            fail_with(report, step, e.raw_os_error());
        }
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

/// The credential calls are the kernel's per-thread ones (rustix's `set_thread_*`): the
/// child is a single thread, so they change the whole process, as C's setgroups, setgid
/// and setuid would, without the C library's signalling of other threads through state it
/// shares with the parent.
fn set_groups(groups: &[Gid], step: ChildStep, report: c_int) {
    if let Err(e) = rustix::thread::set_thread_groups(groups) {
        fail_with(report, step, e.raw_os_error());
    }
}

/// Sets the supplementary groups (`groups`, often none), then the gid, then the uid: the
/// order in which each step is still allowed.
fn become_user(uid: u32, gid: u32, groups: &[Gid], report: c_int) {
    let step = match groups.is_empty() {
        true => ChildStep::User,
        false => ChildStep::Groups,
    };
    set_groups(groups, step, report);
    if let Err(e) = rustix::thread::set_thread_gid(Gid::from_raw_unchecked(gid)) {
        fail_with(report, ChildStep::User, e.raw_os_error());
    }
    let uid = rustix::process::Uid::from_raw_unchecked(uid);
    if let Err(e) = rustix::thread::set_thread_uid(uid) {
        fail_with(report, ChildStep::User, e.raw_os_error());
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
        // SAFETY: _exit ends the child at once, running none of the parent's exit handlers.
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
    // Its first entry is the shell's path (`spawn::SHELL`, a static string).
    let shell = shell_argv[0];
    // SAFETY: shell_argv is a NULL-terminated array of strings the parent keeps alive;
    // execve returns only on failure.
    unsafe { libc::execve(shell, shell_argv.as_ptr(), envp) };
    if matches!(errno(), libc::ENOENT | libc::ENOTDIR) {
        // No shell: the program's own failure is the one to report.
        // SAFETY: errno is this thread's, always valid to write.
        unsafe { *libc::__errno_location() = libc::ENOEXEC };
        fail(report, ChildStep::Exec)
    }
    fail(report, ChildStep::Shell)
}

/// Reports (step, errno) in memory and on the report pipe, if there is one, and exits 127.
fn fail(report: c_int, step: ChildStep) -> ! {
    fail_with(report, step, errno())
}

/// `fail` for a call that returns its error instead of setting errno (rustix's).
fn fail_with(report: c_int, step: ChildStep, errno: i32) -> ! {
    REPORT.errno.store(errno, Ordering::Relaxed);
    REPORT.step.store(step as u32, Ordering::Release);
    if report >= 0 {
        let words = [step as u32, errno as u32];
        // SAFETY: the buffer lives on this stack for the call.
        unsafe { libc::write(report, words.as_ptr().cast(), std::mem::size_of_val(&words)) };
    }
    // SAFETY: _exit ends the child at once, running none of the parent's exit handlers.
    unsafe { libc::_exit(127) }
}

unsafe extern "C" {
    /// The C runtime's environment (POSIX declares it; the `libc` crate does not).
    static environ: *const *const c_char;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The permissions /proc/self/maps shows for the mapping that holds `address`.
    fn permissions_at(address: usize) -> Option<String> {
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        maps.lines().find_map(|line| {
            let (range, rest) = line.split_once(' ')?;
            let (start, end) = range.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (start..end)
                .contains(&address)
                .then(|| rest.split(' ').next().unwrap_or("").to_string())
        })
    }

    #[test]
    fn the_child_stack_is_writable_with_a_guard_page_below_it() {
        let bytes = CHILD_STACK_BYTES;
        let top = map_stack(bytes).expect("a stack") as usize;
        let bottom = top - bytes;
        assert_eq!(permissions_at(top - 1).as_deref(), Some("rw-p"));
        assert_eq!(permissions_at(bottom).as_deref(), Some("rw-p"));
        assert_eq!(permissions_at(bottom - 1).as_deref(), Some("---p"));
    }

    #[test]
    fn a_stack_that_cannot_be_mapped_is_an_error_not_a_crash() {
        let error = map_stack(usize::MAX / 2).expect_err("no room for half the address space");
        assert_eq!(error.raw_os_error(), Some(libc::ENOMEM));
        let error = map_stack(usize::MAX).expect_err("the guard page does not fit");
        assert_eq!(error.raw_os_error(), Some(libc::ENOMEM));
    }
}
