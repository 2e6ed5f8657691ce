//! The TPM requests a service may send to the host over the bus, and their answers.
//!
//! The host owns the node's TPM; a service never talks to it directly. It
//! sends one of the [`RequestRepr`] operations as the payload of a bus
//! request to the target `"tpm"` and gets a [`ResponseRepr`] back. The host
//! runs only what the node's manifest grants that service, so a refusal
//! ([`Failure::Denied`]) is an ordinary answer.
//!
//! No request returns private key material: the device key and the
//! attestation key are created inside the TPM as non-exportable keys and
//! only their public points, signatures and quotes ever leave it.
//!
//! # Encoding
//!
//! Both directions start with the version byte [`WIRE_VERSION`] and a kind
//! byte; integers are big-endian, like the TPM's own encoding.
//!
//! | request | body after `version, op` |
//! |---|---|
//! | `CreateDeviceKey` (1) | none |
//! | `DevicePublicKey` (2) | none |
//! | `SignDigest` (3) | 32-byte SHA-256 digest |
//! | `ReadPcrs` (4) | bank `u16` (TPM algorithm id), selection `u32` |
//! | `Quote` (5) | bank `u16`, selection `u32`, nonce length `u8`, nonce |
//! | `ReadEkCert` (6) | none |
//!
//! | response | body after `version, kind` |
//! |---|---|
//! | `Failure` (0) | code `u8`, detail `u32` (the TPM response code for `Tpm`, else 0) |
//! | `PublicKey` (1) | 65-byte SEC1 uncompressed P-256 point |
//! | `Signature` (2) | 64 bytes: ECDSA `r || s` |
//! | `Pcrs` (3) | bank `u16`, selection `u32`, one digest per selected PCR in index order |
//! | `Quote` (4) | attest length `u16`, `TPMS_ATTEST`, 64-byte signature, 65-byte attestation key point, then a `Pcrs` body |
//! | `EkCert` (5) | length `u16`, DER certificate |
//!
//! Following the project's wire-format convention, [`Request`] and
//! [`Response`] are checked views (their constructors check every length
//! before any accessor runs) and [`RequestRepr`] / [`ResponseRepr`] the
//! parsed representations. Bytes come from other services and from the
//! host, so parsing never panics on any input.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod pcr;
mod request;
mod response;

pub use pcr::{PcrBank, PcrSelection, PcrValues};
pub use request::{MAX_NONCE_LEN, Op, Request, RequestRepr};
pub use response::{Failure, MAX_ATTEST_LEN, Response, ResponseRepr};

/// The bus target the host's TPM mediator listens on.
pub const TARGET: &str = "tpm";
/// The first byte of every request and response; bumped on incompatible changes.
pub const WIRE_VERSION: u8 = 1;
/// Length of a SHA-256 digest, the only digest this interface signs.
pub const DIGEST_LEN: usize = 32;
/// Length of an ECDSA P-256 signature as raw `r || s`.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a SEC1 uncompressed P-256 point (`0x04 || x || y`).
pub const PUBLIC_KEY_LEN: usize = 65;

/// Why bytes are not a valid request or response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The message ends before its fields do.
    Truncated,
    /// Bytes follow the last field.
    TrailingBytes,
    /// The version byte is not [`WIRE_VERSION`].
    UnsupportedVersion(u8),
    /// The request operation or response kind is unknown.
    UnknownKind(u8),
    /// The PCR bank is not one this interface reads.
    UnsupportedBank(u16),
    /// The PCR selection is empty or names PCRs beyond 23.
    BadSelection,
    /// The nonce is empty or longer than [`MAX_NONCE_LEN`].
    BadNonce,
    /// A public key is not an uncompressed point (`0x04` prefix).
    BadPublicKey,
    /// A failure code is unknown, or carries a detail it must not.
    BadFailure,
    /// A length field is zero or too large for this interface.
    BadLength,
    /// The output buffer is smaller than [`RequestRepr::buffer_len`] /
    /// [`ResponseRepr::buffer_len`].
    BufferTooSmall,
}

impl core::fmt::Display for WireError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WireError::Truncated => f.write_str("TPM message truncated"),
            WireError::TrailingBytes => f.write_str("bytes after the end of the TPM message"),
            WireError::UnsupportedVersion(v) => write!(f, "unsupported TPM wire version {v}"),
            WireError::UnknownKind(k) => write!(f, "unknown TPM message kind {k}"),
            WireError::UnsupportedBank(b) => write!(f, "unsupported PCR bank {b:#06x}"),
            WireError::BadSelection => f.write_str("empty or out-of-range PCR selection"),
            WireError::BadNonce => f.write_str("nonce empty or too long"),
            WireError::BadPublicKey => f.write_str("public key is not an uncompressed point"),
            WireError::BadFailure => f.write_str("malformed failure"),
            WireError::BadLength => f.write_str("length field out of range"),
            WireError::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

impl core::error::Error for WireError {}

/// Reads big-endian fields from a slice that the caller has length-checked;
/// every read still goes through `get`, so a wrong check cannot panic.
pub(crate) struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Cursor { bytes }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let head = self.bytes.get(..n).ok_or(WireError::Truncated)?;
        self.bytes = &self.bytes[n..];
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(WireError::TrailingBytes)
        }
    }
}

/// Writes big-endian fields into a buffer whose length the caller checked
/// against `buffer_len`.
pub(crate) struct Writer<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl<'a> Writer<'a> {
    pub(crate) fn new(buf: &'a mut [u8], needed: usize) -> Result<Self, WireError> {
        if buf.len() < needed {
            return Err(WireError::BufferTooSmall);
        }
        Ok(Writer { buf, at: 0 })
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.buf[self.at..self.at + b.len()].copy_from_slice(b);
        self.at += b.len();
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }

    pub(crate) fn written(&self) -> usize {
        self.at
    }
}

#[cfg(test)]
mod tests;
