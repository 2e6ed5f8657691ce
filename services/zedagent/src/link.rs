//! The agent's [`Http`]: each request on a fresh HTTPS connection to the
//! controller named in the CONFIG partition, through our network stack.

use alloc::vec::Vec;
use core::time::Duration;

use eveagent::io::{Http, Method, Request, Response, TransportError};
use evehttp::{HttpError, Target};
use evehttps::{FetchError, TlsSession};
use net::Stack;

/// Bound on every socket operation of one exchange.
const TIMEOUT: Duration = Duration::from_secs(15);

pub struct ControllerLink {
    pub stack: Stack,
    target: Target,
    tls: TlsSession,
    stamps: Stamps,
}

impl ControllerLink {
    pub fn new(stack: Stack, target: Target, tls: TlsSession) -> Self {
        Self {
            stack,
            target,
            tls,
            stamps: Stamps::default(),
        }
    }
}

/// Console stamps for the onboarding benchmark, each printed once, at the
/// moment the controller's answer arrives: `registered` (register answered
/// 200 or 201), `config` (a config answered 200) and `info` (device info
/// accepted), with the heap's high-water mark after the last.
#[derive(Default)]
struct Stamps {
    registered: bool,
    config: bool,
    info: bool,
}

impl Stamps {
    fn observe(&mut self, path: &str, status: u16) {
        let stamp = |done: &mut bool, stage: &str| {
            if !*done {
                *done = true;
                hal::console::print(format_args!(
                    "{}{stage} {}\n",
                    guest_abi::BOOT_TIMER_MARKER,
                    hal::clock::Instant::now().as_nanos()
                ));
            }
        };
        let ok = matches!(status, 200 | 201);
        if ok && path.ends_with("/register") {
            stamp(&mut self.registered, "registered");
        } else if status == 200 && path.ends_with("/config") {
            stamp(&mut self.config, "config");
        } else if ok && path.ends_with("/info") && !self.info {
            stamp(&mut self.info, "info");
            hal::console::print(format_args!(
                "{}heap_high_water {}\n",
                guest_abi::METRIC_MARKER,
                runtime::heap_stats().peak
            ));
        }
    }
}

impl Http for ControllerLink {
    fn send(&mut self, request: &Request) -> Result<Response, TransportError> {
        let http_request = match request.method {
            Method::Get => evehttp::Request::get(&request.path),
            Method::Post => evehttp::Request::post(&request.path, &request.body)
                .header("Content-Type", request.content_type),
        }
        .body_limit(request.max_response as u64);
        let mut body = Vec::new();
        let mut too_large = false;
        let limit = request.max_response;
        let fetched = evehttps::fetch(
            &mut self.stack,
            &self.target,
            Some(&mut self.tls),
            &http_request,
            TIMEOUT,
            &mut |part| {
                if body.len() + part.len() > limit {
                    too_large = true;
                } else {
                    body.extend_from_slice(part);
                }
            },
        )
        .map_err(transport_error)?;
        if too_large {
            return Err(TransportError::TooLarge);
        }
        self.stamps.observe(&request.path, fetched.status);
        Ok(Response {
            status: fetched.status,
            body,
        })
    }
}

fn transport_error(e: FetchError) -> TransportError {
    log::warn!("controller exchange failed: {e}");
    match e {
        FetchError::Resolve(_) | FetchError::Connect(_) => TransportError::Connect,
        FetchError::Tls(_) | FetchError::NoTlsConfig => TransportError::Tls,
        FetchError::Http(HttpError::BodyTooLarge) => TransportError::TooLarge,
        FetchError::Http(HttpError::Read(kind) | HttpError::Write(kind))
            if kind == embedded_io::ErrorKind::TimedOut =>
        {
            TransportError::Timeout
        }
        FetchError::Http(_) => TransportError::Protocol,
    }
}
