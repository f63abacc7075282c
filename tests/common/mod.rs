//! Helpers for running the built bundle-init as a real PID 1 (`unshare --pid --fork
//! --mount-proc`) or as a plain child (then it is a subreaper), and for waiting on what it
//! and its daemons print: tests wait for lines, never for time.
#![allow(dead_code)]

pub mod engine;
pub mod engines;

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The binary under test: the one cargo built, or BUNDLE_INIT_BIN (`just test-tiny` points
/// it at the tiny build, so the same suite checks both).
pub fn bundle_init_bin() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("BUNDLE_INIT_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_bundle-init").to_string())
    })
}
/// The test daemon: the one cargo built, or BUNDLE_INIT_TESTD (the aarch64 run points both
/// at the aarch64 builds). Daemons find it on PATH through `test_path`.
pub fn testd() -> &'static str {
    static BIN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("BUNDLE_INIT_TESTD")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_bundle-testd").to_string())
    })
}

/// Whether the binaries under test run under an emulator (BUNDLE_INIT_EMULATED, set by
/// `just test-aarch64`).
pub fn emulated() -> bool {
    std::env::var_os("BUNDLE_INIT_EMULATED").is_some()
}

/// Why subreaper checks skip on the emulated run.
pub const QEMU_NO_SUBREAPER: &str = "qemu-user refuses PR_SET_CHILD_SUBREAPER (EINVAL), so bundle-init cannot adopt orphans when it is not PID 1";

/// On the emulated run, a check that would observe the emulator rather than bundle-init
/// is skipped: one line says which and why (on stderr, and appended to the file
/// BUNDLE_INIT_SKIPPED names, which the recipe prints). Returns whether to skip.
pub fn skip_when_emulated(check: &str, why: &str) -> bool {
    if !emulated() {
        return false;
    }
    let line = format!("SKIPPED on the emulated run: {check}: {why}\n");
    eprint!("{line}");
    if let Some(path) = std::env::var_os("BUNDLE_INIT_SKIPPED") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
    true
}

pub const HUP: i32 = 1;
pub const INT: i32 = 2;
pub const KILL: i32 = 9;
pub const USR1: i32 = 10;
pub const USR2: i32 = 12;
pub const TERM: i32 = 15;

/// Generous: CI machines are slow; a test that passes waits far less.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A reader slower than any writer: at most 1500 bytes a read (not a page, so pages free
/// up one at a time) and a pause after each. The pause sets a rate; it waits for nothing.
pub struct SlowReader<R>(pub R);

impl<R: Read> Read for SlowReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::thread::sleep(Duration::from_micros(200));
        let n = buf.len().min(1500);
        self.0.read(&mut buf[..n])
    }
}

/// The lines so far, and whether the writer has closed its end.
type Shared = Arc<(Mutex<(Vec<String>, bool)>, Condvar)>;

/// Lines a process printed, shared with the thread that reads them.
#[derive(Clone, Default)]
pub struct Lines {
    inner: Shared,
}

