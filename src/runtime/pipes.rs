//! The daemons' output pipes: one stdout and one stderr pipe per prefixed daemon, kept for
//! the daemon's whole life so restarts reuse them and the descriptor count never grows.
//! What is read is split into `[name] line` records for the sinks.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use rustix::pipe::PipeFlags;

use crate::id::{DaemonId, IdMap};
use crate::output::{LineSplitter, Sink};

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
    fn read_once(&mut self, prefix: &[u8], buf: &mut [u8], sink: &mut Sink) -> bool {
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
            splitter.feed(prefix, &buf[..n], out);
            if run_ended {
                splitter.finish(prefix, out);
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
    /// written behind them, still starts a line of its own.
    fn writer_reaped(&mut self, prefix: &[u8], sink: &mut Sink) {
        let left = rustix::io::ioctl_fionread(&self.read).unwrap_or(0);
        if left == 0 {
            let splitter = &mut self.splitter;
            sink.take_records(|out| splitter.finish(prefix, out));
        } else if self.run_ends.back() != Some(&(self.taken + left)) {
            self.run_ends.push_back(self.taken + left);
        }
    }

    /// Reads while `more` says the sink may take more, at most a pipe's worth of reads, so a
    /// writer that keeps writing (an orphan holding the pipe) cannot keep the loop here.
    /// Returns whether the pipe was emptied.
    fn read_while(
        &mut self,
        prefix: &[u8],
        buf: &mut [u8],
        sink: &mut Sink,
        more: impl Fn(&Sink) -> bool,
    ) -> bool {
        for _ in 0..64 {
            if !more(sink) {
                return false;
            }
            if !self.read_once(prefix, buf, sink) {
                return true;
            }
        }
        false
    }
}

struct DaemonPipes {
    prefix: Vec<u8>,
    streams: [Stream; 2],
}

impl DaemonPipes {
    /// A stdout and a stderr pipe for daemon `name`, read into `sinks`.
    fn new(name: &str, sinks: [usize; 2]) -> io::Result<DaemonPipes> {
        Ok(DaemonPipes {
            prefix: format!("[{name}] ").into_bytes(),
            streams: [Stream::new(sinks[0])?, Stream::new(sinks[1])?],
        })
    }
}

/// Every prefixed daemon's pipes, by id, and the one read buffer they share (allocated
/// with the first pipe: a bundle without prefixed output never has it).
#[derive(Default)]
pub(super) struct OutputPipes {
    daemons: IdMap<DaemonPipes>,
    read_buf: Vec<u8>,
}

impl OutputPipes {
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

    /// Drains daemon `id`'s last output, then closes its pipes.
    pub(super) fn remove(&mut self, id: DaemonId, sinks: &mut [Sink]) {
        self.drain(id, sinks);
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
    pub(super) fn read(&mut self, id: DaemonId, stream: usize, sinks: &mut [Sink]) {
        let Some(pipes) = self.daemons.get_mut(id) else {
            return;
        };
        let s = &mut pipes.streams[stream];
        let sink = &mut sinks[s.sink];
        s.read_once(&pipes.prefix, &mut self.read_buf, sink);
        sink.flush_unpolled();
    }

    /// Every daemon's last output, for the exit.
    pub(super) fn drain_all(&mut self, sinks: &mut [Sink]) {
        for id in self.daemons.ids() {
            self.drain(id, sinks);
        }
    }

    /// Daemon `id`'s process was reaped: where its output ends is noted, and what it left
    /// in its pipes is read, only as much as the queue has room for: a stuck reader makes a
    /// crash loop wait, not grow the queue. The rest stays in the pipe, in order, for when
    /// the reader is back, and its last line still ends where its output does.
    pub(super) fn reaped(&mut self, id: DaemonId, sinks: &mut [Sink]) {
        let Some(pipes) = self.daemons.get_mut(id) else {
            return;
        };
        for s in &mut pipes.streams {
            let sink = &mut sinks[s.sink];
            s.writer_reaped(&pipes.prefix, sink);
            let room = |sink: &Sink| sink.has_room() || sink.shedding;
            s.read_while(&pipes.prefix, &mut self.read_buf, sink, room);
        }
    }

    /// Reads whatever is left in daemon `id`'s pipes, whatever the queue holds (it is going
    /// away, or bundle-init is), and ends its last partial line once the pipe is empty.
    fn drain(&mut self, id: DaemonId, sinks: &mut [Sink]) {
        let Some(pipes) = self.daemons.get_mut(id) else {
            return;
        };
        for s in &mut pipes.streams {
            let sink = &mut sinks[s.sink];
            if s.read_while(&pipes.prefix, &mut self.read_buf, sink, |_| true) {
                let splitter = &mut s.splitter;
                sink.take_records(|out| splitter.finish(&pipes.prefix, out));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for run in [&b"one\nPARTIAL"[..], b"SECOND", b"THIRD\n"] {
            rustix::io::write(&stream.write, run).unwrap();
            stream.writer_reaped(b"[d] ", &mut sink);
        }
        rustix::io::write(&stream.write, b"next").unwrap();
        while stream.read_once(b"[d] ", &mut buf, &mut sink) {}
        assert_eq!(
            written(&mut sink, &out),
            "[d] one\n[d] PARTIAL\n[d] SECOND\n[d] THIRD\n"
        );
        assert!(stream.run_ends.is_empty());
        stream.writer_reaped(b"[d] ", &mut sink);
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
        rustix::io::write(&stream.write, b"ab").unwrap();
        stream.writer_reaped(b"[d] ", &mut sink);
        rustix::io::write(&stream.write, b"cd\n").unwrap();
        let mut buf = vec![0; 1];
        while stream.read_once(b"[d] ", &mut buf, &mut sink) {}
        assert_eq!(written(&mut sink, &out), "[d] ab\n[d] cd\n");
    }
}
