//! Saved state from a disk that may lie: restoring must never panic; what
//! restores must export and restore again; and the engine must still
//! attach an app and pass its traffic afterwards.
#![no_main]

use std::net::Ipv4Addr;

use appnet::PortId;
use appnet_fuzz::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rig = Rig::new();
    let ip1 = rig.app_ips[0];
    let _ = rig.engine.detach(rig.now, PortId(2));
    if rig.engine.restore_state(rig.now, data).is_ok() {
        let again = rig.engine.export_state(rig.now);
        rig.engine
            .restore_state(rig.now, &again)
            .expect("exported state restores");
    }
    let frame = udp_frame(
        BRIDGE_MAC,
        mac(1),
        (ip1, 5000),
        (Ipv4Addr::new(192, 0, 2, 1), 7),
        b"x",
    );
    rig.receive(PortId(1), &frame);
    rig.take();
    rig.report();
});
