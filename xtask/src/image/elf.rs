//! What an ELF file needs from the dynamic loader: its interpreter
//! (`PT_INTERP`) and the shared libraries it names (`DT_NEEDED`), for
//! collecting a program's libraries into an initramfs. Little-endian
//! ELF64 only (x86_64 and aarch64); every offset is checked.

/// Why a file's dependencies could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("not a little-endian ELF64 file")]
    NotElf64,
    #[error("truncated at {0}")]
    Truncated(&'static str),
    #[error("a dynamic string lies outside every loadable segment")]
    Unmapped,
}

/// An ELF file's run-time dependencies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// The program interpreter (`/lib64/ld-linux-x86-64.so.2`), if any.
    pub interpreter: Option<String>,
    /// The sonames of `DT_NEEDED`, in order.
    pub libraries: Vec<String>,
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

fn bytes<'a>(elf: &'a [u8], at: u64, len: u64, what: &'static str) -> Result<&'a [u8], ElfError> {
    let start = usize::try_from(at).map_err(|_| ElfError::Truncated(what))?;
    let len = usize::try_from(len).map_err(|_| ElfError::Truncated(what))?;
    elf.get(start..start.checked_add(len).ok_or(ElfError::Truncated(what))?)
        .ok_or(ElfError::Truncated(what))
}

fn le(elf: &[u8], at: u64, len: u64, what: &'static str) -> Result<u64, ElfError> {
    Ok(bytes(elf, at, len, what)?
        .iter()
        .rev()
        .fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
}

fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Reads `elf`'s interpreter and needed libraries.
pub fn needs(elf: &[u8]) -> Result<Needs, ElfError> {
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err(ElfError::NotElf64);
    }
    let phoff = le(elf, 0x20, 8, "program header offset")?;
    let phentsize = le(elf, 0x36, 2, "program header size")?;
    let phnum = le(elf, 0x38, 2, "program header count")?;
    let mut segments = Vec::new();
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        segments.push(Segment {
            kind: le(elf, ph, 4, "segment type")? as u32,
            offset: le(elf, ph + 8, 8, "segment offset")?,
            vaddr: le(elf, ph + 16, 8, "segment address")?,
            filesz: le(elf, ph + 32, 8, "segment size")?,
        });
    }
    let mut found = Needs::default();
    if let Some(interp) = segments.iter().find(|s| s.kind == PT_INTERP) {
        found.interpreter = Some(c_string(bytes(
            elf,
            interp.offset,
            interp.filesz,
            "interpreter",
        )?));
    }
    let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
        return Ok(found);
    };
    let table = bytes(elf, dynamic.offset, dynamic.filesz, "dynamic section")?;
    let mut needed = Vec::new();
    let mut strtab = None;
    for entry in table.chunks_exact(16) {
        let tag = le(entry, 0, 8, "dynamic tag")?;
        let value = le(entry, 8, 8, "dynamic value")?;
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed.push(value),
            DT_STRTAB => strtab = Some(value),
            _ => {}
        }
    }
    if needed.is_empty() {
        return Ok(found);
    }
    // DT_STRTAB is an address: find the file offset of the segment
    // mapping it.
    let strtab = strtab.ok_or(ElfError::Unmapped)?;
    let load = segments
        .iter()
        .find(|s| s.kind == PT_LOAD && s.vaddr <= strtab && strtab < s.vaddr + s.filesz)
        .ok_or(ElfError::Unmapped)?;
    let base = load.offset + (strtab - load.vaddr);
    let end = load.offset + load.filesz;
    for name in needed {
        let at = base.checked_add(name).ok_or(ElfError::Unmapped)?;
        if at >= end {
            return Err(ElfError::Unmapped);
        }
        found
            .libraries
            .push(c_string(bytes(elf, at, end - at, "library name")?));
    }
    Ok(found)
}

/// The `key=value` strings of a kernel module's `.modinfo` section
/// (`name`, `depends`, `license`, ...), in order.
pub fn modinfo(module: &[u8]) -> Result<Vec<(String, String)>, ElfError> {
    if module.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err(ElfError::NotElf64);
    }
    let shoff = le(module, 0x28, 8, "section header offset")?;
    let shentsize = le(module, 0x3a, 2, "section header size")?;
    let shnum = le(module, 0x3c, 2, "section count")?;
    let shstrndx = le(module, 0x3e, 2, "section name table index")?;
    let section = |i: u64| -> Result<(u64, u64, u64), ElfError> {
        let sh = shoff + i * shentsize;
        Ok((
            le(module, sh, 4, "section name")?,
            le(module, sh + 0x18, 8, "section offset")?,
            le(module, sh + 0x20, 8, "section size")?,
        ))
    };
    let (_, names_at, names_len) = section(shstrndx)?;
    let names = bytes(module, names_at, names_len, "section names")?;
    for i in 0..shnum {
        let (name, offset, size) = section(i)?;
        let name = usize::try_from(name)
            .ok()
            .and_then(|n| names.get(n..))
            .map(c_string)
            .unwrap_or_default();
        if name != ".modinfo" {
            continue;
        }
        let data = bytes(module, offset, size, ".modinfo")?;
        return Ok(data
            .split(|&b| b == 0)
            .filter_map(|entry| {
                let text = String::from_utf8_lossy(entry);
                let (key, value) = text.split_once('=')?;
                Some((key.to_string(), value.to_string()))
            })
            .collect());
    }
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_program() {
        // The test runner itself is a dynamically linked ELF64.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let needs = needs(&me).unwrap();
        assert!(
            needs
                .interpreter
                .as_ref()
                .is_some_and(|i| i.contains("ld-linux"))
        );
        assert!(
            needs.libraries.iter().any(|l| l.starts_with("libc.so")),
            "{needs:?}"
        );
    }

    #[test]
    fn refuses_what_is_not_elf64_and_never_panics() {
        assert_eq!(needs(b"#!/bin/sh\n"), Err(ElfError::NotElf64));
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        for len in [6, 64, 100, 1000] {
            assert!(needs(&me[..len]).is_err(), "{len}");
        }
    }
}
