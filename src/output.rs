//! Prefixed output: daemons' lines become `[name] line` records, queued to bundle-init's
//! stdout or stderr and written only when the descriptor can take them, so a slow log
//! reader never stalls the loop.
//!
//! Records are at most PIPE_BUF bytes (a line of up to MAX_LINE bytes plus the prefix),
//! so one record is one atomic write to a pipe: lines are never interleaved.
//!
//! Nothing here may block: O_NONBLOCK is never set on the descriptor bundle-init was given,
//! because that file description is shared with the engine and with unprefixed daemons,
//! which expect blocking writes. A pipe or terminal is written through a description of
//! its own, a socket with MSG_DONTWAIT.

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use rustix::fs::{FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::net::SendFlags;

use crate::time::Time;

/// The kernel's atomic pipe write size on Linux.
pub(crate) const PIPE_BUF: usize = libc::PIPE_BUF;
/// Longest line content in one record; longer lines are split into several records.
pub(crate) const MAX_LINE: usize = PIPE_BUF - 64;
/// A sink holding more than this stops reading daemons' pipes until it drains, so a stuck
/// reader makes the daemons wait (as a plain pipe would) instead of growing memory.
pub(crate) const HIGH_WATER: usize = 64 * 1024;

/// Cuts a byte stream into lines of at most MAX_LINE bytes.
#[derive(Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
}

/// What receives each line: its bytes in two parts (what an earlier read left, and the
/// rest), and whether the line ended (a newline, or the end of the output) rather than
/// being cut at MAX_LINE. For a cut line, it returns how many of its last bytes (at most
/// 3: an unfinished character) it leaves to start the next piece.
pub(crate) trait LineSink {
    fn line(&mut self, head: &[u8], tail: &[u8], ended: bool) -> usize;
}

/// The classic sink: `[name] line` records appended to a queue (the runtime's own one
/// also holds lines and feeds followers: `runtime::pipes`).
#[cfg(test)]
pub(crate) struct Prefixed<'a> {
    pub(crate) prefix: &'a [u8],
    pub(crate) out: &'a mut Vec<u8>,
}

#[cfg(test)]
impl LineSink for Prefixed<'_> {
    fn line(&mut self, head: &[u8], tail: &[u8], _ended: bool) -> usize {
        self.out.extend_from_slice(self.prefix);
        self.out.extend_from_slice(head);
        self.out.extend_from_slice(tail);
        self.out.push(b'\n');
        0
    }
}

impl LineSplitter {
    /// Hands each complete line in `data` to `sink`; keeps the rest.
    pub(crate) fn feed(&mut self, mut data: &[u8], sink: &mut impl LineSink) {
        while !data.is_empty() {
            let room = MAX_LINE - self.partial.len();
            let window = &data[..data.len().min(room + 1)];
            if let Some(newline) = window.iter().position(|&b| b == b'\n') {
                self.emit(&data[..newline], true, sink);
                data = &data[newline + 1..];
            } else if data.len() <= room {
                self.partial.extend_from_slice(data);
                return;
            } else {
                self.emit(&data[..room], false, sink);
                data = &data[room..];
            }
        }
    }

    /// Ends a final line that had no newline (the daemon exited mid-line).
    pub(crate) fn finish(&mut self, sink: &mut impl LineSink) {
        if !self.partial.is_empty() {
            self.emit(&[], true, sink);
        }
    }

    fn emit(&mut self, tail: &[u8], ended: bool, sink: &mut impl LineSink) {
        let total = self.partial.len() + tail.len();
        let keep = match sink.line(&self.partial, tail, ended) {
            _ if ended => 0,
            keep => keep.min(3).min(total),
        };
        // The bytes kept start the next piece (at most 3: no allocation beyond partial's).
        let mut carry = [0u8; 3];
        for (i, slot) in carry.iter_mut().take(keep).enumerate() {
            let at = total - keep + i;
            *slot = match at.checked_sub(self.partial.len()) {
                Some(in_tail) => tail[in_tail],
                None => self.partial[at],
            };
        }
        self.partial.clear();
        self.partial.extend_from_slice(&carry[..keep]);
    }
}

