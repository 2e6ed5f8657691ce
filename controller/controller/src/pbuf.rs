//! Decode, encode and verify EVE API messages by name.
//!
//! Messages are handled reflectively through the descriptor set compiled into
//! `eve-proto`, so every message we define works without per-type code, and
//! JSON follows the protobuf JSON mapping (lowerCamelCase names, enum names,
//! 64-bit integers as strings, bytes as base64), matching what EVE's and
//! Adam's Go tooling print.

use std::sync::OnceLock;

use eve_proto::auth::AuthContainer;
use eve_proto::sign::{self, TrustedSigner};
use eve_proto::x509::CertError;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

/// The pool of all EVE message descriptors, parsed once.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(eve_proto::FILE_DESCRIPTOR_SET)
            .expect("descriptor set built by eve-proto is valid")
    })
}

/// Failure to name a message type.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No message has this full or short name.
    #[error("unknown message type `{0}` (try `evectl types`)")]
    Unknown(String),
    /// A short name matched several packages.
    #[error("message name `{name}` is ambiguous: {candidates}")]
    Ambiguous {
        /// The name given.
        name: String,
        /// Comma-separated full names that match.
        candidates: String,
    },
}

/// Resolves a full name (`org.lfedge.eve.config.EdgeDevConfig`) or a unique
/// short name (`EdgeDevConfig`).
pub fn message_type(name: &str) -> Result<MessageDescriptor, LookupError> {
    if let Some(m) = pool().get_message_by_name(name.trim_start_matches('.')) {
        return Ok(m);
    }
    let matches: Vec<_> = pool()
        .all_messages()
        .filter(|m| m.name() == name && m.package_name().starts_with("org.lfedge.eve"))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(LookupError::Unknown(name.to_owned())),
        many => Err(LookupError::Ambiguous {
            name: name.to_owned(),
            candidates: many
                .iter()
                .map(|m| m.full_name().to_owned())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Full names of all EVE messages, sorted.
pub fn message_types() -> Vec<String> {
    let mut names: Vec<_> = pool()
        .all_messages()
        .filter(|m| m.package_name().starts_with("org.lfedge.eve"))
        .map(|m| m.full_name().to_owned())
        .collect();
    names.sort();
    names
}

/// Failure of binary -> JSON.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Bad type name.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The bytes are not a valid message of that type.
    #[error("not a valid {type_name}: {source}")]
    Protobuf {
        /// The type decoded as.
        type_name: String,
        /// prost's reason.
        source: prost::DecodeError,
    },
    /// JSON rendering failed.
    #[error("JSON output failed: {0}")]
    Json(#[from] serde_json::Error),
}

/// Decodes `bytes` as `type_name` and renders pretty protobuf-JSON.
pub fn decode_to_json(type_name: &str, bytes: &[u8]) -> Result<String, DecodeError> {
    let desc = message_type(type_name)?;
    let msg =
        DynamicMessage::decode(desc.clone(), bytes).map_err(|source| DecodeError::Protobuf {
            type_name: desc.full_name().to_owned(),
            source,
        })?;
    to_json(&msg).map_err(DecodeError::from)
}

fn to_json(msg: &DynamicMessage) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::pretty(&mut out);
    msg.serialize_with_options(&mut ser, &SerializeOptions::new())?;
    out.push(b'\n');
    Ok(String::from_utf8(out).expect("serde_json writes UTF-8"))
}

/// Failure of JSON -> binary.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// Bad type name.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The JSON does not describe a message of that type.
    #[error("JSON is not a valid {type_name}: {source}, after `{near}`")]
    Json {
        /// The type parsed as.
        type_name: String,
        /// serde's reason.
        source: serde_json::Error,
        /// The text just before where parsing stopped: a description is
        /// turned into one line of JSON, so serde's line and column alone do
        /// not tell the operator which field is wrong.
        near: String,
    },
}

/// Parses protobuf-JSON as `type_name` and returns the binary encoding.
/// Fields come out in field-number order, but map entries are in no
/// particular order (prost-reflect holds maps in a `HashMap`).
pub fn encode_from_json(type_name: &str, json: &str) -> Result<Vec<u8>, EncodeError> {
    let desc = message_type(type_name)?;
    let mut de = serde_json::Deserializer::from_str(json);
    let msg = DynamicMessage::deserialize(desc.clone(), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|source| EncodeError::Json {
            type_name: desc.full_name().to_owned(),
            near: text_before(json, source.line(), source.column()),
            source,
        })?;
    Ok(msg.encode_to_vec())
}

/// At most the last 60 characters of `json` before (1-based) `line` and
/// byte `column`, as serde reports where it stopped.
fn text_before(json: &str, line: usize, column: usize) -> String {
    let text = json.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let mut end = column.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let skip = before.chars().count().saturating_sub(60);
    before.chars().skip(skip).collect()
}

/// Failure to verify or unwrap an envelope.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The input is not an AuthContainer.
    #[error("not a valid AuthContainer: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The signer certificate could not be used.
    #[error("signer certificate unusable: {0:?}")]
    Cert(CertError),
    /// No `--cert` given and the envelope embeds no sender certificate.
    #[error("no signer certificate: pass --cert, or the envelope must carry senderCert")]
    NoSigner,
    /// The envelope failed verification.
    #[error("envelope rejected: {0:?}")]
    Rejected(sign::VerifyError),
    /// The payload did not decode as the requested type.
    #[error(transparent)]
    Payload(#[from] DecodeError),
}

/// A verified envelope's content.
#[derive(Debug)]
pub struct Unwrapped {
    /// The signed payload bytes.
    pub payload: Vec<u8>,
    /// The payload rendered as JSON when a type was requested.
    pub json: Option<String>,
}

/// Verifies a serialized AuthContainer and unwraps its payload.
///
/// `cert_pem` is the signer's PEM certificate. Controller certificates are
/// fingerprinted over their PEM text and device certificates over their DER,
/// so both fingerprints are tried and the one the envelope names is used.
/// Without `cert_pem`, the certificate embedded in `senderCert` is used (the
/// onboarding case).
pub fn verify_envelope(
    bytes: &[u8],
    cert_pem: Option<&[u8]>,
    payload_type: Option<&str>,
) -> Result<Unwrapped, VerifyError> {
    let container = AuthContainer::decode(bytes)?;
    let signer = match cert_pem {
        Some(pem) => pick_signer(pem, &container)?,
        None if !container.sender_cert.is_empty() => {
            TrustedSigner::from_embedded_sender_cert(&container).map_err(VerifyError::Cert)?
        }
        None => return Err(VerifyError::NoSigner),
    };
    let payload = sign::verify_auth_container(&container, &signer)
        .map_err(VerifyError::Rejected)?
        .to_vec();
    let json = payload_type
        .map(|t| decode_to_json(t, &payload))
        .transpose()?;
    Ok(Unwrapped { payload, json })
}

fn pick_signer(pem: &[u8], container: &AuthContainer) -> Result<TrustedSigner, VerifyError> {
    let as_controller = TrustedSigner::from_controller_pem(pem).map_err(VerifyError::Cert)?;
    let cert = eve_proto::x509::parse_pem(pem).map_err(VerifyError::Cert)?;
    let der = eve_proto::x509::to_der(&cert).map_err(VerifyError::Cert)?;
    let as_device = TrustedSigner::from_device_der(&der).map_err(VerifyError::Cert)?;
    let named = |s: &TrustedSigner| {
        let h = &container.sender_cert_hash;
        !h.is_empty() && s.cert_hash().starts_with(h)
    };
    Ok(if named(&as_device) && !named(&as_controller) {
        as_device
    } else {
        as_controller
    })
}
