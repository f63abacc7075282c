//! bundle-testd: a small daemon for bundle-init's tests and demo. It does what a test needs
//! a daemon to do and writes down what happened to it, from the inside.
//!
//! ```text
//! bundle-testd [--name NAME] [--log FILE] [--ignore SIG]... [--die-on SIG]...
//!              [--exit-after DURATION CODE] [--listen HOST:PORT] [--orphans N]
//!              [--flood BYTES] [--report] [--ready-file PATH] [--timestamps]
//!              [--delay DURATION] [--notify-fd FD] [--listen-unix PATH]
//!              [--exit-runs N FILE] [--line-writes] [--tree] [--silent-clients N]
//!              [--write-to PATH TEXT]... [--lines N] [--last-words TEXT]
//!              [--workers N] [--worker-sessions] [--daemonize] [--show-env NAME]...
//!              [--sd-notify TEXT]... [--watchdog] [--http] [--hang-on SIG]...
//!              [--close-on SIG]...
//! ```
//! - every signal received is printed and appended to FILE as `NAME PID SIGNAL`;
//! - TERM, INT and QUIT end it by that same signal (unless `--ignore`d), as most daemons do;
//!   `--die-on` adds more (the seed's firewall dies on USR1); other signals are only noted;
//! - `--listen` serves TCP: each line received is answered with `NAME PID: line`;
//! - `--orphans N` makes N processes whose parent exits at once (a zombie flood for PID 1);
//! - `--silent-clients N` connects N times to bundle-init's control socket (the name derived
//!   from its PID namespace, as the client finds it) and sends nothing, then says
//!   `NAME PID holding N connections`;
//! - `--tree` makes a leftover tree: a child in a new session, and its child; both keep
//!   every signal but KILL blocked, so TERM never ends them. The child prints
//!   `NAME tree CHILD GRANDCHILD` once both exist;
//! - `--flood BYTES` writes BYTES of numbered lines to stdout, then goes on running;
//!   in 64 KiB writes, or one write per line with `--line-writes` (each then is atomic on a
//!   pipe, as a well-behaved unprefixed daemon's lines are);
//! - `--delay` waits before listening and saying "started" (a slow daemon); `--notify-fd`
//!   then writes a newline to that descriptor; `--listen-unix` accepts on a Unix socket;
//! - `--exit-runs N FILE`: only the first N runs (counted by appending a line to FILE) obey
//!   `--exit-after`; later runs keep going, so a test can crash a daemon a known number of times
//!   and then stop a run that is certain to be up;
//! - `--timestamps` ends every noted line with ` t=NANOS` (CLOCK_MONOTONIC), for benchmarks;
//! - `--write-to PATH TEXT` opens PATH for writing (`/dev/stdout`, as a shell's `echo >
//!   /dev/stdout` would) and writes TEXT and a newline to it; if it cannot, it says
//!   `NAME PID cannot open PATH: REASON` on stderr. In order, after "started";
//! - `--hostile-lines N FILE` writes N lines of any bytes but newline (control characters,
//!   invalid UTF-8, characters of every length, lines up to 3 pipe buffers long) to stdout
//!   and stderr in turn, and copies what went to each into FILE.stdout and FILE.stderr;
//! - `--lines N` writes N short lines to stdout, `1` to `N`, one write each (a chatty
//!   daemon whose whole output fits in the pipes' buffers), then goes on running;
//! - `--last-words TEXT`: at `--exit-after`, after saying so, writes TEXT to stdout without
//!   a newline: a final partial line;
//! - `--workers N` forks N workers once started, as nginx's master does: each says
//!   `NAME-worker PID worker`, serves the same listener, notes its own signals and never
//!   exits by itself; with `--worker-sessions` each is in a session of its own, as
//!   postgres's backends are, so no signal to the master's group reaches them;
//! - `--daemonize` puts itself in the background once its listener is bound, as a daemon
//!   without its foreground flag does: the process bundle-init started exits 0, and a
//!   child in a new session goes on;
//! - `--report` prints, from /proc/self, what the process was given: signal mask, ignored
//!   signals, descriptors, uid/gid/groups, no_new_privs, umask, nice, limits (`limit-nofile`
//!   ... `limit-as` as `SOFT:HARD`), oom_score_adj, process group, environment.
//! - `--sd-notify TEXT` (repeatable) sends TEXT as one datagram to `NOTIFY_SOCKET`
//!   (systemd's protocol; `@NAME` is an abstract socket) after "started", in order, and
//!   says `NAME PID notified TEXT`; `--watchdog` then sends `WATCHDOG=1` every half of
//!   `WATCHDOG_USEC`, as `sd_watchdog_enabled` tells a daemon to;
//! - `--http`: the listener speaks HTTP: each request (up to its blank line) gets
//!   `200 OK`, and the connection is closed;
//! - `--hang-on SIG`: from that signal on it answers nothing and pings no more (a hung
//!   daemon: its port still accepts, as the kernel's backlog does); `--close-on SIG`
//!   closes its listener instead (a dead port: connects are refused);
//! - `--show-env NAME` (repeatable) prints `NAME PID env NAME=VALUE` (or `NAME unset`) at
//!   start: the value of one variable, where `--report` lists only names.
//!
//! - `--announce-exec FD PROGRAM [ARG]...` (first, alone) writes one byte to FD, closes it
//!   and becomes PROGRAM, changing nothing else. The tests start bundle-init through it
//!   under `unshare --fork`: the byte says the fork is done, so a test blocks on it instead
//!   of polling /proc for bundle-init's host pid.
//!
//! `no_main` for the same reason as bundle-init: Rust's start-up code would ignore SIGPIPE
//! and spoil the report of what the process inherited.
#![no_main]

