//! Each daemon's recent lines (`log-buffer`), and the clients of `bundle-init logs`: the
//! ones being sent what is held, and the followers (`logs -f`) sent each new line.
//!
//! A log client leaves the control server's request slots as soon as its request is
//! accepted: it may stay connected for hours, and `health` must always find a slot. Log
//! clients have a set of their own, MAX_LOG_CLIENTS at most; one more is refused with
//! `ERR busy`. Nothing here blocks: a client is written with MSG_DONTWAIT, only what its
//! socket takes; a follower whose queue is full loses lines, counted, and is told how many
//! once it has room again.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::{RecvFlags, SendFlags};

use crate::id::DaemonId;
use crate::time::Time;

/// Log clients at once (senders of held lines and followers together).
pub(crate) const MAX_LOG_CLIENTS: usize = 4;
/// A follower's queue: new lines that find it this full are lost (and counted).
pub(crate) const FOLLOW_QUEUE: usize = 64 * 1024;
/// A client that takes none of its held lines for this long is dropped (not a follower).
pub(crate) const STALLED_AFTER: Duration = Duration::from_secs(10);

/// A daemon's last lines, oldest first, each ending in a newline: at most `cap` bytes of
/// whole lines. Nothing is allocated until a line comes; it grows with the lines up to
/// the cap, never past it.
#[derive(Default)]
pub(super) struct HeldLines {
    bytes: VecDeque<u8>,
}

impl HeldLines {
    /// Keeps a line (`head` then `tail`), dropping the oldest lines to make room.
    pub(super) fn push(&mut self, head: &[u8], tail: &[u8], cap: usize) {
        let len = head.len() + tail.len() + 1;
        if len > cap {
            // Off (cap 0), or a cap lowered by a reload below a line: keep nothing.
            *self = HeldLines::default();
            return;
        }
        if self.bytes.len() + len > cap {
            self.drop_oldest(self.bytes.len() + len - cap, cap);
        }
        if self.bytes.capacity() > cap {
            self.bytes.shrink_to(cap);
        }
        let needed = self.bytes.len() + len;
        if needed > self.bytes.capacity() {
            // Doubling, as a Vec grows, but never past the cap.
            let target = needed.max(self.bytes.capacity() * 2).min(cap);
            self.bytes.reserve_exact(target - self.bytes.len());
        }
        self.bytes.extend(head);
        self.bytes.extend(tail);
        self.bytes.push_back(b'\n');
    }

    /// Drops the oldest whole lines, at least `needed` bytes of them and an eighth of the
    /// cap: a flood then looks for a line's end once per cap/8 bytes, not once per line.
    fn drop_oldest(&mut self, needed: usize, cap: usize) {
        let from = needed.max(cap / 8).saturating_sub(1);
        let end = self
            .bytes
            .range(from.min(self.bytes.len())..)
            .position(|&b| b == b'\n');
        match end {
            Some(end) => drop(self.bytes.drain(..=from + end)),
            None => self.bytes.clear(),
        }
    }

    /// The memory it holds, in bytes.
    #[cfg(test)]
    pub(super) fn allocated(&self) -> usize {
        self.bytes.capacity()
    }

    /// Appends the last `lines` lines (all without a number), each after `prefix`.
    pub(super) fn write_last(&self, prefix: &[u8], lines: Option<usize>, out: &mut Vec<u8>) {
        let (front, back) = self.bytes.as_slices();
        let all = [front, back].concat();
        let count = all.iter().filter(|&&b| b == b'\n').count();
        let skip = count.saturating_sub(lines.unwrap_or(count));
        for line in all.split_inclusive(|&b| b == b'\n').skip(skip) {
            out.extend_from_slice(prefix);
            out.extend_from_slice(line);
        }
    }
}

struct LogClient {
    fd: OwnedFd,
    /// The daemons it follows (none once it only gets what is held).
    following: Vec<DaemonId>,
    pending: Vec<u8>,
    /// New lines it lost because its queue was full, not yet told.
    lost: u64,
    /// Since when it has taken nothing while something was queued for it.
    stalled_since: Option<Time>,
}

impl LogClient {
    fn follows(&self, id: DaemonId) -> bool {
        self.following.contains(&id)
    }

    /// Queues a new line of a followed daemon, or counts it lost.
    fn offer(&mut self, prefix: &[u8], head: &[u8], tail: &[u8]) {
        if self.pending.len() >= FOLLOW_QUEUE {
            self.lost += 1;
            return;
        }
        self.tell_lost();
        self.pending.extend_from_slice(prefix);
        self.pending.extend_from_slice(head);
        self.pending.extend_from_slice(tail);
        self.pending.push(b'\n');
    }

    /// Once there is room again: one line that says how many lines were lost.
    fn tell_lost(&mut self) {
        if self.lost > 0 && self.pending.len() < FOLLOW_QUEUE {
            let lost = std::mem::take(&mut self.lost);
            let line = format!("[bundle-init] {lost} lines lost: this client read too slowly\n");
            self.pending.extend_from_slice(line.as_bytes());
        }
    }

