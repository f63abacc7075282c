//! The control channel: a Unix socket served inside the one loop, and the client side of
//! `bundle-init status | restart | signal | health`.
//!
//! The socket lives in the abstract namespace (nothing on disk, so a read-only root is
//! fine). Its name is derived from the PID namespace, which `podman exec` shares with the
//! container's PID 1: server and client compute the same name with no configuration.
//! Abstract sockets are also scoped to the network namespace, so containers never see each
//! other's. `BUNDLE_INIT_CONTROL` names another socket: `@name` (abstract) or a path.
//!
//! Protocol: one request line; the answer is `OK` or `ERR reason` on the first line, then
//! a body; the server closes the connection after answering.
//!
//! This module only keeps the socket: accept, check the peer, read a bounded request with a
//! deadline, parse it. What a request means is the supervisor's business: the loop hands it
//! over (`Supervisor::on_control`) and writes back the `Action::Reply` that comes out.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::signal::parse_signal;
use crate::supervisor::{ClientId, ControlRequest, Reply, Time};

/// A request longer than this is refused.
pub(crate) const MAX_REQUEST: usize = 512;
/// Connections served at once; more are answered `ERR busy` and closed.
pub(crate) const MAX_CLIENTS: usize = 8;
/// A client has this long to send its request.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

/// Why a request line was refused; `Display` is the `ERR` line's reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RequestError {
    NotUtf8,
    Empty,
    Unknown(String),
    BadSignal(crate::signal::SignalError),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::NotUtf8 => f.write_str("request is not UTF-8"),
            RequestError::Empty => f.write_str("empty request"),
            RequestError::Unknown(text) => write!(f, "unknown request \"{text}\""),
            RequestError::BadSignal(e) => e.fmt(f),
        }
    }
}

/// Parses one request line (without its newline).
pub(crate) fn parse_request(line: &[u8]) -> Result<ControlRequest, RequestError> {
    use ControlRequest as Request;
    let text = std::str::from_utf8(line).map_err(|_| RequestError::NotUtf8)?;
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["status"] => Ok(Request::Status { json: false }),
        ["status", "--json"] => Ok(Request::Status { json: true }),
        ["health"] => Ok(Request::Health),
        ["restart", names @ ..] if !names.is_empty() => Ok(Request::Restart(
            names.iter().map(|n| n.to_string()).collect(),
        )),
        ["signal", name, sig] => {
            let sig = parse_signal(sig).map_err(RequestError::BadSignal)?;
            Ok(Request::Signal(name.to_string(), sig))
        }
        [] => Err(RequestError::Empty),
        _ => Err(RequestError::Unknown(text.trim().to_string())),
    }
}

/// The socket address: BUNDLE_INIT_CONTROL if set, else the name derived from the PID
/// namespace.
pub(crate) fn address() -> std::io::Result<SocketAddrUnix> {
    match std::env::var_os("BUNDLE_INIT_CONTROL") {
        Some(name) => {
            use std::os::unix::ffi::OsStrExt;
            let bytes = name.as_bytes();
            match bytes.strip_prefix(b"@") {
                Some(abstract_name) => Ok(SocketAddrUnix::new_abstract_name(abstract_name)?),
                None => Ok(SocketAddrUnix::new(bytes)?),
            }
        }
        None => Ok(SocketAddrUnix::new_abstract_name(
            derived_name().as_bytes(),
        )?),
    }
}

/// `bundle-init.4026531836`: the inode of our PID namespace, or plain `bundle-init` when
/// /proc cannot tell.
fn derived_name() -> String {
    match std::fs::read_link("/proc/self/ns/pid") {
        Ok(link) => {
            let text = link.to_string_lossy();
            let inode: String = text.chars().filter(char::is_ascii_digit).collect();
            format!("bundle-init.{inode}")
        }
        Err(_) => "bundle-init".to_string(),
    }
}

/// Opens the listening socket (non-blocking, close-on-exec).
pub(crate) fn listen() -> std::io::Result<OwnedFd> {
    let addr = address()?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    if let Some(path) = addr.path() {
        // A stale socket file from an earlier run would make bind fail.
        use std::os::unix::ffi::OsStrExt;
        let _ = std::fs::remove_file(std::ffi::OsStr::from_bytes(path.to_bytes()));
    }
    rustix::net::bind(&fd, &addr)?;
    rustix::net::listen(&fd, MAX_CLIENTS as i32)?;
    Ok(fd)
}

