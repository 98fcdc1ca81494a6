//! What the VMM told us at boot: memory map and command line, read from the
//! Linux zero page (`struct boot_params`) or the PVH `struct hvm_start_info`.

use crate::boot::BOOT_PVH;

/// E820 / PVH memory map type of usable RAM.
const E820_RAM: u32 = 1;
/// Longest command line we read.
const CMDLINE_MAX: usize = 4096;
const PVH_MAGIC: u32 = 0x336e_c578;

/// Facts from the boot protocol.
pub struct BootInfo {
    /// "linux" or "pvh".
    pub protocol: &'static str,
    /// Bytes of usable RAM (sum of the RAM ranges of the memory map).
    pub ram_bytes: u64,
    /// Number of RAM ranges in the memory map.
    pub ram_ranges: u32,
    /// The kernel command line, without its NUL terminator.
    pub cmdline: &'static [u8],
}

/// Reads a value of type `T` at guest-physical address `addr`.
///
/// # Safety
/// `addr..addr + size_of::<T>()` must be mapped (identity-mapped low memory) and
/// hold a value of type `T` written by the VMM.
unsafe fn peek<T: Copy>(addr: u64) -> T {
    // SAFETY: guaranteed by the caller; read_unaligned has no alignment needs.
    unsafe { core::ptr::read_unaligned(addr as *const T) }
}

/// Returns the NUL-terminated string at `addr` (at most `CMDLINE_MAX` bytes).
///
/// # Safety
/// `addr` must be 0 or point into identity-mapped memory that nothing writes
/// for the rest of the guest's life.
unsafe fn c_string(addr: u64) -> &'static [u8] {
    if addr == 0 {
        return &[];
    }
    let left: usize;
    // SAFETY: the caller guarantees that the bytes are mapped; `repne scasb`
    // reads forward (the direction flag is clear) and stops after the NUL or
    // after CMDLINE_MAX bytes, whichever comes first. One instruction rather
    // than a loop: cheaper where KVM emulates every guest instruction.
    unsafe {
        core::arch::asm!("repne scasb",
            inout("rcx") CMDLINE_MAX => left, inout("rdi") addr => _, in("al") 0u8,
            options(nostack, readonly));
    }
    // RCX counts the bytes not scanned; the last one scanned is the NUL, or
    // not (no NUL within CMDLINE_MAX bytes).
    let scanned = CMDLINE_MAX - left;
    // SAFETY: that byte was just read.
    let len = if unsafe { peek::<u8>(addr + scanned as u64 - 1) } == 0 {
        scanned - 1
    } else {
        scanned
    };
    // SAFETY: the `len` bytes at `addr` were just read; they stay valid and unchanged.
    unsafe { core::slice::from_raw_parts(addr as *const u8, len) }
}

impl BootInfo {
    /// Parses the structure the boot protocol `protocol` left at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be the boot-protocol pointer the VMM passed at entry.
    pub unsafe fn parse(protocol: u64, ptr: u64) -> BootInfo {
        // SAFETY: forwarded from our caller.
        unsafe {
            if protocol == BOOT_PVH {
                Self::parse_pvh(ptr)
            } else {
                Self::parse_linux(ptr)
            }
        }
    }

    unsafe fn parse_linux(zero_page: u64) -> BootInfo {
        // SAFETY: `zero_page` points at a 4 KiB struct boot_params; the offsets are
        // those of Documentation/arch/x86/zero-page.rst.
        unsafe {
            let entries = peek::<u8>(zero_page + 0x1e8).min(128);
            let mut ram_bytes = 0;
            let mut ram_ranges = 0;
            for i in 0..u64::from(entries) {
                let entry = zero_page + 0x2d0 + i * 20;
                if peek::<u32>(entry + 16) == E820_RAM {
                    ram_bytes += peek::<u64>(entry + 8);
                    ram_ranges += 1;
                }
            }
            let cmdline_ptr = u64::from(peek::<u32>(zero_page + 0x228))
                | (u64::from(peek::<u32>(zero_page + 0xc8)) << 32);
            BootInfo {
                protocol: "linux",
                ram_bytes,
                ram_ranges,
                cmdline: c_string(cmdline_ptr),
            }
        }
    }

    unsafe fn parse_pvh(start_info: u64) -> BootInfo {
        // SAFETY: `start_info` points at struct hvm_start_info (xen/include/public/
        // arch-x86/hvm/start_info.h); the memory map exists from version 1 on.
        unsafe {
            let mut info = BootInfo {
                protocol: "pvh",
                ram_bytes: 0,
                ram_ranges: 0,
                cmdline: &[],
            };
            if peek::<u32>(start_info) != PVH_MAGIC {
                return info;
            }
            info.cmdline = c_string(peek::<u64>(start_info + 24));
            if peek::<u32>(start_info + 4) >= 1 {
                let map = peek::<u64>(start_info + 40);
                let entries = peek::<u32>(start_info + 48).min(128);
                for i in 0..u64::from(entries) {
                    let entry = map + i * 24;
                    if peek::<u32>(entry + 16) == E820_RAM {
                        info.ram_bytes += peek::<u64>(entry + 8);
                        info.ram_ranges += 1;
                    }
                }
            }
            info
        }
    }

    /// Usable RAM rounded up to whole MiB: the size the VM was given, since
    /// the memory map only leaves out the legacy hole below 1 MiB.
    pub fn ram_mib(&self) -> u64 {
        self.ram_bytes.div_ceil(1 << 20)
    }
}