impl Lines {
    pub fn from_reader(source: impl Read + Send + 'static) -> Lines {
        let lines = Lines::default();
        let writer = lines.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(source);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf)
                            .trim_end_matches('\n')
                            .to_string();
                        let (lock, cvar) = &*writer.inner;
                        lock.lock().unwrap_or_else(|p| p.into_inner()).0.push(line);
                        cvar.notify_all();
                    }
                }
            }
            let (lock, cvar) = &*writer.inner;
            lock.lock().unwrap_or_else(|p| p.into_inner()).1 = true;
            cvar.notify_all();
        });
        lines
    }

    pub fn all(&self) -> Vec<String> {
        self.inner
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    pub fn text(&self) -> String {
        self.all().join("\n")
    }

    pub fn count(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.all().iter().filter(|l| pred(l)).count()
    }

    /// Waits until `count` lines match `pred`; returns the matching lines.
    pub fn wait_for_n(&self, count: usize, what: &str, pred: impl Fn(&str) -> bool) -> Vec<String> {
        self.wait_for_n_within(count, PATIENCE, what, pred)
    }

    /// `wait_for_n` for what takes longer than PATIENCE by its nature (a soak's count).
    pub fn wait_for_n_within(
        &self,
        count: usize,
        patience: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let (lock, cvar) = &*self.inner;
        let deadline = Instant::now() + patience;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut found = Vec::new();
        let mut seen = 0;
        loop {
            // Only look at lines that arrived since the last look.
            found.extend(guard.0[seen..].iter().filter(|l| pred(l)).cloned());
            seen = guard.0.len();
            if found.len() >= count {
                return found;
            }
            let now = Instant::now();
            if now >= deadline || guard.1 {
                let all = guard.0.join("\n");
                panic!(
                    "never saw {count} line(s) {what}; got {} matching. Output:\n{all}",
                    found.len()
                );
            }
            guard = cvar.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }

    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_for_n(1, what, pred).remove(0)
    }

    pub fn wait_for_text(&self, text: &str) -> String {
        self.wait_for(&format!("containing {text:?}"), |l| l.contains(text))
    }

    /// Waits until the writer closed its end (the process and its children are gone).
    pub fn wait_closed(&self) {
        let (lock, cvar) = &*self.inner;
        let deadline = Instant::now() + PATIENCE;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        while !guard.1 {
            let now = Instant::now();
            assert!(now < deadline, "output never closed");
            guard = cvar.wait_timeout(guard, deadline - now).unwrap().0;
        }
    }
}

/// Blocks until `fd` is readable (a byte, EOF, or a pidfd whose process exited), at most
/// `patience`. Returns whether it became readable.
pub fn wait_readable(fd: impl AsFd, patience: Duration) -> bool {
    let deadline = Instant::now() + patience;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = rustix::time::Timespec::try_from(left).unwrap();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Environment variable that marks every process a test starts, whoever it is re-parented
/// to later: the sweep finds them by it.
const TAG_KEY: &str = "BUNDLE_INIT_TEST_TAG";

/// A unique mark for the processes of one test. Dropping it SIGKILLs every process still
/// carrying it, so a test leaves nothing running even when bundle-init was not PID 1 and
/// its daemons were re-parented to the host's init.
pub struct ProcessTag(String);

impl Default for ProcessTag {
    fn default() -> ProcessTag {
        ProcessTag::new()
    }
}

impl ProcessTag {
    pub fn new() -> ProcessTag {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        ProcessTag(format!("{}-{n}", std::process::id()))
    }

    /// Marks the processes `command` starts (and everything they start in turn).
    pub fn mark(&self, command: &mut Command) {
        command.env(TAG_KEY, &self.0);
    }

    /// Live processes carrying this tag (zombies have no environment left to read).
    pub fn processes(&self) -> Vec<i32> {
        let entry = format!("\0{TAG_KEY}={}\0", self.0).into_bytes();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return vec![];
        };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let mut environ = vec![0];
                environ.extend(std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default());
                environ.windows(entry.len()).any(|w| w == entry)
            })
            .collect()
    }

    /// SIGKILLs every tagged process and waits for each to die, until none is left (a
    /// process may fork between the scan and the kill: the next scan finds its child).
    pub fn kill_all(&self) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            let pids = self.processes();
            if pids.is_empty() {
                return;
            }
            for pid in pids {
                kill_and_wait(pid, deadline);
            }
        }
    }
}

impl Drop for ProcessTag {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// SIGKILLs `pid` through a pidfd (no pid-reuse race) and waits until it is dead.
fn kill_and_wait(pid: i32, deadline: Instant) {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return;
    };
    let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        return; // already gone
    };
    let _ = rustix::process::pidfd_send_signal(&pidfd, rustix::process::Signal::KILL);
    wait_readable(&pidfd, deadline.saturating_duration_since(Instant::now()));
}

