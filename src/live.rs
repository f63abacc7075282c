//! Liveness checks, run by bundle-init itself inside its loop, with no process spawned: a
//! TCP or Unix connect, or an HTTP/1.1 GET whose status must be 2xx or 3xx. The supervisor
//! says when a check is due (`Action::CheckLive`) and what its result means; this module
//! runs one check at a time per daemon, non-blocking, each with its `live-timeout`, and
//! reports how it ended. A daemon without `live` costs nothing here.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::id::{DaemonId, IdMap};
use crate::plan::LiveCheck;
use crate::sys::{POLLIN, POLLOUT};
use crate::time::Time;

/// An HTTP status line is short; what comes after it is not read.
const MAX_STATUS_LINE: usize = 256;

/// How a check ended: for process `pid` of daemon `id`, passed or why not.
pub(crate) type Report = (DaemonId, i32, Result<(), String>);

/// A check under way.
struct Running {
    pid: i32,
    check: LiveCheck,
    deadline: Time,
    fd: OwnedFd,
    phase: Phase,
}

enum Phase {
    Connecting,
    /// The request, and how much of it is written.
    Sending {
        request: Vec<u8>,
        sent: usize,
    },
    /// What came back so far.
    Reading {
        got: Vec<u8>,
    },
}

/// The checks under way, at most one per daemon.
#[derive(Default)]
pub(crate) struct LiveChecks {
    running: IdMap<Running>,
}

impl LiveChecks {
    /// Starts `check` of daemon `id`'s process `pid`, with `timeout`. A check that ends at
    /// once (connected, refused) reports now.
    pub(crate) fn start(
        &mut self,
        id: DaemonId,
        pid: i32,
        check: &LiveCheck,
        timeout: Duration,
        now: Time,
    ) -> Option<Report> {
        self.running.remove(id);
        let (fd, connected) = match connect(check) {
            Ok(started) => started,
            Err(errno) => return Some((id, pid, Err(connect_failed(check, errno)))),
        };
        let running = Running {
            pid,
            check: check.clone(),
            deadline: now + timeout,
            fd,
            phase: Phase::Connecting,
        };
        if connected {
            return self.advance(id, running);
        }
        self.running.insert(id, running);
        None
    }

    /// A daemon a reload removed is gone: a check under way is dropped.
    pub(crate) fn forget(&mut self, id: DaemonId) {
        self.running.remove(id);
    }

    /// Descriptors to poll, with the events each waits for.
    pub(crate) fn interests(&self) -> impl Iterator<Item = (RawFd, i16, DaemonId)> + '_ {
        self.running.iter().map(|(id, check)| {
            let events = match check.phase {
                Phase::Connecting | Phase::Sending { .. } => POLLOUT,
                Phase::Reading { .. } => POLLIN,
            };
            (check.fd.as_raw_fd(), events, id)
        })
    }

    /// Daemon `id`'s check can make progress; its report if it ended.
    pub(crate) fn event(&mut self, id: DaemonId) -> Option<Report> {
        let running = self.running.remove(id)?;
        self.advance(id, running)
    }

    /// The checks whose timeout passed, each reported as timed out.
    pub(crate) fn expire(&mut self, now: Time) -> Vec<Report> {
        let late: Vec<DaemonId> = self
            .running
            .iter()
            .filter(|(_, check)| now >= check.deadline)
            .map(|(id, _)| id)
            .collect();
        late.into_iter()
            .filter_map(|id| {
                let check = self.running.remove(id)?;
                Some((id, check.pid, Err(timed_out(&check))))
            })
            .collect()
    }

    /// The earliest timeout of a check under way.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        self.running.iter().map(|(_, check)| check.deadline).min()
    }

    /// Takes the check one step on; puts it back if it has not ended.
    fn advance(&mut self, id: DaemonId, mut running: Running) -> Option<Report> {
        match step(&mut running) {
            Step::Wait => {
                self.running.insert(id, running);
                None
            }
            Step::Ended(result) => Some((id, running.pid, result)),
        }
    }
}

enum Step {
    Wait,
    Ended(Result<(), String>),
}

