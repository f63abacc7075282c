//! The control channel: a Unix socket served inside the one loop, and the client side of
//! `bundle-init status | restart | signal | health`.
//!
//! The socket lives in the abstract namespace (nothing on disk, so a read-only root is
//! fine). Its name is derived from the PID namespace, which `podman exec` shares with the
//! container's PID 1: server and client compute the same name with no configuration.
//! Abstract sockets are also scoped to the network namespace, so containers never see each
//! other's. `BUNDLE_INIT_CONTROL` names another socket: `@name` (abstract) or a path.
//! A path is someone's file system: bundle-init replaces only a stale socket there, never
//! another file or a live instance's socket, and removes its own at exit.
//!
//! Protocol: one request line; the answer is `OK` or `ERR reason` on the first line, then
//! a body; the server closes the connection after answering.
//!
//! This module only keeps the socket: accept, check the peer, read a bounded request with a
//! deadline, parse it. What a request means is the supervisor's business: the loop hands it
//! over (`Supervisor::on_control`) and writes back the `Action::Reply` that comes out.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::supervisor::{ClientId, ControlRequest, Reply};
use crate::time::Time;
pub(crate) use client::client;
pub(crate) use request::parse_request;

mod client;
mod request;

/// A request longer than this is refused.
pub(crate) const MAX_REQUEST: usize = 512;
/// Connections served at once; more are answered `ERR busy` and closed.
pub(crate) const MAX_CLIENTS: usize = 8;
/// A client has this long to send its request.
pub(crate) const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// After an accept failed (out of descriptors), how long the listener is left out of the
/// poll set, unless a client closes first and so frees one. A connection that cannot be
/// accepted keeps the listener readable: polled, it would wake the loop at once, for ever.
pub(crate) const ACCEPT_PAUSE: Duration = Duration::from_millis(200);

/// The socket address: BUNDLE_INIT_CONTROL if set, else the name derived from the PID
/// namespace.
pub(crate) fn address() -> std::io::Result<SocketAddrUnix> {
    match std::env::var_os("BUNDLE_INIT_CONTROL") {
        Some(name) => {
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

/// Why there is no control socket. bundle-init then runs without one, after a warning.
#[derive(Debug)]
pub(crate) enum ListenError {
    /// Something that is not a socket is at the path: never removed.
    NotASocket(PathBuf),
    /// A socket at the path still accepts connections: another bundle-init serves it.
    InUse(PathBuf),
    Io(std::io::Error),
}

impl std::fmt::Display for ListenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenError::NotASocket(path) => write!(
                f,
                "{} exists and is not a socket; it is left alone",
                path.display()
            ),
            ListenError::InUse(path) => write!(
                f,
                "{} is served by another live process; it is left to that one",
                path.display()
            ),
            ListenError::Io(e) => e.fmt(f),
        }
    }
}

impl From<std::io::Error> for ListenError {
    fn from(e: std::io::Error) -> ListenError {
        ListenError::Io(e)
    }
}

impl From<rustix::io::Errno> for ListenError {
    fn from(e: rustix::io::Errno) -> ListenError {
        ListenError::Io(e.into())
    }
}

