//! Benchmarks bundle-init against tini, catatonit, dumb-init, s6 and supervisord in one run,
//! each as PID 1 of a new PID namespace with its own /proc, as in a container (`unshare
//! --pid --fork --mount-proc`), and prints markdown tables with medians, spread and ratios
//! to tini (or to the plain baseline).
//!
//! Runs are interleaved (each round visits the inits in a rotated order) so that drift hits
//! all of them alike, and every loop is bounded in count and in time.
//!
//! Usage: bundle-init-bench --bundle-init PATH --testd PATH [--baseline PATH] [--shipped PATH] [--quick]
//! [--only METRIC]. `--baseline` adds another bundle-init build (an older one) to the
//! restart and 250-daemon start tables, measured in the same run.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut [i64; 2]) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
}

const SIGKILL: i32 = 9;
const SIGHUP: i32 = 1;
const SIGUSR1: i32 = 10;
const SIGTERM: i32 = 15;

/// CLOCK_MONOTONIC in ns: the same clock bundle-testd stamps its lines with.
fn mono_ns() -> u128 {
    let mut ts = [0i64; 2];
    // SAFETY: a valid pointer to two longs, the layout of struct timespec on x86_64.
    unsafe { clock_gettime(1, &mut ts) };
    ts[0] as u128 * 1_000_000_000 + ts[1] as u128
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: plain kill(2).
    unsafe { kill(pid, sig) };
}

struct Settings {
    quick: bool,
    bundle_init: PathBuf,
    /// Another bundle-init to measure beside it (`--baseline PATH`), in the metrics that
    /// compare builds: restart and the 250-daemon start.
    baseline: Option<PathBuf>,
    /// The file that ships (`--shipped PATH`: the size-optimised build), for the size table.
    shipped: Option<PathBuf>,
    testd: PathBuf,
    work: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Init {
    BundleInit,
    Tini,
    Catatonit,
    DumbInit,
    S6,
    Supervisord,
    /// bench/floor.c: signalfd, posix_spawn, kill and waitpid, nothing else.
    Floor,
    /// The `--baseline` bundle-init.
    Baseline,
}

const SINGLE: [Init; 4] = [Init::Tini, Init::Catatonit, Init::DumbInit, Init::BundleInit];
const SUPERVISORS: [Init; 3] = [Init::BundleInit, Init::S6, Init::Supervisord];
/// The restart benchmark's supervisors: bundle-init first, then its floor.
const RESTARTERS: [Init; 4] = [Init::BundleInit, Init::Floor, Init::S6, Init::Supervisord];
const ALL: [Init; 6] = [Init::Tini, Init::Catatonit, Init::DumbInit, Init::BundleInit, Init::S6, Init::Supervisord];

impl Init {
    fn name(self) -> &'static str {
        match self {
            Init::BundleInit => "bundle-init",
            Init::Tini => "tini-static",
            Init::Catatonit => "catatonit",
            Init::DumbInit => "dumb-init",
            Init::S6 => "s6-svscan",
            Init::Supervisord => "supervisord",
            Init::Floor => "C floor (posix_spawn)",
            Init::Baseline => "bundle-init (--baseline)",
        }
    }
}

/// One line of a program's output, with the time it was read.
type LineRx = Receiver<String>;

fn lines_of(source: impl Read + Send + 'static) -> LineRx {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; None after `limit`.
fn wait_line(rx: &LineRx, needle: &str, limit: Duration) -> Option<String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Some(line),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

fn stamp(line: &str) -> u128 {
    line.rsplit_once("t=").and_then(|(_, t)| t.trim().parse().ok()).unwrap_or(0)
}

/// A process tree started as PID 1 of a new PID namespace.
struct Pid1 {
    outer: Child,
    out: LineRx,
}

impl Pid1 {
    fn start(argv: &[String]) -> Pid1 {
        Pid1::start_logged(argv).0
    }

    /// `start`, with the init's stderr (bundle-init's log) as lines too, each with the
    /// time it was read.
    fn start_logged(argv: &[String]) -> (Pid1, Receiver<(u128, String)>) {
        let mut outer = Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc", "--kill-child"])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("unshare");
        let out = lines_of(outer.stdout.take().unwrap());
        let err = outer.stderr.take().unwrap();
        let (tx, log) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send((mono_ns(), line));
            }
        });
        (Pid1 { outer, out }, log)
    }

    /// Host pid of the init (unshare's only child).
    fn pid(&self) -> i32 {
        let outer = self.outer.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let kids = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children")).unwrap_or_default();
            if let Some(pid) = kids.split_whitespace().next().and_then(|p| p.parse().ok()) {
                return pid;
            }
            assert!(Instant::now() < deadline, "no init under unshare");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits up to `limit` for the whole tree to end; true if it did.
    fn wait(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.outer.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }
}

impl Drop for Pid1 {
    fn drop(&mut self) {
        if self.outer.try_wait().ok().flatten().is_none() {
            signal(self.pid(), SIGKILL);
            let _ = self.outer.kill();
            let _ = self.outer.wait();
        }
    }
}

/// Command line of a single-child init running `child`.
fn single(s: &Settings, init: Init, child: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = match init {
        Init::BundleInit => vec![s.bundle_init.display().to_string(), "--".into()],
        Init::Tini => vec!["tini-static".into(), "--".into()],
        Init::Catatonit => vec!["catatonit".into(), "--".into()],
        Init::DumbInit => vec!["dumb-init".into(), "--".into()],
        Init::S6 | Init::Supervisord | Init::Floor | Init::Baseline => unreachable!("not a single-child init"),
    };
    argv.extend(child.iter().cloned());
    argv
}

