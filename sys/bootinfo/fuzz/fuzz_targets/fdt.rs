//! A device tree from the loader: validation and every query must never
//! panic, and the one-walk scan must agree with the separate queries.
#![no_main]

use bootinfo::fdt::{Fdt, total_size};
use libfuzzer_sys::fuzz_target;

const COMPATIBLES: [&str; 3] = ["virtio,mmio", "arm,pl011", "arm,pl031"];

fuzz_target!(|data: &[u8]| {
    let _ = total_size(data);
    let mut scanned_devices = 0usize;
    let scanned = Fdt::new_scanned(data, &COMPATIBLES, |_, _| scanned_devices += 1);
    let Ok(fdt) = Fdt::new(data) else {
        assert!(scanned.is_err(), "new_scanned accepted what new refused");
        return;
    };
    let memory = fdt.memory();
    let bootargs = fdt.bootargs();
    let psci = fdt.psci_method();
    let mut listed_devices = 0usize;
    for compatible in COMPATIBLES {
        for device in fdt
            .compatible_regs(compatible)
            .expect("the walk cannot fail")
        {
            if let Ok(device) = device {
                let _ = device.gic_spi();
                listed_devices += 1;
            }
        }
    }
    if let Ok((_, scan)) = scanned {
        assert_eq!(Ok(scan.memory), memory);
        assert_eq!(Ok(scan.bootargs), bootargs);
        if let Ok(Some(method)) = psci {
            assert_eq!(scan.psci_method, Some(method));
        }
        assert!(scanned_devices >= listed_devices);
    }
});
