//! Requests: a borrowed description built by the caller and its encoding.
//!
//! Everything that ends up on the wire is validated here before a byte is
//! written, so a path or header taken from configuration or a controller
//! can never inject CR/LF and smuggle a second request onto the connection.

use alloc::string::ToString;
use alloc::vec::Vec;

use crate::HttpError;
use crate::wire::{is_field_value_byte, is_tchar};

/// The methods the EVE API and image downloads need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `HEAD`: the response never has a body.
    Head,
}

impl Method {
    /// The method's token as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Head => "HEAD",
        }
    }
}

/// Header names the client writes itself: letting callers set them would
/// allow a second, conflicting framing or routing of the same message.
const MANAGED_HEADERS: [&str; 4] = ["host", "content-length", "transfer-encoding", "connection"];

/// A request to send on a [`crate::Client`]. Borrows its path, headers and
/// body, so building one allocates only the header list.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    method: Method,
    path: &'a str,
    headers: Vec<(&'a str, &'a str)>,
    body: Option<&'a [u8]>,
    body_limit: Option<u64>,
    close: bool,
}

impl<'a> Request<'a> {
    /// A request without body or extra headers.
    pub fn new(method: Method, path: &'a str) -> Self {
        Self {
            method,
            path,
            headers: Vec::new(),
            body: None,
            body_limit: None,
            close: false,
        }
    }

    /// `GET path`.
    pub fn get(path: &'a str) -> Self {
        Self::new(Method::Get, path)
    }

    /// `HEAD path`.
    pub fn head(path: &'a str) -> Self {
        Self::new(Method::Head, path)
    }

    /// `DELETE path`.
    pub fn delete(path: &'a str) -> Self {
        Self::new(Method::Delete, path)
    }

    /// `POST path` with `body` (sent with `Content-Length`).
    pub fn post(path: &'a str, body: &'a [u8]) -> Self {
        Self::new(Method::Post, path).body(body)
    }

    /// `PUT path` with `body` (sent with `Content-Length`).
    pub fn put(path: &'a str, body: &'a [u8]) -> Self {
        Self::new(Method::Put, path).body(body)
    }

    /// Adds a header, sent in the order added. Validated when the request
    /// is sent; `Host`, `Content-Length`, `Transfer-Encoding` and
    /// `Connection` are managed by the client and refused.
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Sets the body, sent with `Content-Length`.
    pub fn body(mut self, body: &'a [u8]) -> Self {
        self.body = Some(body);
        self
    }

    /// Caps the response body for this request, overriding
    /// [`crate::Limits::body_limit`]; reading past it fails with
    /// [`HttpError::BodyTooLarge`]. Image downloads raise it, API calls
    /// keep the small default.
    pub fn body_limit(mut self, limit: u64) -> Self {
        self.body_limit = Some(limit);
        self
    }

    /// Sends `Connection: close` instead of `keep-alive`: the last request
    /// on this connection.
    pub fn close(mut self) -> Self {
        self.close = true;
        self
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The path (origin form, with any query).
    pub fn path(&self) -> &'a str {
        self.path
    }

    pub(crate) fn response_body_limit(&self) -> Option<u64> {
        self.body_limit
    }

    pub(crate) fn wants_close(&self) -> bool {
        self.close
    }

    pub(crate) fn body_bytes(&self) -> &'a [u8] {
        self.body.unwrap_or(&[])
    }

    /// Appends the request line and header section (not the body) to `out`,
    /// after validating everything. On error `out` is left unchanged.
    ///
    /// `Content-Length` is sent whenever there is a body, and always for
    /// POST and PUT (an empty one is `0`), because servers may otherwise
    /// wait for a body or answer 411.
    pub fn encode_head(&self, host: &str, out: &mut Vec<u8>) -> Result<(), HttpError> {
        validate_path(self.path)?;
        validate_host(host)?;
        for (name, value) in &self.headers {
            validate_header(name, value)?;
        }
        for part in [
            self.method.as_str(),
            " ",
            self.path,
            " HTTP/1.1\r\nHost: ",
            host,
            "\r\n",
        ] {
            out.extend_from_slice(part.as_bytes());
        }
        for (name, value) in &self.headers {
            for part in [*name, ": ", *value, "\r\n"] {
                out.extend_from_slice(part.as_bytes());
            }
        }
        if self.body.is_some() || matches!(self.method, Method::Post | Method::Put) {
            out.extend_from_slice(b"Content-Length: ");
            out.extend_from_slice(self.body_bytes().len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(if self.close {
            b"Connection: close\r\n\r\n"
        } else {
            b"Connection: keep-alive\r\n\r\n"
        });
        Ok(())
    }
}

/// Origin form only (`/` followed by visible ASCII): no space, CR, LF or
/// other control character can reach the request line.
fn validate_path(path: &str) -> Result<(), HttpError> {
    let ok = path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(HttpError::InvalidPath)
    }
}

/// `host[:port]`: visible ASCII without the characters that would end the
/// authority (`/ ? # @`) or smuggle userinfo.
pub(crate) fn validate_host(host: &str) -> Result<(), HttpError> {
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"/?#@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(HttpError::InvalidRequestHeader)
    }
}

fn validate_header(name: &str, value: &str) -> Result<(), HttpError> {
    let ok = !name.is_empty()
        && name.bytes().all(is_tchar)
        && !MANAGED_HEADERS.iter().any(|m| m.eq_ignore_ascii_case(name))
        && value.bytes().all(is_field_value_byte);
    if ok {
        Ok(())
    } else {
        Err(HttpError::InvalidRequestHeader)
    }
}