/// One step of a check whose descriptor is ready (or just connected).
fn step(running: &mut Running) -> Step {
    match &mut running.phase {
        Phase::Connecting => {
            match rustix::net::sockopt::socket_error(&running.fd) {
                Ok(Ok(())) => {}
                Ok(Err(errno)) | Err(errno) => {
                    return Step::Ended(Err(connect_failed(&running.check, errno)));
                }
            }
            match &running.check {
                LiveCheck::Tcp(_) | LiveCheck::Unix(_) => Step::Ended(Ok(())),
                LiveCheck::Http { addr, path } => {
                    let request = http_request(&addr.written, path);
                    running.phase = Phase::Sending { request, sent: 0 };
                    step(running)
                }
            }
        }
        Phase::Sending { request, sent } => {
            match rustix::net::send(&running.fd, &request[*sent..], send_flags()) {
                Ok(n) => *sent += n,
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return Step::Wait,
                Err(errno) => return Step::Ended(Err(http_failed(&running.check, errno))),
            }
            if *sent == request.len() {
                running.phase = Phase::Reading { got: Vec::new() };
            }
            Step::Wait
        }
        Phase::Reading { got } => read_status(&running.fd, got, &running.check),
    }
}

/// Reads what has come of the answer; ends once its status line is there.
fn read_status(fd: &OwnedFd, got: &mut Vec<u8>, check: &LiveCheck) -> Step {
    let mut buf = [0u8; MAX_STATUS_LINE];
    match rustix::io::read(fd, &mut buf) {
        Ok(0) => return Step::Ended(Err(format!("{} closed without an answer", get(check)))),
        Ok(n) => got.extend_from_slice(&buf[..n]),
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => return Step::Wait,
        Err(errno) => return Step::Ended(Err(http_failed(check, errno))),
    }
    let line_ends = got.iter().position(|&b| b == b'\n');
    if line_ends.is_none() && got.len() < MAX_STATUS_LINE {
        return Step::Wait;
    }
    Step::Ended(match status_code(got) {
        Some(code) if (200..400).contains(&code) => Ok(()),
        Some(code) => Err(format!("{} answered {code}", get(check))),
        None => Err(format!("{} answered no HTTP status line", get(check))),
    })
}

