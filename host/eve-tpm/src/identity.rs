//! The device's TPM-held identity: its two persistent keys and the
//! endorsement key certificate the manufacturer (or swtpm_setup) stored.

use crate::keys::{EccPublic, KeyRole};
use crate::tpm::{NV_INDEX_FIRST, Tpm, TpmCommandError};
use crate::transport::TpmTransport;

/// NV indices of EK certificates (TCG EK Credential Profile 2.x), in the
/// order we prefer them: ECC P-256 (low range), ECC P-384 (high range,
/// which is what swtpm_setup 0.7 provisions), RSA 2048.
pub const EK_CERT_INDICES: [u32; 3] = [0x01c0_000a, 0x01c0_0016, 0x01c0_0002];

/// Why a key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// No key at the handle, and it was not to be created.
    #[error("no key at persistent handle {0:#x}")]
    Missing(u32),
    /// Some other key occupies the handle; it is left alone.
    #[error("the key at persistent handle {0:#x} is not the expected key")]
    Mismatch(u32),
    /// A TPM command failed.
    #[error(transparent)]
    Command(#[from] TpmCommandError),
}

/// Why the EK certificate could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EkCertError {
    /// The TPM holds no EK certificate at any of [`EK_CERT_INDICES`].
    #[error("the TPM holds no EK certificate")]
    NotProvisioned,
    /// A TPM command failed.
    #[error(transparent)]
    Command(#[from] TpmCommandError),
}

impl<T: TpmTransport> Tpm<T> {
    /// Whether a persistent object or NV index exists at `handle`.
    fn exists(&mut self, handle: u32) -> Result<bool, TpmCommandError> {
        Ok(self.handles(handle)?.first() == Some(&handle))
    }

    /// The key of `role` if it is at its handle and is that role's key.
    pub fn existing_key(&mut self, role: KeyRole) -> Result<EccPublic, KeyError> {
        let handle = role.handle();
        if !self.exists(handle)? {
            return Err(KeyError::Missing(handle));
        }
        let public = self.read_public(handle)?;
        if !role.matches(&public) {
            return Err(KeyError::Mismatch(handle));
        }
        Ok(public)
    }

    /// The key of `role`, created and made persistent first if its handle
    /// is free. Creating is idempotent in effect too: a primary key is
    /// derived from the owner seed and the template, so until the owner
    /// hierarchy is cleared the same key comes back.
    pub fn ensure_key(&mut self, role: KeyRole) -> Result<EccPublic, KeyError> {
        match self.existing_key(role) {
            Err(KeyError::Missing(handle)) => {
                let (transient, public) = self.create_primary(role)?;
                let persisted = self.evict_control(transient, handle);
                // The persistent copy is independent of the transient one,
                // which would otherwise hold a TPM object slot until reset.
                if let Err(e) = self.flush_context(transient) {
                    log::warn!("tpm: flushing transient key {transient:#x}: {e}");
                }
                persisted?;
                log::info!("tpm: created {role:?} key at {handle:#x}");
                Ok(public)
            }
            other => other,
        }
    }

    /// The first EK certificate found at [`EK_CERT_INDICES`], DER.
    pub fn ek_certificate(&mut self) -> Result<Vec<u8>, EkCertError> {
        let present = self.handles(NV_INDEX_FIRST | 0x00c0_0000)?;
        let index = EK_CERT_INDICES
            .into_iter()
            .find(|i| present.contains(i))
            .ok_or(EkCertError::NotProvisioned)?;
        let mut cert = self.nv_read(index)?;
        // Some manufacturers pad the index; keep the DER SEQUENCE only.
        if let Some(len) = der_len(&cert) {
            cert.truncate(len);
        }
        Ok(cert)
    }
}

/// Length of the DER element at the start of `bytes` (tag, length, content),
/// if its header is well formed and it fits.
fn der_len(bytes: &[u8]) -> Option<usize> {
    let first = *bytes.get(1)?;
    let (header, content) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = bytes
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (2 + n, len)
    };
    let total = header.checked_add(content)?;
    (total <= bytes.len()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::der_len;

    #[test]
    fn der_length_finds_the_element_end() {
        assert_eq!(der_len(&[0x30, 0x02, 1, 2, 0xff, 0xff]), Some(4));
        assert_eq!(der_len(&[0x30, 0x82, 0x00, 0x01, 9, 0]), Some(5));
        assert_eq!(der_len(&[0x30, 0x82, 0x01, 0x00, 9]), None);
        assert_eq!(der_len(&[0x30, 0x80]), None);
        assert_eq!(der_len(&[0x30]), None);
        assert_eq!(
            der_len(&[0x30, 0x88, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }
}
