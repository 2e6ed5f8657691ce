//! `cargo xtask new-service NAME`: a new service unikernel that boots,
//! says Hello on the bus, heartbeats, runs a timer and follows a topic,
//! with its stanza in the node manifest. Nothing else needs to change:
//! the workspace and xtask find services by their folder, and the smoke
//! test (`harness/tests/services.rs`) boots every service of the manifest.

use std::path::{Path, PathBuf};

use eve_host::manifest::Manifest;

/// What `new-service` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// `services/NAME`.
    pub crate_dir: PathBuf,
    /// The manifest the stanza went into.
    pub manifest: PathBuf,
}

/// Creates `services/<name>` in the workspace at `root` and appends the
/// service's stanza to `manifest`. Nothing is written unless the name is
/// free and the manifest with the stanza is valid.
pub fn create(root: &Path, name: &str, manifest: &Path) -> Result<Created, String> {
    evebus::name::check_name(name).map_err(|e| format!("service name `{name}` {e}"))?;
    if let Some(taken) = workspace_crates(root).into_iter().find(|c| c == name) {
        return Err(format!(
            "`{taken}` is already a crate of the workspace: a service's package name is its folder's name"
        ));
    }
    let crate_dir = root.join("services").join(name);
    if crate_dir.exists() {
        return Err(format!("{} exists", crate_dir.display()));
    }
    let current = std::fs::read_to_string(manifest)
        .map_err(|e| format!("reading {}: {e}", manifest.display()))?;
    let mut updated = current.clone();
    if !updated.ends_with('\n') {
        updated.push('\n');
    }
    updated.push_str(&stanza(name));
    Manifest::parse(&updated).map_err(|e| {
        format!(
            "{} with the new stanza would be invalid:\n{e}",
            manifest.display()
        )
    })?;
    let src = crate_dir.join("src");
    std::fs::create_dir_all(&src).map_err(|e| format!("creating {}: {e}", src.display()))?;
    let write = |path: PathBuf, text: String| {
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write(crate_dir.join("Cargo.toml"), cargo_toml(name))?;
    write(src.join("main.rs"), main_rs(name))?;
    write(manifest.to_path_buf(), updated)?;
    Ok(Created {
        crate_dir,
        manifest: manifest.to_path_buf(),
    })
}

/// Package names of the workspace's members: every crate folder under
/// `services/`, `sys/`, `lib/` and `host/`, and the three at the root.
fn workspace_crates(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = ["controller", "harness", "xtask"]
        .into_iter()
        .map(String::from)
        .collect();
    for dir in ["services", "sys", "lib", "host"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        names.extend(
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join("Cargo.toml").is_file())
                .filter_map(|e| e.file_name().into_string().ok()),
        );
    }
    names
}

fn stanza(name: &str) -> String {
    let facts = <topics::DeviceFacts as topics::Topic>::NAME;
    format!(
        r#"
# {name}: what it does (from `cargo xtask new-service`; say more here).
[[service]]
name = "{name}"
image = "{name}"
ram_mib = 32

[service.bus]
subscribe = ["{facts}"]
heartbeat_timeout_s = 60
"#
    )
}

fn cargo_toml(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
description = "The {name} service"
edition.workspace = true
version.workspace = true
license.workspace = true
publish = false

[dependencies]
runtime = {{ workspace = true }}
topics = {{ workspace = true }}
log = {{ version = "0.4", default-features = false }}

[lints]
workspace = true
"#
    )
}

