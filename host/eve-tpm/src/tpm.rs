//! The TPM 2.0 commands the host sends, each marshalled and its response
//! parsed with bounds checks.

use std::time::Duration;

use hostops::tpm::{PcrBank, PcrSelection};

use crate::keys::{EccPublic, KeyRole, TPM_ALG_ECDSA, TPM_ALG_NULL, TPM_RH_NULL, TPM_RH_OWNER};
use crate::marshal::{
    Command, CommandCode, ParseError, Reader, Reply, response_code, split_response,
};
use crate::transport::{TpmTransport, TransportError};

/// `TPM_RC_INITIALIZE`: `TPM2_Startup` was already done.
const TPM_RC_INITIALIZE: u32 = 0x100;
/// Warnings that ask the caller to send the same command again
/// (`TPM_RC_YIELDED`, `TPM_RC_TESTING`, `TPM_RC_RETRY`).
const RETRY_CODES: [u32; 3] = [0x908, 0x90a, 0x922];
const MAX_RETRIES: u32 = 5;

const TPM_CAP_HANDLES: u32 = 1;
const TPM_CAP_TPM_PROPERTIES: u32 = 6;
const TPM_PT_NV_BUFFER_MAX: u32 = 0x100 + 44;
const TPM_ST_HASHCHECK: u16 = 0x8024;
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
const TPMA_NV_OWNERREAD: u32 = 1 << 17;
const TPMA_NV_AUTHREAD: u32 = 1 << 18;
/// First handle of the NV-index range.
pub const NV_INDEX_FIRST: u32 = 0x0100_0000;

/// Why a TPM command failed.
#[derive(Debug, thiserror::Error)]
pub enum TpmCommandError {
    /// The command could not be exchanged.
    #[error("{command}: {source}")]
    Transport {
        /// The command.
        command: CommandCode,
        /// The transport's reason.
        source: TransportError,
    },
    /// The TPM refused the command.
    #[error("{command} failed with TPM response code {rc:#x}")]
    ResponseCode {
        /// The command.
        command: CommandCode,
        /// `TPM_RC`.
        rc: u32,
    },
    /// The response is not what the command returns.
    #[error("{command}: malformed response: {problem}")]
    Malformed {
        /// The command.
        command: CommandCode,
        /// What was wrong.
        problem: ParseError,
    },
}

/// The NV attributes and size of an index (`TPMS_NV_PUBLIC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NvPublic {
    /// `TPMA_NV`.
    pub attributes: u32,
    /// Size of the index's data.
    pub size: u16,
}

/// A TPM quote and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// The marshalled `TPMS_ATTEST`.
    pub attest: Vec<u8>,
    /// ECDSA over SHA-256 of `attest`, raw `r || s`.
    pub signature: [u8; hostops::tpm::SIGNATURE_LEN],
}

/// A TPM reached through a transport. Not shared: the caller serialises
/// access (the [`crate::Mediator`] holds it behind a mutex), because a TPM
/// executes one command at a time and swtpm serves a single connection.
pub struct Tpm<T: TpmTransport> {
    transport: T,
}

impl<T: TpmTransport> Tpm<T> {
    /// Wraps a transport; nothing is sent yet.
    pub fn new(transport: T) -> Self {
        Tpm { transport }
    }

    /// Sends a command, retrying while the TPM answers with a retry
    /// warning, and returns the raw successful response.
    fn execute(&mut self, code: CommandCode, command: &[u8]) -> Result<Vec<u8>, TpmCommandError> {
        let mut attempt = 0;
        loop {
            let response =
                self.transport
                    .transact(command)
                    .map_err(|source| TpmCommandError::Transport {
                        command: code,
                        source,
                    })?;
            let rc = match response_code(&response) {
                Ok(0) => return Ok(response),
                Ok(rc) => rc,
                Err(problem) => {
                    return Err(TpmCommandError::Malformed {
                        command: code,
                        problem,
                    });
                }
            };
            if !RETRY_CODES.contains(&rc) || attempt == MAX_RETRIES {
                return Err(TpmCommandError::ResponseCode { command: code, rc });
            }
            attempt += 1;
            std::thread::sleep(Duration::from_millis(20 * u64::from(attempt)));
        }
    }