/// A started bundle-init (possibly inside unshare). On drop it and every process it
/// started are killed, so a failing test leaves nothing behind.
pub struct Init {
    pub child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
    held_stdout: Option<std::process::ChildStdout>,
    pub as_pid1: bool,
    exited: Option<i32>,
    /// Readable once unshare has forked the process that becomes bundle-init.
    announced: Option<OwnedFd>,
    pid1: OnceLock<i32>,
    tag: ProcessTag,
}

pub struct Launch {
    pub as_pid1: bool,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub prepare: Option<Box<dyn FnMut() -> std::io::Result<()> + Send + Sync>>,
    pub hold_stdout: bool,
    pub user: Option<u32>,
    /// As PID 1: the uid (and gid of the same number) bundle-init runs as in its namespace.
    pub pid1_user: Option<u32>,
}

/// The descriptor bundle-testd's `--announce-exec` writes to: high, so that no test's
/// `prepare` uses it, and closed before bundle-init runs.
const ANNOUNCE_FD: i32 = 1000;

impl Launch {
    pub fn pid1(args: &[&str]) -> Launch {
        Launch {
            as_pid1: true,
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![],
            prepare: None,
            hold_stdout: false,
            user: None,
            pid1_user: None,
        }
    }

    /// Runs bundle-init as this uid and the gid of the same number.
    pub fn user(mut self, id: u32) -> Launch {
        self.user = Some(id);
        self
    }

    /// As PID 1, runs bundle-init as this uid and the gid of the same number, with no
    /// supplementary groups and no capabilities: `setpriv` inside the new namespace (unshare
    /// itself needs root), as `podman run --user N:N` would.
    pub fn pid1_as_user(mut self, id: u32) -> Launch {
        assert!(
            self.as_pid1,
            "pid1_as_user is for a PID-1 launch; use user()"
        );
        self.pid1_user = Some(id);
        self
    }

    pub fn subreaper(args: &[&str]) -> Launch {
        Launch {
            as_pid1: false,
            ..Launch::pid1(args)
        }
    }