use std::ffi::{CStr, OsStr, OsString, c_char, c_int};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use bundle_init::signal::{Sig, parse_signal};
use bundle_init::sys::{self, POLLIN, PollFd, SIGINFO_SIZE, SigSet, SignalInfo, libc_sig};

use libc::{_exit, execv, fork, waitpid};

mod workloads;
use workloads::*;

struct Options {
    name: String,
    log: Option<String>,
    ignore: Vec<i32>,
    die_on: Vec<i32>,
    exit_after: Option<(Duration, i32)>,
    exit_runs: Option<(u64, String)>,
    listen: Option<String>,
    orphans: u32,
    tree: bool,
    workers: u32,
    worker_sessions: bool,
    daemonize: bool,
    silent_clients: u32,
    flood: u64,
    line_writes: bool,
    report: bool,
    show_env: Vec<String>,
    ready_file: Option<String>,
    timestamps: bool,
    delay: Duration,
    notify_fd: Option<i32>,
    listen_unix: Option<String>,
    write_to: Vec<(String, String)>,
    lines: u64,
    hostile: Option<(u64, String)>,
    last_words: Option<String>,
    sd_notify: Vec<String>,
    watchdog: bool,
    http: bool,
    hang_on: Vec<i32>,
    close_on: Vec<i32>,
}

#[unsafe(no_mangle)]
extern "C" fn main(argc: c_int, argv: *const *const c_char) -> c_int {
    // Before anything else: the launcher must hand on the mask and dispositions untouched.
    // SAFETY: the C runtime passes argc valid, NUL-terminated strings.
    if argc >= 4 && unsafe { CStr::from_ptr(*argv.add(1)) } == c"--announce-exec" {
        return announce_and_exec(argv);
    }
    // Block first: a signal that comes while we start is noted, not fatal. (--report reads
    // the inherited mask from the saved copy below.)
    let inherited = sys::block_signals(&SigSet::full()).unwrap_or(SigSet::empty());
    let mut args = Vec::new();
    for i in 1..argc.max(0) as usize {
        // SAFETY: the C runtime passes argc valid, NUL-terminated strings.
        let arg = unsafe { CStr::from_ptr(*argv.add(i)) };
        args.push(OsStr::from_bytes(arg.to_bytes()).to_os_string());
    }
    let options = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "bundle-testd: {e}");
            std::process::exit(2);
        }
    };
    run(options, inherited)
}

