//! The daemons' output pipes: one stdout and one stderr pipe per prefixed daemon, kept for
//! the daemon's whole life so restarts reuse them and the descriptor count never grows.
//! What is read is split into `[name] line` records for the sinks.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use rustix::pipe::PipeFlags;

use super::logs::{HeldLines, LogClients};
use crate::id::{DaemonId, IdMap};
use crate::logline::{StreamName, TIME_LEN, json_daemon_line, rfc3339, wall_clock_ms};
use crate::output::{LineSink, LineSplitter, Sink};
use crate::plan::LogStyle;

/// How much one read takes from a pipe.
const READ_SIZE: usize = 32 * 1024;

/// One daemon output stream.
struct Stream {
    read: OwnedFd,
    write: OwnedFd,
    splitter: LineSplitter,
    sink: usize,
    /// Bytes read from the pipe so far.
    taken: u64,
    /// Where, counted in bytes read, the output of a process that was reaped ends: its last
    /// line ends there, newline or not. A pipe keeps no boundary between writers, but a
    /// reaped process writes no more, so what the pipe held at its reap was the rest of its
    /// output. In order, each past the last: more than one only when runs exit faster than
    /// the reader reads, and never more than the pipe holds bytes.
    run_ends: VecDeque<u64>,
}

impl Stream {
    fn new(sink: usize) -> io::Result<Stream> {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
        rustix::fs::fcntl_setfl(&read, rustix::fs::OFlags::NONBLOCK)?;
        Ok(Stream {
            read,
            write,
            splitter: LineSplitter::default(),
            sink,
            taken: 0,
            run_ends: VecDeque::new(),
        })
    }

    /// One read, never past the end of a reaped process's output, whose last line is then
    /// ended. Returns whether it took anything (false: the pipe is empty).
    fn read_once(&mut self, lines: &mut LineOut, buf: &mut [u8], sink: &mut Sink) -> bool {
        let limit = match self.run_ends.front() {
            Some(&end) => usize::try_from(end.saturating_sub(self.taken))
                .map_or(buf.len(), |n| n.clamp(1, buf.len())),
            None => buf.len(),
        };
        let n = match rustix::io::read(&self.read, &mut buf[..limit]) {
            Ok(n) if n > 0 => n,
            _ => return false, // EAGAIN (empty) or EINTR: poll again
        };
        self.taken += n as u64;
        let run_ended = self.run_ends.front().is_some_and(|&end| end <= self.taken);
        let splitter = &mut self.splitter;
        sink.take_records(|out| {
            let mut to = lines.to(out);
            splitter.feed(&buf[..n], &mut to);
            if run_ended {
                splitter.finish(&mut to);
            }
        });
        if run_ended {
            self.run_ends.pop_front();
        }
        true
    }

    /// The process writing to this pipe was reaped: the bytes still in the pipe are the rest
    /// of its output (FIONREAD counts them), and its last line ends after them. A queue too
    /// full to read them now keeps that boundary, so a restarted process's first line,
    /// written behind them, still starts a line of its own. Returns whether any are left.
    fn writer_reaped(&mut self, lines: &mut LineOut, sink: &mut Sink) -> bool {
        let left = rustix::io::ioctl_fionread(&self.read).unwrap_or(0);
        if left == 0 {
            let splitter = &mut self.splitter;
            sink.take_records(|out| splitter.finish(&mut lines.to(out)));
        } else if self.run_ends.back() != Some(&(self.taken + left)) {
            self.run_ends.push_back(self.taken + left);
        }
        left > 0
    }

    /// Reads while `more` says the sink may take more, at most a pipe's worth of reads, so a
    /// writer that keeps writing (an orphan holding the pipe) cannot keep the loop here.
    /// Returns whether the pipe was emptied.
    fn read_while(
        &mut self,
        lines: &mut LineOut,
        buf: &mut [u8],
        sink: &mut Sink,
        more: impl Fn(&Sink) -> bool,
    ) -> bool {
        for _ in 0..64 {
            if !more(sink) {
                return false;
            }
            if !self.read_once(lines, buf, sink) {
                return true;
            }
        }
        false
    }
}