/// A daemon: name and argv.
type Daemon = (&'static str, Vec<String>);

/// Command line of a supervisor running `daemons`; writes the configuration it needs.
fn supervisor(s: &Settings, init: Init, tag: &str, daemons: &[Daemon], extra_bundle: &str) -> Vec<String> {
    let dir = s.work.join(format!("{}-{tag}", init.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    match init {
        Init::BundleInit | Init::Baseline => {
            let program = if init == Init::Baseline { s.baseline.as_ref().unwrap() } else { &s.bundle_init };
            let mut text = extra_bundle.to_string();
            for (name, argv) in daemons {
                text.push_str(&format!("[{name}]\nrun = {}\n", argv.join(" ")));
            }
            let path = dir.join("bench.bundle");
            std::fs::write(&path, text).unwrap();
            vec![program.display().to_string(), "--bundle".into(), path.display().to_string()]
        }
        Init::S6 => {
            for (name, argv) in daemons {
                let service = dir.join(name);
                std::fs::create_dir_all(&service).unwrap();
                let run = service.join("run");
                std::fs::write(&run, format!("#!/bin/sh\nexec {}\n", argv.join(" "))).unwrap();
                let _ = Command::new("chmod").arg("+x").arg(&run).status();
            }
            vec!["s6-svscan".into(), dir.display().to_string()]
        }
        Init::Supervisord => {
            let sock = dir.join("supervisor.sock");
            let mut conf = format!(
                "[supervisord]\nnodaemon=true\nlogfile=/dev/null\nlogfile_maxbytes=0\npidfile={}/pid\n\
                 [unix_http_server]\nfile={}\n[rpcinterface:supervisor]\n\
                 supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
                 [supervisorctl]\nserverurl=unix://{}\n",
                dir.display(),
                sock.display(),
                sock.display()
            );
            for (name, argv) in daemons {
                conf.push_str(&format!(
                    "[program:{name}]\ncommand={}\nstdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=0\n\
                     startsecs=0\nautorestart=false\nstopwaitsecs=10\n",
                    argv.join(" ")
                ));
            }
            let path = dir.join("supervisord.conf");
            std::fs::write(&path, conf).unwrap();
            vec!["supervisord".into(), "-c".into(), path.display().to_string()]
        }
        Init::Floor => {
            let mut argv = vec![env!("FLOOR_PATH").to_string()];
            for (i, (_, command)) in daemons.iter().enumerate() {
                if i > 0 {
                    argv.push("---".into());
                }
                argv.extend(command.iter().cloned());
            }
            argv
        }
        _ => unreachable!("not a supervisor"),
    }
}

fn supervisorctl_conf(s: &Settings, tag: &str) -> String {
    s.work.join(format!("supervisord-{tag}/supervisord.conf")).display().to_string()
}

fn testd(s: &Settings, args: &[&str]) -> Vec<String> {
    let mut v = vec![s.testd.display().to_string()];
    v.extend(args.iter().map(|a| a.to_string()));
    v
}

// ---------------------------------------------------------------- statistics and output

fn median(v: &mut [f64]) -> f64 {
    percentile(v, 50.0)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i]
}

fn ratio(value: f64, base: f64) -> String {
    if base.is_finite() && base > 0.0 && value.is_finite() {
        format!("{:.2}", value / base)
    } else {
        "–".into()
    }
}

fn proc_status(pid: i32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ctxt_switches(pid: i32) -> u64 {
    proc_status(pid, "voluntary_ctxt_switches:") + proc_status(pid, "nonvoluntary_ctxt_switches:")
}

/// CPU time in ns (first field of schedstat).
fn cpu_ns(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The init plus, for s6, its s6-supervise children: the processes that make up "the init".
fn init_processes(init: Init, pid: i32) -> Vec<i32> {
    let mut pids = vec![pid];
    if init == Init::S6 {
        let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for kid in kids.split_whitespace().filter_map(|k| k.parse::<i32>().ok()) {
            let comm = std::fs::read_to_string(format!("/proc/{kid}/comm")).unwrap_or_default();
            if comm.trim() == "s6-supervise" {
                pids.push(kid);
            }
        }
    }
    pids
}

fn zombies_under(pid: i32) -> usize {
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    kids.split_whitespace()
        .filter(|k| {
            std::fs::read_to_string(format!("/proc/{k}/stat"))
                .map(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().starts_with('Z')).unwrap_or(false))
                .unwrap_or(false)
        })
        .count()
}

fn rotated<T: Copy>(items: &[T], round: usize) -> Vec<T> {
    let k = round % items.len();
    items[k..].iter().chain(items[..k].iter()).copied().collect()
}

fn path_of(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Some(PathBuf::from(program));
    }
    std::env::var("PATH").ok()?.split(':').map(|d| Path::new(d).join(program)).find(|p| p.exists())
}

fn is_static(path: &Path) -> &'static str {
    let out = Command::new("file").arg("-L").arg(path).output();
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            if text.contains("statically linked") || text.contains("static-pie") {
                "static"
            } else if text.contains("dynamically linked") {
                "dynamic"
            } else {
                "script"
            }
        }
        Err(_) => "?",
    }
}

// ---------------------------------------------------------------- the metrics

fn bench_size(s: &Settings) {
    println!("\n### Binary size\n");
    println!("| init | bytes | KiB | linking | ratio to tini |");
    println!("|---|---:|---:|---|---:|");
    let bundle = s.bundle_init.display().to_string();
    let shipped = s.shipped.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let rows = [
        ("bundle-init (the build measured below)", bundle.as_str()),
        ("bundle-init (shipped: the size-optimised build)", shipped.as_str()),
        ("tini-static", "tini-static"),
        ("catatonit", "catatonit"),
        ("dumb-init", "dumb-init"),
        ("s6-svscan (+ s6-supervise, libskarnet)", "s6-svscan"),
        ("supervisord (+ python3)", "supervisord"),
    ];
    let tini = path_of("tini-static").and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len() as f64).unwrap_or(f64::NAN);
    for (name, program) in rows {
        let Some(path) = path_of(program).filter(|_| !program.is_empty()) else { continue };
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "| {name} | {bytes} | {:.0} | {} | {} |",
            bytes as f64 / 1024.0,
            is_static(&path),
            ratio(bytes as f64, tini)
        );
    }
}

