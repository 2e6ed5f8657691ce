//! A keep-alive HTTP/1.1 client of the controller: TLS for the device API,
//! plain with a bearer token for the admin API. It shares no code with the
//! server's request handling.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use rustls::pki_types::ServerName;

/// The protobuf media type of EVE's device API.
pub const MIME_PROTO: &str = "application/x-proto-binary";

/// Why a request could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// Address.
        addr: SocketAddr,
        /// Error.
        source: std::io::Error,
    },
    /// The root certificate or TLS setup is unusable.
    #[error("TLS: {0}")]
    Tls(String),
    /// The HTTP exchange failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
}

/// A single keep-alive connection, reopened when the server closes it.
pub struct Client {
    addr: SocketAddr,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    token: Option<String>,
    /// Bodies are EVE protobuf (the device API) rather than JSON.
    proto: bool,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// A TLS connector trusting only the certificates in `root_pem`.
fn connector(
    root_pem: &str,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<tokio_rustls::TlsConnector, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut root_pem.as_bytes()) {
        let cert = cert.map_err(|e| ClientError::Tls(e.to_string()))?;
        roots
            .add(cert)
            .map_err(|e| ClientError::Tls(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Tls("no certificate in the root file".into()));
    }
    let versions = if versions.is_empty() {
        &[&rustls::version::TLS13, &rustls::version::TLS12][..]
    } else {
        versions
    };
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key
    // exchange; ring keeps the build free of aws-lc's C toolchain, and the
    // peers here (EVE's API, loopback tests) use classical groups.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .map_err(|e| ClientError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

impl Client {
    /// A TLS client trusting only `root_pem`, for the device API.
    /// `versions` pins TLS versions (empty: 1.2 and 1.3).
    pub fn tls(
        addr: SocketAddr,
        root_pem: &str,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Result<Self, ClientError> {
        Ok(Self {
            addr,
            tls: Some((
                connector(root_pem, versions)?,
                ServerName::IpAddress(addr.ip().into()),
            )),
            token: None,
            proto: true,
            sender: None,
        })
    }

    /// A plain-HTTP client sending `Authorization: Bearer token`, for an
    /// admin API served on loopback without TLS.
    pub fn admin(addr: SocketAddr, token: &str) -> Self {
        Self {
            addr,
            tls: None,
            token: Some(token.to_owned()),
            proto: false,
            sender: None,
        }
    }

    /// An HTTPS client of the admin API: the controller's certificate is
    /// checked against `root_pem`, requests carry `Authorization: Bearer`.
    pub fn admin_tls(addr: SocketAddr, root_pem: &str, token: &str) -> Result<Self, ClientError> {
        Ok(Self {
            token: Some(token.to_owned()),
            proto: false,
            ..Self::tls(addr, root_pem, &[])?
        })
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: self.addr,
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let sender = match &self.tls {
            Some((connector, name)) => {
                let stream = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await?;
                tokio::spawn(conn);
                sender
            }
            None => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                        .await?;
                tokio::spawn(conn);
                sender
            }
        };
        Ok(sender)
    }

    /// Sends one request and returns status and body. Device API bodies
    /// are sent as `application/x-proto-binary`, admin ones as they are.
    pub async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let mut sender = match self.sender.take() {
            Some(s) if !s.is_closed() => s,
            _ => self.connect().await?,
        };
        sender.ready().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string());
        if self.proto {
            req = req.header(CONTENT_TYPE, MIME_PROTO);
        }
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Full::new(body)).expect("request parts are valid");
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        self.sender = Some(sender);
        Ok((status, body))
    }
}