/// The socket file bundle-init created, removed at exit if it is still the same file.
struct BoundPath {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl BoundPath {
    fn identity(path: &Path) -> Option<(u64, u64)> {
        std::fs::symlink_metadata(path)
            .ok()
            .map(|m| (m.dev(), m.ino()))
    }
}

impl Drop for BoundPath {
    fn drop(&mut self) {
        // Only our own socket: another instance may have replaced a file we thought stale.
        if BoundPath::identity(&self.path) == Some((self.dev, self.ino)) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes room for a socket at `path`: nothing there, or a stale socket (connection
/// refused), which is removed. Anything else is left alone and refused.
fn claim_path(path: &Path) -> Result<(), ListenError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !meta.file_type().is_socket() {
        return Err(ListenError::NotASocket(path.to_path_buf()));
    }
    // Non-blocking: a live listener with a full backlog answers EAGAIN instead of making
    // bundle-init wait before its loop runs.
    let probe = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    match rustix::net::connect(&probe, &SocketAddrUnix::new(path)?) {
        Ok(()) | Err(rustix::io::Errno::AGAIN) => Err(ListenError::InUse(path.to_path_buf())),
        Err(rustix::io::Errno::CONNREFUSED) => {
            std::fs::remove_file(path)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Opens the listening socket (non-blocking, close-on-exec); for a path, also what removes
/// the file at exit.
fn listen() -> Result<(OwnedFd, Option<BoundPath>), ListenError> {
    let addr = address()?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    let path = addr
        .path()
        .map(|p| PathBuf::from(std::ffi::OsStr::from_bytes(p.to_bytes())));
    if let Some(path) = &path {
        claim_path(path)?;
    }
    match rustix::net::bind(&fd, &addr) {
        Ok(()) => {}
        // Another instance bound it between our check and our bind.
        Err(rustix::io::Errno::ADDRINUSE) if path.is_some() => {
            return Err(ListenError::InUse(path.unwrap_or_default()));
        }
        Err(e) => return Err(e.into()),
    }
    let bound = path.and_then(|path| {
        let (dev, ino) = BoundPath::identity(&path)?;
        Some(BoundPath { path, dev, ino })
    });
    rustix::net::listen(&fd, MAX_CLIENTS as i32)?;
    Ok((fd, bound))
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
    /// When it was accepted or last sent a byte: with every slot taken, the client silent
    /// the longest makes room for a new one.
    last_heard: Time,
    /// The client must have sent its request by then; None once it was handed over (the
    /// supervisor answers every request, restarts by a deadline of their own).
    deadline: Option<Time>,
}

/// The listening socket and the clients being served.
pub(crate) struct Server {
    listener: OwnedFd,
    /// Removes the socket file at exit (declared after the listener: dropped after it).
    _bound_path: Option<BoundPath>,
    clients: Vec<Client>,
    my_uid: u32,
    next_id: ClientId,
    /// An accept failed: the listener is not polled until then, or until a client closes.
    accept_paused_until: Option<Time>,
    /// The current run of failed accepts was reported (once; again after one succeeds).
    failure_reported: bool,
    /// A line for the log, taken by the loop (`take_warning`).
    warning: Option<String>,
}

impl Server {
    pub(crate) fn open() -> Result<Server, ListenError> {
        let (listener, bound_path) = listen()?;
        Ok(Server::on(listener, bound_path))
    }

    fn on(listener: OwnedFd, bound_path: Option<BoundPath>) -> Server {
        Server {
            listener,
            _bound_path: bound_path,
            clients: Vec::new(),
            my_uid: rustix::process::geteuid().as_raw(),
            next_id: 0,
            accept_paused_until: None,
            failure_reported: false,
            warning: None,
        }
    }

    /// Descriptors to poll for reading: the listener (unless accepting is paused) and
    /// clients still sending a request.
    pub(crate) fn interests(&self) -> impl Iterator<Item = (RawFd, Interest)> + '_ {
        let clients = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.deadline.is_some())
            .map(|(i, c)| (c.fd.as_raw_fd(), Interest::Client(i)));
        let listener = (self.listener.as_raw_fd(), Interest::Listener);
        let listener = self.accept_paused_until.is_none().then_some(listener);
        listener.into_iter().chain(clients)
    }

    /// The nearest client's deadline, or the end of a pause in accepting.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        let clients = self.clients.iter().filter_map(|c| c.deadline);
        clients.chain(self.accept_paused_until).min()
    }

    /// A line the log should show, once: accepting failed and was paused. The loop hands
    /// it on (`Supervisor::on_driver_error`).
    pub(crate) fn take_warning(&mut self) -> Option<String> {
        self.warning.take()
    }

    /// Accepts every pending connection; refuses strangers and the ones over the cap.
    pub(crate) fn accept(&mut self, now: Time) {
        while let Some(fd) = self.accept_one(now) {
            self.failure_reported = false;
            if self.clients.len() >= MAX_CLIENTS && self.check_peer(&fd).is_ok() {
                self.evict_the_most_silent();
            }
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
                last_heard: now,
                deadline: Some(now + REQUEST_DEADLINE),
            });
        }
    }

    /// The next pending connection, or None when there is none or it cannot be accepted.
    /// A failure other than "none pending" pauses accepting for ACCEPT_PAUSE: out of
    /// descriptors (EMFILE, ENFILE) the connection stays queued and the listener readable.
    fn accept_one(&mut self, now: Time) -> Option<OwnedFd> {
        use rustix::io::Errno;
        loop {
            match rustix::net::accept_with(
                &self.listener,
                SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            ) {
                Ok(fd) => return Some(fd),
                // The client gave up while queued, or a signal: the next one, then.
                Err(Errno::CONNABORTED) | Err(Errno::INTR) => continue,
                Err(Errno::AGAIN) => return None,
                Err(e) => {
                    self.pause_accepting(e, now);
                    return None;
                }
            }
        }
    }