/// `--announce-exec FD PROGRAM [ARG]...`: one byte to FD, then exec PROGRAM with the rest.
fn announce_and_exec(argv: *const *const c_char) -> c_int {
    // SAFETY: main checked that argv[1..4] exist; they are valid, NUL-terminated strings.
    let fd = unsafe { CStr::from_ptr(*argv.add(2)) };
    if let Some(fd) = fd.to_str().ok().and_then(|n| n.parse::<i32>().ok()) {
        // SAFETY: the launcher opened FD for us and nothing else in this process uses it.
        let announce = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        let _ = rustix::io::write(&announce, b"x");
    }
    // SAFETY: argv[3..] is the C runtime's NULL-terminated array of valid strings.
    unsafe { execv(*argv.add(3), argv.add(3)) };
    let _ = writeln!(
        std::io::stderr(),
        "bundle-testd: cannot exec: {}",
        std::io::Error::last_os_error()
    );
    127
}

/// The daemon's defaults: TERM, INT and QUIT end it, as they end most daemons.
impl Default for Options {
    fn default() -> Options {
        Options {
            name: "testd".into(),
            log: None,
            ignore: vec![],
            die_on: vec![libc_sig::TERM, libc_sig::INT, libc_sig::QUIT],
            exit_after: None,
            exit_runs: None,
            listen: None,
            orphans: 0,
            tree: false,
            workers: 0,
            worker_sessions: false,
            daemonize: false,
            silent_clients: 0,
            flood: 0,
            line_writes: false,
            report: false,
            show_env: vec![],
            ready_file: None,
            timestamps: false,
            delay: Duration::ZERO,
            notify_fd: None,
            listen_unix: None,
            write_to: vec![],
            lines: 0,
            hostile: None,
            last_words: None,
            sd_notify: vec![],
            watchdog: false,
            http: false,
            hang_on: vec![],
            close_on: vec![],
        }
    }
}

fn signal(text: &str) -> Result<Sig, String> {
    parse_signal(text).map_err(|e| e.to_string())
}

fn duration(text: &str) -> Result<Duration, String> {
    bundle_init::time::parse_duration(text).map_err(|e| e.to_string())
}

