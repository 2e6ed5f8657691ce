//! Downloads for the downloader service, portable and host-tested: a file
//! on an HTTP or HTTPS datastore (EVE's `DatastoreConfig`) streamed into a
//! [`BlobSink`] (the host's blob store, in the service), resumed where the
//! sink says it is.
//!
//! - Resume: `Range: bytes=N-` with `If-Range` when the server gave a
//!   strong `ETag`, else checked by the total length; a `206` must start
//!   exactly at N; a server that ignores the range (or whose file changed)
//!   answers `200`, and the blob restarts cleanly at 0.
//! - Bounds: the expected size (from the signed config) or a maximum caps
//!   every body, so a lying `Content-Length` or an endless body is an
//!   error, not a full disk; redirects are followed a bounded number of
//!   times, never from https to http, and credentials go only to the
//!   datastore's own host.
//! - Connections: a [`Transport`] opens them along a [`Route`] (the
//!   unikernel's stack and TLS, or std sockets in tests); a configured
//!   proxy is reached with a `CONNECT` [`tunnel`].
//! - Retries: [`retry`] is the backoff logic, pure, over a [`retry::Clock`];
//!   [`queue`] decides which of several downloads takes the next turn.
//!
//! Errors are small `Copy` values, as guest errors are.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;
#[cfg(any(test, feature = "testing"))]
extern crate std;

pub mod datastore;
mod download;
mod error;
pub mod queue;
pub mod retry;
#[cfg(feature = "testing")]
pub mod testing;
mod transport;

pub use datastore::{Credentials, Datastore, DatastoreError, DsKind};
pub use download::{BlobSink, Download, Outcome, SinkError, Validator, download};
pub use error::FetchError;
pub use transport::{ConnectError, Proxy, Route, Transport, connect, tunnel};
