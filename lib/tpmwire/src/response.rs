//! What the host answers.

use alloc::vec::Vec;

use crate::{
    Cursor, Op, PUBLIC_KEY_LEN, PcrValues, SIGNATURE_LEN, WIRE_VERSION, WireError, Writer,
};

/// Longest `TPMS_ATTEST` carried; a quote over 24 PCRs with a 64-byte nonce
/// and a SHA-512 name is well under this.
pub const MAX_ATTEST_LEN: usize = 1024;

const KIND_FAILURE: u8 = 0;
const KIND_PUBLIC_KEY: u8 = 1;
const KIND_SIGNATURE: u8 = 2;
const KIND_PCRS: u8 = 3;
const KIND_QUOTE: u8 = 4;
const KIND_EK_CERT: u8 = 5;

/// Why the host did not carry out a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// The node's manifest does not grant this service the operation.
    Denied,
    /// The key or certificate asked for does not exist yet (the device key
    /// before `CreateDeviceKey`, or a TPM without an EK certificate).
    NotProvisioned,
    /// The request is not a valid encoding.
    BadRequest,
    /// The TPM refused the command with this response code (`TPM_RC`).
    Tpm(u32),
    /// The TPM could not be reached.
    Unavailable,
    /// The TPM answered bytes the host could not make sense of.
    TpmMalformed,
    /// A key with different attributes occupies the key's persistent
    /// handle; the host leaves it alone rather than replace an identity.
    KeyMismatch,
}

impl Failure {
    const fn code(self) -> u8 {
        match self {
            Failure::Denied => 1,
            Failure::NotProvisioned => 2,
            Failure::BadRequest => 3,
            Failure::Tpm(_) => 4,
            Failure::Unavailable => 5,
            Failure::TpmMalformed => 6,
            Failure::KeyMismatch => 7,
        }
    }

    const fn detail(self) -> u32 {
        match self {
            Failure::Tpm(rc) => rc,
            _ => 0,
        }
    }

    fn from_wire(code: u8, detail: u32) -> Result<Self, WireError> {
        let failure = match code {
            1 => Failure::Denied,
            2 => Failure::NotProvisioned,
            3 => Failure::BadRequest,
            4 => Failure::Tpm(detail),
            5 => Failure::Unavailable,
            6 => Failure::TpmMalformed,
            7 => Failure::KeyMismatch,
            _ => return Err(WireError::BadFailure),
        };
        if failure.detail() != detail {
            return Err(WireError::BadFailure);
        }
        Ok(failure)
    }
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Denied => f.write_str("TPM operation not granted to this service"),
            Failure::NotProvisioned => f.write_str("TPM key or certificate not provisioned"),
            Failure::BadRequest => f.write_str("malformed TPM request"),
            Failure::Tpm(rc) => write!(f, "TPM error {rc:#x}"),
            Failure::Unavailable => f.write_str("TPM unavailable"),
            Failure::TpmMalformed => f.write_str("TPM answered a malformed response"),
            Failure::KeyMismatch => f.write_str("another key occupies the key's handle"),
        }
    }
}

impl core::error::Error for Failure {}

