//! Device tree tests. Blobs are produced by a tiny writer below rather than
//! checked-in binaries, so each malformed case is one visible edit away from
//! a valid tree.

use super::*;
use std::vec::Vec;

/// Minimal DTB writer: structure and strings blocks, assembled behind a v17
/// header and an empty memory reservation map.
#[derive(Default, Clone)]
struct Builder {
    structure: Vec<u8>,
    strings: Vec<u8>,
}

const OFF_TOTALSIZE: usize = 4;
const OFF_STRUCT: usize = 8;
const OFF_STRINGS: usize = 12;
const OFF_RSVMAP: usize = 16;
const OFF_VERSION: usize = 20;
const OFF_LAST_COMP: usize = 24;
const OFF_SIZE_STRINGS: usize = 32;
const OFF_SIZE_STRUCT: usize = 36;
/// Where the builder puts the structure block.
const STRUCT_START: usize = FDT_HEADER_LEN + 16;

impl Builder {
    fn token(&mut self, t: u32) -> &mut Self {
        self.structure.extend_from_slice(&t.to_be_bytes());
        self
    }

    fn pad(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }

    fn begin(&mut self, name: &str) -> &mut Self {
        self.token(FDT_BEGIN_NODE);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad();
        self
    }

    fn end(&mut self) -> &mut Self {
        self.token(FDT_END_NODE)
    }

    fn string_offset(&mut self, name: &str) -> u32 {
        let mut needle = name.as_bytes().to_vec();
        needle.push(0);
        let found = self
            .strings
            .windows(needle.len())
            .position(|w| w == needle.as_slice());
        let off = found.unwrap_or_else(|| {
            let off = self.strings.len();
            self.strings.extend_from_slice(&needle);
            off
        });
        off as u32
    }

    fn prop_raw(&mut self, len: u32, nameoff: u32, value: &[u8]) -> &mut Self {
        self.token(FDT_PROP);
        self.structure.extend_from_slice(&len.to_be_bytes());
        self.structure.extend_from_slice(&nameoff.to_be_bytes());
        self.structure.extend_from_slice(value);
        self.pad();
        self
    }

    fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let off = self.string_offset(name);
        self.prop_raw(value.len() as u32, off, value)
    }

    fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
        let value: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        self.prop(name, &value)
    }

    fn strs(&mut self, name: &str, list: &[&str]) -> &mut Self {
        let mut value = Vec::new();
        for s in list {
            value.extend_from_slice(s.as_bytes());
            value.push(0);
        }
        self.prop(name, &value)
    }

    /// The blob with `FDT_END` appended.
    fn finish(&self) -> Vec<u8> {
        let mut b = self.clone();
        b.token(FDT_END);
        b.assemble()
    }

    /// The blob exactly as written, for trees that must lack `FDT_END`.
    fn assemble(&self) -> Vec<u8> {
        let off_strings = STRUCT_START + self.structure.len();
        let total = off_strings + self.strings.len();
        let mut blob = std::vec![0u8; STRUCT_START];
        blob.extend_from_slice(&self.structure);
        blob.extend_from_slice(&self.strings);
        let fields = [
            (0, FDT_MAGIC),
            (OFF_TOTALSIZE, total as u32),
            (OFF_STRUCT, STRUCT_START as u32),
            (OFF_STRINGS, off_strings as u32),
            (OFF_RSVMAP, FDT_HEADER_LEN as u32),
            (OFF_VERSION, 17),
            (OFF_LAST_COMP, 16),
            (28, 0),
            (OFF_SIZE_STRINGS, self.strings.len() as u32),
            (OFF_SIZE_STRUCT, self.structure.len() as u32),
        ];
        for (off, v) in fields {
            set(&mut blob, off, v);
        }
        blob
    }
}

