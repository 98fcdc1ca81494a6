//! Time: the TSC gives microseconds since boot. Its rate (and the local APIC
//! timer's, see `irq.rs`) comes from the hypervisor's CPUID timing leaf when
//! there is one (kvmlab), else from a calibration against the PIT (QEMU
//! without `invtsc`), which busy-waits for 10 ms: under emulated KVM that is
//! most of the guest's boot.

use core::arch::x86_64::_rdtsc;
use core::sync::atomic::{AtomicU64, Ordering};

use kvmlab_guest_proto::cpuid::{ClockRates, clock_rates_from_cpuid};

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

/// The clock rates the hypervisor announces in CPUID, if any; starts the
/// clock with them.
pub fn from_hypervisor() -> Option<ClockRates> {
    let rates = clock_rates_from_cpuid(|leaf| {
        let r = core::arch::x86_64::__cpuid(leaf);
        [r.eax, r.ebx, r.ecx, r.edx]
    })?;
    TSC_KHZ.store(rates.tsc_khz, Ordering::Relaxed);
    TSC_START.store(rdtsc(), Ordering::Relaxed);
    Some(rates)
}

/// Result of [`calibrate`].
pub struct Calibration {
    pub tsc_khz: u64,
    /// How far the callback's counter went down (the APIC timer counts down)
    /// per millisecond.
    pub other_per_ms: u64,
    /// Whether the PIT answered; if not, the values are guesses.
    pub measured: bool,
}

/// Latches and reads the count of PIT channel 0.
fn pit_count() -> u16 {
    outb(0x43, 0x00);
    let lo = inb(0x40);
    let hi = inb(0x40);
    u16::from_le_bytes([lo, hi])
}

/// Measures the TSC (and a second counter read by `other`) against PIT
/// channel 0 over about [`CALIBRATION_MS`]. Channel 0 rather than Linux's
/// channel 2, whose gate and output need port 0x61, which QEMU's microvm lacks.
/// Channel 0 drives IRQ 0, which stays masked at the PIC and the IOAPIC.
pub fn calibrate(other: impl Fn() -> u64) -> Calibration {
    let window = PIT_HZ * CALIBRATION_MS / 1000;
    // Channel 0, lobyte/hibyte, mode 2 (rate generator), from 0xffff down.
    outb(0x43, 0x34);
    outb(0x40, 0xff);
    outb(0x40, 0xff);
    let start = pit_count();
    let (tsc0, other0) = (rdtsc(), other());
    let mut elapsed = 0u64;
    let mut spins = 0u32;
    while elapsed < window && spins < 1_000_000 {
        elapsed = u64::from(start.wrapping_sub(pit_count()));
        spins += 1;
    }
    let (tsc1, other1) = (rdtsc(), other());
    // Mode 0 (one shot) from 0x10000: the PIT falls silent instead of raising
    // IRQ 0 every 55 ms for the guest's whole life.
    outb(0x43, 0x30);
    outb(0x40, 0);
    outb(0x40, 0);
    // A PIT that counts takes more than one read to cover the window, and the
    // count cannot wrap (0xffff ticks are 55 ms, reads are far more frequent).
    let measured = spins > 1 && elapsed >= window && elapsed < 0x8000;
    let calibration = if measured {
        Calibration {
            tsc_khz: (tsc1 - tsc0) * PIT_HZ / 1000 / elapsed,
            other_per_ms: other0.wrapping_sub(other1) * PIT_HZ / 1000 / elapsed,
            measured,
        }
    } else {
        Calibration {
            tsc_khz: FALLBACK_TSC_KHZ,
            other_per_ms: 0,
            measured,
        }
    };
    TSC_KHZ.store(calibration.tsc_khz.max(1), Ordering::Relaxed);
    TSC_START.store(tsc0, Ordering::Relaxed);
    calibration
}

/// Microseconds since calibration.
pub fn now_us() -> u64 {
    let ticks = rdtsc().wrapping_sub(TSC_START.load(Ordering::Relaxed));
    let khz = TSC_KHZ.load(Ordering::Relaxed);
    // 64-bit arithmetic while it cannot overflow (days of uptime): a 128-bit
    // division is a library call of a hundred-odd instructions, each emulated
    // under PVM, and the main loop reads the clock several times per pass.
    match ticks.checked_mul(1000) {
        Some(scaled) => scaled / khz,
        None => (u128::from(ticks) * 1000 / u128::from(khz)) as u64,
    }
}