    /// Leaves the listener out of the poll set for ACCEPT_PAUSE, and says so once per run
    /// of failures.
    fn pause_accepting(&mut self, error: rustix::io::Errno, now: Time) {
        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
        if std::mem::replace(&mut self.failure_reported, true) {
            return;
        }
        let pause = ACCEPT_PAUSE.as_millis();
        let why = match error {
            rustix::io::Errno::MFILE | rustix::io::Errno::NFILE => {
                "too many open descriptors (RLIMIT_NOFILE?)".to_string()
            }
            e => std::io::Error::from(e).to_string(),
        };
        self.warning = Some(format!(
            "{why}; new control clients wait, tried again every {pause} ms and whenever a client leaves"
        ));
    }

    /// A client left, so a descriptor is free: accept again at once.
    fn client_left(&mut self) {
        self.accept_paused_until = None;
    }

    /// Only bundle-init's own user and root may control it, and only so many at once.
    fn admit(&self, fd: &OwnedFd) -> Result<(), String> {
        self.check_peer(fd)?;
        if self.clients.len() >= MAX_CLIENTS {
            return Err("busy: too many control clients at once".to_string());
        }
        Ok(())
    }

    /// With every slot taken, the client that has been silent the longest without a
    /// complete request makes room: silent clients must not lock out a health probe.
    /// Clients whose request is under way (a restart) keep their slots.
    fn evict_the_most_silent(&mut self) {
        let most_silent = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| c.deadline.is_some())
            .min_by_key(|(_, c)| c.last_heard)
            .map(|(i, _)| i);
        if let Some(index) = most_silent {
            self.refuse(
                index,
                "evicted: every slot was taken and this client had sent no request".to_string(),
            );
        }
    }

    /// Only processes in bundle-init's PID namespace (or below it), with its uid or root,
    /// may control it. A peer outside the namespace shows pid 0 in SO_PEERCRED: in a pod,
    /// every container shares the network namespace, and so the abstract socket, but not
    /// (unless shareProcessNamespace) the PID namespace.
    fn check_peer(&self, fd: &OwnedFd) -> Result<(), String> {
        let cred = crate::sys::peer_credentials(fd)
            .map_err(|e| format!("cannot check the peer's credentials: {e}"))?;
        if cred.pid == 0 {
            return Err(
                "permission denied: the client is outside bundle-init's PID namespace".to_string(),
            );
        }
        if cred.uid != self.my_uid && cred.uid != 0 {
            return Err(format!(
                "permission denied: uid {} may not control this bundle-init (uid {})",
                cred.uid, self.my_uid
            ));
        }
        Ok(())
    }