fn main_rs(name: &str) -> String {
    format!(
        r#"//! {name}: what it does, in a sentence or two.
//!
//! It runs on the runtime's service loop: the runtime says Hello on the
//! node bus and heartbeats; the service adds its timers, pollers, topic
//! subscriptions (each granted in the node manifest) and host calls.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use core::time::Duration;

use runtime::service::{{Change, Service}};
use topics::DeviceFacts;

runtime::entry!("{name}", main);

fn main() -> i32 {{
    let mut service = Service::new();
    service.every(Duration::from_secs(60), |_| log::info!("{name}: running"));
    service.on::<DeviceFacts>(|_, _, change| {{
        if let Change::Created(facts) | Change::Modified(facts) = change {{
            log::info!(
                "{name}: the device has {{}} CPUs and {{}} MiB of memory",
                facts.cpu_count,
                facts.memory_bytes >> 20
            );
        }}
    }});
    service.run()
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workspace of one service and a manifest, in a temporary folder.
    fn workspace() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("services/diag")).unwrap();
        std::fs::write(root.path().join("services/diag/Cargo.toml"), "").unwrap();
        std::fs::create_dir_all(root.path().join("sys/runtime")).unwrap();
        std::fs::write(root.path().join("sys/runtime/Cargo.toml"), "").unwrap();
        std::fs::create_dir_all(root.path().join("nodes")).unwrap();
        std::fs::write(
            root.path().join("nodes/default.toml"),
            "[node]\nname = \"n\"\narch = \"x86_64\"\n\n[[service]]\nname = \"diag\"\nimage = \"diag\"\nram_mib = 32",
        )
        .unwrap();
        root
    }

    #[test]
    fn the_crate_and_the_stanza_are_written() {
        let root = workspace();
        let manifest = root.path().join("nodes/default.toml");
        let created = create(root.path(), "nim", &manifest).unwrap();
        assert_eq!(created.crate_dir, root.path().join("services/nim"));
        let cargo = std::fs::read_to_string(created.crate_dir.join("Cargo.toml")).unwrap();
        assert!(cargo.starts_with("[package]\nname = \"nim\"\n"), "{cargo}");
        let main = std::fs::read_to_string(created.crate_dir.join("src/main.rs")).unwrap();
        assert!(main.contains("runtime::entry!(\"nim\", main);"), "{main}");
        assert!(main.contains("service.on::<DeviceFacts>"), "{main}");
        let node = Manifest::load(&manifest).unwrap();
        let nim = node.service("nim").expect("the stanza");
        assert_eq!(nim.image, "nim");
        assert_eq!(
            nim.bus.subscribe,
            [<topics::DeviceFacts as topics::Topic>::NAME]
        );
        assert!(nim.bus.heartbeat_timeout.is_some());
        assert_eq!(node.services.len(), 2);
    }

    #[test]
    fn nothing_is_written_for_a_bad_or_taken_name() {
        let root = workspace();
        let manifest = root.path().join("nodes/default.toml");
        let before = std::fs::read_to_string(&manifest).unwrap();
        for (name, why) in [
            ("Nim", "starts with 'N'"),
            ("nim_2", "holds '_'"),
            ("diag", "already a crate"),
            ("runtime", "already a crate"),
            ("xtask", "already a crate"),
        ] {
            let err = create(root.path(), name, &manifest).unwrap_err();
            assert!(err.contains(why), "{name}: {err}");
        }
        let missing = root.path().join("nodes/none.toml");
        assert!(create(root.path(), "nim", &missing).is_err());
        assert!(!root.path().join("services/nim").exists());
        assert_eq!(std::fs::read_to_string(&manifest).unwrap(), before);
    }

    #[test]
    fn a_manifest_the_stanza_would_break_is_left_alone() {
        let root = workspace();
        let manifest = root.path().join("nodes/default.toml");
        // A service named like the new one, from another image.
        let text = "[node]\nname = \"n\"\narch = \"x86_64\"\n\n[[service]]\nname = \"nim\"\nimage = \"diag\"\nram_mib = 32\n";
        std::fs::write(&manifest, text).unwrap();
        let err = create(root.path(), "nim", &manifest).unwrap_err();
        assert!(err.contains("defined twice"), "{err}");
        assert!(!root.path().join("services/nim").exists());
        assert_eq!(std::fs::read_to_string(&manifest).unwrap(), text);
    }
}
