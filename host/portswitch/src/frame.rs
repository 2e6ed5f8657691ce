//! The two wire formats the switch moves frames between, and nothing
//! more: QEMU's stream netdev framing (each Ethernet frame after its
//! length as a 4-byte big-endian number) and the trunk's tag.
//!
//! The tag is an 802.1ad service tag (TPID 0x88a8) pushed after the MAC
//! addresses, its VLAN ID naming the app port. A standard tag, rather
//! than a header of our own, because the trunk is an Ethernet link into
//! zedrouter's virtio NIC, where tagged frames pass unchanged (no VLAN
//! offload is negotiated) and tools such as tcpdump read them; an S-tag
//! rather than an 802.1Q C-tag so an app's own VLAN tags (which switch
//! instances carry) stay inside, untouched and unambiguous. It costs 4
//! bytes a frame and gives 4094 ports.

/// QEMU's largest frame: its network buffer is 64 KiB plus headroom.
pub const MAX_FRAME: usize = 65_536 + 4096;
/// The shortest Ethernet frame worth moving: two MACs and an EtherType.
pub const MIN_FRAME: usize = 14;
pub const TPID: [u8; 2] = [0x88, 0xa8];

/// An app port's tag: a VLAN ID, 1 to 4094.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(u16);

impl Tag {
    pub fn new(vid: u16) -> Option<Tag> {
        (1..=4094).contains(&vid).then_some(Tag(vid))
    }

    pub fn vid(self) -> u16 {
        self.0
    }
}

impl std::fmt::Display for Tag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a stream's bytes cannot be framed any more (the connection is
/// dropped: there is no way to find the next frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadLength(pub u32);

/// Frames read from a byte stream: bytes go in as they arrive, whole
/// frames come out. Its buffer holds two of the largest frames, so after
/// the frames it holds are taken there is always room for a whole one.
#[derive(Debug, Default)]
pub struct Deframer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

const BUFFER: usize = 2 * (MAX_FRAME + 4);

impl Deframer {
    /// Room to read into; call it only once [`Deframer::next_frame`] has
    /// no frame left, so the room is at least a largest frame.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.buf.is_empty() {
            self.buf = vec![0; BUFFER];
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Says how much of [`Deframer::spare`] was filled.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Bytes held that are not yet a whole frame or taken.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// The next whole frame, if there is one.
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, BadLength> {
        let rest = &self.buf[self.start..self.end];
        let Some(head) = rest.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if len as usize > MAX_FRAME {
            return Err(BadLength(len));
        }
        let len = len as usize;
        if rest.len() < 4 + len {
            return Ok(None);
        }
        let at = self.start + 4;
        self.start = at + len;
        Ok(Some(&self.buf[at..at + len]))
    }
}

/// `frame` after its length, as QEMU's stream netdev reads it.
pub fn framed(frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + frame.len());
    out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    out.extend_from_slice(frame);
    out
}

/// `frame` with the trunk tag pushed, framed for the trunk stream.
pub fn tagged(frame: &[u8], tag: Tag) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + frame.len());
    out.extend_from_slice(&((frame.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(&frame[..12]);
    out.extend_from_slice(&TPID);
    out.extend_from_slice(&tag.vid().to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

/// A trunk frame's tag and the frame without it, framed for the app's
/// stream; `None` if it carries no valid tag.
pub fn untagged(frame: &[u8]) -> Option<(Tag, Vec<u8>)> {
    if frame.len() < MIN_FRAME + 4 || frame[12..14] != TPID {
        return None;
    }
    let tag = Tag::new(u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff)?;
    let mut out = Vec::with_capacity(frame.len());
    out.extend_from_slice(&((frame.len() - 4) as u32).to_be_bytes());
    out.extend_from_slice(&frame[..12]);
    out.extend_from_slice(&frame[16..]);
    Some((tag, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_add(n)).collect()
    }

    #[test]
    fn frames_split_across_reads_come_out_whole() {
        let mut stream = Vec::new();
        for n in 0..5 {
            stream.extend_from_slice(&framed(&frame(n, 60 + usize::from(n) * 100)));
        }
        let mut deframer = Deframer::default();
        let mut got = Vec::new();
        for chunk in stream.chunks(7) {
            let spare = deframer.spare();
            spare[..chunk.len()].copy_from_slice(chunk);
            deframer.filled(chunk.len());
            while let Some(f) = deframer.next_frame().unwrap() {
                got.push(f.to_vec());
            }
        }
        assert_eq!(
            got,
            (0..5)
                .map(|n| frame(n, 60 + usize::from(n) * 100))
                .collect::<Vec<_>>()
        );
        assert_eq!(deframer.pending(), 0);
    }

    #[test]
    fn a_length_beyond_any_frame_breaks_the_stream() {
        let mut deframer = Deframer::default();
        let bad = ((MAX_FRAME + 1) as u32).to_be_bytes();
        deframer.spare()[..4].copy_from_slice(&bad);
        deframer.filled(4);
        assert_eq!(deframer.next_frame(), Err(BadLength(MAX_FRAME as u32 + 1)));
    }

    #[test]
    fn tags_go_on_after_the_macs_and_come_off_again() {
        let original = frame(1, 64);
        let tag = Tag::new(4094).unwrap();
        let on_trunk = tagged(&original, tag);
        assert_eq!(&on_trunk[..4], &68u32.to_be_bytes());
        let body = &on_trunk[4..];
        assert_eq!(&body[12..16], &[0x88, 0xa8, 0x0f, 0xfe]);
        let (back_tag, back) = untagged(body).unwrap();
        assert_eq!(back_tag, tag);
        assert_eq!(back, framed(&original));
        // An app's own 802.1Q tag stays inside.
        let mut vlan = original.clone();
        vlan[12..14].copy_from_slice(&[0x81, 0x00]);
        let (_, back) = untagged(&tagged(&vlan, tag)[4..]).unwrap();
        assert_eq!(&back[4 + 12..4 + 14], &[0x81, 0x00]);
    }

    #[test]
    fn frames_without_a_valid_tag_are_refused() {
        let plain = frame(0, 64);
        let mut no_tag = plain.clone();
        no_tag[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(untagged(&no_tag), None);
        let mut vid0 = tagged(&plain, Tag::new(1).unwrap())[4..].to_vec();
        vid0[14..16].copy_from_slice(&[0, 0]);
        assert_eq!(untagged(&vid0), None);
        assert_eq!(untagged(&plain[..17]), None);
        assert_eq!(Tag::new(0), None);
        assert_eq!(Tag::new(4095), None);
    }
}
