//! Which processes belong to which daemon, beyond its main process: nginx's workers, the
//! backends postgres puts in sessions of their own, whatever a daemon left running when it
//! exited. Every process a daemon starts inherits a mark from it, and bundle-init finds a
//! daemon's processes by looking for its mark in /proc.
//!
//! The mark is the soft limit of RLIMIT_RTTIME, the CPU time a process may spend under a
//! realtime scheduling policy without sleeping. It suits because it needs nothing from the
//! engine (no writable cgroup, no privilege): a child inherits it across fork and exec, a
//! change of user, setsid and the rewriting of argv and environ that nginx and postgres do
//! for their process titles; /proc/PID/limits shows it to anyone; and no ordinary daemon
//! touches it. Marks are above 2^62 microseconds (146,000 years), so the limit never acts.
//! What escapes: a process that sets its own RLIMIT_RTTIME (a nested bundle-init marks its
//! own daemons, and supervises them itself).

use std::io::Read;

use crate::id::DaemonId;

/// The lowest mark: 2^62 microseconds of realtime CPU time is never reached.
const FLOOR: u64 = 1 << 62;
/// Bits for the daemon's id, and above them for this bundle-init's instance, so a nested
/// bundle-init's marks are never mistaken for this one's.
const ID_BITS: u32 = 24;
const ID_MASK: u64 = (1 << ID_BITS) - 1;
const INSTANCE_MASK: u64 = (1 << 24) - 1;

/// The marks of one bundle-init.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Marks {
    base: u64,
    /// RLIMIT_RTTIME's hard limit, which a child keeps.
    hard: u64,
}

impl Marks {
    /// Marks for this instance (`seed` tells it from others in the same namespace), or
    /// None when RLIMIT_RTTIME's hard limit leaves no room for them (lowered by whoever
    /// started bundle-init): then leftovers are not tracked.
    pub(crate) fn new(seed: u64) -> Option<Marks> {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `limit` is a valid rlimit for the call to fill.
        if unsafe { libc::getrlimit(libc::RLIMIT_RTTIME, &mut limit) } != 0 {
            return None;
        }
        let base = FLOOR | ((seed & INSTANCE_MASK) << ID_BITS);
        let hard: u64 = limit.rlim_max;
        let fits = hard == libc::RLIM_INFINITY || hard > base | ID_MASK;
        fits.then_some(Marks { base, hard })
    }

    /// The mark of daemon `id`.
    pub(crate) fn of(self, id: DaemonId) -> u64 {
        self.base | (u64::from(id.0) & ID_MASK)
    }

    /// The RLIMIT_RTTIME a process of daemon `id` is started with.
    pub(crate) fn limit_for(self, id: DaemonId) -> libc::rlimit {
        libc::rlimit {
            rlim_cur: self.of(id),
            rlim_max: self.hard,
        }
    }
}

/// Whether /proc is this PID namespace's: the pids it lists are the ones bundle-init can
/// signal. Under `unshare --pid` without a /proc of its own they are the host's, and a
/// leftover found there could not be told from a process of ours with the same number.
pub(crate) fn proc_is_ours() -> bool {
    let me = std::process::id().to_string();
    std::fs::read_link("/proc/self").is_ok_and(|target| target.as_os_str() == me.as_str())
}

/// Every live process but `me` that carries `mark`, from /proc (none without it). A
/// zombie is not one: it runs nothing, holds nothing, and is reaped soon.
#[cfg(test)]
pub(crate) fn find(mark: u64, me: i32) -> Vec<i32> {
    marked(me)
        .into_iter()
        .filter(|&(_, m)| m == mark)
        .map(|(pid, _)| pid)
        .collect()
}

/// Every live process but `me` that carries a mark, with it: one walk of /proc that
/// serves every daemon looked for in one pass of the loop.
pub(crate) fn marked(me: i32) -> Vec<(i32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut buf = Vec::with_capacity(2048);
    let mut found = Vec::new();
    for pid in entries.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        if pid == me {
            continue;
        }
        if let Some(mark) = mark_of(pid, &mut buf).filter(|&m| m >= FLOOR)
            && !is_dead(pid, &mut buf)
        {
            found.push((pid, mark));
        }
    }
    found
}

