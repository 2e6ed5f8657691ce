//! The Arm Generic Interrupt Controller, version 2 (memory-mapped CPU
//! interface) or 3 (system-register CPU interface, redistributors), as the
//! device tree says: QEMU virt gives v2 by default and v3 with
//! `gic-version=3`. One CPU, every interrupt at one priority, group 1 on v3
//! (signalled as IRQ at EL1), group 0 on v2 (IRQ when FIQs are not
//! enabled).

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// Interrupt IDs the controller answers when nothing is pending.
pub const SPURIOUS: u32 = 1023;
/// Priority of every interrupt we enable, and the mask that lets it in.
const PRIORITY: u8 = 0xa0;
const PRIORITY_MASK: u32 = 0xf0;

// Distributor (both versions).
const GICD_CTLR: usize = 0x000;
const GICD_TYPER: usize = 0x004;
const GICD_IGROUPR: usize = 0x080;
const GICD_ISENABLER: usize = 0x100;
const GICD_ICENABLER: usize = 0x180;
const GICD_ICPENDR: usize = 0x280;
const GICD_IPRIORITYR: usize = 0x400;
const GICD_ITARGETSR: usize = 0x800;
const GICD_ICFGR: usize = 0xc00;
const GICD_SGIR: usize = 0xf00;
const GICD_IROUTER: usize = 0x6000;
const GICD_CTLR_RWP: u32 = 1 << 31;
// v2 CPU interface.
const GICC_CTLR: usize = 0x00;
const GICC_PMR: usize = 0x04;
const GICC_BPR: usize = 0x08;
const GICC_IAR: usize = 0x0c;
const GICC_EOIR: usize = 0x10;
// v3 redistributor: RD frame, then the SGI frame 64 KiB on.
const GICR_TYPER: usize = 0x0008;
const GICR_WAKER: usize = 0x0014;
const GICR_SGI_FRAME: usize = 0x1_0000;
const GICR_TYPER_VLPIS: u64 = 1 << 1;
const GICR_TYPER_LAST: u64 = 1 << 4;
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// Redistributor frames we look through for ours, at most.
const MAX_REDISTRIBUTORS: usize = 512;
/// Register polls before giving up on a GIC that never settles.
const SETTLE_POLLS: u32 = 1_000_000;

/// Which GIC the device tree describes, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gic {
    V2 {
        distributor: usize,
        cpu: usize,
    },
    V3 {
        distributor: usize,
        redistributors: usize,
    },
}

/// Why the GIC could not be brought up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicError {
    /// No redistributor has this CPU's affinity.
    NoRedistributor,
    /// The system-register CPU interface could not be enabled.
    NoSystemRegisters,
    /// A register never reported that a change was done.
    Stuck,
}

impl core::fmt::Display for GicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            GicError::NoRedistributor => "GICv3: no redistributor for this CPU",
            GicError::NoSystemRegisters => "GICv3: system register interface unavailable",
            GicError::Stuck => "GIC: a register never settled",
        })
    }
}

const NONE: u8 = 0;
const V2: u8 = 2;
const V3: u8 = 3;
static VERSION: AtomicU8 = AtomicU8::new(NONE);
static DISTRIBUTOR: AtomicUsize = AtomicUsize::new(0);
/// v2: the CPU interface; v3: our redistributor's RD frame.
static CPU: AtomicUsize = AtomicUsize::new(0);

fn read(base: usize, offset: usize) -> u32 {
    // SAFETY: a GIC register in its MMIO frame (device memory in our map);
    // reads of the registers used here have no side effects except IAR,
    // which only `acknowledge` reads.
    unsafe { ((base + offset) as *const u32).read_volatile() }
}

fn write(base: usize, offset: usize, value: u32) {
    // SAFETY: as for `read`; callers write values the register allows.
    unsafe { ((base + offset) as *mut u32).write_volatile(value) }
}

fn write_byte(base: usize, offset: usize, value: u8) {
    // SAFETY: as for `write`; the target registers are byte-accessible.
    unsafe { ((base + offset) as *mut u8).write_volatile(value) }
}

/// Gives interrupts `ids` (a multiple of four wide) our one priority, four
/// per word: a boot under TCG pays for every register access.
fn set_priorities(base: usize, ids: core::ops::Range<usize>) {
    let four = u32::from_ne_bytes([PRIORITY; 4]);
    for id in ids.step_by(4) {
        write(base, GICD_IPRIORITYR + id, four);
    }
}

fn wait_until(done: impl Fn() -> bool) -> Result<(), GicError> {
    for _ in 0..SETTLE_POLLS {
        if done() {
            return Ok(());
        }
        core::hint::spin_loop();
    }
    Err(GicError::Stuck)
}

