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

use crate::id::{DaemonId, IdMap};
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
    Connect(DaemonId),
    Notify(DaemonId),
}

/// One daemon's check, and what runs it.
#[derive(Default)]
struct Entry {
    check: Option<ReadyCheck>,
    probe: Option<Probe>,
    /// The read end of the notification pipe made for the latest spawn, waiting for that
    /// process's probe to start.
    pending_notify: Option<OwnedFd>,
}

/// The probes of the daemons that have a check, by daemon id.
#[derive(Default)]
pub(crate) struct Probes {
    daemons: IdMap<Entry>,
}

/// A notification pipe for one spawn: the child gets `write` as descriptor `target`.
pub(crate) struct NotifyPipe {
    pub(crate) write: OwnedFd,
    pub(crate) target: i32,
}

impl Probes {
    /// Daemon `id` is about to start with this check (a reload may have changed it).
    pub(crate) fn set_check(&mut self, id: DaemonId, check: Option<ReadyCheck>) {
        match (self.daemons.get_mut(id), check) {
            (Some(entry), check) => entry.check = check,
            (None, None) => {}
            (None, Some(check)) => self.daemons.insert(
                id,
                Entry {
                    check: Some(check),
                    ..Entry::default()
                },
            ),
        }
    }

    /// A daemon a reload removed is gone: whatever its check held is closed.
    pub(crate) fn forget(&mut self, id: DaemonId) {
        self.daemons.remove(id);
    }

    /// Before spawning daemon `id`: the pipe its notify check reads, if it has one. A
    /// fresh pipe per start, so a new process never inherits an old one's notification.
    /// A pipe that cannot be made is an error, never a start without the descriptor the
    /// daemon was promised (it would wait in vain to be ready).
    pub(crate) fn notify_pipe(&mut self, id: DaemonId) -> std::io::Result<Option<NotifyPipe>> {
        let Some(entry) = self.daemons.get_mut(id) else {
            return Ok(None);
        };
        let Some(ReadyCheck::Notify(target)) = entry.check else {
            return Ok(None);
        };
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
        entry.pending_notify = Some(read);
        Ok(Some(NotifyPipe { write, target }))
    }

    /// Starts daemon `id`'s check; the first attempt runs at the next `run_due`.
    pub(crate) fn start(&mut self, id: DaemonId, now: Time) {
        let Some(entry) = self.daemons.get_mut(id) else {
            return;
        };
        entry.probe = Some(Probe {
            next_at: now,
            connecting: None,
            notify: entry.pending_notify.take(),
        });
    }

    /// Stops daemon `id`'s check and closes whatever it held.
    pub(crate) fn stop(&mut self, id: DaemonId) {
        if let Some(entry) = self.daemons.get_mut(id) {
            entry.probe = None;
        }
    }

    /// Runs the probes that are due; returns the daemons found ready (their probes stop).
    pub(crate) fn run_due(&mut self, now: Time) -> Vec<DaemonId> {
        let mut ready = Vec::new();
        for (id, entry) in self.daemons.iter_mut() {
            let (Some(probe), Some(check)) = (entry.probe.as_mut(), &entry.check) else {
                continue;
            };
            if probe.connecting.is_some() || now < probe.next_at {
                continue;
            }
            if attempt(probe, check) {
                entry.probe = None;
                ready.push(id);
            } else if probe.connecting.is_none() && probe.next_at != Time::MAX {
                probe.next_at = now + RETRY;
            }
        }
        ready
    }

    /// Descriptors to poll: connects under way (for writability) and notification pipes.
    pub(crate) fn interests(&self) -> impl Iterator<Item = (RawFd, i16, Interest)> + '_ {
        self.daemons.iter().flat_map(|(id, entry)| {
            let probe = entry.probe.as_ref();
            let connect = probe
                .and_then(|p| p.connecting.as_ref())
                .map(|fd| (fd.as_raw_fd(), crate::sys::POLLOUT, Interest::Connect(id)));
            let notify = probe
                .and_then(|p| p.notify.as_ref())
                .map(|fd| (fd.as_raw_fd(), crate::sys::POLLIN, Interest::Notify(id)));
            connect.into_iter().chain(notify)
        })
    }

    /// A polled descriptor is ready; returns the daemon if it became ready (its probe
    /// stops).
    pub(crate) fn event(&mut self, interest: Interest, now: Time) -> Option<DaemonId> {
        let ready = self.observe(interest, now)?;
        self.stop(ready);
        Some(ready)
    }

    fn probe_mut(&mut self, id: DaemonId) -> Option<&mut Probe> {
        self.daemons.get_mut(id)?.probe.as_mut()
    }

    fn observe(&mut self, interest: Interest, now: Time) -> Option<DaemonId> {
        match interest {
            Interest::Connect(id) => {
                let probe = self.probe_mut(id)?;
                let fd = probe.connecting.take()?;
                let connected = matches!(rustix::net::sockopt::socket_error(&fd), Ok(Ok(())));
                probe.next_at = now + RETRY;
                connected.then_some(id)
            }
            Interest::Notify(id) => {
                let probe = self.probe_mut(id)?;
                let fd = probe.notify.as_ref()?;
                let mut buf = [0u8; 64];
                match rustix::io::read(fd, &mut buf) {
                    Ok(0) | Err(_) => {
                        probe.notify = None; // closed without a newline: never ready
                        None
                    }
                    Ok(n) => buf[..n].contains(&b'\n').then_some(id),
                }
            }
        }
    }

    /// The next time a probe wants to run again.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        self.daemons
            .iter()
            .filter_map(|(_, entry)| entry.probe.as_ref())
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
        ReadyCheck::Notify(_) | ReadyCheck::SdNotify => {
            // Only the pipe, or the notify socket (`notify`), can tell: no retries.
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
