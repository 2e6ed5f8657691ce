//! Where the workspace keeps what: service unikernels in `services/`, the
//! unikernel system layer in `sys/`, guest and portable libraries in
//! `lib/`, apps (example app unikernels, programs app VMs run) in
//! `apps/`. Each crate's package name is its folder's name, so a folder
//! listing is a crate listing: xtask and the tests find services, apps and
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

/// How an app crate (`apps/<name>`) is built, from its
/// `[package.metadata.app] image = "..."`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppImage {
    /// A unikernel, built like a service; never in a node manifest.
    Unikernel,
    /// A static Linux program (musl), e.g. the container shim's init.
    LinuxStatic,
}

/// An app crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub image: AppImage,
}

/// Every app crate (`apps/<name>`): the example app unikernels and the
/// programs app VMs run. A crate without the metadata is not an app.
pub fn apps() -> Vec<App> {
    crates_in("apps")
        .into_iter()
        .filter_map(|name| {
            let toml = std::fs::read_to_string(
                workspace_root().join("apps").join(&name).join("Cargo.toml"),
            )
            .ok()?;
            let image = app_image(&toml)?;
            Some(App { name, image })
        })
        .collect()
}

/// The `image` key of the `[package.metadata.app]` table.
fn app_image(toml: &str) -> Option<AppImage> {
    let mut in_table = false;
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            in_table = line == "[package.metadata.app]";
        } else if in_table
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "image"
        {
            return match value.trim().trim_matches('"') {
                "unikernel" => Some(AppImage::Unikernel),
                "linux-static" => Some(AppImage::LinuxStatic),
                _ => None,
            };
        }
    }
    None
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
    fn finds_the_apps_and_how_each_is_built() {
        let apps = apps();
        let image = |name: &str| apps.iter().find(|a| a.name == name).map(|a| a.image);
        assert_eq!(image("hello-http"), Some(AppImage::Unikernel));
        assert_eq!(image("shim-init"), Some(AppImage::LinuxStatic));
        assert!(!services().iter().any(|s| s == "hello-http"));
        assert_eq!(app_image("[package]\nimage = \"unikernel\"\n"), None);
        assert_eq!(app_image("[package.metadata.app]\nimage = \"vm\"\n"), None);
    }

    #[test]
    fn package_names_are_folder_names() {
        let root = workspace_root();
        for folder in ["services", "sys", "lib", "host", "apps"] {
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
