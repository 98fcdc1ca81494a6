//! The heap, and virtio-drivers' `Hal` for an identity-mapped guest.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::NonNull;

use linked_list_allocator::LockedHeap;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

/// Heap size: virtqueues, receive buffers (16 x 2 KiB per NIC) and smoltcp's
/// state need a few hundred KiB.
const HEAP_SIZE: usize = 2 << 20;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; HEAP_SIZE]>);

// SAFETY: the arena is only reached through the allocator, which locks.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; HEAP_SIZE]));

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

/// Hands the arena to the allocator. Call once, before the first allocation.
pub fn init() {
    // SAFETY: the arena is a static that nothing else uses, and this runs once.
    unsafe { ALLOCATOR.lock().init(ARENA.0.get().cast::<u8>(), HEAP_SIZE) };
}

/// virtio-drivers' platform layer: memory is identity-mapped (virtual address
/// = guest-physical address) and there is no IOMMU, so sharing is free.
pub struct GuestHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap memory that nothing else
// references until `dma_dealloc`; physical and virtual addresses are equal.
unsafe impl Hal for GuestHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Ok(layout) = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE) else {
            return (0, NonNull::dangling());
        };
        // SAFETY: the layout has a non-zero size (virtio-drivers asks for >= 1 page).
        let ptr = unsafe { ALLOCATOR.alloc_zeroed(layout) };
        match NonNull::new(ptr) {
            Some(ptr) => (ptr.as_ptr() as PhysAddr, ptr),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let layout = Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("layout");
        // SAFETY: the caller passes back what `dma_alloc` returned for `pages`.
        unsafe { ALLOCATOR.dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("MMIO at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr().cast::<u8>() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
