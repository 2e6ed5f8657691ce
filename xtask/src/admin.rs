//! A small client for our controller's admin API (HTTPS checked against
//! the controller's root certificate, bearer token): enough to
//! pre-register an onboarding certificate and to watch devices appear. One
//! connection per request, closed by the server after the answer, so no
//! keep-alive bookkeeping.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// Largest answer read; the admin API's lists are far smaller.
const MAX_RESPONSE: u64 = 16 << 20;
/// Connect, read and write timeout of one request.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The admin API of one controller.
pub struct AdminClient {
    pub addr: SocketAddr,
    pub token: String,
    /// The controller's root certificate (PEM), which its HTTPS
    /// certificate must chain to.
    pub root_pem: String,
}

/// An HTTP answer: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl AdminClient {
    /// `GET path`, expecting 200 and a JSON body.
    pub fn get(&self, path: &str) -> Result<Value, String> {
        self.json("GET", path, None, 200)
    }

    /// Pre-registers an onboarding certificate for `serials` (empty: any
    /// serial); returns the allow-list entry's id. Registering the same
    /// certificate again replaces its serials.
    pub fn onboard(&self, cert_pem: &str, serials: &[String]) -> Result<i64, String> {
        let body = serde_json::json!({ "cert_pem": cert_pem, "serials": serials });
        let answer = self.json("POST", "/api/v1/onboard", Some(&body), 201)?;
        answer["id"]
            .as_i64()
            .ok_or_else(|| format!("POST /api/v1/onboard answered {answer} without an id"))
    }

    /// Sets a device's config from a YAML or JSON description.
    pub fn put_config(&self, uuid: &str, description: &str) -> Result<(), String> {
        let path = format!("/api/v1/devices/{uuid}/config");
        let request = request_bytes(
            "PUT",
            &self.addr.to_string(),
            &path,
            &self.token,
            Some(description.as_bytes()),
        )?;
        let response = self.exchange(&request)?;
        if response.status != 200 {
            return Err(format!(
                "PUT {path}: {} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ));
        }
        Ok(())
    }

    fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> Result<Value, String> {
        let body = body.map(Value::to_string);
        let request = request_bytes(
            method,
            &self.addr.to_string(),
            path,
            &self.token,
            body.as_deref().map(str::as_bytes),
        )?;
        let response = self.exchange(&request)?;
        let text = String::from_utf8_lossy(&response.body);
        if response.status != expected {
            return Err(format!(
                "{method} {path}: HTTP {} {}",
                response.status,
                text.trim()
            ));
        }
        serde_json::from_str(&text).map_err(|e| format!("{method} {path}: bad JSON ({e}): {text}"))
    }

    fn tls(&self) -> Result<rustls::ClientConnection, String> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.root_pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("controller root certificate: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| format!("controller root certificate: {e}"))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(controller::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::IpAddress(self.addr.ip().into());
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())
    }

    fn exchange(&self, request: &[u8]) -> Result<Response, String> {
        let fail = |e: std::io::Error| format!("admin API at {}: {e}", self.addr);
        let tcp = TcpStream::connect_timeout(&self.addr, TIMEOUT).map_err(fail)?;
        tcp.set_read_timeout(Some(TIMEOUT)).map_err(fail)?;
        tcp.set_write_timeout(Some(TIMEOUT)).map_err(fail)?;
        let mut stream = rustls::StreamOwned::new(self.tls()?, tcp);
        stream.write_all(request).map_err(fail)?;
        let mut raw = Vec::new();
        // The server closes after its answer; a close without TLS's
        // close_notify still ends a response framed by its length.
        match stream.take(MAX_RESPONSE).read_to_end(&mut raw) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => {}
            Err(e) => return Err(fail(e)),
        }
        parse_response(&raw)
    }
}

/// The bytes of one request. Refuses CR or LF in the parts that go into
/// the head, so a path or token cannot add header lines.
pub fn request_bytes(
    method: &str,
    host: &str,
    path: &str,
    token: &str,
    body: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    if [method, host, path, token]
        .iter()
        .any(|part| part.contains(['\r', '\n']))
    {
        return Err("a request part holds CR or LF".into());
    }
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Accept: application/json\r\nConnection: close\r\n"
    );
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    Ok(bytes)
}