/// How a sink writes to its descriptor without blocking.
enum Writer {
    /// A non-blocking file description of its own, of the same pipe, FIFO or terminal.
    Private(OwnedFd),
    /// A socket: `send` with MSG_DONTWAIT makes each call non-blocking by itself.
    Socket,
    /// The shared descriptor, blocking: written only after poll said it has room, once per
    /// poll (a regular file or /dev/null, which never wait, or what could not be reopened).
    Shared,
}

/// One of bundle-init's own outputs (stdout or stderr) with a queue in front of it.
pub(crate) struct Sink {
    writer: Writer,
    raw: RawFd,
    pending: Vec<u8>,
    /// Whose bytes `pending` holds, for the count of what is dropped at exit.
    owners: Owners,
    broken: bool,
    /// Bundle-init's own log lines dropped because the queue was full or the output broken.
    pub(crate) dropped: u64,
    /// A write got through since the loop last looked (see `note_progress`).
    progressed: bool,
    /// Since when the queue has been full with no write getting through.
    stuck_since: Option<Time>,
    /// Daemons' records are dropped instead of queued: shutdown began and the reader has
    /// been stuck too long for the daemons to wait for it.
    pub(crate) shedding: bool,
    /// Lines of daemons' output dropped while shedding, not yet reported.
    pub(crate) shed_lines: u64,
    /// Where records to be dropped are cut, to be counted (reused, not reallocated).
    scratch: Vec<u8>,
}

impl Sink {
    /// Wraps descriptor `raw` (1 or 2), and chooses how to write to it without blocking.
    pub(crate) fn new(raw: RawFd) -> Sink {
        Sink {
            writer: writer_for(raw),
            raw,
            pending: Vec::new(),
            owners: Owners::default(),
            broken: false,
            dropped: 0,
            progressed: false,
            stuck_since: None,
            shedding: false,
            shed_lines: 0,
            scratch: Vec::new(),
        }
    }

