//! `cargo xtask fuzz [TARGET...] [--seconds N]`: runs the cargo-fuzz
//! targets of the hostile-input parsers, each for a bounded time.
//!
//! Fuzzing needs a nightly toolchain (libFuzzer's instrumentation) and
//! `cargo-fuzz`; both are installed here when missing, and only here: the
//! workspace itself builds on stable. Each library keeps its fuzz crate in
//! its own `fuzz/` folder, a workspace of its own that the root workspace
//! excludes; all of them build into `target/fuzz`. The working corpus of a
//! target lives in `target/fuzz/corpus/<target>` and grows from run to run;
//! committed seeds (`<crate>/fuzz/seeds/<target>`) are read alongside it.
//! A crash stops the run and names the input that caused it, which
//! `cargo +nightly fuzz run TARGET FILE` (in the crate's folder) replays;
//! fix it with a regression test in the library's own tests.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

/// One fuzz target: its name, the crate folder whose `fuzz/` holds it, the
/// folders of seed inputs (relative to the crate folder; besides
/// `fuzz/seeds/<name>`, which is read when it exists) and the largest
/// input libFuzzer may make (its default is 4096 bytes).
struct Target {
    name: &'static str,
    crate_dir: &'static str,
    seeds: &'static [&'static str],
    max_len: Option<usize>,
}

const TARGETS: &[Target] = &[
    Target {
        name: "auth_container",
        crate_dir: "lib/eve-proto",
        seeds: &["testdata/signing", "testdata/golden"],
        max_len: None,
    },
    Target {
        name: "edge_dev_config",
        crate_dir: "lib/eve-proto",
        seeds: &["testdata/golden"],
        max_len: None,
    },
    Target {
        // Masks reach 64 sectors of the CONFIG volume.
        name: "fat_config",
        crate_dir: "lib/configpart",
        seeds: &[],
        max_len: Some(64 * 512),
    },
    Target {
        // QEMU's virt tree is about 8 KiB.
        name: "fdt",
        crate_dir: "sys/bootinfo",
        seeds: &[],
        max_len: Some(16 << 10),
    },
    Target {
        name: "pvh",
        crate_dir: "sys/bootinfo",
        seeds: &[],
        max_len: None,
    },
    Target {
        name: "dns_response",
        crate_dir: "lib/dnswire",
        seeds: &[],
        max_len: Some(1500),
    },
    Target {
        // A 1 MiB disk: the mask reaches the start and the backup at the end.
        name: "gpt_read",
        crate_dir: "lib/gptab",
        seeds: &[],
        max_len: Some(67 * 512),
    },
    Target {
        name: "http_response",
        crate_dir: "lib/evehttp",
        seeds: &[],
        max_len: None,
    },
    Target {
        name: "bus_frames",
        crate_dir: "lib/evebus",
        seeds: &[],
        max_len: None,
    },
    Target {
        name: "statestore_open",
        crate_dir: "lib/statestore",
        seeds: &[],
        max_len: None,
    },
    Target {
        name: "tpm_response",
        crate_dir: "host/eve-tpm",
        seeds: &[],
        max_len: None,
    },
    Target {
        name: "newlog_line",
        crate_dir: "controller/controller",
        seeds: &[],
        max_len: None,
    },
    Target {
        // A script of frames; a few dozen frames of MTU size.
        name: "appnet_frames",
        crate_dir: "lib/appnet",
        seeds: &[],
        max_len: Some(16 << 10),
    },
    Target {
        name: "appnet_payloads",
        crate_dir: "lib/appnet",
        seeds: &[],
        max_len: Some(4096),
    },
    Target {
        name: "appnet_state",
        crate_dir: "lib/appnet",
        seeds: &[],
        max_len: Some(16 << 10),
    },
];

/// Runs `targets` (every target when empty) for `seconds` each.
pub fn run(targets: &[String], seconds: u64) -> Result<(), String> {
    let chosen: Vec<&Target> = if targets.is_empty() {
        TARGETS.iter().collect()
    } else {
        targets
            .iter()
            .map(|name| {
                TARGETS.iter().find(|t| t.name == name).ok_or_else(|| {
                    let known: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
                    format!("no fuzz target {name}; targets: {}", known.join(", "))
                })
            })
            .collect::<Result<_, _>>()?
    };
    ensure_tools()?;
    let root = harness::workspace_root();
    let mut summaries = Vec::new();
    for target in chosen {
        summaries.push((target.name, run_target(&root, target, seconds)?));
    }
    println!("\nxtask: fuzzed {seconds} s per target, no crash");
    for (name, summary) in summaries {
        println!("  {name:<16} {summary}");
    }
    Ok(())
}

/// A command with the outer cargo's toolchain choice removed, so rustup
/// picks the toolchain we name.
fn rustup_run(args: &[&str]) -> Command {
    let mut command = Command::new("rustup");
    command.args(["run", "nightly"]).args(args);
    for var in ["RUSTUP_TOOLCHAIN", "CARGO", "RUSTC", "RUSTDOC"] {
        command.env_remove(var);
    }
    command
}

fn succeeds(mut command: Command) -> bool {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn install(program: &str, args: &[&str]) -> Result<(), String> {
    println!("xtask: running {program} {}", args.join(" "));
    let status = Command::new(program)
        .args(args)
        .env_remove("RUSTUP_TOOLCHAIN")
        .status()
        .map_err(|e| format!("{program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} {} failed ({status})", args.join(" ")))
    }
}