fn bench_startup(s: &Settings) {
    let rounds = if s.quick { 60 } else { 300 };
    let truth = vec!["/bin/true".to_string()];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); SINGLE.len() + 1];
    for round in 0..rounds {
        let order: Vec<usize> = rotated(&(0..=SINGLE.len()).collect::<Vec<_>>(), round);
        for i in order {
            let argv = if i == SINGLE.len() { truth.clone() } else { single(s, SINGLE[i], &truth) };
            let t = Instant::now();
            let status = Command::new("unshare").args(["--pid", "--fork"]).args(&argv).status().unwrap();
            let us = t.elapsed().as_secs_f64() * 1e6;
            if status.success() {
                samples[i].push(us);
            }
        }
    }
    let base = median(&mut samples[SINGLE.len()].clone());
    println!("\n### Start-up overhead (`unshare --pid --fork INIT -- true` minus `unshare --pid --fork true`, {rounds} runs each)\n");
    println!("| init | median µs | p10–p90 µs | overhead µs | ratio to tini |");
    println!("|---|---:|---:|---:|---:|");
    let tini_overhead = median(&mut samples[0].clone()) - base;
    println!("| (true alone) | {base:.0} | {:.0}–{:.0} | – | – |", percentile(&mut samples[SINGLE.len()].clone(), 10.0), percentile(&mut samples[SINGLE.len()].clone(), 90.0));
    for (i, init) in SINGLE.iter().enumerate() {
        let m = median(&mut samples[i].clone());
        println!(
            "| {} | {m:.0} | {:.0}–{:.0} | {:.0} | {} |",
            init.name(),
            percentile(&mut samples[i].clone(), 10.0),
            percentile(&mut samples[i].clone(), 90.0),
            m - base,
            ratio(m - base, tini_overhead)
        );
    }
}

fn bench_idle(s: &Settings) {
    let window = if s.quick { Duration::from_secs(3) } else { Duration::from_secs(10) };
    let sleeper = vec!["/bin/sleep".to_string(), "3600".to_string()];
    let mut running = Vec::new();
    for init in ALL {
        let argv = match init {
            Init::S6 | Init::Supervisord => supervisor(s, init, "idle", &[("sleeper", sleeper.clone())], ""),
            Init::BundleInit => single(s, init, &sleeper),
            _ => single(s, init, &sleeper),
        };
        running.push((init, Pid1::start(&argv)));
    }
    // All run side by side through the same window.
    std::thread::sleep(Duration::from_secs(2)); // let every init settle into its idle state
    let before: Vec<u64> = running
        .iter()
        .map(|(init, p)| init_processes(*init, p.pid()).iter().map(|&q| ctxt_switches(q)).sum())
        .collect();
    std::thread::sleep(window);
    println!("\n### Idle with one sleeping child ({}s window, all inits side by side)\n", window.as_secs());
    println!("| init | wakeups in window | RSS KiB | anon RSS KiB | ratio anon RSS to tini |");
    println!("|---|---:|---:|---:|---:|");
    let mut tini_anon = f64::NAN;
    for (i, (init, p)) in running.iter().enumerate() {
        let pids = init_processes(*init, p.pid());
        let after: u64 = pids.iter().map(|&q| ctxt_switches(q)).sum();
        let rss: u64 = pids.iter().map(|&q| proc_status(q, "VmRSS:")).sum();
        let anon: u64 = pids.iter().map(|&q| proc_status(q, "RssAnon:")).sum();
        if *init == Init::Tini {
            tini_anon = anon as f64;
        }
        println!("| {} | {} | {rss} | {anon} | {} |", init.name(), after - before[i], ratio(anon as f64, tini_anon));
    }
}

fn bench_forwarding(s: &Settings) {
    let rounds = if s.quick { 10 } else { 40 };
    let per_round = if s.quick { 40 } else { 100 };
    let child = testd(s, &["--timestamps"]);
    let mut running: Vec<(Init, Pid1)> = SINGLE.iter().map(|&i| (i, Pid1::start(&single(s, i, &child)))).collect();
    for (_, p) in &running {
        wait_line(&p.out, "started", Duration::from_secs(5)).expect("child started");
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); SINGLE.len()];
    let mut lost = vec![0usize; SINGLE.len()];
    for round in 0..rounds {
        for i in rotated(&(0..SINGLE.len()).collect::<Vec<_>>(), round) {
            let (_, p) = &mut running[i];
            let pid = p.pid();
            for _ in 0..per_round {
                let t0 = mono_ns();
                signal(pid, SIGUSR1);
                match wait_line(&p.out, "got SIGUSR1", Duration::from_secs(2)) {
                    Some(line) => samples[i].push((stamp(&line).saturating_sub(t0)) as f64 / 1000.0),
                    None => lost[i] += 1,
                }
            }
        }
    }
    println!("\n### Signal forwarding latency (kill(init, USR1) to the child's signalfd read, {} signals each)\n", rounds * per_round);
    println!("| init | median µs | p99 µs | lost | ratio median to tini |");
    println!("|---|---:|---:|---:|---:|");
    let tini = median(&mut samples[0].clone());
    for (i, init) in SINGLE.iter().enumerate() {
        let m = median(&mut samples[i].clone());
        println!("| {} | {m:.1} | {:.1} | {} | {} |", init.name(), percentile(&mut samples[i].clone(), 99.0), lost[i], ratio(m, tini));
    }
}

