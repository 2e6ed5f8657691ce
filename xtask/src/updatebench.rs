//! The update flow's time in the dev node, for `cargo xtask bench image`:
//! config to committed, base OS 1.0 to 2.0, as `harness/tests/update.rs`
//! plays it (eve-host on a GPT dev disk, zedagent, the downloader,
//! volumemgr and baseosmgr under QEMU TCG, our controller and an HTTP
//! datastore on loopback). The scenario is that test's; this runs it by
//! name per arch and reads the time it prints, so the bench measures
//! exactly what the test checks.

use std::process::Stdio;

use harness::Arch;

/// The test that plays the flow on `arch`.
fn test_name(arch: Arch) -> String {
    format!("a_node_updates_its_base_os_and_commits_it_{arch}")
}

/// The seconds in the test's "update flow, ARCH: config to committed in
/// S s" line.
fn flow_seconds(output: &str, arch: Arch) -> Option<f64> {
    let prefix = format!("update flow, {arch}: config to committed in ");
    output
        .lines()
        .find_map(|line| line.strip_prefix(prefix.as_str()))
        .and_then(|rest| rest.strip_suffix(" s"))
        .and_then(|s| s.trim().parse().ok())
}

/// Runs the scenario once on `arch`: the seconds, or why not.
fn run_once(arch: Arch) -> Result<f64, String> {
    let name = test_name(arch);
    let args = [
        "test",
        "-p",
        "harness",
        "--test",
        "update",
        "--",
        "--exact",
        name.as_str(),
        "--nocapture",
    ];
    crate::output::say(format_args!("xtask: cargo {}", args.join(" ")));
    let out = crate::cargo_command()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    let text = String::from_utf8_lossy(&out.stderr);
    let tail = || {
        let last: Vec<&str> = text.lines().rev().take(40).collect();
        last.into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    if !out.status.success() {
        return Err(format!("{name} failed ({}):\n{}", out.status, tail()));
    }
    flow_seconds(&text, arch)
        .ok_or_else(|| format!("{name} printed no update flow time:\n{}", tail()))
}

/// Prints the update flow's time on each of `arches`, `runs` times each.
pub fn update_flow(arches: &[Arch], runs: usize) -> Result<(), String> {
    println!(
        "Update flow in the dev node (`harness/tests/update.rs`), config to committed, {runs} run(s) each, seconds: median (min-max)"
    );
    println!();
    println!("| arch | node | config to committed |");
    println!("|---|---|---|");
    for &arch in arches {
        let mut samples = Vec::new();
        for _ in 0..runs {
            samples.push(run_once(arch)?);
        }
        samples.sort_by(f64::total_cmp);
        let (min, max) = (samples[0], samples[samples.len() - 1]);
        println!(
            "| {arch} | eve-host on a GPT dev disk; zedagent, downloader, volumemgr, baseosmgr under TCG | {:.1} ({min:.1}-{max:.1}) |",
            samples[samples.len() / 2]
        );
    }
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_is_read_from_its_arch_line_only() {
        let out = "noise\nupdate flow, aarch64: config to committed in 81.5 s\n\
                   update flow, x86_64: config to committed in 42.0 s\n";
        assert_eq!(flow_seconds(out, Arch::X86_64), Some(42.0));
        assert_eq!(flow_seconds(out, Arch::Aarch64), Some(81.5));
        assert_eq!(
            flow_seconds(
                "update flow, x86_64: config to committed in s",
                Arch::X86_64
            ),
            None
        );
        assert_eq!(flow_seconds("", Arch::X86_64), None);
    }
}