fn set(blob: &mut [u8], off: usize, v: u32) {
    blob[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

fn get(blob: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(blob[off..off + 4].try_into().unwrap())
}

const VIRTIO_COUNT: u32 = 4;

/// A tree shaped like QEMU `virt`'s (trimmed), including a `cpus` node with
/// `#size-cells = 0` and a PCIe node with 3 address cells, as the real one has.
fn qemu_virt() -> Builder {
    let mut b = Builder::default();
    b.begin("")
        .cells("#address-cells", &[2])
        .cells("#size-cells", &[2])
        .cells("interrupt-parent", &[0x8002])
        .strs("compatible", &["linux,dummy-virt"]);
    b.begin("psci")
        .strs("compatible", &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])
        .strs("method", &["hvc"])
        .cells("cpu_suspend", &[0xc400_0001])
        .end();
    b.begin("memory@40000000")
        .cells("reg", &[0, 0x4000_0000, 0, 0x800_0000])
        .strs("device_type", &["memory"])
        .end();
    b.begin("pcie@10000000")
        .cells("#address-cells", &[3])
        .cells("#size-cells", &[2])
        .strs("compatible", &["pci-host-ecam-generic"])
        .cells("reg", &[0x40, 0x1000_0000, 0, 0x1000_0000])
        .end();
    b.begin("pl031@9010000")
        .cells("interrupts", &[0, 2, 4])
        .cells("reg", &[0, 0x901_0000, 0, 0x1000])
        .strs("compatible", &["arm,pl031", "arm,primecell"])
        .end();
    b.begin("pl011@9000000")
        .cells("interrupts", &[0, 1, 4])
        .cells("reg", &[0, 0x900_0000, 0, 0x1000])
        .strs("compatible", &["arm,pl011", "arm,primecell"])
        .end();
    b.begin("intc@8000000")
        .cells("#interrupt-cells", &[3])
        .prop("interrupt-controller", &[])
        .strs("compatible", &["arm,cortex-a15-gic"])
        .cells(
            "reg",
            &[0, 0x800_0000, 0, 0x1_0000, 0, 0x801_0000, 0, 0x1_0000],
        )
        .end();
    b.token(FDT_NOP);
    for i in 0..VIRTIO_COUNT {
        let base = 0xa00_0000 + 0x200 * i;
        b.begin(&std::format!("virtio_mmio@{base:x}"))
            .prop("dma-coherent", &[])
            .cells("interrupts", &[0, 0x10 + i, 1])
            .cells("reg", &[0, base, 0, 0x200])
            .strs("compatible", &["virtio,mmio"])
            .end();
    }
    b.begin("cpus")
        .cells("#address-cells", &[1])
        .cells("#size-cells", &[0]);
    b.begin("cpu@0")
        .strs("device_type", &["cpu"])
        .strs("compatible", &["arm,cortex-a57"])
        .cells("reg", &[0])
        .end();
    b.end();
    b.begin("chosen")
        .strs("bootargs", &["service=selftest log=debug"])
        .strs("stdout-path", &["/pl011@9000000"])
        .end();
    b.end();
    b
}

fn devices<'a>(fdt: &Fdt<'a>, compatible: &str) -> Vec<Result<Device<'a>, FdtError>> {
    fdt.compatible_regs(compatible).unwrap().collect()
}

/// A root node wrapping `inner`, for compact malformed cases.
fn tree(inner: impl FnOnce(&mut Builder)) -> Vec<u8> {
    let mut b = Builder::default();
    b.begin("");
    inner(&mut b);
    b.end();
    b.finish()
}

#[test]
fn qemu_virt_tree() {
    let blob = qemu_virt().finish();
    assert_eq!(total_size(&blob), Ok(blob.len()));
    let fdt = Fdt::new(&blob).unwrap();

    let memory = fdt.memory().unwrap();
    assert_eq!(
        memory.as_slice(),
        [Region {
            base: 0x4000_0000,
            size: 0x800_0000
        }]
    );
    assert_eq!(fdt.bootargs(), Ok(Some("service=selftest log=debug")));
    assert_eq!(fdt.psci_method(), Ok(Some("hvc")));

    let virtio = devices(&fdt, "virtio,mmio");
    assert_eq!(virtio.len(), VIRTIO_COUNT as usize);
    for (i, dev) in virtio.iter().enumerate() {
        let dev = dev.unwrap();
        let base = 0xa00_0000 + 0x200 * i as u64;
        assert_eq!(dev.name, std::format!("virtio_mmio@{base:x}"));
        assert_eq!(dev.reg, Some(Region { base, size: 0x200 }));
        assert_eq!(dev.irq(), [0, 16 + i as u32, 1]);
        assert_eq!(dev.gic_spi(), Some(16 + i as u32));
    }

    let uart = devices(&fdt, "arm,pl011");
    assert_eq!(
        uart,
        [Ok(Device {
            name: "pl011@9000000",
            reg: Some(Region {
                base: 0x900_0000,
                size: 0x1000
            }),
            second_reg: None,
            irq_cells: [0, 1, 4],
            irq_count: 3,
            interrupts: &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4],
        })]
    );
    let rtc = devices(&fdt, "arm,pl031");
    assert_eq!(rtc.len(), 1);
    assert_eq!(rtc[0].unwrap().reg.unwrap().base, 0x901_0000);
    // Second entry of a compatible list matches too.
    assert_eq!(devices(&fdt, "arm,primecell").len(), 2);
    // The first two reg entries are reported.
    let gic = devices(&fdt, "arm,cortex-a15-gic");
    assert_eq!(gic[0].unwrap().reg.unwrap().base, 0x800_0000);
    assert_eq!(gic[0].unwrap().second_reg.unwrap().base, 0x801_0000);
    assert_eq!(gic[0].unwrap().irq_count, 0);
    assert_eq!(gic[0].unwrap().gic_spi(), None);
    // PSCI has no reg.
    let psci = devices(&fdt, "arm,psci-0.2");
    assert_eq!(psci[0].unwrap().reg, None);
    // Prefixes and empty strings do not match.
    assert!(devices(&fdt, "virtio").is_empty());
    assert!(devices(&fdt, "").is_empty());
    assert!(devices(&fdt, "nothing,here").is_empty());
}