    pub fn env(mut self, key: &str, value: &str) -> Launch {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Leaves bundle-init's stdout unread (a stuck log reader) until `release_stdout`.
    pub fn hold_stdout(mut self) -> Launch {
        self.hold_stdout = true;
        self
    }

    /// Runs `f` in the forked child before exec (signal masks, descriptors...).
    pub fn prepare(
        mut self,
        f: impl FnMut() -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Launch {
        self.prepare = Some(Box::new(f));
        self
    }

    /// bundle-init itself, or as PID 1: unshare, which forks bundle-testd, which announces
    /// the fork and execs bundle-init.
    fn command(&self) -> Command {
        if !self.as_pid1 {
            return Command::new(bundle_init_bin());
        }
        let mut c = Command::new("unshare");
        c.args(["--pid", "--fork", "--mount-proc"]);
        if let Some(id) = self.pid1_user {
            let id = id.to_string();
            c.args(["setpriv", "--reuid", &id, "--regid", &id, "--clear-groups"]);
        }
        c.args([testd(), "--announce-exec"]);
        c.arg(ANNOUNCE_FD.to_string()).arg(bundle_init_bin());
        c
    }

    pub fn start(self) -> Init {
        let tag = ProcessTag::new();
        let (announced, announce) = if self.as_pid1 {
            let (read, write) =
                rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("a pipe");
            (Some(read), Some(write))
        } else {
            (None, None)
        };
        let mut command = self.command();
        command
            .args(&self.args)
            .env("PATH", test_path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        tag.mark(&mut command);
        if let Some(id) = self.user {
            command.uid(id).gid(id);
        }
        let mut prepare = self.prepare;
        let announce_fd = announce.as_ref().map(|fd| fd.as_raw_fd());
        // SAFETY: runs between fork and exec; the closures used by the tests only make
        // system calls.
        unsafe {
            command.pre_exec(move || {
                only_standard_descriptors();
                // Before `prepare`, which may lower RLIMIT_NOFILE under ANNOUNCE_FD.
                if let Some(fd) = announce_fd {
                    give_descriptor(fd, ANNOUNCE_FD)?;
                }
                if let Some(f) = prepare.as_mut() {
                    f()?;
                }
                Ok(())
            });
        }
        let mut child = command
            .spawn()
            .expect("cannot start bundle-init (is unshare installed, are we root?)");
        drop(announce);
        let (stdout, held_stdout) = if self.hold_stdout {
            (Lines::default(), child.stdout.take())
        } else {
            (Lines::from_reader(child.stdout.take().unwrap()), None)
        };
        let stderr = Lines::from_reader(child.stderr.take().unwrap());
        Init {
            child,
            stdout,
            stderr,
            held_stdout,
            as_pid1: self.as_pid1,
            exited: None,
            announced,
            pid1: OnceLock::new(),
            tag,
        }
    }
}

/// In a forked child: makes `fd` available as `target`, without close-on-exec.
fn give_descriptor(fd: i32, target: i32) -> std::io::Result<()> {
    // SAFETY: `fd` is the launcher's pipe, open until the parent drops it after spawn.
    let source = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    // SAFETY: `target` is a number no test uses; dup2 replaces whatever is there.
    let mut target = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(target) };
    let result = rustix::io::dup2(source, &mut target);
    std::mem::forget(target);
    Ok(result?)
}

/// PATH for the child: where bundle-testd was built, then the system.
pub fn test_path() -> String {
    let dir = Path::new(testd()).parent().unwrap();
    format!("{}:/usr/local/bin:/usr/bin:/bin", dir.display())
}

/// Marks every descriptor above 2 close-on-exec, so bundle-init starts with 0, 1, 2 only
/// whatever the test runner left open.
pub fn only_standard_descriptors() {
    for fd in 3..1024 {
        // SAFETY: fcntl on a number that may not be open just fails with EBADF.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        if let Ok(flags) = rustix::io::fcntl_getfd(fd) {
            let _ = rustix::io::fcntl_setfd(fd, flags | rustix::io::FdFlags::CLOEXEC);
        }
    }
}

impl Init {
    /// Host pid of bundle-init itself (inside unshare it is unshare's only child).
    pub fn pid(&self) -> i32 {
        let outer = self.child.id() as i32;
        let Some(announced) = &self.announced else {
            return outer;
        };
        *self.pid1.get_or_init(|| {
            assert!(
                wait_readable(announced, PATIENCE),
                "unshare never forked bundle-init"
            );
            let children = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
                .unwrap_or_default();
            let pid = children.split_whitespace().next();
            pid.expect("unshare's child announced itself")
                .parse()
                .unwrap()
        })
    }

    /// Host pids of every process this launch started that is still there (bundle-init and
    /// whatever descends from it, wherever it was re-parented), zombies included.
    pub fn tagged_processes(&self) -> Vec<i32> {
        self.tag.processes()
    }

    /// Closes the read end of a held stdout: every write bundle-init makes gets EPIPE.
    pub fn close_stdout(&mut self) {
        drop(self.held_stdout.take().expect("stdout was not held"));
        // Nothing will ever be read from it: its lines are complete as they are, empty.
        self.stdout.inner.0.lock().unwrap().1 = true;
    }

    /// Starts reading a held stdout slowly, so the pipe stays nearly full and every writer
    /// waits for room; returns its lines (also in `self.stdout` from now on).
    pub fn release_stdout_slowly(&mut self) -> Lines {
        let held = self.held_stdout.take().expect("stdout was not held");
        self.stdout = Lines::from_reader(SlowReader(held));
        self.stdout.clone()
    }

    /// Starts reading a held stdout; returns its lines (also in `self.stdout` from now on).
    pub fn release_stdout(&mut self) -> Lines {
        let held = self.held_stdout.take().expect("stdout was not held");
        self.stdout = Lines::from_reader(held);
        self.stdout.clone()
    }

    pub fn signal(&self, sig: i32) {
        rustix_kill(self.pid(), sig);
    }

