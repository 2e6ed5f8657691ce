//! The host's `domains` operations as `domainctl::Host`, over the bus.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use domainctl::{Host, HostError};
use hostops::domains::{
    self, ConsoleChunk, ConsoleRequest, DomainError, DomainInfo, DomainRef, DomainUsage,
    StartRequest, StopAnswer, StopRequest,
};
use runtime::service::{self, CallError};

/// The bus to the host.
pub struct BusHost;

fn domain(e: CallError<DomainError>) -> HostError {
    match e {
        CallError::Failed(error) => HostError::Domain(error),
        other => HostError::Call(format!("domains: {other}")),
    }
}

impl Host for BusHost {
    fn start(&mut self, request: &StartRequest) -> Result<DomainInfo, HostError> {
        service::call::<domains::Start>(request).map_err(domain)
    }

    fn stop(&mut self, uuid: &str, timeout_secs: u32) -> Result<StopAnswer, HostError> {
        service::call::<domains::Stop>(&StopRequest {
            uuid: String::from(uuid),
            timeout_secs,
        })
        .map_err(domain)
    }

    fn list(&mut self) -> Result<Vec<DomainInfo>, HostError> {
        service::call::<domains::List>(&domains::Empty {})
            .map(|l| l.domains)
            .map_err(domain)
    }

    fn usage(&mut self, uuid: &str) -> Result<DomainUsage, HostError> {
        service::call::<domains::Usage>(&DomainRef {
            uuid: String::from(uuid),
        })
        .map_err(domain)
    }

    fn console(
        &mut self,
        uuid: &str,
        offset: u64,
        max_bytes: u32,
    ) -> Result<ConsoleChunk, HostError> {
        service::call::<domains::Console>(&ConsoleRequest {
            uuid: String::from(uuid),
            offset,
            max_bytes,
        })
        .map_err(domain)
    }
}