fn bench_reaping(s: &Settings) {
    let orphans = if s.quick { 2000 } else { 10000 };
    let rounds = if s.quick { 1 } else { 3 };
    let count = orphans.to_string();
    let child = testd(s, &["--orphans", &count]);
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); ALL.len()];
    let mut switches: Vec<Vec<f64>> = vec![Vec::new(); ALL.len()];
    let mut left: Vec<usize> = vec![0; ALL.len()];
    for round in 0..rounds {
        for i in rotated(&(0..ALL.len()).collect::<Vec<_>>(), round) {
            let init = ALL[i];
            let argv = match init {
                Init::S6 | Init::Supervisord => supervisor(s, init, "reap", &[("spawner", child.clone())], ""),
                _ => single(s, init, &child),
            };
            let p = Pid1::start(&argv);
            let pid = p.pid();
            let cpu0 = cpu_ns(pid);
            let cs0 = ctxt_switches(pid);
            let made = wait_line(&p.out, "orphans", Duration::from_secs(60)).is_some();
            let deadline = Instant::now() + Duration::from_secs(5);
            while zombies_under(pid) > 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            cpu[i].push((cpu_ns(pid) - cpu0) as f64 / 1e6);
            switches[i].push((ctxt_switches(pid) - cs0) as f64);
            left[i] = left[i].max(if made { zombies_under(pid) } else { usize::MAX });
        }
    }
    println!("\n### Reaping {orphans} orphans (CPU and context switches of the init until none is left; median of {rounds})\n");
    println!("| init | CPU ms | context switches | zombies left | ratio CPU to catatonit |");
    println!("|---|---:|---:|---:|---:|");
    let cat = median(&mut cpu[1].clone());
    for (i, init) in ALL.iter().enumerate() {
        let c = median(&mut cpu[i].clone());
        let left = if left[i] == usize::MAX { "child failed".to_string() } else { left[i].to_string() };
        println!("| {} | {c:.1} | {:.0} | {left} | {} |", init.name(), median(&mut switches[i].clone()), ratio(c, cat));
    }
}

fn bench_shutdown(s: &Settings) {
    let cap = if s.quick { Duration::from_secs(3) } else { Duration::from_secs(12) };
    println!("\n### Shutdown: SIGTERM to the init (cap {}s)\n", cap.as_secs());
    println!("| init | child ignores TERM: exits after | polite child: exits after ms |");
    println!("|---|---|---:|");
    for init in ALL {
        let mut cells = Vec::new();
        for stubborn in [true, false] {
            let mut args = vec!["--name", "d"];
            if stubborn {
                args.extend(["--ignore", "TERM"]);
            }
            let child = testd(s, &args);
            let argv = match init {
                Init::S6 | Init::Supervisord => supervisor(s, init, "stop", &[("d", child)], ""),
                // Bundle mode, to show its shutdown budget (single-child mode forwards TERM and
                // waits, like tini).
                Init::BundleInit => supervisor(s, init, "stop", &[("d", child)], "shutdown-grace = 2s\n"),
                _ => single(s, init, &child),
            };
            let mut p = Pid1::start(&argv);
            let ready = wait_line(&p.out, "started", Duration::from_secs(10)).is_some();
            // Let the supervisors mark it running and settle into their loops.
            std::thread::sleep(Duration::from_millis(1000));
            let t = Instant::now();
            signal(p.pid(), SIGTERM);
            let exited = p.wait(cap);
            let took = t.elapsed();
            cells.push(match (ready, exited, stubborn) {
                (false, _, _) => "did not start".to_string(),
                (true, true, true) => format!("{:.2} s", took.as_secs_f64()),
                (true, true, false) => format!("{:.1}", took.as_secs_f64() * 1000.0),
                (true, false, _) => format!("never (still running at {}s)", cap.as_secs()),
            });
        }
        println!("| {} | {} | {} |", init.name(), cells[0], cells[1]);
    }
}

/// One restart as the bench sees it, in ms: from the request to the new process's
/// "started", and from the old process's "got SIGTERM" to the new one's "started" (the
/// supervisor's own part: reaping the old process and spawning the new).
struct Restart {
    request_to_up: f64,
    term_to_up: Option<f64>,
}

