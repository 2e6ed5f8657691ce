//! A newc cpio archive, the format Linux unpacks as its initramfs. Written
//! here so no root (device nodes) and no cpio tool are needed.

/// One entry.
pub enum Node<'a> {
    Dir,
    File { data: &'a [u8], executable: bool },
    CharDevice { major: u32, minor: u32 },
}

/// Builds an archive; entries must come after their directories.
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    inode: u32,
}

impl Cpio {
    pub fn add(&mut self, path: &str, node: Node<'_>) {
        let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match node {
            Node::Dir => (0o040_755, &[], (0, 0)),
            Node::File { data, executable } => {
                (if executable { 0o100_755 } else { 0o100_644 }, data, (0, 0))
            }
            Node::CharDevice { major, minor } => (0o020_600, &[], (major, minor)),
        };
        self.inode += 1;
        self.entry(path, self.inode, mode, data, rdev);
    }

    fn entry(&mut self, name: &str, inode: u32, mode: u32, data: &[u8], rdev: (u32, u32)) {
        let fields = [
            inode,
            mode,
            0, // uid
            0, // gid
            if mode & 0o040_000 != 0 { 2 } else { 1 },
            0, // mtime: reproducible
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, 0, &[], (0, 0));
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_newc_and_aligned() {
        let mut cpio = Cpio::default();
        cpio.add("bin", Node::Dir);
        cpio.add(
            "bin/init",
            Node::File {
                data: b"#!/bin/sh\n",
                executable: true,
            },
        );
        cpio.add("dev/console", Node::CharDevice { major: 5, minor: 1 });
        let out = cpio.finish();
        assert!(out.starts_with(b"070701"));
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("bin/init\0"));
        assert!(text.contains("#!/bin/sh\n"));
        // Mode of bin/init, then rdev 5:1 of the console.
        assert!(text.contains("000081ed"));
        assert!(text.contains("0000000500000001"));
        assert!(text.contains("TRAILER!!!"));
    }
}
