//! The memory routines that compiled Rust code calls (`memcpy` and friends).
//!
//! The Linux target's `compiler_builtins` expects libc to provide them, and a
//! freestanding guest has no libc. `rep` string instructions keep them short and
//! cannot be turned back into calls to themselves by the optimiser.

use core::arch::asm;

/// Below this many bytes a byte-wise `rep` is cheaper than splitting the
/// work into 8-byte and 1-byte parts (a few more instructions).
const WORDWISE_FROM: usize = 32;

/// Copies `n` bytes forward. Under emulated KVM each iteration of a `rep`
/// string instruction is emulated separately, so 8-byte iterations copy about
/// eight times faster than byte ones.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if n < WORDWISE_FROM {
        // SAFETY: the caller guarantees that both ranges are valid and do not overlap.
        unsafe {
            asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
                 options(nostack, preserves_flags));
        }
    } else {
        // SAFETY: as above; `n / 8` quadwords then `n % 8` bytes cover the range
        // exactly, forward (the direction flag is clear).
        unsafe {
            asm!("rep movsq", "mov rcx, {tail}", "rep movsb",
                 tail = in(reg) n % 8,
                 inout("rcx") n / 8 => _, inout("rdi") dest => _, inout("rsi") src => _,
                 options(nostack, preserves_flags));
        }
    }
    dest
}

/// Copies `n` bytes between possibly overlapping ranges.
#[unsafe(no_mangle)]
unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: a forward copy is correct when dest is below src or past its end.
        return unsafe { memcpy(dest, src, n) };
    }
    // SAFETY: copy backwards (direction flag set, then cleared again) so that
    // overlapping bytes are read before they are overwritten.
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dest.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
             options(nostack));
    }
    dest
}

/// Fills `n` bytes with `c` (8 bytes per iteration where that pays, see
/// [`memcpy`]).
#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    if n < WORDWISE_FROM {
        // SAFETY: the caller guarantees that the range is valid for writes.
        unsafe {
            asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") c as u8,
                 options(nostack, preserves_flags));
        }
    } else {
        let pattern = u64::from(c as u8) * 0x0101_0101_0101_0101;
        // SAFETY: as above; `n / 8` quadwords then `n % 8` bytes cover the range.
        unsafe {
            asm!("rep stosq", "mov rcx, {tail}", "rep stosb",
                 tail = in(reg) n % 8,
                 inout("rcx") n / 8 => _, inout("rdi") dest => _, in("rax") pattern,
                 options(nostack, preserves_flags));
        }
    }
    dest
}

/// Compares `n` bytes, with one `repe cmpsb` rather than a loop.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    if n == 0 {
        return 0;
    }
    let left: usize;
    // SAFETY: the caller guarantees that both ranges are valid for reads;
    // `repe cmpsb` reads forward (direction flag clear) and stops after the first
    // differing byte or after `n` bytes.
    unsafe {
        asm!("repe cmpsb", inout("rcx") n => left, inout("rsi") a => _, inout("rdi") b => _,
             options(nostack, readonly));
    }
    // The last byte compared is the first difference, or the last byte.
    let at = n - left - 1;
    // SAFETY: `at < n`.
    let (x, y) = unsafe { (*a.add(at), *b.add(at)) };
    i32::from(x) - i32::from(y)
}

/// Compares `n` bytes for equality only.
#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}
