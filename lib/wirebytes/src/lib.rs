//! Bounded byte reading and writing for wire formats, in the discipline of
//! smoltcp's `Packet`/`Repr` pairs:
//!
//! - a *checked view* wraps received bytes and its constructor checks every
//!   length its accessors rely on; the accessors then read fixed fields with
//!   the `*_at` helpers here, which are bounds-checked anyway, so a wrong
//!   check is an error and never a panic;
//! - a *parsed representation* is built by walking the bytes with a
//!   [`Reader`]: every read is bounded, length-prefixed fields are checked
//!   against a limit before anything is taken, and [`Reader::finish`] says
//!   whether the input was consumed exactly;
//! - `emit` writes a representation through a [`Sink`], such as a [`Writer`]
//!   over a caller's buffer, which refuses to overrun it; a field too long
//!   for its length prefix is an error, never a silently truncated length.
//!
//! Big- and little-endian helpers both exist: the network formats (DNS, the
//! TPM's command stream, the node bus) are big-endian, our own on-disk
//! formats (statestore) little-endian.
#![no_std]
#![forbid(unsafe_code)]

mod at;
mod reader;
mod writer;

#[cfg(feature = "testing")]
pub mod testing;

pub use at::{be_u16_at, be_u32_at, be_u64_at, le_u16_at, le_u32_at, le_u64_at, u8_at};
pub use reader::Reader;
pub use writer::{Sink, Writer};

/// Why bytes could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A field runs past the end of the input.
    Truncated,
    /// Bytes are left after what should have been the whole input.
    TrailingBytes,
    /// A length prefix exceeds the caller's limit, or a field is longer
    /// than its length prefix can say.
    TooLong,
    /// The output buffer has no room for the field.
    BufferTooSmall,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "field runs past the end of the input",
            Error::TrailingBytes => "bytes left after the last field",
            Error::TooLong => "field longer than its limit",
            Error::BufferTooSmall => "output buffer too small",
        })
    }
}

impl core::error::Error for Error {}
