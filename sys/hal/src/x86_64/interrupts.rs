//! x86_64 interrupts: the 256-entry IDT (the 32 exceptions stay fatal),
//! the vectors we give out, the dispatcher the entry stubs call, and the
//! sleep: `sti; hlt` with the APIC timer armed.
//!
//! Vectors: 0x20-0x2f are where the 8259 PICs are moved before being
//! masked (a stray PIC interrupt then lands there instead of on an
//! exception), 0x30 + GSI for I/O APIC inputs, 0xf0 the APIC timer, 0xff
//! the APIC's spurious vector. Anything else is unexpected.

use core::{
    ops::Range,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
};

use spin::Once;
use x86_64::{VirtAddr, instructions::tables::lidt, structures::DescriptorTablePointer};

use super::{apic, ioapic, port::outb};
use crate::{clock::Instant, irq};

const PIC_VECTORS: Range<u8> = 0x20..0x30;
const GSI_VECTOR_BASE: u8 = 0x30;
/// GSIs we can give vectors to: both I/O APICs of a microvm.
const GSIS: u32 = 48;
const TIMER_VECTOR: u8 = 0xf0;
const SPURIOUS_VECTOR: u8 = 0xff;
/// A vector nothing uses, for [`raise_unexpected`].
const UNUSED_VECTOR: u8 = 0x99;
/// The line number PCI devices register under: a PC's INTx pins reach the
/// I/O APIC through the chipset's PIRQ routing, which we do not read (it
/// is in ACPI), so every PCI virtio device is acknowledged on any of them.
pub const PCI_INTX_LINE: u32 = 0x1_0000;
/// Where a PC's chipset delivers PIRQ A-H: GSIs 16 to 23.
const PCI_GSIS: Range<u32> = 16..24;

static READY: AtomicBool = AtomicBool::new(false);
/// GSIs (bit n for GSI n) that carry PCI INTx.
static PCI_LINES: AtomicU64 = AtomicU64::new(0);

/// One 64-bit interrupt gate.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    attributes: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

impl Gate {
    fn to(handler: u64) -> Gate {
        Gate {
            offset_low: handler as u16,
            selector: 0x08,
            ist: 0,
            attributes: 0x8e, // present, ring 0, interrupt gate (IF cleared)
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        }
    }
}

static IDT: Once<[Gate; 256]> = Once::new();

/// Loads the IDT: the boot crate's exception stubs for vectors 0-31, its
/// interrupt stubs (16 bytes apart) for 32-255.
pub fn install_idt() {
    unsafe extern "C" {
        /// The 32 exception entry stubs.
        static x86_exception_vectors: [u64; 32];
        /// The first of 224 interrupt entry stubs, one per vector from 32.
        static x86_interrupt_stubs: u8;
    }
    const STUB_SIZE: u64 = 16;
    let idt = IDT.call_once(|| {
        // SAFETY: the boot crate defines this table of 32 stub addresses in
        // read-only data.
        let exceptions = unsafe { x86_exception_vectors };
        let stubs = (&raw const x86_interrupt_stubs) as u64;
        core::array::from_fn(|vector| match exceptions.get(vector) {
            Some(&handler) => Gate::to(handler),
            None => Gate::to(stubs + (vector as u64 - 32) * STUB_SIZE),
        })
    });
    let pointer = DescriptorTablePointer {
        limit: (size_of::<[Gate; 256]>() - 1) as u16,
        base: VirtAddr::new(idt.as_ptr() as u64),
    };
    // SAFETY: the table is 'static; exception gates point at stubs that
    // report and power off, interrupt gates at stubs that save the
    // interrupted state, call `hal_interrupt` and return with `iretq`.
    unsafe { lidt(&pointer) };
}

