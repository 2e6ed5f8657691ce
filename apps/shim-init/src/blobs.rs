//! Reading the image's blobs off the blob disk, trusting nothing the host
//! did not also check: every blob's sha256 must match its name before its
//! bytes are used (a layer is checked as it streams, and the container
//! does not start if it fails).

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    path::Path,
};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use shim_init::{
    blobdisk::{BlobIndex, Entry},
    image::{Compression, Descriptor, MAX_JSON, layer_compression},
    unpack::{LayerStats, unpack_layer},
};

pub fn disk_size(disk: &mut File) -> Result<u64, String> {
    disk.seek(SeekFrom::End(0))
        .map_err(|e| format!("sizing the blob disk: {e}"))
}

fn hex(hash: &[u8]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A reader of one blob that hashes what passes through.
struct Hashing<'a> {
    inner: io::Take<&'a mut File>,
    hash: Sha256,
}

impl Read for Hashing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn open<'a>(disk: &'a mut File, entry: &Entry) -> Result<Hashing<'a>, String> {
    disk.seek(SeekFrom::Start(entry.offset))
        .map_err(|e| format!("{}: {e}", entry.name))?;
    Ok(Hashing {
        inner: disk.take(entry.size),
        hash: Sha256::new(),
    })
}

fn check(digest: &str, reader: Hashing<'_>) -> Result<(), String> {
    let got = format!("sha256:{}", hex(&reader.hash.finalize()));
    if got == digest {
        Ok(())
    } else {
        Err(format!("blob {digest} has digest {got}: refusing it"))
    }
}

/// A manifest or config blob, checked.
pub fn read_json(disk: &mut File, index: &BlobIndex, digest: &str) -> Result<Vec<u8>, String> {
    let entry = index.blob(digest).map_err(|e| e.to_string())?.clone();
    if entry.size > MAX_JSON {
        return Err(format!(
            "blob {digest} is {} bytes, too large for JSON",
            entry.size
        ));
    }
    let mut reader = open(disk, &entry)?;
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {digest}: {e}"))?;
    check(digest, reader)?;
    Ok(bytes)
}

/// Unpacks `layer` onto `root`, then checks its digest over every byte.
pub fn unpack(
    disk: &mut File,
    index: &BlobIndex,
    layer: &Descriptor,
    root: &Path,
) -> Result<LayerStats, String> {
    let entry = index
        .blob(&layer.digest)
        .map_err(|e| e.to_string())?
        .clone();
    if entry.size != layer.size {
        return Err(format!(
            "layer {} is {} bytes on the disk, the manifest says {}",
            layer.digest, entry.size, layer.size
        ));
    }
    let compression = layer_compression(layer).map_err(|e| e.to_string())?;
    let mut reader = open(disk, &entry)?;
    let stats = match compression {
        Compression::None => unpack_layer(&mut reader, root),
        Compression::Gzip => unpack_layer(GzDecoder::new(&mut reader), root),
    }
    .map_err(|e| format!("layer {}: {e}", layer.digest))?;
    // The tar end marker or gzip trailer may leave bytes unread.
    io::copy(&mut reader, &mut io::sink()).map_err(|e| format!("layer {}: {e}", layer.digest))?;
    check(&layer.digest, reader)?;
    Ok(stats)
}
