//! The listeners' TLS: TLS 1.2 and 1.3 with the certificate our root issued
//! for the server, on the `ring` provider.

use std::sync::Arc;

use crate::identity::Identity;
use crate::server::ServeError;

/// The crypto provider of every TLS end we make: the controller's
/// listeners, and the harness's and xtask's clients of them.
///
/// rustls 0.23.48 deprecates ring's provider for lacking post-quantum key
/// exchange; ring keeps the build free of aws-lc's C toolchain, and the
/// peers here (EVE's API, loopback tests) use classical groups.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS server configuration for the device API (and the admin API).
pub fn tls_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, ServeError> {
    let tls = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let certs = rustls_pemfile::certs(&mut identity.server_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls(&e))?;
    let key = rustls_pemfile::private_key(&mut identity.server_key_pem.as_bytes())
        .map_err(|e| tls(&e))?
        .ok_or_else(|| ServeError::Tls("no private key in server-key.pem".into()))?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls(&e))?;
    Ok(Arc::new(cfg))
}
