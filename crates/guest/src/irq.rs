//! Interrupts, so that an idle guest halts instead of spinning: an IDT (gates
//! for the exceptions and the vectors in use), the legacy PIC masked, the
//! devices' IOAPIC pins routed to this CPU, and the local APIC timer for
//! timeouts. Interrupts are enabled only inside
//! [`wait`] (`sti; hlt`), so handlers never run in the middle of Rust code: they
//! just acknowledge the local APIC and return, and the main loop polls.

use core::arch::{asm, global_asm};
use core::cell::UnsafeCell;
use core::fmt::Write;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::{clock, paging, port::outb, serial::Serial};

const IA32_APIC_BASE: u32 = 0x1b;
const IOAPIC_BASE: u64 = 0xfec0_0000;
const IOAPIC_PINS: u32 = 24;
const LAPIC_ID: u64 = 0x20;
const LAPIC_TPR: u64 = 0x80;
const LAPIC_EOI: u64 = 0xb0;
const LAPIC_SVR: u64 = 0xf0;
const LAPIC_LVT_TIMER: u64 = 0x320;
const LAPIC_LVT_LINT0: u64 = 0x350;
const LAPIC_LVT_ERROR: u64 = 0x370;
const LAPIC_TIMER_INIT: u64 = 0x380;
const LAPIC_TIMER_CURRENT: u64 = 0x390;
const LAPIC_TIMER_DIVIDE: u64 = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;
/// Vector of IOAPIC pin `n` is `DEVICE_VECTOR_BASE + n`.
const DEVICE_VECTOR_BASE: u32 = 0x30;
const TIMER_VECTOR: u32 = 0x50;
const ERROR_VECTOR: u32 = 0x51;
const SPURIOUS_VECTOR: u32 = 0xff;
/// APIC timer ticks per ms assumed when calibration fails (KVM: 1 GHz / 16).
const FALLBACK_TIMER_PER_MS: u64 = 62_500;

/// Address of the local APIC's EOI register, read by the interrupt stubs.
#[unsafe(no_mangle)]
static KVMLAB_LAPIC_EOI: AtomicU64 = AtomicU64::new(0xfee0_00b0);
static LAPIC_BASE: AtomicU64 = AtomicU64::new(0xfee0_0000);
static TIMER_PER_MS: AtomicU64 = AtomicU64::new(FALLBACK_TIMER_PER_MS);

global_asm!(
    r#"
    .section .text.isr, "ax"
    .p2align 4
    .global kvmlab_isr_stubs
kvmlab_isr_stubs:
    .set vector, 0
    .rept 256
    .p2align 4
    pushq $vector
    jmp kvmlab_isr_common
    .set vector, vector + 1
    .endr

kvmlab_isr_common:
    cmpq $32, (%rsp)
    jb 1f
    pushq %rax
    movq KVMLAB_LAPIC_EOI, %rax
    movl $0, (%rax)
    popq %rax
    addq $8, %rsp
    iretq
1:
    /* An exception can interrupt memmove's backward copy (std ... cld); the
     * Rust handler, and the memcpy it calls, need the direction flag clear. */
    cld
    movq %rsp, %rdi
    andq $-16, %rsp
    call kvmlab_exception
    "#,
    options(att_syntax)
);

unsafe extern "C" {
    static kvmlab_isr_stubs: u8;
}

/// Stub `v` sits at `kvmlab_isr_stubs + 16 * v`.
const STUB_SIZE: u64 = 16;

#[repr(C, align(16))]
struct Idt(UnsafeCell<[u64; 512]>);

// SAFETY: written only by `install_gate`, with interrupts off, on the only CPU.
unsafe impl Sync for Idt {}

static IDT: Idt = Idt(UnsafeCell::new([0; 512]));

