//! Whether a qcow2 disk was left dirty: QEMU sets bit 0 of a version 3
//! header's incompatible features while it holds the image open with
//! lazy refcounts and clears it on a clean close, so a set bit after the
//! VM stopped means its guest was cut off mid-write. EVE reports it as
//! an app disk's `dirty`; read from the header here, with no `qemu-img`.

use std::fs::File;
use std::io::Read;
use std::path::Path;

/// The qcow2 magic, `QFI\xfb`.
const MAGIC: [u8; 4] = *b"QFI\xfb";
/// Bytes of a version 3 header up to and including its incompatible
/// features.
const HEADER: usize = 80;
/// Where the incompatible features sit (big-endian u64).
const INCOMPATIBLE_FEATURES: usize = 72;
/// The dirty bit of the incompatible features.
const DIRTY: u64 = 1;

/// Whether the header bytes say dirty. Anything that is not a version 3
/// or later qcow2 header is not dirty: earlier versions have no such bit.
pub(super) fn header_is_dirty(header: &[u8]) -> bool {
    let Some(head) = header.get(..HEADER) else {
        return false;
    };
    let word = |at: usize| -> [u8; 4] {
        let mut w = [0; 4];
        w.copy_from_slice(&head[at..at + 4]);
        w
    };
    let mut features = [0; 8];
    features.copy_from_slice(&head[INCOMPATIBLE_FEATURES..INCOMPATIBLE_FEATURES + 8]);
    word(0) == MAGIC
        && u32::from_be_bytes(word(4)) >= 3
        && u64::from_be_bytes(features) & DIRTY != 0
}

/// Whether the qcow2 file at `path` is dirty; an unreadable or short file
/// is not.
pub(super) fn is_dirty(path: &Path) -> bool {
    let mut header = [0; HEADER];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| header_is_dirty(&header))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, features: u64) -> Vec<u8> {
        let mut h = vec![0; 104];
        h[..4].copy_from_slice(&MAGIC);
        h[4..8].copy_from_slice(&version.to_be_bytes());
        h[72..80].copy_from_slice(&features.to_be_bytes());
        h
    }

    #[test]
    fn only_a_version_3_header_with_bit_0_is_dirty() {
        assert!(header_is_dirty(&header(3, 1)));
        assert!(header_is_dirty(&header(3, 0b11)));
        assert!(!header_is_dirty(&header(3, 0b10)));
        assert!(!header_is_dirty(&header(2, 1)));
        let mut not_qcow2 = header(3, 1);
        not_qcow2[0] = b'X';
        assert!(!header_is_dirty(&not_qcow2));
        assert!(!header_is_dirty(&header(3, 1)[..79]));
        assert!(!header_is_dirty(&[]));
    }

    #[test]
    fn a_file_is_read_from_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let dirty = dir.path().join("dirty.qcow2");
        std::fs::write(&dirty, header(3, 1)).unwrap();
        let clean = dir.path().join("clean.qcow2");
        std::fs::write(&clean, header(3, 0)).unwrap();
        let short = dir.path().join("short.qcow2");
        std::fs::write(&short, &header(3, 1)[..40]).unwrap();
        assert!(is_dirty(&dirty));
        assert!(!is_dirty(&clean));
        assert!(!is_dirty(&short));
        assert!(!is_dirty(&dir.path().join("missing.qcow2")));
    }
}
