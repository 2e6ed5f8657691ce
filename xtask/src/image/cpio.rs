//! The initramfs archive: cpio in the "newc" format the kernel unpacks
//! (`070701` headers, names and data padded to 4 bytes, a `TRAILER!!!`
//! entry at the end). Entries are written in the order given, with
//! increasing inode numbers and a fixed time, so the same tree gives the
//! same bytes.

use std::io::{self, Write};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFCHR: u32 = 0o020000;

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Directory {
        path: String,
        mode: u32,
    },
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    CharDevice {
        path: String,
        mode: u32,
        major: u32,
        minor: u32,
    },
}

impl Entry {
    /// The path in the archive, without a leading `/`.
    pub fn path(&self) -> &str {
        match self {
            Entry::Directory { path, .. }
            | Entry::File { path, .. }
            | Entry::CharDevice { path, .. } => path,
        }
    }
}

fn pad4(out: &mut impl Write, written: usize) -> io::Result<()> {
    let pad = (4 - written % 4) % 4;
    out.write_all(&[0u8; 3][..pad])
}

struct Header<'a> {
    ino: u32,
    mode: u32,
    nlink: u32,
    size: usize,
    rdev: (u32, u32),
    name: &'a str,
}

fn header(out: &mut impl Write, h: &Header<'_>) -> io::Result<()> {
    let name_len = h.name.len() + 1;
    let size = u32::try_from(h.size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file over 4 GiB"))?;
    let fields = [
        h.ino, h.mode, 0, 0, h.nlink, 0, size, 0, 0, h.rdev.0, h.rdev.1,
    ];
    let mut text = String::from("070701");
    for field in fields {
        text.push_str(&format!("{field:08x}"));
    }
    text.push_str(&format!("{name_len:08x}{:08x}", 0));
    out.write_all(text.as_bytes())?;
    out.write_all(h.name.as_bytes())?;
    out.write_all(&[0])?;
    pad4(out, 110 + name_len)
}

/// Writes `entries` and the trailer to `out`.
pub fn write(out: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    for (ino, entry) in (1u32..).zip(entries) {
        let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match entry {
            Entry::Directory { mode, .. } => (S_IFDIR | mode, 2, &[], (0, 0)),
            Entry::File { mode, data, .. } => (S_IFREG | mode, 1, data, (0, 0)),
            Entry::CharDevice {
                mode, major, minor, ..
            } => (S_IFCHR | mode, 1, &[], (*major, *minor)),
        };
        header(
            out,
            &Header {
                ino,
                mode,
                nlink,
                size: data.len(),
                rdev,
                name: entry.path(),
            },
        )?;
        out.write_all(data)?;
        pad4(out, data.len())?;
    }
    header(
        out,
        &Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            size: 0,
            rdev: (0, 0),
            name: "TRAILER!!!",
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names in an archive, walking its headers.
    fn names(archive: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        let mut at = 0;
        loop {
            let h = &archive[at..at + 110];
            assert_eq!(&h[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                    .unwrap() as usize
            };
            let (size, name_len) = (field(6), field(11));
            let name = std::str::from_utf8(&archive[at + 110..at + 110 + name_len - 1])
                .unwrap()
                .to_string();
            at = (at + 110 + name_len).next_multiple_of(4);
            at = (at + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(at, archive.len());
                return names;
            }
            names.push(name);
        }
    }

    #[test]
    fn entries_are_aligned_and_end_in_a_trailer() {
        let entries = vec![
            Entry::Directory {
                path: "dev".into(),
                mode: 0o755,
            },
            Entry::CharDevice {
                path: "dev/console".into(),
                mode: 0o600,
                major: 5,
                minor: 1,
            },
            Entry::File {
                path: "init".into(),
                mode: 0o755,
                data: b"#!".to_vec(),
            },
        ];
        let mut archive = Vec::new();
        write(&mut archive, &entries).unwrap();
        assert_eq!(names(&archive), ["dev", "dev/console", "init"]);
        // The same entries give the same bytes.
        let mut again = Vec::new();
        write(&mut again, &entries).unwrap();
        assert_eq!(archive, again);
        // The device's rdev major and minor.
        let console = &archive[archive
            .windows(11)
            .position(|w| w == b"dev/console")
            .unwrap()
            - 110..];
        assert_eq!(&console[6 + 8 * 9..6 + 8 * 11], b"0000000500000001");
    }
}
