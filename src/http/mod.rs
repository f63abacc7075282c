//! The read-only HTTP endpoint (`http = ADDRESS:PORT`): `/healthz`, `/readyz`, `/status`
//! and `/metrics`, served inside the one loop like the control socket.
//!
//! Every step is non-blocking and bounded: at most MAX_CONNECTIONS at once (the one heard
//! from least recently makes room for a new one), MAX_REQUEST bytes of request line and
//! headers, one request per connection, and DEADLINE from accept to close for the whole
//! exchange, a client that does not read its response included. Nothing a client sends can
//! make the loop wait.
//!
//! This module only speaks HTTP: it accepts, reads, parses (`request`) and writes
//! (`response`). What an answer says is the supervisor's: the loop asks its views when a
//! request is complete and hands the formatted answer back (`Server::respond`).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, Shutdown, SocketFlags, SocketType};

use crate::sys::{POLLIN, POLLOUT};
use crate::time::Time;
pub(crate) use request::{Endpoint, Request};
use request::{Parsed, parse};
pub(crate) use response::Response;

mod request;
pub(crate) mod response;

/// Connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = crate::plan::HTTP_CONNECTIONS;
/// The request line and headers, with the empty line that ends them.
pub(crate) const MAX_REQUEST: usize = 4096;
/// From accept to close: the request, the response, and the client's close.
pub(crate) const DEADLINE: Duration = Duration::from_secs(2);
/// Accepts in one pass of the loop: a flood of connections waits in the kernel's backlog
/// instead of holding the loop.
const ACCEPTS_PER_PASS: usize = 64;
/// The kernel's queue of connections not yet accepted.
const BACKLOG: i32 = 64;
/// After an accept failed (out of descriptors), how long the listener is left out of the
/// poll set: a connection that cannot be accepted keeps it readable.
const ACCEPT_PAUSE: Duration = Duration::from_millis(200);

/// What the loop polls for.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Interest {
    Listener,
    Connection(usize),
}

enum Phase {
    /// Waiting for the rest of the request.
    Reading,
    /// Sending the response; `sent` bytes of `out` are out.
    Writing { out: Vec<u8>, sent: usize },
    /// The response is out and our end shut: reading (and discarding) until the client
    /// closes. Closing with unread bytes would send a reset, which can destroy the
    /// response before the client read it.
    Draining,
}

struct Connection {
    fd: OwnedFd,
    received: Vec<u8>,
    phase: Phase,
    /// When it was accepted or last made progress: with every slot taken, the one heard
    /// from least recently makes room.
    last_heard: Time,
    deadline: Time,
}

pub(crate) struct Server {
    listener: OwnedFd,
    /// MAX_CONNECTIONS slots: a connection keeps its index from accept to close.
    slots: Vec<Option<Connection>>,
    accept_paused_until: Option<Time>,
    warning: Option<String>,
    failure_reported: bool,
}

/// A request to answer: from the connection in `slot`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Asked {
    slot: usize,
    pub(crate) request: Request,
}

impl Server {
    /// Listens on `addr` (non-blocking, close-on-exec, SO_REUSEADDR so that a restarted
    /// container binds while the last one's connections linger in TIME_WAIT).
    pub(crate) fn open(addr: SocketAddr) -> std::io::Result<Server> {
        let family = match addr {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
        let listener = rustix::net::socket_with(family, SocketType::STREAM, flags, None)?;
        rustix::net::sockopt::set_socket_reuseaddr(&listener, true)?;
        rustix::net::bind(&listener, &addr)?;
        rustix::net::listen(&listener, BACKLOG)?;
        Ok(Server {
            listener,
            slots: (0..MAX_CONNECTIONS).map(|_| None).collect(),
            accept_paused_until: None,
            warning: None,
            failure_reported: false,
        })
    }

    /// Descriptors to poll and for what: the listener (unless paused), each connection
    /// for reading or, while its response is not all out, for writing.
    pub(crate) fn interests(&self) -> impl Iterator<Item = (RawFd, i16, Interest)> + '_ {
        let listener = self
            .accept_paused_until
            .is_none()
            .then(|| (self.listener.as_raw_fd(), POLLIN, Interest::Listener));
        let connections = self.slots.iter().enumerate().filter_map(|(i, slot)| {
            let c = slot.as_ref()?;
            let events = match c.phase {
                Phase::Writing { .. } => POLLOUT,
                Phase::Reading | Phase::Draining => POLLIN,
            };
            Some((c.fd.as_raw_fd(), events, Interest::Connection(i)))
        });
        listener.into_iter().chain(connections)
    }

