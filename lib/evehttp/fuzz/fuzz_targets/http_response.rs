//! Whatever a server sends back: the client must never panic or loop,
//! whatever error it reports. The first input byte chooses the limits, the
//! request method and how reads are cut; the rest is what the server sends.
#![no_main]

use embedded_io::{ErrorKind, ErrorType, Read, Write};
use evehttp::{Client, Limits, Request};
use libfuzzer_sys::fuzz_target;

/// A server that sends `bytes`, at most `cut` per read, then closes; what
/// the client writes is accepted and dropped.
struct Server<'a> {
    bytes: &'a [u8],
    cut: usize,
    reads: usize,
}

impl ErrorType for Server<'_> {
    type Error = ErrorKind;
}

impl Read for Server<'_> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let n = self.cut.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        self.reads += 1;
        Ok(n)
    }
}

impl Write for Server<'_> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}

const SMALL: Limits = Limits {
    max_head_bytes: 128,
    max_line_bytes: 40,
    max_headers: 3,
    max_interim_responses: 1,
    max_chunk_line_bytes: 8,
    max_trailer_bytes: 16,
    max_drain_bytes: 8,
    body_limit: 64,
    read_buffer_bytes: 0,
};

fuzz_target!(|data: &[u8]| {
    let Some((&control, response)) = data.split_first() else {
        return;
    };
    let limits = if control & 1 == 0 {
        Limits::default()
    } else {
        SMALL
    };
    let server = Server {
        bytes: response,
        cut: 1 + usize::from(control >> 3),
        reads: 0,
    };
    let mut client = Client::with_limits(server, "fuzz", limits).expect("valid host");
    for round in 0..2 {
        let request = if control & 2 == 0 {
            Request::get("/")
        } else {
            Request::head("/")
        };
        let Ok(mut resp) = client.send(&request) else {
            continue;
        };
        let _ = resp.head.headers().get("content-length");
        let _ = resp.head.reason();
        if round == 0 && control & 4 != 0 {
            let _ = resp.body.read_to_vec(100);
            continue;
        }
        let mut piece = [0u8; 97];
        let mut reads = 0;
        loop {
            match resp.body.read(&mut piece) {
                Ok(0) | Err(_) => break,
                Ok(_) => reads += 1,
            }
            assert!(reads <= response.len(), "more body reads than bytes sent");
        }
    }
});
