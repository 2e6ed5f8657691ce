//! The global allocator: one linked-list heap over the largest free stretch
//! of RAM. Services are small and single-threaded; a simple first-fit heap
//! is enough and keeps its metadata inside the free blocks.

use linked_list_allocator::LockedHeap;

use hal::BootInfo;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

pub(crate) fn init(info: &BootInfo) {
    let Some(span) = info.heap() else {
        hal::println!("runtime: no free RAM for a heap");
        hal::power::exit(guest_abi::EXIT_FAILURE);
    };
    // SAFETY: `BootInfo::heap` gives RAM that is mapped, outside the image
    // and the loader's blobs, and used by nothing else; init runs once.
    unsafe {
        ALLOCATOR
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
}

pub fn heap_stats() -> HeapStats {
    let heap = ALLOCATOR.lock();
    HeapStats {
        size: heap.size(),
        used: heap.used(),
        free: heap.free(),
    }
}