    /// The nearest connection's deadline, or the end of a pause in accepting.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        let connections = self.slots.iter().flatten().map(|c| c.deadline);
        connections.chain(self.accept_paused_until).min()
    }

    /// A line the log should show, once: accepting failed and was paused.
    pub(crate) fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    /// Accepts pending connections, at most ACCEPTS_PER_PASS; with every slot taken, the
    /// connection heard from least recently is closed to make room.
    pub(crate) fn accept(&mut self, now: Time) {
        for _ in 0..ACCEPTS_PER_PASS {
            let Some(fd) = self.accept_one(now) else {
                return;
            };
            self.failure_reported = false;
            let slot = self
                .free_slot()
                .unwrap_or_else(|| self.evict_least_recently_heard());
            self.slots[slot] = Some(Connection {
                fd,
                received: Vec::new(),
                phase: Phase::Reading,
                last_heard: now,
                deadline: now + DEADLINE,
            });
        }
    }

    fn accept_one(&mut self, now: Time) -> Option<OwnedFd> {
        loop {
            let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
            match rustix::net::accept_with(&self.listener, flags) {
                Ok(fd) => return Some(fd),
                Err(Errno::CONNABORTED | Errno::INTR) => continue,
                Err(Errno::AGAIN) => return None,
                Err(e) => {
                    self.pause_accepting(e, now);
                    return None;
                }
            }
        }
    }

    fn pause_accepting(&mut self, error: Errno, now: Time) {
        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
        if std::mem::replace(&mut self.failure_reported, true) {
            return;
        }
        let pause = ACCEPT_PAUSE.as_millis();
        self.warning = Some(format!(
            "{}; new HTTP clients wait, tried again every {pause} ms",
            std::io::Error::from(error)
        ));
    }

    fn free_slot(&self) -> Option<usize> {
        self.slots.iter().position(Option::is_none)
    }

    /// Closes the connection heard from least recently; returns its slot.
    fn evict_least_recently_heard(&mut self) -> usize {
        let (slot, _) = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c.last_heard)))
            .min_by_key(|&(_, heard)| heard)
            .unwrap_or((0, Time::ZERO));
        self.close(slot);
        slot
    }

    fn close(&mut self, slot: usize) {
        self.slots[slot] = None;
        // A descriptor is free again.
        self.accept_paused_until = None;
    }

    /// The connection in `slot` is readable or writable. Returns its request once it is
    /// complete, for the loop to answer; refusals are answered here.
    pub(crate) fn ready(&mut self, slot: usize, now: Time) -> Option<Asked> {
        let connection = self.slots.get_mut(slot)?.as_mut()?;
        match connection.phase {
            Phase::Reading => {
                let verdict = read_request(connection, now);
                self.judge(slot, verdict, now)
            }
            Phase::Writing { .. } => {
                if !write_some(connection, now) {
                    self.close(slot);
                }
                None
            }
            Phase::Draining => {
                if !drain(connection) {
                    self.close(slot);
                }
                None
            }
        }
    }

    fn judge(&mut self, slot: usize, verdict: Parsed, now: Time) -> Option<Asked> {
        match verdict {
            Parsed::Incomplete => None,
            Parsed::Abandoned => {
                self.close(slot);
                None
            }
            Parsed::Complete(request) => Some(Asked { slot, request }),
            Parsed::Refused(why) => {
                self.send(slot, Response::refusal(why).bytes(false), now);
                None
            }
        }
    }

    /// Sends the answer to a request `ready` returned.
    pub(crate) fn respond(&mut self, asked: Asked, response: &Response, now: Time) {
        self.send(asked.slot, response.bytes(asked.request.head_only), now);
    }

    fn send(&mut self, slot: usize, out: Vec<u8>, now: Time) {
        let Some(connection) = self.slots[slot].as_mut() else {
            return;
        };
        connection.received = Vec::new();
        connection.phase = Phase::Writing { out, sent: 0 };
        if !write_some(connection, now) {
            self.close(slot);
        }
    }

    /// Closes the connections past their deadline; ends a pause in accepting that is over.
    pub(crate) fn expire(&mut self, now: Time) {
        if self.accept_paused_until.is_some_and(|until| now >= until) {
            self.accept_paused_until = None;
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot].as_ref().is_some_and(|c| now >= c.deadline) {
                self.close(slot);
            }
        }
    }
}

/// Reads what the client sent, never more than one byte past MAX_REQUEST in all, and
/// judges it.
fn read_request(c: &mut Connection, now: Time) -> Parsed {
    let mut buf = [0u8; MAX_REQUEST + 1];
    let room = (MAX_REQUEST + 1).saturating_sub(c.received.len());
    let eof = match rustix::io::read(&c.fd, &mut buf[..room]) {
        Ok(0) => true,
        Ok(n) => {
            c.received.extend_from_slice(&buf[..n]);
            c.last_heard = now;
            false
        }
        Err(Errno::AGAIN | Errno::INTR) => return Parsed::Incomplete,
        Err(_) => true,
    };
    parse(&c.received, eof)
}