    /// Whether `raw` and this sink write to the same file (stdout and stderr often do).
    pub(crate) fn same_file_as(&self, raw: RawFd) -> bool {
        let a = rustix::fs::fstat(borrow_fd(self.raw));
        let b = rustix::fs::fstat(borrow_fd(raw));
        matches!((a, b), (Ok(a), Ok(b)) if a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    }

    pub(crate) fn fd(&self) -> RawFd {
        match &self.writer {
            Writer::Private(fd) => fd.as_raw_fd(),
            Writer::Socket | Writer::Shared => self.raw,
        }
    }

    pub(crate) fn has_room(&self) -> bool {
        self.pending.len() < HIGH_WATER
    }

    pub(crate) fn wants_write(&self) -> bool {
        !self.pending.is_empty() && !self.broken
    }

    /// Queues one of bundle-init's own lines, or drops it when the queue is full.
    /// A line longer than PIPE_BUF is cut to fit, so it too is one atomic write.
    pub(crate) fn log_line(&mut self, line: &[u8]) {
        if self.broken || self.pending.len() + line.len() > HIGH_WATER * 2 {
            self.dropped += 1;
        } else if line.len() > PIPE_BUF {
            self.pending.extend_from_slice(&line[..PIPE_BUF - 4]);
            self.pending.extend_from_slice(b"...\n");
            self.owners.queued(Owner::BundleInit, PIPE_BUF);
        } else {
            self.pending.extend_from_slice(line);
            self.owners.queued(Owner::BundleInit, line.len());
        }
    }

    /// Writes what it can when poll has not been asked: only without blocking (a private
    /// description, a socket). A blocking descriptor is written only after poll said it is
    /// writable (`flush`): a write to a full pipe would stop the whole loop.
    pub(crate) fn flush_unpolled(&mut self) {
        if !matches!(self.writer, Writer::Shared) {
            self.flush();
        }
    }

    /// Writes what it can without blocking. Call when poll reports the descriptor writable.
    ///
    /// Every write is at most PIPE_BUF bytes and ends on a record boundary. A pipe takes
    /// such a write whole or not at all, so a daemon with `prefix-output = no` that writes
    /// to the same pipe can never land inside one of our records.
    pub(crate) fn flush(&mut self) {
        let mut written = 0;
        while !self.broken && written < self.pending.len() {
            let chunk = whole_records(&self.pending[written..], PIPE_BUF);
            match self.write(&self.pending[written..written + chunk]) {
                Ok(n) => {
                    written += n;
                    self.progressed = true;
                    if matches!(self.writer, Writer::Shared) {
                        break; // one write per poll: a blocking descriptor must not block
                    }
                }
                Err(Errno::INTR) => {}
                Err(Errno::AGAIN) => break,
                Err(_) => {
                    // EPIPE, EBADF, EIO...: the reader is gone. Drop output, keep supervising.
                    self.broken = true;
                    self.pending = Vec::new();
                    self.owners = Owners::default();
                    return;
                }
            }
        }
        // One move of what is left, not one per write.
        self.pending.drain(..written);
        self.owners.written(written);
    }

    /// bundle-init stops writing for good: what is still queued is dropped and counted, as
    /// bundle-init's own lines (`dropped`) or daemons' (`shed_lines`).
    pub(crate) fn give_up(&mut self) {
        let mut at = 0;
        for (owner, len) in self.owners.runs.drain(..) {
            let bytes = self.pending.get(at..at + len).unwrap_or_default();
            let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
            match owner {
                Owner::BundleInit => self.dropped += lines,
                Owner::Daemons => self.shed_lines += lines,
            }
            at += len;
        }
        self.pending.clear();
    }

    fn write(&self, bytes: &[u8]) -> rustix::io::Result<usize> {
        match &self.writer {
            Writer::Private(fd) => rustix::io::write(fd, bytes),
            // NOSIGNAL: a reader that went away is an EPIPE here, not a SIGPIPE.
            Writer::Socket => rustix::net::send(
                borrow_fd(self.raw),
                bytes,
                SendFlags::DONTWAIT | SendFlags::NOSIGNAL,
            ),
            Writer::Shared => rustix::io::write(borrow_fd(self.raw), bytes),
        }
    }
}

/// How to write to `raw` without blocking and without touching its shared description.
/// A pipe, FIFO or terminal is opened again through `/proc/self/fd/N` with O_NONBLOCK:
/// a new file description of the same object, so the one that unprefixed children also
/// write to keeps its blocking mode (O_NOCTTY: a terminal must not become bundle-init's
/// controlling one). A socket cannot be opened again, but `send` takes MSG_DONTWAIT.
/// Anything else is written only when poll says it has room.
fn writer_for(raw: RawFd) -> Writer {
    let fd = borrow_fd(raw);
    let Ok(stat) = rustix::fs::fstat(fd) else {
        return Writer::Shared;
    };
    let reopen = match FileType::from_raw_mode(stat.st_mode) {
        FileType::Fifo => true,
        FileType::Socket => return Writer::Socket,
        // Opening a pseudo-terminal's master again would make a new terminal, not reach
        // this one.
        FileType::CharacterDevice => rustix::termios::isatty(fd) && !crate::sys::is_pty_master(fd),
        _ => false,
    };
    if !reopen {
        return Writer::Shared;
    }
    let flags = OFlags::WRONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    match rustix::fs::open(
        format!("/proc/self/fd/{raw}").as_str(),
        flags,
        Mode::empty(),
    ) {
        Ok(private) => Writer::Private(private),
        Err(_) => Writer::Shared,
    }
}

impl Sink {
    /// Called once per loop turn: a sink whose queue is full counts as stuck since its last
    /// write (this turn's, if one got through), so the loop always has a deadline to shed
    /// at. A write that got through while the queue stays full restarts the clock rather
    /// than stopping it: the loop may sleep until that deadline, with no turn to start it.
    pub(crate) fn note_progress(&mut self, now: Time) {
        let progressed = std::mem::take(&mut self.progressed);
        if self.has_room() || self.broken {
            self.stuck_since = None;
        } else if progressed || self.stuck_since.is_none() {
            self.stuck_since = Some(now);
        }
    }

    /// When a stuck sink should start shedding, if it is stuck and not shedding yet.
    pub(crate) fn shed_at(&self) -> Option<Time> {
        self.stuck_since
            .filter(|_| !self.shedding)
            .map(|since| since + STUCK_AT_SHUTDOWN)
    }

