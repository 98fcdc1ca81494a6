//! A vCPU: its initial state and its run loop, which hands port and MMIO
//! accesses to the devices and turns faults into clear errors.

use std::sync::Arc;

use kvm_bindings::{
    CpuId, KVM_CAP_X86_APIC_BUS_CYCLES_NS, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES, KVM_MAX_CPUID_ENTRIES,
    KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd};

use crate::vstate::coalesced::CoalescedRing;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::kvm_stats::VcpuKvmStats;
use super::vm::Vm;
use super::{StopReason, VmControl};
use crate::arch::x86_64::{cpuid, lapic, msr, regs};
use crate::devices::Bus;
use crate::error::VmErrorKind;
use crate::stats::{ExitReason, VcpuCounters};

/// The buses every vCPU routes accesses through.
#[derive(Default)]
pub struct Buses {
    /// I/O ports.
    pub pio: Bus,
    /// Memory-mapped I/O.
    pub mmio: Bus,
    /// Serialises draining KVM's coalesced-write ring, which all vCPUs share.
    pub coalesced: std::sync::Mutex<()>,
}

/// Frequency of the in-kernel local APIC's bus in kHz. KVM reports the bus
/// cycle length it gives VMs (KVM_CAP_X86_APIC_BUS_CYCLES_NS, Linux 6.11+);
/// older kernels have no such capability and always use 1 ns.
fn apic_bus_khz(kvm: &Kvm) -> u32 {
    let cycle_ns = kvm.check_extension_raw(u64::from(KVM_CAP_X86_APIC_BUS_CYCLES_NS));
    match u32::try_from(cycle_ns) {
        Ok(ns) if ns > 0 => cpuid::KVM_APIC_BUS_KHZ / ns,
        _ => cpuid::KVM_APIC_BUS_KHZ,
    }
}

/// Replays the writes KVM buffered in the coalesced ring, oldest first; returns
/// how many.
pub fn drain_coalesced(ring: &mut CoalescedRing, buses: &Buses) -> u64 {
    if ring.is_empty() {
        return 0;
    }
    let Ok(_only_us) = buses.coalesced.lock() else {
        return 0;
    };
    let mut replayed = 0;
    while let Some(write) = ring.pop() {
        if write.pio {
            buses.pio.write(write.addr, write.data());
        } else {
            buses.mmio.write(write.addr, write.data());
        }
        replayed += 1;
    }
    replayed
}

/// Where the boot vCPU starts.
#[derive(Debug, Clone, Copy)]
pub struct BootEntry {
    /// 64-bit entry point.
    pub entry: u64,
    /// Page-table root.
    pub cr3: u64,
}

/// One vCPU.
pub struct Vcpu {
    index: u8,
    fd: VcpuFd,
    buses: Arc<Buses>,
    control: Arc<VmControl>,
    memory: GuestMemoryMmap,
    counters: VcpuCounters,
    kvm_stats: Option<VcpuKvmStats>,
    /// KVM's buffer of coalesced writes, where the host has one.
    ring: Option<CoalescedRing>,
}

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmErrorKind {
    move |source| VmErrorKind::Kvm { op, source }
}

/// What the run loop does after an exit.
enum Next {
    Continue,
    Stop(StopReason),
    TripleFault,
    InternalError,
}

impl Vcpu {
    /// Creates vCPU `index` of `vm`.
    pub fn new(
        vm: &Vm,
        index: u8,
        buses: Arc<Buses>,
        control: Arc<VmControl>,
    ) -> Result<Vcpu, VmErrorKind> {
        let fd = vm
            .fd
            .create_vcpu(u64::from(index))
            .map_err(kvm_err("KVM_CREATE_VCPU"))?;
        let counters = VcpuCounters::new(buses.pio.names().len(), buses.mmio.names().len());
        let kvm_stats = VcpuKvmStats::open(&fd);
        let ring = CoalescedRing::map(&fd);
        Ok(Vcpu {
            ring,
            kvm_stats,
            index,
            fd,
            buses,
            control,
            memory: vm.memory.clone(),
            counters,
        })
    }

