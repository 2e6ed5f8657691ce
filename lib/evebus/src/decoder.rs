//! Turning a byte stream into messages, without doing I/O.

use alloc::vec::Vec;

use crate::frame::{Frame, HEADER_LEN, Header, Limits};
use crate::{Message, WireError};

/// A stream decoder: feed it whatever chunks the transport delivers (split
/// frames, several frames at once) and take messages out.
///
/// It holds at most one frame, so its memory is bounded by
/// [`Limits::max_frame_len`]. A header is checked as soon as its eight
/// bytes are in, so garbage is refused before its announced length is
/// waited for. After an error the decoder stays failed: the stream has lost
/// its framing and the caller must reconnect (and [`Decoder::reset`]).
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: Limits,
    buf: Vec<u8>,
    /// Length of the frame being read, once its header has been checked.
    frame_len: Option<usize>,
    failed: Option<WireError>,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            buf: Vec::new(),
            frame_len: None,
            failed: None,
        }
    }

    /// Forgets any partial frame and a previous error, for a new connection.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.frame_len = None;
        self.failed = None;
    }

    /// Bytes of a partial frame held.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Consumes bytes of `input` until one frame is complete or `input` is
    /// used up; returns how many bytes it consumed and the message, if one
    /// was completed. Call again with the rest of `input`.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Message>), WireError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let mut consumed = 0;
        loop {
            let target = self.frame_len.unwrap_or(HEADER_LEN);
            let take = (target - self.buf.len()).min(input.len() - consumed);
            self.buf
                .extend_from_slice(&input[consumed..consumed + take]);
            consumed += take;
            if self.buf.len() < target {
                return Ok((consumed, None));
            }
            match self.frame_len {
                None => {
                    let header = self.fail_on_error(Header::parse(&self.buf))?;
                    let frame_len = header.frame_len();
                    if frame_len > self.limits.frame_len() {
                        return Err(self.fail(WireError::FrameTooLarge));
                    }
                    self.frame_len = Some(frame_len);
                }
                Some(_) => {
                    let parsed = Frame::new_checked(&self.buf[..])
                        .and_then(|frame| Message::parse(&frame, &self.limits));
                    let message = self.fail_on_error(parsed)?;
                    self.buf.clear();
                    self.frame_len = None;
                    return Ok((consumed, Some(message)));
                }
            }
        }
    }

    /// Decodes all of `input`, handing each message to `on_message`.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        mut on_message: impl FnMut(Message),
    ) -> Result<(), WireError> {
        while !input.is_empty() {
            let (consumed, message) = self.decode(input)?;
            input = &input[consumed..];
            if let Some(message) = message {
                on_message(message);
            }
        }
        Ok(())
    }

    fn fail(&mut self, error: WireError) -> WireError {
        self.failed = Some(error);
        self.buf = Vec::new();
        self.frame_len = None;
        error
    }

    fn fail_on_error<T>(&mut self, result: Result<T, WireError>) -> Result<T, WireError> {
        result.map_err(|e| self.fail(e))
    }
}