/// Moves the 8259 PICs' vectors to 0x20-0x2f and masks all their inputs.
fn silence_pics() {
    const ICW1_INIT_ICW4: u8 = 0x11;
    // SAFETY: the standard PIC command and data ports; reprogramming and
    // masking them only affects interrupts we never unmask. On a machine
    // without PICs the writes go nowhere.
    unsafe {
        outb(0x20, ICW1_INIT_ICW4);
        outb(0xa0, ICW1_INIT_ICW4);
        outb(0x21, PIC_VECTORS.start);
        outb(0xa1, PIC_VECTORS.start + 8);
        outb(0x21, 4); // the slave sits on input 2
        outb(0xa1, 2);
        outb(0x21, 1); // 8086 mode
        outb(0xa1, 1);
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
}

/// Sets up the APIC and the I/O APICs (all inputs masked); without a
/// usable APIC, waits spin and say why.
pub fn init() {
    silence_pics();
    if let Err(e) = apic::init(TIMER_VECTOR, SPURIOUS_VECTOR) {
        crate::println!("hal: {e}: no interrupts, waits will spin");
        return;
    }
    ioapic::init();
    READY.store(true, Ordering::Relaxed);
}

pub fn interrupts_available() -> bool {
    READY.load(Ordering::Relaxed)
}

/// Delivers `gsi` to us, if an I/O APIC has it.
fn route(gsi: u32) -> bool {
    if !interrupts_available() || gsi >= GSIS {
        return false;
    }
    ioapic::route(gsi, GSI_VECTOR_BASE + gsi as u8, apic::id())
}

/// Registers a virtio-mmio device on `gsi` and unmasks the line; a device
/// whose line we cannot route is polled instead.
pub fn attach_mmio_device(base: usize, gsi: u32) {
    if ioapic::has(gsi) && irq::register(gsi, irq::Ack::VirtioMmio(base)) && route(gsi) {
        return;
    }
    irq::device_without_interrupt();
}

/// Registers a virtio-pci device whose ISR status byte is at `isr`, once
/// the caller knows it has an INTx pin; unmasks the PIRQ lines.
pub fn attach_pci_device(isr: usize) {
    if !irq::register(PCI_INTX_LINE, irq::Ack::VirtioPciIsr(isr)) {
        return;
    }
    for gsi in PCI_GSIS {
        if route(gsi) {
            PCI_LINES.fetch_or(1 << gsi, Ordering::Relaxed);
        }
    }
    if PCI_LINES.load(Ordering::Relaxed) == 0 {
        irq::device_without_interrupt();
    }
}

/// Called by the boot crate's interrupt stubs with the vector, interrupts
/// off, on the interrupted code's stack.
#[unsafe(no_mangle)]
extern "C" fn hal_interrupt(vector: u64) {
    let vector = vector as u8;
    // Decided first: only an interrupt the APIC delivered gets an EOI.
    let in_service = apic::in_service(vector);
    match vector {
        TIMER_VECTOR => irq::timer_interrupt(),
        SPURIOUS_VECTOR => irq::spurious_interrupt(),
        v if PIC_VECTORS.contains(&v) => irq::spurious_interrupt(),
        v if (GSI_VECTOR_BASE..GSI_VECTOR_BASE + GSIS as u8).contains(&v) => {
            let gsi = u32::from(v - GSI_VECTOR_BASE);
            let line = if PCI_LINES.load(Ordering::Relaxed) & (1 << gsi) != 0 {
                PCI_INTX_LINE
            } else {
                gsi
            };
            if !irq::device_interrupt(line) {
                irq::unexpected_interrupt(u32::from(v));
            }
        }
        v => irq::unexpected_interrupt(u32::from(v)),
    }
    if in_service {
        apic::end_of_interrupt();
    }
}

/// Sleeps until `deadline` or the next interrupt, whichever is first;
/// returns at once if one is already pending. Without interrupts it only
/// hints that the caller spins.
pub fn sleep_until(deadline: Instant) {
    if !interrupts_available() {
        core::hint::spin_loop();
        return;
    }
    apic::arm(deadline);
    // SAFETY: interrupts are off everywhere else. `sti` takes effect after
    // the next instruction, so an interrupt pending now (or arriving at any
    // point) ends the `hlt` rather than slipping in before it; the handlers
    // run here, and `cli` masks them again before any other code runs.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nostack)) };
    apic::disarm();
}

/// Self-IPIs on an unused vector and on the spurious vector, plus a
/// software interrupt on the unused vector: three.
pub fn raise_unexpected() -> u32 {
    if !interrupts_available() {
        return 0;
    }
    apic::send_to_self(UNUSED_VECTOR);
    apic::send_to_self(SPURIOUS_VECTOR);
    // SAFETY: `int` runs the unused vector's gate now, whatever IF is; the
    // handler counts it and returns.
    unsafe { core::arch::asm!("int {vector}", vector = const UNUSED_VECTOR, options(nostack)) };
    3
}
