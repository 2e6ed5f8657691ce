//! Where the workspace keeps what: service unikernels in `services/`, the
//! unikernel system layer in `sys/`, guest and portable libraries in
//! `lib/`. Each crate's package name is its folder's name, so a folder
//! listing is a crate listing: xtask and the tests find services and
//! bare-metal crates here instead of keeping lists.

use std::path::Path;

use crate::workspace_root;

/// The folders under `dir` (relative to the workspace root) that hold a
/// crate, sorted.
fn crates_in(dir: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(workspace_root().join(dir)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| Path::new(&e.path()).join("Cargo.toml").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    names
}

/// Every service unikernel (`services/<name>`): its crate, its image and,
/// in a manifest, the image a service runs.
pub fn services() -> Vec<String> {
    crates_in("services")
}

/// Every crate that must build for the bare-metal targets besides the
/// services: the system layer and the libraries.
pub fn bare_metal_crates() -> Vec<String> {
    let mut crates = crates_in("sys");
    crates.extend(crates_in("lib"));
    crates
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_services_and_libraries() {
        let services = services();
        for service in ["diag", "selftest", "zedagent"] {
            assert!(services.iter().any(|s| s == service), "{services:?}");
        }
        let libs = bare_metal_crates();
        for lib in ["hal", "runtime", "evebus", "eve-proto"] {
            assert!(libs.iter().any(|l| l == lib), "{libs:?}");
        }
        assert!(!libs.iter().any(|l| l == "zedagent"));
    }

    #[test]
    fn package_names_are_folder_names() {
        let root = workspace_root();
        for folder in ["services", "sys", "lib", "host"] {
            for name in crates_in(folder) {
                let dir = format!("{folder}/{name}");
                let toml = std::fs::read_to_string(root.join(&dir).join("Cargo.toml")).unwrap();
                let declared = toml
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("name = "))
                    .map(|v| v.trim_matches('"'));
                assert_eq!(declared, Some(name.as_str()), "{dir}/Cargo.toml");
            }
        }
    }
}