    /// Takes daemons' records, cut into the buffer `cut` is given: queued, or, while the
    /// sink sheds and is full, counted as lines and dropped whole. A broken output drops
    /// them uncounted.
    pub(crate) fn take_records(&mut self, cut: impl FnOnce(&mut Vec<u8>)) {
        if self.broken {
            // Cut all the same: the lines still go to `logs` and its followers.
            self.scratch.clear();
            cut(&mut self.scratch);
            return;
        }
        if self.shedding && !self.has_room() {
            self.scratch.clear();
            cut(&mut self.scratch);
            let lines = self.scratch.iter().filter(|&&b| b == b'\n').count();
            self.shed_lines += lines as u64;
        } else {
            let before = self.pending.len();
            cut(&mut self.pending);
            self.owners
                .queued(Owner::Daemons, self.pending.len() - before);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Owner {
    BundleInit,
    Daemons,
}

/// Whose bytes a queue holds, front to back, as runs of one owner's bytes: when stdout
/// and stderr are one file, bundle-init's own lines and daemons' records share a queue.
#[derive(Default)]
struct Owners {
    runs: VecDeque<(Owner, usize)>,
}

impl Owners {
    fn queued(&mut self, owner: Owner, bytes: usize) {
        match self.runs.back_mut() {
            Some((last, len)) if *last == owner => *len += bytes,
            _ if bytes > 0 => self.runs.push_back((owner, bytes)),
            _ => {}
        }
    }

    /// The first `bytes` of the queue were written.
    fn written(&mut self, mut bytes: usize) {
        while bytes > 0
            && let Some((_, len)) = self.runs.front_mut()
        {
            let taken = bytes.min(*len);
            *len -= taken;
            bytes -= taken;
            if *len == 0 {
                self.runs.pop_front();
            }
        }
    }
}

/// How long a full output may take no write at all, once shutdown began, before daemons'
/// output is dropped instead of waited for: a daemon blocked writing to its full pipe
/// cannot act on its stop signal, and would be SIGKILLed at its grace.
pub(crate) const STUCK_AT_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

/// The longest prefix of `pending` of at most `limit` bytes that ends at a record boundary
/// (or `limit` bytes when a single record is longer, which only happens mid-record).
fn whole_records(pending: &[u8], limit: usize) -> usize {
    if pending.len() <= limit {
        return pending.len();
    }
    match pending[..limit].iter().rposition(|&b| b == b'\n') {
        Some(end) => end + 1,
        None => limit,
    }
}

/// Borrows a descriptor bundle-init does not own: 0, 1 and 2 (opened at start
/// if they were closed, never closed), or inherited ones it only looks at.
pub(crate) fn borrow_fd(raw: RawFd) -> BorrowedFd<'static> {
    // SAFETY: these descriptors are never closed by bundle-init; a number that is not open
    // only makes the system call that uses it fail with EBADF.
    unsafe { BorrowedFd::borrow_raw(raw) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<u8> {
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        let mut sink = Prefixed {
            prefix: b"[d] ",
            out: &mut out,
        };
        for chunk in chunks {
            splitter.feed(chunk, &mut sink);
        }
        splitter.finish(&mut sink);
        out
    }

    /// With the longest prefix a daemon name allows, every record still fits in the
    /// kernel's atomic pipe write (4096 bytes on Linux), however long the line.
    #[test]
    fn every_record_fits_in_one_atomic_pipe_write() {
        assert_eq!(PIPE_BUF, 4096);
        let prefix = format!("[{}] ", "n".repeat(crate::values::MAX_NAME_LEN));
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        let mut sink = Prefixed {
            prefix: prefix.as_bytes(),
            out: &mut out,
        };
        splitter.feed(&vec![b'x'; 3 * PIPE_BUF], &mut sink);
        splitter.finish(&mut sink);
        let records: Vec<&[u8]> = out.split_inclusive(|&b| b == b'\n').collect();
        assert_eq!(records.len(), 4, "12288 bytes in records of at most 4032");
        for record in records {
            assert!(
                record.len() <= PIPE_BUF,
                "a record of {} bytes",
                record.len()
            );
        }
    }

    /// A pipe whose read end the test holds, and a sink on its write end.
    fn sink_on_a_pipe() -> (Sink, OwnedFd, OwnedFd) {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        rustix::fs::fcntl_setfl(&read, OFlags::NONBLOCK).unwrap();
        (Sink::new(write.as_raw_fd()), read, write)
    }

    /// A new pseudo-terminal, (master, slave); nothing reads the master unless a test does.
    fn pty_pair() -> (OwnedFd, OwnedFd) {
        use std::os::fd::FromRawFd;
        let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
        // SAFETY: no memory arguments; a new descriptor or -1.
        let master = unsafe { libc::posix_openpt(flags) };
        assert!(master >= 0);
        // SAFETY: a fresh descriptor nothing else owns.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        // SAFETY: grantpt takes the master's number only.
        assert_eq!(unsafe { libc::grantpt(master.as_raw_fd()) }, 0);
        // SAFETY: unlockpt takes the master's number only.
        assert_eq!(unsafe { libc::unlockpt(master.as_raw_fd()) }, 0);
        // SAFETY: TIOCGPTPEER takes the open flags as an integer, returns a new descriptor.
        let slave = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
        assert!(slave >= 0);
        // SAFETY: a fresh descriptor nothing else owns.
        (master, unsafe { OwnedFd::from_raw_fd(slave) })
    }

    /// Queues far more than `sink` can take and flushes until it takes nothing more: each
    /// flush must return. Run on a thread, so a flush that blocks fails the test instead
    /// of hanging it. Returns how much was written.
    fn flush_until_full(mut sink: Sink) -> usize {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let record = [&b"[d] "[..], &[b'x'; 1000], b"\n"].concat();
            for _ in 0..1000 {
                sink.take_records(|q| q.extend_from_slice(&record));
            }
            let queued = sink.pending.len();
            loop {
                let before = sink.pending.len();
                sink.flush();
                if sink.pending.len() == before {
                    break;
                }
            }
            let _ = done.send(queued - sink.pending.len());
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a flush blocked")
    }

    /// A terminal whose reader stopped (its master is not read) fills up; the sink's writes
    /// go through a non-blocking description of its own and return. The shared description
    /// keeps its blocking mode.
    #[test]
    fn a_terminal_nobody_reads_never_blocks_a_flush() {
        let (_master, slave) = pty_pair();
        let sink = Sink::new(slave.as_raw_fd());
        assert!(matches!(sink.writer, Writer::Private(_)));
        let written = flush_until_full(sink);
        assert!(written > 0, "the terminal took something first");
        let flags = rustix::fs::fcntl_getfl(&slave).unwrap();
        assert!(!flags.contains(OFlags::NONBLOCK), "the shared description");
    }

    /// A socket whose peer does not read: `send` with MSG_DONTWAIT, never a blocking write.
    #[test]
    fn a_socket_nobody_reads_never_blocks_a_flush() {
        use rustix::net::{AddressFamily, SocketFlags, SocketType};
        let (ours, _peer) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let sink = Sink::new(ours.as_raw_fd());
        assert!(matches!(sink.writer, Writer::Socket));
        assert!(flush_until_full(sink) > 0);
        let flags = rustix::fs::fcntl_getfl(&ours).unwrap();
        assert!(!flags.contains(OFlags::NONBLOCK), "the shared description");
    }

    /// A pseudo-terminal's master is never opened again: that would make a new terminal.
    #[test]
    fn a_terminal_master_is_not_opened_again() {
        let (master, _slave) = pty_pair();
        assert!(matches!(
            Sink::new(master.as_raw_fd()).writer,
            Writer::Shared
        ));
    }

    #[test]
    fn a_sink_keeps_reading_daemons_until_64_kib_are_queued() {
        let (mut sink, _read, _write) = sink_on_a_pipe();
        sink.take_records(|q| q.resize(64 * 1024 - 1, b'x'));
        assert!(sink.has_room());
        sink.take_records(|q| q.push(b'x'));
        assert!(!sink.has_room());
    }

    /// flush writes whole records while the pipe takes them, and returns once it is full.
    #[test]
    fn flush_writes_whole_records_until_the_pipe_is_full() {
        let (mut sink, read, _write) = sink_on_a_pipe();
        let record = b"[d] 0123456789012345678901234567890123\n";
        let total = 4000 * record.len(); // more than a pipe holds (64 KiB by default)
        for _ in 0..4000 {
            sink.take_records(|q| q.extend_from_slice(record));
        }
        sink.flush();
        let mut taken = vec![0u8; total];
        let n = rustix::io::read(&read, &mut taken).unwrap();
        assert!(n > 0 && n < total, "the pipe took {n} of {total} bytes");
        assert_eq!(n % record.len(), 0, "a write ended inside a record");
        assert_eq!(
            sink.pending.len(),
            total - n,
            "what was not written is still queued"
        );
    }

    /// Each write is one atomic pipe write: at most PIPE_BUF bytes, ending on a record.
    /// A pipe with one free page takes 4096 bytes of a 64 KiB write, which ends inside a
    /// record; another writer's line would then land inside ours.
    #[test]
    fn a_nearly_full_pipe_gets_whole_records_only() {
        let (mut sink, read, write) = sink_on_a_pipe();
        let capacity = rustix::pipe::fcntl_getpipe_size(&write).unwrap();
        let filler = vec![b'f'; capacity - PIPE_BUF];
        assert_eq!(rustix::io::write(&write, &filler).unwrap(), filler.len());
        let record = [&b"[d] "[..], &[b'x'; 300], b"\n"].concat();
        for _ in 0..20 {
            sink.take_records(|q| q.extend_from_slice(&record));
        }
        sink.flush();
        let written = 20 * record.len() - sink.pending.len();
        assert!(written > 0, "the free page took something");
        assert_eq!(written % record.len(), 0, "a write ended inside a record");
        let mut buf = vec![0u8; capacity];
        let n = rustix::io::read(&read, &mut buf).unwrap();
        assert_eq!(n, filler.len() + written);
        sink.flush();
        assert!(sink.pending.is_empty(), "then the rest fits");
        let n = rustix::io::read(&read, &mut buf).unwrap();
        assert_eq!(n, 20 * record.len() - written, "nothing lost or repeated");
    }

    /// A full queue that takes no write is stuck from the first turn that sees it; any
    /// write clears that. Shedding drops whole records, counted as lines.
    #[test]
    fn a_stuck_sink_sheds_whole_records_and_counts_them() {
        let (mut sink, read, _write) = sink_on_a_pipe();
        let t = |s: f64| Time::from_secs_f64(s);
        sink.take_records(|q| q.resize(HIGH_WATER, b'x'));
        sink.note_progress(t(1.0));
        assert_eq!(sink.shed_at(), Some(t(1.0) + STUCK_AT_SHUTDOWN));
        sink.note_progress(t(1.5));
        assert_eq!(sink.shed_at(), Some(t(2.0)), "still stuck since 1.0");
        sink.shedding = true;
        assert!(sink.shed_at().is_none(), "already shedding");
        sink.take_records(|out| out.extend_from_slice(b"[d] a\n[d] b\n"));
        assert_eq!(sink.shed_lines, 2);
        assert_eq!(sink.pending.len(), HIGH_WATER, "dropped, not queued");
        // The reader takes something: a write gets through, and the sink has room again.
        let mut buf = vec![0u8; 1 << 20];
        sink.flush();
        while rustix::io::read(&read, &mut buf).is_ok_and(|n| n > 0) {
            sink.flush();
        }
        sink.note_progress(t(3.0));
        assert!(sink.stuck_since.is_none());
        let before = sink.pending.len();
        sink.take_records(|out| out.extend_from_slice(b"[d] c\n"));
        assert_eq!(sink.pending.len(), before + 6, "queued again");
    }

    /// A terminal takes a few bytes now and then while its reader is stuck (the kernel
    /// moves its buffers along later). A full queue that took a write this turn is stuck
    /// from this turn: the deadline to shed at stays armed. It used to be dropped until a
    /// later turn, and with nothing else to wake the loop, that turn never came.
    #[test]
    fn a_full_sink_that_took_a_write_is_stuck_from_that_write() {
        let (mut sink, _read, _write) = sink_on_a_pipe();
        let t = |s: f64| Time::from_secs_f64(s);
        sink.take_records(|q| q.resize(HIGH_WATER, b'x'));
        sink.note_progress(t(1.0));
        sink.progressed = true;
        sink.note_progress(t(1.5));
        assert_eq!(sink.shed_at(), Some(t(1.5) + STUCK_AT_SHUTDOWN));
        sink.note_progress(t(2.0));
        assert_eq!(sink.shed_at(), Some(t(2.5)), "still stuck since 1.5");
    }

    /// At the final give-up, what is still queued is counted, line by line, as bundle-init's
    /// own or as daemons', even when they share one queue and a write stopped inside it.
    #[test]
    fn what_is_still_queued_at_the_give_up_is_counted_by_whose_it_is() {
        let (mut sink, read, _write) = sink_on_a_pipe();
        let record = [&b"[d] "[..], &[b'x'; 1000], b"\n"].concat();
        let own = b"[bundle-init] d exited with code 0\n";
        let mut daemon_lines = 0;
        let mut own_lines = 0;
        // More than the pipe takes, in runs of each kind.
        for round in 0..100 {
            for _ in 0..round % 7 {
                sink.take_records(|q| q.extend_from_slice(&record));
                daemon_lines += 1;
            }
            sink.log_line(own);
            own_lines += 1;
        }
        sink.flush();
        let mut buf = vec![0u8; 1 << 20];
        let taken = rustix::io::read(&read, &mut buf).unwrap();
        let written = &buf[..taken];
        let written_daemon = written
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"[d] "))
            .count();
        let written_own = written
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"[bundle-init] "))
            .count();
        assert!(!sink.pending.is_empty(), "the pipe is full");
        sink.give_up();
        assert!(sink.pending.is_empty());
        assert_eq!(sink.shed_lines as usize + written_daemon, daemon_lines);
        assert_eq!(sink.dropped as usize + written_own, own_lines);
    }

