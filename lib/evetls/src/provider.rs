//! Our `embedded_tls::CryptoProvider`: the caller's RNG, our verifier, and
//! the optional client identity.
//!
//! embedded-tls calls the verifier for the Certificate and CertificateVerify
//! messages when they arrive, but it does not insist that they arrive: a
//! server that skips them reaches Finished unchallenged, and a provider that
//! returns no verifier skips verification silently. So the verifier here
//! tracks the handshake itself, the client identity is released only to a
//! server that has proven its key, and [`Provider::outcome`] must be
//! checked after the handshake ([`crate::connect`] does).

use alloc::boxed::Box;
use alloc::vec::Vec;

use embedded_tls::alert::{AlertDescription, AlertLevel};
use embedded_tls::blocking::{
    Certificate, CertificateEntryRef, CertificateRef, CertificateVerifyRef, CryptoProvider,
    TlsVerifier,
};
use embedded_tls::{CryptoRngCore, SignatureScheme};
use p256::ecdsa::DerSignature;
use p256::ecdsa::signature::SignerMut;
use sha2::{Digest, Sha256};

use crate::CipherSuite;
use crate::config::{ClientConfig, ServerName};
use crate::error::{CertError, TlsError};
use crate::verify::{ServerKey, verify_server_chain};

/// RFC 8446 4.4.3: what the server's CertificateVerify signs, before the
/// transcript hash: 64 spaces, this context string and a zero byte.
const SERVER_CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify\x00";

/// Where the server is in proving who it is.
enum Stage {
    AwaitCertificate,
    /// The chain is trusted; its key must now sign the transcript.
    AwaitCertificateVerify(Box<Pending>),
    Authenticated,
    Failed,
}

/// A trusted server key and the transcript hash up to and including the
/// Certificate message, which the key must sign.
struct Pending {
    transcript: Sha256,
    key: ServerKey,
}

/// The verifier embedded-tls drives; see the module documentation.
pub(crate) struct ServerVerifier<'c> {
    config: &'c ClientConfig,
    stage: Stage,
    failure: Option<TlsError>,
}

impl ServerVerifier<'_> {
    /// Records why the handshake is refused and tells embedded-tls to send
    /// `alert` and stop.
    fn refuse(&mut self, error: TlsError, alert: AlertDescription) -> embedded_tls::TlsError {
        log::warn!("TLS: refusing server: {error}");
        self.stage = Stage::Failed;
        self.failure.get_or_insert(error);
        embedded_tls::TlsError::AbortHandshake(AlertLevel::Fatal, alert)
    }

    fn unexpected(&mut self) -> embedded_tls::TlsError {
        self.refuse(
            TlsError::Protocol(embedded_tls::TlsError::InvalidHandshake),
            AlertDescription::UnexpectedMessage,
        )
    }

    fn is_authenticated(&self) -> bool {
        matches!(self.stage, Stage::Authenticated)
    }
}

impl TlsVerifier<CipherSuite> for ServerVerifier<'_> {
    /// embedded-tls passes the SNI name here; the name we check is the
    /// configured one (which also covers IP literals, sent without SNI), so
    /// this only guards against a provider paired with another config.
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), embedded_tls::TlsError> {
        match ServerName::parse(hostname) {
            Ok(name) if name == *self.config.server_name() => Ok(()),
            _ => Err(self.refuse(
                TlsError::Certificate(CertError::WrongHostname),
                AlertDescription::InternalError,
            )),
        }
    }

    fn verify_certificate(
        &mut self,
        transcript: &Sha256,
        cert: CertificateRef,
    ) -> Result<(), embedded_tls::TlsError> {
        if !matches!(self.stage, Stage::AwaitCertificate) {
            return Err(self.unexpected());
        }
        let mut chain = Vec::with_capacity(cert.entries.len());
        for entry in &cert.entries {
            match entry {
                CertificateEntryRef::X509(der) => chain.push(*der),
                CertificateEntryRef::RawPublicKey(_) => {
                    let error = CertError::UnsupportedAlgorithm;
                    return Err(self.refuse(error.into(), error.alert()));
                }
            }
        }
        let config = self.config;
        let verified = verify_server_chain(
            config.roots(),
            &chain,
            config.server_name(),
            config.clock().now(),
        );
        match verified {
            Ok(key) => {
                self.stage = Stage::AwaitCertificateVerify(Box::new(Pending {
                    transcript: transcript.clone(),
                    key,
                }));
                Ok(())
            }
            Err(error) => Err(self.refuse(error.into(), error.alert())),
        }
    }

    fn verify_signature(
        &mut self,
        verify: CertificateVerifyRef,
    ) -> Result<(), embedded_tls::TlsError> {
        let Stage::AwaitCertificateVerify(pending) =
            core::mem::replace(&mut self.stage, Stage::Failed)
        else {
            return Err(self.unexpected());
        };
        let Pending { transcript, key } = *pending;
        let mut message = [0x20u8; 64 + SERVER_CONTEXT.len() + 32];
        message[64..64 + SERVER_CONTEXT.len()].copy_from_slice(SERVER_CONTEXT);
        message[64 + SERVER_CONTEXT.len()..].copy_from_slice(&transcript.finalize());
        match key.verify_handshake_signature(verify.signature_scheme, &message, verify.signature) {
            Ok(()) => {
                self.stage = Stage::Authenticated;
                Ok(())
            }
            Err(error) => {
                let alert = match error {
                    TlsError::UnsupportedSignatureScheme => AlertDescription::IllegalParameter,
                    _ => AlertDescription::DecryptError,
                };
                Err(self.refuse(error, alert))
            }
        }
    }
}