/// The status code of an HTTP/1.x status line (`HTTP/1.1 204 No Content`).
fn status_code(answer: &[u8]) -> Option<u16> {
    let rest = answer.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

fn http_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bundle-init\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// A daemon that closed its end must not kill bundle-init with SIGPIPE.
fn send_flags() -> rustix::net::SendFlags {
    rustix::net::SendFlags::NOSIGNAL | rustix::net::SendFlags::DONTWAIT
}

/// A non-blocking connect: the socket, and whether it connected at once.
fn connect(check: &LiveCheck) -> Result<(OwnedFd, bool), rustix::io::Errno> {
    let flags = SocketFlags::CLOEXEC | SocketFlags::NONBLOCK;
    let started = match check {
        LiveCheck::Tcp(tcp) | LiveCheck::Http { addr: tcp, .. } => {
            let family = if tcp.addr.is_ipv4() {
                AddressFamily::INET
            } else {
                AddressFamily::INET6
            };
            let fd = rustix::net::socket_with(family, SocketType::STREAM, flags, None)?;
            (rustix::net::connect(&fd, &tcp.addr), fd)
        }
        LiveCheck::Unix(path) => {
            let addr = SocketAddrUnix::new(path.as_path())?;
            let fd =
                rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
            (rustix::net::connect(&fd, &addr), fd)
        }
    };
    match started {
        (Ok(()), fd) => Ok((fd, true)),
        // Only INPROGRESS is a connect under way: EAGAIN is a Unix socket's full backlog,
        // or no local port left, and polling would then report a socket never connected.
        (Err(rustix::io::Errno::INPROGRESS), fd) => Ok((fd, false)),
        (Err(errno), _) => Err(errno),
    }
}

/// Where a check connects, as the bundle file wrote it.
fn target(check: &LiveCheck) -> String {
    match check {
        LiveCheck::Tcp(addr) | LiveCheck::Http { addr, .. } => addr.written.clone(),
        LiveCheck::Unix(path) => path.display().to_string(),
    }
}

fn get(check: &LiveCheck) -> String {
    match check {
        LiveCheck::Http { addr, path } => format!("GET http://{addr}{path}"),
        other => format!("connect to {}", target(other)),
    }
}

fn connect_failed(check: &LiveCheck, errno: rustix::io::Errno) -> String {
    let target = target(check);
    match errno {
        rustix::io::Errno::CONNREFUSED => format!("connect to {target} refused"),
        errno => format!("connect to {target}: {}", describe(errno)),
    }
}

fn http_failed(check: &LiveCheck, errno: rustix::io::Errno) -> String {
    format!("{}: {}", get(check), describe(errno))
}

fn timed_out(check: &Running) -> String {
    match check.phase {
        Phase::Connecting => format!("connect to {} timed out", target(&check.check)),
        Phase::Sending { .. } | Phase::Reading { .. } => {
            format!("{} timed out", get(&check.check))
        }
    }
}

/// The OS's text for `errno`, without std's "(os error N)".
fn describe(errno: rustix::io::Errno) -> String {
    let text = std::io::Error::from(errno).to_string();
    match text.rfind(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn http(port: u16, path: &str) -> LiveCheck {
        LiveCheck::Http {
            addr: format!("127.0.0.1:{port}").as_str().into(),
            path: path.to_string(),
        }
    }

    /// Runs one check to its end, polling as the loop does; its result.
    fn run(check: &LiveCheck, timeout: Duration) -> Result<(), String> {
        let mut checks = LiveChecks::default();
        let id = DaemonId(0);
        let now = crate::time::now();
        if let Some((_, pid, result)) = checks.start(id, 7, check, timeout, now) {
            assert_eq!(pid, 7);
            return result;
        }
        loop {
            let mut fds: Vec<crate::sys::PollFd> = checks
                .interests()
                .map(|(fd, events, _)| crate::sys::PollFd {
                    fd,
                    events,
                    revents: 0,
                })
                .collect();
            let _ = crate::sys::wait_for(&mut fds, 20);
            if fds.iter().any(|f| f.revents != 0)
                && let Some((_, _, result)) = checks.event(id)
            {
                return result;
            }
            if let Some((_, _, result)) = checks.expire(crate::time::now()).pop() {
                return result;
            }
        }
    }

    /// A server thread that reads one request and answers `status`.
    fn answer_once(listener: &TcpListener, status: &str) {
        let listener = listener.try_clone().unwrap();
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 512];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "the request ends with a blank line");
                request.extend_from_slice(&buf[..n]);
            }
            assert!(request.starts_with(b"GET /healthz HTTP/1.1\r\n"));
            stream.write_all(answer.as_bytes()).unwrap();
        });
    }

    #[test]
    fn a_tcp_check_passes_when_a_connection_is_accepted_and_fails_when_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let tcp = LiveCheck::Tcp(format!("127.0.0.1:{port}").as_str().into());
        assert_eq!(run(&tcp, Duration::from_secs(2)), Ok(()));
        drop(listener);
        assert_eq!(
            run(&tcp, Duration::from_secs(2)),
            Err(format!("connect to 127.0.0.1:{port} refused"))
        );
    }

    #[test]
    fn an_http_check_passes_on_2xx_and_3xx_and_names_any_other_status() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let check = http(port, "/healthz");
        for (status, expected) in [
            ("200 OK", Ok(())),
            ("302 Found", Ok(())),
            (
                "503 Service Unavailable",
                Err(format!("GET http://127.0.0.1:{port}/healthz answered 503")),
            ),
        ] {
            answer_once(&listener, status);
            let result = run(&check, Duration::from_secs(2));
            assert_eq!(result, expected, "{status}");
        }
    }

    #[test]
    fn an_http_check_that_gets_no_answer_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // The kernel accepts the connection; nobody reads or answers.
        let result = run(&http(port, "/healthz"), Duration::from_millis(100));
        assert_eq!(
            result,
            Err(format!("GET http://127.0.0.1:{port}/healthz timed out"))
        );
        drop(listener);
    }

    #[test]
    fn a_unix_check_names_a_missing_socket() {
        let check = LiveCheck::Unix("/nonexistent/bundle-init.sock".into());
        assert_eq!(
            run(&check, Duration::from_secs(1)),
            Err("connect to /nonexistent/bundle-init.sock: No such file or directory".to_string())
        );
    }

    #[test]
    fn only_an_http_1_status_line_counts() {
        assert_eq!(status_code(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(status_code(b"HTTP/1.0 301 Moved\r\n"), Some(301));
        assert_eq!(status_code(b"HTTP/2 200\r\n"), None);
        assert_eq!(status_code(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 2x0 OK\r\n"), None);
    }
}