fn parse(args: Vec<OsString>) -> Result<Options, String> {
    use lexopt::prelude::*;
    let mut o = Options::default();
    let mut p = lexopt::Parser::from_args(args);
    let text = |p: &mut lexopt::Parser| -> Result<String, String> {
        p.value()
            .map_err(|e| e.to_string())
            .map(|v| v.to_string_lossy().into_owned())
    };
    while let Some(arg) = p.next().map_err(|e| e.to_string())? {
        match arg {
            Long("name") => o.name = text(&mut p)?,
            Long("log") => o.log = Some(text(&mut p)?),
            Long("ignore") => o.ignore.push(signal(&text(&mut p)?)?.0),
            Long("die-on") => o.die_on.push(signal(&text(&mut p)?)?.0),
            Long("exit-after") => {
                let d = duration(&text(&mut p)?)?;
                let code = text(&mut p)?.parse().map_err(|_| "bad exit code")?;
                o.exit_after = Some((d, code));
            }
            Long("exit-runs") => {
                let n = text(&mut p)?.parse().map_err(|_| "bad run count")?;
                o.exit_runs = Some((n, text(&mut p)?));
            }
            Long("listen") => o.listen = Some(text(&mut p)?),
            Long("orphans") => o.orphans = text(&mut p)?.parse().map_err(|_| "bad count")?,
            Long("flood") => o.flood = text(&mut p)?.parse().map_err(|_| "bad byte count")?,
            Long("line-writes") => o.line_writes = true,
            Long("tree") => o.tree = true,
            Long("workers") => o.workers = text(&mut p)?.parse().map_err(|_| "bad count")?,
            Long("worker-sessions") => o.worker_sessions = true,
            Long("daemonize") => o.daemonize = true,
            Long("silent-clients") => {
                o.silent_clients = text(&mut p)?.parse().map_err(|_| "bad count")?
            }
            Long("report") => o.report = true,
            Long("show-env") => o.show_env.push(text(&mut p)?),
            Long("ready-file") => o.ready_file = Some(text(&mut p)?),
            Long("timestamps") => o.timestamps = true,
            Long("delay") => o.delay = duration(&text(&mut p)?)?,
            Long("notify-fd") => {
                o.notify_fd = Some(text(&mut p)?.parse().map_err(|_| "bad descriptor")?)
            }
            Long("listen-unix") => o.listen_unix = Some(text(&mut p)?),
            Long("write-to") => {
                let path = text(&mut p)?;
                o.write_to.push((path, text(&mut p)?));
            }
            Long("lines") => o.lines = text(&mut p)?.parse().map_err(|_| "bad line count")?,
            Long("last-words") => o.last_words = Some(text(&mut p)?),
            Long(
                flag @ ("sd-notify" | "watchdog" | "http" | "hang-on" | "close-on"
                | "hostile-lines"),
            ) => {
                let flag = flag.to_string();
                health_flag(&mut o, &flag, &mut p)?
            }
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    Ok(o)
}

/// The flags the health and log tests play the daemon with.
fn health_flag(o: &mut Options, flag: &str, p: &mut lexopt::Parser) -> Result<(), String> {
    let mut text = || -> Result<String, String> {
        p.value()
            .map_err(|e| e.to_string())
            .map(|v| v.to_string_lossy().into_owned())
    };
    match flag {
        "sd-notify" => o.sd_notify.push(text()?),
        "watchdog" => o.watchdog = true,
        "http" => o.http = true,
        "hang-on" => o.hang_on.push(signal(&text()?)?.0),
        "close-on" => o.close_on.push(signal(&text()?)?.0),
        _ => {
            let count = text()?.parse().map_err(|_| "bad line count")?;
            o.hostile = Some((count, text()?));
        }
    }
    Ok(())
}

/// Appends this run to FILE and returns how many runs came before it. One O_APPEND write
/// per run: the daemon is restarted one instance at a time, so the count is exact.
fn count_run(path: &str) -> u64 {
    let before = std::fs::read(path).unwrap_or_default();
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = f.write_all(b"run\n");
    }
    before.iter().filter(|&&b| b == b'\n').count() as u64
}

fn note(options: &Options, what: &str) {
    let line = if options.timestamps {
        // CLOCK_MONOTONIC in ns: the benchmarks compare it with when they sent something.
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let ns = t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128;
        format!("{} {} {what} t={ns}\n", options.name, std::process::id())
    } else {
        format!("{} {} {what}\n", options.name, std::process::id())
    };
    let _ = std::io::stdout().write_all(line.as_bytes());
    if let Some(path) = &options.log {
        // One write with O_APPEND: lines from several daemons never mix.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

fn run(mut options: Options, inherited: SigSet) -> i32 {
    if let Some((runs, path)) = &options.exit_runs
        && count_run(path) >= *runs
    {
        options.exit_after = None;
    }
    // Read /proc before touching our own signal state, so the report shows what we got.
    if options.report {
        report(inherited);
    }
    for name in &options.show_env {
        match std::env::var_os(name) {
            Some(value) => note(&options, &format!("env {name}={}", value.to_string_lossy())),
            None => note(&options, &format!("env {name} unset")),
        }
    }
    let held = match open_everything(&options) {
        Ok(held) => held,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "bundle-testd: {e}");
            return 1;
        }
    };
    if options.daemonize {
        put_in_background();
    }
    say_started(&options);
    if options.workers > 0 {
        start_workers(&mut options);
    }
    keep_running(&options, held)
}

/// What the daemon holds while it runs.
struct Held {
    signals: std::os::fd::OwnedFd,
    listener: Option<TcpListener>,
    /// Held for the process's life: the kernel queues connections, all a check needs.
    _unix_listener: Option<std::os::unix::net::UnixListener>,
}

fn open_everything(options: &Options) -> Result<Held, String> {
    let signals = sys::open_signalfd(&SigSet::full()).map_err(|e| format!("signalfd: {e}"))?;
    // A slow start, as real daemons have: nothing listens until it is over.
    if !options.delay.is_zero() {
        std::thread::sleep(options.delay);
    }
    let unix_listener = match &options.listen_unix {
        Some(path) => {
            let _ = std::fs::remove_file(path);
            let bound = std::os::unix::net::UnixListener::bind(path);
            Some(bound.map_err(|e| format!("listen {path}: {e}"))?)
        }
        None => None,
    };
    let listener = match &options.listen {
        Some(addr) => {
            let bound =
                TcpListener::bind(addr.as_str()).map_err(|e| format!("listen {addr}: {e}"))?;
            let _ = bound.set_nonblocking(true);
            Some(bound)
        }
        None => None,
    };
    Ok(Held {
        signals,
        listener,
        _unix_listener: unix_listener,
    })
}

/// "started" means: signals are handled and the listener (if any) accepts connections.
/// Then whatever else the options ask for at start.
fn say_started(options: &Options) {
    note(options, "started");
    if let Some(fd) = options.notify_fd {
        // SAFETY: the descriptor was given to us by number; a closed one only fails the write.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        // The s6 convention: a newline on the descriptor says "ready".
        let _ = rustix::io::write(fd, b"\n");
    }
    for (path, text) in &options.write_to {
        write_to(options, path, text);
    }
    if options.tree {
        make_tree(options);
    }
    if options.silent_clients > 0 {
        hold_silent_connections(options);
    }
    if options.orphans > 0 {
        make_orphans(options.orphans);
        note(options, &format!("made {} orphans", options.orphans));
    }
    if options.flood > 0 {
        let chunk = if options.line_writes { 1 } else { 64 * 1024 };
        flood(options.flood, chunk);
    }
    if options.lines > 0 {
        numbered_lines(options.lines);
    }
    if let Some((count, file)) = &options.hostile {
        workloads::hostile_lines(*count, file);
    }
    if let Some(path) = &options.ready_file {
        let _ = std::fs::write(path, format!("{}\n", std::process::id()));
    }
    for text in &options.sd_notify {
        sd_notify(text);
        note(options, &format!("notified {text}"));
    }
}

/// Sends `text` as one datagram to the socket named in NOTIFY_SOCKET, as `sd_notify` does.
fn sd_notify(text: &str) {
    use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketType};
    let Some(name) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let name = name.as_bytes();
    let address = match name.strip_prefix(b"@") {
        Some(abstract_name) => SocketAddrUnix::new_abstract_name(abstract_name),
        None => SocketAddrUnix::new(name),
    };
    let Ok(address) = address else {
        return;
    };
    if let Ok(socket) = rustix::net::socket(AddressFamily::UNIX, SocketType::DGRAM, None) {
        let _ = rustix::net::sendto(&socket, text.as_bytes(), SendFlags::empty(), &address);
    }
}

