//! The client side of `bundle-init status | restart | signal | health | reload`: one request
//! line out, the answer printed, an exit code that says how it went.

use std::io::{Read, Write};

use rustix::net::{AddressFamily, SocketFlags, SocketType};

use super::address;

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
    if request.starts_with("logs ") {
        return stream_answer(stream);
    }
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

/// The answer to `logs`: the first line says OK or ERR; then the lines, copied to stdout
/// as they come (bytes as the daemon wrote them), until the server closes (or, following,
/// until this client is interrupted).
fn stream_answer(mut stream: std::fs::File) -> u8 {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr();
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = Vec::new();
    let rest = loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break None,
            Ok(n) => n,
        };
        match buf[..n].iter().position(|&b| b == b'\n') {
            Some(end) => {
                first.extend_from_slice(&buf[..end]);
                break Some(buf[end + 1..n].to_vec());
            }
            None if first.len() < 4096 => first.extend_from_slice(&buf[..n]),
            None => break None,
        }
    };
    let Some(rest) = rest else {
        let _ = writeln!(
            err,
            "bundle-init: the control socket closed without an answer"
        );
        return 3;
    };
    let first = String::from_utf8_lossy(&first);
    if first != "OK" {
        let reason = first.strip_prefix("ERR ").unwrap_or(&first);
        let _ = writeln!(err, "bundle-init: {reason}");
        return 1;
    }
    let _ = out.write_all(&rest);
    let _ = out.flush();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return 0,
            Ok(n) => {
                if out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                    return 0; // whoever reads our output left (`| head`)
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return 0,
        }
    }
}
