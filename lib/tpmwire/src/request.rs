//! What a service asks the host's TPM to do.

use alloc::vec::Vec;

use crate::{Cursor, DIGEST_LEN, PcrBank, PcrSelection, WIRE_VERSION, WireError, Writer};

/// Longest quote nonce: the largest `TPM2B_DATA` a TPM with SHA-512 takes.
/// A TPM with smaller digests refuses longer nonces itself; EVE's controller
/// hands out 32 bytes.
pub const MAX_NONCE_LEN: usize = 64;

/// The operation a request asks for, as its wire code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Op {
    /// Create the device key if it is missing; answer its public key.
    CreateDeviceKey = 1,
    /// Answer the device key's public key.
    DevicePublicKey = 2,
    /// Sign a SHA-256 digest with the device key.
    SignDigest = 3,
    /// Read PCR values.
    ReadPcrs = 4,
    /// Quote PCRs with the attestation key over a nonce.
    Quote = 5,
    /// Read the endorsement key certificate.
    ReadEkCert = 6,
}

impl Op {
    /// The operation for a wire code.
    pub fn from_code(code: u8) -> Result<Self, WireError> {
        Ok(match code {
            1 => Op::CreateDeviceKey,
            2 => Op::DevicePublicKey,
            3 => Op::SignDigest,
            4 => Op::ReadPcrs,
            5 => Op::Quote,
            6 => Op::ReadEkCert,
            other => return Err(WireError::UnknownKind(other)),
        })
    }

    /// The wire code.
    pub const fn code(self) -> u8 {
        self as u8
    }
}

/// A checked view of a request: the constructor checks the version, the
/// operation and that the length is exactly what the operation needs, so
/// the accessors cannot fail.
#[derive(Debug, Clone)]
pub struct Request<T: AsRef<[u8]>> {
    buffer: T,
    op: Op,
}

impl<T: AsRef<[u8]>> Request<T> {
    /// Wraps `buffer` after checking its framing.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let bytes = buffer.as_ref();
        let mut c = Cursor::new(bytes);
        let version = c.u8()?;
        if version != WIRE_VERSION {
            return Err(WireError::UnsupportedVersion(version));
        }
        let op = Op::from_code(c.u8()?)?;
        let body_len = match op {
            Op::CreateDeviceKey | Op::DevicePublicKey | Op::ReadEkCert => 0,
            Op::SignDigest => DIGEST_LEN,
            Op::ReadPcrs => 6,
            Op::Quote => {
                let fixed = c.take(6)?;
                let nonce_len = usize::from(c.u8()?);
                fixed.len() + 1 + nonce_len
            }
        };
        let expected = 2 + body_len;
        match bytes.len().cmp(&expected) {
            core::cmp::Ordering::Less => Err(WireError::Truncated),
            core::cmp::Ordering::Greater => Err(WireError::TrailingBytes),
            core::cmp::Ordering::Equal => Ok(Request { buffer, op }),
        }
    }

    /// The operation asked for.
    pub fn op(&self) -> Op {
        self.op
    }

    fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[2..]
    }

    /// The digest of a `SignDigest` request.
    pub fn digest(&self) -> Option<&[u8]> {
        (self.op == Op::SignDigest).then(|| self.body())
    }

    /// The raw bank id of a `ReadPcrs` or `Quote` request.
    pub fn bank_id(&self) -> Option<u16> {
        matches!(self.op, Op::ReadPcrs | Op::Quote).then(|| {
            let b = self.body();
            u16::from_be_bytes([b[0], b[1]])
        })
    }

    /// The raw selection bitmap of a `ReadPcrs` or `Quote` request.
    pub fn selection_bits(&self) -> Option<u32> {
        matches!(self.op, Op::ReadPcrs | Op::Quote).then(|| {
            let b = self.body();
            u32::from_be_bytes([b[2], b[3], b[4], b[5]])
        })
    }

    /// The nonce of a `Quote` request.
    pub fn nonce(&self) -> Option<&[u8]> {
        (self.op == Op::Quote).then(|| &self.body()[7..])
    }
}

/// A parsed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestRepr<'a> {
    /// Create the device key under its persistent handle unless it exists
    /// (idempotent); the answer is [`crate::ResponseRepr::PublicKey`].
    CreateDeviceKey,
    /// The device key's public key, [`crate::ResponseRepr::PublicKey`];
    /// `NotProvisioned` until the key has been created.
    DevicePublicKey,
    /// Sign a SHA-256 digest with the device key; the answer is
    /// [`crate::ResponseRepr::Signature`].
    SignDigest {
        /// The digest to sign.
        digest: &'a [u8; DIGEST_LEN],
    },
    /// Read PCR values; the answer is [`crate::ResponseRepr::Pcrs`].
    ReadPcrs {
        /// The bank to read.
        bank: PcrBank,
        /// The PCRs to read.
        selection: PcrSelection,
    },
    /// Quote PCRs with the attestation key; the answer is
    /// [`crate::ResponseRepr::Quote`].
    Quote {
        /// The controller's nonce, quoted as `extraData`.
        nonce: &'a [u8],
        /// The bank to quote.
        bank: PcrBank,
        /// The PCRs to quote.
        selection: PcrSelection,
    },
    /// The endorsement key certificate; the answer is
    /// [`crate::ResponseRepr::EkCert`].
    ReadEkCert,
}