/// Half of WATCHDOG_USEC, when `--watchdog` asks for pings and bundle-init set it.
fn watchdog_interval(options: &Options) -> Option<Duration> {
    if !options.watchdog {
        return None;
    }
    let micros: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    Some(Duration::from_micros(micros / 2).max(Duration::from_millis(1)))
}

/// Opens `path` for writing, as a program that writes to `/dev/stdout` does, and writes
/// `text` there; or says on stderr why it could not.
fn write_to(options: &Options, path: &str, text: &str) {
    let opened = std::fs::OpenOptions::new().write(true).open(path);
    let written = opened.and_then(|mut f| f.write_all(format!("{text}\n").as_bytes()));
    if let Err(e) = written {
        let _ = writeln!(
            std::io::stderr(),
            "{} {} cannot open {path}: {e}",
            options.name,
            std::process::id()
        );
    }
}

/// Notes signals and serves connections until a signal ends it or `--exit-after` comes.
fn keep_running(options: &Options, held: Held) -> i32 {
    let started = Instant::now();
    let mut listener = held.listener;
    let mut clients: Vec<(TcpStream, Vec<u8>)> = Vec::new();
    let ping_every = watchdog_interval(options);
    let mut next_ping = ping_every.map(|every| Instant::now() + every);
    let mut hung = false;
    loop {
        let watched = |fd: i32| PollFd {
            fd,
            events: POLLIN,
            revents: 0,
        };
        let mut fds = vec![watched(held.signals.as_raw_fd())];
        if !hung {
            fds.extend(listener.iter().map(|l| watched(l.as_raw_fd())));
            fds.extend(clients.iter().map(|(c, _)| watched(c.as_raw_fd())));
        }
        let exit_in = match options.exit_after {
            Some((after, code)) => {
                let left = after.saturating_sub(started.elapsed());
                if left.is_zero() {
                    return exit_now(options, code);
                }
                Some(left)
            }
            None => None,
        };
        let ping_in = next_ping.map(|at| at.saturating_duration_since(Instant::now()));
        let timeout = match exit_in.into_iter().chain(ping_in).min() {
            Some(wait) => wait.as_millis().max(1) as i32,
            None => -1,
        };
        let _ = sys::wait_for(&mut fds, timeout);
        if fds[0].revents != 0 {
            for sig in note_signals(options, &held.signals) {
                hung |= options.hang_on.contains(&sig);
                if options.close_on.contains(&sig) {
                    listener = None;
                }
            }
        }
        if let (Some(at), Some(every)) = (next_ping, ping_every)
            && Instant::now() >= at
            && !hung
        {
            sd_notify("WATCHDOG=1");
            next_ping = Some(Instant::now() + every);
        }
        if hung {
            next_ping = None;
            continue;
        }
        if let Some(l) = &listener {
            while let Ok((stream, _)) = l.accept() {
                let _ = stream.set_nonblocking(true);
                clients.push((stream, Vec::new()));
            }
        }
        clients.retain_mut(|(stream, pending)| serve(options, stream, pending));
    }
}