/// Installs the nightly toolchain and cargo-fuzz when missing.
fn ensure_tools() -> Result<(), String> {
    if !succeeds(rustup_run(&["rustc", "--version"])) {
        install(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        )?;
    }
    if !succeeds(rustup_run(&["cargo", "fuzz", "--version"])) {
        install("cargo", &["install", "cargo-fuzz", "--locked"])?;
    }
    Ok(())
}

/// The last status line libFuzzer printed (`#N DONE cov: ... corp: ...`),
/// for the summary.
fn last_status(log: &str) -> String {
    log.lines()
        .rev()
        .find(|l| l.starts_with('#') && l.contains("cov:"))
        .map_or_else(|| String::from("(no status line)"), str::to_string)
}

fn run_target(root: &Path, target: &Target, seconds: u64) -> Result<String, String> {
    let fuzz_root = root.join("target/fuzz");
    let corpus = fuzz_root.join("corpus").join(target.name);
    let artifacts = fuzz_root.join("artifacts").join(target.name);
    let logs = fuzz_root.join("logs");
    for dir in [&corpus, &artifacts, &logs] {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let crate_dir = root.join(target.crate_dir);
    let seeds = crate_dir.join("fuzz/seeds").join(target.name);
    let log_path = logs.join(format!("{}.log", target.name));
    let log = fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;

    let mut args: Vec<String> = vec![
        "cargo".into(),
        "fuzz".into(),
        "run".into(),
        target.name.into(),
        "--debug-assertions".into(),
        "--target-dir".into(),
        path_arg(&fuzz_root),
        path_arg(&corpus),
    ];
    let seed_dirs = target.seeds.iter().map(|dir| crate_dir.join(dir));
    for dir in seed_dirs.chain([seeds]).filter(|dir| dir.is_dir()) {
        args.push(path_arg(&dir));
    }
    args.push("--".into());
    args.push(format!("-max_total_time={seconds}"));
    args.push(format!("-artifact_prefix={}/", artifacts.display()));
    if let Some(max_len) = target.max_len {
        args.push(format!("-max_len={max_len}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    println!(
        "xtask: fuzzing {} for {seconds} s (log: {})",
        target.name,
        log_path.display()
    );
    let status = rustup_run(&args)
        .current_dir(&crate_dir)
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .status()
        .map_err(|e| format!("rustup run nightly cargo fuzz: {e}"))?;
    let text = fs::read_to_string(&log_path).unwrap_or_default();
    if status.success() {
        return Ok(last_status(&text));
    }
    let crash = text
        .lines()
        .find_map(|l| l.split("Test unit written to ").nth(1))
        .map(str::trim);
    Err(match crash {
        Some(input) => format!(
            "{} crashed on {input}; replay in {}: \
             cargo +nightly fuzz run --target-dir {} {} {input}",
            target.name,
            target.crate_dir,
            fuzz_root.display(),
            target.name
        ),
        None => format!(
            "{} failed ({status}); see {}",
            target.name,
            log_path.display()
        ),
    })
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::TARGETS;

    /// Every `fuzz/Cargo.toml` one or two folders below the workspace root
    /// (`<crate>/fuzz`, `<group>/<crate>/fuzz`).
    fn fuzz_manifests(root: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let mut dirs = vec![(root.to_path_buf(), 0)];
        while let Some((dir, depth)) = dirs.pop() {
            let manifest = dir.join("fuzz/Cargo.toml");
            if manifest.is_file() {
                found.push(manifest);
            }
            if depth == 2 {
                continue;
            }
            for entry in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
                let name = entry.file_name();
                if entry.path().is_dir()
                    && name != "target"
                    && !name.to_string_lossy().starts_with('.')
                {
                    dirs.push((entry.path(), depth + 1));
                }
            }
        }
        found
    }

    /// The fuzz crates are outside the workspace, so no build notices when
    /// one stops loading (a moved crate, a renamed dependency): every
    /// target's crate must load, build a binary of the target's name and
    /// be excluded from the root workspace, and every fuzz crate in the
    /// tree must have its targets listed here.
    #[test]
    fn every_fuzz_crate_loads_and_every_target_is_listed() {
        let root = harness::workspace_root();
        let root_manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut listed = 0;
        for manifest in fuzz_manifests(&root) {
            let fuzz_dir = manifest.parent().unwrap();
            let crate_dir = fuzz_dir.parent().unwrap().strip_prefix(&root).unwrap();
            let excluded = format!("\"{}\"", crate_dir.join("fuzz").display());
            assert!(
                root_manifest.contains(&excluded),
                "the root Cargo.toml's exclude lacks {excluded}"
            );
            let out = Command::new(&cargo)
                .args([
                    "metadata",
                    "--no-deps",
                    "--format-version",
                    "1",
                    "--manifest-path",
                ])
                .arg(&manifest)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{} does not load: {}",
                manifest.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let bins: Vec<&str> = metadata["packages"][0]["targets"]
                .as_array()
                .unwrap()
                .iter()
                // A fuzz crate may have a library of shared helpers
                // (appnet's); only its binaries are targets.
                .filter(|t| {
                    t["kind"]
                        .as_array()
                        .is_some_and(|k| k.iter().any(|k| k == "bin"))
                })
                .filter_map(|t| t["name"].as_str())
                .collect();
            for bin in &bins {
                let target = TARGETS.iter().find(|t| t.name == *bin);
                assert!(
                    target.is_some_and(|t| Path::new(t.crate_dir) == crate_dir),
                    "fuzz target {bin} of {} is not in xtask's list with crate_dir {}",
                    manifest.display(),
                    crate_dir.display()
                );
                listed += 1;
            }
        }
        assert_eq!(listed, TARGETS.len(), "a listed target has no fuzz crate");
    }
}
