//! A bus byte stream from a peer, cut into chunks as a transport delivers
//! it. The first byte picks the limits (small frame limits reach
//! `FrameTooLarge`, a zero log limit every log message), the second how
//! the rest is cut. Decoding must never panic, must not depend on where
//! the chunks end, must stay failed after an error and hold less than one
//! frame; every message it yields must encode and decode back to itself.
#![no_main]
#![forbid(unsafe_code)]

use evebus::{Decoder, Frame, Limits, Message, WireError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(([pick, cut], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let limits = Limits {
        max_frame_len: [Limits::DEFAULT.max_frame_len, 64, 300, 4096][usize::from(pick % 4)],
        max_log_message_len: [Limits::DEFAULT.max_log_message_len, 0, 16]
            [usize::from(pick / 4 % 3)],
    };
    let whole = decode(&limits, stream, &[stream.len().max(1)]);
    let chunks = [1 + usize::from(cut % 8), 1 + usize::from(cut / 8) * 3];
    let chunked = decode(&limits, stream, &chunks);
    assert_eq!(whole, chunked, "decoding depends on where chunks end");
    for message in &whole.0 {
        let mut out = Vec::new();
        message
            .encode(&limits, &mut out)
            .expect("a decoded message encodes");
        let frame = Frame::new_checked(&out[..]).expect("an encoded frame is a frame");
        assert_eq!(Message::parse(&frame, &limits).as_ref(), Ok(message));
    }
    // The same bytes as one frame, read without a decoder.
    if let Ok(frame) = Frame::new_checked(stream) {
        let _ = Message::parse(&frame, &limits);
    }
});

/// Every message of `stream` fed in chunks of the given lengths (used in
/// turn), and the error that ended it, if one did.
fn decode(
    limits: &Limits,
    stream: &[u8],
    chunk_lens: &[usize],
) -> (Vec<Message>, Option<WireError>) {
    let mut decoder = Decoder::new(*limits);
    let mut messages = Vec::new();
    let mut rest = stream;
    for len in chunk_lens.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, after) = rest.split_at((*len).min(rest.len()));
        if let Err(error) = decoder.feed(chunk, |m| messages.push(m)) {
            assert_eq!(
                decoder.feed(&[0; 8], |_| panic!("a failed decoder yielded a message")),
                Err(error),
                "a failed decoder stays failed"
            );
            return (messages, Some(error));
        }
        assert!(
            decoder.buffered() < limits.frame_len(),
            "holds less than one frame"
        );
        rest = after;
    }
    (messages, None)
}
