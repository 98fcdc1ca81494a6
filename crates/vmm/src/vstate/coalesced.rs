//! KVM's coalesced-write ring: writes to registered addresses (here the serial
//! port's transmit register) that KVM buffers instead of exiting to user space
//! for each one. The VMM replays them, in order, at the next exit of any vCPU.
//!
//! The ring is one page of the vCPU fd's mapping, shared by all vCPUs of a VM;
//! callers serialise draining (see `Buses::coalesced`).

use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use kvm_bindings::{KVM_COALESCED_MMIO_PAGE_OFFSET, kvm_coalesced_mmio};

const PAGE_SIZE: usize = 4096;
/// `first` and `last` come before the entries.
const HEADER: usize = 8;
const ENTRIES: u32 = ((PAGE_SIZE - HEADER) / size_of::<kvm_coalesced_mmio>()) as u32;

/// One buffered write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoalescedWrite {
    /// Port number or guest-physical address.
    pub addr: u64,
    /// Whether `addr` is an I/O port.
    pub pio: bool,
    len: usize,
    data: [u8; 8],
}

impl CoalescedWrite {
    /// The bytes written.
    pub fn data(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// The mapped ring of one vCPU.
pub struct CoalescedRing {
    page: NonNull<u8>,
}

// SAFETY: the mapping is process-wide memory that lives as long as the struct;
// access to the ring's indices is atomic and draining is serialised by callers.
unsafe impl Send for CoalescedRing {}

impl CoalescedRing {
    /// Maps the ring page of `vcpu` (a KVM vCPU fd); `None` where KVM has none.
    pub fn map(vcpu: &impl AsRawFd) -> Option<CoalescedRing> {
        // SAFETY: maps one shared page of the vCPU fd at the offset KVM documents
        // for the coalesced MMIO ring; the kernel validates fd and offset, and we
        // check the result before using it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                vcpu.as_raw_fd(),
                i64::from(KVM_COALESCED_MMIO_PAGE_OFFSET) * PAGE_SIZE as i64,
            )
        };
        if addr == libc::MAP_FAILED {
            return None;
        }
        NonNull::new(addr.cast()).map(|page| CoalescedRing { page })
    }

    fn index(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `first` (offset 0) and `last` (offset 4) are aligned u32s inside
        // the mapped page, which the kernel updates concurrently: hence atomics.
        unsafe { &*self.page.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    /// Whether nothing is buffered: a cheap check for the vCPU loop, which looks
    /// after every exit and should not take the drain lock for nothing.
    pub fn is_empty(&self) -> bool {
        self.index(0).load(Ordering::Relaxed) == self.index(4).load(Ordering::Acquire)
    }

    /// Takes the oldest buffered write, if any.
    pub fn pop(&mut self) -> Option<CoalescedWrite> {
        let first = self.index(0).load(Ordering::Relaxed);
        // Acquire: the entry the kernel wrote before advancing `last` is visible.
        let last = self.index(4).load(Ordering::Acquire);
        if first == last || first >= ENTRIES {
            return None;
        }
        // SAFETY: `first < ENTRIES`, so the entry lies inside the mapped page; the
        // kernel does not touch it until we advance `first` below.
        let entry = unsafe {
            self.page
                .as_ptr()
                .add(HEADER + first as usize * size_of::<kvm_coalesced_mmio>())
                .cast::<kvm_coalesced_mmio>()
                .read_volatile()
        };
        // Release: we are done reading the entry before the kernel may reuse it.
        self.index(0)
            .store((first + 1) % ENTRIES, Ordering::Release);
        // SAFETY: both members of the union are plain u32s; any value is valid.
        let pio = unsafe { entry.__bindgen_anon_1.pio } != 0;
        Some(CoalescedWrite {
            addr: entry.phys_addr,
            pio,
            len: (entry.len as usize).min(8),
            data: entry.data,
        })
    }
}

impl Drop for CoalescedRing {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the page `map` mapped; nothing refers to it after.
        unsafe { libc::munmap(self.page.as_ptr().cast(), PAGE_SIZE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fit_the_page() {
        assert_eq!(size_of::<kvm_coalesced_mmio>(), 24);
        assert_eq!(ENTRIES, 170);
    }
}
