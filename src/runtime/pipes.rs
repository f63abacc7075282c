//! The daemons' output pipes: one stdout and one stderr pipe per prefixed daemon, kept for
//! the daemon's whole life so restarts reuse them and the descriptor count never grows.
//! What is read is split into `[name] line` records for the sinks.

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
}

struct DaemonPipes {
    prefix: Vec<u8>,
    streams: [Stream; 2],
}

impl DaemonPipes {
    /// A stdout and a stderr pipe for daemon `name`, read into `sinks`.
    fn new(name: &str, sinks: [usize; 2]) -> io::Result<DaemonPipes> {
        let stream = |sink| -> io::Result<Stream> {
            let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
            rustix::fs::fcntl_setfl(&read, rustix::fs::OFlags::NONBLOCK)?;
            Ok(Stream {
                read,
                write,
                splitter: LineSplitter::default(),
                sink,
            })
        };
        Ok(DaemonPipes {
            prefix: format!("[{name}] ").into_bytes(),
            streams: [stream(sinks[0])?, stream(sinks[1])?],
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
        self.drain(id, sinks, false);
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
        let n = match rustix::io::read(&s.read, &mut self.read_buf) {
            Ok(n) => n,
            Err(_) => return, // EAGAIN or EINTR: poll again
        };
        let sink = &mut sinks[s.sink];
        sink.take_records(|out| s.splitter.feed(&pipes.prefix, &self.read_buf[..n], out));
        sink.flush_unpolled();
    }

    /// Every daemon's last output, for the exit.
    pub(super) fn drain_all(&mut self, sinks: &mut [Sink]) {
        for id in self.daemons.ids() {
            self.drain(id, sinks, false);
        }
    }

    /// Reads whatever a daemon left in its pipes and ends its last partial line. While
    /// running (`keep_within_room`), only as much as the queue has room for; at exit,
    /// everything, for the final flush.
    pub(super) fn drain(&mut self, id: DaemonId, sinks: &mut [Sink], keep_within_room: bool) {
        let Some(pipes) = self.daemons.get_mut(id) else {
            return;
        };
        for s in &mut pipes.streams {
            let sink = &mut sinks[s.sink];
            // Bounded: at most a pipe's worth of reads, so a writer that keeps writing
            // (an orphan holding the pipe) cannot keep us here; and only while the sink
            // has room, so a stuck reader makes a crash loop wait, not grow the queue.
            // What is left stays in the pipe, in order, for when the reader is back.
            let mut emptied = false;
            for _ in 0..64 {
                if keep_within_room && !sink.has_room() && !sink.shedding {
                    break;
                }
                match rustix::io::read(&s.read, &mut self.read_buf) {
                    Ok(n) if n > 0 => {
                        sink.take_records(|out| {
                            s.splitter.feed(&pipes.prefix, &self.read_buf[..n], out);
                        });
                    }
                    _ => {
                        emptied = true;
                        break;
                    }
                }
            }
            // The daemon's last line may lack its newline: end it, but only once nothing
            // more of it waits in the pipe.
            if emptied {
                sink.take_records(|out| s.splitter.finish(&pipes.prefix, out));
            }
        }
    }
}
