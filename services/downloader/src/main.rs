//! downloader: fetches what volumemgr asks for from the config's
//! datastores (HTTP, HTTPS, OCI registries) into the host's blob store,
//! resuming where the store says a blob is.
//!
//! It subscribes to `datastore-config` (zedagent's datastores with their
//! credentials decrypted) and `download-request` (volumemgr's), and
//! publishes `download-status`. Bytes go to the host's blob store through
//! the `blobs` target, whose write side is all the manifest grants it:
//! the downloader can write bytes into a slot volumemgr created, ask how
//! much is staged and say "complete", never make a blob verified itself.
//!
//! The network stack carries one connection at a time, so downloads take
//! turns (see `jobs`); everything a download needs to resume (the staged
//! bytes and the server's validator) is in the blob store, so a restart
//! of this service or of the node resumes each download where its bytes
//! were last made durable.
//!
//! `fetch.proxy=HOST:PORT` on the command line sends every connection
//! through that HTTP proxy (with `CONNECT`), except to the names in
//! `fetch.noproxy=A,B,.domain`.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod jobs;
mod sink;
mod transport;

use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::time::Duration;

use evetls::{Csprng, TlsBuffers};
use fetch::Proxy;
use net::Stack;
use runtime::service::Service;
use topics::{DatastoreConfig, DownloadRequests};

use hal::clock::Instant;
use jobs::{Downloader, Turned};
use transport::TlsParts;

runtime::entry!("downloader", main);

/// How long the service waits for its first address before it goes on
/// (DHCP keeps trying in the background).
const ADDRESS_WAIT: Duration = Duration::from_secs(10);

fn main() -> i32 {
    let mut stack = match Stack::from_boot(runtime::boot_info()) {
        Ok(stack) => stack,
        Err(e) => {
            log::error!("downloader cannot start: network: {e}");
            return guest_abi::EXIT_FAILURE;
        }
    };
    if let Err(e) = stack.wait_for_address(ADDRESS_WAIT) {
        log::warn!("no address yet ({e}); downloads wait for one");
    }
    let mut seed = [0u8; 32];
    if let Err(e) = hal::entropy::fill(&mut seed, false) {
        log::error!("downloader cannot start: entropy: {e:?}");
        return guest_abi::EXIT_FAILURE;
    }
    let tls = TlsParts {
        rng: Csprng::from_entropy(seed),
        buffers: TlsBuffers::new(),
    };
    let jitter = u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]);
    let stack = RefCell::new(stack);
    let downloader = RefCell::new(Downloader::new(tls, proxy(), jitter));

    let mut service = Service::new();
    service.poller(|ctl| {
        let mut stack = stack.borrow_mut();
        let progress = stack.poll();
        if let Some(at) = stack.poll_at() {
            ctl.wake_by(at);
        }
        progress
    });
    service.on::<DatastoreConfig>(|_, id, change| {
        let value = change.current();
        downloader.borrow_mut().set_datastore(id, value);
    });
    service.on::<DownloadRequests>(|_, key, change| {
        let value = change.current();
        downloader.borrow_mut().set_request(key, value);
    });
    service.on_synchronized::<DownloadRequests>(|_| {
        downloader.borrow_mut().requests_synchronized();
    });
    // The downloads as a poller: a turn whenever one is due, and when none
    // is, the loop sleeps until the next retry or a request arrives.
    service.poller(
        |ctl| match downloader.borrow_mut().turn(&mut stack.borrow_mut()) {
            Turned::Ran => true,
            Turned::Idle(retry) => {
                if let Some(delay) = retry {
                    ctl.wake_by(Instant::now().saturating_add(delay));
                }
                false
            }
        },
    );
    service.run()
}

/// The proxy from the command line, if any.
fn proxy() -> Option<Proxy> {
    let params = runtime::cmdline();
    let (host, port) = params.get("fetch.proxy")?.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let exceptions: Vec<String> = params
        .get("fetch.noproxy")
        .map(|list| list.split(',').map(String::from).collect())
        .unwrap_or_default();
    log::info!("downloads go through the proxy {host}:{port}");
    Some(Proxy {
        host: String::from(host),
        port,
        credentials: None,
        exceptions,
    })
}
