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

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::signal::{Sig, parse_signal};
use crate::supervisor::{Actions, Cause, State, Supervisor, Time};

/// A request longer than this is refused.
pub const MAX_REQUEST: usize = 512;
/// Connections served at once; more are answered `ERR busy` and closed.
pub const MAX_CLIENTS: usize = 8;
/// A client has this long to send its request.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Status { json: bool },
    Restart(Vec<String>),
    Signal(String, Sig),
    Health,
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(line).map_err(|_| "request is not UTF-8".to_string())?;
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["status"] => Ok(Request::Status { json: false }),
        ["status", "--json"] => Ok(Request::Status { json: true }),
        ["health"] => Ok(Request::Health),
        ["restart", names @ ..] if !names.is_empty() => Ok(Request::Restart(
            names.iter().map(|n| n.to_string()).collect(),
        )),
        ["signal", name, sig] => Ok(Request::Signal(name.to_string(), parse_signal(sig)?)),
        [] => Err("empty request".to_string()),
        _ => Err(format!("unknown request \"{}\"", text.trim())),
    }
}

/// The socket address: BUNDLE_INIT_CONTROL if set, else the name derived from the PID
/// namespace.
pub fn address() -> std::io::Result<SocketAddrUnix> {
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
pub fn listen() -> std::io::Result<OwnedFd> {
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
pub fn client(request: &str) -> u8 {
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
pub enum Interest {
    Listener,
    Client(usize),
}

struct Waiting {
    index: usize,
    restarts_before: u32,
    old_pid: Option<i32>,
}

struct Client {
    fd: OwnedFd,
    request: Vec<u8>,
    deadline: Time,
    /// Restarts this client waits for before it gets its answer.
    waiting: Vec<Waiting>,
}

/// The listening socket and the clients being served.
pub struct Server {
    listener: OwnedFd,
    clients: Vec<Client>,
    my_uid: u32,
}

impl Server {
    pub fn open() -> std::io::Result<Server> {
        Ok(Server {
            listener: listen()?,
            clients: Vec::new(),
            my_uid: rustix::process::geteuid().as_raw(),
        })
    }

    /// Descriptors to poll for reading: the listener and clients still sending a request.
    pub fn interests(&self) -> impl Iterator<Item = (RawFd, Interest)> + '_ {
        let clients = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.waiting.is_empty())
            .map(|(i, c)| (c.fd.as_raw_fd(), Interest::Client(i)));
        std::iter::once((self.listener.as_raw_fd(), Interest::Listener)).chain(clients)
    }

    pub fn next_deadline(&self) -> Option<Time> {
        self.clients.iter().map(|c| c.deadline).min()
    }

    /// Accepts every pending connection; refuses strangers and the ones over the cap.
    pub fn accept(&mut self, now: Time) {
        while let Ok(fd) =
            rustix::net::accept_with(&self.listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK)
        {
            let uid = rustix::net::sockopt::socket_peercred(&fd).map(|c| c.uid.as_raw());
            match uid {
                Ok(uid) if uid == self.my_uid || uid == 0 => {}
                Ok(uid) => {
                    let why = format!(
                        "permission denied: uid {uid} may not control this bundle-init (uid {})",
                        self.my_uid
                    );
                    answer(&fd, Err(why), "");
                    continue;
                }
                Err(e) => {
                    answer(
                        &fd,
                        Err(format!("cannot check the peer's credentials: {e}")),
                        "",
                    );
                    continue;
                }
            }
            if self.clients.len() >= MAX_CLIENTS {
                answer(
                    &fd,
                    Err("busy: too many control clients at once".to_string()),
                    "",
                );
                continue;
            }
            self.clients.push(Client {
                fd,
                request: Vec::new(),
                deadline: now + REQUEST_DEADLINE,
                waiting: Vec::new(),
            });
        }
    }

    /// Reads from client `index`; acts on its request once a whole line is in.
    pub fn readable(
        &mut self,
        index: usize,
        sup: &mut Supervisor,
        now: Time,
        actions: &mut Actions,
    ) {
        let Some(client) = self.clients.get_mut(index) else {
            return;
        };
        let mut buf = [0u8; MAX_REQUEST];
        let eof = match rustix::io::read(&client.fd, &mut buf) {
            Ok(0) => true,
            Ok(n) => {
                client.request.extend_from_slice(&buf[..n]);
                false
            }
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => return,
            Err(_) => true,
        };
        let line = match client.request.iter().position(|&b| b == b'\n') {
            Some(end) => client.request[..end].to_vec(),
            None if client.request.len() > MAX_REQUEST => {
                answer(
                    &client.fd,
                    Err(format!("request longer than {MAX_REQUEST} bytes")),
                    "",
                );
                self.clients.remove(index);
                return;
            }
            None if eof => client.request.clone(),
            None => return,
        };
        match parse_request(&line) {
            Ok(request) => self.handle(index, request, sup, now, actions),
            Err(why) => {
                answer(&self.clients[index].fd, Err(why), "");
                self.clients.remove(index);
            }
        }
    }

    fn handle(
        &mut self,
        index: usize,
        request: Request,
        sup: &mut Supervisor,
        now: Time,
        actions: &mut Actions,
    ) {
        let find = |name: &str| -> Result<usize, String> {
            sup.daemons()
                .iter()
                .position(|d| d.spec.name == name)
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        sup.daemons().iter().map(|d| d.spec.name.as_str()).collect();
                    format!("unknown daemon \"{name}\" (known: {})", known.join(", "))
                })
        };
        let result: Result<String, String> = match request {
            Request::Status { json } => Ok(sup.status_lines(now, json).join("\n") + "\n"),
            Request::Health => match sup.health() {
                Ok(()) => Ok("healthy\n".to_string()),
                Err(problems) => {
                    answer(
                        &self.clients[index].fd,
                        Err("unhealthy".to_string()),
                        &(problems.join("\n") + "\n"),
                    );
                    self.clients.remove(index);
                    return;
                }
            },
            Request::Signal(name, sig) => find(&name).and_then(|i| {
                let daemon = &sup.daemons()[i];
                match daemon.pid() {
                    Some(pid) => {
                        actions.push_back(crate::supervisor::Action::Signal {
                            pid,
                            sig,
                            group: daemon.spec.signal_group,
                        });
                        Ok(format!("sent {sig} to {name} (pid {pid})\n"))
                    }
                    None => Err(format!("{name} is not running")),
                }
            }),
            Request::Restart(names) => {
                let indices: Result<Vec<usize>, String> = names.iter().map(|n| find(n)).collect();
                match indices {
                    Err(why) => Err(why),
                    Ok(_) if sup.is_shutting_down() => {
                        Err("shutting down: restart ignored".to_string())
                    }
                    Ok(indices) => {
                        let mut longest = Duration::ZERO;
                        let waiting = indices
                            .iter()
                            .map(|&i| {
                                let d = &sup.daemons()[i];
                                longest = longest.max(d.spec.grace);
                                Waiting {
                                    index: i,
                                    restarts_before: d.restarts,
                                    old_pid: d.pid(),
                                }
                            })
                            .collect();
                        for i in indices {
                            sup.request_restart(i, Cause::Control, now, actions);
                        }
                        let client = &mut self.clients[index];
                        client.waiting = waiting;
                        client.deadline = now + longest + Duration::from_secs(5);
                        return;
                    }
                }
            }
        };
        answer(&self.clients[index].fd, result, "");
        self.clients.remove(index);
    }

    /// After the loop carried out its actions: answers restarts that are done, and drops
    /// clients whose time is up.
    pub fn settle(&mut self, sup: &Supervisor, now: Time) {
        self.clients.retain(|client| {
            if client.waiting.is_empty() {
                if now >= client.deadline {
                    answer(
                        &client.fd,
                        Err("no request within the deadline".to_string()),
                        "",
                    );
                    return false;
                }
                return true;
            }
            let mut body = String::new();
            let mut failed = false;
            for w in &client.waiting {
                let d = &sup.daemons()[w.index];
                let done =
                    d.restarts > w.restarts_before && matches!(d.state, State::Running { .. });
                let gave_up = matches!(d.state, State::Backoff { .. } | State::Exited)
                    || sup.is_shutting_down();
                if !done && !gave_up && now < client.deadline {
                    return true; // still under way
                }
                let old = w.old_pid.map_or("-".to_string(), |p| p.to_string());
                match (done, d.pid()) {
                    (true, Some(new)) => {
                        body.push_str(&format!("{} restarted: pid {old} -> {new}\n", d.spec.name))
                    }
                    _ => {
                        failed = true;
                        let why = if sup.is_shutting_down() {
                            "shutting down"
                        } else {
                            "did not come back up"
                        };
                        body.push_str(&format!("{} {why} (was pid {old})\n", d.spec.name));
                    }
                }
            }
            if failed {
                answer(&client.fd, Err("restart failed".to_string()), &body);
            } else {
                answer(&client.fd, Ok(body), "");
            }
            false
        });
    }
}

/// Writes `OK\nbody` or `ERR reason\nbody`. The socket is non-blocking and answers are
/// small; a client that does not read simply loses the answer.
fn answer(fd: &OwnedFd, result: Result<String, String>, extra: &str) {
    let text = match result {
        Ok(body) => format!("OK\n{body}"),
        Err(why) => format!("ERR {why}\n{extra}"),
    };
    let _ = rustix::io::write(fd, text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(parse_request(b"").unwrap_err().contains("empty"));
        assert!(
            parse_request(b"restart")
                .unwrap_err()
                .contains("unknown request")
        );
        assert!(
            parse_request(b"signal a NOPE")
                .unwrap_err()
                .contains("NOPE")
        );
        assert!(parse_request(b"signal a").is_err());
        assert!(parse_request(b"reboot").unwrap_err().contains("reboot"));
        assert!(parse_request(b"\xff").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn the_derived_name_is_the_same_for_everyone_in_the_namespace() {
        assert_eq!(derived_name(), derived_name());
        assert!(derived_name().starts_with("bundle-init"));
    }
}
