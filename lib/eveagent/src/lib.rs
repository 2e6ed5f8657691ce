//! The zedagent logic: onboarding and the config, info, metrics and logs
//! loops of an EVE node, portable (`no_std` + `alloc`) and driven by traits
//! the unikernel glue fills ([`io`]).
//!
//! Life of a device, as EVE's client and zedagent do it:
//!
//! 1. First boot: a P-256 device key and a self-signed device certificate
//!    are created and kept on the state volume ([`identity`]).
//! 2. `GET certs`: the controller's certificates are verified against
//!    `root-certificate.pem` and checkpointed.
//! 3. `POST register`, signed with the onboarding key (every boot while the
//!    onboarding key exists): 201/200 onboarded, 409 conflict and 403 not
//!    pre-registered are retried with backoff (1 s doubling to 10 min, with
//!    jitter).
//! 4. `POST uuid`, then `POST id/{uuid}/attest` (the no-TPM quote) for the
//!    integrity token.
//! 5. Steady state: config polls in [0.3 T, T]; each new config is verified
//!    (signature, UUID, timestamp) and checkpointed before it is applied;
//!    device info on change and periodically through a retrying queue;
//!    metrics periodically; logs as gzip batches to `newlogs`.
//!
//! [`Agent::poll`] runs what is due and returns when to poll again; the
//! glue calls it from its poll loop with an [`io::Http`] implementation.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod agent;
pub mod app_logs;
pub mod backoff;
pub mod flow_logs;
pub mod gzip;
pub mod identity;
pub mod io;
pub mod logs;
pub mod queue;
pub mod settings;

pub use agent::{
    Agent, AttestStatus, Bootstrap, ContentInfo, ContentTables, Counters, Deps, Event, Phase,
    QUOTED_PCRS, Quoter, RegisterStatus, Rejections, Status, TpmQuote,
};
pub use eve_proto::sign::Signer as DeviceKey;
pub use identity::{DeviceKeySource, Onboarding, Rejection, SecretKey, SetupError};
pub use logs::{Level, LogRecord};
pub use settings::Settings;