impl<'a> RequestRepr<'a> {
    /// Parses a checked request, refusing unknown banks, empty or
    /// out-of-range selections and empty or oversized nonces.
    pub fn parse(request: &Request<&'a [u8]>) -> Result<Self, WireError> {
        let body: &'a [u8] = request.buffer.get(2..).unwrap_or_default();
        let mut c = Cursor::new(body);
        let repr = match request.op {
            Op::CreateDeviceKey => RequestRepr::CreateDeviceKey,
            Op::DevicePublicKey => RequestRepr::DevicePublicKey,
            Op::ReadEkCert => RequestRepr::ReadEkCert,
            Op::SignDigest => RequestRepr::SignDigest {
                digest: c
                    .take(DIGEST_LEN)?
                    .try_into()
                    .map_err(|_| WireError::Truncated)?,
            },
            Op::ReadPcrs => RequestRepr::ReadPcrs {
                bank: PcrBank::from_algorithm_id(c.u16()?)?,
                selection: PcrSelection::from_bits(c.u32()?)?,
            },
            Op::Quote => {
                let bank = PcrBank::from_algorithm_id(c.u16()?)?;
                let selection = PcrSelection::from_bits(c.u32()?)?;
                let len = usize::from(c.u8()?);
                if len == 0 || len > MAX_NONCE_LEN {
                    return Err(WireError::BadNonce);
                }
                RequestRepr::Quote {
                    nonce: c.take(len)?,
                    bank,
                    selection,
                }
            }
        };
        c.finish()?;
        Ok(repr)
    }

    /// Checks and parses raw bytes in one step.
    pub fn from_bytes(bytes: &'a [u8]) -> Result<Self, WireError> {
        Self::parse(&Request::new_checked(bytes)?)
    }

    /// The operation this request asks for.
    pub fn op(&self) -> Op {
        match self {
            RequestRepr::CreateDeviceKey => Op::CreateDeviceKey,
            RequestRepr::DevicePublicKey => Op::DevicePublicKey,
            RequestRepr::SignDigest { .. } => Op::SignDigest,
            RequestRepr::ReadPcrs { .. } => Op::ReadPcrs,
            RequestRepr::Quote { .. } => Op::Quote,
            RequestRepr::ReadEkCert => Op::ReadEkCert,
        }
    }

    /// Length of the encoded request.
    pub fn buffer_len(&self) -> usize {
        2 + match self {
            RequestRepr::CreateDeviceKey
            | RequestRepr::DevicePublicKey
            | RequestRepr::ReadEkCert => 0,
            RequestRepr::SignDigest { .. } => DIGEST_LEN,
            RequestRepr::ReadPcrs { .. } => 6,
            RequestRepr::Quote { nonce, .. } => 7 + nonce.len(),
        }
    }

    /// Encodes the request into the front of `buf`, returning its length.
    /// A nonce longer than [`MAX_NONCE_LEN`] or empty is refused rather than
    /// sent for the host to refuse.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        if let RequestRepr::Quote { nonce, .. } = self
            && (nonce.is_empty() || nonce.len() > MAX_NONCE_LEN)
        {
            return Err(WireError::BadNonce);
        }
        let mut w = Writer::new(buf, self.buffer_len())?;
        w.u8(WIRE_VERSION);
        w.u8(self.op().code());
        match self {
            RequestRepr::CreateDeviceKey
            | RequestRepr::DevicePublicKey
            | RequestRepr::ReadEkCert => {}
            RequestRepr::SignDigest { digest } => w.bytes(&digest[..]),
            RequestRepr::ReadPcrs { bank, selection } => {
                w.u16(bank.algorithm_id());
                w.u32(selection.bits());
            }
            RequestRepr::Quote {
                nonce,
                bank,
                selection,
            } => {
                w.u16(bank.algorithm_id());
                w.u32(selection.bits());
                // At most MAX_NONCE_LEN, checked above.
                w.u8(nonce.len() as u8);
                w.bytes(nonce);
            }
        }
        Ok(w.written())
    }

    /// Encodes the request into a new vector.
    pub fn to_vec(&self) -> Result<Vec<u8>, WireError> {
        let mut buf = alloc::vec![0; self.buffer_len()];
        self.emit(&mut buf)?;
        Ok(buf)
    }
}
