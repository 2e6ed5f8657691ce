//! `cargo xtask new-service` in a scratch copy of the workspace's sources:
//! it must change nothing but `services/NAME/` and the manifest, and the
//! new crate must build for the bare-metal target as it is, with no other
//! file touched.
//!
//! The scratch copy lives at one fixed place, `target/new-service/`,
//! remade on every run with the sources' times, and builds into
//! `target/guest` like every guest build, so a run reuses what the last
//! one compiled and leaves no copies behind.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const XTASK: &str = env!("CARGO_BIN_EXE_xtask");
const NAME: &str = "probe";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

fn run(command: &mut Command) -> Output {
    let out = command.output().expect("the command starts");
    assert!(
        out.status.success(),
        "{command:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = run(Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=xtask", "-c", "user.email=xtask@localhost"])
        .args(args));
    String::from_utf8(out.stdout).expect("git speaks UTF-8")
}

/// The workspace's sources as they are now (tracked and new files, not
/// ignored ones) and its lock file, committed in a fresh repository.
fn scratch_copy(root: &Path, scratch: &Path) {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch).unwrap();
    }
    std::fs::create_dir_all(scratch).unwrap();
    let files = git(
        root,
        &[
            "ls-files",
            "--cached",
            "--others",
            "--exclude-standard",
            "-z",
        ],
    );
    for file in files.split('\0').filter(|f| !f.is_empty()) {
        let from = root.join(file);
        if !from.is_file() {
            // Deleted in the work tree, not yet committed.
            continue;
        }
        let to = scratch.join(file);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
        // Unchanged sources keep their times, so a later run's build
        // reuses what an earlier one compiled.
        let modified = std::fs::metadata(&from).and_then(|m| m.modified()).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&to)
            .and_then(|f| f.set_modified(modified))
            .unwrap();
    }
    std::fs::copy(root.join("Cargo.lock"), scratch.join("Cargo.lock")).unwrap();
    git(scratch, &["init", "-q"]);
    git(scratch, &["add", "-A"]);
    git(scratch, &["commit", "-qm", "the workspace"]);
}

#[test]
fn a_new_service_is_its_own_crate_and_a_manifest_stanza_and_builds() {
    let root = workspace_root();
    let scratch = root.join("target/new-service");
    scratch_copy(&root, &scratch);
    let manifest = scratch.join("nodes/default.toml");
    let out = run(Command::new(XTASK)
        .args(["new-service", NAME, "--workspace"])
        .arg(&scratch)
        .arg("--manifest")
        .arg(&manifest));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("cargo xtask build probe"), "{said}");

    let mut changed: Vec<String> = git(
        &scratch,
        &["status", "--porcelain", "--untracked-files=all"],
    )
    .lines()
    .map(str::to_owned)
    .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            " M nodes/default.toml",
            "?? services/probe/Cargo.toml",
            "?? services/probe/src/main.rs",
        ]
    );
    let stanza = git(&scratch, &["diff", "nodes/default.toml"]);
    assert!(stanza.contains("+name = \"probe\""), "{stanza}");

    run(Command::new(env!("CARGO"))
        .current_dir(&scratch)
        .args([
            "build",
            "--quiet",
            "--offline",
            "-p",
            NAME,
            "--target",
            "x86_64-unknown-none",
        ])
        .env("CARGO_TARGET_DIR", root.join("target/guest")));
    let image = root
        .join("target/guest/x86_64-unknown-none/debug")
        .join(NAME);
    assert!(image.is_file(), "no image at {}", image.display());
    // Building changed no source: only the ignored lock file may differ.
    assert_eq!(
        git(
            &scratch,
            &["status", "--porcelain", "--untracked-files=all"]
        )
        .lines()
        .count(),
        3
    );
}
