//! Responses from a TPM (or whatever answers on its device node): every
//! command's response parser must give a value or an error, never a panic.
//!
//! The first input byte chooses the command; the rest is a script of
//! responses, each a little-endian `u16` length and that many bytes,
//! answered to the commands in order (some operations send several).
#![no_main]

use std::io;

use eve_tpm::{
    ATTESTATION_KEY_HANDLE, DEVICE_KEY_HANDLE, EK_CERT_INDICES, KeyRole, Tpm, TpmTransport,
    TransportError,
};
use hostops::tpm::{PcrBank, PcrSelection};
use libfuzzer_sys::fuzz_target;

/// Response codes the host retries after a real-time sleep: a script of
/// them would only measure sleeping, so the transport fails instead.
const RETRIED: [u32; 3] = [0x908, 0x90a, 0x922];

struct Script<'a> {
    rest: &'a [u8],
}

impl TpmTransport for Script<'_> {
    fn transact(&mut self, _command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let eof = || TransportError::Io(io::ErrorKind::UnexpectedEof.into());
        let (len, rest) = self.rest.split_first_chunk::<2>().ok_or_else(eof)?;
        let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
        let (response, rest) = rest.split_at(len);
        self.rest = rest;
        let code = response
            .get(6..10)
            .and_then(|c| <[u8; 4]>::try_from(c).ok())
            .map(u32::from_be_bytes);
        if code.is_some_and(|c| RETRIED.contains(&c)) {
            return Err(eof());
        }
        Ok(response.to_vec())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&command, script)) = data.split_first() else {
        return;
    };
    let mut tpm = Tpm::new(Script { rest: script });
    let selection = PcrSelection::from_bits(0x00ff_ffff).expect("all 24 PCRs");
    match command % 9 {
        0 => drop(tpm.startup()),
        1 => drop(tpm.handles(0x8100_0000)),
        2 => drop(tpm.create_primary(KeyRole::Device)),
        3 => drop(tpm.read_public(DEVICE_KEY_HANDLE)),
        4 => drop(tpm.sign(DEVICE_KEY_HANDLE, &[7; 32])),
        5 => {
            if let Ok(values) = tpm.pcr_read(PcrBank::Sha256, selection) {
                assert_eq!(values.len(), 24);
            }
        }
        6 => drop(tpm.quote(ATTESTATION_KEY_HANDLE, &[1; 32], PcrBank::Sha256, selection)),
        7 => drop(tpm.nv_read_public(EK_CERT_INDICES[0])),
        _ => drop(tpm.nv_read(EK_CERT_INDICES[0])),
    }
});
