//! The node's TPM, which the host owns: no service talks to it directly.
//!
//! No operation returns private key material: the device key, the
//! attestation key and the ECDH key are created inside the TPM as
//! non-exportable keys and only their public points, signatures, quotes,
//! shared points and the endorsement certificate ever leave it; no message
//! here has a field that could carry a private key.
//!
//! The messages carry raw bytes with fixed lengths (a 32-byte digest, a
//! 65-byte point, a 64-byte signature); the accessors check them, so the
//! host refuses a malformed request as a bad request and a service
//! refuses a malformed answer, and neither panics.

use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

crate::target! {
    /// The node's TPM (swtpm in development, `/dev/tpmrm0` on a board).
    pub struct Tpm = "tpm", version 1, error TpmError;
    /// Creates the device key (EVE's handle `0x817FFFFF`, ECDSA P-256)
    /// unless it exists, and answers its public key. A real TPM can take
    /// seconds.
    CreateDeviceKey = "create-device-key": Empty => PublicKey, timeout Duration::from_secs(30);
    /// The device key's public key; `NotProvisioned` before it is created.
    DevicePublicKey = "device-public-key": Empty => PublicKey;
    /// Signs a SHA-256 digest with the device key.
    Sign = "sign": SignRequest => Signature;
    /// Reads PCR values.
    ReadPcrs = "read-pcrs": PcrSelect => Pcrs;
    /// Quotes PCRs with the attestation key (EVE's `0x81000004`) over the
    /// controller's nonce, creating the key when it is missing.
    Quote = "quote": QuoteRequest => QuoteResponse, timeout Duration::from_secs(30);
    /// The endorsement key certificate, DER.
    ReadEkCert = "read-ek-cert": Empty => EkCert;
    /// Creates the ECDH key (EVE's handle `0x81000005`: decrypt, scheme
    /// ECDH) unless it exists, and answers its public key.
    CreateEcdhKey = "create-ecdh-key": Empty => PublicKey, timeout Duration::from_secs(30);
    /// The point the ECDH key shares with a peer's public key (EVE's
    /// `TPM2_ECDH_ZGen`): how the device opens secrets the controller
    /// sealed for it, without the private key leaving the TPM.
    Ecdh = "ecdh": PublicKey => SharedPoint;
    /// Creates the attestation key (the restricted signing key `quote`
    /// uses, EVE's `0x81000004`) unless it exists, and answers its public
    /// key: the device certifies it with the device key before its first
    /// quote, so the controller can trust quotes from it.
    CreateAttestationKey = "create-attestation-key": Empty => PublicKey, timeout Duration::from_secs(30);
}

/// Length of a SHA-256 digest, the only digest signed.
pub const DIGEST_LEN: usize = 32;
/// Length of an ECDSA P-256 signature as raw `r || s`, the form EVE's
/// `AuthContainer` carries.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a SEC1 uncompressed P-256 point (`0x04 || x || y`).
pub const PUBLIC_KEY_LEN: usize = 65;
/// Length of a shared point as `x || y`.
pub const SHARED_POINT_LEN: usize = 64;
/// Longest quote nonce: the largest `TPM2B_DATA` a TPM with SHA-512
/// takes; EVE's controller hands out 32 bytes.
pub const MAX_NONCE_LEN: usize = 64;
/// Longest `TPMS_ATTEST` carried; a quote over 24 PCRs with a 64-byte
/// nonce is well under it.
pub const MAX_ATTEST_LEN: usize = 1024;
/// Longest EK certificate.
pub const MAX_EK_CERT_LEN: usize = 4096;

/// A request without parameters.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Empty {}

/// A P-256 public key.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct PublicKey {
    /// SEC1 uncompressed point, [`PUBLIC_KEY_LEN`] bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub point: Vec<u8>,
}

impl PublicKey {
    /// The point, if it is one.
    pub fn point(&self) -> Result<&[u8; PUBLIC_KEY_LEN], Invalid> {
        point(&self.point)
    }
}

/// A point shared by ECDH.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SharedPoint {
    /// `x || y`, [`SHARED_POINT_LEN`] bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub point: Vec<u8>,
}

impl SharedPoint {
    pub fn point(&self) -> Result<&[u8; SHARED_POINT_LEN], Invalid> {
        self.point
            .as_slice()
            .try_into()
            .map_err(|_| Invalid::SharedPoint)
    }
}