/// Client side: sends `request`, prints the answer, returns the exit code: 0 OK, 1 refused
/// or failed, 3 no bundle-init reachable.
pub(crate) fn client(request: &str) -> u8 {
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let addr = match address() {
        Ok(a) => a,
        Err(e) => {
            let _ = writeln!(err, "bundle-init: bad control address: {e}");
            return 3;
        }
    };
    let connected = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .and_then(|fd| rustix::net::connect(&fd, &addr).map(|_| fd));
    let fd = match connected {
        Ok(fd) => fd,
        Err(e) => {
            let _ = writeln!(
                err,
                "bundle-init: no bundle-init is reachable on its control socket ({e}); run this inside the bundle's container"
            );
            return 3;
        }
    };
    let mut stream = std::fs::File::from(fd);
    // The server may answer (a refusal) and close before reading: then the write fails with
    // EPIPE, which must not kill us before we read why.
    let _ = crate::sys::ignore_signal(crate::sys::libc_sig::PIPE);
    let _ = stream.write_all(format!("{request}\n").as_bytes());
    let mut answer = Vec::new();
    let _ = stream.take(1024 * 1024).read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    if text.is_empty() {
        let _ = writeln!(
            err,
            "bundle-init: the control socket closed without an answer"
        );
        return 3;
    }
    let (first, body) = text.split_once('\n').unwrap_or((&text, ""));
    if first == "OK" {
        let _ = out.write_all(body.as_bytes());
        0
    } else {
        let reason = first.strip_prefix("ERR ").unwrap_or(first);
        let _ = writeln!(err, "bundle-init: {reason}");
        let _ = err.write_all(body.as_bytes());
        1
    }
}

// ---------------------------------------------------------------- the server side

/// What the loop polls for a client.
#[derive(Clone, Copy)]
pub(crate) enum Interest {
    Listener,
    Client(usize),
}

struct Client {
    id: ClientId,
    fd: OwnedFd,
    request: Vec<u8>,
    /// The client must have sent its request by then; None once it was handed over (the
    /// supervisor answers every request, restarts by a deadline of their own).
    deadline: Option<Time>,
}

/// The listening socket and the clients being served.
pub(crate) struct Server {
    listener: OwnedFd,
    clients: Vec<Client>,
    my_uid: u32,
    next_id: ClientId,
}

impl Server {
    pub(crate) fn open() -> std::io::Result<Server> {
        Ok(Server {
            listener: listen()?,
            clients: Vec::new(),
            my_uid: rustix::process::geteuid().as_raw(),
            next_id: 0,
        })
    }

    /// Descriptors to poll for reading: the listener and clients still sending a request.
    pub(crate) fn interests(&self) -> impl Iterator<Item = (RawFd, Interest)> + '_ {
        let clients = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.deadline.is_some())
            .map(|(i, c)| (c.fd.as_raw_fd(), Interest::Client(i)));
        std::iter::once((self.listener.as_raw_fd(), Interest::Listener)).chain(clients)
    }

    pub(crate) fn next_deadline(&self) -> Option<Time> {
        self.clients.iter().filter_map(|c| c.deadline).min()
    }

    /// Accepts every pending connection; refuses strangers and the ones over the cap.
    pub(crate) fn accept(&mut self, now: Time) {
        while let Ok(fd) =
            rustix::net::accept_with(&self.listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK)
        {
            if let Err(why) = self.admit(&fd) {
                answer(
                    &fd,
                    &Reply::Err {
                        reason: why,
                        body: String::new(),
                    },
                );
                continue;
            }
            self.next_id += 1;
            self.clients.push(Client {
                id: self.next_id,
                fd,
                request: Vec::new(),
                deadline: Some(now + REQUEST_DEADLINE),
            });
        }
    }

    /// Only bundle-init's own user and root may control it, and only so many at once.
    fn admit(&self, fd: &OwnedFd) -> Result<(), String> {
        match rustix::net::sockopt::socket_peercred(fd).map(|c| c.uid.as_raw()) {
            Ok(uid) if uid == self.my_uid || uid == 0 => {}
            Ok(uid) => {
                return Err(format!(
                    "permission denied: uid {uid} may not control this bundle-init (uid {})",
                    self.my_uid
                ));
            }
            Err(e) => return Err(format!("cannot check the peer's credentials: {e}")),
        }
        if self.clients.len() >= MAX_CLIENTS {
            return Err("busy: too many control clients at once".to_string());
        }
        Ok(())
    }

    /// Reads from client `index`. Returns its request once a whole line is in, for the
    /// supervisor; a request that cannot be parsed is refused here.
    pub(crate) fn readable(&mut self, index: usize) -> Option<(ClientId, ControlRequest)> {
        let client = self.clients.get_mut(index)?;
        let line = match read_request(client) {
            Ok(Some(line)) => line,
            Ok(None) => return None,
            Err(why) => {
                self.refuse(index, why);
                return None;
            }
        };
        match parse_request(&line) {
            Ok(request) => {
                let client = &mut self.clients[index];
                client.deadline = None;
                Some((client.id, request))
            }
            Err(why) => {
                self.refuse(index, why.to_string());
                None
            }
        }
    }

    fn refuse(&mut self, index: usize, why: String) {
        let client = self.clients.remove(index);
        answer(
            &client.fd,
            &Reply::Err {
                reason: why,
                body: String::new(),
            },
        );
    }

    /// Writes the supervisor's reply to `client` and closes the connection.
    pub(crate) fn reply(&mut self, client: ClientId, reply: &Reply) {
        if let Some(index) = self.clients.iter().position(|c| c.id == client) {
            let client = self.clients.remove(index);
            answer(&client.fd, reply);
        }
    }

    /// Refuses the clients that did not send a request in time.
    pub(crate) fn expire(&mut self, now: Time) {
        self.clients.retain(|client| {
            let late = client.deadline.is_some_and(|d| now >= d);
            if late {
                let why = "no request within the deadline".to_string();
                answer(
                    &client.fd,
                    &Reply::Err {
                        reason: why,
                        body: String::new(),
                    },
                );
            }
            !late
        });
    }
}