    /// Sets CPUID, MSRs and LAPIC; for the boot vCPU (`boot` given) also the
    /// registers of the 64-bit Linux boot protocol. Other vCPUs wait for the
    /// guest to start them (INIT/SIPI) in the in-kernel LAPIC.
    pub fn configure(
        &self,
        kvm: &Kvm,
        vcpu_count: u8,
        hide_emulator_unsupported: bool,
        boot: Option<BootEntry>,
    ) -> Result<(), VmErrorKind> {
        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
        let params = cpuid::CpuidParams {
            vcpu_id: u32::from(self.index),
            vcpu_count: u32::from(vcpu_count),
            hide_emulator_unsupported,
        };
        let mut entries = supported.as_slice().to_vec();
        cpuid::filter(&mut entries, params);
        // Tell the guest its clock rates, so that it need not calibrate them
        // (a busy-wait against the PIT, slow where KVM emulates every guest
        // instruction). Best effort: without KVM_GET_TSC_KHZ the guest calibrates.
        if let Ok(tsc_khz) = self.fd.get_tsc_khz() {
            let timing = cpuid::Timing {
                tsc_khz,
                apic_bus_khz: apic_bus_khz(kvm),
            };
            if entries.len() < KVM_MAX_CPUID_ENTRIES {
                cpuid::add_timing_leaf(&mut entries, timing);
            }
        }
        let cpuid = CpuId::from_entries(&entries)
            .map_err(|e| VmErrorKind::Setup(format!("building the CPUID table: {e:?}")))?;
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(kvm_err("KVM_SET_CPUID2"))?;

        let msrs = msr::boot_msrs()
            .map_err(|e| VmErrorKind::Setup(format!("building the MSR list: {e:?}")))?;
        self.fd.set_msrs(&msrs).map_err(kvm_err("KVM_SET_MSRS"))?;

        if let Some(boot) = boot {
            self.fd
                .set_regs(&regs::boot_regs(boot.entry))
                .map_err(kvm_err("KVM_SET_REGS"))?;
            let sregs = self.fd.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
            self.fd
                .set_sregs(&regs::boot_sregs(sregs, boot.cr3))
                .map_err(kvm_err("KVM_SET_SREGS"))?;
            self.fd
                .set_fpu(&regs::boot_fpu())
                .map_err(kvm_err("KVM_SET_FPU"))?;
        }

        let mut lapic_state = self.fd.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
        lapic::configure_lint(&mut lapic_state);
        self.fd
            .set_lapic(&lapic_state)
            .map_err(kvm_err("KVM_SET_LAPIC"))?;
        Ok(())
    }

    /// Reads the CPUID back from KVM and describes the features that were to be
    /// hidden but that KVM still shows the guest (PVM overrides some bits of
    /// KVM_SET_CPUID2), or `None` when the filter took effect.
    pub fn unhidden_features(&self) -> Option<String> {
        let cpuid = self.fd.get_cpuid2(KVM_MAX_CPUID_ENTRIES).ok()?;
        let leaf1 = cpuid
            .as_slice()
            .iter()
            .find(|e| e.function == 1 && e.index == 0)?;
        let names = [
            (cpuid::LEAF1_ECX_CX16, "CX16"),
            (cpuid::LEAF1_ECX_XSAVE, "XSAVE"),
            (cpuid::LEAF1_ECX_AVX, "AVX"),
        ];
        let left: Vec<&str> = names
            .iter()
            .filter(|(bit, _)| leaf1.ecx & bit != 0)
            .map(|(_, name)| *name)
            .collect();
        (!left.is_empty()).then(|| {
            format!(
                "this host's KVM keeps showing {} in the guest's CPUID although kvmlab hid it; \
                 a Linux guest may stop at an instruction KVM cannot emulate (Linux: try `noxsave`)",
                left.join(", ")
            )
        })
    }

    /// Another mapping of KVM's coalesced-write ring (one per VM), for a thread
    /// that delivers buffered writes while no vCPU exits.
    pub fn map_coalesced_ring(&self) -> Option<CoalescedRing> {
        self.ring.as_ref()?;
        CoalescedRing::map(&self.fd)
    }