    /// Writes what the socket takes. Returns false when the client is gone.
    fn flush(&mut self, now: Time) -> bool {
        let mut written = 0;
        while written < self.pending.len() {
            let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
            match rustix::net::send(&self.fd, &self.pending[written..], flags) {
                Ok(n) => written += n,
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => break,
                Err(_) => return false,
            }
        }
        self.pending.drain(..written);
        // Only a client being sent held lines can stall: a follower that does not read
        // loses new lines instead, and stays until it leaves.
        if written > 0 || self.pending.is_empty() || !self.following.is_empty() {
            self.stalled_since = None;
        } else if self.stalled_since.is_none() {
            self.stalled_since = Some(now);
        }
        self.tell_lost();
        true
    }

    /// Whether it is done: all it was sent is out and it follows nothing.
    fn done(&self) -> bool {
        self.following.is_empty() && self.pending.is_empty()
    }
}

/// The clients of `logs`, at most MAX_LOG_CLIENTS.
#[derive(Default)]
pub(super) struct LogClients {
    clients: Vec<LogClient>,
}

impl LogClients {
    /// Takes over a control client answered with `answer` (the `OK` line and the held
    /// lines); with `following`, its daemons' new lines follow. Over the cap, it is refused.
    pub(super) fn add(&mut self, fd: OwnedFd, answer: Vec<u8>, following: Vec<DaemonId>) {
        if self.is_full() {
            return LogClients::refuse(&fd);
        }
        self.clients.push(LogClient {
            fd,
            following,
            pending: answer,
            lost: 0,
            stalled_since: None,
        });
    }

    pub(super) fn is_full(&self) -> bool {
        self.clients.len() >= MAX_LOG_CLIENTS
    }

    /// Answers one client too many `ERR busy` (and it is closed when dropped).
    pub(super) fn refuse(fd: &OwnedFd) {
        let refusal = format!(
            "ERR busy: {MAX_LOG_CLIENTS} logs clients already (logs -f holds one until it leaves)\n"
        );
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        let _ = rustix::net::send(fd, refusal.as_bytes(), flags);
    }

    /// Whether any client follows daemon `id`: only then is a line offered.
    pub(super) fn any_follow(&self, id: DaemonId) -> bool {
        self.clients.iter().any(|c| c.follows(id))
    }

    /// A new line of daemon `id`, for its followers.
    pub(super) fn line(&mut self, id: DaemonId, prefix: &[u8], head: &[u8], tail: &[u8]) {
        for client in self.clients.iter_mut().filter(|c| c.follows(id)) {
            client.offer(prefix, head, tail);
        }
    }

    /// Daemon `id` is gone (a reload removed it): its followers follow it no more, and a
    /// follower left with nothing to follow or send is done.
    pub(super) fn forget(&mut self, id: DaemonId) {
        for client in &mut self.clients {
            client.following.retain(|&f| f != id);
        }
        self.clients.retain(|c| !c.done());
    }

    /// Descriptors to poll: every client for reading (its end closing is how a follower
    /// leaves), and for writing while something is queued.
    pub(super) fn interests(&self) -> impl Iterator<Item = (RawFd, i16, usize)> + '_ {
        self.clients.iter().enumerate().map(|(i, c)| {
            let write = if c.pending.is_empty() {
                0
            } else {
                crate::sys::POLLOUT
            };
            (c.fd.as_raw_fd(), crate::sys::POLLIN | write, i)
        })
    }

    /// Poll reported client `index`. Call for the highest index first: a client that is
    /// gone is removed, which shifts the ones after it.
    pub(super) fn event(&mut self, index: usize, now: Time) {
        let Some(client) = self.clients.get_mut(index) else {
            return;
        };
        let alive = client_still_there(&client.fd) && client.flush(now);
        if !alive || client.done() {
            self.clients.remove(index);
        }
    }

    /// Drops the clients that took nothing for STALLED_AFTER.
    pub(super) fn expire(&mut self, now: Time) {
        self.clients.retain(|c| {
            c.stalled_since
                .is_none_or(|since| now.saturating_sub(since) < STALLED_AFTER)
        });
    }

    pub(super) fn next_deadline(&self) -> Option<Time> {
        let stalled = self.clients.iter().filter_map(|c| c.stalled_since);
        stalled.min().map(|since| since + STALLED_AFTER)
    }

    /// Writes what can be written now, after new lines were queued.
    pub(super) fn flush_all(&mut self, now: Time) {
        let mut index = self.clients.len();
        while index > 0 {
            index -= 1;
            let client = &mut self.clients[index];
            if !client.pending.is_empty() && (!client.flush(now) || client.done()) {
                self.clients.remove(index);
            }
        }
    }
}