/// What to sign.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SignRequest {
    /// A SHA-256 digest, [`DIGEST_LEN`] bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub digest: Vec<u8>,
}

impl SignRequest {
    pub fn digest(&self) -> Result<&[u8; DIGEST_LEN], Invalid> {
        self.digest
            .as_slice()
            .try_into()
            .map_err(|_| Invalid::Digest)
    }
}

/// An ECDSA P-256 signature.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Signature {
    /// Raw `r || s`, [`SIGNATURE_LEN`] bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub signature: Vec<u8>,
}

impl Signature {
    pub fn raw(&self) -> Result<&[u8; SIGNATURE_LEN], Invalid> {
        signature(&self.signature)
    }
}

/// Which PCRs of which bank.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct PcrSelect {
    /// The bank's TPM algorithm id (`TPM_ALG_ID`, SHA-256 is `0x000b`).
    #[prost(uint32, tag = "1")]
    pub bank: u32,
    /// Bit `i` selects PCR `i`.
    #[prost(uint32, tag = "2")]
    pub selection: u32,
}

impl PcrSelect {
    pub fn new(bank: PcrBank, selection: PcrSelection) -> PcrSelect {
        PcrSelect {
            bank: u32::from(bank.algorithm_id()),
            selection: selection.bits(),
        }
    }

    /// The bank and selection, if this build offers them.
    pub fn checked(&self) -> Result<(PcrBank, PcrSelection), Invalid> {
        Ok((
            PcrBank::from_algorithm_id(self.bank)?,
            PcrSelection::from_bits(self.selection)?,
        ))
    }
}

/// PCR values of one bank.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Pcrs {
    #[prost(message, optional, tag = "1")]
    pub select: Option<PcrSelect>,
    /// One digest per selected PCR, lowest index first.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub digests: Vec<Vec<u8>>,
}

impl Pcrs {
    /// The bank and selection, once every digest is checked against them.
    pub fn check(&self) -> Result<(PcrBank, PcrSelection), Invalid> {
        let (bank, selection) = self.select.ok_or(Invalid::Pcrs)?.checked()?;
        if self.digests.len() != selection.count()
            || self.digests.iter().any(|d| d.len() != bank.digest_len())
        {
            return Err(Invalid::Pcrs);
        }
        Ok((bank, selection))
    }

    /// `(index, value)` pairs, lowest index first, once checked.
    pub fn values(&self) -> Result<impl Iterator<Item = (u8, &[u8])>, Invalid> {
        let (_, selection) = self.check()?;
        Ok(selection
            .indices()
            .zip(self.digests.iter().map(Vec::as_slice)))
    }
}

/// What to quote.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QuoteRequest {
    /// The controller's nonce, quoted as `extraData`: 1 to
    /// [`MAX_NONCE_LEN`] bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub nonce: Vec<u8>,
    #[prost(message, optional, tag = "2")]
    pub select: Option<PcrSelect>,
}

impl QuoteRequest {
    /// The nonce, bank and selection, once checked.
    pub fn checked(&self) -> Result<(&[u8], PcrBank, PcrSelection), Invalid> {
        if self.nonce.is_empty() || self.nonce.len() > MAX_NONCE_LEN {
            return Err(Invalid::Nonce);
        }
        let (bank, selection) = self.select.ok_or(Invalid::Selection)?.checked()?;
        Ok((&self.nonce, bank, selection))
    }
}

/// A PCR quote.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct QuoteResponse {
    /// The marshalled `TPMS_ATTEST` the TPM signed (EVE's `attestData`).
    #[prost(bytes = "vec", tag = "1")]
    pub attest: Vec<u8>,
    /// ECDSA P-256 over SHA-256 of `attest`, raw `r || s`.
    #[prost(bytes = "vec", tag = "2")]
    pub signature: Vec<u8>,
    /// The attestation key's public point (SEC1 uncompressed).
    #[prost(bytes = "vec", tag = "3")]
    pub attestation_key: Vec<u8>,
    /// The quoted PCRs' values, read right after the quote, for the
    /// verifier to recompute the quoted digest.
    #[prost(message, optional, tag = "4")]
    pub pcrs: Option<Pcrs>,
}

