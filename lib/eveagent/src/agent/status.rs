//! What the agent tells the rest of the node: its phase, the outcomes of
//! registration and attestation, events, counters and the status line.

use alloc::string::String;

use crate::identity::Rejection;
use crate::settings::Settings;

/// Where onboarding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Fetching and verifying the controller certificates.
    FetchCerts,
    /// Registering with the onboarding certificate.
    Register,
    /// Asking for the device UUID.
    FetchUuid,
    /// Getting an integrity token.
    Attest,
    /// Onboarded: config, info, metrics and logs loops.
    Running,
}

/// Outcome of the last registration attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterStatus {
    /// Not tried yet (or no onboarding key).
    NotTried,
    /// 201 or 200: the controller knows this device.
    Onboarded,
    /// Registration was refused (any status) but `/uuid` answered for our
    /// device certificate: the controller knew this device already, as
    /// after a reboot against a controller that answers a repeat
    /// registration with 409 (Adam checks the serial before the
    /// certificate).
    Recognized,
    /// 409: the onboarding cert and serial belong to another device cert,
    /// and `/uuid` did not answer for ours; retried with backoff (the
    /// operator may delete the other device).
    Conflict,
    /// 403: the onboarding cert (or serial) is not pre-registered, and
    /// `/uuid` did not answer for our certificate; retried.
    NotPreRegistered,
    /// Another status or no answer; retried.
    Failed,
}

/// Attestation state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttestStatus {
    /// No integrity token.
    None,
    /// Holding a token from the no-TPM quote.
    Attested,
    /// The controller refused the last request.
    Refused,
}

/// Something the rest of the node must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A config was accepted (read [`Agent::config`]); `from_checkpoint`
    /// when it is the checkpoint loaded at boot.
    ConfigAccepted {
        /// Loaded from the state volume rather than received.
        from_checkpoint: bool,
    },
    /// The effective settings (timers, log levels) changed.
    SettingsChanged(Settings),
    /// The controller assigned (or confirmed) this UUID.
    Onboarded(String),
}

/// Counts of rejected controller answers, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    /// Undecodable or truncated.
    pub malformed: u64,
    /// Over the size limit.
    pub oversized: u64,
    /// Signature did not verify.
    pub bad_signature: u64,
    /// Signed by a certificate we do not know.
    pub unknown_signer: u64,
    /// `/certs` did not chain to the root.
    pub bad_chain: u64,
    /// Config for another device.
    pub wrong_uuid: u64,
    /// Config older than ours.
    pub stale_timestamp: u64,
}

impl Rejections {
    pub(super) fn count(&mut self, r: Rejection) {
        let c = match r {
            Rejection::Malformed => &mut self.malformed,
            Rejection::Oversized => &mut self.oversized,
            Rejection::BadSignature => &mut self.bad_signature,
            Rejection::UnknownSigner => &mut self.unknown_signer,
            Rejection::BadChain => &mut self.bad_chain,
            Rejection::WrongUuid => &mut self.wrong_uuid,
            Rejection::StaleTimestamp => &mut self.stale_timestamp,
        };
        *c += 1;
    }

    /// Each count with its stable name (the suffix of its `metricItems`
    /// key after [`METRIC_REJECTED`]).
    pub fn by_reason(&self) -> [(&'static str, u64); 7] {
        [
            ("malformed", self.malformed),
            ("oversized", self.oversized),
            ("bad_signature", self.bad_signature),
            ("unknown_signer", self.unknown_signer),
            ("bad_chain", self.bad_chain),
            ("wrong_uuid", self.wrong_uuid),
            ("stale_timestamp", self.stale_timestamp),
        ]
    }

    /// All rejections.
    pub fn total(&self) -> u64 {
        self.malformed
            + self.oversized
            + self.bad_signature
            + self.unknown_signer
            + self.bad_chain
            + self.wrong_uuid
            + self.stale_timestamp
    }
}

/// Cumulative counters since this agent started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests sent.
    pub requests: u64,
    /// Requests without an answer.
    pub transport_errors: u64,
    /// Answers with an unexpected status.
    pub unexpected_status: u64,
    /// Rejected answers.
    pub rejected: Rejections,
    /// Registration answered 409.
    pub register_conflicts: u64,
    /// Refused registrations followed by a `/uuid` request with the device
    /// certificate (EVE's fallback).
    pub register_fallbacks: u64,
    /// Configs accepted from the controller.
    pub configs_accepted: u64,
    /// Config polls answered 304.
    pub configs_unchanged: u64,
    /// Info messages accepted by the controller.
    pub info_sent: u64,
    /// Info messages dropped (refused for good, or pushed out of the queue).
    pub info_dropped: u64,
    /// Metrics messages accepted.
    pub metrics_sent: u64,
    /// Metrics messages lost (not retried, as EVE).
    pub metrics_failed: u64,
    /// Log batches accepted.
    pub log_batches_sent: u64,
    /// Log lines in the batches accepted.
    pub log_lines_sent: u64,
    /// gzip bytes of the batches accepted.
    pub log_bytes_sent: u64,
    /// Log batches refused for good.
    pub log_batches_dropped: u64,
    /// Apps' log batches accepted.
    pub app_log_batches_sent: u64,
    /// Apps' log lines in the batches accepted.
    pub app_log_lines_sent: u64,
    /// gzip bytes of the apps' batches accepted.
    pub app_log_bytes_sent: u64,
    /// State-volume writes that failed.
    pub persist_errors: u64,
}

/// What the console and the host's status line show.
#[derive(Debug, Clone, Copy)]
pub struct Status<'a> {
    /// Onboarding phase.
    pub phase: Phase,
    /// Device UUID once known.
    pub uuid: Option<&'a str>,
    /// `configHash` of the current config (empty: none).
    pub config_hash: &'a str,
    /// Registration outcome.
    pub register: RegisterStatus,
    /// Attestation state.
    pub attest: AttestStatus,
    /// Last config poll answered 200 or 304 (monotonic ms).
    pub last_config_ms: Option<u64>,
    /// Last info accepted (monotonic ms).
    pub last_info_ms: Option<u64>,
    /// Last metrics accepted (monotonic ms).
    pub last_metrics_ms: Option<u64>,
    /// Log batches waiting.
    pub log_batches_queued: usize,
    /// Log lines dropped (queue bound or refusal).
    pub log_lines_dropped: u64,
    /// Counters.
    pub counters: &'a Counters,
}