/// `--exit-after` has come: says so, then leaves its last words without a newline.
fn exit_now(options: &Options, code: i32) -> i32 {
    note(options, &format!("exiting with code {code}"));
    if let Some(text) = &options.last_words {
        let mut out = std::io::stdout();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
    code
}

/// One read per wake-up: the signalfd blocks, and poll tells us when there is more.
/// Returns the signals noted (not SIGCHLD).
fn note_signals(options: &Options, signals: &std::os::fd::OwnedFd) -> Vec<i32> {
    let mut buf = [0u8; SIGINFO_SIZE * 8];
    let mut noted = Vec::new();
    let Ok(n) = rustix::io::read(signals, &mut buf) else {
        return noted;
    };
    for record in buf[..n].chunks_exact(SIGINFO_SIZE) {
        let Some(info) = SignalInfo::parse(record) else {
            continue;
        };
        if info.signo == libc_sig::CHLD {
            reap_children();
            continue;
        }
        note(options, &format!("got {}", Sig(info.signo)));
        if options.die_on.contains(&info.signo) && !options.ignore.contains(&info.signo) {
            die_by(info.signo);
        }
        noted.push(info.signo);
    }
    noted
}

/// Answers complete lines; false when the client has gone.
fn serve(options: &Options, stream: &mut TcpStream, pending: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    match stream.read(&mut buf) {
        Ok(0) => return false,
        Ok(n) => pending.extend_from_slice(&buf[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
        Err(_) => return false,
    }
    if options.http {
        return serve_http(stream, pending);
    }
    while let Some(end) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=end).collect();
        let reply = format!(
            "{} {}: {}",
            options.name,
            std::process::id(),
            String::from_utf8_lossy(&line)
        );
        if stream.write_all(reply.as_bytes()).is_err() {
            return false;
        }
    }
    true
}

/// `--http`: a whole request (up to its blank line) gets 200 and the connection closes.
fn serve_http(stream: &mut TcpStream, pending: &[u8]) -> bool {
    if !pending.windows(4).any(|w| w == b"\r\n\r\n") {
        return true;
    }
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";
    let _ = stream.write_all(answer);
    false
}

fn die_by(sig: i32) -> ! {
    // Default disposition, only this signal unblocked, then the signal itself: the parent
    // sees a death by it, as with a daemon that does not catch it. Everything else stays
    // blocked: other signals still pending (a storm's USR2s) must not kill us first.
    let mut mask = SigSet::full();
    mask.remove(sig);
    let _ = sys::set_signal_mask(&mask);
    let _ = sys::send_signal(std::process::id() as i32, sig);
    // Still here: the signal was ignored by inheritance. Report it the shell's way.
    std::process::exit(128 + sig);
}

fn reap_children() {
    let mut status = 0;
    // SAFETY: plain waitpid with a valid status pointer.
    while unsafe { waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}

/// Signals whose disposition is "ignore", as a /proc-style bit mask (bit N-1 for signal N).
fn ignored_signals() -> u64 {
    let mut mask = 0u64;
    for sig in 1..=64 {
        // SAFETY: an all-zero sigaction is a valid value to be overwritten; with a null new
        // action, sigaction only reads the current one into it.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: see above; an invalid signal number only returns EINVAL.
        let ok = unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) } == 0;
        if ok && old.sa_sigaction == libc::SIG_IGN {
            mask |= 1 << (sig - 1);
        }
    }
    mask
}