/// Sends the restart request `init` takes for pipelock and waits for the new pipelock.
fn restart_once(s: &Settings, init: Init, p: &Pid1, sibling_touched: &mut bool) -> Option<Restart> {
    if init == Init::S6 {
        // s6-supervise waits out the rest of a second after a quick start.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let t0 = mono_ns();
    match init {
        Init::BundleInit | Init::Floor | Init::Baseline => signal(p.pid(), SIGUSR1),
        Init::S6 => {
            let dir = s.work.join("s6-svscan-restart/pipelock");
            let _ = Command::new("s6-svc").arg("-r").arg(dir).status();
        }
        Init::Supervisord => {
            let _ = Command::new("supervisorctl")
                .args(["-c", &supervisorctl_conf(s, "restart"), "restart", "pipelock"])
                .stdout(Stdio::null())
                .status();
        }
        _ => {}
    }
    let deadline = Duration::from_secs(15);
    let start = Instant::now();
    let mut term = None;
    while start.elapsed() < deadline {
        let Ok(line) = p.out.recv_timeout(deadline) else { break };
        if line.contains("sibling") && line.contains("got") {
            *sibling_touched = true;
        }
        if line.contains("pipelock") && line.contains("got SIGTERM") {
            term = Some(stamp(&line));
        }
        if line.contains("pipelock") && line.contains(" started") {
            let up = stamp(&line);
            return Some(Restart {
                request_to_up: up.saturating_sub(t0) as f64 / 1e6,
                term_to_up: term.map(|t| up.saturating_sub(t) as f64 / 1e6),
            });
        }
    }
    None
}

fn bench_restart(s: &Settings) {
    let n_fast = if s.quick { 50 } else { 300 };
    let n_slow = if s.quick { 3 } else { 10 };
    let target = testd(s, &["--name", "pipelock", "--timestamps"]);
    let sibling = testd(s, &["--name", "sibling", "--timestamps"]);
    let daemons = [("pipelock", target), ("sibling", sibling)];
    let restarters = with_baseline(s, &RESTARTERS);
    let mut running: Vec<(Init, Pid1)> = restarters
        .iter()
        .map(|&i| (i, Pid1::start(&supervisor(s, i, "restart", &daemons, "on SIGUSR1 = restart pipelock\n"))))
        .collect();
    let mut sibling_pid = Vec::new();
    for (_, p) in &running {
        let mut seen = (false, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !(seen.0 && seen.1 != 0) && Instant::now() < deadline {
            if let Ok(line) = p.out.recv_timeout(Duration::from_millis(100)) {
                if line.contains("pipelock") && line.contains("started") {
                    seen.0 = true;
                }
                if line.contains("sibling") && line.contains("started") {
                    seen.1 = line.split_whitespace().nth(line.split_whitespace().position(|w| w == "sibling").unwrap_or(0) + 1).and_then(|w| w.parse().ok()).unwrap_or(-1);
                }
            }
        }
        sibling_pid.push(seen.1);
    }
    let mut samples: Vec<Vec<Restart>> = restarters.iter().map(|_| Vec::new()).collect();
    let mut sibling_touched = vec![false; restarters.len()];
    // The supervisor's own CPU time over its restarts (schedstat: user and system).
    let mut cpu_used = vec![0u64; restarters.len()];
    let rounds = n_slow;
    for round in 0..rounds {
        for i in rotated(&(0..restarters.len()).collect::<Vec<_>>(), round) {
            let (init, p) = &mut running[i];
            let times = if matches!(*init, Init::BundleInit | Init::Floor | Init::Baseline) { n_fast / rounds } else { 1 };
            let cpu_of = |p: &Pid1| init_processes(*init, p.pid()).iter().map(|&q| cpu_ns(q)).sum::<u64>();
            let cpu_before = cpu_of(p);
            for _ in 0..times {
                samples[i].extend(restart_once(s, *init, p, &mut sibling_touched[i]));
            }
            cpu_used[i] += cpu_of(p).saturating_sub(cpu_before);
        }
    }
    println!("\n### Restart one daemon: from the request to the new process running\n");
    println!("bundle-init: `kill -USR1` (route `restart pipelock`); the C floor (bench/floor.c, {}): `kill -USR1`, then SIGTERM, waitpid, posix_spawn; s6: `s6-svc -r`; supervisord: `supervisorctl restart`.\n", env!("FLOOR_BUILD"));
    println!("| supervisor | restarts | median ms | p99 ms | old got TERM → new up, median ms | supervisor CPU µs per restart | sibling untouched | ratio median to floor | ratio p99 to floor |");
    println!("|---|---:|---:|---:|---:|---:|---|---:|---:|");
    let request = |i: usize| samples[i].iter().map(|r| r.request_to_up).collect::<Vec<f64>>();
    let term = |i: usize| samples[i].iter().filter_map(|r| r.term_to_up).collect::<Vec<f64>>();
    let floor = restarters.iter().position(|&i| i == Init::Floor).unwrap();
    let (floor_median, floor_p99) = (median(&mut request(floor)), percentile(&mut request(floor), 99.0));
    for (i, init) in restarters.iter().enumerate() {
        let m = median(&mut request(i));
        let p99 = percentile(&mut request(i), 99.0);
        let still = std::fs::metadata(format!("/proc/{}", sibling_pid[i])).is_ok() || sibling_pid[i] > 0;
        println!(
            "| {} | {} | {m:.3} | {p99:.3} | {:.3} | {:.0} | {} | {} | {} |",
            init.name(),
            samples[i].len(),
            median(&mut term(i)),
            cpu_used[i] as f64 / 1e3 / samples[i].len().max(1) as f64,
            if !sibling_touched[i] && still { "yes" } else { "NO" },
            ratio(m, floor_median),
            ratio(p99, floor_p99)
        );
    }
}

/// `inits` with the `--baseline` bundle-init after bundle-init, when there is one.
fn with_baseline(s: &Settings, inits: &[Init]) -> Vec<Init> {
    let mut all = inits.to_vec();
    if s.baseline.is_some() {
        all.insert(1, Init::Baseline);
    }
    all
}

/// A bundle of `count` daemons started from nothing: from launching the init to the last
/// daemon's "started" (each stamps its own line), and the CPU time PID 1 used by then.
fn bench_start_many(s: &Settings) {
    let count = 250;
    let rounds = if s.quick { 2 } else { 7 };
    let names: Vec<&'static str> = (0..count).map(|i| &*Box::leak(format!("d{i:03}").into_boxed_str())).collect();
    let daemons: Vec<Daemon> = names.iter().map(|&n| (n, testd(s, &["--name", n, "--timestamps"]))).collect();
    let inits = with_baseline(s, &[Init::BundleInit]);
    let mut wall: Vec<Vec<f64>> = vec![Vec::new(); inits.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); inits.len()];
    let mut spawned: Vec<Vec<f64>> = vec![Vec::new(); inits.len()];
    for round in 0..rounds {
        for i in rotated(&(0..inits.len()).collect::<Vec<_>>(), round) {
            let argv = supervisor(s, inits[i], "start-many", &daemons, "");
            let t0 = mono_ns();
            let (p, log) = Pid1::start_logged(&argv);
            let (mut seen, mut last) = (0, 0);
            while seen < count {
                let Some(line) = wait_line(&p.out, " started", Duration::from_secs(30)) else { break };
                seen += 1;
                last = last.max(stamp(&line));
            }
            if seen == count {
                wall[i].push(last.saturating_sub(t0) as f64 / 1e6);
                cpu[i].push(cpu_ns(p.pid()) as f64 / 1e6);
                let logged: Vec<u128> = log.try_iter().filter(|(_, l)| l.contains(" started: pid ")).map(|(t, _)| t).collect();
                if logged.len() == count {
                    spawned[i].push(logged[count - 1].saturating_sub(t0) as f64 / 1e6);
                }
            }
        }
    }
    println!("\n### Start a bundle of {count} daemons: from launching the init to the last one's \"started\" ({rounds} runs each)\n");
    println!("| init | runs | all up, median ms | all up, min ms | last \"started: pid\" logged, median ms | PID 1 CPU, median ms | ratio all up to bundle-init |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let base = median(&mut wall[0].clone());
    for (i, init) in inits.iter().enumerate() {
        let m = median(&mut wall[i].clone());
        let least = wall[i].iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "| {} | {} | {m:.1} | {least:.1} | {:.1} | {:.1} | {} |",
            init.name(),
            wall[i].len(),
            median(&mut spawned[i].clone()),
            median(&mut cpu[i].clone()),
            ratio(m, base)
        );
    }
}

/// bundle-init only: the time from a reload request (HUP, route `reload`) to the changed
/// daemon's new process running, in a four-daemon bundle where one daemon changed, next to
/// a plain restart (USR1, route `restart`) of the same daemon in the same bundle.
fn bench_reload(s: &Settings) {
    let rounds = if s.quick { 30 } else { 200 };
    let dir = s.work.join("bundle-init-reload");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("reload.bundle");
    // Each reload flips one flag of pipelock's: a change every time.
    let bundle = |version: usize| {
        let mut text = "on SIGHUP = reload\non SIGUSR1 = restart pipelock\n".to_string();
        let flag = if version % 2 == 0 { "" } else { " --delay 0s" };
        for name in ["egress", "pipelock", "git-gate", "supervise"] {
            let argv = testd(s, &["--name", name, "--timestamps"]).join(" ");
            let extra = if name == "pipelock" { flag } else { "" };
            text.push_str(&format!("[{name}]\nrun = {argv}{extra}\n"));
        }
        text
    };
    std::fs::write(&path, bundle(0)).unwrap();
    let init = Pid1::start(&[s.bundle_init.display().to_string(), "--bundle".into(), path.display().to_string()]);
    let pid = init.pid();
    let await_pipelock = |init: &Pid1, t0: u128| -> Option<f64> {
        let deadline = Duration::from_secs(15);
        while let Ok(line) = init.out.recv_timeout(deadline) {
            if line.contains("] pipelock ") && line.contains(" started") {
                return Some(stamp(&line).saturating_sub(t0) as f64 / 1e6);
            }
        }
        None
    };
    await_pipelock(&init, 0);
    let (mut reloads, mut restarts) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        std::fs::write(&path, bundle(round)).unwrap();
        let t0 = mono_ns();
        signal(pid, SIGHUP);
        reloads.extend(await_pipelock(&init, t0));
        let t0 = mono_ns();
        signal(pid, SIGUSR1);
        restarts.extend(await_pipelock(&init, t0));
    }
    println!("\n### Reload with one daemon changed: from the request to its new process running\n");
    println!("bundle-init, four daemons, pipelock's `run` line changed before each reload (HUP, route `reload`); the plain restart is USR1 (route `restart pipelock`) in the same bundle, alternating with the reloads.\n");
    println!("| request | count | median ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    for (name, v) in [("reload (one changed)", &reloads), ("restart", &restarts)] {
        println!("| {name} | {} | {:.3} | {:.3} |", v.len(), median(&mut v.clone()), percentile(&mut v.clone(), 99.0));
    }
    let extra = median(&mut reloads.clone()) - median(&mut restarts.clone());
    println!("\nreload minus restart, medians: {extra:.3} ms (target: at most 1 ms)");
}

