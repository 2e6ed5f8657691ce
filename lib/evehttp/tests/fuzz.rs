//! Deterministic fuzzing: thousands of random and mutated responses, cut
//! into random reads, must never make the client panic or loop, whatever
//! error they produce.

mod common;

use common::{Fake, Split, xorshift};
use embedded_io::Read;
use evehttp::wire::{ChunkSizeLine, HeaderLine, StatusLine};
use evehttp::{Client, Limits, Request};

const SEEDS: [&[u8]; 6] = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: a/b\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\n",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\nuntil close",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabcHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
];

/// Bytes that matter to the parser, so random inputs get past the first
/// checks more often than uniform noise would.
const ALPHABET: &[u8] = b"HTTP/1.0 2\r\n:;,=-+ \tabcfABCF0123456789xX\0\x7f\xff";

fn random_input(rng: &mut u64) -> Vec<u8> {
    let len = (xorshift(rng) % 400) as usize;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        let r = xorshift(rng);
        out.push(if r.is_multiple_of(4) {
            r as u8
        } else {
            ALPHABET[(r >> 8) as usize % ALPHABET.len()]
        });
    }
    out
}

fn mutate(rng: &mut u64, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..1 + xorshift(rng) % 6 {
        let r = xorshift(rng);
        let at = if out.is_empty() {
            0
        } else {
            (r >> 16) as usize % (out.len() + 1)
        };
        match r % 7 {
            0 if at < out.len() => out[at] = (r >> 40) as u8,
            1 => out.insert(at, ALPHABET[(r >> 40) as usize % ALPHABET.len()]),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => out.splice(at..at, b"\r\n".iter().copied()).for_each(drop),
            4 => out
                .splice(at..at, b"ffffffffffffffffff".iter().copied())
                .for_each(drop),
            5 => out.truncate(at),
            _ => {
                let end = (at + (r >> 50) as usize % 32).min(out.len());
                let copy = out[at.min(end)..end].to_vec();
                out.splice(at..at, copy).for_each(drop);
            }
        }
    }
    out
}

/// Runs two exchanges over `input` and drains whatever comes back.
fn exercise(rng: &mut u64, input: &[u8]) {
    let split = Split::Random {
        state: xorshift(rng) | 1,
        max: 1 + (xorshift(rng) % 64) as usize,
    };
    let limits = if xorshift(rng).is_multiple_of(2) {
        Limits::default()
    } else {
        Limits {
            max_head_bytes: 128,
            max_line_bytes: 40,
            max_headers: 3,
            max_interim_responses: 1,
            max_chunk_line_bytes: 8,
            max_trailer_bytes: 16,
            max_drain_bytes: 8,
            body_limit: 64,
            read_buffer_bytes: 0,
        }
    };
    let mut client = Client::with_limits(Fake::bytes(input, split), "fuzz", limits).unwrap();
    for round in 0..2 {
        let req = if xorshift(rng).is_multiple_of(5) {
            Request::head("/")
        } else {
            Request::get("/")
        };
        let Ok(mut resp) = client.send(&req) else {
            continue;
        };
        let _ = resp.head.headers().get("content-length");
        let _ = resp.head.reason();
        if round == 0 && xorshift(rng).is_multiple_of(3) {
            let _ = resp.body.read_to_vec(100);
            continue;
        }
        let mut piece = [0u8; 97];
        let mut reads = 0;
        loop {
            let len = 1 + (xorshift(rng) % 97) as usize;
            match resp.body.read(&mut piece[..len]) {
                Ok(0) | Err(_) => break,
                Ok(_) => reads += 1,
            }
            assert!(reads <= input.len(), "more reads than input bytes");
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = 0x1234_5678_9abc_def1;
    for _ in 0..4000 {
        let input = random_input(&mut rng);
        exercise(&mut rng, &input);
        let mut prefixed = b"HTTP/1.1 200 OK\r\n".to_vec();
        prefixed.extend_from_slice(&input);
        exercise(&mut rng, &prefixed);
    }
}

#[test]
fn mutated_responses_never_panic() {
    let mut rng = 0x0bad_cafe_f00d_1234;
    for i in 0..6000 {
        let input = mutate(&mut rng, SEEDS[i % SEEDS.len()]);
        exercise(&mut rng, &input);
    }
}

#[test]
fn wire_views_never_panic() {
    let mut rng = 0x5eed_5eed_5eed_5eed;
    for _ in 0..20_000 {
        let line = random_input(&mut rng);
        let _ = StatusLine::new_checked(&line);
        let _ = HeaderLine::new_checked(&line);
        let _ = ChunkSizeLine::new_checked(&line);
        for seed in SEEDS {
            let line = mutate(&mut rng, &seed[..seed.len().min(30)]);
            let _ = StatusLine::new_checked(&line);
            let _ = HeaderLine::new_checked(&line);
            let _ = ChunkSizeLine::new_checked(&line);
        }
    }
}