    #[test]
    fn a_long_log_line_is_cut_to_one_atomic_write() {
        let (mut sink, _read, _write) = sink_on_a_pipe();
        let mut line = vec![b'l'; 3 * PIPE_BUF];
        line.push(b'\n');
        sink.log_line(&line);
        assert_eq!(sink.pending.len(), PIPE_BUF);
        assert!(sink.pending.ends_with(b"...\n"));
    }

    #[test]
    fn lines_are_prefixed_and_kept_whole_across_reads() {
        assert_eq!(
            split(&[b"hel", b"lo\nwor", b"ld\n"]),
            b"[d] hello\n[d] world\n"
        );
    }

    #[test]
    fn a_final_partial_line_is_flushed() {
        assert_eq!(split(&[b"a\nno newline"]), b"[d] a\n[d] no newline\n");
    }

    #[test]
    fn empty_lines_survive() {
        assert_eq!(split(&[b"\n\n"]), b"[d] \n[d] \n");
    }

    #[test]
    fn bytes_that_are_not_utf8_pass_through() {
        assert_eq!(split(&[b"\xff\xfe\n"]), b"[d] \xff\xfe\n");
    }

    #[test]
    fn long_lines_are_split_at_max_line_without_loss() {
        let line = vec![b'x'; MAX_LINE * 2 + 10];
        let mut input = line.clone();
        input.push(b'\n');
        let out = split(&[&input[..100], &input[100..]]);
        let records: Vec<&[u8]> = out
            .split(|&b| b == b'\n')
            .filter(|r| !r.is_empty())
            .collect();
        assert_eq!(records.len(), 3);
        assert!(
            records
                .iter()
                .all(|r| r.len() <= MAX_LINE + 4 && r.starts_with(b"[d] "))
        );
        let joined: Vec<u8> = records
            .iter()
            .flat_map(|r| r[4..].iter().copied())
            .collect();
        assert_eq!(joined, line);
    }

    #[test]
    fn a_line_of_exactly_max_line_is_one_record() {
        let mut input = vec![b'y'; MAX_LINE];
        input.push(b'\n');
        let out = split(&[&input]);
        assert_eq!(out.len(), 4 + MAX_LINE + 1);
    }

    #[test]
    fn writes_end_at_record_boundaries() {
        assert_eq!(whole_records(b"ab\ncd\nef", 7), 6);
        assert_eq!(whole_records(b"abcdefgh", 4), 4);
        assert_eq!(whole_records(b"ab\n", 10), 3);
    }
}