/// CPU exceptions end the guest with a message naming the vector and RIP.
#[unsafe(no_mangle)]
extern "C" fn kvmlab_exception(frame: *const u64) -> ! {
    // SAFETY: `frame` is the stack pointer of the stub: vector, then the error
    // code for vectors that have one, then the CPU's interrupt frame.
    let (vector, rip) = unsafe {
        let vector = *frame;
        let has_error_code = matches!(vector, 8 | 10..=14 | 17 | 21 | 29 | 30);
        (vector, *frame.add(if has_error_code { 2 } else { 1 }))
    };
    let cr2: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) cr2, options(nomem, nostack, preserves_flags)) };
    let _ = writeln!(
        Serial::unbuffered_start(),
        "kvmlab-guest: CPU exception {vector} at rip={rip:#x} cr2={cr2:#x}"
    );
    crate::power::halt_forever()
}

fn lapic_read(reg: u64) -> u32 {
    // SAFETY: the local APIC page is identity-mapped (paging.rs) and `reg` is one
    // of its registers; APIC registers are read with 32-bit accesses.
    unsafe { core::ptr::read_volatile((LAPIC_BASE.load(Ordering::Relaxed) + reg) as *const u32) }
}

fn lapic_write(reg: u64, value: u32) {
    // SAFETY: as for `lapic_read`.
    unsafe {
        core::ptr::write_volatile(
            (LAPIC_BASE.load(Ordering::Relaxed) + reg) as *mut u32,
            value,
        )
    }
}

fn ioapic_write(reg: u32, value: u32) {
    // SAFETY: the IOAPIC's select and window registers are identity-mapped
    // (paging.rs); selecting a register and writing it has no memory effects.
    unsafe {
        core::ptr::write_volatile(IOAPIC_BASE as *mut u32, reg);
        core::ptr::write_volatile((IOAPIC_BASE + 0x10) as *mut u32, value);
    }
}

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: IA32_APIC_BASE exists on every CPU with an APIC (all x86-64 ones).
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    u64::from(lo) | (u64::from(hi) << 32)
}

/// Makes `vector` enter its stub: a present 64-bit interrupt gate (type 0xe)
/// in our code segment.
fn install_gate(vector: u32) {
    let cs: u16;
    // SAFETY: reading CS has no side effects.
    unsafe { asm!("mov {:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags)) };
    let handler = (&raw const kvmlab_isr_stubs) as u64 + u64::from(vector) * STUB_SIZE;
    let vector = (vector & 0xff) as usize;
    let idt = IDT.0.get();
    // SAFETY: interrupts are off outside `wait` and the guest runs on one CPU,
    // so the CPU does not read the gate while it changes.
    unsafe {
        (*idt)[2 * vector] = (handler & 0xffff)
            | (u64::from(cs) << 16)
            | (0x8e00 << 32)
            | ((handler >> 16) & 0xffff) << 48;
        (*idt)[2 * vector + 1] = handler >> 32;
    }
}

/// Sets up the IDT, masks the PIC, enables the local APIC and starts the clock
/// (rates from the hypervisor, else calibrated); prints a line describing the
/// clock on `out`.
pub fn init(out: &mut Serial) {
    // Gates for the CPU exceptions and the local APIC's vectors; `route` adds
    // those of the devices. Filling all 256 costs milliseconds where every guest
    // instruction is emulated; a stray vector without a gate raises #NP
    // (vector 11), which is reported like any exception.
    for vector in 0..32 {
        install_gate(vector);
    }
    for vector in [TIMER_VECTOR, ERROR_VECTOR, SPURIOUS_VECTOR] {
        install_gate(vector);
    }
    let idt = IDT.0.get();
    // SAFETY: loads the IDT register with our table, which lives forever.
    unsafe {
        #[repr(C, packed)]
        struct Idtr {
            limit: u16,
            base: u64,
        }
        let idtr = Idtr {
            limit: 256 * 16 - 1,
            base: idt as u64,
        };
        asm!("lidt [{}]", in(reg) &idtr, options(readonly, nostack, preserves_flags));
    }

    // Mask both 8259s: device interrupts come through the IOAPIC.
    outb(0x21, 0xff);
    outb(0xa1, 0xff);

    let base = rdmsr(IA32_APIC_BASE) & 0x000f_ffff_ffff_f000;
    paging::map_mmio(base, 0x1000);
    paging::map_mmio(IOAPIC_BASE, 0x20);
    LAPIC_BASE.store(base, Ordering::Relaxed);
    KVMLAB_LAPIC_EOI.store(base + LAPIC_EOI, Ordering::Relaxed);
    lapic_write(LAPIC_SVR, 0x100 | SPURIOUS_VECTOR);
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_LVT_LINT0, LVT_MASKED);
    lapic_write(LAPIC_LVT_ERROR, ERROR_VECTOR);
    lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | TIMER_VECTOR);
    lapic_write(LAPIC_TIMER_DIVIDE, 0b0011); // divide by 16
    let (tsc_khz, source): (u64, &[u8]) = match clock::from_hypervisor() {
        Some(rates) => {
            TIMER_PER_MS.store((rates.apic_bus_khz / 16).max(1), Ordering::Relaxed);
            (rates.tsc_khz, b" (hypervisor)")
        }
        None => {
            lapic_write(LAPIC_TIMER_INIT, u32::MAX);
            let calibration = clock::calibrate(|| u64::from(lapic_read(LAPIC_TIMER_CURRENT)));
            lapic_write(LAPIC_TIMER_INIT, 0);
            if calibration.measured && calibration.other_per_ms > 0 {
                TIMER_PER_MS.store(calibration.other_per_ms, Ordering::Relaxed);
            }
            let source: &[u8] = if calibration.measured {
                b" (PIT)"
            } else {
                b" (no PIT: guessed)"
            };
            (calibration.tsc_khz, source)
        }
    };
    out.write_bytes(b"kvmlab-guest: clock: tsc ");
    out.write_u64(tsc_khz);
    out.write_bytes(b" kHz, apic timer ");
    out.write_u64(TIMER_PER_MS.load(Ordering::Relaxed));
    out.write_bytes(b" ticks/ms");
    out.write_bytes(source);
    out.write_bytes(b"\n");
}

