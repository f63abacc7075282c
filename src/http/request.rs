//! HTTP/1.x requests as a client sends them, checked byte by byte: a request line, header
//! lines, an empty line. Only what the endpoint serves is accepted; everything else is
//! refused with the status that says why. Pure: bytes in, a verdict out.

use super::MAX_REQUEST;

/// What a client may ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    Healthz,
    Readyz,
    Status,
    Metrics,
}

impl Endpoint {
    fn at(path: &str) -> Option<Endpoint> {
        match path {
            "/healthz" => Some(Endpoint::Healthz),
            "/readyz" => Some(Endpoint::Readyz),
            "/status" => Some(Endpoint::Status),
            "/metrics" => Some(Endpoint::Metrics),
            _ => None,
        }
    }
}

/// A request the endpoint serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) endpoint: Endpoint,
    /// HEAD: the same status and headers as GET, without the body.
    pub(crate) head_only: bool,
}

/// Why a request is refused; each maps to one status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 400: not HTTP/1.x as RFC 9112 writes it.
    Malformed(&'static str),
    /// 404
    NotFound,
    /// 405: a method other than GET or HEAD.
    MethodNotAllowed,
    /// 431: no end of the headers within MAX_REQUEST bytes.
    TooLarge,
    /// 505: HTTP/2 or later, or HTTP/0.x.
    VersionNotSupported,
}

/// What the bytes received so far amount to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// More may come and nothing is wrong yet.
    Incomplete,
    /// The client closed its end before sending anything: nothing to answer.
    Abandoned,
    Complete(Request),
    Refused(Refusal),
}

/// Judges the bytes received so far; `eof` when the client closed its end. Bytes after
/// the empty line that ends the headers are never looked at (one request per connection).
pub(crate) fn parse(received: &[u8], eof: bool) -> Parsed {
    let Some(end) = head_end(received) else {
        return incomplete(received, eof);
    };
    if end > MAX_REQUEST {
        return Parsed::Refused(Refusal::TooLarge);
    }
    match request(&received[..end]) {
        Ok(request) => Parsed::Complete(request),
        Err(refusal) => Parsed::Refused(refusal),
    }
}

/// No empty line yet: refused as soon as it cannot become a request (too long already, or
/// a request line that is already wrong), so junk does not hold a slot until the deadline.
fn incomplete(received: &[u8], eof: bool) -> Parsed {
    if received.len() > MAX_REQUEST {
        return Parsed::Refused(Refusal::TooLarge);
    }
    let first_line = received.iter().position(|&b| b == b'\n');
    let so_far = &received[..first_line.unwrap_or(received.len())];
    if let Err(refusal) = plausible_request_line(so_far, first_line.is_some()) {
        return Parsed::Refused(refusal);
    }
    match (eof, received.is_empty()) {
        (true, true) => Parsed::Abandoned,
        (true, false) => Parsed::Refused(Refusal::Malformed("the request ended early")),
        (false, _) => Parsed::Incomplete,
    }
}