impl QuoteResponse {
    /// Checks every part's length.
    pub fn check(&self) -> Result<(), Invalid> {
        if self.attest.is_empty() || self.attest.len() > MAX_ATTEST_LEN {
            return Err(Invalid::Attest);
        }
        signature(&self.signature)?;
        point(&self.attestation_key)?;
        self.pcrs.as_ref().ok_or(Invalid::Pcrs)?.check()?;
        Ok(())
    }
}

/// The endorsement key certificate.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EkCert {
    /// DER, 1 to [`MAX_EK_CERT_LEN`] bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub der: Vec<u8>,
}

/// Why the TPM did not carry out an operation (a refusal by the manifest,
/// an unknown operation or a malformed request are answered by the bus
/// itself).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct TpmError {
    #[prost(enumeration = "TpmErrorCode", tag = "1")]
    pub code: i32,
    /// The TPM's response code (`TPM_RC`) for [`TpmErrorCode::TpmRefused`].
    #[prost(uint32, tag = "2")]
    pub tpm_rc: u32,
}

/// The reasons a TPM operation fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum TpmErrorCode {
    Unspecified = 0,
    /// The key or certificate asked for does not exist (the device key
    /// before `create-device-key`, a TPM without an EK certificate).
    NotProvisioned = 1,
    /// The TPM refused the command with `tpm_rc`.
    TpmRefused = 2,
    /// The TPM cannot be reached, or the node has none.
    Unavailable = 3,
    /// The TPM answered bytes the host could not make sense of.
    TpmMalformed = 4,
    /// A key with other attributes occupies the key's persistent handle;
    /// the host leaves it alone rather than replace an identity.
    KeyMismatch = 5,
}

impl TpmError {
    pub fn new(code: TpmErrorCode) -> TpmError {
        TpmError {
            code: code as i32,
            tpm_rc: 0,
        }
    }

    /// The TPM refused a command with response code `rc`.
    pub fn refused(rc: u32) -> TpmError {
        TpmError {
            code: TpmErrorCode::TpmRefused as i32,
            tpm_rc: rc,
        }
    }
}

impl fmt::Display for TpmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code() {
            TpmErrorCode::NotProvisioned => f.write_str("TPM key or certificate not provisioned"),
            TpmErrorCode::TpmRefused => write!(f, "TPM error {:#x}", self.tpm_rc),
            TpmErrorCode::Unavailable => f.write_str("TPM unavailable"),
            TpmErrorCode::TpmMalformed => f.write_str("TPM answered a malformed response"),
            TpmErrorCode::KeyMismatch => f.write_str("another key occupies the key's handle"),
            TpmErrorCode::Unspecified => write!(f, "TPM error code {}", self.code),
        }
    }
}

/// Why a message does not hold what its operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// A digest that is not [`DIGEST_LEN`] bytes.
    Digest,
    /// A signature that is not [`SIGNATURE_LEN`] bytes.
    Signature,
    /// Not a SEC1 uncompressed P-256 point.
    PublicKey,
    /// A PCR bank this build does not offer (its algorithm id).
    UnsupportedBank(u32),
    /// No PCRs, or PCRs beyond 23.
    Selection,
    /// A nonce that is empty or longer than [`MAX_NONCE_LEN`].
    Nonce,
    /// An attestation that is empty or longer than [`MAX_ATTEST_LEN`].
    Attest,
    /// PCR values that do not match their selection and bank.
    Pcrs,
    /// A certificate that is empty or longer than [`MAX_EK_CERT_LEN`].
    Certificate,
    /// A shared point that is not [`SHARED_POINT_LEN`] bytes.
    SharedPoint,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::Digest => write!(f, "the digest is not {DIGEST_LEN} bytes"),
            Invalid::Signature => write!(f, "the signature is not {SIGNATURE_LEN} bytes"),
            Invalid::PublicKey => f.write_str("not an uncompressed P-256 point"),
            Invalid::UnsupportedBank(id) => write!(f, "unsupported PCR bank {id:#06x}"),
            Invalid::Selection => f.write_str("empty or out-of-range PCR selection"),
            Invalid::Nonce => write!(f, "the nonce is empty or over {MAX_NONCE_LEN} bytes"),
            Invalid::Attest => write!(f, "the attestation is empty or over {MAX_ATTEST_LEN} bytes"),
            Invalid::Pcrs => f.write_str("PCR values do not match their selection"),
            Invalid::Certificate => {
                write!(
                    f,
                    "the certificate is empty or over {MAX_EK_CERT_LEN} bytes"
                )
            }
            Invalid::SharedPoint => write!(f, "the shared point is not {SHARED_POINT_LEN} bytes"),
        }
    }
}