#[test]
fn unsupported_cells_are_reported_when_reg_is_read() {
    let blob = qemu_virt().finish();
    let fdt = Fdt::new(&blob).unwrap();
    // cpus has #size-cells = 0; legal, but not a shape we decode.
    assert_eq!(
        devices(&fdt, "arm,cortex-a57"),
        [Err(FdtError::UnsupportedCells {
            address: 1,
            size: 0
        })]
    );
    // PCIe children would have 3 address cells; the node itself uses root's.
    assert!(devices(&fdt, "pci-host-ecam-generic")[0].is_ok());
    // 3-cell memory addresses.
    let blob = tree(|b| {
        b.begin("bus")
            .cells("#address-cells", &[3])
            .begin("memory@0")
            .strs("device_type", &["memory"])
            .cells("reg", &[0, 0, 0x4000_0000, 0x1000])
            .end()
            .end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(
        fdt.memory(),
        Err(FdtError::UnsupportedCells {
            address: 3,
            size: 1
        })
    );
}

#[test]
fn memory_cells_and_multiple_banks() {
    let blob = tree(|b| {
        b.cells("#address-cells", &[1]).cells("#size-cells", &[1]);
        b.begin("memory@0")
            .strs("device_type", &["memory"])
            .cells("reg", &[0, 0x1000, 0x10_0000, 0x20_0000])
            .end();
        // Name alone is enough.
        b.begin("memory@80000000")
            .cells("reg", &[0x8000_0000, 0x8000_0000])
            .end();
        // device_type alone is enough.
        b.begin("ram")
            .strs("device_type", &["memory"])
            .cells("reg", &[0xf000_0000, 0x10])
            .end();
        // Neither: ignored.
        b.begin("memoryish").cells("reg", &[1, 1]).end();
        // Memory node without reg contributes nothing.
        b.begin("memory@1").end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    let mem = fdt.memory().unwrap();
    let expect = [
        (0, 0x1000),
        (0x10_0000, 0x20_0000),
        (0x8000_0000, 0x8000_0000),
        (0xf000_0000, 0x10),
    ]
    .map(|(base, size)| Region { base, size });
    assert_eq!(&*mem, expect);
    assert_eq!(mem.len(), 4);
    assert_eq!((&mem).into_iter().count(), 4);

    // Default cells (2 address, 1 size) when the parent declares none.
    let blob = tree(|b| {
        b.begin("memory@0").cells("reg", &[1, 0, 0x4000_0000]).end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(
        fdt.memory().unwrap().as_slice(),
        [Region {
            base: 1 << 32,
            size: 0x4000_0000
        }]
    );
}

#[test]
fn too_many_memory_regions() {
    let regs = |n: u32| -> Vec<u32> { (0..n).flat_map(|i| [0, i << 20, 0, 0x1000]).collect() };
    let blob = tree(|b| {
        b.cells("#size-cells", &[2]);
        b.begin("memory@0").cells("reg", &regs(8)).end();
    });
    assert_eq!(Fdt::new(&blob).unwrap().memory().unwrap().len(), 8);
    let blob = tree(|b| {
        b.cells("#size-cells", &[2]);
        b.begin("memory@0").cells("reg", &regs(9)).end();
    });
    assert_eq!(
        Fdt::new(&blob).unwrap().memory(),
        Err(FdtError::TooManyRegions)
    );
}

#[test]
fn bad_reg_values() {
    let with_reg = |reg: &[u32]| {
        tree(|b| {
            b.cells("#address-cells", &[1]).cells("#size-cells", &[1]);
            b.begin("memory@0").cells("reg", reg).end();
        })
    };
    let blob = with_reg(&[0, 0x1000, 5]);
    assert_eq!(
        Fdt::new(&blob).unwrap().memory(),
        Err(FdtError::BadProperty("reg"))
    );
    let blob = tree(|b| {
        b.begin("memory@0")
            .cells("reg", &[u32::MAX, u32::MAX, 2])
            .end();
    });
    assert_eq!(
        Fdt::new(&blob).unwrap().memory(),
        Err(FdtError::RegionOverflow)
    );
    let blob = tree(|b| {
        b.prop("#address-cells", &[0, 1]);
        b.begin("memory@0").cells("reg", &[0, 0]).end();
    });
    assert_eq!(
        Fdt::new(&blob).unwrap().memory(),
        Err(FdtError::BadProperty("#address-cells"))
    );
    let blob = tree(|b| {
        b.cells("#size-cells", &[0]);
        b.begin("memory@0").cells("reg", &[0, 0]).end();
    });
    assert_eq!(
        Fdt::new(&blob).unwrap().memory(),
        Err(FdtError::UnsupportedCells {
            address: 2,
            size: 0
        })
    );
    // Empty reg: no regions, no error.
    let blob = with_reg(&[]);
    assert!(Fdt::new(&blob).unwrap().memory().unwrap().is_empty());
}

#[test]
fn bad_interrupts_and_iterator_stops_after_error() {
    let blob = tree(|b| {
        b.begin("a")
            .strs("compatible", &["x"])
            .prop("interrupts", &[0, 0, 0, 1, 2])
            .end();
        b.begin("b").strs("compatible", &["x"]).end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    let mut it = fdt.compatible_regs("x").unwrap();
    assert_eq!(it.next(), Some(Err(FdtError::BadProperty("interrupts"))));
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None);

    // Fewer and more than 3 cells.
    let blob = tree(|b| {
        b.begin("one")
            .strs("compatible", &["x"])
            .cells("interrupts", &[7])
            .end();
        b.begin("many")
            .strs("compatible", &["x"])
            .cells("interrupts", &[0, 5, 4, 0, 6, 4])
            .end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    let got: Vec<_> = devices(&fdt, "x").into_iter().map(|d| d.unwrap()).collect();
    assert_eq!(got[0].irq(), [7]);
    assert_eq!(got[0].gic_spi(), None);
    assert_eq!(got[1].irq(), [0, 5, 4]);
    assert_eq!(got[1].gic_spi(), Some(5));
    // Every cell stays reachable.
    assert_eq!(got[1].interrupt_cell(4), Some(6));
    assert_eq!(got[1].interrupt_cell(6), None);
    assert_eq!(got[0].interrupt_cell(0), Some(7));
}

#[test]
fn compatible_list_without_final_nul_still_matches() {
    let blob = tree(|b| {
        b.begin("a").prop("compatible", b"foo\0bar").end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(devices(&fdt, "foo").len(), 1);
    assert_eq!(devices(&fdt, "bar").len(), 1);
}

#[test]
fn chosen_and_psci_variants() {
    // No /chosen, no PSCI.
    let fdt_blob = tree(|_| {});
    let fdt = Fdt::new(&fdt_blob).unwrap();
    assert_eq!(fdt.bootargs(), Ok(None));
    assert_eq!(fdt.psci_method(), Ok(None));
    assert!(fdt.memory().unwrap().is_empty());

    // /chosen without bootargs; a nested "chosen" is not /chosen; PSCI 0.2
    // without method.
    let blob = tree(|b| {
        b.begin("soc")
            .begin("chosen")
            .strs("bootargs", &["wrong"])
            .end()
            .end();
        b.begin("chosen").end();
        b.begin("psci").strs("compatible", &["arm,psci-0.2"]).end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(fdt.bootargs(), Ok(None));
    assert_eq!(fdt.psci_method(), Ok(None));

    let blob = tree(|b| {
        b.begin("chosen").strs("bootargs", &[""]).end();
        b.begin("psci")
            .strs("compatible", &["arm,psci"])
            .strs("method", &["smc"])
            .end();
    });
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(fdt.bootargs(), Ok(Some("")));
    assert_eq!(fdt.psci_method(), Ok(Some("smc")));

    for bad in [&b"no nul"[..], b"two\0strings\0", b"\xff\0", b""] {
        let blob = tree(|b| {
            b.begin("chosen").prop("bootargs", bad).end();
            b.begin("psci")
                .strs("compatible", &["arm,psci-1.0"])
                .prop("method", bad)
                .end();
        });
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(fdt.bootargs(), Err(FdtError::BadProperty("bootargs")));
        assert_eq!(fdt.psci_method(), Err(FdtError::BadProperty("method")));
    }
}

#[test]
fn nops_and_trailing_bytes_are_ignored() {
    let mut b = Builder::default();
    b.token(FDT_NOP)
        .begin("")
        .token(FDT_NOP)
        .cells("#size-cells", &[2]);
    b.token(FDT_NOP).end().token(FDT_NOP);
    let mut blob = b.finish();
    let total = blob.len();
    blob.extend_from_slice(&[0xff; 100]);
    assert_eq!(total_size(&blob), Ok(total));
    assert!(Fdt::new(&blob).is_ok());
}

#[test]
fn total_size_checks() {
    let blob = qemu_virt().finish();
    assert_eq!(total_size(&blob[..FDT_HEADER_LEN]), Ok(blob.len()));
    assert_eq!(
        total_size(&blob[..39]),
        Err(FdtError::TooShort {
            needed: 40,
            got: 39
        })
    );
    let mut h = blob[..FDT_HEADER_LEN].to_vec();
    set(&mut h, OFF_TOTALSIZE, 39);
    assert_eq!(total_size(&h), Err(FdtError::BadTotalSize(39)));
    set(&mut h, OFF_TOTALSIZE, MAX_FDT_LEN as u32);
    assert_eq!(total_size(&h), Ok(MAX_FDT_LEN));
    set(&mut h, OFF_TOTALSIZE, MAX_FDT_LEN as u32 + 1);
    assert_eq!(
        total_size(&h),
        Err(FdtError::BadTotalSize(MAX_FDT_LEN as u32 + 1))
    );
    set(&mut h, OFF_TOTALSIZE, u32::MAX);
    assert_eq!(total_size(&h), Err(FdtError::BadTotalSize(u32::MAX)));
    set(&mut h, 0, 0xfeed_d00d);
    assert_eq!(total_size(&h), Err(FdtError::BadMagic(0xfeed_d00d)));
}

#[test]
fn header_errors() {
    let good = qemu_virt().finish();
    let patched = |off: usize, v: u32| {
        let mut b = good.clone();
        set(&mut b, off, v);
        Fdt::new(&b).map(|_| ())
    };
    assert_eq!(
        patched(0, 0xd00d_feee),
        Err(FdtError::BadMagic(0xd00d_feee))
    );
    // totalsize beyond the slice.
    let total = good.len() as u32;
    assert_eq!(
        patched(OFF_TOTALSIZE, total + 4),
        Err(FdtError::TooShort {
            needed: good.len() + 4,
            got: good.len()
        })
    );
    assert_eq!(
        Fdt::new(&good[..good.len() - 1]).map(|_| ()),
        Err(FdtError::TooShort {
            needed: good.len(),
            got: good.len() - 1
        })
    );
    // Blocks beyond totalsize, or overlapping the header.
    let oob = |b| Err(FdtError::BlockOutOfBounds(b));
    assert_eq!(patched(OFF_STRUCT, total), oob(Block::Struct));
    assert_eq!(patched(OFF_STRUCT, u32::MAX), oob(Block::Struct));
    assert_eq!(patched(OFF_STRUCT, 0), oob(Block::Struct));
    assert_eq!(patched(OFF_SIZE_STRUCT, total), oob(Block::Struct));
    assert_eq!(patched(OFF_SIZE_STRUCT, u32::MAX), oob(Block::Struct));
    assert_eq!(patched(OFF_STRINGS, total), oob(Block::Strings));
    assert_eq!(patched(OFF_SIZE_STRINGS, u32::MAX), oob(Block::Strings));
    assert_eq!(patched(OFF_RSVMAP, total - 8), oob(Block::MemReserve));
    assert_eq!(patched(OFF_RSVMAP, 8), oob(Block::MemReserve));
    assert_eq!(
        patched(OFF_RSVMAP, 44),
        Err(FdtError::Misaligned(Block::MemReserve))
    );
    // Shrinking totalsize pushes the strings block out.
    assert_eq!(patched(OFF_TOTALSIZE, total - 4), oob(Block::Strings));
    // Misaligned struct block (still in bounds).
    let mut b = good.clone();
    let off = get(&b, OFF_STRUCT);
    set(&mut b, OFF_STRUCT, off + 2);
    let size = get(&b, OFF_SIZE_STRUCT);
    set(&mut b, OFF_SIZE_STRUCT, size - 4);
    assert_eq!(
        Fdt::new(&b).map(|_| ()),
        Err(FdtError::Misaligned(Block::Struct))
    );
    // Versions.
    let unsupported = |version, last_compatible| {
        Err(FdtError::UnsupportedVersion {
            version,
            last_compatible,
        })
    };
    assert_eq!(patched(OFF_VERSION, 16), unsupported(16, 16));
    assert_eq!(patched(OFF_LAST_COMP, 18), unsupported(17, 18));
    assert_eq!(patched(OFF_VERSION, 20), Ok(()));
}

#[test]
fn truncated_struct_block() {
    let good = qemu_virt().finish();
    let size = get(&good, OFF_SIZE_STRUCT);
    // Every shorter struct block is rejected, whatever token it cuts into.
    for cut in 0..size {
        let mut b = good.clone();
        set(&mut b, OFF_SIZE_STRUCT, cut);
        assert!(Fdt::new(&b).is_err(), "cut at {cut}");
    }
    let mut b = good.clone();
    set(&mut b, OFF_SIZE_STRUCT, size - 4);
    assert_eq!(Fdt::new(&b).map(|_| ()), Err(FdtError::MissingEnd));
    set(&mut b, OFF_SIZE_STRUCT, size - 2);
    assert_eq!(Fdt::new(&b).map(|_| ()), Err(FdtError::MissingEnd));
}

#[test]
fn structural_errors() {
    let check = |b: &Builder, expect: FdtError| {
        assert_eq!(Fdt::new(&b.finish()).map(|_| ()), Err(expect));
    };
    let mut b = Builder::default();
    b.begin("").end();
    // Missing END: root closed, then the block just stops.
    assert_eq!(
        Fdt::new(&b.assemble()).map(|_| ()),
        Err(FdtError::MissingEnd)
    );

    // END inside an open node.
    let mut b = Builder::default();
    b.begin("").begin("child");
    check(&b, FdtError::UnclosedNode);

    // Extra END_NODE.
    let mut b = Builder::default();
    b.begin("").end().end();
    check(&b, FdtError::UnbalancedEndNode { offset: 12 });

    // No root, and two roots.
    check(&Builder::default(), FdtError::BadRoot);
    let mut b = Builder::default();
    b.begin("").end().begin("").end();
    check(&b, FdtError::BadRoot);

    // Unknown token.
    let mut b = Builder::default();
    b.begin("").token(7).end();
    check(
        &b,
        FdtError::BadToken {
            offset: 8,
            token: 7,
        },
    );

    // Property before any node, and after a subnode.
    let mut b = Builder::default();
    b.cells("x", &[1]).begin("").end();
    check(&b, FdtError::PropertyOutsideNode { offset: 0 });
    let mut b = Builder::default();
    b.begin("").begin("a").end().cells("late", &[1]).end();
    check(&b, FdtError::PropertyAfterSubnode { offset: 20 });

    // Node name not UTF-8.
    let mut b = Builder::default();
    b.begin("").token(FDT_BEGIN_NODE);
    b.structure.extend_from_slice(b"\xff\xfe\0\0");
    b.end().end();
    check(&b, FdtError::BadNodeName { offset: 8 });
}

#[test]
fn unterminated_node_name() {
    let mut b = Builder::default();
    b.begin("").token(FDT_BEGIN_NODE);
    b.structure.extend_from_slice(b"abcdefgh");
    // No END appended: the name runs to the end of the block.
    assert_eq!(
        Fdt::new(&b.assemble()).map(|_| ()),
        Err(FdtError::UnterminatedName { offset: 8 })
    );
}

#[test]
fn property_length_overflow() {
    for len in [0xffff_fff0, u32::MAX, 64] {
        let mut b = Builder::default();
        b.begin("");
        let off = b.string_offset("reg");
        b.prop_raw(len, off, &[0; 8]).end();
        assert_eq!(
            Fdt::new(&b.finish()).map(|_| ()),
            Err(FdtError::PropertyOverflow { offset: 8 }),
            "len {len:#x}"
        );
    }
    // Property header itself cut off.
    let mut b = Builder::default();
    b.begin("").token(FDT_PROP).token(4);
    assert_eq!(
        Fdt::new(&b.assemble()).map(|_| ()),
        Err(FdtError::PropertyOverflow { offset: 8 })
    );
}

#[test]
fn string_offset_out_of_range() {
    let mut b = Builder::default();
    b.begin("").cells("ok", &[1]);
    let len = b.strings.len() as u32;
    b.prop_raw(0, len, &[]).end();
    assert_eq!(
        Fdt::new(&b.finish()).map(|_| ()),
        Err(FdtError::BadStringOffset(len))
    );

    let mut b = Builder::default();
    b.begin("").prop_raw(0, u32::MAX, &[]).end();
    assert_eq!(
        Fdt::new(&b.finish()).map(|_| ()),
        Err(FdtError::BadStringOffset(u32::MAX))
    );

    // A name running off the end of the strings block.
    let mut b = Builder::default();
    b.strings.extend_from_slice(b"dangling");
    b.begin("").prop_raw(0, 2, &[]).end();
    assert_eq!(
        Fdt::new(&b.finish()).map(|_| ()),
        Err(FdtError::UnterminatedString(2))
    );
}

#[test]
fn nesting_limit() {
    let nested = |depth: usize| {
        let mut b = Builder::default();
        for i in 0..depth {
            b.begin(if i == 0 { "" } else { "n" });
        }
        for _ in 0..depth {
            b.end();
        }
        b.finish()
    };
    assert!(Fdt::new(&nested(MAX_DEPTH)).is_ok());
    assert_eq!(
        Fdt::new(&nested(MAX_DEPTH + 1)).map(|_| ()),
        Err(FdtError::TooDeep)
    );
    assert_eq!(Fdt::new(&nested(1000)).map(|_| ()), Err(FdtError::TooDeep));
}

#[test]
fn errors_display() {
    use std::string::ToString;
    let all = [
        FdtError::TooShort { needed: 1, got: 0 },
        FdtError::BadMagic(1),
        FdtError::BadTotalSize(1),
        FdtError::UnsupportedVersion {
            version: 1,
            last_compatible: 1,
        },
        FdtError::BlockOutOfBounds(Block::MemReserve),
        FdtError::Misaligned(Block::Struct),
        FdtError::BlockOutOfBounds(Block::Strings),
        FdtError::BadToken {
            offset: 0,
            token: 0,
        },
        FdtError::MissingEnd,
        FdtError::UnterminatedName { offset: 0 },
        FdtError::BadNodeName { offset: 0 },
        FdtError::PropertyOverflow { offset: 0 },
        FdtError::PropertyOutsideNode { offset: 0 },
        FdtError::PropertyAfterSubnode { offset: 0 },
        FdtError::BadStringOffset(0),
        FdtError::UnterminatedString(0),
        FdtError::TooDeep,
        FdtError::UnbalancedEndNode { offset: 0 },
        FdtError::UnclosedNode,
        FdtError::BadRoot,
        FdtError::BadProperty("reg"),
        FdtError::UnsupportedCells {
            address: 3,
            size: 1,
        },
        FdtError::RegionOverflow,
        FdtError::TooManyRegions,
    ];
    for e in all {
        assert!(e.to_string().contains("device tree"), "{e:?}");
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Runs every public entry point; the only assertion is that none panics
/// and every iteration terminates.
fn exercise(bytes: &[u8]) -> bool {
    let _ = total_size(bytes);
    scan_agrees_with_queries(bytes);
    let Ok(fdt) = Fdt::new(bytes) else {
        return false;
    };
    let _ = fdt.memory();
    let _ = fdt.bootargs();
    let _ = fdt.psci_method();
    for compatible in ["virtio,mmio", "arm,pl011", "arm,cortex-a57", "x"] {
        let n = fdt
            .compatible_regs(compatible)
            .unwrap()
            .take(10_000)
            .count();
        assert!(n < 10_000);
    }
    true
}

/// `scan` and `new_scanned` must see exactly what `new` and the separate
/// queries see, or fail where one of them fails.
fn scan_agrees_with_queries(bytes: &[u8]) {
    let wanted = ["virtio,mmio", "arm,pl011"];
    let combined = Fdt::new_scanned(bytes, &wanted, |_, _| {});
    let Ok(fdt) = Fdt::new(bytes) else {
        assert!(combined.is_err(), "new_scanned accepted what new refused");
        return;
    };
    let fdt = &fdt;
    let wanted = ["virtio,mmio", "arm,pl011"];
    let mut found: [Vec<Device<'_>>; 2] = Default::default();
    let scanned = fdt.scan(&wanted, |i, d| found[i].push(d));
    let separate = (|| {
        let mut each: [Vec<Device<'_>>; 2] = Default::default();
        for (i, c) in wanted.iter().enumerate() {
            for d in fdt.compatible_regs(c)? {
                each[i].push(d?);
            }
        }
        Ok::<_, FdtError>((fdt.memory()?, fdt.bootargs()?, fdt.psci_method()?, each))
    })();
    assert_eq!(combined.map(|(_, s)| s).ok(), scanned.ok());
    match (scanned, separate) {
        (Ok(scan), Ok((memory, bootargs, psci, each))) => {
            assert_eq!(scan.memory, memory);
            assert_eq!(scan.bootargs, bootargs);
            assert_eq!(scan.psci_method, psci);
            assert_eq!(found, each);
        }
        (Err(_), Err(_)) => {}
        (scan, separate) => panic!("scan {scan:?} but queries {separate:?}"),
    }
}

#[test]
fn scan_sees_what_the_queries_see() {
    let blob = qemu_virt().finish();
    scan_agrees_with_queries(&blob);
    let fdt = Fdt::new(&blob).unwrap();
    let mut virtio = 0;
    let scan = fdt
        .scan(&["virtio,mmio"], |i, d| {
            assert_eq!(i, 0);
            assert!(d.reg.is_some());
            virtio += 1;
        })
        .unwrap();
    assert!(virtio > 0);
    assert!(!scan.memory.is_empty());
    assert_eq!(scan.psci_method, Some("hvc"));
}

#[test]
fn random_and_mutated_inputs_never_panic() {
    let mut rng = XorShift(0x0123_4567_89ab_cdef);
    let good = qemu_virt().finish();
    assert!(exercise(&good));
    let interesting = [0, 1, 2, 3, 4, 9, 0x7fff_ffff, 0xffff_fff0, u32::MAX];

    // Pure noise, sometimes behind a plausible header.
    for _ in 0..3000 {
        let len = rng.below(300);
        let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if b.len() >= FDT_HEADER_LEN && rng.below(2) == 0 {
            set(&mut b, 0, FDT_MAGIC);
            set(&mut b, OFF_TOTALSIZE, len as u32);
            set(&mut b, OFF_VERSION, 17);
            set(&mut b, OFF_LAST_COMP, 16);
            set(&mut b, OFF_STRUCT, FDT_HEADER_LEN as u32);
            set(&mut b, OFF_SIZE_STRUCT, rng.below(len) as u32);
        }
        exercise(&b);
    }

    // Mutations of a valid tree: byte flips, word overwrites, truncation.
    let mut accepted = 0;
    for _ in 0..8000 {
        let mut b = good.clone();
        for _ in 0..1 + rng.below(4) {
            match rng.below(4) {
                0 => {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
                1 if b.len() >= 4 => {
                    let i = rng.below(b.len() / 4) * 4;
                    set(&mut b, i, interesting[rng.below(interesting.len())]);
                }
                2 => {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
                _ => {
                    let len = rng.below(b.len() + 1);
                    b.truncate(len);
                }
            }
            if b.is_empty() {
                break;
            }
        }
        if exercise(&b) {
            accepted += 1;
        }
    }
    // Most single mutations hit property values, which the walk accepts; the
    // fuzz is only meaningful if both outcomes occur.
    assert!(accepted > 100 && accepted < 8000, "accepted {accepted}");
}