struct DaemonPipes {
    name: String,
    prefix: Vec<u8>,
    streams: [Stream; 2],
    /// Its last lines, for `bundle-init logs`; kept across restarts.
    held: HeldLines,
}

impl DaemonPipes {
    /// A stdout and a stderr pipe for daemon `name`, read into `sinks`.
    fn new(name: &str, sinks: [usize; 2]) -> io::Result<DaemonPipes> {
        Ok(DaemonPipes {
            name: name.to_string(),
            prefix: format!("[{name}] ").into_bytes(),
            streams: [Stream::new(sinks[0])?, Stream::new(sinks[1])?],
            held: HeldLines::default(),
        })
    }
}

/// Where one daemon's lines go: its sink's queue in the bundle's style, its held lines,
/// and its followers.
struct LineOut<'a> {
    id: DaemonId,
    name: &'a str,
    prefix: &'a [u8],
    stream: StreamName,
    style: LogStyle,
    /// The wall-clock time of this read, when the style shows it.
    time: Option<[u8; TIME_LEN]>,
    held: &'a mut HeldLines,
    /// `log-buffer`: how much `held` may keep.
    cap: usize,
    clients: &'a mut LogClients,
    /// A line whose start came in an earlier read, joined (JSON escapes it whole).
    joined: &'a mut Vec<u8>,
}

impl<'l> LineOut<'l> {
    fn to<'b>(&'b mut self, out: &'b mut Vec<u8>) -> LineTo<'b, 'l> {
        LineTo { lines: self, out }
    }
}

/// A `LineOut` writing into one queue.
struct LineTo<'a, 'b> {
    lines: &'a mut LineOut<'b>,
    out: &'a mut Vec<u8>,
}

impl LineSink for LineTo<'_, '_> {
    fn line(&mut self, head: &[u8], tail: &[u8], ended: bool) -> usize {
        let l = &mut *self.lines;
        let keep = if l.style.json {
            let whole: &[u8] = if head.is_empty() {
                tail
            } else {
                l.joined.clear();
                l.joined.extend_from_slice(head);
                l.joined.extend_from_slice(tail);
                l.joined
            };
            // A cut line leaves an unfinished character to the next piece, so that no
            // character is cut in two (each half would be an invalid sequence).
            let keep = if ended { 0 } else { unfinished_char(whole) };
            let text = &whole[..whole.len() - keep];
            let time = l.time.unwrap_or_else(|| rfc3339(0));
            json_daemon_line(self.out, l.name, l.stream, text, ended, &time);
            keep
        } else {
            if let Some(time) = l.time.filter(|_| l.style.time) {
                self.out.extend_from_slice(&time);
                self.out.push(b' ');
            }
            self.out.extend_from_slice(l.prefix);
            self.out.extend_from_slice(head);
            self.out.extend_from_slice(tail);
            self.out.push(b'\n');
            0
        };
        let (head, tail) = trim_end(head, tail, keep);
        l.held.push(head, tail, l.cap);
        if l.clients.any_follow(l.id) {
            l.clients.line(l.id, l.prefix, head, tail);
        }
        keep
    }
}

/// `head` then `tail` without their last `keep` bytes.
fn trim_end<'a>(head: &'a [u8], tail: &'a [u8], keep: usize) -> (&'a [u8], &'a [u8]) {
    match tail.len().checked_sub(keep) {
        Some(len) => (head, &tail[..len]),
        None => (&head[..head.len() - (keep - tail.len())], &[]),
    }
}

