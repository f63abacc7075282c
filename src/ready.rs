//! Readiness checks, run by bundle-init itself inside the loop (the image may have no tool
//! to run them): connect to a TCP address or a Unix socket, look for a file, or wait for a
//! newline on a notification descriptor (the s6 convention). Probes that need a retry wait
//! for a deadline the loop already polls with; nothing sleeps. A daemon without a check
//! costs nothing here.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::plan::ReadyCheck;
use crate::supervisor::{State, Supervisor, Time};

/// How often a failed connect or a missing file is tried again.
pub const RETRY: Duration = Duration::from_millis(100);

struct Probe {
    /// The process this probe is about: a restart starts a new probe.
    pid: i32,
    next_at: Time,
    /// A non-blocking connect under way.
    connecting: Option<OwnedFd>,
    /// Read end of the notification pipe.
    notify: Option<OwnedFd>,
}

#[derive(Clone, Copy)]
pub enum Interest {
    Connect(usize),
    Notify(usize),
}

pub struct Probes {
    probes: Vec<Option<Probe>>,
    /// Notification pipes made for a spawn, waiting for the probe of that pid.
    pending_notify: Vec<Option<(i32, OwnedFd)>>,
}

/// A TCP check's address: a numeric address, or `localhost` (no name lookups in PID 1).
pub fn tcp_address(text: &str) -> Option<std::net::SocketAddr> {
    if let Some(port) = text.strip_prefix("localhost:") {
        return Some(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            port.parse().ok()?,
        )));
    }
    text.parse().ok()
}

impl Probes {
    pub fn new(daemons: usize) -> Probes {
        Probes {
            probes: (0..daemons).map(|_| None).collect(),
            pending_notify: (0..daemons).map(|_| None).collect(),
        }
    }

    /// Keeps the read end of a notification pipe for the process `pid` just spawned.
    pub fn expect_notify(&mut self, index: usize, pid: i32, read: OwnedFd) {
        if let Some(slot) = self.pending_notify.get_mut(index) {
            *slot = Some((pid, read));
        }
    }

    /// Starts, drops and runs due probes; returns the daemons found ready.
    pub fn update(&mut self, sup: &Supervisor, now: Time) -> Vec<usize> {
        let mut ready = Vec::new();
        for (index, daemon) in sup.daemons().iter().enumerate() {
            let wanted = match (daemon.state, &daemon.spec.ready) {
                (State::Running { pid, .. }, Some(check)) if !daemon.is_ready() => {
                    Some((pid, check))
                }
                _ => None,
            };
            let Some((pid, check)) = wanted else {
                self.probes[index] = None; // closes whatever it held
                continue;
            };
            if self.probes[index].as_ref().is_none_or(|p| p.pid != pid) {
                let notify = match self.pending_notify[index].take() {
                    Some((for_pid, read)) if for_pid == pid => Some(read),
                    _ => None,
                };
                self.probes[index] = Some(Probe {
                    pid,
                    next_at: now,
                    connecting: None,
                    notify,
                });
            }
            let Some(probe) = self.probes[index].as_mut() else {
                continue;
            };
            if probe.connecting.is_some() || now < probe.next_at {
                continue;
            }
            let found = match check {
                ReadyCheck::File(path) => std::fs::symlink_metadata(path).is_ok(),
                ReadyCheck::Tcp(addr) => match tcp_address(addr) {
                    Some(addr) => {
                        let family = if addr.is_ipv4() {
                            AddressFamily::INET
                        } else {
                            AddressFamily::INET6
                        };
                        start_connect(probe, family, &addr)
                    }
                    None => false,
                },
                ReadyCheck::Unix(path) => match SocketAddrUnix::new(path.as_path()) {
                    Ok(addr) => start_connect(probe, AddressFamily::UNIX, &addr),
                    Err(_) => false,
                },
                ReadyCheck::Notify(_) => {
                    probe.next_at = Time::MAX;
                    false
                }
            };
            if found {
                ready.push(index);
            } else if probe.connecting.is_none() && probe.next_at != Time::MAX {
                probe.next_at = now + RETRY;
            }
        }
        ready
    }

    /// Descriptors to poll: connects under way (for writability) and notification pipes.
    pub fn interests(&self) -> impl Iterator<Item = (RawFd, i16, Interest)> + '_ {
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

    /// A polled descriptor is ready; returns the daemon if it became ready.
    pub fn event(&mut self, interest: Interest, now: Time) -> Option<usize> {
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
    pub fn next_deadline(&self) -> Option<Time> {
        self.probes
            .iter()
            .flatten()
            .filter(|p| p.connecting.is_none() && p.next_at != Time::MAX)
            .map(|p| p.next_at)
            .min()
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