/// The GICv3 CPU interface's system registers, by encoding, so the
/// assembler needs no GIC feature.
mod icc {
    macro_rules! read {
        ($name:literal) => {{
            let value: u64;
            // SAFETY: reading a GICv3 CPU interface register (enabled by
            // ICC_SRE_EL1.SRE before any other is used) does what the
            // register defines and nothing else.
            unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value, options(nostack)) };
            value
        }};
    }
    macro_rules! write {
        ($name:literal, $value:expr) => {{
            let value: u64 = $value;
            // SAFETY: writing a GICv3 CPU interface register with a value
            // its definition allows.
            unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) value, options(nostack)) };
        }};
    }
    pub fn sre() -> u64 {
        read!("s3_0_c12_c12_5")
    }
    pub fn set_sre(value: u64) {
        write!("s3_0_c12_c12_5", value)
    }
    pub fn set_pmr(value: u64) {
        write!("s3_0_c4_c6_0", value)
    }
    pub fn set_bpr1(value: u64) {
        write!("s3_0_c12_c12_3", value)
    }
    pub fn set_igrpen1(value: u64) {
        write!("s3_0_c12_c12_7", value)
    }
    /// Acknowledges the pending interrupt it returns.
    pub fn iar1() -> u64 {
        read!("s3_0_c12_c12_0")
    }
    pub fn set_eoir1(value: u64) {
        write!("s3_0_c12_c12_1", value)
    }
    pub fn set_sgi1r(value: u64) {
        write!("s3_0_c12_c11_5", value)
    }
}

fn affinity() -> u64 {
    let mpidr: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { core::arch::asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack)) };
    mpidr
}

/// Brings the GIC up with every interrupt disabled, ready for
/// [`enable`].
pub fn init(gic: Gic) -> Result<(), GicError> {
    match gic {
        Gic::V2 { distributor, cpu } => {
            init_distributor(distributor, false)?;
            write(cpu, GICC_PMR, PRIORITY_MASK);
            write(cpu, GICC_BPR, 0);
            write(cpu, GICC_CTLR, 1);
            DISTRIBUTOR.store(distributor, Ordering::Relaxed);
            CPU.store(cpu, Ordering::Relaxed);
            VERSION.store(V2, Ordering::Release);
        }
        Gic::V3 {
            distributor,
            redistributors,
        } => {
            init_distributor(distributor, true)?;
            let rd = find_redistributor(redistributors)?;
            write(
                rd,
                GICR_WAKER,
                read(rd, GICR_WAKER) & !WAKER_PROCESSOR_SLEEP,
            );
            wait_until(|| read(rd, GICR_WAKER) & WAKER_CHILDREN_ASLEEP == 0)?;
            let sgi = rd + GICR_SGI_FRAME;
            write(sgi, GICD_ICENABLER, u32::MAX);
            write(sgi, GICD_IGROUPR, u32::MAX);
            set_priorities(sgi, 0..32);
            icc::set_sre(icc::sre() | 1);
            if icc::sre() & 1 == 0 {
                return Err(GicError::NoSystemRegisters);
            }
            icc::set_pmr(u64::from(PRIORITY_MASK));
            icc::set_bpr1(0);
            icc::set_igrpen1(1);
            DISTRIBUTOR.store(distributor, Ordering::Relaxed);
            CPU.store(rd, Ordering::Relaxed);
            VERSION.store(V3, Ordering::Release);
        }
    }
    Ok(())
}

/// Disables, clears and prioritises every shared interrupt, then turns
/// the distributor on (with affinity routing on v3).
fn init_distributor(base: usize, v3: bool) -> Result<(), GicError> {
    write(base, GICD_CTLR, 0);
    let settled = || read(base, GICD_CTLR) & GICD_CTLR_RWP == 0;
    if v3 {
        wait_until(settled)?;
    }
    let lines = ((read(base, GICD_TYPER) & 0x1f) as usize + 1) * 32;
    for word in 1..lines / 32 {
        write(base, GICD_ICENABLER + word * 4, u32::MAX);
        write(base, GICD_ICPENDR + word * 4, u32::MAX);
        if v3 {
            write(base, GICD_IGROUPR + word * 4, u32::MAX);
        }
    }
    let first = if v3 { 32 } else { 0 };
    set_priorities(base, first..lines);
    if v3 {
        // Affinity routing first, then the groups (EnableGrp0/1 or, seen
        // from the non-secure side, EnableGrp1NS/1A).
        write(base, GICD_CTLR, 1 << 4);
        wait_until(settled)?;
        write(base, GICD_CTLR, (1 << 4) | 0b11);
        wait_until(settled)
    } else {
        write(base, GICD_CTLR, 1);
        Ok(())
    }
}

