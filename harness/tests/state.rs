//! Power loss on the state volume, for real: a guest commits a counter on
//! its virtio-blk state volume as fast as it can while the host kills QEMU
//! at varying moments; every reboot must read back exactly the last
//! counter the guest reported committed, or the one it was writing.

use std::time::Duration;

use harness::{Device, Guest, Machine, Profile, build_service};

/// Kills per machine.
const CUTS: u64 = 8;

fn survives_kills(machine: Machine) {
    let image =
        build_service("selftest", machine.arch(), Profile::Release).expect("selftest builds");
    let volume = std::env::temp_dir().join(format!(
        "state-kill-{}-{}.img",
        machine.name(),
        std::process::id()
    ));
    // Blank: the store formats it on first open.
    std::fs::write(&volume, vec![0u8; 64 * 1024]).expect("state volume");
    let mut last_committed = 0u64;
    for cut in 0..CUTS {
        let guest = Guest::new(machine, image.clone())
            .device(Device::Disk {
                path: volume.clone(),
                serial: "state".into(),
                read_only: false,
            })
            .cmdline("selftest.mode=state")
            .timeout(Duration::from_secs(60));
        let mut running = guest.spawn().expect("QEMU starts");
        let at = running
            .wait_for_line("state: at ", Duration::from_secs(30))
            .unwrap_or_else(|| panic!("cut {cut}: the guest never read its state"));
        let read_back: u64 = at
            .rsplit(' ')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .expect("a counter");
        assert!(
            read_back == last_committed || read_back == last_committed + 1,
            "cut {cut}: read back {read_back} after the guest reported {last_committed} committed"
        );
        // Let a varying number of commits land, then cut mid-stream.
        let wanted = read_back + 1 + cut * 3;
        running.wait_for_line(
            &format!("state: committed {wanted}"),
            Duration::from_secs(30),
        );
        std::thread::sleep(Duration::from_millis(cut * 7 % 23));
        let outcome = running.kill();
        // Only whole lines: the kill may cut the last one short.
        last_committed = outcome
            .console
            .split_inclusive('\n')
            .rev()
            .filter_map(|l| l.strip_suffix('\n'))
            .filter_map(|l| l.strip_prefix("state: committed "))
            .find_map(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(read_back);
        assert!(
            !outcome.console.contains("FAIL"),
            "cut {cut}: the guest failed:\n{outcome}"
        );
    }
    let _ = std::fs::remove_file(&volume);
    assert!(
        last_committed > CUTS,
        "the guest committed too little to test anything"
    );
}

#[test]
fn state_volume_survives_kills_on_microvm() {
    survives_kills(Machine::Microvm);
}

#[test]
fn state_volume_survives_kills_on_virt() {
    survives_kills(Machine::Virt);
}
