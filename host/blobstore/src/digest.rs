//! Content addresses: sha256 digests, as the signed config and OCI
//! manifests name them.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// A sha256 digest. The store names blobs by it and verifies every blob
/// against it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a sha256 digest (64 hex digits, optionally after `sha256:`): {0:?}")]
pub struct BadDigest(pub String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex without prefix: EVE's `ContentTree.sha256` form and
    /// the blob's file name.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Accepts `sha256:<hex>` (OCI) and bare hex (EVE config), either case.
impl FromStr for Digest {
    type Err = BadDigest;

    fn from_str(s: &str) -> Result<Self, BadDigest> {
        let hex_part = s.strip_prefix("sha256:").unwrap_or(s);
        let mut out = [0u8; 32];
        if hex_part.len() != 64 || hex::decode_to_slice(hex_part, &mut out).is_err() {
            return Err(BadDigest(s.chars().take(80).collect()));
        }
        Ok(Self(out))
    }
}

/// `sha256:<hex>`, the OCI form, so logs and errors are unambiguous.
impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Serialized as bare hex (the state file's map keys).
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms_and_refuses_others() {
        let d = Digest::of(b"abc");
        let hex = d.hex();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex.parse::<Digest>(), Ok(d));
        assert_eq!(format!("sha256:{hex}").parse::<Digest>(), Ok(d));
        assert_eq!(hex.to_uppercase().parse::<Digest>(), Ok(d));
        for bad in [
            "",
            "sha256:",
            &hex[1..],
            &format!("{hex}0"),
            "sha512:00",
            &hex.replace('a', "g"),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
    }
}