impl core::error::Error for Invalid {}

fn point(bytes: &[u8]) -> Result<&[u8; PUBLIC_KEY_LEN], Invalid> {
    let point: &[u8; PUBLIC_KEY_LEN] = bytes.try_into().map_err(|_| Invalid::PublicKey)?;
    if point[0] != 0x04 {
        return Err(Invalid::PublicKey);
    }
    Ok(point)
}

fn signature(bytes: &[u8]) -> Result<&[u8; SIGNATURE_LEN], Invalid> {
    bytes.try_into().map_err(|_| Invalid::Signature)
}

impl EkCert {
    pub fn der(&self) -> Result<&[u8], Invalid> {
        if self.der.is_empty() || self.der.len() > MAX_EK_CERT_LEN {
            return Err(Invalid::Certificate);
        }
        Ok(&self.der)
    }
}

/// A PCR bank. Only SHA-256 is offered: EVE quotes and seals against the
/// SHA-256 bank, and the controller refuses quotes over any other; the
/// wire names banks by TPM algorithm id so more can be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PcrBank {
    /// `TPM_ALG_SHA256`.
    Sha256,
}

impl PcrBank {
    /// The bank's TPM algorithm id (`TPM_ALG_ID`).
    pub const fn algorithm_id(self) -> u16 {
        match self {
            PcrBank::Sha256 => 0x000b,
        }
    }

    /// Length of one PCR value in this bank.
    pub const fn digest_len(self) -> usize {
        match self {
            PcrBank::Sha256 => 32,
        }
    }

    pub fn from_algorithm_id(id: u32) -> Result<Self, Invalid> {
        match id {
            0x000b => Ok(PcrBank::Sha256),
            other => Err(Invalid::UnsupportedBank(other)),
        }
    }
}

/// A non-empty set of PCR indices among the 24 a PC-client TPM has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PcrSelection(u32);

impl PcrSelection {
    /// Number of PCRs a TPM following the PC client profile has.
    pub const PCR_COUNT: u8 = 24;

    /// A selection from a bitmap (bit `i` selects PCR `i`).
    pub fn from_bits(bits: u32) -> Result<Self, Invalid> {
        if bits == 0 || bits >> Self::PCR_COUNT != 0 {
            return Err(Invalid::Selection);
        }
        Ok(PcrSelection(bits))
    }

    /// A selection of the given indices.
    pub fn from_indices(indices: &[u8]) -> Result<Self, Invalid> {
        let mut bits = 0u32;
        for &i in indices {
            if i >= Self::PCR_COUNT {
                return Err(Invalid::Selection);
            }
            bits |= 1 << i;
        }
        Self::from_bits(bits)
    }