    /// Waits for bundle-init to exit; returns its code (128+N for a signal, as a shell would).
    pub fn wait_exit(&mut self) -> i32 {
        if let Some(code) = self.exited {
            return code;
        }
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        // Our own child, not yet waited for: the pid cannot have been reused.
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .expect("pidfd_open");
        if !wait_readable(&pidfd, PATIENCE) {
            panic!(
                "bundle-init did not exit.\nstdout:\n{}\nstderr:\n{}",
                self.stdout.text(),
                self.stderr.text()
            );
        }
        let status = self.child.wait().unwrap();
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        self.exited = Some(code);
        // A held stdout is not being read: there is nothing to wait for.
        if self.held_stdout.is_none() {
            self.stdout.wait_closed();
        }
        self.stderr.wait_closed();
        code
    }

    /// Waits at most `patience` for bundle-init to exit; returns whether it did (then
    /// `wait_exit` returns at once).
    pub fn exits_within(&self, patience: Duration) -> bool {
        if self.exited.is_some() {
            return true;
        }
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        // Our own child, not yet waited for: the pid cannot have been reused.
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .expect("pidfd_open");
        wait_readable(&pidfd, patience)
    }

    /// Waits for the exit and returns the time it took from `since`.
    pub fn wait_exit_timed(&mut self, since: Instant) -> (i32, Duration) {
        let code = self.wait_exit();
        (code, since.elapsed())
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        // bundle-init, its daemons, and whatever they left behind, wherever it went now.
        self.tag.kill_all();
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn rustix_kill(pid: i32, sig: i32) {
    bundle_init::sys::send_signal(pid, sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

/// `NAME PID` from a bundle-testd `started` line, e.g. `[egress] egress 7 started`.
pub fn started_pid(line: &str) -> i32 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "started")
        .expect("a started line");
    words[at - 1].parse().expect("a pid before 'started'")
}

/// Field `key=` of a bundle-testd `report` line.
pub fn report_value(lines: &Lines, key: &str) -> String {
    let prefix = format!("report {key}=");
    let line = lines.wait_for(&format!("reporting {key}"), |l| l.contains(&prefix));
    line.split_once(&prefix).unwrap().1.to_string()
}

/// Waits until the text of the file at `path` satisfies `done`, woken by inotify on its
/// directory (the file may not exist yet); returns the text.
pub fn wait_for_file(path: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    use rustix::fs::inotify;
    let dir = Path::new(path).parent().unwrap();
    let events = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)
        .expect("inotify");
    inotify::add_watch(
        &events,
        dir,
        inotify::WatchFlags::CREATE | inotify::WatchFlags::MODIFY | inotify::WatchFlags::MOVED_TO,
    )
    .expect("a watch on the file's directory");
    let deadline = Instant::now() + PATIENCE;
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    loop {
        // Read after the watch is set: a change from now on wakes the poll below.
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if done(&text) {
            return text;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            wait_readable(&events, left),
            "never saw {what} in {path}:\n{text}"
        );
        // Drain the events: only "something changed" matters.
        let mut reader = inotify::Reader::new(&events, &mut buf);
        while reader.next().is_ok() {}
    }
}

/// A scratch directory for one test, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("bundle-init-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// Where `name` would be in the directory, as a string for command lines.
    pub fn path(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }

    pub fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Voluntary plus involuntary context switches of a process so far.
pub fn context_switches(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches"))
        .map(|l| l.split_whitespace().last().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Waits until `pid` is idle: blocked in poll(2), or in read(2) on its signalfd when nothing
/// else can happen (syscalls 7 and 0 on x86_64). The kernel announces no "went to sleep"
/// event, so this is the one helper that samples: /proc, once a millisecond, to a deadline.
pub fn wait_until_idle(pid: i32) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        // 271 (ppoll): what qemu-user makes of an aarch64 poll on an x86_64 host.
        if syscall.starts_with("7 ") || syscall.starts_with("0 ") || syscall.starts_with("271 ") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} never went idle: {syscall}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `pid` sleeps in a write to a full pipe (the kernel's wait channel says
/// so). Samples /proc like `wait_until_idle`, for the same reason.
pub fn wait_until_blocked_writing(pid: i32) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
        if wchan.contains("pipe_write") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} never blocked writing: {wchan}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

impl Init {
    /// Host pids of the processes this launch started, other than bundle-init itself and
    /// the unshare around it: its daemons and what they started.
    pub fn daemon_processes(&self) -> Vec<i32> {
        let outer = [self.pid(), self.child.id() as i32];
        self.tagged_processes()
            .into_iter()
            .filter(|pid| !outer.contains(pid))
            .collect()
    }
}

/// Pids of the zombies among `pid`'s children.
pub fn zombie_children(pid: i32) -> Vec<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // State is the first field after the parenthesised command name.
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .collect()
}

/// Runs `bundle-init ARGS` inside `init`'s PID and mount namespaces, as `podman exec` would.
pub fn in_namespace(init: &Init, args: &[&str]) -> std::process::Output {
    let pid = init.pid().to_string();
    Command::new("nsenter")
        .args([
            "--target",
            &pid,
            "--pid",
            "--mount",
            "--",
            bundle_init_bin(),
        ])
        .args(args)
        .output()
        .expect("nsenter from util-linux")
}

/// A barrier for negative checks: waits until `daemons` daemons noted a USR2 sent after
/// the signals under test. bundle-testd reads lower signal numbers first (HUP 1, USR1 10
/// before USR2 12), so whatever those earlier signals made a daemon print has arrived too.
pub fn wait_for_usr2_barrier(lines: &Lines, daemons: usize) {
    lines.wait_for_n(daemons, "about the SIGUSR2 barrier", |l| {
        l.ends_with("got SIGUSR2")
    });
}

/// After HUP then USR2 were sent to the seed bundle: once all four daemons noted USR2,
/// exactly one HUP was seen, by egress.
pub fn assert_hup_reached_egress_only(lines: &Lines) {
    wait_for_usr2_barrier(lines, 4);
    let hups: Vec<String> = lines
        .all()
        .into_iter()
        .filter(|l| l.ends_with("got SIGHUP"))
        .collect();
    assert_eq!(hups.len(), 1, "{hups:?}");
    assert!(hups[0].starts_with("[egress] egress "), "{hups:?}");
}

/// Two prefixed daemons flood, and one with `prefix-output = no` floods the same stdout one
/// line per write. Behind a slow reader, every writer keeps waiting for room in the pipe.
pub const MIXED_WRITERS_BUNDLE: &str = "\
[a]\nrun = bundle-testd --name a --flood 1500000 --exit-after 0s 0\n\
[b]\nrun = bundle-testd --name b --flood 1500000 --exit-after 0s 0\n\
[plain]\nprefix-output = no\n\
run = bundle-testd --name plain --flood 1000000 --line-writes --exit-after 0s 0\n";

/// Checks every line of a MIXED_WRITERS_BUNDLE run: each is a whole flood line, prefixed
/// for a and b, bare for plain, numbered in order per writer, or a daemon's own note.
/// A record cut by a partial write shows up as a line of the wrong length or an
/// unprefixed fragment.
pub fn assert_no_spliced_line(lines: &[String]) {
    let mut next: std::collections::HashMap<&str, u64> = [("a", 0), ("b", 0), ("plain", 0)].into();
    let mut corrupted = Vec::new();
    for line in lines {
        let (name, rest) = match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
            Some((name, rest)) if name == "a" || name == "b" => (name, rest),
            _ => ("plain", line.as_str()),
        };
        let Some(number) = rest.strip_prefix("flood line ") else {
            if !rest.starts_with(&format!("{name} ")) {
                corrupted.push(line.clone());
            }
            continue;
        };
        let well_formed = number.len() == 10 + 1 + 71 && number[11..].bytes().all(|b| b == b'x');
        match number[..10.min(number.len())].parse::<u64>() {
            Ok(n) if well_formed => {
                if n != next[name] {
                    corrupted.push(format!("{line} (expected number {})", next[name]));
                }
                next.insert(name, n + 1);
            }
            _ => corrupted.push(line.clone()),
        }
    }
    assert!(
        corrupted.is_empty(),
        "{} corrupted lines of {}, first: {:?}",
        corrupted.len(),
        lines.len(),
        &corrupted[..corrupted.len().min(5)]
    );
    // 94-byte lines: all of each flood arrived.
    assert_eq!((next["a"], next["b"], next["plain"]), (15958, 15958, 10639));
}

/// A numeric field of /proc/PID/status, in its unit (KiB for VmRSS).
pub fn status_field(pid: i32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// How many descriptors a process has open.
pub fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// RLIMIT_NOFILE as soft:hard, set in the child before bundle-init runs.
pub fn open_file_limit(soft: u64, hard: u64) -> impl FnMut() -> std::io::Result<()> + Send + Sync {
    move || {
        let limit = rustix::process::Rlimit {
            current: Some(soft),
            maximum: Some(hard),
        };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, limit)?;
        Ok(())
    }
}

/// Pid of each daemon from its `[name] name PID started` lines (the latest one wins).
pub fn daemon_pids(lines: &Lines) -> std::collections::HashMap<String, i32> {
    let mut pids = std::collections::HashMap::new();
    for line in lines.all() {
        if let Some(rest) = line.strip_prefix('[')
            && line.ends_with(" started")
        {
            let name = rest.split(']').next().unwrap().to_string();
            pids.insert(name, started_pid(&line));
        }
    }
    pids
}

/// A TCP connection held open to a `bundle-testd --listen` daemon, which answers each line
/// with `NAME PID: line`: the client whose connection a restart must not drop.
pub struct HeldConnection {
    stream: std::net::TcpStream,
    reader: BufReader<std::net::TcpStream>,
}

impl HeldConnection {
    pub fn open(addr: &str) -> HeldConnection {
        let stream = std::net::TcpStream::connect(addr)
            .unwrap_or_else(|e| panic!("nothing listens on {addr}: {e}"));
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        HeldConnection { stream, reader }
    }

