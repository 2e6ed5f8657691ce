//! The OCI distribution client for the downloader service, portable and
//! host-tested: from a content tree's `docker://host[:port]/repo[:tag|@digest]`
//! to the manifest, config and layer descriptors for the node's arch, and
//! each blob streamed (with resume) into a [`fetch::BlobSink`].
//!
//! Trust: a manifest's digest is always the sha256 of the bytes received,
//! checked against the reference's digest, the config's, or the
//! descriptor of the index it came from; `Docker-Content-Digest` is only a
//! hint, and a hint that contradicts the bytes is an error. Blob bytes are
//! not trusted here at all: the host's blob store hashes them against the
//! descriptor's digest. Every size is bounded, media types are checked.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod auth;
mod client;
mod digest;
mod error;
pub mod manifest;
mod reference;

pub use auth::{Challenge, parse_challenge};
pub use client::{Fetched, Registry, RegistryOptions, Resolved};
pub use digest::Digest;
pub use error::OciError;
pub use manifest::{Descriptor, Document, Platform, parse_document};
pub use reference::{Reference, ReferenceError};
