//! Attestation with the TPM, in EVE's order: the attestation key's
//! certificate (`ATTEST_REQ_CERT`), a nonce (`ATTEST_REQ_NONCE`), a quote of
//! PCRs 0-15 of the SHA-256 bank over that nonce, made by the host's TPM
//! with the attestation key, and the quote with the PCR values
//! (`ATTEST_REQ_QUOTE`), which the controller answers with the integrity
//! token. A device without a TPM keeps the no-TPM request (see
//! `onboarding`).
//!
//! The controller trusts a quote only as far as it trusts the key that
//! signed it, so the attestation key's certificate is issued by the device
//! certificate and signed with the device key: the key the controller
//! already knows this device by vouches for the quoting key.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use eve_proto::attest::{
    TpmHashAlgo, TpmPcrValue, ZAttestQuote, ZAttestReq, ZAttestReqType, ZAttestResponse,
    ZAttestResponseCode,
};
use eve_proto::certs::{ZCert, ZCertAttr, ZCertType};
use eve_proto::common::HashAlgorithm;
use eve_proto::p256::PublicKey;
use eve_proto::sha256;
use eve_proto::x509;

use crate::logs::Level;

use super::Agent;
use super::keycert::KeyCertKind;

/// The attestation key's certificate on the state volume, kept across
/// boots so the controller sees the same certificate every time.
pub const REC_ATTEST_CERT: &str = "attest-cert.pem";
/// The attestation certificate's lifetime: the key's, as the ECDH one.
const ATTEST_CERT_LIFETIME_S: u64 = 20 * 365 * 24 * 3600;

/// The attestation key's certificate.
const ATTEST_CERT: KeyCertKind = KeyCertKind {
    record: REC_ATTEST_CERT,
    name_suffix: "attest",
    lifetime_s: ATTEST_CERT_LIFETIME_S,
    issue: x509::generate_attestation_cert,
};

/// EVE's PCR selection for quotes: PCRs 0 to 15.
pub const QUOTED_PCRS: core::ops::Range<u32> = 0..16;

/// A quote the host's TPM made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TpmQuote {
    /// The marshalled `TPMS_ATTEST` the TPM signed.
    pub attest: Vec<u8>,
    /// The attestation key's ECDSA signature over `attest`, `r || s`.
    pub signature: Vec<u8>,
    /// `(index, SHA-256 value)` of each quoted PCR, lowest first.
    pub pcrs: Vec<(u32, Vec<u8>)>,
    /// The firmware's binary event log, empty when the host has none.
    pub event_log: Vec<u8>,
}

/// The TPM's quoting, as the node provides it (the host's `quote`
/// operation): a trait, so the state machine stays free of the bus and
/// tests can quote with a software key.
pub trait Quoter {
    /// Quotes [`QUOTED_PCRS`] of the SHA-256 bank with the attestation key
    /// over `nonce`; why not, as text for `attestation_info`.
    fn quote(&self, nonce: &[u8]) -> Result<TpmQuote, String>;
}

/// Which attestation request is in flight, so its answer is read as one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum AttestSent {
    /// None is.
    #[default]
    Nothing,
    /// A quote request: without PCRs (no TPM) or with the TPM's quote.
    Quote,
    /// The ECDH key's certificate.
    EcdhCert,
    /// The attestation key's certificate.
    AttestCert,
    /// A nonce request.
    Nonce,
}

/// The TPM path's progress within one attestation round.
pub(super) struct TpmAttest {
    pub(super) quoter: Box<dyn Quoter>,
    /// The attestation key's certificate (PEM) and whether the controller
    /// has yet to take it in this run.
    pub(super) cert: Vec<u8>,
    pub(super) cert_pending: bool,
    /// The nonce the controller gave, until quoted.
    pub(super) nonce: Option<Vec<u8>>,
    /// The quote made over it, until sent.
    pub(super) quote: Option<ZAttestQuote>,
}

impl Agent {
    /// Attests with the TPM from now on: `quoter` quotes with the
    /// attestation key whose public half is `public`. The key's
    /// certificate is loaded from the state volume when it still certifies
    /// `public` under the device key, or made; it is given to the
    /// controller before the first nonce of each run.
    pub fn use_attestation_key(&mut self, quoter: Box<dyn Quoter>, public: &PublicKey) {
        let Some(cert) = self.kept_or_new_key_cert(&ATTEST_CERT, public) else {
            let why = String::from("cannot make the attestation key's certificate");
            self.note(Level::Error, why.clone());
            self.attest_failed(why);
            return;
        };
        self.tpm_attest = Some(TpmAttest {
            quoter,
            cert,
            cert_pending: true,
            nonce: None,
            quote: None,
        });
    }

