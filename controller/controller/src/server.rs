//! Running the controller in a process: the serve loops (accept, TLS,
//! HTTP/1.1 with hyper) and the periodic housekeeping, plus what an
//! embedder needs with them (the controller, its limits, the TLS set-up).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;

pub use crate::domain::{Controller, ControllerError, Limits, config_hash};
pub use crate::tls::tls_config;

/// A client must send its headers within this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// A client must complete its TLS handshake within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a listener stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding or accepting failed.
    #[error("{addr}: {source}")]
    Io {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("TLS setup: {0}")]
    Tls(String),
}

/// Serves the device API on `listener` until the task is dropped.
pub async fn serve_devices(
    ctl: Arc<Controller>,
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
) -> Result<(), ServeError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".into(), |a: SocketAddr| a.to_string());
    loop {
        let (tcp, _) = listener.accept().await.map_err(|source| ServeError::Io {
            addr: addr.clone(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ctl = ctl.clone();
        tokio::spawn(async move {
            let Ok(Ok(stream)) =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                ctl.count("tls-handshake", StatusCode::BAD_REQUEST);
                return;
            };
            let service = hyper::service::service_fn(move |req| ctl.clone().handle_device(req));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Periodic housekeeping: last-seen flush every second, retention every
/// minute, each on a blocking thread since both write to the store.
pub async fn housekeeping(ctl: Arc<Controller>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        let prune = n.is_multiple_of(60);
        n += 1;
        let ctl = ctl.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = ctl.flush_last_seen() {
                eprintln!("controller: recording last-seen times: {e}");
            }
            if prune && let Err(e) = ctl.prune() {
                eprintln!("controller: retention: {e}");
            }
        })
        .await;
    }
}
