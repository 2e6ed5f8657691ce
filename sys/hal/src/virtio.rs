//! virtio: the DMA glue virtio-drivers needs, and discovery of devices on
//! PCI (q35) and MMIO (microvm, aarch64 virt).
//!
//! Memory is identity mapped, so physical and virtual addresses are equal
//! and DMA buffers are ordinary page-aligned heap allocations.

use alloc::{alloc::Layout, vec::Vec};
use core::ptr::NonNull;

use spin::Mutex;
use virtio_drivers::{
    BufferDirection, Hal, PhysAddr,
    transport::{DeviceType, SomeTransport, Transport, mmio::MmioTransport},
};

use crate::{PAGE_SIZE, arch, startup::BootInfo};

/// Size of one virtio-mmio transport window.
pub const MMIO_WINDOW: usize = 0x200;

static FOUND: Mutex<Vec<SomeTransport<'static>>> = Mutex::new(Vec::new());

/// The `virtio_drivers::Hal` of an identity-mapped guest.
pub struct VirtioHal;

fn dma_layout(pages: usize) -> Layout {
    // Layout::from_size_align only fails for sizes near usize::MAX, which
    // no queue asks for.
    Layout::from_size_align(pages.max(1) * PAGE_SIZE, PAGE_SIZE).expect("DMA layout")
}

// SAFETY: allocations come from the global allocator, are page aligned,
// zeroed and exclusively owned until dma_dealloc; with the identity map the
// physical address handed to the device is the allocation's address.
unsafe impl Hal for VirtioHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let layout = dma_layout(pages);
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::alloc::handle_alloc_error(layout)
        };
        (ptr.as_ptr() as PhysAddr, ptr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: the caller returns memory dma_alloc gave out with this
        // page count, hence this layout.
        unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), dma_layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("MMIO at physical address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// Probes one virtio-mmio window: `None` when nothing is plugged in there.
///
/// # Safety
/// `base` must be the start of a virtio-mmio window (or unbacked MMIO that
/// reads as zeroes or ones) that nothing else uses.
pub(crate) unsafe fn probe_mmio(base: usize) -> Option<SomeTransport<'static>> {
    let header = NonNull::new(base as *mut _)?;
    // SAFETY: per this function's contract the window is ours for 'static.
    let transport = unsafe { MmioTransport::new(header, MMIO_WINDOW) }.ok()?;
    Some(SomeTransport::Mmio(transport))
}

/// Finds the machine's virtio devices (once; later calls see what is left).
pub fn discover(info: &BootInfo) {
    let mut found = FOUND.lock();
    if found.is_empty() {
        *found = arch::virtio_transports(info);
    }
}

/// The device types found and not yet taken, in discovery order.
pub fn device_types() -> Vec<DeviceType> {
    FOUND.lock().iter().map(Transport::device_type).collect()
}

/// Takes the first undiscovered-yet-unclaimed device of `kind`.
pub fn take(kind: DeviceType) -> Option<SomeTransport<'static>> {
    let mut found = FOUND.lock();
    let index = found.iter().position(|t| t.device_type() == kind)?;
    Some(found.remove(index))
}
