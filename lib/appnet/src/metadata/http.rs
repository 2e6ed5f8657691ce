//! Just enough HTTP/1.1 for the metadata server: one request per
//! connection, read until the blank line (at most [`MAX_REQUEST`] bytes),
//! answered with a complete response and `Connection: close`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Longest request head accepted.
pub(crate) const MAX_REQUEST: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Head,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: Method,
    /// The path, without query string or fragment.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// No blank line yet.
    Incomplete,
    Done(Request),
    /// Not an HTTP request, or its head is too long.
    Bad,
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| buf.windows(2).position(|w| w == b"\n\n"))
}

pub(crate) fn parse(buf: &[u8]) -> Parsed {
    let Some(end) = head_end(buf) else {
        return if buf.len() >= MAX_REQUEST {
            Parsed::Bad
        } else {
            Parsed::Incomplete
        };
    };
    let Ok(head) = core::str::from_utf8(&buf[..end]) else {
        return Parsed::Bad;
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Bad;
    };
    if !version.starts_with("HTTP/1.") {
        return Parsed::Bad;
    }
    let method = match method {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    // The absolute form (a proxy-style request) names the path after the
    // authority.
    let target = target
        .strip_prefix("http://")
        .map(|rest| rest.find('/').map_or("/", |i| &rest[i..]))
        .unwrap_or(target);
    let path = target.split(['?', '#']).next().unwrap_or("");
    if !path.starts_with('/') {
        return Parsed::Bad;
    }
    Parsed::Done(Request {
        method,
        path: path.into(),
    })
}

/// A response to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            content_type,
            body: body.into(),
        }
    }

    /// What Go's `http.Error` sends: the message and a newline, as plain
    /// text.
    pub fn error(status: u16, message: &str) -> Response {
        Response::new(
            status,
            "text/plain; charset=utf-8",
            format!("{message}\n").into_bytes(),
        )
    }

    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            204 => "No Content",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            _ => "Unknown",
        };
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            reason,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_request_line_once_the_head_is_complete() {
        assert_eq!(
            parse(b"GET /eve/v1/hostname HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Incomplete
        );
        let done = parse(b"GET /eve/v1/hostname?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            done,
            Parsed::Done(Request {
                method: Method::Get,
                path: "/eve/v1/hostname".into()
            })
        );
        let absolute = parse(b"HEAD http://169.254.169.254/openstack HTTP/1.0\n\n");
        assert_eq!(
            absolute,
            Parsed::Done(Request {
                method: Method::Head,
                path: "/openstack".into()
            })
        );
    }

    #[test]
    fn refuses_garbage_and_endless_heads() {
        assert_eq!(parse(b"\x00\x01\r\n\r\n"), Parsed::Bad);
        assert_eq!(parse(b"GET nopath HTTP/1.1\r\n\r\n"), Parsed::Bad);
        assert_eq!(parse(b"GET / SPDY/3\r\n\r\n"), Parsed::Bad);
        assert_eq!(parse(&[b'a'; MAX_REQUEST]), Parsed::Bad);
    }
}
