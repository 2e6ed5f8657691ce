//! ELF to flat arm64 `Image`: QEMU and boot loaders pass the device tree
//! address only to images with the arm64 header, which our aarch64 entry
//! carries at its first bytes; the flat file is the loadable segments laid
//! out from the lowest physical address.

/// Why an ELF could not be flattened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageError {
    #[error("not a little-endian ELF64 file")]
    NotElf64,
    #[error("ELF truncated: {0}")]
    Truncated(&'static str),
    #[error("no loadable segment")]
    NoSegments,
    #[error("segments span {0} bytes, more than an image may")]
    TooLarge(u64),
    #[error("image does not start with the arm64 Image header magic")]
    NoArm64Header,
}

const MAX_IMAGE: u64 = 256 << 20;

fn field<const N: usize>(bytes: &[u8], at: u64, what: &'static str) -> Result<[u8; N], ImageError> {
    let at = usize::try_from(at).map_err(|_| ImageError::Truncated(what))?;
    bytes
        .get(at..at.checked_add(N).ok_or(ImageError::Truncated(what))?)
        .and_then(|s| s.try_into().ok())
        .ok_or(ImageError::Truncated(what))
}

fn u16_at(b: &[u8], at: u64, what: &'static str) -> Result<u64, ImageError> {
    Ok(u64::from(u16::from_le_bytes(field(b, at, what)?)))
}
fn u32_at(b: &[u8], at: u64, what: &'static str) -> Result<u64, ImageError> {
    Ok(u64::from(u32::from_le_bytes(field(b, at, what)?)))
}
fn u64_at(b: &[u8], at: u64, what: &'static str) -> Result<u64, ImageError> {
    Ok(u64::from_le_bytes(field(b, at, what)?))
}

/// Flattens `elf` (an aarch64 service) into an arm64 Image.
pub fn elf_to_arm64_image(elf: &[u8]) -> Result<Vec<u8>, ImageError> {
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err(ImageError::NotElf64);
    }
    let phoff = u64_at(elf, 0x20, "program header offset")?;
    let phentsize = u16_at(elf, 0x36, "program header size")?;
    let phnum = u16_at(elf, 0x38, "program header count")?;
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if u32_at(elf, ph, "segment type")? != 1 {
            continue; // not PT_LOAD
        }
        let offset = u64_at(elf, ph + 8, "segment offset")?;
        let paddr = u64_at(elf, ph + 24, "segment address")?;
        let filesz = u64_at(elf, ph + 32, "segment size")?;
        if filesz > 0 {
            segments.push((paddr, offset, filesz));
        }
    }
    let base = segments
        .iter()
        .map(|s| s.0)
        .min()
        .ok_or(ImageError::NoSegments)?;
    let end = segments
        .iter()
        .map(|&(paddr, _, size)| paddr.saturating_add(size))
        .max()
        .ok_or(ImageError::NoSegments)?;
    let len = end - base;
    if len > MAX_IMAGE {
        return Err(ImageError::TooLarge(len));
    }
    let mut image = vec![0u8; len as usize];
    for (paddr, offset, size) in segments {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|o| elf.get(o..o.checked_add(size as usize)?))
            .ok_or(ImageError::Truncated("segment data"))?;
        let at = (paddr - base) as usize;
        image[at..at + src.len()].copy_from_slice(src);
    }
    if image.get(56..60) != Some(b"ARM\x64") {
        return Err(ImageError::NoArm64Header);
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with the given PT_LOAD segments (paddr, data).
    fn elf(segments: &[(u64, &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        out[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        out[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        let data_start = 64 + 56 * segments.len();
        let mut data = Vec::new();
        for (paddr, bytes) in segments {
            let mut ph = [0u8; 56];
            ph[..4].copy_from_slice(&1u32.to_le_bytes());
            ph[8..16].copy_from_slice(&((data_start + data.len()) as u64).to_le_bytes());
            ph[24..32].copy_from_slice(&paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&ph);
            data.extend_from_slice(bytes);
        }
        out.extend_from_slice(&data);
        out
    }

    fn header() -> Vec<u8> {
        let mut h = vec![0u8; 64];
        h[56..60].copy_from_slice(b"ARM\x64");
        h
    }

    #[test]
    fn lays_segments_out_from_the_lowest_address() {
        let text = header();
        let image = elf_to_arm64_image(&elf(&[(0x4008_1000, b"data"), (0x4008_0000, &text)]))
            .expect("image");
        assert_eq!(image.len(), 0x1004);
        assert_eq!(&image[..64], &text[..]);
        assert_eq!(&image[0x1000..], b"data");
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(elf_to_arm64_image(b"not an elf"), Err(ImageError::NotElf64));
        assert_eq!(elf_to_arm64_image(&elf(&[])), Err(ImageError::NoSegments));
        assert_eq!(
            elf_to_arm64_image(&elf(&[(0x1000, b"no header here")])),
            Err(ImageError::NoArm64Header)
        );
        let mut truncated = elf(&[(0x1000, &header())]);
        truncated.truncate(100);
        assert!(matches!(
            elf_to_arm64_image(&truncated),
            Err(ImageError::Truncated(_))
        ));
        let huge = elf(&[(0, b"a"), (1 << 40, b"b")]);
        assert!(matches!(
            elf_to_arm64_image(&huge),
            Err(ImageError::TooLarge(_))
        ));
    }
}