    /// Sends one line and returns the answer.
    pub fn ask(&mut self, text: &str) -> String {
        use std::io::Write;
        (&self.stream)
            .write_all(format!("{text}\n").as_bytes())
            .unwrap();
        let mut reply = String::new();
        self.reader.read_line(&mut reply).unwrap();
        reply
    }
}

/// A new pseudo-terminal: (master, slave), both close-on-exec and neither a controlling
/// terminal. Whatever is written to the slave waits in the kernel until the master reads.
pub fn pty_pair() -> (OwnedFd, OwnedFd) {
    use std::os::fd::FromRawFd;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: posix_openpt has no memory arguments; it returns a new descriptor or -1.
    let master = unsafe { libc::posix_openpt(flags) };
    assert!(
        master >= 0,
        "posix_openpt: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor nothing else owns.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    // SAFETY: grantpt and unlockpt take the master's number only.
    let unlocked = unsafe {
        libc::grantpt(master.as_raw_fd()) == 0 && libc::unlockpt(master.as_raw_fd()) == 0
    };
    assert!(
        unlocked,
        "grantpt/unlockpt: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: TIOCGPTPEER takes the open flags as an integer and returns the slave's new
    // descriptor (Linux 4.13+), with no path to look up.
    let slave = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    assert!(
        slave >= 0,
        "TIOCGPTPEER: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a fresh descriptor nothing else owns.
    (master, unsafe { OwnedFd::from_raw_fd(slave) })
}

/// For `Launch::prepare`: puts `fd` on the child's stdout (dup2 clears close-on-exec).
pub fn stdout_onto(fd: i32) -> impl FnMut() -> std::io::Result<()> + Send + Sync {
    move || {
        // SAFETY: dup2 has no memory arguments; `fd` is open in the child, a copy of the
        // test's own descriptor, until exec closes it.
        if unsafe { libc::dup2(fd, 1) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}