/// nice, each limit a bundle file can set (as `SOFT:HARD`, `unlimited` for none) and
/// oom_score_adj, as `report` lines.
fn process_settings() -> Vec<String> {
    use rustix::process::{Resource, getpriority_process, getrlimit};
    let nice = getpriority_process(None).map_or("?".to_string(), |n| n.to_string());
    let mut lines = vec![format!("report nice={nice}")];
    let value = |n: Option<u64>| n.map_or("unlimited".to_string(), |n| n.to_string());
    for (key, resource) in [
        ("nofile", Resource::Nofile),
        ("nproc", Resource::Nproc),
        ("core", Resource::Core),
        ("memlock", Resource::Memlock),
        ("stack", Resource::Stack),
        ("as", Resource::As),
    ] {
        let limit = getrlimit(resource);
        let (soft, hard) = (value(limit.current), value(limit.maximum));
        lines.push(format!("report limit-{key}={soft}:{hard}"));
    }
    let adj = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
    lines.push(format!("report oom_score_adj={}", adj.trim()));
    lines
}

fn report(inherited: SigSet) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    // The mask we were started with (we blocked everything first thing), as /proc prints it.
    let mut lines = vec![format!("report SigBlk={:016x}", inherited.first_word())];
    // Asked of sigaction, not read from /proc: under an emulator /proc shows the
    // emulator's own dispositions, sigaction what this program was given.
    lines.push(format!("report SigIgn={:016x}", ignored_signals()));
    for key in ["Uid", "Gid", "Groups", "NoNewPrivs", "Umask"] {
        let value = status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        lines.push(format!("report {key}={value}"));
    }
    lines.extend(process_settings());
    let mut fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    fds.sort();
    // The directory handle read_dir used is gone by now; drop numbers that no longer exist.
    fds.retain(|&fd| {
        // SAFETY: fcntl on a number that may be closed by now just fails with EBADF.
        rustix::io::fcntl_getfd(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }).is_ok()
    });
    let fds: Vec<String> = fds.iter().map(i32::to_string).collect();
    lines.push(format!("report fds={}", fds.join(",")));
    let pid = rustix::process::getpid();
    let pgid = rustix::process::getpgrp();
    lines.push(format!("report own-process-group={}", pid == pgid));
    let mut env: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .collect();
    env.sort();
    lines.push(format!("report env={}", env.join(",")));
    let mut out = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
}
