//! `cargo xtask test`: everything, as CI runs it: formatting, clippy with
//! warnings denied (host crates, and the bare-metal crates and services on
//! both guest arches), the bare-metal build, then every test.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    time::Instant,
};

use harness::Arch;

use crate::{cargo, cargo_command};

/// Counts from one libtest summary line:
/// `test result: ok. 9 passed; 0 failed; 0 ignored; ...`.
fn summary_counts(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (_verdict, counts) = rest.split_once(". ")?;
    let count = |word: &str| {
        counts.split(';').find_map(|part| {
            let (n, what) = part.trim().split_once(' ')?;
            (what == word).then(|| n.parse::<u64>().ok()).flatten()
        })
    };
    Some((count("passed")?, count("failed")?))
}

/// The seconds of a libtest summary line's `finished in N.NNs`.
fn summary_seconds(line: &str) -> Option<f64> {
    let (_, after) = line.rsplit_once("finished in ")?;
    after.trim().strip_suffix('s')?.parse().ok()
}

/// The name of the test a libtest result line reports
/// (`test NAME ... ok`).
fn result_test_name(line: &str) -> Option<&str> {
    let (name, _) = line.strip_prefix("test ")?.split_once(" ... ")?;
    Some(name)
}

/// The test binaries' run times, read from cargo test's standard output
/// alone (cargo names each binary on standard error): each summary's time
/// goes to the tests reported since the previous summary.
#[derive(Default)]
struct Timings {
    tests: Vec<String>,
    binaries: Vec<(f64, Vec<String>)>,
}

impl Timings {
    fn line(&mut self, line: &str) {
        if let Some(name) = result_test_name(line) {
            self.tests.push(name.to_owned());
        } else if summary_counts(line).is_some() {
            let tests = std::mem::take(&mut self.tests);
            if let Some(seconds) = summary_seconds(line) {
                self.binaries.push((seconds, tests));
            }
        }
    }

    /// The `n` slowest binaries, slowest first: seconds and their tests.
    fn slowest(mut self, n: usize) -> Vec<(f64, Vec<String>)> {
        self.binaries.sort_by(|a, b| b.0.total_cmp(&a.0));
        self.binaries.truncate(n);
        self.binaries
    }
}

/// Prints the slowest test binaries, where a test run's time goes.
fn print_slowest(timings: Timings) {
    println!("xtask: the slowest test binaries (seconds, then their tests):");
    for (seconds, tests) in timings.slowest(10) {
        println!("{seconds:>9.1}  {}", tests.join(", "));
    }
}

/// Runs `cargo test`, passing its output through, and adds up its
/// summaries, so the run ends with the slowest test binaries and one line
/// that counts every test.
fn cargo_test() -> Result<(u64, u64), String> {
    println!("xtask: cargo test --no-fail-fast");
    let xtask = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    // The host programs tests run as processes, built here beside the
    // tests so they share the tests' dependencies (inside `cargo test`
    // they would need a target directory of their own).
    let mut build = vec!["build", "--quiet"];
    for (package, bin) in harness::appassets::HOST_PROGRAMS {
        build.extend(["--package", package, "--bin", bin]);
    }
    cargo(&build)?;
    let host_bin_dir = crate::controller::target_dir().join("debug");
    let mut child = cargo_command()
        .args(["test", "--no-fail-fast"])
        // The image and whole-node scenarios run xtask: this very binary,
        // rather than a second, release build of xtask and its
        // dependencies.
        .env(harness::XTASK_EXE_ENV, xtask)
        .env(harness::appassets::HOST_BIN_DIR_ENV, host_bin_dir)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cargo: {e}"))?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let (mut passed, mut failed) = (0, 0);
    let mut timings = Timings::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading cargo test output: {e}"))?;
        println!("{line}");
        timings.line(&line);
        if let Some((p, f)) = summary_counts(&line) {
            passed += p;
            failed += f;
        }
    }
    let status = child.wait().map_err(|e| format!("cargo test: {e}"))?;
    print_slowest(timings);
    if status.success() {
        Ok((passed, failed))
    } else {
        println!("test: {passed} passed, {} failed", failed.max(1));
        Err(format!("cargo test failed ({status})"))
    }
}

