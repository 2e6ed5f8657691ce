//! TPM 2.0 mediation: the host owns the TPM and runs only the commands a
//! service is granted.
//!
//! The host is the only user of the node's TPM: `/dev/tpmrm0` on a board
//! ([`DeviceTransport`]), or an [`Swtpm`] it starts and owns, with state
//! kept per node, in development and tests ([`SocketTransport`]). Services
//! call the operations of `hostops::tpm` over the bus; once the broker has
//! checked the manifest's grants, the [`Mediator`] checks each request,
//! runs the commands through [`Tpm`] and answers.
//!
//! Keys: the device key (EVE's handle `0x817FFFFF`, ECDSA P-256 over
//! SHA-256, the key of the device certificate) and the attestation key for
//! quotes (EVE's quote-key handle `0x81000004`, restricted). Both are
//! generated inside the TPM with `fixedTPM | fixedParent`, so their private
//! parts never leave it; no operation here returns one.
//!
//! TPM 2.0 commands are marshalled by hand (no C library), with password
//! sessions and an empty owner authorisation.
#![forbid(unsafe_code)]

mod identity;
mod keys;
mod marshal;
mod mediator;
mod swtpm;
mod tpm;
mod transport;

pub use identity::{EK_CERT_INDICES, EkCertError, KeyError};
pub use keys::{
    ATTESTATION_KEY_HANDLE, DEVICE_KEY_HANDLE, ECDH_KEY_HANDLE, EccPublic, KeyRole, attributes,
};
pub use marshal::{CommandCode, ParseError};
pub use mediator::{Mediator, Refusal};
pub use swtpm::{Swtpm, SwtpmError};
pub use tpm::{NvPublic, Quote, Tpm, TpmCommandError};
pub use transport::{
    COMMAND_TIMEOUT, DeviceTransport, MAX_RESPONSE_LEN, SocketTransport, TpmTransport,
    TransportError,
};