fn bench_bundle_memory(s: &Settings) {
    let names = ["egress", "pipelock", "git-gate", "supervise"];
    let daemons: Vec<Daemon> = names.iter().map(|&n| (n, testd(s, &["--name", n]))).collect();
    let running: Vec<(Init, Pid1)> =
        SUPERVISORS.iter().map(|&i| (i, Pid1::start(&supervisor(s, i, "memory", &daemons, "")))).collect();
    for (_, p) in &running {
        for _ in 0..4 {
            let _ = wait_line(&p.out, "started", Duration::from_secs(10));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    println!("\n### Supervising the seed's 4 daemons, output prefixed or logged\n");
    println!("| supervisor | processes | RSS KiB | anon RSS KiB | ratio RSS to bundle-init |");
    println!("|---|---:|---:|---:|---:|");
    let mut base = f64::NAN;
    for (init, p) in &running {
        let pids = init_processes(*init, p.pid());
        let rss: u64 = pids.iter().map(|&q| proc_status(q, "VmRSS:")).sum();
        let anon: u64 = pids.iter().map(|&q| proc_status(q, "RssAnon:")).sum();
        if *init == Init::BundleInit {
            base = rss as f64;
        }
        println!("| {} | {} | {rss} | {anon} | {} |", init.name(), pids.len(), ratio(rss as f64, base));
    }
}

fn bench_throughput(s: &Settings) {
    let bytes: u64 = if s.quick { 50_000_000 } else { 300_000_000 };
    let rounds = if s.quick { 2 } else { 5 };
    let count = bytes.to_string();
    let flood = testd(s, &["--name", "flood", "--flood", &count, "--exit-after", "0s", "0"]);
    let mut plain = Vec::new();
    let mut through = Vec::new();
    for round in 0..rounds {
        for which in rotated(&[0, 1], round) {
            let argv = if which == 0 {
                flood.clone()
            } else {
                let mut b = supervisor(s, Init::BundleInit, "throughput", &[("flood", flood.clone())], "");
                let path = b.last().unwrap().clone();
                let text = std::fs::read_to_string(&path).unwrap() + "on-exit = stop-bundle\n";
                std::fs::write(&path, text).unwrap();
                b.truncate(3);
                b
            };
            let t = Instant::now();
            let mut child = Command::new(&argv[0]).args(&argv[1..]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
            let mut out = child.stdout.take().unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0u64;
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                total += n as u64;
            }
            let _ = child.wait();
            let secs = t.elapsed().as_secs_f64();
            let mbps = bytes as f64 / secs / 1e6;
            let _ = total;
            if which == 0 { plain.push(mbps) } else { through.push(mbps) }
        }
    }
    let p = median(&mut plain.clone());
    let b = median(&mut through.clone());
    println!("\n### Prefixed output throughput ({} MB of 94-byte lines, {rounds} runs each)\n", bytes / 1_000_000);
    println!("| path | median MB/s (payload) | ratio to plain pipe |");
    println!("|---|---:|---:|");
    println!("| plain pipe (daemon -> reader) | {p:.0} | 1.00 |");
    println!("| bundle-init prefixing (daemon -> bundle-init -> reader) | {b:.0} | {} |", ratio(b, p));
}

/// A bundle file of one daemon `args` with daemon keys `keys` and bundle keys `bundle`,
/// and bundle-init's command line for it.
fn one_daemon_bundle(s: &Settings, tag: &str, bundle: &str, keys: &str, args: &[&str]) -> Vec<String> {
    let dir = s.work.join(format!("features-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("one.bundle");
    std::fs::write(&path, format!("{bundle}[web]\nrun = {}\n{keys}", testd(s, args).join(" "))).unwrap();
    vec![s.bundle_init.display().to_string(), "--bundle".into(), path.display().to_string()]
}

/// The idle cost of this turn's features: bundle-init's own wakeups and RSS (its daemon's
/// are not counted) over one window, with each feature on, side by side.
fn bench_features_idle(s: &Settings) {
    let window = if s.quick { Duration::from_secs(3) } else { Duration::from_secs(10) };
    let cases: [(&str, &str, &str, &[&str]); 5] = [
        ("nothing on", "", "", &["--name", "web", "--listen", "127.0.0.1:28701"]),
        ("live = tcp:, every 1s", "", "live = tcp:127.0.0.1:28702\nlive-every = 1s\n", &["--name", "web", "--listen", "127.0.0.1:28702"]),
        ("live = http:, every 1s", "", "live = http:127.0.0.1:28703/\nlive-every = 1s\n", &["--name", "web", "--listen", "127.0.0.1:28703", "--http"]),
        ("http = endpoint, no requests", "http = 127.0.0.1:28704\n", "", &["--name", "web"]),
        ("log-format = json, log-buffer = 64KiB", "log-format = json\n", "log-buffer = 64KiB\n", &["--name", "web"]),
    ];
    let mut running = Vec::new();
    for (i, (label, bundle, keys, args)) in cases.iter().enumerate() {
        let p = Pid1::start(&one_daemon_bundle(s, &format!("idle-{i}"), bundle, keys, args));
        let _ = wait_line(&p.out, "started", Duration::from_secs(10));
        running.push((*label, p));
    }
    std::thread::sleep(Duration::from_secs(2)); // past start-up, into the steady state
    let before: Vec<u64> = running.iter().map(|(_, p)| ctxt_switches(p.pid())).collect();
    std::thread::sleep(window);
    println!("\n### This turn's features at rest: bundle-init's own wakeups and memory ({}s window, side by side)\n", window.as_secs());
    println!("| bundle-init with one daemon | wakeups in window | wakeups per second | RSS KiB | ratio RSS to nothing on |");
    println!("|---|---:|---:|---:|---:|");
    let mut base = f64::NAN;
    for (i, (label, p)) in running.iter().enumerate() {
        let woke = ctxt_switches(p.pid()) - before[i];
        let rss = proc_status(p.pid(), "VmRSS:");
        if i == 0 {
            base = rss as f64;
        }
        let rate = woke as f64 / window.as_secs_f64();
        println!("| {label} | {woke} | {rate:.1} | {rss} | {} |", ratio(rss as f64, base));
    }
}

/// One HTTP/1.1 GET on a new connection, as a kubelet's httpGet probe makes it; its status.
fn http_get(addr: &str, path: &str) -> Option<u16> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.get(9..12)?.parse().ok()
}

/// The HTTP health check against `health` run inside the namespace, as an exec probe
/// runs it (nsenter, then podman exec when podman and the demo image are here).
fn bench_http_health(s: &Settings) {
    let rounds = if s.quick { 30 } else { 200 };
    let argv = one_daemon_bundle(s, "http", "http = 127.0.0.1:28711\n", "", &["--name", "web"]);
    let p = Pid1::start(&argv);
    let _ = wait_line(&p.out, "started", Duration::from_secs(10));
    let pid = p.pid().to_string();
    let (mut get, mut nsenter) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        assert_eq!(http_get("127.0.0.1:28711", "/healthz"), Some(200), "GET /healthz");
        get.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let ok = Command::new("nsenter")
            .args(["--target", &pid, "--pid", "--mount", "--"])
            .arg(&s.bundle_init)
            .arg("health")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|st| st.success());
        assert!(ok, "bundle-init health");
        nsenter.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let podman = podman_exec_health(if s.quick { 5 } else { 20 });
    println!("\n### Health check: HTTP GET /healthz against `bundle-init health` run as an exec probe\n");
    println!("| probe | count | median ms | p99 ms | ratio to HTTP |");
    println!("|---|---:|---:|---:|---:|");
    let base = median(&mut get.clone());
    let mut rows = vec![("GET /healthz on a new connection (a kubelet's httpGet)", get), ("nsenter + bundle-init health (an exec, without an engine)", nsenter)];
    if let Some(v) = podman {
        rows.push(("podman exec CONTAINER /bundle-init health", v));
    }
    for (name, v) in rows {
        let m = median(&mut v.clone());
        println!("| {name} | {} | {m:.3} | {:.3} | {} |", v.len(), percentile(&mut v.clone(), 99.0), ratio(m, base));
    }
}

/// `podman exec … /bundle-init health` in a container of the demo image, when there is one.
fn podman_exec_health(rounds: usize) -> Option<Vec<f64>> {
    let image = "localhost/bundle-init-demo:latest";
    let present = Command::new("podman").args(["image", "exists", image]).status().is_ok_and(|st| st.success());
    if !present {
        println!("\n(podman or {image} is missing: no podman exec row)");
        return None;
    }
    let name = format!("bundle-init-bench-{}", std::process::id());
    let flags = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "none"];
    let run = Command::new("podman").args(["run", "-d", "--name", &name]).args(flags).arg(image).stdout(Stdio::null()).status();
    if !run.is_ok_and(|st| st.success()) {
        return None;
    }
    let exec = || Command::new("podman").args(["exec", &name, "/bundle-init", "health"]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|st| st.success());
    // The demo's daemons start within a second: wait for the first healthy answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !exec() && Instant::now() < deadline {}
    let mut times = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        if exec() {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let _ = Command::new("podman").args(["rm", "-f", "-t", "0", &name]).stdout(Stdio::null()).status();
    Some(times)
}

/// Prefixed output in each log style: text (today's), `log-time = yes`, and
/// `log-format = json`, through bundle-init to a reader that throws it away.
fn bench_log_styles(s: &Settings) {
    let bytes: u64 = if s.quick { 30_000_000 } else { 150_000_000 };
    let rounds = if s.quick { 2 } else { 5 };
    let count = bytes.to_string();
    let args = ["--name", "flood", "--flood", count.as_str(), "--exit-after", "0s", "0"];
    let styles = [("text", ""), ("log-time = yes", "log-time = yes\n"), ("log-format = json", "log-format = json\n")];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); styles.len()];
    for round in 0..rounds {
        for which in rotated(&[0, 1, 2], round) {
            let argv = one_daemon_bundle(s, &format!("style-{which}"), styles[which].1, "on-exit = stop-bundle\n", &args);
            let t = Instant::now();
            let mut child = Command::new(&argv[0]).args(&argv[1..]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
            let mut out = child.stdout.take().unwrap();
            let mut buf = vec![0u8; 1 << 16];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
            let _ = child.wait();
            rates[which].push(bytes as f64 / t.elapsed().as_secs_f64() / 1e6);
        }
    }
    println!("\n### Log styles: prefixed output throughput ({} MB of 94-byte lines, {rounds} runs each)\n", bytes / 1_000_000);
    println!("| style | median MB/s (payload) | ratio to text |");
    println!("|---|---:|---:|");
    let base = median(&mut rates[0].clone());
    for (i, (name, _)) in styles.iter().enumerate() {
        let m = median(&mut rates[i].clone());
        println!("| {name} | {m:.0} | {} |", ratio(m, base));
    }
}

/// bundle-init's memory with 250 daemons, before and after each wrote enough to fill its
/// log buffer, with the default buffer (8 KiB) and with none.
fn bench_log_buffers(s: &Settings) {
    let n = if s.quick { 50 } else { 250 };
    let mut rows = Vec::new();
    for (label, key) in [("log-buffer = 8KiB (default)", ""), ("log-buffer = 0", "log-buffer = 0\n")] {
        let dir = s.work.join(format!("buffers-{}", rows.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("many.bundle");
        let mut text = String::from("on SIGUSR1 = forward-all\n");
        for i in 0..n {
            // 400 lines of about 10 bytes: 4 KB each, written once the daemon is up.
            text.push_str(&format!("[d{i}]\nrun = {}\n{key}", testd(s, &["--name", &format!("d{i}"), "--lines", "400"]).join(" ")));
        }
        std::fs::write(&path, text).unwrap();
        let p = Pid1::start(&[s.bundle_init.display().to_string(), "--bundle".into(), path.display().to_string()]);
        for _ in 0..n {
            let _ = wait_line(&p.out, " 400", Duration::from_secs(30));
        }
        std::thread::sleep(Duration::from_millis(500));
        let rss = proc_status(p.pid(), "VmRSS:");
        let anon = proc_status(p.pid(), "RssAnon:");
        rows.push((label, rss, anon));
    }
    println!("\n### {n} daemons, each after writing 400 lines (4 KB): bundle-init's memory\n");
    println!("| log buffers | RSS KiB | anon RSS KiB | per daemon, anon KiB over no buffer |");
    println!("|---|---:|---:|---:|");
    let none = rows[1].2 as f64;
    for (label, rss, anon) in &rows {
        println!("| {label} | {rss} | {anon} | {:.1} |", (*anon as f64 - none) / n as f64);
    }
}

fn main() {
    let mut quick = false;
    let mut bundle_init = None;
    let mut baseline = None;
    let mut shipped = None;
    let mut testd_path = None;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--bundle-init" => bundle_init = args.next().map(PathBuf::from),
            "--baseline" => baseline = args.next().map(PathBuf::from),
            "--shipped" => shipped = args.next().map(PathBuf::from),
            "--testd" => testd_path = args.next().map(PathBuf::from),
            "--only" => only = args.next(),
            _ => {
                let _ = writeln!(std::io::stderr(), "usage: bundle-init-bench --bundle-init PATH --testd PATH [--baseline PATH] [--shipped PATH] [--quick] [--only METRIC]");
                std::process::exit(2);
            }
        }
    }
    let work = std::env::temp_dir().join(format!("bundle-init-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let s = Settings {
        quick,
        bundle_init: std::fs::canonicalize(bundle_init.expect("--bundle-init PATH")).unwrap(),
        baseline: baseline.map(|p: PathBuf| std::fs::canonicalize(p).expect("--baseline PATH")),
        shipped: shipped.map(|p: PathBuf| std::fs::canonicalize(p).expect("--shipped PATH")),
        testd: std::fs::canonicalize(testd_path.expect("--testd PATH")).unwrap(),
        work: work.clone(),
    };
    let started = Instant::now();
    let metrics: [(&str, fn(&Settings)); 15] = [
        ("size", bench_size),
        ("startup", bench_startup),
        ("idle", bench_idle),
        ("forwarding", bench_forwarding),
        ("reaping", bench_reaping),
        ("shutdown", bench_shutdown),
        ("restart", bench_restart),
        ("start-many", bench_start_many),
        ("reload", bench_reload),
        ("memory", bench_bundle_memory),
        ("throughput", bench_throughput),
        ("features", bench_features_idle),
        ("http", bench_http_health),
        ("log-styles", bench_log_styles),
        ("log-buffers", bench_log_buffers),
    ];
    for (name, run) in metrics {
        if only.as_deref().is_none_or(|o| o == name) {
            run(&s);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    println!("\n(benchmark took {:.0} s{})", started.elapsed().as_secs_f64(), if quick { ", --quick" } else { "" });
}
