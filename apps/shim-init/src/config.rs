//! What the host tells the shim, as the first file on the blob disk: the
//! manifest to run and EVE's overrides of the image config. The host
//! writes it from the app's config; the image's own bytes follow it
//! untouched (see [`crate::blobdisk`]).

use serde::{Deserialize, Serialize};

/// The name of the shim's instructions on the blob disk.
pub const SHIM_CONFIG_NAME: &str = "shim.json";

/// The shim's instructions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimConfig {
    /// `sha256:<hex>` of the image manifest.
    pub manifest: String,
    #[serde(default)]
    pub overrides: Overrides,
}

/// EVE's overrides of the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overrides {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `NAME=value`, added to or replacing the image's.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `user[:group]`, names or numbers.
    #[serde(default)]
    pub user: Option<String>,
}