    /// Runs the guest until the VM is asked to stop or this vCPU fails (then it
    /// asks the VM to stop with the error). Returns the exit counters.
    pub fn run(mut self) -> VcpuCounters {
        self.control.counters.enter(self.index);
        let mut answered = 0;
        while !self.control.should_stop() {
            let next = self.run_once();
            let reason = match next {
                Next::Continue => {
                    let (counters, kvm_stats) = (&self.counters, &self.kvm_stats);
                    self.control.counters.answer(self.index, &mut answered, || {
                        let mut copy = counters.clone();
                        if let Some(stats) = kvm_stats {
                            copy.kvm = stats.read();
                        }
                        copy
                    });
                    continue;
                }
                Next::Stop(reason) => reason,
                Next::TripleFault => StopReason::Failed(VmErrorKind::TripleFault {
                    vcpu: self.index,
                    regs: self.dump_regs(),
                }),
                Next::InternalError => StopReason::Failed(self.internal_error()),
            };
            self.control.request_stop(reason);
            break;
        }
        self.control.counters.leave(self.index);
        if let Some(stats) = &self.kvm_stats {
            self.counters.kvm = stats.read();
        }
        self.counters
    }

    fn run_once(&mut self) -> Next {
        let counters = &mut self.counters;
        let buses = &self.buses;
        let exit = self.fd.run();
        // Writes KVM buffered come before whatever made this vCPU exit.
        if let Some(ring) = &mut self.ring {
            counters.coalesced += drain_coalesced(ring, buses);
        }
        let exit = match exit {
            Ok(exit) => exit,
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                counters.exit(ExitReason::Interrupted);
                return Next::Continue;
            }
            Err(source) => {
                return Next::Stop(StopReason::Failed(VmErrorKind::Kvm {
                    op: "KVM_RUN",
                    source,
                }));
            }
        };
        match exit {
            VcpuExit::IoIn(port, data) => {
                counters.exit(ExitReason::IoIn);
                let device = buses.pio.read(u64::from(port), data);
                counters.pio(port, device);
                Next::Continue
            }
            VcpuExit::IoOut(port, data) => {
                counters.exit(ExitReason::IoOut);
                let device = buses.pio.write(u64::from(port), data);
                counters.pio(port, device);
                Next::Continue
            }
            VcpuExit::MmioRead(addr, data) => {
                counters.exit(ExitReason::MmioRead);
                let device = buses.mmio.read(addr, data);
                counters.mmio(addr, device);
                Next::Continue
            }
            VcpuExit::MmioWrite(addr, data) => {
                counters.exit(ExitReason::MmioWrite);
                let device = buses.mmio.write(addr, data);
                counters.mmio(addr, device);
                Next::Continue
            }
            // Only seen without an in-kernel irqchip: a halted CPU that nothing
            // can wake up. The guest is done.
            VcpuExit::Hlt => {
                counters.exit(ExitReason::Hlt);
                Next::Stop(StopReason::GuestPowerOff)
            }
            VcpuExit::Intr => {
                counters.exit(ExitReason::Interrupted);
                Next::Continue
            }
            VcpuExit::Shutdown => {
                counters.exit(ExitReason::Shutdown);
                Next::TripleFault
            }
            VcpuExit::InternalError => {
                counters.exit(ExitReason::InternalError);
                Next::InternalError
            }
            VcpuExit::FailEntry(reason, _) => {
                counters.exit(ExitReason::FailEntry);
                Next::Stop(StopReason::Failed(VmErrorKind::FailEntry {
                    vcpu: self.index,
                    reason,
                }))
            }
            VcpuExit::SystemEvent(kind, _) => {
                counters.exit(ExitReason::SystemEvent);
                match kind {
                    KVM_SYSTEM_EVENT_SHUTDOWN => Next::Stop(StopReason::GuestPowerOff),
                    KVM_SYSTEM_EVENT_RESET => Next::Stop(StopReason::GuestReset),
                    KVM_SYSTEM_EVENT_CRASH => Next::TripleFault,
                    other => Next::Stop(StopReason::Failed(VmErrorKind::UnexpectedExit {
                        vcpu: self.index,
                        exit: format!("system event {other}"),
                    })),
                }
            }
            other => {
                counters.exit(ExitReason::Other);
                Next::Stop(StopReason::Failed(VmErrorKind::UnexpectedExit {
                    vcpu: self.index,
                    exit: format!("{other:?}"),
                }))
            }
        }
    }

    /// Decodes a KVM_EXIT_INTERNAL_ERROR.
    fn internal_error(&mut self) -> VmErrorKind {
        let run = self.fd.get_kvm_run();
        // SAFETY: the last exit was KVM_EXIT_INTERNAL_ERROR, for which KVM fills
        // the `internal` member of the exit union.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        // SAFETY: as above; for emulation failures KVM lays the same bytes out
        // as `emulation_failure` (suberror, ndata, flags, instruction bytes).
        let failure = unsafe { run.__bindgen_anon_1.emulation_failure };
        let regs = self.dump_regs();
        if internal.suberror != KVM_INTERNAL_ERROR_EMULATION {
            let n = (internal.ndata as usize).min(internal.data.len());
            return VmErrorKind::InternalError {
                vcpu: self.index,
                suberror: internal.suberror,
                data: internal.data[..n].to_vec(),
                regs,
            };
        }
        let rip = self.fd.get_regs().map(|r| r.rip).unwrap_or(0);
        let bytes = if internal.ndata >= 3
            && failure.flags & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) != 0
        {
            // SAFETY: the flag says KVM filled insn_size and insn_bytes.
            let insn = unsafe { failure.__bindgen_anon_1.__bindgen_anon_1 };
            insn.insn_bytes[..usize::from(insn.insn_size).min(insn.insn_bytes.len())].to_vec()
        } else {
            self.bytes_at(rip)
        };
        VmErrorKind::EmulationFailure {
            vcpu: self.index,
            rip,
            bytes,
            regs,
        }
    }

    /// Up to 15 instruction bytes at guest virtual address `rip`.
    fn bytes_at(&self, rip: u64) -> Vec<u8> {
        let Ok(translation) = self.fd.translate_gva(rip) else {
            return Vec::new();
        };
        if translation.valid == 0 {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        for i in 0..15 {
            match self
                .memory
                .read_obj::<u8>(GuestAddress(translation.physical_address + i))
            {
                Ok(b) => bytes.push(b),
                Err(_) => break,
            }
        }
        bytes
    }

    /// The registers, formatted for an error message.
    fn dump_regs(&self) -> String {
        let mut out = String::new();
        match self.fd.get_regs() {
            Ok(r) => {
                out += &format!(
                    "  RIP={:#018x} RSP={:#018x} RFLAGS={:#010x}\n",
                    r.rip, r.rsp, r.rflags
                );
                out += &format!(
                    "  RAX={:#018x} RBX={:#018x} RCX={:#018x} RDX={:#018x}\n",
                    r.rax, r.rbx, r.rcx, r.rdx
                );
                out += &format!(
                    "  RSI={:#018x} RDI={:#018x} RBP={:#018x} R8 ={:#018x}\n",
                    r.rsi, r.rdi, r.rbp, r.r8
                );
            }
            Err(e) => out += &format!("  (registers unavailable: {e})\n"),
        }
        match self.fd.get_sregs() {
            Ok(s) => {
                out += &format!(
                    "  CR0={:#010x} CR2={:#018x} CR3={:#018x} CR4={:#010x} EFER={:#x}\n",
                    s.cr0, s.cr2, s.cr3, s.cr4, s.efer
                );
                out += &format!(
                    "  CS={:#06x} (base {:#x}, {}) IDT base {:#x} limit {:#x}",
                    s.cs.selector,
                    s.cs.base,
                    if s.cs.l == 1 {
                        "64-bit"
                    } else if s.cs.db == 1 {
                        "32-bit"
                    } else {
                        "16-bit"
                    },
                    s.idt.base,
                    s.idt.limit
                );
            }
            Err(e) => out += &format!("  (special registers unavailable: {e})"),
        }
        out
    }
}
