//! The keys the host keeps in the TPM, where they live, and what they may
//! do.
//!
//! Both are ECC P-256 primary keys of the owner hierarchy, made persistent
//! at EVE's well-known handles so that a device moved between EVE and this
//! engine finds them where EVE does. Neither can ever leave the TPM: both
//! carry `fixedTPM` and `fixedParent`, which make the TPM refuse to
//! duplicate them, and the TPM has no command that returns a private part
//! in the clear. `sensitiveDataOrigin` means the TPM generated the private
//! part itself; `noDA` keeps the empty authorisation from feeding the
//! dictionary-attack lockout.

use crate::marshal::{ParseError, Reader};

/// EVE's persistent handle of the device key (`TpmDeviceKeyHdl`): the key
/// the device certificate is issued for and EVE API v2 bodies are signed
/// with.
pub const DEVICE_KEY_HANDLE: u32 = 0x817f_ffff;
/// EVE's persistent handle of the PCR-quote key (`TpmQuoteKeyHdl`), our
/// attestation key.
pub const ATTESTATION_KEY_HANDLE: u32 = 0x8100_0004;
/// EVE's persistent handle of the ECDH key (`TpmEcdhKeyHdl`): the key the
/// controller seals secrets for (datastore credentials).
pub const ECDH_KEY_HANDLE: u32 = 0x8100_0005;

/// The owner hierarchy (`TPM_RH_OWNER`).
pub const TPM_RH_OWNER: u32 = 0x4000_0001;
/// The null hierarchy (`TPM_RH_NULL`).
pub const TPM_RH_NULL: u32 = 0x4000_0007;

pub const TPM_ALG_ECC: u16 = 0x0023;
pub const TPM_ALG_SHA256: u16 = 0x000b;
pub const TPM_ALG_NULL: u16 = 0x0010;
pub const TPM_ALG_ECDSA: u16 = 0x0018;
pub const TPM_ALG_ECDH: u16 = 0x0019;
pub const TPM_ECC_NIST_P256: u16 = 0x0003;

/// `TPMA_OBJECT` bits (part 2, 8.3).
pub mod attributes {
    /// The object cannot be duplicated to another TPM.
    pub const FIXED_TPM: u32 = 1 << 1;
    /// The object cannot be duplicated to another parent.
    pub const FIXED_PARENT: u32 = 1 << 4;
    /// The TPM generated the private part.
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    /// The authorisation value (empty) is enough to use the key.
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    /// Failed authorisations do not count towards the lockout.
    pub const NO_DA: u32 = 1 << 10;
    /// The key signs only digests the TPM computed itself (quotes).
    pub const RESTRICTED: u32 = 1 << 16;
    /// The key may decrypt.
    pub const DECRYPT: u32 = 1 << 17;
    /// The key may sign.
    pub const SIGN: u32 = 1 << 18;
}

/// Which of the host's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// Unrestricted signing key for arbitrary SHA-256 digests.
    Device,
    /// Restricted signing key: it signs only TPM-made structures such as
    /// quotes, so a verifier knows a quote was not forged with it.
    Attestation,
    /// Key agreement only (`decrypt`, scheme ECDH): the TPM computes the
    /// shared point with a peer's public key; it cannot sign.
    Ecdh,
}

impl KeyRole {
    /// Where the key is kept.
    pub const fn handle(self) -> u32 {
        match self {
            KeyRole::Device => DEVICE_KEY_HANDLE,
            KeyRole::Attestation => ATTESTATION_KEY_HANDLE,
            KeyRole::Ecdh => ECDH_KEY_HANDLE,
        }
    }

    /// The key's scheme: ECDSA for the signing keys, ECDH for the
    /// key-agreement key, each with SHA-256.
    pub const fn scheme(self) -> u16 {
        match self {
            KeyRole::Device | KeyRole::Attestation => TPM_ALG_ECDSA,
            KeyRole::Ecdh => TPM_ALG_ECDH,
        }
    }

