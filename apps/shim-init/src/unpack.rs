//! Unpacking a layer onto the root filesystem as the OCI image spec says:
//! entries in order, over what earlier layers left; `.wh.NAME` deletes
//! NAME from earlier layers and `.wh..wh..opq` empties its directory of
//! earlier layers' files; neither touches what this layer itself adds.
//! Paths that climb out of the root are refused, and nothing is written
//! or deleted through a symlink that leads outside it.

use std::{
    collections::HashSet,
    io::Read,
    path::{Component, Path, PathBuf},
};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("reading the layer: {0}")]
    Read(std::io::Error),
    #[error("{path}: {why}")]
    Entry { path: String, why: String },
}

/// What a layer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    pub entries: u64,
    pub whiteouts: u64,
}

/// The path below the root an entry names, or why it has none.
fn relative(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err("climbs out of the root".into());
            }
        }
    }
    Ok(out)
}

/// Whether `path`'s parent, with symlinks resolved, is inside `root`.
fn inside(root: &Path, path: &Path) -> bool {
    let Some(parent) = path.parent() else {
        return false;
    };
    match (parent.canonicalize(), root.canonicalize()) {
        (Ok(parent), Ok(root)) => parent.starts_with(root),
        _ => false,
    }
}

/// An error and its causes, which the tar crate keeps apart.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Unpacks the (uncompressed) tar stream `layer` over `root`.
pub fn unpack_layer<R: Read>(layer: R, root: &Path) -> Result<LayerStats, UnpackError> {
    let mut archive = tar::Archive::new(layer);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    // What this layer added: its own whiteouts must not remove them.
    let mut added: HashSet<PathBuf> = HashSet::new();
    let mut stats = LayerStats::default();
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        let raw = entry.path().map_err(UnpackError::Read)?.into_owned();
        let error = |why: String| UnpackError::Entry {
            path: raw.display().to_string(),
            why,
        };
        let rel = relative(&raw).map_err(error)?;
        let Some(name) = rel.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
            continue;
        };
        stats.entries += 1;
        let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if name == OPAQUE {
            stats.whiteouts += 1;
            let target = root.join(&dir);
            if !target.is_dir() || !inside(root, &target.join("x")) {
                continue;
            }
            for child in std::fs::read_dir(&target).map_err(|e| error(e.to_string()))? {
                let child = child.map_err(|e| error(e.to_string()))?;
                let child_rel = dir.join(child.file_name());
                if !added.iter().any(|a| a.starts_with(&child_rel)) {
                    remove(&child.path()).map_err(|e| error(e.to_string()))?;
                }
            }
        } else if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            stats.whiteouts += 1;
            let hidden_rel = dir.join(hidden);
            let target = root.join(&hidden_rel);
            if !added.contains(&hidden_rel) && inside(root, &target) {
                remove(&target).map_err(|e| error(e.to_string()))?;
            }
        } else {
            let unpacked = entry.unpack_in(root).map_err(|e| error(chain(&e)))?;
            if !unpacked {
                return Err(error("refused: it would land outside the root".into()));
            }
            added.insert(rel);
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match data {
                Some(data) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(data.len() as u64);
                    h.set_mode(0o644);
                    b.append_data(&mut h, path, *data).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, std::io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn files(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(root).unwrap().display().to_string());
                if p.is_dir() {
                    walk(root, &p, out);
                }
            }
        }
        walk(root, root, &mut out);
        out.sort();
        out
    }

    #[test]
    fn layers_stack_and_whiteouts_hide_only_lower_layers() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        unpack_layer(
            &layer(&[
                ("www", None),
                ("www/old.html", Some(b"old")),
                ("www/keep.html", Some(b"v1")),
                ("etc", None),
                ("etc/a", Some(b"a")),
                ("etc/b", Some(b"b")),
            ])[..],
            r,
        )
        .unwrap();
        let stats = unpack_layer(
            &layer(&[
                ("www/.wh.old.html", Some(b"")),
                ("www/keep.html", Some(b"v2")),
                ("etc/new", Some(b"n")),
                ("etc/.wh..wh..opq", Some(b"")),
                ("www/.wh.keep.html", Some(b"")),
            ])[..],
            r,
        )
        .unwrap();
        assert_eq!(
            stats,
            LayerStats {
                entries: 5,
                whiteouts: 3
            }
        );
        assert_eq!(files(r), ["etc", "etc/new", "www", "www/keep.html"]);
        assert_eq!(std::fs::read(r.join("www/keep.html")).unwrap(), b"v2");
    }

    #[test]
    fn escapes_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), b"x").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "out", outside.path()).unwrap();
        let symlink_layer = b.into_inner().unwrap();
        unpack_layer(&symlink_layer[..], root.path()).unwrap();
        // A whiteout through the symlink must not delete outside the root.
        unpack_layer(&layer(&[("out/.wh.victim", Some(b""))])[..], root.path()).unwrap();
        assert!(outside.path().join("victim").exists());
        // Writing through it is refused.
        let err = unpack_layer(&layer(&[("out/planted", Some(b"x"))])[..], root.path());
        assert!(err.is_err());
        assert!(!outside.path().join("planted").exists());
        // A raw `..` in a name is refused (the tar crate's builder will not
        // write one, so patch the header by hand).
        let mut climbing = layer(&[("aa/evil", Some(b"x"))]);
        climbing[..7].copy_from_slice(b"../evil");
        let mut h = tar::Header::new_gnu();
        h.as_mut_bytes().copy_from_slice(&climbing[..512]);
        h.set_cksum();
        climbing[..512].copy_from_slice(h.as_bytes());
        assert!(unpack_layer(&climbing[..], root.path()).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let root = tempfile::tempdir().unwrap();
        let mut seed = 0x1234_5678_u64;
        for len in [1usize, 100, 512, 1024, 3000] {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = unpack_layer(&bytes[..], root.path());
        }
    }
}
