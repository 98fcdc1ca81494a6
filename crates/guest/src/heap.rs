//! The heap, and virtio-drivers' `Hal` for an identity-mapped guest.
//!
//! Under emulated KVM (PVM) every guest instruction costs about a
//! microsecond, so the allocator is built to execute few: blocks come in
//! power-of-two size classes with one free list each (constant time, no list
//! walks), and memory that was never handed out is known to be zero (the arena
//! is `.bss`, which the VMM and the loader give us zeroed), so zeroed
//! allocations (virtqueues, receive buffers) are only cleared when a freed
//! block is reused. Most of the heap is taken once at boot and never freed.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};

use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

/// Heap size: virtqueues, receive buffers (8 x 2 KiB per NIC) and smoltcp's
/// state need a few hundred KiB.
const HEAP_SIZE: usize = 2 << 20;
/// Smallest block: room for the free-list link, and enough alignment for
/// anything but over-aligned types.
const MIN_BLOCK: usize = 16;
/// Blocks up to this size (and alignment) have their own size classes; larger
/// ones are whole pages.
const MAX_CLASS_BLOCK: usize = 4096;
/// Size classes 16, 32, ..., 4096.
const CLASSES: usize = (MAX_CLASS_BLOCK / MIN_BLOCK).trailing_zeros() as usize + 1;
/// Free lists for large blocks of 2..=`LARGE_LISTS` + 1 pages; larger freed
/// blocks are not reused (the guest never frees any).
const LARGE_LISTS: usize = 15;

#[repr(C, align(4096))]
struct Arena(UnsafeCell<[u8; HEAP_SIZE]>);

// SAFETY: the arena is only reached through the allocator.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena(UnsafeCell::new([0; HEAP_SIZE]));

/// A freed block: the link to the next one of its list sits at its start.
struct FreeBlock {
    next: *mut FreeBlock,
}

/// The allocator's bookkeeping: a bump pointer into the arena and the free
/// lists.
struct State {
    /// Offset in the arena of the first byte never handed out (all zero).
    bump: usize,
    /// Free blocks of each size class.
    classes: [*mut FreeBlock; CLASSES],
    /// Free large blocks by page count (index 0: 2 pages).
    large: [*mut FreeBlock; LARGE_LISTS],
}

/// The guest's allocator.
struct Allocator(UnsafeCell<State>);

// SAFETY: the guest runs on one CPU and its interrupt handlers never allocate
// (they only acknowledge the local APIC, see irq.rs), so calls into the
// allocator never overlap.
unsafe impl Sync for Allocator {}

#[global_allocator]
static ALLOCATOR: Allocator = Allocator(UnsafeCell::new(State {
    bump: 0,
    classes: [ptr::null_mut(); CLASSES],
    large: [ptr::null_mut(); LARGE_LISTS],
}));

/// Where a block of `layout` comes from: a size class (its index and block
/// size) or a run of whole pages.
#[derive(Clone, Copy)]
enum Kind {
    Class(usize, usize),
    Pages(usize),
}

/// The [`Kind`] of block that serves `layout`: the smallest power-of-two class
/// that holds its size and alignment, else enough whole pages.
fn kind(layout: Layout) -> Kind {
    let size = layout.size().max(layout.align()).max(MIN_BLOCK);
    if size <= MAX_CLASS_BLOCK {
        let block = size.next_power_of_two();
        Kind::Class((block / MIN_BLOCK).trailing_zeros() as usize, block)
    } else {
        Kind::Pages(size.div_ceil(PAGE_SIZE))
    }
}

impl State {
    /// The free list for `kind`, if it has one.
    fn list(&mut self, kind: Kind) -> Option<&mut *mut FreeBlock> {
        match kind {
            Kind::Class(class, _) => Some(&mut self.classes[class]),
            Kind::Pages(pages) => self.large.get_mut(pages.wrapping_sub(2)),
        }
    }

    /// A block for `kind` and whether it is known to be zero (never used).
    fn alloc(&mut self, kind: Kind, align: usize) -> (*mut u8, bool) {
        let reusable = match kind {
            Kind::Class(..) => true,
            Kind::Pages(_) => align <= PAGE_SIZE,
        };
        if let Some(head) = self.list(kind).filter(|_| reusable)
            && !head.is_null()
        {
            let block = *head;
            // SAFETY: `block` heads a free list: a free block of this kind whose
            // first bytes hold the link to the next one.
            *head = unsafe { (*block).next };
            return (block.cast(), false);
        }
        let (size, align) = match kind {
            Kind::Class(_, block) => (block, block),
            Kind::Pages(pages) => (pages * PAGE_SIZE, align.max(PAGE_SIZE)),
        };
        let base = ARENA.0.get() as usize;
        let start = (base + self.bump).next_multiple_of(align) - base;
        if start + size > HEAP_SIZE {
            return (ptr::null_mut(), false);
        }
        self.bump = start + size;
        // SAFETY: `start + size` is within the arena.
        (unsafe { ARENA.0.get().cast::<u8>().add(start) }, true)
    }

    /// Puts a block of `kind` back on its free list.
    fn free(&mut self, block: *mut u8, kind: Kind) {
        if let Some(head) = self.list(kind) {
            let block = block.cast::<FreeBlock>();
            // SAFETY: the caller gives back a block of this kind, at least
            // MIN_BLOCK bytes and 16-byte aligned, that nobody uses any more.
            unsafe { (*block).next = *head };
            *head = block;
        }
    }
}

// SAFETY: blocks are disjoint parts of the arena, at least `layout.size()` bytes
// and aligned to `layout.align()` (class blocks are aligned to their
// power-of-two size, which is at least the alignment; page runs to a page or
// more); a block is handed out again only after `dealloc`.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: calls never overlap (see `impl Sync`).
        let state = unsafe { &mut *self.0.get() };
        state.alloc(kind(layout), layout.align()).0
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: calls never overlap (see `impl Sync`).
        let state = unsafe { &mut *self.0.get() };
        let (block, fresh) = state.alloc(kind(layout), layout.align());
        if !block.is_null() && !fresh {
            // SAFETY: the block has at least `layout.size()` bytes.
            unsafe { ptr::write_bytes(block, 0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: calls never overlap (see `impl Sync`).
        let state = unsafe { &mut *self.0.get() };
        state.free(block, kind(layout));
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees that `new_size`, rounded up to the
        // alignment, does not overflow (GlobalAlloc::realloc's contract).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let (old, new) = (kind(layout), kind(new_layout));
        match (old, new) {
            (Kind::Class(a, _), Kind::Class(b, _)) | (Kind::Pages(a), Kind::Pages(b)) if a == b => {
                return block;
            }
            _ => {}
        }
        // SAFETY: as for `alloc`; the new block does not overlap the old one,
        // which stays valid for `layout.size()` bytes until freed here.
        unsafe {
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            moved
        }
    }
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
