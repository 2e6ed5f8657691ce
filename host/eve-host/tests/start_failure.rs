//! A VM that real QEMU refuses to start is reported as a start failure in
//! QEMU's own words, on both arches, and never as a guest's exit: on
//! x86_64 QEMU's error exit (1) is also what a guest's status 0 looks like
//! through `isa-debug-exit`, which is how a crash loop once read "exited
//! cleanly (status 0)".

use std::{
    path::Path,
    sync::Arc,
    thread,
    time::{Duration, Instant},
};

use eve_host::{
    Accel, Arch,
    console::StderrLog,
    end::End,
    heartbeat::HeartbeatBoard,
    manifest::RestartPolicy,
    qemu::QemuVmm,
    supervisor::{ServiceSetup, State, Status, Supervisor},
    vmm::VmSpec,
};

/// A guard against hanging, not a timing target.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `spec` under the supervisor with the system's QEMU until its first
/// run ends, then stops the node; returns the status at that end.
fn first_end(dir: &Path, spec: VmSpec) -> Status {
    let setup = ServiceSetup {
        spec,
        policy: RestartPolicy::default(),
        heartbeat_timeout: None,
        console_log: dir.join("vm.console"),
    };
    let mut supervisor = Supervisor::new(
        QemuVmm,
        vec![setup],
        Arc::new(HeartbeatBoard::default()),
        Arc::new(StderrLog),
        Instant::now(),
    );
    let until = Instant::now() + PATIENCE;
    let ended = loop {
        if let Some(status) = supervisor
            .step(Instant::now())
            .into_iter()
            .find(|s| s.last_end.is_some())
        {
            break status;
        }
        assert!(Instant::now() < until, "QEMU neither ran nor failed");
        thread::sleep(Duration::from_millis(20));
    };
    supervisor.begin_shutdown(Instant::now(), Duration::from_secs(5));
    while !supervisor.is_stopped() {
        assert!(Instant::now() < until, "the node did not stop");
        supervisor.step(Instant::now());
        thread::sleep(Duration::from_millis(20));
    }
    ended
}

/// A VM of `arch` whose image exists (its content is never reached).
fn vm(dir: &Path, arch: Arch, image: &[u8]) -> VmSpec {
    let kernel = dir.join("image");
    std::fs::write(&kernel, image).unwrap();
    VmSpec::new("refused", arch, Accel::Tcg, kernel)
}

fn assert_start_failure(status: &Status, qemu_says: &str) {
    match &status.last_end {
        Some(End::StartFailed { message }) => {
            assert!(message.contains(qemu_says), "{status}")
        }
        other => panic!("expected a start failure, got {other:?} ({status})"),
    }
    assert!(
        status.to_string().contains("failed to start: qemu"),
        "{status}"
    );
    assert!(
        matches!(status.state, State::Restarting { .. }),
        "a start failure is retried: {status}"
    );
}

fn too_many_vcpus(arch: Arch) {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = vm(dir.path(), arch, b"never booted");
    spec.vcpus = 10_000;
    let status = first_end(dir.path(), spec);
    assert_start_failure(&status, "Invalid SMP CPUs 10000");
    let console = std::fs::read_to_string(dir.path().join("vm.console")).unwrap();
    assert!(
        console.contains("[vmm] qemu-system-") && console.contains("Invalid SMP CPUs"),
        "{console}"
    );
}

#[test]
fn x86_64_qemu_refusing_its_arguments_is_a_start_failure() {
    too_many_vcpus(Arch::X86_64);
}

#[test]
fn aarch64_qemu_refusing_its_arguments_is_a_start_failure() {
    too_many_vcpus(Arch::Aarch64);
}

#[test]
fn x86_64_an_image_qemu_cannot_load_is_a_start_failure_not_a_clean_exit() {
    let dir = tempfile::tempdir().unwrap();
    let spec = vm(dir.path(), Arch::X86_64, b"not an ELF and not a bzImage");
    let status = first_end(dir.path(), spec);
    assert_start_failure(&status, "kernel");
}