    /// The key's `TPMA_OBJECT`.
    pub const fn attributes(self) -> u32 {
        use attributes::*;
        let common = FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | USER_WITH_AUTH | NO_DA;
        match self {
            KeyRole::Device => common | SIGN,
            KeyRole::Attestation => common | SIGN | RESTRICTED,
            KeyRole::Ecdh => common | DECRYPT,
        }
    }

    /// The `TPMT_PUBLIC` template given to `TPM2_CreatePrimary`: ECC P-256,
    /// name algorithm SHA-256, the role's scheme with SHA-256, no symmetric
    /// part and no KDF, empty policy and an empty unique field. A primary
    /// key is derived from the hierarchy seed and this template, so the
    /// template is also what makes the keys distinct.
    pub fn template(self) -> Vec<u8> {
        let mut t = Vec::with_capacity(32);
        t.extend_from_slice(&TPM_ALG_ECC.to_be_bytes());
        t.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
        t.extend_from_slice(&self.attributes().to_be_bytes());
        t.extend_from_slice(&0u16.to_be_bytes()); // authPolicy
        t.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // symmetric
        t.extend_from_slice(&self.scheme().to_be_bytes()); // scheme
        t.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes()); // scheme hash
        t.extend_from_slice(&TPM_ECC_NIST_P256.to_be_bytes());
        t.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // kdf
        t.extend_from_slice(&0u16.to_be_bytes()); // unique.x
        t.extend_from_slice(&0u16.to_be_bytes()); // unique.y
        t
    }

    /// Whether a key the TPM holds is this role's key: same algorithm,
    /// curve, scheme and attributes. Anything else at the handle is left
    /// alone, since replacing a device key would replace the identity.
    pub fn matches(self, public: &EccPublic) -> bool {
        public.name_alg == TPM_ALG_SHA256
            && public.attributes == self.attributes()
            && public.curve == TPM_ECC_NIST_P256
            && public.scheme == Some((self.scheme(), TPM_ALG_SHA256))
    }
}

/// The public area of an ECC key (`TPMT_PUBLIC` with `TPMS_ECC_PARMS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccPublic {
    /// `nameAlg`.
    pub name_alg: u16,
    /// `objectAttributes` (`TPMA_OBJECT`).
    pub attributes: u32,
    /// The signing scheme and its hash, if any.
    pub scheme: Option<(u16, u16)>,
    /// `curveID`.
    pub curve: u16,
    /// The point as a SEC1 uncompressed encoding.
    pub point: [u8; hostops::tpm::PUBLIC_KEY_LEN],
}

impl EccPublic {
    /// Reads a `TPM2B_PUBLIC`, refusing anything but an ECC P-256 key.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let mut area = Reader::new(r.tpm2b()?);
        if area.u16()? != TPM_ALG_ECC {
            return Err(ParseError::Unexpected("public area is not an ECC key"));
        }
        let name_alg = area.u16()?;
        let attributes = area.u32()?;
        area.tpm2b()?; // authPolicy
        if area.u16()? != TPM_ALG_NULL {
            // Symmetric definition of a storage key: key bits and mode.
            area.take(4)?;
        }
        let scheme = match area.u16()? {
            TPM_ALG_NULL => None,
            alg => Some((alg, area.u16()?)),
        };
        let curve = area.u16()?;
        if area.u16()? != TPM_ALG_NULL {
            area.u16()?; // the KDF's hash
        }
        let x = area.tpm2b()?;
        let y = area.tpm2b()?;
        if curve != TPM_ECC_NIST_P256 {
            return Err(ParseError::Unexpected("key is not on P-256"));
        }
        let mut point = [0u8; hostops::tpm::PUBLIC_KEY_LEN];
        point[0] = 0x04;
        point[1..33].copy_from_slice(&coordinate(x)?);
        point[33..].copy_from_slice(&coordinate(y)?);
        Ok(EccPublic {
            name_alg,
            attributes,
            scheme,
            curve,
            point,
        })
    }
}