/// A checked view of a response: the constructor checks the version, the
/// kind and every length, so the accessors cannot fail.
#[derive(Debug, Clone)]
pub struct Response<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Response<T> {
    /// Wraps `buffer` after checking its framing.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let mut c = Cursor::new(buffer.as_ref());
        let version = c.u8()?;
        if version != WIRE_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        match c.u8()? {
            KIND_FAILURE => {
                c.take(5)?;
            }
            KIND_PUBLIC_KEY => {
                c.take(PUBLIC_KEY_LEN)?;
            }
            KIND_SIGNATURE => {
                c.take(SIGNATURE_LEN)?;
            }
            KIND_PCRS => {
                PcrValues::read(&mut c)?;
            }
            KIND_QUOTE => {
                let len = usize::from(c.u16()?);
                if len == 0 || len > MAX_ATTEST_LEN {
                    return Err(WireError::BadLength);
                }
                c.take(len + SIGNATURE_LEN + PUBLIC_KEY_LEN)?;
                PcrValues::read(&mut c)?;
            }
            KIND_EK_CERT => {
                let len = usize::from(c.u16()?);
                if len == 0 {
                    return Err(WireError::BadLength);
                }
                c.take(len)?;
            }
            other => return Err(WireError::UnknownKind(other)),
        }
        c.finish()?;
        Ok(Response { buffer })
    }

    /// The response kind byte.
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    /// Whether this is a failure rather than an answer.
    pub fn is_failure(&self) -> bool {
        self.kind() == KIND_FAILURE
    }
}

