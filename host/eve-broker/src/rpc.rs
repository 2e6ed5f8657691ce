//! Host targets that services call over the bus (`hostops`: the TPM,
//! ...).

/// Why a target did not answer a call with its response; the broker
/// answers the matching status.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RpcError {
    /// The payload is not a request of the operation; `.0` says why (it
    /// goes back to the caller and into the host log).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The operation ran and failed: `error` is the target's typed error,
    /// encoded, for the caller; `message` is for the host log.
    #[error("failed: {message}")]
    Failed { error: Vec<u8>, message: String },
    /// The target cannot take the call now.
    #[error("busy")]
    Busy,
}

impl RpcError {
    pub(crate) fn status(&self) -> evebus::Status {
        match self {
            RpcError::BadRequest(_) => evebus::Status::BadRequest,
            RpcError::Failed { .. } => evebus::Status::Failed,
            RpcError::Busy => evebus::Status::Busy,
        }
    }

    /// What goes back to the caller: the typed error of a failure, the
    /// reason of a bad request as text.
    pub(crate) fn into_payload(self) -> Vec<u8> {
        match self {
            RpcError::BadRequest(why) => why.into_bytes(),
            RpcError::Failed { error, .. } => error,
            RpcError::Busy => Vec::new(),
        }
    }
}

/// A host target's handler. Before it runs, the broker has checked that
/// the target's version is the caller's, that `operation` is one of the
/// target's (its `hostops::TargetSpec`), and that the manifest grants
/// `caller` that operation.
///
/// Calls run on the caller's connection thread: a service waits for its
/// own calls, others are not held up. A slow call also delays that
/// service's heartbeats, so handlers should answer within a fraction of
/// the heartbeat timeout.
pub trait RpcHandler: Send + Sync {
    fn call(&self, caller: &str, operation: &str, payload: &[u8]) -> Result<Vec<u8>, RpcError>;
}

impl<F> RpcHandler for F
where
    F: Fn(&str, &str, &[u8]) -> Result<Vec<u8>, RpcError> + Send + Sync,
{
    fn call(&self, caller: &str, operation: &str, payload: &[u8]) -> Result<Vec<u8>, RpcError> {
        self(caller, operation, payload)
    }
}