    /// The bitmap (bit `i` selects PCR `i`).
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Number of selected PCRs.
    pub const fn count(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The selected indices, lowest first.
    pub fn indices(self) -> impl Iterator<Item = u8> {
        (0..Self::PCR_COUNT).filter(move |&i| self.0 & (1 << i) != 0)
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec;
    use prost::Message;

    use super::*;
    use crate::{Operation, Target};

    #[test]
    fn the_target_lists_every_operation() {
        let spec = Tpm::SPEC;
        assert_eq!((spec.name, spec.version), ("tpm", 1));
        for name in [
            CreateDeviceKey::NAME,
            DevicePublicKey::NAME,
            Sign::NAME,
            ReadPcrs::NAME,
            Quote::NAME,
            ReadEkCert::NAME,
            CreateEcdhKey::NAME,
            Ecdh::NAME,
            CreateAttestationKey::NAME,
        ] {
            assert!(spec.serves(name), "{name}");
        }
        assert_eq!(spec.operations.len(), 9);
        assert!(!spec.serves("export-key"));
        assert_eq!(CreateDeviceKey::TIMEOUT, Duration::from_secs(30));
        assert_eq!(Sign::TIMEOUT, Duration::from_secs(5));
    }

    #[test]
    fn requests_are_checked_before_use() {
        let sign = SignRequest {
            digest: vec![7; DIGEST_LEN],
        };
        assert_eq!(sign.digest(), Ok(&[7; DIGEST_LEN]));
        assert_eq!(
            SignRequest {
                digest: vec![7; 31]
            }
            .digest(),
            Err(Invalid::Digest)
        );
        let select = PcrSelect::new(
            PcrBank::Sha256,
            PcrSelection::from_indices(&[0, 7]).unwrap(),
        );
        assert_eq!(select.bank, 0x000b);
        assert_eq!(select.selection, 0b1000_0001);
        assert_eq!(
            PcrSelect {
                bank: 0x0004,
                selection: 1
            }
            .checked(),
            Err(Invalid::UnsupportedBank(4))
        );
        for bits in [0, 1 << 24] {
            assert_eq!(
                PcrSelect {
                    bank: 0x000b,
                    selection: bits
                }
                .checked(),
                Err(Invalid::Selection)
            );
        }
        assert_eq!(PcrSelection::from_indices(&[24]), Err(Invalid::Selection));
        let quote = |nonce: Vec<u8>| QuoteRequest {
            nonce,
            select: Some(select),
        };
        assert!(quote(vec![1; 32]).checked().is_ok());
        assert_eq!(quote(vec![]).checked(), Err(Invalid::Nonce));
        assert_eq!(
            quote(vec![1; MAX_NONCE_LEN + 1]).checked(),
            Err(Invalid::Nonce)
        );
        let no_select = QuoteRequest {
            nonce: vec![1],
            select: None,
        };
        assert_eq!(no_select.checked(), Err(Invalid::Selection));
    }

    #[test]
    fn answers_are_checked_before_use() {
        let mut point = vec![4; PUBLIC_KEY_LEN];
        assert!(
            PublicKey {
                point: point.clone()
            }
            .point()
            .is_ok()
        );
        point[0] = 2;
        assert_eq!(PublicKey { point }.point(), Err(Invalid::PublicKey));
        assert_eq!(
            Signature {
                signature: vec![0; 63]
            }
            .raw(),
            Err(Invalid::Signature)
        );
        let select = PcrSelect::new(
            PcrBank::Sha256,
            PcrSelection::from_indices(&[3, 1]).unwrap(),
        );
        let pcrs = Pcrs {
            select: Some(select),
            digests: vec![vec![1; 32], vec![3; 32]],
        };
        let values: Vec<(u8, &[u8])> = pcrs.values().unwrap().collect();
        assert_eq!(values, [(1, &[1; 32][..]), (3, &[3; 32][..])]);
        let short = Pcrs {
            select: Some(select),
            digests: vec![vec![1; 32]],
        };
        assert!(short.values().is_err());
        let quote = QuoteResponse {
            attest: vec![0xff; 100],
            signature: vec![0; SIGNATURE_LEN],
            attestation_key: vec![4; PUBLIC_KEY_LEN],
            pcrs: Some(pcrs),
        };
        assert_eq!(quote.check(), Ok(()));
        let no_attest = QuoteResponse {
            attest: vec![],
            ..quote.clone()
        };
        assert_eq!(no_attest.check(), Err(Invalid::Attest));
        assert_eq!(EkCert { der: vec![] }.der(), Err(Invalid::Certificate));
    }

    #[test]
    fn errors_keep_their_code_and_response_code() {
        let refused = TpmError::refused(0x98e);
        let back = TpmError::decode(refused.encode_to_vec().as_slice()).unwrap();
        assert_eq!(back.code(), TpmErrorCode::TpmRefused);
        assert_eq!(back.tpm_rc, 0x98e);
        assert_eq!(alloc::format!("{back}"), "TPM error 0x98e");
        let unavailable = TpmError::new(TpmErrorCode::Unavailable);
        assert_eq!(alloc::format!("{unavailable}"), "TPM unavailable");
        // Garbage is an error, never a panic.
        assert!(TpmError::decode(&[0xff, 0xff][..]).is_err());
        assert!(QuoteResponse::decode(&[0x0a, 0x7f][..]).is_err());
    }
}