/// How many of the last bytes of `text` (0 to 3) are the start of a character that is
/// not finished: a lead byte and the continuation bytes after it, still valid so far.
fn unfinished_char(text: &[u8]) -> usize {
    for back in 1..=3.min(text.len()) {
        let at = text.len() - back;
        match text[at] {
            0x80..=0xbf => continue,
            0xc0..=0xff => {
                let incomplete = matches!(
                    std::str::from_utf8(&text[at..]),
                    Err(e) if e.error_len().is_none()
                );
                return if incomplete { back } else { 0 };
            }
            _ => return 0,
        }
    }
    0
}

/// Every prefixed daemon's pipes, by id, and the one read buffer they share (allocated
/// with the first pipe: a bundle without prefixed output never has it).
#[derive(Default)]
pub(super) struct OutputPipes {
    daemons: IdMap<DaemonPipes>,
    read_buf: Vec<u8>,
    joined: Vec<u8>,
    pub(super) style: LogStyle,
}

/// What the runtime lends the pipes for one call: the sinks, the log clients, and the
/// supervisor, which says each daemon's `log-buffer` (a reload may change it).
pub(super) struct Lend<'a> {
    pub(super) sinks: &'a mut [Sink],
    pub(super) clients: &'a mut LogClients,
    pub(super) sup: &'a crate::supervisor::Supervisor,
}

impl OutputPipes {
    /// Daemon `id`'s last lines, `lines` at most, each after its prefix.
    pub(super) fn write_held(&self, id: DaemonId, lines: Option<usize>, out: &mut Vec<u8>) {
        if let Some(pipes) = self.daemons.get(id) {
            pipes.held.write_last(&pipes.prefix, lines, out);
        }
    }

    /// Runs `f` on stream `stream` of daemon `id` with where its lines go.
    fn with_stream(
        &mut self,
        id: DaemonId,
        stream: usize,
        lend: &mut Lend,
        f: impl FnOnce(&mut Stream, &mut LineOut, &mut [u8], &mut Sink),
    ) {
        let Some(pipes) = self.daemons.get_mut(id) else {
            return;
        };
        let style = self.style;
        let time = style.wants_time().then(|| rfc3339(wall_clock_ms()));
        let s = &mut pipes.streams[stream];
        let mut lines = LineOut {
            id,
            name: &pipes.name,
            prefix: &pipes.prefix,
            stream: StreamName::of(stream),
            style,
            time,
            held: &mut pipes.held,
            cap: lend.sup.log_buffer(id),
            clients: lend.clients,
            joined: &mut self.joined,
        };
        let sink = &mut lend.sinks[s.sink];
        f(s, &mut lines, &mut self.read_buf, sink);
    }

    /// Pipes for daemon `id`, read into `sinks` (stdout's, stderr's).
    pub(super) fn add(&mut self, id: DaemonId, name: &str, sinks: [usize; 2]) -> io::Result<()> {
        self.daemons.insert(id, DaemonPipes::new(name, sinks)?);
        if self.read_buf.is_empty() {
            self.read_buf = vec![0; READ_SIZE];
        }
        Ok(())
    }

    pub(super) fn has(&self, id: DaemonId) -> bool {
        self.daemons.get(id).is_some()
    }

    /// The write ends a spawn of `id` gets as its stdout and stderr.
    pub(super) fn write_ends(&self, id: DaemonId) -> Option<[RawFd; 2]> {
        let pipes = self.daemons.get(id)?;
        Some(pipes.streams.each_ref().map(|s| s.write.as_raw_fd()))
    }

    /// Drains daemon `id`'s last output, then closes its pipes; its held lines go too.
    pub(super) fn remove(&mut self, id: DaemonId, lend: &mut Lend) {
        self.drain(id, lend);
        self.daemons.remove(id);
    }