fn find_redistributor(region: usize) -> Result<usize, GicError> {
    let mpidr = affinity();
    let ours = (mpidr & 0xff_ffff) | ((mpidr >> 32) & 0xff) << 24;
    let mut frame = region;
    for _ in 0..MAX_REDISTRIBUTORS {
        let typer =
            u64::from(read(frame, GICR_TYPER)) | u64::from(read(frame, GICR_TYPER + 4)) << 32;
        if typer >> 32 == ours {
            return Ok(frame);
        }
        if typer & GICR_TYPER_LAST != 0 {
            break;
        }
        // RD and SGI frames, plus two for virtual LPIs on GICv4.
        frame += if typer & GICR_TYPER_VLPIS != 0 {
            0x4_0000
        } else {
            0x2_0000
        };
    }
    Err(GicError::NoRedistributor)
}

/// Enables interrupt `id` (SGI 0-15, PPI 16-31, SPI from 32) for this CPU;
/// `edge` configures an SPI as edge- rather than level-triggered.
pub fn enable(id: u32, edge: bool) {
    let id = id as usize;
    let distributor = DISTRIBUTOR.load(Ordering::Relaxed);
    let bit = 1 << (id % 32);
    match VERSION.load(Ordering::Acquire) {
        // GICv3 keeps SGIs and PPIs in the redistributor.
        V3 if id < 32 => write(
            CPU.load(Ordering::Relaxed) + GICR_SGI_FRAME,
            GICD_ISENABLER,
            bit,
        ),
        V2 | V3 => {
            if id >= 32 {
                configure_spi(distributor, id, edge);
            }
            write(distributor, GICD_ISENABLER + (id / 32) * 4, bit);
        }
        _ => {}
    }
}

/// Sets shared interrupt `id`'s trigger and sends it to this CPU.
fn configure_spi(distributor: usize, id: usize, edge: bool) {
    let config = GICD_ICFGR + (id / 16) * 4;
    let edge_bit = 1 << ((id % 16) * 2 + 1);
    let old = read(distributor, config);
    let new = if edge {
        old | edge_bit
    } else {
        old & !edge_bit
    };
    write(distributor, config, new);
    if VERSION.load(Ordering::Relaxed) == V3 {
        let route = GICD_IROUTER + id * 8;
        let mpidr = affinity();
        write(distributor, route, (mpidr & 0xff_ffff) as u32);
        write(distributor, route + 4, ((mpidr >> 32) & 0xff) as u32);
    } else {
        // The first target registers are banked: they read as this CPU's
        // own interface bit.
        let ours = (read(distributor, GICD_ITARGETSR) & 0xff) as u8;
        write_byte(distributor, GICD_ITARGETSR + id, ours.max(1));
    }
}

/// Takes the highest-priority pending interrupt: its ID, or [`SPURIOUS`].
pub fn acknowledge() -> u32 {
    match VERSION.load(Ordering::Acquire) {
        V2 => read(CPU.load(Ordering::Relaxed), GICC_IAR) & 0x3ff,
        V3 => (icc::iar1() & 0xff_ffff) as u32,
        _ => SPURIOUS,
    }
}

/// Ends interrupt `id` (priority drop and deactivation).
pub fn end(id: u32) {
    match VERSION.load(Ordering::Acquire) {
        V2 => write(CPU.load(Ordering::Relaxed), GICC_EOIR, id),
        V3 => icc::set_eoir1(u64::from(id)),
        _ => {}
    }
}

/// Sends software-generated interrupt `id` (0-15) to this CPU alone.
pub fn send_to_self(id: u32) {
    match VERSION.load(Ordering::Acquire) {
        // Target list filter 0b10: the requesting CPU.
        V2 => write(
            DISTRIBUTOR.load(Ordering::Relaxed),
            GICD_SGIR,
            (0b10 << 24) | (id & 0xf),
        ),
        V3 => {
            let mpidr = affinity();
            let aff0 = mpidr & 0xff;
            let value = (1 << (aff0 % 16))
                | (aff0 / 16) << 44
                | ((mpidr >> 8) & 0xff) << 16
                | u64::from(id & 0xf) << 24
                | ((mpidr >> 16) & 0xff) << 32
                | ((mpidr >> 32) & 0xff) << 48;
            icc::set_sgi1r(value);
        }
        _ => {}
    }
}
