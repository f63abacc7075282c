//! systemd's notify protocol, for daemons with `ready = sd-notify`. Each start of such a
//! daemon gets a datagram socket of its own, named in its `NOTIFY_SOCKET`, so a daemon
//! speaks only for itself. The socket has an abstract name the kernel picks (autobind):
//! nothing is written to the file system, which may be read-only, and no name can be taken
//! by someone else first. The kernel attaches each sender's credentials (SO_PASSCRED), and
//! the supervisor takes a message only from the daemon's running process. This module only
//! opens, reads and parses.

use std::ffi::OsString;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;

use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

use crate::id::{DaemonId, IdMap};
use crate::supervisor::NotifyMessage;

/// systemd reads datagrams of up to 4 KiB of variables (and `sd_notify` senders keep
/// well under it); a longer one is cut, and what it cut is dropped.
const MAX_DATAGRAM: usize = 4096;

/// How many datagrams one daemon's socket gives per pass of the loop: a daemon that
/// floods its socket cannot keep the loop from everything else.
const PER_PASS: usize = 32;

/// The notify socket of each daemon that has one, by daemon id.
#[derive(Default)]
pub(crate) struct NotifySockets {
    daemons: IdMap<OwnedFd>,
}

impl NotifySockets {
    /// Before a start of daemon `id`: a fresh socket (the last process's is closed, so
    /// nothing it queued is read as the new one's), and the `NOTIFY_SOCKET` value naming it.
    pub(crate) fn open_for(&mut self, id: DaemonId) -> std::io::Result<OsString> {
        self.daemons.remove(id);
        let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
        let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::DGRAM, flags, None)?;
        rustix::net::sockopt::set_socket_passcred(&fd, true)?;
        // An unnamed address makes the kernel choose a unique abstract name.
        rustix::net::bind(&fd, &SocketAddrUnix::new_unnamed())?;
        let name = abstract_name(&fd)?;
        self.daemons.insert(id, fd);
        Ok(name)
    }

    /// Daemon `id` starts without one (a reload took `sd-notify` away), or is forgotten.
    pub(crate) fn close(&mut self, id: DaemonId) {
        self.daemons.remove(id);
    }

    /// The sockets to poll for reading.
    pub(crate) fn interests(&self) -> impl Iterator<Item = (RawFd, DaemonId)> + '_ {
        self.daemons.iter().map(|(id, fd)| (fd.as_raw_fd(), id))
    }

    /// The datagrams queued on daemon `id`'s socket, each with its sender's pid (0 when
    /// the kernel gave no credentials).
    pub(crate) fn receive(&mut self, id: DaemonId) -> Vec<(i32, NotifyMessage)> {
        let Some(fd) = self.daemons.get(id) else {
            return Vec::new();
        };
        let mut received = Vec::new();
        while received.len() < PER_PASS {
            match receive_one(fd) {
                Some(message) => received.push(message),
                None => break,
            }
        }
        received
    }
}

/// `@NAME`, the form `sd_notify` reads as an abstract socket address.
fn abstract_name(fd: &OwnedFd) -> std::io::Result<OsString> {
    let address = rustix::net::getsockname(fd)?;
    let unix = SocketAddrUnix::try_from(address).map_err(std::io::Error::from)?;
    let name = unix
        .abstract_name()
        .ok_or_else(|| std::io::Error::other("the kernel gave no abstract name"))?;
    let mut value = vec![b'@'];
    value.extend_from_slice(name);
    Ok(OsString::from_vec(value))
}

/// One datagram and its sender's pid, or None when nothing more is queued.
fn receive_one(fd: &OwnedFd) -> Option<(i32, NotifyMessage)> {
    let mut data = [0u8; MAX_DATAGRAM];
    // Room for credentials and a few descriptors: any descriptor someone sends is closed
    // below, when the drained messages are dropped.
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1), ScmRights(8))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(&mut data)];
    let flags = RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT;
    let received = loop {
        match rustix::net::recvmsg(fd, &mut iov, &mut control, flags) {
            Ok(received) => break received,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return None,
        }
    };
    let mut from = 0;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmCredentials(credentials) = message {
            from = credentials.pid.as_raw_nonzero().get();
        }
    }
    let length = received.bytes.min(MAX_DATAGRAM);
    Some((from, parse(&data[..length])))
}