/// Reads what the client sent. Ok(Some(line)) once a line is complete (or the client
/// closed its end), Ok(None) while more may come, Err when the request is too long.
fn read_request(client: &mut Client) -> Result<Option<Vec<u8>>, String> {
    let mut buf = [0u8; MAX_REQUEST];
    let eof = match rustix::io::read(&client.fd, &mut buf) {
        Ok(0) => true,
        Ok(n) => {
            client.request.extend_from_slice(&buf[..n]);
            false
        }
        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => return Ok(None),
        Err(_) => true,
    };
    match client.request.iter().position(|&b| b == b'\n') {
        Some(end) => Ok(Some(client.request[..end].to_vec())),
        None if client.request.len() > MAX_REQUEST => {
            Err(format!("request longer than {MAX_REQUEST} bytes"))
        }
        None if eof => Ok(Some(client.request.clone())),
        None => Ok(None),
    }
}

/// Writes `OK\nbody` or `ERR reason\nbody`. The socket is non-blocking and answers are
/// small; a client that does not read simply loses the answer.
fn answer(fd: &OwnedFd, reply: &Reply) {
    let text = match reply {
        Reply::Ok(body) => format!("OK\n{body}"),
        Reply::Err { reason, body } => format!("ERR {reason}\n{body}"),
    };
    let _ = rustix::io::write(fd, text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::Sig;
    use crate::supervisor::ControlRequest as Request;

    #[test]
    fn requests_parse() {
        assert_eq!(
            parse_request(b"status"),
            Ok(Request::Status { json: false })
        );
        assert_eq!(
            parse_request(b"status --json"),
            Ok(Request::Status { json: true })
        );
        assert_eq!(parse_request(b" health "), Ok(Request::Health));
        assert_eq!(
            parse_request(b"restart a b"),
            Ok(Request::Restart(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            parse_request(b"signal a HUP"),
            Ok(Request::Signal("a".into(), Sig(1)))
        );
    }

    #[test]
    fn bad_requests_are_refused_with_a_reason() {
        let refusal = |line: &[u8]| parse_request(line).unwrap_err().to_string();
        assert_eq!(refusal(b""), "empty request");
        assert_eq!(refusal(b"restart"), "unknown request \"restart\"");
        assert_eq!(refusal(b"signal a NOPE"), "unknown signal \"NOPE\"");
        assert_eq!(refusal(b"signal a"), "unknown request \"signal a\"");
        assert_eq!(refusal(b" reboot now"), "unknown request \"reboot now\"");
        assert_eq!(parse_request(b"\xff"), Err(RequestError::NotUtf8));
        assert_eq!(refusal(b"\xff"), "request is not UTF-8");
    }

    #[test]
    fn the_derived_name_is_the_same_for_everyone_in_the_namespace() {
        assert_eq!(derived_name(), derived_name());
        assert!(derived_name().starts_with("bundle-init"));
    }
}
