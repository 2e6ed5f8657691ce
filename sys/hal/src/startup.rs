//! From the boot stub to the service: collects what the loader handed over
//! into a [`BootInfo`] and calls the service's entry.

use bootinfo::{
    cmdline::Cmdline,
    layout::{Span, largest_free},
};
use core::sync::atomic::{AtomicU64, Ordering};

use spin::Once;

use crate::{PAGE_SIZE, arch};

/// Most RAM ranges we keep from the memory map.
pub const MAX_RAM_REGIONS: usize = 16;
/// Most virtio-mmio windows we look at.
pub const MAX_MMIO_WINDOWS: usize = 32;

/// The machine type, as far as the guest can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// QEMU `-M microvm` or a Firecracker-style VMM: PVH, virtio-mmio.
    Microvm,
    /// A PC with PCI (QEMU `-M q35`).
    Pc,
    /// QEMU `-M virt` or a board described by its device tree.
    Virt,
}

impl Platform {
    pub fn name(self) -> &'static str {
        match self {
            Platform::Microvm => "microvm",
            Platform::Pc => "pc",
            Platform::Virt => "virt",
        }
    }
}

/// An interrupt line as the platform numbers it (a GSI on x86_64, a GIC
/// interrupt ID on aarch64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line {
    pub number: u32,
    /// Edge- rather than level-triggered.
    pub edge: bool,
}

/// A virtio-mmio window and the line its device interrupts on, where the
/// platform says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioWindow {
    pub base: u64,
    pub line: Option<Line>,
}

/// Everything the loader told us, in our own terms.
#[derive(Debug)]
pub struct BootInfo {
    /// The kernel command line (`-append`, `/chosen/bootargs`).
    pub cmdline: &'static str,
    /// RAM ranges from the memory map.
    pub ram: heapless::Vec<Span, MAX_RAM_REGIONS>,
    /// Loader blobs we still borrow from (device tree, start info).
    pub reserved: heapless::Vec<Span, 4>,
    /// Candidate virtio-mmio windows (empty on PCI machines).
    pub mmio_windows: heapless::Vec<MmioWindow, MAX_MMIO_WINDOWS>,
    pub platform: Platform,
}

impl BootInfo {
    /// The command line, parsed.
    pub fn params(&self) -> Cmdline<'static> {
        Cmdline::new(self.cmdline)
    }

    /// The range to put the heap in: the largest free stretch of mapped RAM
    /// beyond the image and the loader's blobs.
    pub fn heap(&self) -> Option<Span> {
        let image = image_span();
        let mut reserved = heapless::Vec::<Span, 5>::new();
        // Capacity is one more than `self.reserved` holds, so nothing drops.
        let _ = reserved.push(image);
        let _ = reserved.extend_from_slice(&self.reserved);
        largest_free(&self.ram, &reserved, arch::MAPPED_RAM, PAGE_SIZE as u64)
    }
}

fn image_span() -> Span {
    unsafe extern "C" {
        static __image_start: u8;
        static __image_end: u8;
    }
    Span {
        start: (&raw const __image_start) as u64,
        end: (&raw const __image_end) as u64,
    }
}

static BOOT_INFO: Once<BootInfo> = Once::new();
static RUST_ENTRY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The raw counter when the boot stub handed over to Rust: with
/// `clock::entry_counter` and the runtime's own stamp at `main`, this
/// splits boot time into the assembly stub and the Rust start-up.
pub fn rust_entry_counter() -> u64 {
    RUST_ENTRY_COUNTER.load(Ordering::Relaxed)
}

/// The boot information, once `hal_boot_entry` has gathered it.
pub fn boot_info() -> &'static BootInfo {
    BOOT_INFO
        .get()
        .expect("boot info read before hal_boot_entry")
}

/// The Rust entry, called by the boot stub on the boot stack with the
/// loader's argument (PVH start info or device tree address).
#[unsafe(no_mangle)]
extern "C" fn hal_boot_entry(loader_arg: usize) -> ! {
    RUST_ENTRY_COUNTER.store(arch::counter(), Ordering::Relaxed);
    let info = BOOT_INFO.call_once(|| arch::early_init(loader_arg));
    unsafe extern "Rust" {
        /// Defined by the service through `runtime::entry!`.
        fn __unikernel_start(info: &'static BootInfo) -> !;
    }
    // SAFETY: the symbol is defined by the runtime's entry macro with this
    // exact signature; every service binary has exactly one.
    unsafe { __unikernel_start(info) }
}