    /// The next attestation request of the TPM path, in EVE's order, and
    /// what it is; `None` without a TPM.
    pub(super) fn tpm_attest_request(&mut self) -> Option<(ZAttestReq, AttestSent)> {
        let tpm = self.tpm_attest.as_mut()?;
        if tpm.cert_pending {
            let cert = ZCert {
                hash_algo: HashAlgorithm::Sha25632bytes as i32,
                cert_hash: sha256(&tpm.cert).to_vec(),
                r#type: ZCertType::CertTypeDeviceRestrictedSigning as i32,
                cert: tpm.cert.clone(),
                attributes: Some(ZCertAttr {
                    is_mutable: false,
                    is_tpm: true,
                }),
                ..Default::default()
            };
            let req = ZAttestReq {
                req_type: ZAttestReqType::AttestReqCert as i32,
                certs: alloc::vec![cert],
                ..Default::default()
            };
            return Some((req, AttestSent::AttestCert));
        }
        // A quote is sent once: its nonce is spent whatever the answer.
        if let Some(quote) = tpm.quote.take() {
            let req = ZAttestReq {
                req_type: ZAttestReqType::AttestReqQuote as i32,
                quote: Some(quote),
                ..Default::default()
            };
            return Some((req, AttestSent::Quote));
        }
        tpm.nonce = None;
        let req = ZAttestReq {
            req_type: ZAttestReqType::AttestReqNonce as i32,
            ..Default::default()
        };
        Some((req, AttestSent::Nonce))
    }

    /// The controller answered the attestation certificate: taken, the
    /// nonce is asked for at once; refused, the round backs off.
    pub(super) fn on_attest_cert(&mut self, taken: bool) {
        let Some(tpm) = self.tpm_attest.as_mut() else {
            return;
        };
        if taken {
            tpm.cert_pending = false;
            self.retry_ms = self.now();
        } else {
            let why = String::from("attest: the controller refused the attestation certificate");
            self.note(Level::Warning, why.clone());
            self.attest_failed(why);
            self.retry_later();
        }
    }

    /// The controller's nonce: quoted at once by the TPM, and the quote
    /// sent next.
    pub(super) fn on_attest_nonce(&mut self, resp: Option<ZAttestResponse>) {
        let Some(tpm) = self.tpm_attest.as_mut() else {
            return;
        };
        let nonce = resp
            .and_then(|r| r.nonce)
            .map(|n| n.nonce)
            .filter(|n| !n.is_empty());
        let Some(nonce) = nonce else {
            self.attest_failed(String::from("attest: the controller gave no nonce"));
            return self.retry_later();
        };
        tpm.nonce = Some(nonce.clone());
        match tpm.quoter.quote(&nonce) {
            Ok(q) => {
                tpm.quote = Some(ZAttestQuote {
                    attest_data: q.attest,
                    signature: q.signature,
                    pcr_values: q
                        .pcrs
                        .into_iter()
                        .map(|(index, value)| TpmPcrValue {
                            index,
                            hash_algo: TpmHashAlgo::Sha256 as i32,
                            value,
                        })
                        .collect(),
                    tpm_binary_event_log: q.event_log,
                    ..Default::default()
                });
                tpm.nonce = None;
                self.retry_ms = self.now();
            }
            Err(e) => {
                tpm.nonce = None;
                self.attest_failed(format!("attest: the TPM did not quote: {e}"));
                self.retry_later();
            }
        }
    }

    /// A quote was refused (or answered without a token): the next round
    /// starts over with the certificate, in case the controller lost it.
    pub(super) fn tpm_quote_refused(&mut self, code: Option<ZAttestResponseCode>) -> String {
        if let Some(tpm) = self.tpm_attest.as_mut() {
            tpm.cert_pending = true;
        }
        match code {
            Some(ZAttestResponseCode::Success) | None => {
                String::from("attest: the controller issued no integrity token")
            }
            Some(c) => format!(
                "attest: the controller refused the quote ({})",
                c.as_str_name()
            ),
        }
    }
}