/// A parsed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseRepr<'a> {
    /// The request was not carried out.
    Failure(Failure),
    /// A P-256 public key as a SEC1 uncompressed point (`0x04 || x || y`).
    PublicKey(&'a [u8; PUBLIC_KEY_LEN]),
    /// An ECDSA P-256 signature as raw `r || s`, the form EVE's
    /// `AuthContainer` carries.
    Signature(&'a [u8; SIGNATURE_LEN]),
    /// PCR values.
    Pcrs(PcrValues<'a>),
    /// A PCR quote.
    Quote {
        /// The marshalled `TPMS_ATTEST` the TPM signed (EVE's `attestData`).
        attest: &'a [u8],
        /// ECDSA P-256 over SHA-256 of `attest`, raw `r || s`.
        signature: &'a [u8; SIGNATURE_LEN],
        /// The attestation key's public point (SEC1 uncompressed).
        attestation_key: &'a [u8; PUBLIC_KEY_LEN],
        /// The quoted PCRs' values, read right after the quote, for the
        /// verifier to recompute the quoted digest.
        pcrs: PcrValues<'a>,
    },
    /// The endorsement key certificate, DER.
    EkCert(&'a [u8]),
}

fn point(bytes: &[u8]) -> Result<&[u8; PUBLIC_KEY_LEN], WireError> {
    let point: &[u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| WireError::Truncated)?;
    if point[0] != 0x04 {
        return Err(WireError::BadPublicKey);
    }
    Ok(point)
}

fn signature(bytes: &[u8]) -> Result<&[u8; SIGNATURE_LEN], WireError> {
    bytes.try_into().map_err(|_| WireError::Truncated)
}

impl<'a> ResponseRepr<'a> {
    /// Parses a checked response.
    pub fn parse(response: &Response<&'a [u8]>) -> Result<Self, WireError> {
        let mut c = Cursor::new(response.buffer);
        c.take(1)?;
        let repr = match c.u8()? {
            KIND_FAILURE => {
                let code = c.u8()?;
                ResponseRepr::Failure(Failure::from_wire(code, c.u32()?)?)
            }
            KIND_PUBLIC_KEY => ResponseRepr::PublicKey(point(c.take(PUBLIC_KEY_LEN)?)?),
            KIND_SIGNATURE => ResponseRepr::Signature(signature(c.take(SIGNATURE_LEN)?)?),
            KIND_PCRS => ResponseRepr::Pcrs(PcrValues::read(&mut c)?),
            KIND_QUOTE => {
                let len = usize::from(c.u16()?);
                ResponseRepr::Quote {
                    attest: c.take(len)?,
                    signature: signature(c.take(SIGNATURE_LEN)?)?,
                    attestation_key: point(c.take(PUBLIC_KEY_LEN)?)?,
                    pcrs: PcrValues::read(&mut c)?,
                }
            }
            KIND_EK_CERT => {
                let len = usize::from(c.u16()?);
                ResponseRepr::EkCert(c.take(len)?)
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        c.finish()?;
        Ok(repr)
    }

    /// Checks and parses raw bytes in one step.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, WireError> {
        Self::parse(&Response::new_checked(bytes)?)
    }

    /// Whether this response is a possible answer to `op`: the right kind
    /// of answer, or a failure. A client uses it to refuse a mixed-up reply.
    pub fn answers(&self, op: Op) -> bool {
        matches!(
            (self, op),
            (ResponseRepr::Failure(_), _)
                | (
                    ResponseRepr::PublicKey(_),
                    Op::CreateDeviceKey | Op::DevicePublicKey
                )
                | (ResponseRepr::Signature(_), Op::SignDigest)
                | (ResponseRepr::Pcrs(_), Op::ReadPcrs)
                | (ResponseRepr::Quote { .. }, Op::Quote)
                | (ResponseRepr::EkCert(_), Op::ReadEkCert)
        )
    }

    /// Length of the encoded response.
    pub fn buffer_len(&self) -> usize {
        2 + match self {
            ResponseRepr::Failure(_) => 5,
            ResponseRepr::PublicKey(_) => PUBLIC_KEY_LEN,
            ResponseRepr::Signature(_) => SIGNATURE_LEN,
            ResponseRepr::Pcrs(values) => values.wire_len(),
            ResponseRepr::Quote { attest, pcrs, .. } => {
                2 + attest.len() + SIGNATURE_LEN + PUBLIC_KEY_LEN + pcrs.wire_len()
            }
            ResponseRepr::EkCert(der) => 2 + der.len(),
        }
    }

    /// Encodes the response into the front of `buf`, returning its length.
    /// An empty or oversized attestation or certificate, or a public key
    /// that is not an uncompressed point, is refused: the peer would refuse
    /// it too.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        match self {
            ResponseRepr::PublicKey(key) if key[0] != 0x04 => {
                return Err(WireError::BadPublicKey);
            }
            ResponseRepr::Quote {
                attest,
                attestation_key,
                ..
            } => {
                if attest.is_empty() || attest.len() > MAX_ATTEST_LEN {
                    return Err(WireError::BadLength);
                }
                if attestation_key[0] != 0x04 {
                    return Err(WireError::BadPublicKey);
                }
            }
            ResponseRepr::EkCert(der) if der.is_empty() || der.len() > usize::from(u16::MAX) => {
                return Err(WireError::BadLength);
            }
            _ => {}
        }
        let mut w = Writer::new(buf, self.buffer_len())?;
        w.u8(WIRE_VERSION);
        match self {
            ResponseRepr::Failure(failure) => {
                w.u8(KIND_FAILURE);
                w.u8(failure.code());
                w.u32(failure.detail());
            }
            ResponseRepr::PublicKey(key) => {
                w.u8(KIND_PUBLIC_KEY);
                w.bytes(&key[..]);
            }
            ResponseRepr::Signature(sig) => {
                w.u8(KIND_SIGNATURE);
                w.bytes(&sig[..]);
            }
            ResponseRepr::Pcrs(values) => {
                w.u8(KIND_PCRS);
                values.write(&mut w);
            }
            ResponseRepr::Quote {
                attest,
                signature,
                attestation_key,
                pcrs,
            } => {
                w.u8(KIND_QUOTE);
                // At most MAX_ATTEST_LEN, checked above.
                w.u16(attest.len() as u16);
                w.bytes(attest);
                w.bytes(&signature[..]);
                w.bytes(&attestation_key[..]);
                pcrs.write(&mut w);
            }
            ResponseRepr::EkCert(der) => {
                w.u8(KIND_EK_CERT);
                // At most u16::MAX, checked above.
                w.u16(der.len() as u16);
                w.bytes(der);
            }
        }
        Ok(w.written())
    }

    /// Encodes the response into a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, WireError> {
        let mut buf = alloc::vec![0; self.buffer_len()];
        let len = self.emit(&mut buf)?;
        buf.truncate(len);
        Ok(buf)
    }
}
