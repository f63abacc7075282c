//! Readiness checks, run by bundle-init itself inside the loop (the image may have no tool
//! to run them): connect to a TCP address or a Unix socket, look for a file, or wait for a
//! newline on a notification descriptor (the s6 convention). The supervisor says when a
//! probe starts and stops (`Action::StartProbe`, `Action::StopProbe`); this module only runs
//! them and reports the daemons it found ready. Probes that need a retry wait for a
//! deadline the loop already polls with; nothing sleeps. A daemon without a check costs
//! nothing here.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use rustix::pipe::PipeFlags;

use crate::plan::ReadyCheck;
use crate::time::Time;

/// How often a failed connect or a missing file is tried again.
pub(crate) const RETRY: Duration = Duration::from_millis(100);

struct Probe {
    next_at: Time,
    /// A non-blocking connect under way.
    connecting: Option<OwnedFd>,
    /// Read end of the notification pipe.
    notify: Option<OwnedFd>,
}

#[derive(Clone, Copy)]
pub(crate) enum Interest {
    Connect(usize),
    Notify(usize),
}

pub(crate) struct Probes {
    /// Each daemon's check, from its spec.
    checks: Vec<Option<ReadyCheck>>,
    probes: Vec<Option<Probe>>,
    /// The read end of the notification pipe made for the latest spawn of a daemon,
    /// waiting for that process's probe to start.
    pending_notify: Vec<Option<OwnedFd>>,
}

/// A notification pipe for one spawn: the child gets `write` as descriptor `target`.
pub(crate) struct NotifyPipe {
    pub(crate) write: OwnedFd,
    pub(crate) target: i32,
}

impl Probes {
    pub(crate) fn new(checks: Vec<Option<ReadyCheck>>) -> Probes {
        let daemons = checks.len();
        Probes {
            checks,
            probes: (0..daemons).map(|_| None).collect(),
            pending_notify: (0..daemons).map(|_| None).collect(),
        }
    }

    /// After a reload renumbered the daemons: daemon `i` is what `mapping[i]` was (its
    /// probe, if one runs, carries on); a new daemon has none yet.
    pub(crate) fn renumber(&mut self, mapping: &[Option<usize>]) {
        fn moved<T>(list: &mut [Option<T>], mapping: &[Option<usize>]) -> Vec<Option<T>> {
            mapping
                .iter()
                .map(|m| m.and_then(|old| list.get_mut(old).and_then(Option::take)))
                .collect()
        }
        self.checks = moved(&mut self.checks, mapping);
        self.probes = moved(&mut self.probes, mapping);
        self.pending_notify = moved(&mut self.pending_notify, mapping);
    }

    /// Daemon `index` is about to start with this check (a reload may have changed it).
    pub(crate) fn set_check(&mut self, index: usize, check: Option<ReadyCheck>) {
        if let Some(slot) = self.checks.get_mut(index) {
            *slot = check;
        }
    }