/// A big-endian P-256 field element or scalar as exactly 32 bytes: TPMs may
/// drop leading zero bytes, so shorter values are left-padded.
pub fn coordinate(bytes: &[u8]) -> Result<[u8; 32], ParseError> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let significant = &bytes[start..];
    if significant.len() > 32 {
        return Err(ParseError::Unexpected("ECC value longer than 32 bytes"));
    }
    let mut out = [0u8; 32];
    out[32 - significant.len()..].copy_from_slice(significant);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `TPM2B_PUBLIC` as a TPM returns it: the template with the point
    /// filled in.
    fn public_area(role: KeyRole, x: &[u8], y: &[u8]) -> Vec<u8> {
        let mut area = role.template();
        area.truncate(area.len() - 4);
        area.extend_from_slice(&(x.len() as u16).to_be_bytes());
        area.extend_from_slice(x);
        area.extend_from_slice(&(y.len() as u16).to_be_bytes());
        area.extend_from_slice(y);
        let mut out = (area.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&area);
        out
    }

    #[test]
    fn templates_parse_back_and_match_their_role() {
        let bytes = public_area(KeyRole::Device, &[1; 32], &[2; 31]);
        let public = EccPublic::read(&mut Reader::new(&bytes)).unwrap();
        assert!(KeyRole::Device.matches(&public));
        assert!(!KeyRole::Attestation.matches(&public));
        assert!(!KeyRole::Ecdh.matches(&public));
        let bytes = public_area(KeyRole::Ecdh, &[3; 32], &[4; 32]);
        let ecdh = EccPublic::read(&mut Reader::new(&bytes)).unwrap();
        assert!(KeyRole::Ecdh.matches(&ecdh) && !KeyRole::Device.matches(&ecdh));
        assert_eq!(ecdh.scheme, Some((TPM_ALG_ECDH, TPM_ALG_SHA256)));
        assert_eq!(ecdh.attributes & attributes::SIGN, 0, "it cannot sign");
        assert_eq!(public.point[0], 4);
        assert_eq!(&public.point[1..33], &[1; 32]);
        assert_eq!(public.point[33], 0, "short y is left-padded");
        assert_eq!(&public.point[34..], &[2; 31]);
        let attributes = public.attributes;
        assert_ne!(attributes & attributes::FIXED_TPM, 0);
        assert_ne!(attributes & attributes::FIXED_PARENT, 0);
    }

    #[test]
    fn foreign_keys_are_refused_or_do_not_match() {
        let mut bytes = public_area(KeyRole::Device, &[1; 32], &[2; 32]);
        // RSA instead of ECC.
        bytes[2..4].copy_from_slice(&0x0001u16.to_be_bytes());
        assert!(EccPublic::read(&mut Reader::new(&bytes)).is_err());
        // A 33-byte coordinate.
        let bytes = public_area(KeyRole::Device, &[1; 33], &[2; 32]);
        assert!(EccPublic::read(&mut Reader::new(&bytes)).is_err());
        // Same key type without fixedTPM.
        let mut bytes = public_area(KeyRole::Device, &[1; 32], &[2; 32]);
        bytes[9] &= !(attributes::FIXED_TPM as u8);
        let public = EccPublic::read(&mut Reader::new(&bytes)).unwrap();
        assert!(!KeyRole::Device.matches(&public));
        // Every truncation fails cleanly.
        let bytes = public_area(KeyRole::Attestation, &[1; 32], &[2; 32]);
        for len in 0..bytes.len() {
            assert!(EccPublic::read(&mut Reader::new(&bytes[..len])).is_err());
        }
    }

    #[test]
    fn coordinates_are_padded_and_bounded() {
        assert_eq!(coordinate(&[]).unwrap(), [0; 32]);
        let mut with_zero = vec![0u8];
        with_zero.extend_from_slice(&[0xff; 32]);
        assert_eq!(coordinate(&with_zero).unwrap(), [0xff; 32]);
        assert!(coordinate(&[1; 33]).is_err());
    }
}
