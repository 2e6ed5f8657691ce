//! Opening a device-signed envelope: EVE's rules (see `eve_proto::sign`).

use std::sync::Arc;

use eve_proto::auth::AuthContainer;
use eve_proto::common::HashAlgorithm;
use eve_proto::{Message, sha256};
use hyper::StatusCode;

use super::{Controller, Dev, Reject, lock, unix_secs};

/// An opened envelope: its signer and its payload.
pub type Opened = (Arc<Dev>, Vec<u8>);

impl Controller {
    /// Opens a device-signed envelope: the signer must be a registered
    /// device and, on `id/{uuid}/` paths, the device named there. On a
    /// shared store a signer this replica does not know yet (registered
    /// through another) is looked up in the store.
    pub fn authenticate(&self, body: &[u8], path_uuid: Option<&str>) -> Result<Opened, Reject> {
        if let Some(opened) = self.authenticate_from_memory(body, path_uuid) {
            return opened;
        }
        let container = decode(body)?;
        let dev = self
            .load_by_cert_hash(&container.sender_cert_hash)?
            .ok_or_else(|| Reject::new(StatusCode::UNAUTHORIZED, "unknown device certificate"))?;
        self.open(&dev, container, body, path_uuid)
    }

    /// [`Self::authenticate`] from memory alone: `None` when the signer is
    /// unknown here but may be known to the store.
    pub fn authenticate_from_memory(
        &self,
        body: &[u8],
        path_uuid: Option<&str>,
    ) -> Option<Result<Opened, Reject>> {
        let container = match decode(body) {
            Ok(c) => c,
            Err(r) => return Some(Err(r)),
        };
        let known = self
            .devices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_hash(&container.sender_cert_hash);
        match known {
            Some(dev) => Some(self.open(&dev, container, body, path_uuid)),
            None if self.store.shared() => None,
            None => Some(Err(Reject::new(
                StatusCode::UNAUTHORIZED,
                "unknown device certificate",
            ))),
        }
    }

    fn open(
        &self,
        dev: &Arc<Dev>,
        container: AuthContainer,
        body: &[u8],
        path_uuid: Option<&str>,
    ) -> Result<Opened, Reject> {
        let memo = sha256(body);
        let verified_before = lock(&dev.cache).last_verified == Some(memo);
        let payload = if verified_before {
            container
                .protected_payload
                .map(|p| p.payload)
                .unwrap_or_default()
        } else {
            let payload = verify_device_envelope(&container, dev)?.to_vec();
            lock(&dev.cache).last_verified = Some(memo);
            payload
        };
        if path_uuid.is_some_and(|u| u != dev.uuid) {
            return Err(Reject::new(
                StatusCode::FORBIDDEN,
                "path names another device",
            ));
        }
        dev.seen(unix_secs());
        Ok((dev.clone(), payload))
    }
}

/// The envelope, with a certificate hash of a length EVE uses.
fn decode(body: &[u8]) -> Result<AuthContainer, Reject> {
    let container = AuthContainer::decode(body)
        .map_err(|_| Reject::new(StatusCode::BAD_REQUEST, "body is not an AuthContainer"))?;
    let hash = &container.sender_cert_hash;
    if hash.len() != 16 && hash.len() != 32 {
        return Err(Reject::new(
            StatusCode::BAD_REQUEST,
            "senderCertHash must be 16 or 32 bytes",
        ));
    }
    Ok(container)
}

/// EVE's envelope rules: `algo` picks the 16- or 32-byte truncation of the
/// certificate hash, which must name the device; the signature is raw
/// `r || s` over SHA-256 of the payload.
fn verify_device_envelope<'a>(container: &'a AuthContainer, dev: &Dev) -> Result<&'a [u8], Reject> {
    let expected: &[u8] = match HashAlgorithm::try_from(container.algo) {
        Ok(HashAlgorithm::Sha25632bytes) => &dev.cert_hash,
        Ok(HashAlgorithm::Sha25616bytes) => &dev.cert_hash[..16],
        _ => {
            return Err(Reject::new(
                StatusCode::BAD_REQUEST,
                format!("unsupported hash algorithm {}", container.algo),
            ));
        }
    };
    if container.sender_cert_hash != expected {
        return Err(Reject::new(
            StatusCode::UNAUTHORIZED,
            "unknown device certificate",
        ));
    }
    let payload = container
        .protected_payload
        .as_ref()
        .map_or(&[][..], |p| p.payload.as_slice());
    dev.key
        .verify(payload, &container.signature_hash)
        .map_err(|_| Reject::new(StatusCode::UNAUTHORIZED, "signature does not verify"))?;
    Ok(payload)
}