    /// Reads from client `index`. Returns its request once a whole line is in, for the
    /// supervisor; a request that cannot be parsed is refused here.
    pub(crate) fn readable(
        &mut self,
        index: usize,
        now: Time,
    ) -> Option<(ClientId, ControlRequest)> {
        let client = self.clients.get_mut(index)?;
        let line = match read_request(client, now) {
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
        self.client_left();
        answer(
            &client.fd,
            &Reply::Err {
                reason: why,
                body: String::new(),
            },
        );
    }

    /// Hands the connection of `client` over (to the `logs` clients): its slot is free.
    pub(crate) fn take_client(&mut self, client: ClientId) -> Option<OwnedFd> {
        let index = self.clients.iter().position(|c| c.id == client)?;
        let client = self.clients.remove(index);
        self.client_left();
        Some(client.fd)
    }

    /// Writes the supervisor's reply to `client` and closes the connection.
    pub(crate) fn reply(&mut self, client: ClientId, reply: &Reply) {
        if let Some(index) = self.clients.iter().position(|c| c.id == client) {
            let client = self.clients.remove(index);
            answer(&client.fd, reply);
            self.client_left();
        }
    }

    /// Refuses the clients that did not send a request in time; ends a pause in accepting
    /// that is over.
    pub(crate) fn expire(&mut self, now: Time) {
        if self.accept_paused_until.is_some_and(|until| now >= until) {
            self.accept_paused_until = None;
        }
        let before = self.clients.len();
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
        if self.clients.len() < before {
            self.client_left();
        }
    }
}

/// Reads what the client sent. Ok(Some(line)) once a line is complete (or the client
/// closed its end), Ok(None) while more may come, Err when the request is too long.
///
/// The limit holds for the line however it arrives: a read never takes more than one byte
/// past it, so a newline that comes later than that is already too late.
fn read_request(client: &mut Client, now: Time) -> Result<Option<Vec<u8>>, String> {
    let mut buf = [0u8; MAX_REQUEST + 1];
    let room = (MAX_REQUEST + 1).saturating_sub(client.request.len());
    let eof = match rustix::io::read(&client.fd, &mut buf[..room]) {
        Ok(0) => true,
        Ok(n) => {
            client.request.extend_from_slice(&buf[..n]);
            client.last_heard = now;
            false
        }
        Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => return Ok(None),
        Err(_) => true,
    };
    complete_request(&client.request, eof)
}

/// The request line in `received`, once it is complete: at most MAX_REQUEST bytes before
/// its newline (or before the client closed its end).
fn complete_request(received: &[u8], eof: bool) -> Result<Option<Vec<u8>>, String> {
    let too_long = || format!("request longer than {MAX_REQUEST} bytes");
    match received.iter().position(|&b| b == b'\n') {
        Some(end) if end > MAX_REQUEST => Err(too_long()),
        Some(end) => Ok(Some(received[..end].to_vec())),
        None if received.len() > MAX_REQUEST => Err(too_long()),
        None if eof => Ok(Some(received.to_vec())),
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
    use super::request::RequestError;
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
            parse_request(b"reload --dry-run"),
            Ok(Request::Reload { dry_run: true })
        );
        assert!(parse_request(b"reload now").is_err());
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
    fn logs_requests_parse_with_their_options_in_any_order() {
        let logs = |lines, follow| Request::Logs {
            name: "web".into(),
            lines,
            follow,
        };
        assert_eq!(parse_request(b"logs web"), Ok(logs(None, false)));
        assert_eq!(parse_request(b"logs web -n 20"), Ok(logs(Some(20), false)));
        assert_eq!(parse_request(b"logs web -f -n 5"), Ok(logs(Some(5), true)));
        assert_eq!(parse_request(b"logs web --follow"), Ok(logs(None, true)));
        for bad in [
            &b"logs"[..],
            b"logs web -n",
            b"logs web -n x",
            b"logs web -f -f",
            b"logs web -x",
        ] {
            assert!(parse_request(bad).is_err(), "{bad:?}");
        }
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

    /// The limit is on the line, whichever read brings its newline.
    #[test]
    fn a_request_line_is_at_most_512_bytes() {
        let line = |len: usize| [vec![b' '; len], b"\n".to_vec()].concat();
        let refused = Err("request longer than 512 bytes".to_string());
        assert_eq!(
            complete_request(&line(512), false),
            Ok(Some(vec![b' '; 512]))
        );
        assert_eq!(complete_request(&line(513), false), refused);
        assert_eq!(complete_request(&line(600), false), refused);
        assert_eq!(complete_request(&[b' '; 513], false), refused);
        assert_eq!(complete_request(&[b' '; 512], false), Ok(None));
        assert_eq!(
            complete_request(&[b' '; 512], true),
            Ok(Some(vec![b' '; 512]))
        );
    }

    /// A failed accept takes the listener out of the poll set until ACCEPT_PAUSE has passed
    /// or a client left, and is reported once per run of failures.
    #[test]
    fn a_failed_accept_pauses_the_listener_and_is_reported_once() {
        let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        let mut server = Server::on(listener, None);
        let polls_listener =
            |s: &Server| s.interests().any(|(_, i)| matches!(i, Interest::Listener));
        let t = Time::from_secs(100);
        assert!(polls_listener(&server));
        server.pause_accepting(rustix::io::Errno::MFILE, t);
        assert!(!polls_listener(&server));
        assert_eq!(server.next_deadline(), Some(t + ACCEPT_PAUSE));
        assert_eq!(
            server.take_warning().as_deref(),
            Some(
                "too many open descriptors (RLIMIT_NOFILE?); new control clients wait, tried again every 200 ms and whenever a client leaves"
            )
        );
        assert_eq!(server.take_warning(), None, "said once");
        server.expire(t + ACCEPT_PAUSE / 2);
        assert!(!polls_listener(&server), "still paused");
        server.expire(t + ACCEPT_PAUSE);
        assert!(polls_listener(&server), "the pause is over");
        assert_eq!(server.next_deadline(), None);
        server.pause_accepting(rustix::io::Errno::MFILE, t + ACCEPT_PAUSE);
        assert_eq!(server.take_warning(), None, "the same run of failures");
        server.client_left();
        assert!(
            polls_listener(&server),
            "a client left: a descriptor is free"
        );
    }

    #[test]
    fn the_derived_name_is_the_same_for_everyone_in_the_namespace() {
        assert_eq!(derived_name(), derived_name());
        assert!(derived_name().starts_with("bundle-init"));
    }
}
