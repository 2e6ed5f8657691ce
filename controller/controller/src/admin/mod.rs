//! The admin listener: the JSON API ([`api`]) and the web console
//! ([`console`]) on one port, HTTPS with the controller's own certificate
//! by default (clients verify it against the controller's root, as devices
//! do). Nothing is open: API calls carry the admin token as a bearer token;
//! the console logs in with the same token and then carries a session
//! cookie (`HttpOnly`, `SameSite=Strict`, `Secure` over HTTPS), and its
//! forms carry the session's CSRF token.

pub mod api;
pub(crate) mod apps;
mod console;
pub(crate) mod flowlogs;
pub(crate) mod networks;
mod session;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;

use crate::domain::Controller;
use crate::server::{HEADER_TIMEOUT, ServeError};
use session::Sessions;

/// What every admin request needs.
struct Admin {
    ctl: Arc<Controller>,
    token: Arc<String>,
    sessions: Sessions,
    /// Served over TLS: cookies are marked `Secure`.
    https: bool,
}

/// Compares without leaking where the first difference is.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl Admin {
    fn bearer_ok(&self, req: &Request<Incoming>) -> bool {
        req.headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| token_matches(t.trim().as_bytes(), self.token.as_bytes()))
    }
}

async fn handle(
    admin: Arc<Admin>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if !req.uri().path().starts_with("/api/") {
        return Ok(console::handle(&admin, req).await);
    }
    // The console's pages read the API with their session cookie; only
    // reads: every change through the API needs the token itself.
    let by_session = req.method() == Method::GET && admin.sessions.of_request(&req).is_some();
    let answer = if admin.bearer_ok(&req) || by_session {
        api::dispatch(&admin.ctl, req).await
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token".to_owned(),
        ))
    };
    let (status, value) = match answer {
        Ok(ok) => ok,
        Err((status, msg)) => (status, json!({ "error": msg })),
    };
    let body = if status == StatusCode::NO_CONTENT {
        Bytes::new()
    } else {
        Bytes::from(value.to_string() + "\n")
    };
    Ok(Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("static response parts are valid"))
}

/// Serves the admin API and console over plain HTTP: for loopback only
/// (the `controller` binary refuses it elsewhere).
pub async fn serve_admin(
    ctl: Arc<Controller>,
    listener: tokio::net::TcpListener,
    token: Arc<String>,
) -> Result<(), ServeError> {
    serve(ctl, listener, token, None).await
}

/// Serves the admin API and console over TLS with `tls`.
pub async fn serve_admin_tls(
    ctl: Arc<Controller>,
    listener: tokio::net::TcpListener,
    token: Arc<String>,
    tls: Arc<rustls::ServerConfig>,
) -> Result<(), ServeError> {
    serve(ctl, listener, token, Some(tls)).await
}

async fn serve(
    ctl: Arc<Controller>,
    listener: tokio::net::TcpListener,
    token: Arc<String>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<(), ServeError> {
    let admin = Arc::new(Admin {
        ctl,
        token,
        sessions: Sessions::default(),
        https: tls.is_some(),
    });
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, _) = listener.accept().await.map_err(|source| ServeError::Io {
            addr: "admin".into(),
            source,
        })?;
        let admin = admin.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(admin.clone(), req));
            let http = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .clone();
            match acceptor {
                Some(acceptor) => {
                    let accepted = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(tcp),
                    )
                    .await;
                    if let Ok(Ok(stream)) = accepted {
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    }
                }
                None => {
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches(b"abc", b"abc"));
        assert!(!token_matches(b"abd", b"abc"));
        assert!(!token_matches(b"ab", b"abc"));
    }
}
