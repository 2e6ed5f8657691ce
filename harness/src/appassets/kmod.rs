//! Which kernel module files an initramfs needs, in load order: Debian
//! builds the virtio, input and filesystem drivers as modules, and a
//! `.deb` carries no `modules.dep`, so dependencies are read from each
//! module's own `.modinfo` section (`depends=`).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

/// A module to load: its name and file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub path: PathBuf,
}

/// Module names use `_` where files may use `-`.
fn canonical(name: &str) -> String {
    name.replace('-', "_")
}

fn index(dir: &Path, found: &mut HashMap<String, PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            index(&path, found);
        } else if let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".ko"))
        {
            found.insert(canonical(stem), path);
        }
    }
}

fn builtin(modules_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| Path::new(l).file_stem()?.to_str().map(canonical))
        .collect()
}

/// The `.modinfo` section's `depends=` list of an ELF64 module.
pub fn depends(module: &[u8]) -> Option<Vec<String>> {
    let bytes = |at: usize, n: usize| module.get(at..at.checked_add(n)?);
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes(at, 2)?.try_into().ok()?) as usize);
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes(at, 4)?.try_into().ok()?) as usize);
    let u64_at = |at: usize| Some(u64::from_le_bytes(bytes(at, 8)?.try_into().ok()?) as usize);
    if module.get(..5)? != b"\x7fELF\x02" {
        return None;
    }
    let (shoff, shentsize, shnum, shstrndx) =
        (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?);
    let section = |i: usize| {
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        Some((
            u32_at(at)?,
            u64_at(at.checked_add(0x18)?)?,
            u64_at(at.checked_add(0x20)?)?,
        ))
    };
    let (_, names_at, names_len) = section(shstrndx)?;
    let names = module.get(names_at..names_at.checked_add(names_len)?)?;
    let modinfo = (0..shnum).find_map(|i| {
        let (name, offset, size) = section(i)?;
        let name = names.get(name..)?.split(|&b| b == 0).next()?;
        (name == b".modinfo").then(|| module.get(offset..offset.checked_add(size)?))?
    })?;
    let entry = modinfo
        .split(|&b| b == 0)
        .find_map(|kv| kv.strip_prefix(b"depends="))?;
    let list = std::str::from_utf8(entry).ok()?;
    Some(
        list.split(',')
            .filter(|d| !d.is_empty())
            .map(canonical)
            .collect(),
    )
}

/// The files for `wanted` and everything they depend on, each after its
/// dependencies; built-in modules need no file. Unknown names are errors.
pub fn resolve(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<Module>, String> {
    let mut files = HashMap::new();
    index(&modules_dir.join("kernel"), &mut files);
    let builtin = builtin(modules_dir);
    let mut order: Vec<Module> = Vec::new();
    fn visit(
        name: &str,
        files: &HashMap<String, PathBuf>,
        builtin: &[String],
        order: &mut Vec<Module>,
        depth: usize,
    ) -> Result<(), String> {
        if order.iter().any(|m| m.name == name) || builtin.iter().any(|b| b == name) {
            return Ok(());
        }
        if depth > 32 {
            return Err(format!("module {name}: dependency loop"));
        }
        let path = files
            .get(name)
            .ok_or_else(|| format!("module {name} is neither a file nor built in"))?;
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for dep in depends(&bytes).unwrap_or_default() {
            visit(&dep, files, builtin, order, depth + 1)?;
        }
        order.push(Module {
            name: name.to_string(),
            path: path.clone(),
        });
        Ok(())
    }
    for name in wanted {
        visit(&canonical(name), &files, &builtin, &mut order, 0)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_module_bytes_give_none() {
        assert_eq!(depends(b""), None);
        assert_eq!(depends(b"\x7fELF\x02\x01\x01"), None);
        let mut header = vec![0u8; 64];
        header[..5].copy_from_slice(b"\x7fELF\x02");
        header[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        header[0x3c] = 5;
        assert_eq!(depends(&header), None);
    }
}