/// Routes IOAPIC pin `irq` (edge-triggered, active high) to this CPU; false
/// if the first IOAPIC has no such pin (the device is then only polled).
pub fn route(irq: u32) -> bool {
    if irq >= IOAPIC_PINS {
        return false;
    }
    install_gate(DEVICE_VECTOR_BASE + irq);
    let apic_id = lapic_read(LAPIC_ID) >> 24;
    ioapic_write(0x11 + 2 * irq, apic_id << 24);
    ioapic_write(0x10 + 2 * irq, DEVICE_VECTOR_BASE + irq);
    true
}

/// Halts until an interrupt arrives or, if `timeout_us` is given, until that
/// many microseconds have passed (the APIC timer fires). Returns at once for a
/// zero timeout. Spurious early returns are possible; callers re-check.
pub fn wait(timeout_us: Option<u64>) {
    match timeout_us {
        Some(0) => return,
        Some(us) => {
            let ticks = (u128::from(us) * u128::from(TIMER_PER_MS.load(Ordering::Relaxed)) / 1000)
                .clamp(1, u128::from(u32::MAX));
            lapic_write(LAPIC_LVT_TIMER, TIMER_VECTOR);
            lapic_write(LAPIC_TIMER_INIT, ticks as u32);
        }
        None => {}
    }
    // SAFETY: `sti` takes effect after the next instruction, so an interrupt
    // that became pending while interrupts were off wakes `hlt` instead of being
    // taken before it. Handlers only acknowledge the APIC (see the stubs), so
    // nothing Rust can see changes; no `nostack`, so the red zone is not live.
    unsafe { asm!("sti", "hlt", "cli", options(nomem)) };
    if timeout_us.is_some() {
        lapic_write(LAPIC_TIMER_INIT, 0);
        lapic_write(LAPIC_LVT_TIMER, LVT_MASKED | TIMER_VECTOR);
    }
}