/// Whether `pid` has exited (a zombie, or gone while we looked): its /proc/PID/stat state.
fn is_dead(pid: i32, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    let read =
        std::fs::File::open(format!("/proc/{pid}/stat")).and_then(|mut f| f.read_to_end(buf));
    if read.is_err() {
        return true;
    }
    // The state follows the command name, which is in parentheses and may hold anything.
    let state = buf
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|end| buf.get(end + 2));
    matches!(state, Some(b'Z' | b'X'))
}

/// The mark process `pid` carries: its RLIMIT_RTTIME soft limit, when it has one.
fn mark_of(pid: i32, buf: &mut Vec<u8>) -> Option<u64> {
    buf.clear();
    let mut file = std::fs::File::open(format!("/proc/{pid}/limits")).ok()?;
    file.read_to_end(buf).ok()?;
    realtime_timeout(std::str::from_utf8(buf).ok()?)
}

/// The soft limit on the "Max realtime timeout" line of a /proc/PID/limits text.
fn realtime_timeout(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max realtime timeout"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_read_from_its_line_and_unlimited_is_no_mark() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max realtime priority     0                    0                    \n\
                    Max realtime timeout      4611686018444492802  unlimited            us        \n";
        assert_eq!(realtime_timeout(text), Some(4_611_686_018_444_492_802));
        let unmarked = text.replace("4611686018444492802", "unlimited          ");
        assert_eq!(realtime_timeout(&unmarked), None);
    }

    #[test]
    fn marks_tell_daemons_and_instances_apart() {
        let (Some(one), Some(two)) = (Marks::new(1), Marks::new(2)) else {
            panic!("this machine's RLIMIT_RTTIME hard limit is unlimited");
        };
        assert_ne!(one.of(DaemonId(0)), one.of(DaemonId(1)));
        assert_ne!(one.of(DaemonId(0)), two.of(DaemonId(0)));
        assert!(one.of(DaemonId(5)) >= FLOOR);
    }

    /// `argv` started with `limit` as its RLIMIT_RTTIME, as a daemon's process is.
    fn marked_child(limit: libc::rlimit, argv: &[&str]) -> std::process::Child {
        let mut child = std::process::Command::new(argv[0]);
        child.args(&argv[1..]);
        // SAFETY: setrlimit is async-signal-safe, and `limit` is copied into the closure.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut child, move || {
                if libc::setrlimit(libc::RLIMIT_RTTIME, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        child.spawn().expect("the test program runs")
    }

    #[test]
    fn a_child_with_a_mark_is_found_by_it_and_only_by_it() {
        let marks = Marks::new(7).expect("room for marks");
        let mut child = marked_child(marks.limit_for(DaemonId(3)), &["sleep", "30"]);
        let pid = child.id() as i32;
        let me = std::process::id() as i32;
        let found = find(marks.of(DaemonId(3)), me);
        let other = find(marks.of(DaemonId(4)), me);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found, [pid]);
        assert!(!other.contains(&pid));
    }

    /// From the hostile review: a marked process that exited but is not reaped yet is no
    /// leftover (it made a worker that died beside its master look "left", and an exit 0
    /// look like a daemon that went into the background).
    #[test]
    fn a_zombie_with_the_mark_is_not_a_leftover() {
        let marks = Marks::new(9).expect("room for marks");
        let mut child = marked_child(marks.limit_for(DaemonId(5)), &["true"]);
        let pid = child.id() as i32;
        // Wait (without reaping) until it is a zombie.
        let stat = format!("/proc/{pid}/stat");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
            assert!(std::time::Instant::now() < deadline, "true never exited");
            std::thread::yield_now();
        }
        let found = find(marks.of(DaemonId(5)), std::process::id() as i32);
        let _ = child.wait();
        assert!(
            found.is_empty(),
            "the zombie {found:?} is counted as a leftover"
        );
    }
}