/// Every crate that builds for the bare-metal targets: the system layer,
/// the libraries and the services.
fn bare_metal_packages() -> Vec<String> {
    let mut crates = harness::layout::bare_metal_crates();
    crates.extend(harness::layout::services());
    crates
}

/// Where clippy keeps its checked metadata: a tree of its own, apart from
/// the builds the tests use, so that CI can drop it once clippy is clean.
const CLIPPY_TARGET_DIR: &str = "target/clippy";

/// `cargo clippy` with warnings denied, on every crate where it runs: the
/// host-side crates (the default members) with all their targets (lib,
/// bins, tests, benches), then the bare-metal crates and services for each
/// guest arch. On CI (`CI` set) the checked tree is removed afterwards:
/// nothing later reads it, and a CI machine's disk ran out with it kept
/// beside the test builds (1.6 GB of the run's peak).
fn clippy() -> Result<(), String> {
    let started = Instant::now();
    cargo(&[
        "clippy",
        "--quiet",
        "--all-targets",
        "--target-dir",
        CLIPPY_TARGET_DIR,
        "--",
        "-D",
        "warnings",
    ])?;
    let packages = bare_metal_packages();
    for arch in Arch::ALL {
        let mut args = vec!["clippy", "--quiet", "--target", arch.target()];
        for package in &packages {
            args.extend(["--package", package.as_str()]);
        }
        args.extend(["--target-dir", CLIPPY_TARGET_DIR, "--", "-D", "warnings"]);
        cargo(&args)?;
    }
    if std::env::var_os("CI").is_some() {
        let dir = harness::workspace_root().join(CLIPPY_TARGET_DIR);
        std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    }
    crate::output::say(format_args!(
        "xtask: clippy clean in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

pub fn run() -> Result<(), String> {
    crate::deps::ensure()?;
    crate::deps::ensure_test_servers()?;
    crate::deps::ensure_python_packages();
    crate::deps::ensure_content_servers()?;
    // Formatting first: it takes a second and a diff is cheaper to read
    // than a failed CI run. Lints next: they fail in a minute or two,
    // before the tests' QEMU runs.
    cargo(&["fmt", "--all", "--check"])?;
    clippy()?;
    // Portable and guest libraries must keep building for bare metal:
    // clippy only checks, and some failures (LLVM's on soft-float x86_64)
    // appear only in code generation. In release, the profile the tests
    // build their service images in, so those builds reuse these
    // libraries instead of keeping a second, debug copy on disk.
    for arch in Arch::ALL {
        let libs = harness::layout::bare_metal_crates();
        let mut args = vec!["build", "--quiet", "--release", "--target", arch.target()];
        for lib in &libs {
            args.extend(["--package", lib.as_str()]);
        }
        args.extend(["--target-dir", "target/guest"]);
        cargo(&args)?;
    }
    // The default members are the host-side crates: their unit tests and
    // the QEMU integration tests, which build the service images for both
    // arches themselves.
    let (passed, failed) = cargo_test()?;
    println!("test: {passed} passed, {failed} failed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Timings, summary_counts};

    #[test]
    fn times_go_to_the_tests_of_their_binary_slowest_first() {
        let mut timings = Timings::default();
        for line in [
            "running 2 tests",
            "test a ... ok",
            "test b ... FAILED",
            "test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.50s",
            "running 0 tests",
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            "test content_on_a_node has been running for over 60 seconds",
            "test content_on_a_node ... ok",
            "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 304.26s",
            "test doc_line ... ok",
            "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; all doctests ran in 0.26s",
        ] {
            timings.line(line);
        }
        let slowest = timings.slowest(2);
        assert_eq!(
            slowest,
            [
                (304.26, vec![String::from("content_on_a_node")]),
                (0.5, vec![String::from("a"), String::from("b")]),
            ]
        );
    }

    #[test]
    fn reads_libtest_summaries() {
        assert_eq!(
            summary_counts(
                "test result: ok. 9 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s"
            ),
            Some((9, 0))
        );
        assert_eq!(
            summary_counts(
                "test result: FAILED. 3 passed; 2 failed; 1 ignored; 0 measured; 0 filtered out"
            ),
            Some((3, 2))
        );
        assert_eq!(summary_counts("running 3 tests"), None);
    }
}