    /// Sends `command` and parses the successful response with `parse`,
    /// given the command's handle count.
    fn run<R>(
        &mut self,
        code: CommandCode,
        command: Command,
        handle_count: usize,
        parse: impl FnOnce(Reply<'_>) -> Result<R, ParseError>,
    ) -> Result<R, TpmCommandError> {
        let response = self.execute(code, &command.finish())?;
        let malformed = |problem| TpmCommandError::Malformed {
            command: code,
            problem,
        };
        parse(split_response(&response, handle_count).map_err(malformed)?).map_err(malformed)
    }

    /// `TPM2_Startup(TPM_SU_CLEAR)`, accepting a TPM that is already
    /// started (the kernel and swtpm's `startup-clear` flag start it).
    pub fn startup(&mut self) -> Result<(), TpmCommandError> {
        let mut c = Command::new(CommandCode::Startup, &[], &[]);
        c.u16(0); // TPM_SU_CLEAR
        match self.run(CommandCode::Startup, c, 0, |_| Ok(())) {
            Err(TpmCommandError::ResponseCode {
                rc: TPM_RC_INITIALIZE,
                ..
            }) => Ok(()),
            other => other,
        }
    }

    /// The handles in use from `first` to the end of its range
    /// (`TPM2_GetCapability(TPM_CAP_HANDLES)`), following `moreData`.
    pub fn handles(&mut self, first: u32) -> Result<Vec<u32>, TpmCommandError> {
        let range = first & 0xff00_0000;
        let mut found = Vec::new();
        let mut next = first;
        loop {
            let mut c = Command::new(CommandCode::GetCapability, &[], &[]);
            c.u32(TPM_CAP_HANDLES).u32(next).u32(64);
            let (more, batch) = self.run(CommandCode::GetCapability, c, 0, |mut reply| {
                let p = &mut reply.params;
                let more = p.u8()? != 0;
                if p.u32()? != TPM_CAP_HANDLES {
                    return Err(ParseError::Unexpected("capability is not TPM_CAP_HANDLES"));
                }
                let count = p.u32()?;
                let mut batch = Vec::new();
                for _ in 0..count {
                    batch.push(p.u32()?);
                }
                Ok((more, batch))
            })?;
            let in_range: Vec<u32> = batch
                .into_iter()
                .filter(|&h| h & 0xff00_0000 == range && h >= next)
                .collect();
            let last = in_range.last().copied();
            found.extend(in_range);
            match (more, last) {
                (true, Some(last)) if last < u32::MAX && (last + 1) & 0xff00_0000 == range => {
                    next = last + 1;
                }
                _ => return Ok(found),
            }
        }
    }

    /// A TPM property (`TPM2_GetCapability(TPM_CAP_TPM_PROPERTIES)`).
    fn property(&mut self, property: u32) -> Result<u32, TpmCommandError> {
        let mut c = Command::new(CommandCode::GetCapability, &[], &[]);
        c.u32(TPM_CAP_TPM_PROPERTIES).u32(property).u32(1);
        self.run(CommandCode::GetCapability, c, 0, |mut reply| {
            let p = &mut reply.params;
            p.u8()?; // moreData
            if p.u32()? != TPM_CAP_TPM_PROPERTIES || p.u32()? == 0 || p.u32()? != property {
                return Err(ParseError::Unexpected("property not reported"));
            }
            p.u32()
        })
    }

    /// `TPM2_CreatePrimary` under the owner hierarchy with an empty
    /// authorisation; returns the transient handle and the public area.
    pub fn create_primary(&mut self, role: KeyRole) -> Result<(u32, EccPublic), TpmCommandError> {
        let mut c = Command::new(CommandCode::CreatePrimary, &[TPM_RH_OWNER], &[b""]);
        // inSensitive: empty userAuth and data.
        c.u16(4).u16(0).u16(0);
        c.tpm2b(&role.template());
        c.tpm2b(&[]); // outsideInfo
        c.u32(0); // creationPCR: none
        self.run(CommandCode::CreatePrimary, c, 1, |mut reply| {
            let handle = reply.handles.u32()?;
            let public = EccPublic::read(&mut reply.params)?;
            Ok((handle, public))
        })
    }

    /// `TPM2_EvictControl`: makes the transient `object` persistent at
    /// `persistent`.
    pub fn evict_control(&mut self, object: u32, persistent: u32) -> Result<(), TpmCommandError> {
        let mut c = Command::new(CommandCode::EvictControl, &[TPM_RH_OWNER, object], &[b""]);
        c.u32(persistent);
        self.run(CommandCode::EvictControl, c, 0, |_| Ok(()))
    }

    /// `TPM2_FlushContext`: frees a transient object.
    pub fn flush_context(&mut self, handle: u32) -> Result<(), TpmCommandError> {
        let mut c = Command::new(CommandCode::FlushContext, &[], &[]);
        c.u32(handle);
        self.run(CommandCode::FlushContext, c, 0, |_| Ok(()))
    }

    /// `TPM2_ReadPublic` of an ECC key.
    pub fn read_public(&mut self, handle: u32) -> Result<EccPublic, TpmCommandError> {
        let c = Command::new(CommandCode::ReadPublic, &[handle], &[]);
        self.run(CommandCode::ReadPublic, c, 0, |mut reply| {
            EccPublic::read(&mut reply.params)
        })
    }

    /// `TPM2_Sign` of a SHA-256 digest with the key's own scheme
    /// (ECDSA/SHA-256). The null hash-check ticket is enough because the
    /// key is unrestricted.
    pub fn sign(
        &mut self,
        key: u32,
        digest: &[u8; hostops::tpm::DIGEST_LEN],
    ) -> Result<[u8; hostops::tpm::SIGNATURE_LEN], TpmCommandError> {
        let mut c = Command::new(CommandCode::Sign, &[key], &[b""]);
        c.tpm2b(digest);
        c.u16(TPM_ALG_NULL); // inScheme: the key's
        c.u16(TPM_ST_HASHCHECK).u32(TPM_RH_NULL).tpm2b(&[]);
        self.run(CommandCode::Sign, c, 0, |mut reply| {
            read_ecdsa_signature(&mut reply.params)
        })
    }

    /// `TPM2_ECDH_ZGen`: the shared point `d * peer` with the private key
    /// of `key` (a decrypt key with the ECDH scheme), as `x || y`. The TPM
    /// refuses a point that is not on the curve.
    pub fn ecdh_zgen(
        &mut self,
        key: u32,
        peer: &[u8; hostops::tpm::PUBLIC_KEY_LEN],
    ) -> Result<[u8; hostops::tpm::SHARED_POINT_LEN], TpmCommandError> {
        let mut c = Command::new(CommandCode::EcdhZgen, &[key], &[b""]);
        // inPoint: TPM2B_ECC_POINT { x: TPM2B, y: TPM2B }.
        c.u16(2 + 32 + 2 + 32);
        c.tpm2b(&peer[1..33]).tpm2b(&peer[33..]);
        self.run(CommandCode::EcdhZgen, c, 0, |mut reply| {
            let mut point = Reader::new(reply.params.tpm2b()?);
            let mut out = [0u8; hostops::tpm::SHARED_POINT_LEN];
            out[..32].copy_from_slice(&crate::keys::coordinate(point.tpm2b()?)?);
            out[32..].copy_from_slice(&crate::keys::coordinate(point.tpm2b()?)?);
            Ok(out)
        })
    }

    /// `TPM2_PCR_Read` of every selected PCR. A TPM returns at most eight
    /// digests per call, so this asks again for what is still missing.
    pub fn pcr_read(
        &mut self,
        bank: PcrBank,
        selection: PcrSelection,
    ) -> Result<Vec<[u8; 32]>, TpmCommandError> {
        let mut values: [Option<[u8; 32]>; PcrSelection::PCR_COUNT as usize] = [None; 24];
        let mut missing = selection.bits();
        while missing != 0 {
            let mut c = Command::new(CommandCode::PcrRead, &[], &[]);
            write_pcr_selection(&mut c, bank, missing);
            let got = self.run(CommandCode::PcrRead, c, 0, |mut reply| {
                let p = &mut reply.params;
                p.u32()?; // pcrUpdateCounter
                let returned = read_pcr_selection(p, bank)?;
                let count = p.u32()?;
                if count != returned.count_ones() || returned & !missing != 0 {
                    return Err(ParseError::Unexpected("PCR values do not match selection"));
                }
                let mut got = Vec::new();
                for index in (0..24).filter(|i| returned & (1 << i) != 0) {
                    let digest: [u8; 32] = p
                        .tpm2b()?
                        .try_into()
                        .map_err(|_| ParseError::Unexpected("PCR value is not 32 bytes"))?;
                    got.push((index, digest));
                }
                Ok(got)
            })?;
            if got.is_empty() {
                // The bank is not active, or the TPM has fewer PCRs.
                return Err(TpmCommandError::Malformed {
                    command: CommandCode::PcrRead,
                    problem: ParseError::Unexpected("TPM returned none of the selected PCRs"),
                });
            }
            for (index, digest) in got {
                values[index] = Some(digest);
                missing &= !(1 << index);
            }
        }
        Ok(values.into_iter().flatten().collect())
    }

    /// `TPM2_Quote` of the selected PCRs with the restricted key at `key`,
    /// `nonce` as `qualifyingData` (it appears in the attestation as
    /// `extraData`).
    pub fn quote(
        &mut self,
        key: u32,
        nonce: &[u8],
        bank: PcrBank,
        selection: PcrSelection,
    ) -> Result<Quote, TpmCommandError> {
        let mut c = Command::new(CommandCode::Quote, &[key], &[b""]);
        c.tpm2b(nonce);
        c.u16(TPM_ALG_NULL); // inScheme: the key's
        write_pcr_selection(&mut c, bank, selection.bits());
        self.run(CommandCode::Quote, c, 0, |mut reply| {
            let attest = reply.params.tpm2b()?.to_vec();
            let mut check = Reader::new(&attest);
            if check.u32()? != 0xff54_4347 || check.u16()? != TPM_ST_ATTEST_QUOTE {
                return Err(ParseError::Unexpected("not a TPM-generated quote"));
            }
            let signature = read_ecdsa_signature(&mut reply.params)?;
            Ok(Quote { attest, signature })
        })
    }

    /// `TPM2_NV_ReadPublic`.
    pub fn nv_read_public(&mut self, index: u32) -> Result<NvPublic, TpmCommandError> {
        let c = Command::new(CommandCode::NvReadPublic, &[index], &[]);
        self.run(CommandCode::NvReadPublic, c, 0, |mut reply| {
            let mut area = Reader::new(reply.params.tpm2b()?);
            if area.u32()? != index {
                return Err(ParseError::Unexpected("NV public area of another index"));
            }
            area.u16()?; // nameAlg
            let attributes = area.u32()?;
            area.tpm2b()?; // authPolicy
            let size = area.u16()?;
            Ok(NvPublic { attributes, size })
        })
    }

    /// The whole content of an NV index (`TPM2_NV_Read` in chunks of the
    /// TPM's NV buffer size), authorised by the index itself or the owner,
    /// whichever its attributes allow, with an empty password.
    pub fn nv_read(&mut self, index: u32) -> Result<Vec<u8>, TpmCommandError> {
        let public = self.nv_read_public(index)?;
        let auth = if public.attributes & TPMA_NV_AUTHREAD != 0 {
            index
        } else if public.attributes & TPMA_NV_OWNERREAD != 0 {
            TPM_RH_OWNER
        } else {
            return Err(TpmCommandError::Malformed {
                command: CommandCode::NvRead,
                problem: ParseError::Unexpected("NV index readable by neither owner nor itself"),
            });
        };
        let chunk = self
            .property(TPM_PT_NV_BUFFER_MAX)?
            .clamp(64, u32::from(u16::MAX)) as u16;
        let mut data = Vec::with_capacity(usize::from(public.size));
        while data.len() < usize::from(public.size) {
            let offset = data.len() as u16;
            let want = chunk.min(public.size - offset);
            let mut c = Command::new(CommandCode::NvRead, &[auth, index], &[b""]);
            c.u16(want).u16(offset);
            let part = self.run(CommandCode::NvRead, c, 0, |mut reply| {
                let part = reply.params.tpm2b()?;
                if part.len() != usize::from(want) {
                    return Err(ParseError::Unexpected("NV read returned another length"));
                }
                Ok(part.to_vec())
            })?;
            data.extend_from_slice(&part);
        }
        Ok(data)
    }
}

/// Writes a `TPML_PCR_SELECTION` of one bank: three select bytes cover the
/// 24 PCRs, bit `i % 8` of byte `i / 8` selecting PCR `i`.
fn write_pcr_selection(c: &mut Command, bank: PcrBank, bits: u32) {
    let select = bits.to_le_bytes();
    c.u32(1).u16(bank.algorithm_id()).u8(3).bytes(&select[..3]);
}

/// Reads a `TPML_PCR_SELECTION` and returns the bitmap of `bank`'s PCRs.
fn read_pcr_selection(r: &mut Reader<'_>, bank: PcrBank) -> Result<u32, ParseError> {
    let mut bits = 0u32;
    for _ in 0..r.u32()? {
        let hash = r.u16()?;
        let size = usize::from(r.u8()?);
        let select = r.take(size)?;
        if hash != bank.algorithm_id() {
            continue;
        }
        for (byte, &value) in select.iter().enumerate() {
            if value != 0 && byte >= 3 {
                return Err(ParseError::Unexpected("PCR beyond 23 selected"));
            }
            if byte < 3 {
                bits |= u32::from(value) << (8 * byte);
            }
        }
    }
    Ok(bits)
}

/// Reads a `TPMT_SIGNATURE` that must be ECDSA and returns raw `r || s`.
fn read_ecdsa_signature(r: &mut Reader<'_>) -> Result<[u8; 64], ParseError> {
    if r.u16()? != TPM_ALG_ECDSA {
        return Err(ParseError::Unexpected("signature is not ECDSA"));
    }
    r.u16()?; // hash
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&crate::keys::coordinate(r.tpm2b()?)?);
    sig[32..].copy_from_slice(&crate::keys::coordinate(r.tpm2b()?)?);
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_selection_is_little_endian_bytes() {
        let mut c = Command::new(CommandCode::PcrRead, &[], &[]);
        write_pcr_selection(&mut c, PcrBank::Sha256, (1 << 0) | (1 << 9) | (1 << 23));
        let bytes = c.finish();
        assert_eq!(&bytes[10..], &[0, 0, 0, 1, 0, 0x0b, 3, 0x01, 0x02, 0x80]);
        let mut r = Reader::new(&bytes[10..]);
        assert_eq!(
            read_pcr_selection(&mut r, PcrBank::Sha256),
            Ok((1 << 0) | (1 << 9) | (1 << 23))
        );
        // Other banks are skipped; PCRs past 23 are refused.
        let other = [
            0, 0, 0, 2, 0, 4, 3, 0xff, 0xff, 0xff, 0, 0x0b, 4, 1, 0, 0, 1,
        ];
        assert!(read_pcr_selection(&mut Reader::new(&other), PcrBank::Sha256).is_err());
        let sha1_only = [0, 0, 0, 1, 0, 4, 3, 0xff, 0xff, 0xff];
        assert_eq!(
            read_pcr_selection(&mut Reader::new(&sha1_only), PcrBank::Sha256),
            Ok(0)
        );
    }

    #[test]
    fn signatures_must_be_ecdsa() {
        let mut good = vec![0, 0x18, 0, 0x0b, 0, 32];
        good.extend_from_slice(&[1; 32]);
        good.extend_from_slice(&[0, 31]);
        good.extend_from_slice(&[2; 31]);
        let sig = read_ecdsa_signature(&mut Reader::new(&good)).unwrap();
        assert_eq!(&sig[..32], &[1; 32]);
        assert_eq!(sig[32], 0);
        assert_eq!(&sig[33..], &[2; 31]);
        let mut rsa = good.clone();
        rsa[1] = 0x14;
        assert!(read_ecdsa_signature(&mut Reader::new(&rsa)).is_err());
        for len in 0..good.len() {
            assert!(read_ecdsa_signature(&mut Reader::new(&good[..len])).is_err());
        }
    }
}