/// Reads (and drops) what a log client sent: false once it closed its end or failed.
fn client_still_there(fd: &OwnedFd) -> bool {
    let mut buf = [0u8; 256];
    match rustix::net::recv(fd, &mut buf, RecvFlags::DONTWAIT) {
        Ok((0, _)) => false,
        Ok(_) | Err(Errno::AGAIN) | Err(Errno::INTR) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(lines: &HeldLines, n: Option<usize>) -> String {
        let mut out = Vec::new();
        lines.write_last(b"[d] ", n, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn nothing_is_allocated_before_the_first_line() {
        let lines = HeldLines::default();
        assert_eq!(lines.allocated(), 0);
        assert_eq!(held(&lines, None), "");
    }

    /// A flood keeps the last whole lines within the cap, never more memory than it.
    #[test]
    fn the_oldest_whole_lines_go_and_memory_stays_within_the_cap() {
        let mut lines = HeldLines::default();
        for i in 0..10_000 {
            lines.push(format!("line {i}").as_bytes(), b"", 4096);
            assert!(lines.allocated() <= 4096, "{}", lines.allocated());
        }
        let text = held(&lines, None);
        assert!(text.ends_with("[d] line 9999\n"));
        assert!(text.starts_with("[d] line "), "whole lines only");
        let kept = text.lines().count();
        assert!(kept > 300 && kept * 10 <= 4096, "{kept} lines");
        assert_eq!(held(&lines, Some(2)), "[d] line 9998\n[d] line 9999\n");
    }

    #[test]
    fn a_line_is_held_from_its_two_parts() {
        let mut lines = HeldLines::default();
        lines.push(b"hel", b"lo", 8192);
        lines.push(b"", b"", 8192);
        assert_eq!(held(&lines, None), "[d] hello\n[d] \n");
        assert_eq!(held(&lines, Some(5)), "[d] hello\n[d] \n");
    }

    #[test]
    fn a_cap_of_0_holds_nothing_and_frees_what_was_held() {
        let mut lines = HeldLines::default();
        lines.push(b"a", b"", 8192);
        lines.push(b"b", b"", 0);
        assert_eq!(lines.allocated(), 0);
        assert_eq!(held(&lines, None), "");
    }

    #[test]
    fn a_lowered_cap_gives_memory_back() {
        let mut lines = HeldLines::default();
        for _ in 0..1000 {
            lines.push(&[b'x'; 100], b"", 64 * 1024);
        }
        lines.push(b"y", b"", 4096);
        assert!(lines.allocated() <= 4096);
    }

    fn socket_pair() -> (OwnedFd, OwnedFd) {
        use rustix::net::{AddressFamily, SocketFlags, SocketType};
        rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .unwrap()
    }

    /// A follower that does not read loses lines once its queue is full, counted; when it
    /// reads again it is told how many, in one line, then gets new lines again.
    #[test]
    fn a_slow_follower_loses_lines_counted_and_is_told_once_it_has_room() {
        let (ours, theirs) = socket_pair();
        let mut clients = LogClients::default();
        let id = DaemonId(0);
        clients.add(ours, b"OK\n".to_vec(), vec![id]);
        let t = Time::from_secs(1);
        let line = [b'x'; 999];
        for _ in 0..2000 {
            clients.line(id, b"[d] ", &line, b"");
            clients.flush_all(t);
        }
        let lost = clients.clients[0].lost;
        assert!(lost > 0, "the socket and the queue are full");
        let mut received = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            while let Ok(n) = rustix::io::read(&theirs, &mut buf) {
                received.extend_from_slice(&buf[..n]);
            }
            clients.event(0, t);
            if clients.clients[0].pending.is_empty() {
                break;
            }
        }
        clients.line(id, b"[d] ", b"after", b"");
        clients.flush_all(t);
        while let Ok(n) = rustix::io::read(&theirs, &mut buf) {
            received.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&received);
        let told = format!("[bundle-init] {lost} lines lost: this client read too slowly\n");
        assert_eq!(text.matches(&told).count(), 1, "told once");
        assert!(
            text.ends_with(&format!("{told}[d] after\n")),
            "then new lines again"
        );
        let got = text.lines().filter(|l| l.starts_with("[d] x")).count() as u64;
        assert_eq!(got + lost, 2000, "every line arrived or was counted lost");
    }

    #[test]
    fn one_client_over_the_cap_is_refused_busy() {
        let mut clients = LogClients::default();
        let mut theirs = Vec::new();
        for _ in 0..=MAX_LOG_CLIENTS {
            let (ours, peer) = socket_pair();
            clients.add(ours, b"OK\n".to_vec(), vec![DaemonId(0)]);
            theirs.push(peer);
        }
        assert_eq!(clients.clients.len(), MAX_LOG_CLIENTS);
        let mut buf = [0u8; 256];
        let n = rustix::io::read(&theirs[MAX_LOG_CLIENTS], &mut buf).unwrap();
        assert!(buf[..n].starts_with(b"ERR busy"));
    }
}