/// The end of the head: just past the first empty line (CRLF CRLF, or LF LF: RFC 9112
/// lets a recipient take a bare LF as a line end).
fn head_end(received: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in received.iter().enumerate() {
        if b == b'\n' {
            let line = &received[line_start..i];
            if line.is_empty() || line == b"\r" {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// The head's lines, without their line ends.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    head.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.is_empty())
}

fn request(head: &[u8]) -> Result<Request, Refusal> {
    let mut lines = lines(head);
    let first = lines.next().unwrap_or_default();
    let (method, target, version) = request_line(first)?;
    let mut hosts = 0;
    for line in lines {
        if header_name(line)?.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
    }
    // RFC 9112, 3.2: a server must answer 400 to an HTTP/1.1 request without exactly one Host.
    if version == "HTTP/1.1" && hosts != 1 {
        return Err(Refusal::Malformed(
            "an HTTP/1.1 request needs one Host header",
        ));
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    let endpoint = Endpoint::at(path).ok_or(Refusal::NotFound)?;
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Err(Refusal::MethodNotAllowed),
    };
    Ok(Request {
        endpoint,
        head_only,
    })
}

/// `METHOD SP TARGET SP HTTP/1.x`, in visible ASCII; the target in origin form (`/...`).
fn request_line(line: &[u8]) -> Result<(&str, &str, &str), Refusal> {
    let malformed = Refusal::Malformed("the request line is not METHOD /PATH HTTP/1.1");
    if !line.iter().all(|&b| b.is_ascii_graphic() || b == b' ') {
        return Err(Refusal::Malformed(
            "the request line has bytes that are not visible ASCII",
        ));
    }
    let text = std::str::from_utf8(line).map_err(|_| malformed)?;
    let mut parts = text.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed);
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) || !target.starts_with('/') {
        return Err(malformed);
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => Ok((method, target, version)),
        v if is_http_version(v) => Err(Refusal::VersionNotSupported),
        _ => Err(malformed),
    }
}

/// `HTTP/D.D` or `HTTP/D`: a version, if not one served.
fn is_http_version(text: &str) -> bool {
    text.strip_prefix("HTTP/")
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// A header line's name: a token right before the colon (no space before it: RFC 9112,
/// 5.1, and no folded continuation lines: 5.2).
fn header_name(line: &[u8]) -> Result<&str, Refusal> {
    let bad = Refusal::Malformed("a header line is not NAME: VALUE");
    let colon = line.iter().position(|&b| b == b':').ok_or(bad)?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().copied().all(is_token_byte) {
        return Err(bad);
    }
    let value = &line[colon + 1..];
    // Field values are visible ASCII, spaces, tabs, and obs-text (bytes 0x80 and up).
    if value.iter().any(|&b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(Refusal::Malformed("a header value has a control character"));
    }
    std::str::from_utf8(name).map_err(|_| bad)
}

/// RFC 9110's tchar.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A request line not yet complete: wrong as soon as a byte could not be in one.
fn plausible_request_line(so_far: &[u8], complete: bool) -> Result<(), Refusal> {
    let so_far = so_far.strip_suffix(b"\r").unwrap_or(so_far);
    if complete {
        return request_line(so_far).map(|_| ());
    }
    let method_end = so_far.iter().position(|&b| b == b' ');
    let method = &so_far[..method_end.unwrap_or(so_far.len())];
    let visible = so_far.iter().all(|&b| b.is_ascii_graphic() || b == b' ');
    if !visible || !method.iter().copied().all(is_token_byte) {
        return Err(Refusal::Malformed(
            "the request line is not METHOD /PATH HTTP/1.1",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(endpoint: Endpoint) -> Parsed {
        Parsed::Complete(Request {
            endpoint,
            head_only: false,
        })
    }

    fn refused(why: Refusal) -> Parsed {
        Parsed::Refused(why)
    }

    const CURL: &[u8] =
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

    #[test]
    fn each_endpoint_is_a_get_or_a_head() {
        assert_eq!(parse(CURL, false), get(Endpoint::Healthz));
        let at = |path: &str| parse(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes(), false);
        assert_eq!(at("/readyz"), get(Endpoint::Readyz));
        assert_eq!(at("/status"), get(Endpoint::Status));
        assert_eq!(at("/metrics"), get(Endpoint::Metrics));
        assert_eq!(
            at("/metrics?name[]=up"),
            get(Endpoint::Metrics),
            "query ignored"
        );
        assert_eq!(
            parse(b"HEAD /status HTTP/1.0\n\n", false),
            Parsed::Complete(Request {
                endpoint: Endpoint::Status,
                head_only: true
            }),
            "bare line feeds"
        );
    }

    /// However the bytes are split across reads, the verdict comes with the empty line.
    #[test]
    fn a_request_read_in_pieces_is_incomplete_until_its_empty_line() {
        for cut in 0..CURL.len() {
            assert_eq!(parse(&CURL[..cut], false), Parsed::Incomplete, "at {cut}");
        }
        assert_eq!(parse(CURL, false), get(Endpoint::Healthz));
    }

    #[test]
    fn a_head_over_4_kib_is_refused_as_too_large() {
        let padding = "x".repeat(MAX_REQUEST);
        let long = format!("GET /healthz HTTP/1.1\r\nHost: h\r\nX-Pad: {padding}\r\n\r\n");
        assert_eq!(parse(long.as_bytes(), false), refused(Refusal::TooLarge));
        let unfinished = &long.as_bytes()[..MAX_REQUEST + 1];
        assert_eq!(parse(unfinished, false), refused(Refusal::TooLarge));
        let head_of = |len: usize| {
            let pad = "x".repeat(len - 30);
            format!("GET /healthz HTTP/1.0\r\nX: {pad}\r\n\r\n")
        };
        assert_eq!(head_of(MAX_REQUEST).len(), MAX_REQUEST);
        let parsed = |len| parse(head_of(len).as_bytes(), false);
        assert_eq!(parsed(MAX_REQUEST), get(Endpoint::Healthz));
        assert_eq!(parsed(MAX_REQUEST + 1), refused(Refusal::TooLarge));
    }

    #[test]
    fn other_methods_are_not_allowed_and_other_paths_not_found() {
        let line = |l: &str| parse(format!("{l}\r\nHost: h\r\n\r\n").as_bytes(), false);
        assert_eq!(
            line("POST /healthz HTTP/1.1"),
            refused(Refusal::MethodNotAllowed)
        );
        assert_eq!(
            line("DELETE /status HTTP/1.1"),
            refused(Refusal::MethodNotAllowed)
        );
        assert_eq!(
            line("get /healthz HTTP/1.1"),
            refused(Refusal::MethodNotAllowed)
        );
        assert_eq!(line("GET / HTTP/1.1"), refused(Refusal::NotFound));
        assert_eq!(line("GET /healthz/ HTTP/1.1"), refused(Refusal::NotFound));
        assert_eq!(line("POST /nothing HTTP/1.1"), refused(Refusal::NotFound));
        assert_eq!(
            line("GET /healthz HTTP/2.0"),
            refused(Refusal::VersionNotSupported)
        );
    }

    #[test]
    fn malformed_requests_are_bad_requests() {
        let bad =
            |bytes: &[u8]| matches!(parse(bytes, false), Parsed::Refused(Refusal::Malformed(_)));
        assert!(bad(b"GET /healthz\r\n\r\n"), "no version");
        assert!(
            bad(b"GET  /healthz HTTP/1.1\r\nHost: h\r\n\r\n"),
            "two spaces"
        );
        assert!(
            bad(b"GET http://h/healthz HTTP/1.1\r\nHost: h\r\n\r\n"),
            "absolute form"
        );
        assert!(bad(b"GET /healthz HTTP/1.1\r\n\r\n"), "1.1 without Host");
        assert!(
            bad(b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            "two Hosts"
        );
        assert!(
            bad(b"GET /healthz HTTP/1.0\r\nHost : h\r\n\r\n"),
            "space before colon"
        );
        assert!(bad(b"GET /healthz HTTP/1.0\r\nno colon\r\n\r\n"));
        assert!(
            bad(b"GET /healthz HTTP/1.0\r\nX: a\r\n folded\r\n\r\n"),
            "folding"
        );
        assert!(
            bad(b"GET /healthz HTTP/1.0\r\nX: a\x01b\r\n\r\n"),
            "control byte"
        );
        assert!(bad(b"GET /h\xc3\xa9 HTTP/1.0\r\n\r\n"), "not ASCII");
        assert!(
            bad(b"\r\nGET /healthz HTTP/1.0\r\n\r\n"),
            "empty first line"
        );
        assert!(bad(b"FOO /healthz XTTP/1.1\r\n\r\n"));
    }

    /// Junk is refused with its first bad byte, not when the deadline comes.
    #[test]
    fn junk_is_refused_before_the_head_is_complete() {
        let early =
            |bytes: &[u8]| matches!(parse(bytes, false), Parsed::Refused(Refusal::Malformed(_)));
        assert!(early(b"\x16\x03\x01\x02\x00"), "a TLS hello");
        assert!(early(b"GE\x00"));
        assert!(early(b"{\"json\": 1}"));
        assert!(
            early(b"GET /healthz HTTP/1.1 extra\r\n"),
            "a wrong request line"
        );
        assert_eq!(parse(b"GET /healthz HTT", false), Parsed::Incomplete);
    }

    #[test]
    fn bytes_after_the_head_are_not_looked_at() {
        let pipelined = [CURL, b"GET /status HTTP/1.1\r\n\x00\x01junk"].concat();
        assert_eq!(parse(&pipelined, false), get(Endpoint::Healthz));
    }

    #[test]
    fn a_client_that_closes_early_is_abandoned_or_malformed() {
        assert_eq!(parse(b"", true), Parsed::Abandoned);
        assert!(matches!(
            parse(b"GET /healthz HTTP/1.1\r\n", true),
            Parsed::Refused(Refusal::Malformed(_))
        ));
    }

    /// Valid requests, and the same with random edits (a piece of HTTP or junk inserted,
    /// bytes cut): the parser never panics, and a prefix refused early (to free the slot)
    /// is never a request once more bytes come.
    #[test]
    fn an_early_refusal_is_never_taken_back() {
        const VALID: &[&[u8]] = &[
            b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n",
            b"HEAD /status HTTP/1.0\n\n",
            b"GET /metrics?x HTTP/1.0\r\nAccept: */*\r\n\r\n",
        ];
        const PIECES: &[&[u8]] = &[
            b"GET",
            b"POST",
            b" ",
            b"/",
            b"HTTP/2",
            b"\r\n",
            b"\n",
            b"Host: h",
            b"X:",
            b"\t",
            b"\x00",
            b"\xff",
            b"\xc3\xa9",
            b":",
            b"\r",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % below as u64) as usize
        };
        let mut complete = 0;
        for _ in 0..20_000 {
            let mut bytes = VALID[next(VALID.len())].to_vec();
            for _ in 0..next(3) {
                let at = next(bytes.len() + 1);
                if next(2) == 0 {
                    let piece = PIECES[next(PIECES.len())];
                    bytes.splice(at..at, piece.iter().copied());
                } else {
                    let end = (at + next(4)).min(bytes.len());
                    bytes.drain(at..end);
                }
            }
            let whole = parse(&bytes, false);
            complete += usize::from(matches!(whole, Parsed::Complete(_)));
            for cut in 0..bytes.len() {
                let early = parse(&bytes[..cut], false);
                if matches!(early, Parsed::Refused(_)) {
                    assert!(
                        matches!(whole, Parsed::Refused(_)),
                        "{:?} refused at {cut} ({early:?}) but {whole:?} in whole",
                        String::from_utf8_lossy(&bytes)
                    );
                }
                let _ = parse(&bytes[..cut], true);
            }
        }
        assert!(
            complete > 5_000,
            "only {complete} of the requests were whole"
        );
    }
}