    /// Before spawning daemon `index`: the pipe its notify check reads, if it has one. A
    /// fresh pipe per start, so a new process never inherits an old one's notification.
    pub(crate) fn notify_pipe(&mut self, index: usize) -> Option<NotifyPipe> {
        let Some(Some(ReadyCheck::Notify(target))) = self.checks.get(index) else {
            return None;
        };
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC).ok()?;
        self.pending_notify[index] = Some(read);
        Some(NotifyPipe {
            write,
            target: *target,
        })
    }

    /// Starts daemon `index`'s check; the first attempt runs at the next `run_due`.
    pub(crate) fn start(&mut self, index: usize, now: Time) {
        let Some(slot) = self.probes.get_mut(index) else {
            return;
        };
        *slot = Some(Probe {
            next_at: now,
            connecting: None,
            notify: self.pending_notify[index].take(),
        });
    }

    /// Stops daemon `index`'s check and closes whatever it held.
    pub(crate) fn stop(&mut self, index: usize) {
        if let Some(slot) = self.probes.get_mut(index) {
            *slot = None;
        }
    }

    /// Runs the probes that are due; returns the daemons found ready (their probes stop).
    pub(crate) fn run_due(&mut self, now: Time) -> Vec<usize> {
        let mut ready = Vec::new();
        for index in 0..self.probes.len() {
            let (Some(probe), Some(check)) = (self.probes[index].as_mut(), &self.checks[index])
            else {
                continue;
            };
            if probe.connecting.is_some() || now < probe.next_at {
                continue;
            }
            if attempt(probe, check) {
                self.probes[index] = None;
                ready.push(index);
            } else if probe.connecting.is_none() && probe.next_at != Time::MAX {
                probe.next_at = now + RETRY;
            }
        }
        ready
    }

    /// Descriptors to poll: connects under way (for writability) and notification pipes.
    pub(crate) fn interests(&self) -> impl Iterator<Item = (RawFd, i16, Interest)> + '_ {
        self.probes.iter().enumerate().flat_map(|(index, probe)| {
            let probe = probe.as_ref();
            let connect = probe.and_then(|p| p.connecting.as_ref()).map(|fd| {
                (
                    fd.as_raw_fd(),
                    crate::sys::POLLOUT,
                    Interest::Connect(index),
                )
            });
            let notify = probe
                .and_then(|p| p.notify.as_ref())
                .map(|fd| (fd.as_raw_fd(), crate::sys::POLLIN, Interest::Notify(index)));
            connect.into_iter().chain(notify)
        })
    }

    /// A polled descriptor is ready; returns the daemon if it became ready (its probe
    /// stops).
    pub(crate) fn event(&mut self, interest: Interest, now: Time) -> Option<usize> {
        let ready = self.observe(interest, now)?;
        self.probes[ready] = None;
        Some(ready)
    }

    fn observe(&mut self, interest: Interest, now: Time) -> Option<usize> {
        match interest {
            Interest::Connect(index) => {
                let probe = self.probes.get_mut(index)?.as_mut()?;
                let fd = probe.connecting.take()?;
                let connected = matches!(rustix::net::sockopt::socket_error(&fd), Ok(Ok(())));
                probe.next_at = now + RETRY;
                connected.then_some(index)
            }
            Interest::Notify(index) => {
                let probe = self.probes.get_mut(index)?.as_mut()?;
                let fd = probe.notify.as_ref()?;
                let mut buf = [0u8; 64];
                match rustix::io::read(fd, &mut buf) {
                    Ok(0) | Err(_) => {
                        probe.notify = None; // closed without a newline: never ready
                        None
                    }
                    Ok(n) => buf[..n].contains(&b'\n').then_some(index),
                }
            }
        }
    }

    /// The next time a probe wants to run again.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        self.probes
            .iter()
            .flatten()
            .filter(|p| p.connecting.is_none() && p.next_at != Time::MAX)
            .map(|p| p.next_at)
            .min()
    }
}

/// One attempt of `check`. True when the daemon is ready.
fn attempt(probe: &mut Probe, check: &ReadyCheck) -> bool {
    match check {
        ReadyCheck::File(path) => std::fs::symlink_metadata(path).is_ok(),
        ReadyCheck::Tcp(tcp) => {
            let family = if tcp.addr.is_ipv4() {
                AddressFamily::INET
            } else {
                AddressFamily::INET6
            };
            start_connect(probe, family, &tcp.addr)
        }
        ReadyCheck::Unix(path) => match SocketAddrUnix::new(path.as_path()) {
            Ok(addr) => start_connect(probe, AddressFamily::UNIX, &addr),
            Err(_) => false,
        },
        ReadyCheck::Notify(_) => {
            // Only the pipe can tell: no retries.
            probe.next_at = Time::MAX;
            false
        }
    }
}

/// Starts a non-blocking connect. True when it connected at once.
fn start_connect(
    probe: &mut Probe,
    family: AddressFamily,
    addr: &impl rustix::net::addr::SocketAddrArg,
) -> bool {
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let Ok(fd) = rustix::net::socket_with(family, SocketType::STREAM, flags, None) else {
        return false;
    };
    match rustix::net::connect(&fd, addr) {
        Ok(()) => true,
        Err(rustix::io::Errno::INPROGRESS) | Err(rustix::io::Errno::AGAIN) => {
            probe.connecting = Some(fd);
            false
        }
        Err(_) => false,
    }
}
