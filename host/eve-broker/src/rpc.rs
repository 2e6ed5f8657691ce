//! Host targets that services call over the bus (e.g. the TPM).

/// Why a handler refused or failed a call; the text goes back to the
/// caller as the response payload and into the host log.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RpcError {
    /// The caller's grants do not cover this operation.
    #[error("denied: {0}")]
    Denied(String),
    /// The payload is not a request the handler understands.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The operation ran and failed.
    #[error("failed: {0}")]
    Failed(String),
    /// The handler cannot take the call now.
    #[error("busy")]
    Busy,
}

impl RpcError {
    pub(crate) fn status(&self) -> evebus::Status {
        match self {
            RpcError::Denied(_) => evebus::Status::Denied,
            RpcError::BadRequest(_) => evebus::Status::BadRequest,
            RpcError::Failed(_) => evebus::Status::Failed,
            RpcError::Busy => evebus::Status::Busy,
        }
    }
}

/// A request target. The broker has checked that `caller` may call this
/// target at all; the handler checks the operation in `payload` against
/// the caller's own grants (e.g. which TPM commands the manifest allows).
///
/// Calls run on the caller's connection thread: a service waits for its
/// own calls, others are not held up. A slow call also delays that
/// service's heartbeats, so handlers should answer within a fraction of
/// the heartbeat timeout.
pub trait RpcHandler: Send + Sync {
    fn call(&self, caller: &str, payload: &[u8]) -> Result<Vec<u8>, RpcError>;
}

impl<F> RpcHandler for F
where
    F: Fn(&str, &[u8]) -> Result<Vec<u8>, RpcError> + Send + Sync,
{
    fn call(&self, caller: &str, payload: &[u8]) -> Result<Vec<u8>, RpcError> {
        self(caller, payload)
    }
}
