//! An HTTP/1.1 client for our unikernels, sized for the EVE API v2 and for
//! streaming large image downloads.
//!
//! It runs over any blocking `embedded_io` transport (our TCP stream today,
//! a TLS stream later) and owns no sockets and no clock: timeouts are the
//! transport's, surfacing as [`HttpError::Read`] / [`HttpError::Write`].
//! Everything else the server controls is bounded by [`Limits`]: head size,
//! line length, header count, chunk lines, trailers, body size, interim
//! responses, and what is drained to reuse a connection. Parsing is total
//! (no panicking index, no unchecked arithmetic, no unbounded loop), since
//! the bytes come from the network.
//!
//! ```
//! use evehttp::{Client, HttpError, Request};
//!
//! /// Registers with the controller over an established connection.
//! fn register<T>(conn: T, body: &[u8]) -> Result<(u16, Vec<u8>), HttpError>
//! where
//!     T: embedded_io::Read + embedded_io::Write,
//! {
//!     let mut client = Client::new(conn, "controller.example:443")?;
//!     let req = Request::post("/api/v2/edgedevice/register", body)
//!         .header("Content-Type", "application/x-proto-binary");
//!     let mut resp = client.send(&req)?;
//!     let reply = resp.body.read_to_vec(64 * 1024)?;
//!     Ok((resp.status(), reply))
//! }
//! ```
//!
//! Not handled, on purpose: redirects (3xx is returned as is), content
//! codings (gzip), `Expect: 100-continue` waiting, pipelining, proxies and
//! absolute-form targets.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod client;
mod error;
mod request;
mod response;
mod target;
pub mod wire;

pub use client::{Body, Client, Limits, Response};
pub use error::HttpError;
pub use request::{Method, Request};
pub use response::{Framing, Headers, ResponseHead};
pub use target::{Scheme, Target, TargetError};
pub use wire::Version;
