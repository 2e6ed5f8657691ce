//! A scripted in-memory transport for the client tests.
//!
//! It delivers its script in pieces chosen by a [`Split`] (one byte at a
//! time, fixed sizes, or pseudo-random sizes), can generate long bodies on
//! the fly so that tests never hold them, injects errors, and records every
//! byte written.

#![allow(dead_code)] // each test binary uses a different part of the helper

use std::collections::VecDeque;

use embedded_io::{ErrorKind, ErrorType, Read, Write};

/// One part of what the fake server sends.
#[derive(Debug)]
pub enum Seg {
    /// These bytes.
    Bytes(Vec<u8>),
    /// `len` bytes of [`pattern_byte`], numbered from the start of the
    /// first pattern segment.
    Pattern(u64),
    /// A read fails with this kind.
    Error(ErrorKind),
    /// The server waits for the next request: reads stop here (returning
    /// end of stream if nothing else came first) until the client has
    /// flushed one more request than there are turns behind.
    Turn,
}

/// How reads are cut.
#[derive(Debug, Clone, Copy)]
pub enum Split {
    /// At most this many bytes per read.
    Max(usize),
    /// Pseudo-random sizes from 1 to `max`, from a xorshift state.
    Random { state: u64, max: usize },
}

/// The byte at `index` of generated bodies.
pub fn pattern_byte(index: u64) -> u8 {
    (index.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8
}

/// xorshift64: deterministic pseudo-random numbers for splits and fuzzing.
pub use wirebytes::testing::xorshift;

#[derive(Debug)]
pub struct Fake {
    segs: VecDeque<Seg>,
    offset: usize,
    pattern_pos: u64,
    split: Split,
    /// Everything the client wrote.
    pub written: Vec<u8>,
    /// Largest write accepted at once.
    pub write_max: usize,
    /// Writes fail with this kind.
    pub write_error: Option<ErrorKind>,
    /// Writes return `Ok(0)`.
    pub write_zero: bool,
    /// Number of read calls that returned data.
    pub reads: usize,
    flushes: usize,
    turns: usize,
}

impl Fake {
    pub fn new(segs: Vec<Seg>, split: Split) -> Self {
        Self {
            segs: segs.into(),
            offset: 0,
            pattern_pos: 0,
            split,
            written: Vec::new(),
            write_max: usize::MAX,
            write_error: None,
            write_zero: false,
            reads: 0,
            flushes: 0,
            turns: 0,
        }
    }

    /// A server answering each request with the next of `responses`.
    pub fn responses(responses: &[&[u8]], split: Split) -> Self {
        let mut segs = Vec::new();
        for (i, r) in responses.iter().enumerate() {
            if i > 0 {
                segs.push(Seg::Turn);
            }
            segs.push(Seg::Bytes(r.to_vec()));
        }
        Self::new(segs, split)
    }

    /// A transport that sends `bytes` and then end of stream.
    pub fn bytes(bytes: &[u8], split: Split) -> Self {
        Self::new(vec![Seg::Bytes(bytes.to_vec())], split)
    }

    fn next_len(&mut self) -> usize {
        match &mut self.split {
            Split::Max(n) => (*n).max(1),
            Split::Random { state, max } => (xorshift(state) % (*max).max(1) as u64) as usize + 1,
        }
    }
}

impl ErrorType for Fake {
    type Error = ErrorKind;
}

impl Read for Fake {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        if buf.is_empty() {
            return Ok(0);
        }
        let cut = self.next_len().min(buf.len());
        loop {
            let Some(seg) = self.segs.front_mut() else {
                return Ok(0);
            };
            match seg {
                Seg::Bytes(bytes) if self.offset < bytes.len() => {
                    let n = cut.min(bytes.len() - self.offset);
                    buf[..n].copy_from_slice(&bytes[self.offset..self.offset + n]);
                    self.offset += n;
                    self.reads += 1;
                    return Ok(n);
                }
                Seg::Pattern(left) if *left > 0 => {
                    let n = (cut as u64).min(*left) as usize;
                    for b in &mut buf[..n] {
                        *b = pattern_byte(self.pattern_pos);
                        self.pattern_pos += 1;
                    }
                    *left -= n as u64;
                    self.reads += 1;
                    return Ok(n);
                }
                Seg::Turn if self.flushes <= self.turns + 1 => return Ok(0),
                Seg::Turn => {
                    self.turns += 1;
                    self.segs.pop_front();
                }
                Seg::Error(kind) => {
                    let kind = *kind;
                    self.segs.pop_front();
                    return Err(kind);
                }
                _ => {
                    self.segs.pop_front();
                    self.offset = 0;
                }
            }
        }
    }
}

impl Write for Fake {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        if let Some(kind) = self.write_error {
            return Err(kind);
        }
        if self.write_zero {
            return Ok(0);
        }
        let n = buf.len().min(self.write_max);
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        self.flushes += 1;
        Ok(())
    }
}

/// The splits every parsing test runs under.
pub fn splits() -> Vec<Split> {
    let mut all: Vec<Split> = [1, 2, 3, 5, 7, 16, 64, 4096].map(Split::Max).to_vec();
    all.extend((1..=8).map(|seed| Split::Random {
        state: (seed as u64).wrapping_mul(0x2545_f491_4f6c_dd1d),
        max: 40,
    }));
    all
}