/// Sends what the socket takes now. Once all is out, shuts our end and drains. Returns
/// false when the connection is done for (the client went away).
fn write_some(c: &mut Connection, now: Time) -> bool {
    let Phase::Writing { out, sent } = &mut c.phase else {
        return true;
    };
    while *sent < out.len() {
        // MSG_NOSIGNAL: a client gone away is EPIPE here, not a SIGPIPE for PID 1.
        match rustix::net::send(&c.fd, &out[*sent..], SendFlags::NOSIGNAL) {
            Ok(n) => {
                *sent += n;
                c.last_heard = now;
            }
            Err(Errno::AGAIN) => return true,
            Err(Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
    let _ = rustix::net::shutdown(&c.fd, Shutdown::Write);
    c.phase = Phase::Draining;
    true
}

/// Reads and discards what the client still sends. Returns false once it closed.
fn drain(c: &mut Connection) -> bool {
    let mut buf = [0u8; 4096];
    match rustix::net::recv(&c.fd, &mut buf, RecvFlags::DONTWAIT) {
        Ok((0, _)) => false,
        // Not heard from, for eviction: its answer is out, it has had what it came for.
        Ok(_) => true,
        Err(Errno::AGAIN | Errno::INTR) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    fn server() -> (Server, SocketAddr) {
        let server = Server::open("127.0.0.1:0".parse().unwrap()).unwrap();
        let bound = rustix::net::getsockname(&server.listener).unwrap();
        let addr = SocketAddr::try_from(bound).unwrap();
        (server, addr)
    }

    /// Whether the server closed `stream` (its read sees the end, or a reset).
    fn closed(stream: &mut TcpStream) -> bool {
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 512];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return true,
                // A response comes first when there is one: read on to the end.
                Ok(_) => continue,
            }
        }
    }

    fn open_slots(server: &Server) -> usize {
        server.slots.iter().flatten().count()
    }

    #[test]
    fn with_every_slot_taken_the_connection_heard_from_least_recently_makes_room() {
        let (mut server, addr) = server();
        let t = Time::from_secs(100);
        let mut clients: Vec<TcpStream> = (0..MAX_CONNECTIONS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        server.accept(t);
        assert_eq!(open_slots(&server), MAX_CONNECTIONS);
        // The first client speaks (half a request): it is heard from after the others.
        clients[0].write_all(b"GET /heal").unwrap();
        let heard = t + Duration::from_millis(10);
        assert!(wait_until(|| {
            server.ready(0, heard);
            !server.slots[0].as_ref().unwrap().received.is_empty()
        }));
        let _newcomer = TcpStream::connect(addr).unwrap();
        server.accept(t + Duration::from_millis(20));
        assert_eq!(open_slots(&server), MAX_CONNECTIONS, "still at most 16");
        assert!(
            closed(&mut clients[1]),
            "the second, silent since its accept, made room"
        );
        assert!(
            server.slots[0].is_some(),
            "the one that spoke keeps its slot"
        );
    }

    #[test]
    fn a_connection_past_its_deadline_is_closed() {
        let (mut server, addr) = server();
        let mut client = TcpStream::connect(addr).unwrap();
        let t = Time::from_secs(100);
        server.accept(t);
        assert_eq!(server.next_deadline(), Some(t + DEADLINE));
        server.expire(t + DEADLINE - Duration::from_millis(1));
        assert_eq!(open_slots(&server), 1);
        server.expire(t + DEADLINE);
        assert_eq!(open_slots(&server), 0);
        assert!(closed(&mut client));
        assert_eq!(server.next_deadline(), None);
    }

    #[test]
    fn a_refused_request_is_answered_then_drained_until_the_client_closes() {
        let (mut server, addr) = server();
        let mut client = TcpStream::connect(addr).unwrap();
        let t = Time::from_secs(100);
        server.accept(t);
        client
            .write_all(b"BREW /coffee HTTP/1.1\r\nHost: pot\r\n\r\n")
            .unwrap();
        assert!(wait_until(|| {
            server.ready(0, t);
            matches!(server.slots[0].as_ref().unwrap().phase, Phase::Draining)
        }));
        let polled: Vec<i16> = server.interests().map(|(_, events, _)| events).collect();
        assert_eq!(polled, [POLLIN, POLLIN], "the listener, and the drain");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
        drop(client);
        assert!(wait_until(|| {
            server.ready(0, t);
            server.slots[0].is_none()
        }));
    }

    /// An answer larger than the socket's buffers, to a client that never reads: the
    /// server writes what fits, polls for room, and closes at the deadline.
    #[test]
    fn a_client_that_does_not_read_its_answer_is_closed_at_the_deadline() {
        let (mut server, addr) = server();
        let mut client = TcpStream::connect(addr).unwrap();
        let t = Time::from_secs(100);
        server.accept(t);
        server.send(0, vec![b'x'; 64 << 20], t);
        let Some(Phase::Writing { sent, out }) = server.slots[0].as_ref().map(|c| &c.phase) else {
            panic!("the answer did not stay half sent");
        };
        assert!(*sent > 0 && *sent < out.len(), "{sent} of {}", out.len());
        let polled: Vec<i16> = server.interests().map(|(_, events, _)| events).collect();
        assert_eq!(polled, [POLLIN, POLLOUT], "polled for room to write");
        server.expire(t + DEADLINE);
        assert_eq!(open_slots(&server), 0);
        assert!(closed(&mut client));
    }

    /// Retries `done` (each try one non-blocking step of the server) until it holds: the
    /// bytes a test client wrote reach the server's socket a moment later.
    fn wait_until(mut done: impl FnMut() -> bool) -> bool {
        let since = std::time::Instant::now();
        while since.elapsed() < Duration::from_secs(5) {
            if done() {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }
}
