//! The cloud-init NoCloud seed: a small FAT volume labelled `CIDATA`
//! holding `user-data` and `meta-data`, which cloud-init (and our test
//! VM's init) finds by label. The bytes come from the app's config, so
//! the host writes them without reading them.

use std::{
    io::{Cursor, Write},
    path::Path,
};

use fatfs::{FileSystem, FormatVolumeOptions, FsOptions};

use crate::{atomic::write_atomically, spec::CloudInit};

/// Big enough for FAT12 and the user data of any real config; EVE caps
/// user data far below this.
const SEED_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("user data of {0} bytes does not fit the 1 MiB seed")]
    TooLarge(usize),
    #[error("building the seed volume: {0}")]
    Fat(std::io::Error),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The seed volume's bytes for domain `name`.
pub fn seed_image(name: &str, data: &CloudInit) -> Result<Vec<u8>, SeedError> {
    let meta = data
        .meta_data
        .clone()
        .unwrap_or_else(|| format!("instance-id: {name}\nlocal-hostname: {name}\n"));
    let size = data.user_data.len() + meta.len();
    if size > SEED_BYTES / 2 {
        return Err(SeedError::TooLarge(size));
    }
    let mut volume = Cursor::new(vec![0u8; SEED_BYTES]);
    fatfs::format_volume(
        &mut volume,
        FormatVolumeOptions::new().volume_label(*b"CIDATA     "),
    )
    .map_err(SeedError::Fat)?;
    {
        let fs = FileSystem::new(&mut volume, FsOptions::new()).map_err(SeedError::Fat)?;
        for (file, contents) in [("user-data", &data.user_data), ("meta-data", &meta)] {
            let mut f = fs.root_dir().create_file(file).map_err(SeedError::Fat)?;
            f.truncate().map_err(SeedError::Fat)?;
            f.write_all(contents.as_bytes()).map_err(SeedError::Fat)?;
            f.flush().map_err(SeedError::Fat)?;
        }
        fs.unmount().map_err(SeedError::Fat)?;
    }
    Ok(volume.into_inner())
}

/// Writes the seed for `name` to `path`.
pub fn write_seed(path: &Path, name: &str, data: &CloudInit) -> Result<(), SeedError> {
    let bytes = seed_image(name, data)?;
    write_atomically(path, |file| file.write_all(&bytes)).map_err(|source| SeedError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn the_seed_is_a_cidata_volume_with_both_files() {
        let data = CloudInit {
            user_data: "#!/bin/sh\necho hi\n".into(),
            meta_data: None,
        };
        let mut image = Cursor::new(seed_image("web", &data).unwrap());
        let fs = FileSystem::new(&mut image, FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label().trim_end(), "CIDATA");
        let read = |name: &str| {
            let mut text = String::new();
            fs.root_dir()
                .open_file(name)
                .unwrap()
                .read_to_string(&mut text)
                .unwrap();
            text
        };
        assert_eq!(read("user-data"), data.user_data);
        assert_eq!(read("meta-data"), "instance-id: web\nlocal-hostname: web\n");
    }

    #[test]
    fn oversized_user_data_is_refused() {
        let data = CloudInit {
            user_data: "x".repeat(SEED_BYTES),
            meta_data: Some(String::new()),
        };
        assert!(matches!(
            seed_image("web", &data),
            Err(SeedError::TooLarge(n)) if n == SEED_BYTES
        ));
    }
}
