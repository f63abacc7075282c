//! Responses: a status line, the few headers every answer carries, a body. What the body
//! says comes from the supervisor's views; this file only formats it.

use std::fmt::Write as _;

use super::request::Refusal;

pub(crate) const JSON: &str = "application/json";
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";
/// Prometheus's text exposition format, version 0.0.4.
pub(crate) const METRICS: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: &'static str,
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn ok(content_type: &'static str, body: String) -> Response {
        Response {
            status: 200,
            content_type,
            body,
        }
    }

    /// 200 with `good` when the view found nothing wrong, else 503 with what it found, a
    /// line each.
    pub(crate) fn verdict(view: Result<(), Vec<String>>, good: &str) -> Response {
        match view {
            Ok(()) => Response::ok(TEXT, format!("{good}\n")),
            Err(lines) => Response {
                status: 503,
                content_type: TEXT,
                body: lines.join("\n") + "\n",
            },
        }
    }

    pub(crate) fn refusal(why: Refusal) -> Response {
        let (status, body) = match why {
            Refusal::Malformed(what) => (400, what),
            Refusal::NotFound => (
                404,
                "the endpoints are /healthz, /readyz, /status and /metrics",
            ),
            Refusal::MethodNotAllowed => (405, "the endpoint is read-only: GET or HEAD"),
            Refusal::TooLarge => (431, "the request line and headers are over 4096 bytes"),
            Refusal::VersionNotSupported => (505, "HTTP/1.0 and HTTP/1.1 only"),
        };
        Response {
            status,
            content_type: TEXT,
            body: format!("{body}\n"),
        }
    }

    /// The bytes to send. Every response closes the connection; HEAD gets the headers of
    /// the GET (its Content-Length too) without the body.
    pub(crate) fn bytes(&self, head_only: bool) -> Vec<u8> {
        let mut head = String::with_capacity(160);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        if !head_only {
            bytes.extend_from_slice(self.body.as_bytes());
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_says_its_length_and_closes() {
        let r = Response::ok(TEXT, "healthy\n".into());
        assert_eq!(
            String::from_utf8(r.bytes(false)).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 8\r\nCache-Control: no-store\r\nConnection: close\r\n\r\nhealthy\n"
        );
        let head = String::from_utf8(r.bytes(true)).unwrap();
        assert!(head.ends_with(
            "Content-Length: 8\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
        ));
    }

    #[test]
    fn method_not_allowed_says_which_are() {
        let r = Response::refusal(Refusal::MethodNotAllowed);
        let text = String::from_utf8(r.bytes(false)).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET, HEAD\r\n"), "{text}");
    }

    #[test]
    fn a_view_with_problems_is_503_with_a_line_each() {
        let r = Response::verdict(Err(vec!["a is down".into(), "b is down".into()]), "healthy");
        assert_eq!((r.status, r.body.as_str()), (503, "a is down\nb is down\n"));
        let r = Response::verdict(Ok(()), "healthy");
        assert_eq!((r.status, r.body.as_str()), (200, "healthy\n"));
    }
}
