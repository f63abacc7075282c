//! What bundle-testd can be asked to do besides running: hold silent connections, make a
//! process tree or orphans, flood its output, print numbered lines.

use super::*;

/// Each round forks a child that forks a grandchild and exits at once: the grandchild is
/// re-parented to the nearest subreaper (bundle-init) and exits, a zombie it must reap.
/// Connects to the control socket of the bundle-init in our PID namespace, as many times as
/// asked, and keeps the connections open without a word for the rest of the process's life.
pub(crate) fn hold_silent_connections(options: &Options) {
    use std::os::linux::net::SocketAddrExt;
    let ns = std::fs::read_link("/proc/self/ns/pid").unwrap_or_default();
    let inode: String = ns
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let name = format!("bundle-init.{inode}");
    let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name) else {
        return;
    };
    let mut held = 0;
    for _ in 0..options.silent_clients {
        if let Ok(stream) = std::os::unix::net::UnixStream::connect_addr(&addr) {
            std::mem::forget(stream);
            held += 1;
        }
    }
    note(options, &format!("holding {held} connections"));
}

/// A child in its own session and a grandchild, both with every signal blocked (inherited
/// from main): only SIGKILL ends them. The child says which pids they have.
pub(crate) fn make_tree(options: &Options) {
    // SAFETY: the child goes on as a plain single-threaded process (this program has no
    // threads); it only forks, prints and sleeps.
    if unsafe { fork() } != 0 {
        return;
    }
    // SAFETY: no arguments; a failure only leaves the child in our session.
    unsafe { libc::setsid() };
    // SAFETY: as above: the grandchild only sleeps.
    let grandchild = unsafe { fork() };
    if grandchild > 0 {
        note(
            options,
            &format!("tree {} {grandchild}", std::process::id()),
        );
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Forks `options.workers` workers; each returns from here as a worker (renamed, with no
/// `--exit-after`), the master after the last fork.
pub(crate) fn start_workers(options: &mut Options) {
    for _ in 0..options.workers {
        // SAFETY: the child goes on as a plain single-threaded process (this program has
        // no threads).
        if unsafe { fork() } == 0 {
            if options.worker_sessions {
                // SAFETY: no arguments; a failure only leaves the worker in our session.
                unsafe { libc::setsid() };
            }
            options.name = format!("{}-worker", options.name);
            options.exit_after = None;
            options.workers = 0;
            note(options, "worker");
            return;
        }
    }
}

/// The classic daemon's fork: the parent exits 0 at once, the child goes on in a new
/// session.
pub(crate) fn put_in_background() {
    // SAFETY: the parent only exits; the child goes on single-threaded.
    if unsafe { fork() } != 0 {
        // SAFETY: _exit ends the parent at once.
        unsafe { _exit(0) };
    }
    // SAFETY: no arguments.
    unsafe { libc::setsid() };
}

pub(crate) fn make_orphans(count: u32) {
    for _ in 0..count {
        // SAFETY: the child only calls fork and _exit, both async-signal-safe.
        let child = unsafe { fork() };
        if child == 0 {
            // SAFETY: fork again and leave at once; both calls are async-signal-safe.
            unsafe {
                fork();
                _exit(0);
            }
        }
        if child > 0 {
            let mut status = 0;
            // SAFETY: waits for the child we just made.
            unsafe { waitpid(child, &mut status, 0) };
        }
    }
}

/// Whole lines, written once at least `chunk` bytes are ready. 64 KiB writes keep the writer
/// from being what limits a throughput test.
pub(crate) fn flood(bytes: u64, chunk_size: usize) {
    let mut out = std::io::stdout().lock();
    let mut chunk = Vec::with_capacity(70 * 1024);
    let mut written = 0u64;
    let mut n = 0u64;
    while written < bytes {
        let line = format!(
            "flood line {n:010} xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
        );
        chunk.extend_from_slice(line.as_bytes());
        written += line.len() as u64;
        n += 1;
        if chunk.len() >= chunk_size || written >= bytes {
            if out.write_all(&chunk).is_err() {
                return;
            }
            chunk.clear();
        }
    }
    let _ = out.flush();
}

/// `1` to `count`, one line per write, as a line-buffered program writes them.
pub(crate) fn numbered_lines(count: u64) {
    let mut out = std::io::stdout().lock();
    for n in 1..=count {
        if out.write_all(format!("{n}\n").as_bytes()).is_err() {
            return;
        }
    }
}

/// `count` lines of hostile bytes, to stdout and stderr in turn; each stream's bytes are
/// also written to `copy`.stdout and `copy`.stderr, for a test to compare.
pub(crate) fn hostile_lines(count: u64, copy: &str) {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut written = [Vec::new(), Vec::new()];
    for n in 0..count {
        let mut line = Vec::new();
        let len = match next() % 8 {
            0 => 12_000 + (next() % 500) as usize, // three pipe buffers and more
            1 => 4000 + (next() % 200) as usize,   // around MAX_LINE
            _ => (next() % 200) as usize,
        };
        while line.len() < len {
            match next() % 6 {
                0 => line.push((next() % 32) as u8), // control characters
                1 => line.push(0x80 + (next() % 128) as u8), // lone high bytes
                2 => line.extend_from_slice("é€😀".as_bytes()), // 2, 3 and 4 bytes
                3 => line.extend_from_slice(b"\"\\"),
                _ => line.push(b' ' + (next() % 95) as u8),
            }
        }
        line.retain(|&b| b != b'\n');
        line.push(b'\n');
        let stream = (n % 2) as usize;
        let ok = match stream {
            0 => std::io::stdout().write_all(&line),
            _ => std::io::stderr().write_all(&line),
        };
        if ok.is_err() {
            return;
        }
        written[stream].extend_from_slice(&line);
    }
    let _ = std::io::stdout().flush();
    let _ = std::fs::write(format!("{copy}.stdout"), &written[0]);
    let _ = std::fs::write(format!("{copy}.stderr"), &written[1]);
}