/// The crypto provider for one handshake.
///
/// Use it through [`crate::connect`], or hand `&mut provider` to an
/// embedded-tls `TlsContext` yourself (e.g. for the async API) and call
/// [`Provider::outcome`] after `open`, whatever it returned.
pub struct Provider<'c, R> {
    rng: R,
    verifier: ServerVerifier<'c>,
}

impl<'c, R: CryptoRngCore> Provider<'c, R> {
    /// A provider for a handshake under `config`, drawing key shares and
    /// the client random from `rng`, which must come from a real entropy
    /// source.
    pub fn new(config: &'c ClientConfig, rng: R) -> Self {
        Self {
            rng,
            verifier: ServerVerifier {
                config,
                stage: Stage::AwaitCertificate,
                failure: None,
            },
        }
    }

    /// Why the handshake failed, if our side refused it.
    pub fn failure(&self) -> Option<TlsError> {
        self.verifier.failure
    }

    /// Whether the server is authenticated: its chain verified and its key
    /// signed the handshake. Call after embedded-tls's `open` returns `Ok`;
    /// an `Err` here means the connection must not be used.
    pub fn outcome(&self) -> Result<(), TlsError> {
        if let Some(failure) = self.verifier.failure {
            return Err(failure);
        }
        if self.verifier.is_authenticated() {
            Ok(())
        } else {
            Err(TlsError::ServerNotAuthenticated)
        }
    }
}

impl<R: CryptoRngCore> CryptoProvider for Provider<'_, R> {
    type CipherSuite = CipherSuite;
    type Signature = DerSignature;

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut self.rng
    }

    fn verifier(
        &mut self,
    ) -> Result<&mut impl TlsVerifier<Self::CipherSuite>, embedded_tls::TlsError> {
        Ok(&mut self.verifier)
    }

    /// Signs the client CertificateVerify, only for an authenticated server.
    fn signer(
        &mut self,
    ) -> Result<(impl SignerMut<Self::Signature>, SignatureScheme), embedded_tls::TlsError> {
        if !self.verifier.is_authenticated() {
            return Err(self.verifier.refuse(
                TlsError::ServerNotAuthenticated,
                AlertDescription::UnexpectedMessage,
            ));
        }
        let identity = self
            .verifier
            .config
            .client_identity()
            .ok_or(embedded_tls::TlsError::InvalidPrivateKey)?;
        Ok((
            identity.key().clone(),
            SignatureScheme::EcdsaSecp256r1Sha256,
        ))
    }

    /// The client certificate, only for an authenticated server: a server
    /// that skipped CertificateVerify gets an empty Certificate message and
    /// the handshake is then refused by [`Provider::outcome`].
    fn client_cert(&mut self) -> Option<Certificate<impl AsRef<[u8]>>> {
        if !self.verifier.is_authenticated() {
            self.verifier
                .failure
                .get_or_insert(TlsError::ServerNotAuthenticated);
            return None;
        }
        self.verifier
            .config
            .client_identity()
            .map(|identity| Certificate::X509(identity.cert_der()))
    }
}