/// Parses a whole response read until the server closed: status line,
/// headers, then a body framed by `Content-Length`, chunked, or the close.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("response ended inside its head")?;
    let head = std::str::from_utf8(&raw[..head_end]).map_err(|_| "response head is not text")?;
    let rest = &raw[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (words.next(), words.next()) else {
        return Err(format!("bad status line {status_line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (100..600).contains(c))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        rest.get(..length)
            .ok_or("response body shorter than its Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// Decodes a chunked body (extensions and trailers ignored).
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunked body cut in a size line")?;
        let line = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        let digits = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(digits, 16).map_err(|_| format!("bad chunk size {line:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        let chunk = rest.get(..size).ok_or("chunked body cut inside a chunk")?;
        body.extend_from_slice(chunk);
        rest = rest
            .get(size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or("chunk not followed by CRLF")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_onboard_post_carries_token_length_and_body() {
        let body = br#"{"cert_pem":"x","serials":["s"]}"#;
        let bytes = request_bytes(
            "POST",
            "127.0.0.1:8444",
            "/api/v1/onboard",
            "tok",
            Some(body),
        )
        .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        let (head, sent_body) = text.split_once("\r\n\r\n").unwrap();
        let lines: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(lines[0], "POST /api/v1/onboard HTTP/1.1");
        assert!(lines.contains(&"Host: 127.0.0.1:8444"));
        assert!(lines.contains(&"Authorization: Bearer tok"));
        assert!(lines.contains(&"Connection: close"));
        assert!(lines.contains(&"Content-Type: application/json"));
        assert!(lines.contains(&format!("Content-Length: {}", body.len()).as_str()));
        assert_eq!(sent_body.as_bytes(), body);
    }

    #[test]
    fn a_get_has_no_body_headers() {
        let bytes = request_bytes("GET", "h", "/api/v1/devices", "t", None).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.ends_with("\r\n\r\n"));
        assert!(!text.contains("Content-Length"));
    }

    #[test]
    fn line_breaks_cannot_be_injected() {
        assert!(request_bytes("GET", "h", "/x\r\nEvil: 1", "t", None).is_err());
        assert!(request_bytes("GET", "h", "/x", "t\nEvil: 1", None).is_err());
    }

    #[test]
    fn responses_are_framed_by_length_chunks_or_close() {
        let sized = parse_response(
            b"HTTP/1.1 201 Created\r\ncontent-length: 9\r\ncontent-type: application/json\r\n\r\n{\"id\":1}\nextra",
        )
        .unwrap();
        assert_eq!(sized.status, 201);
        assert_eq!(sized.body, b"{\"id\":1}\n");
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2;x=y\r\n2]\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(chunked.body, b"[1,2]");
        let closed = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((closed.status, closed.body.as_slice()), (404, &b"nope"[..]));
    }

    #[test]
    fn broken_responses_are_errors_not_panics() {
        let good: &[u8] =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        for cut in 0..good.len() {
            let _ = parse_response(&good[..cut]);
        }
        for bad in [
            &b"HTTP/1.1 2000 OK\r\n\r\n"[..],
            b"SPDY 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab",
        ] {
            assert!(
                parse_response(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut state = 0x2545_f491_u32;
        for _ in 0..2000 {
            let mut mutated = good.to_vec();
            for _ in 0..3 {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let at = state as usize % mutated.len();
                mutated[at] = (state >> 8) as u8;
            }
            let _ = parse_response(&mutated);
        }
    }

    /// Against the controller library's HTTPS admin listener: the
    /// certificate checks out against the root, the token is accepted,
    /// and a certificate from another root is refused.
    #[test]
    fn onboards_over_https_and_refuses_another_root() {
        use std::sync::Arc;
        let dir = std::env::temp_dir().join(format!("xtask-admin-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let identity = controller::identity::Identity::load_or_create(&dir).unwrap();
        let root_pem = identity.root_pem.clone();
        let tls = controller::tls::tls_config(&identity).unwrap();
        let store = controller::store::sqlite::SqliteStore::open(&dir.join("c.db")).unwrap();
        let ctl = Arc::new(
            controller::server::Controller::new(
                Arc::new(store),
                identity,
                controller::server::Limits::default(),
            )
            .unwrap(),
        );
        let rt = tokio::runtime::Runtime::new().unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        rt.spawn(controller::admin::serve_admin_tls(
            ctl,
            listener,
            Arc::new("tok".into()),
            tls,
        ));
        let onboarding =
            controller::identity::Identity::load_or_create(&dir.join("other")).unwrap();
        let admin = AdminClient {
            addr,
            token: "tok".into(),
            root_pem: root_pem.clone(),
        };
        let id = admin.onboard(&onboarding.root_pem, &["SN".into()]).unwrap();
        assert_eq!(admin.get("/api/v1/onboard").unwrap()[0]["id"], id);
        let wrong_token = AdminClient {
            token: "nope".into(),
            ..admin
        };
        assert!(
            wrong_token
                .get("/api/v1/onboard")
                .unwrap_err()
                .contains("401")
        );
        let other_root = AdminClient {
            addr,
            token: "tok".into(),
            root_pem: onboarding.root_pem,
        };
        assert!(other_root.get("/api/v1/onboard").is_err());
        drop(rt);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