    /// The read ends worth polling: those whose sink has room (a full sink means a slow
    /// reader: stop reading so the daemon waits), or sheds at shutdown.
    pub(super) fn readable<'a>(
        &'a self,
        sinks: &'a [Sink],
    ) -> impl Iterator<Item = (RawFd, DaemonId, usize)> + 'a {
        self.daemons.iter().flat_map(move |(id, pipes)| {
            pipes
                .streams
                .iter()
                .enumerate()
                .filter(|(_, s)| sinks[s.sink].has_room() || sinks[s.sink].shedding)
                .map(move |(stream, s)| (s.read.as_raw_fd(), id, stream))
        })
    }

    /// Poll said stream `stream` of daemon `id` is readable.
    pub(super) fn read(&mut self, id: DaemonId, stream: usize, lend: &mut Lend) {
        self.with_stream(id, stream, lend, |s, lines, buf, sink| {
            s.read_once(lines, buf, sink);
            sink.flush_unpolled();
        });
    }

    /// Every daemon's last output, for the exit.
    pub(super) fn drain_all(&mut self, lend: &mut Lend) {
        for id in self.daemons.ids() {
            self.drain(id, lend);
        }
    }

    /// Daemon `id`'s process was reaped: where its output ends is noted, and what it left
    /// in its pipes is read, only as much as the queue has room for: a stuck reader makes a
    /// crash loop wait, not grow the queue. The rest stays in the pipe, in order, for when
    /// the reader is back, and its last line still ends where its output does.
    pub(super) fn reaped(&mut self, id: DaemonId, lend: &mut Lend) {
        for stream in 0..2 {
            self.with_stream(id, stream, lend, |s, lines, buf, sink| {
                // An empty pipe needs no read: what an orphan writes later, poll reports.
                if s.writer_reaped(lines, sink) {
                    let room = |sink: &Sink| sink.has_room() || sink.shedding;
                    s.read_while(lines, buf, sink, room);
                }
            });
        }
    }

    /// Reads whatever is left in daemon `id`'s pipes, whatever the queue holds (it is going
    /// away, or bundle-init is), and ends its last partial line once the pipe is empty.
    fn drain(&mut self, id: DaemonId, lend: &mut Lend) {
        for stream in 0..2 {
            self.with_stream(id, stream, lend, |s, lines, buf, sink| {
                if s.read_while(lines, buf, sink, |_| true) {
                    let splitter = &mut s.splitter;
                    sink.take_records(|out| splitter.finish(&mut lines.to(out)));
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a `LineOut` borrows, owned by a test.
    #[derive(Default)]
    struct Parts {
        held: HeldLines,
        clients: LogClients,
        joined: Vec<u8>,
    }

    impl Parts {
        fn lines(&mut self, style: LogStyle) -> LineOut<'_> {
            LineOut {
                id: DaemonId(0),
                name: "d",
                prefix: b"[d] ",
                stream: StreamName::Stdout,
                style,
                time: None,
                held: &mut self.held,
                cap: 8192,
                clients: &mut self.clients,
                joined: &mut self.joined,
            }
        }
    }

    /// What `sink` wrote to the pipe whose read end is `out`.
    fn written(sink: &mut Sink, out: &OwnedFd) -> String {
        sink.flush();
        let mut buf = vec![0; 1 << 16];
        let n = rustix::io::read(out, &mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Runs exited with their last line unended, and the next run's output is already
    /// behind it in the pipe (the queue was too full to read at the reaps): each run's
    /// last line still ends where its output ends.
    #[test]
    fn a_reaped_run_s_last_line_ends_where_its_output_ends() {
        let (out, out_write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
        let mut sink = Sink::new(out_write.as_raw_fd());
        let mut stream = Stream::new(0).unwrap();
        let mut buf = vec![0; READ_SIZE];
        let mut parts = Parts::default();
        let mut lines = parts.lines(LogStyle::default());
        for run in [&b"one\nPARTIAL"[..], b"SECOND", b"THIRD\n"] {
            rustix::io::write(&stream.write, run).unwrap();
            stream.writer_reaped(&mut lines, &mut sink);
        }
        rustix::io::write(&stream.write, b"next").unwrap();
        while stream.read_once(&mut lines, &mut buf, &mut sink) {}
        assert_eq!(
            written(&mut sink, &out),
            "[d] one\n[d] PARTIAL\n[d] SECOND\n[d] THIRD\n"
        );
        assert!(stream.run_ends.is_empty());
        stream.writer_reaped(&mut lines, &mut sink);
        assert_eq!(
            written(&mut sink, &out),
            "[d] next\n",
            "an empty pipe: ended now"
        );
    }

    /// Reads stop at a run's end, so the next run's bytes in the same read buffer never
    /// join its last line, however small the reads.
    #[test]
    fn a_read_never_crosses_the_end_of_a_run() {
        let (out, out_write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
        let mut sink = Sink::new(out_write.as_raw_fd());
        let mut stream = Stream::new(0).unwrap();
        let mut parts = Parts::default();
        let mut lines = parts.lines(LogStyle::default());
        rustix::io::write(&stream.write, b"ab").unwrap();
        stream.writer_reaped(&mut lines, &mut sink);
        rustix::io::write(&stream.write, b"cd\n").unwrap();
        let mut buf = vec![0; 1];
        while stream.read_once(&mut lines, &mut buf, &mut sink) {}
        assert_eq!(written(&mut sink, &out), "[d] ab\n[d] cd\n");
    }

    /// The lines a daemon writes are held as they are written to the sink: whole, in order.
    #[test]
    fn what_a_daemon_writes_is_held_line_by_line() {
        let (_out, out_write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
        let mut sink = Sink::new(out_write.as_raw_fd());
        let mut stream = Stream::new(0).unwrap();
        let mut parts = Parts::default();
        let mut lines = parts.lines(LogStyle::default());
        let mut buf = vec![0; READ_SIZE];
        rustix::io::write(&stream.write, b"one\ntwo\nthr").unwrap();
        while stream.read_once(&mut lines, &mut buf, &mut sink) {}
        let mut held = Vec::new();
        parts.held.write_last(b"[d] ", None, &mut held);
        assert_eq!(
            held, b"[d] one\n[d] two\n",
            "a partial line is not held yet"
        );
    }

    /// In JSON, a line cut at MAX_LINE inside a character leaves the character whole to
    /// the next record: the records' texts join to the line, with nothing replaced.
    #[test]
    fn a_json_line_cut_inside_a_character_keeps_the_character_whole() {
        let (out, out_write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).unwrap();
        rustix::fs::fcntl_setfl(&out, rustix::fs::OFlags::NONBLOCK).unwrap();
        let mut sink = Sink::new(out_write.as_raw_fd());
        let mut splitter = LineSplitter::default();
        let mut parts = Parts::default();
        let style = LogStyle {
            json: true,
            time: false,
        };
        let mut lines = parts.lines(style);
        // "é" is 2 bytes: with one ASCII byte first, MAX_LINE falls inside one.
        let text = format!("a{}", "é".repeat(3 * crate::output::MAX_LINE / 2));
        let input = format!("{text}\n");
        sink.take_records(|out| {
            let mut to = lines.to(out);
            splitter.feed(input.as_bytes(), &mut to);
        });
        let mut written = Vec::new();
        let mut buf = vec![0; 1 << 16];
        loop {
            sink.flush();
            match rustix::io::read(&out, &mut buf) {
                Ok(n) if n > 0 => written.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let written = String::from_utf8(written).unwrap();
        let records: Vec<&str> = written.lines().collect();
        assert!(records.len() >= 2, "{} records", records.len());
        let mut joined = String::new();
        for record in &records {
            let at = record.find("\"text\":\"").unwrap() + 8;
            let end = record[at..].find('"').unwrap();
            joined.push_str(&record[at..at + end]);
        }
        assert!(!joined.contains('\u{FFFD}'));
        assert_eq!(joined, text);
    }
}
