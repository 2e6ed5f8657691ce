//! The CONFIG partition of an image: the files of `--config DIR`, as
//! EVE's `conf/` directory fills its CONFIG partition.

use std::path::Path;

/// The files of `--config DIR` (regular files at its top).
fn config_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| format!("{}: not UTF-8", n.to_string_lossy()))?;
        let data = std::fs::read(entry.path()).map_err(|e| format!("{name}: {e}"))?;
        files.push((name, data));
    }
    files.sort();
    Ok(files)
}

/// The CONFIG partition from `--config DIR`, or an empty one.
pub fn volume(dir: Option<&Path>) -> Result<Vec<u8>, String> {
    let files = match dir {
        Some(dir) => config_files(dir)?,
        None => {
            crate::output::warn(format_args!(
                "xtask: no --config: the CONFIG partition is empty and the node has no controller"
            ));
            Vec::new()
        }
    };
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    configpart::build_config_image(
        &refs,
        configpart::ImageLayout::Bare {
            volume_bytes: harness::provision::CONFIG_VOLUME_BYTES,
        },
    )
    .map_err(|e| format!("CONFIG partition: {e}"))
}