/// The variables of one datagram: `NAME=VALUE` lines. Unknown names and malformed lines
/// are skipped, as systemd skips them.
pub(crate) fn parse(datagram: &[u8]) -> NotifyMessage {
    let mut message = NotifyMessage::default();
    for line in datagram.split(|&b| b == b'\n') {
        let Some(at) = line.iter().position(|&b| b == b'=') else {
            continue;
        };
        let (name, value) = (&line[..at], &line[at + 1..]);
        match name {
            b"READY" => message.ready |= value == b"1",
            b"RELOADING" => message.reloading |= value == b"1",
            b"STOPPING" => message.stopping |= value == b"1",
            b"WATCHDOG" => message.watchdog |= value == b"1",
            b"STATUS" => message.status = Some(printable(value)),
            b"MAINPID" => message.main_pid = Some(printable(value)),
            _ => {}
        }
    }
    message
}

/// A value as `status` and the log can show it: valid UTF-8, no control characters, at
/// most 200 characters.
fn printable(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variables_bundle_init_understands_are_parsed_and_others_skipped() {
        let message = parse(b"READY=1\nSTATUS=Ready to accept connections\nFOO=bar\nnonsense\n");
        assert!(message.ready);
        assert_eq!(
            message.status.as_deref(),
            Some("Ready to accept connections")
        );
        assert!(!message.reloading && !message.stopping && !message.watchdog);
        let message = parse(b"RELOADING=1\nMONOTONIC_USEC=1\nWATCHDOG=1\nMAINPID=42");
        assert!(message.reloading && message.watchdog && !message.ready);
        assert_eq!(message.main_pid.as_deref(), Some("42"));
        assert!(parse(b"STOPPING=1").stopping);
        // Only "1" means yes.
        assert!(!parse(b"READY=0\nREADY=yes").ready);
    }

    #[test]
    fn a_status_is_made_printable_and_short() {
        let message = parse(b"STATUS=a\tb\x1b[31m\xffc");
        assert_eq!(message.status.as_deref(), Some("a b [31m\u{fffd}c"));
        let long = [b"STATUS=".as_slice(), &[b'x'; 300]].concat();
        assert_eq!(parse(&long).status.map(|s| s.len()), Some(200));
    }

    #[test]
    fn a_datagram_sent_to_the_socket_is_received_with_its_senders_pid() {
        let mut sockets = NotifySockets::default();
        let id = DaemonId(7);
        let name = sockets.open_for(id).expect("a notify socket");
        let name = name.into_vec();
        assert_eq!(name[0], b'@', "an abstract name: {name:?}");
        let sender = rustix::net::socket(AddressFamily::UNIX, SocketType::DGRAM, None).unwrap();
        let to = SocketAddrUnix::new_abstract_name(&name[1..]).unwrap();
        rustix::net::sendto(
            &sender,
            b"READY=1\nSTATUS=up",
            rustix::net::SendFlags::empty(),
            &to,
        )
        .unwrap();
        let received = sockets.receive(id);
        let me = rustix::process::getpid().as_raw_nonzero().get();
        assert_eq!(received.len(), 1);
        assert_eq!(
            received[0].0, me,
            "the kernel's credentials name the sender"
        );
        assert!(received[0].1.ready);
        assert!(sockets.receive(id).is_empty(), "nothing more is queued");
    }

    #[test]
    fn each_start_gets_a_new_socket_and_the_old_ones_messages_are_gone() {
        let mut sockets = NotifySockets::default();
        let id = DaemonId(1);
        let first = sockets.open_for(id).unwrap().into_vec();
        let sender = rustix::net::socket(AddressFamily::UNIX, SocketType::DGRAM, None).unwrap();
        let to = SocketAddrUnix::new_abstract_name(&first[1..]).unwrap();
        rustix::net::sendto(&sender, b"READY=1", rustix::net::SendFlags::empty(), &to).unwrap();
        let second = sockets.open_for(id).unwrap().into_vec();
        assert_ne!(first, second);
        assert!(sockets.receive(id).is_empty());
    }
}
