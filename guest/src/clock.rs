//! Time: the TSC, calibrated at boot against the PIT, gives microseconds since
//! boot; the local APIC timer is calibrated in the same window (see `irq.rs`).

use core::arch::x86_64::_rdtsc;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::port::{inb, outb};

/// PIT input clock in Hz.
const PIT_HZ: u64 = 1_193_182;
/// Calibration window.
const CALIBRATION_MS: u64 = 10;
/// Fallbacks when the PIT does not answer (no PIT in the VM).
const FALLBACK_TSC_KHZ: u64 = 1_000_000;

static TSC_KHZ: AtomicU64 = AtomicU64::new(FALLBACK_TSC_KHZ);
static TSC_START: AtomicU64 = AtomicU64::new(0);

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no memory effects; the guest runs at CPL 0, so CR4.TSD
    // cannot make it fault.
    unsafe { _rdtsc() }
}

/// Result of [`calibrate`].
pub struct Calibration {
    pub tsc_khz: u64,
    /// `f(start) - f(end)` of the callback's counter over the window (the APIC
    /// timer counts down), per millisecond.
    pub other_per_ms: u64,
    /// Whether the PIT answered; if not, the values are guesses.
    pub measured: bool,
}

/// Measures the TSC (and a second counter read by `other`) against PIT channel 2
/// over [`CALIBRATION_MS`], as Linux's `pit_calibrate_tsc` does.
pub fn calibrate(other: impl Fn() -> u64) -> Calibration {
    let latch = PIT_HZ * CALIBRATION_MS / 1000;
    // Gate of channel 2 high, speaker off; channel 2, lobyte/hibyte, mode 0.
    outb(0x61, (inb(0x61) & !0x02) | 0x01);
    outb(0x43, 0xb0);
    outb(0x42, (latch & 0xff) as u8);
    outb(0x42, (latch >> 8) as u8);
    let (tsc0, other0) = (rdtsc(), other());
    let mut spins = 0u64;
    // Bit 5 of port 0x61 is channel 2's output, which goes high at terminal count.
    while inb(0x61) & 0x20 == 0 && spins < 50_000_000 {
        spins += 1;
    }
    let (tsc1, other1) = (rdtsc(), other());
    let tsc_khz = (tsc1 - tsc0) / CALIBRATION_MS;
    let measured = spins > 0 && spins < 50_000_000 && tsc_khz > 10_000;
    let calibration = if measured {
        Calibration { tsc_khz, other_per_ms: other0.wrapping_sub(other1) / CALIBRATION_MS, measured }
    } else {
        Calibration { tsc_khz: FALLBACK_TSC_KHZ, other_per_ms: 0, measured }
    };
    TSC_KHZ.store(calibration.tsc_khz, Ordering::Relaxed);
    TSC_START.store(tsc0, Ordering::Relaxed);
    calibration
}

/// Microseconds since calibration.
pub fn now_us() -> u64 {
    let ticks = rdtsc().wrapping_sub(TSC_START.load(Ordering::Relaxed));
    (u128::from(ticks) * 1000 / u128::from(TSC_KHZ.load(Ordering::Relaxed))) as u64
}
