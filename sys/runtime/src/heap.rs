//! The global allocator: one linked-list heap over the largest free stretch
//! of RAM. Services are small and single-threaded; a simple first-fit heap
//! is enough and keeps its metadata inside the free blocks.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};

use linked_list_allocator::LockedHeap;

use hal::BootInfo;

/// The linked-list heap, plus the most it ever had in use: a service's RAM
/// budget is set from its high-water mark, not from a snapshot.
struct TrackedHeap {
    heap: LockedHeap,
    peak: AtomicUsize,
}

// SAFETY: every call is forwarded unchanged to `LockedHeap`, a correct
// allocator; the peak is bookkeeping read after the allocation succeeded.
unsafe impl GlobalAlloc for TrackedHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        let ptr = unsafe { self.heap.alloc(layout) };
        if !ptr.is_null() {
            self.peak
                .fetch_max(self.heap.lock().used(), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { self.heap.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: TrackedHeap = TrackedHeap {
    heap: LockedHeap::empty(),
    peak: AtomicUsize::new(0),
};

pub(crate) fn init(info: &BootInfo) {
    let Some(span) = info.heap() else {
        hal::println!("runtime: no free RAM for a heap");
        hal::power::exit(guest_abi::EXIT_FAILURE);
    };
    // SAFETY: `BootInfo::heap` gives RAM that is mapped, outside the image
    // and the loader's blobs, and used by nothing else; init runs once.
    unsafe {
        ALLOCATOR
            .heap
            .lock()
            .init(span.start as usize as *mut u8, span.len() as usize)
    };
}

/// Heap usage, for services' metrics and the selftest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapStats {
    pub size: usize,
    pub used: usize,
    pub free: usize,
    /// The most `used` has been since boot.
    pub peak: usize,
}

pub fn heap_stats() -> HeapStats {
    let heap = ALLOCATOR.heap.lock();
    HeapStats {
        size: heap.size(),
        used: heap.used(),
        free: heap.free(),
        peak: ALLOCATOR.peak.load(Ordering::Relaxed),
    }
}
