//! The CPUID a vCPU sees: what KVM supports (KVM_GET_SUPPORTED_CPUID),
//! normalised for the VM's topology and filtered for what the host can run.
//!
//! On hosts without VMX/SVM, KVM (PVM) runs guests through its instruction
//! emulator, which cannot execute CMPXCHG16B nor XSAVE/XRSTOR: those features,
//! and AVX and the rest of the XSAVE-managed state that depends on them, are
//! hidden so that guests (Linux) do not use them.

use kvm_bindings::kvm_cpuid_entry2;

/// Leaf 1 ECX: CMPXCHG16B.
pub const LEAF1_ECX_CX16: u32 = 1 << 13;
/// Leaf 1 ECX: FMA (needs AVX state).
pub const LEAF1_ECX_FMA: u32 = 1 << 12;
/// Leaf 1 ECX: XSAVE.
pub const LEAF1_ECX_XSAVE: u32 = 1 << 26;
/// Leaf 1 ECX: OSXSAVE.
pub const LEAF1_ECX_OSXSAVE: u32 = 1 << 27;
/// Leaf 1 ECX: AVX.
pub const LEAF1_ECX_AVX: u32 = 1 << 28;
/// Leaf 1 ECX: F16C (needs AVX state).
pub const LEAF1_ECX_F16C: u32 = 1 << 29;
/// Leaf 1 ECX: running under a hypervisor (the bit the built-in guest checks before
/// it reads the hypervisor leaves).
pub use kvmlab_guest_proto::cpuid::CPUID1_ECX_HYPERVISOR as LEAF1_ECX_HYPERVISOR;
/// Leaf 1 EDX: more than one logical processor per package.
pub const LEAF1_EDX_HTT: u32 = 1 << 28;

/// Leaf 7.0 EBX bits that need AVX/AVX-512 state: AVX2 and the AVX-512 family.
pub const LEAF7_EBX_AVX_DEPENDENT: u32 = (1 << 5)
    | (1 << 16)
    | (1 << 17)
    | (1 << 21)
    | (1 << 26)
    | (1 << 27)
    | (1 << 28)
    | (1 << 30)
    | (1 << 31);
/// Leaf 7.0 ECX bits that need AVX state: AVX512_VBMI, VBMI2, VAES,
/// VPCLMULQDQ, VNNI, BITALG, VPOPCNTDQ.
pub const LEAF7_ECX_AVX_DEPENDENT: u32 =
    (1 << 1) | (1 << 6) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12) | (1 << 14);
/// Leaf 7.0 EDX bits that need AVX or AMX state: 4VNNIW, 4FMAPS,
/// VP2INTERSECT, AMX-BF16, AVX512_FP16, AMX-TILE, AMX-INT8.
pub const LEAF7_EDX_AVX_DEPENDENT: u32 =
    (1 << 2) | (1 << 3) | (1 << 8) | (1 << 22) | (1 << 23) | (1 << 24) | (1 << 25);
/// Leaf 7.1 EAX bits that need AVX state: AVX-VNNI, AVX512_BF16, AVX-IFMA.
pub const LEAF7_1_EAX_AVX_DEPENDENT: u32 = (1 << 4) | (1 << 5) | (1 << 23);
/// Leaf 0x8000_0001 ECX bits that need AVX state: XOP, FMA4.
pub const LEAF_EXT1_ECX_AVX_DEPENDENT: u32 = (1 << 11) | (1 << 16);

/// First hypervisor CPUID leaf: KVM's signature ("KVMKVMKVM"), whose EAX is the
/// highest hypervisor leaf.
pub use kvmlab_guest_proto::cpuid::HYPERVISOR_BASE;
/// The hypervisor timing leaf (a VMware convention that KVM-based VMMs such as
/// QEMU also follow): EAX is the TSC frequency and EBX the local APIC bus (timer)
/// frequency, both in kHz, so that guests need not calibrate against a timer.
/// Defined with the built-in guest that reads it, in the host–guest contract.
pub use kvmlab_guest_proto::cpuid::TIMING_LEAF;
/// Frequency of KVM's emulated local APIC bus in kHz: one cycle per
/// nanosecond (Linux's `APIC_BUS_CYCLE_NS_DEFAULT`), unless a VMM changes it
/// with KVM_CAP_X86_APIC_BUS_CYCLES_NS (kvmlab does not).
pub const KVM_APIC_BUS_KHZ: u32 = 1_000_000;

/// Clock rates for [`add_timing_leaf`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// TSC frequency in kHz (KVM_GET_TSC_KHZ).
    pub tsc_khz: u32,
    /// Local APIC bus frequency in kHz, before the timer's divider.
    pub apic_bus_khz: u32,
}

/// Adds the timing leaf [`TIMING_LEAF`] to `entries` (replacing one that is
/// there) and raises the highest hypervisor leaf announced in
/// [`HYPERVISOR_BASE`] to it. Returns false and changes nothing when there is
/// no hypervisor base leaf to announce it or a rate is unknown (zero).
pub fn add_timing_leaf(entries: &mut Vec<kvm_cpuid_entry2>, timing: Timing) -> bool {
    if timing.tsc_khz == 0 || timing.apic_bus_khz == 0 {
        return false;
    }
    let Some(base) = entries
        .iter_mut()
        .find(|e| e.function == HYPERVISOR_BASE && e.index == 0)
    else {
        return false;
    };
    base.eax = base.eax.max(TIMING_LEAF);
    entries.retain(|e| e.function != TIMING_LEAF);
    entries.push(kvm_cpuid_entry2 {
        function: TIMING_LEAF,
        index: 0,
        flags: 0,
        eax: timing.tsc_khz,
        ebx: timing.apic_bus_khz,
        ecx: 0,
        edx: 0,
        ..Default::default()
    });
    true
}

/// How to shape the CPUID of one vCPU.
#[derive(Clone, Copy, Debug)]
pub struct CpuidParams {
    /// This vCPU's index, which is also its APIC id.
    pub vcpu_id: u32,
    /// Number of vCPUs in the VM.
    pub vcpu_count: u32,
    /// Hide what KVM's instruction emulator cannot execute (CX16, XSAVE, AVX...).
    pub hide_emulator_unsupported: bool,
}

/// Rewrites `entries` (from KVM_GET_SUPPORTED_CPUID) in place for one vCPU.
pub fn filter(entries: &mut [kvm_cpuid_entry2], params: CpuidParams) {
    let hide = params.hide_emulator_unsupported;
    for entry in entries.iter_mut() {
        match (entry.function, entry.index) {
            (1, _) => {
                entry.ebx = (entry.ebx & 0x0000_ffff)
                    | (params.vcpu_id << 24)
                    | ((params.vcpu_count & 0xff) << 16);
                entry.ecx |= LEAF1_ECX_HYPERVISOR;
                if params.vcpu_count > 1 {
                    entry.edx |= LEAF1_EDX_HTT;
                } else {
                    entry.edx &= !LEAF1_EDX_HTT;
                }
                if hide {
                    entry.ecx &= !(LEAF1_ECX_CX16
                        | LEAF1_ECX_XSAVE
                        | LEAF1_ECX_OSXSAVE
                        | LEAF1_ECX_AVX
                        | LEAF1_ECX_FMA
                        | LEAF1_ECX_F16C);
                }
            }
            (7, 0) if hide => {
                entry.ebx &= !LEAF7_EBX_AVX_DEPENDENT;
                entry.ecx &= !LEAF7_ECX_AVX_DEPENDENT;
                entry.edx &= !LEAF7_EDX_AVX_DEPENDENT;
            }
            (7, 1) if hide => entry.eax &= !LEAF7_1_EAX_AVX_DEPENDENT,
            // XSAVE state components: none without XSAVE.
            (0xd, _) if hide => {
                entry.eax = 0;
                entry.ebx = 0;
                entry.ecx = 0;
                entry.edx = 0;
            }
            // Extended topology: x2APIC id of this vCPU.
            (0xb, _) | (0x1f, _) => entry.edx = params.vcpu_id,
            (0x8000_0001, _) if hide => entry.ecx &= !LEAF_EXT1_ECX_AVX_DEPENDENT,
            _ => {}
        }
    }
}

/// Whether the host CPU has hardware virtualisation (VMX or SVM). Without it,
/// KVM is PVM and guests run through KVM's instruction emulator.
pub fn host_has_hardware_virtualization() -> bool {
    let leaf1 = std::arch::x86_64::__cpuid(1);
    let ext_max = std::arch::x86_64::__cpuid(0x8000_0000).eax;
    let svm = ext_max >= 0x8000_0001 && std::arch::x86_64::__cpuid(0x8000_0001).ecx & (1 << 2) != 0;
    leaf1.ecx & (1 << 5) != 0 || svm
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(
        function: u32,
        index: u32,
        eax: u32,
        ebx: u32,
        ecx: u32,
        edx: u32,
    ) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            index,
            eax,
            ebx,
            ecx,
            edx,
            ..Default::default()
        }
    }

    fn sample() -> Vec<kvm_cpuid_entry2> {
        vec![
            entry(0, 0, 0x1f, 0, 0, 0),
            entry(1, 0, 0x806f8, 0xff00_0800, !LEAF1_ECX_HYPERVISOR, u32::MAX),
            entry(7, 0, 0, u32::MAX, u32::MAX, u32::MAX),
            entry(7, 1, u32::MAX, 0, 0, 0),
            entry(0xb, 0, 1, 1, 0x100, 0xff),
            entry(0xd, 0, 0x2e7, 0x2440, 0x2440, 0),
            entry(0xd, 1, 0xf, 0, 0, 0),
            entry(0x8000_0001, 0, 0, 0, u32::MAX, 0),
        ]
    }

    fn find(entries: &[kvm_cpuid_entry2], function: u32, index: u32) -> kvm_cpuid_entry2 {
        *entries
            .iter()
            .find(|e| e.function == function && e.index == index)
            .unwrap()
    }

    #[test]
    fn hides_what_the_emulator_cannot_run() {
        let mut entries = sample();
        filter(
            &mut entries,
            CpuidParams {
                vcpu_id: 0,
                vcpu_count: 1,
                hide_emulator_unsupported: true,
            },
        );
        let leaf1 = find(&entries, 1, 0);
        for bit in [
            LEAF1_ECX_CX16,
            LEAF1_ECX_XSAVE,
            LEAF1_ECX_OSXSAVE,
            LEAF1_ECX_AVX,
            LEAF1_ECX_FMA,
            LEAF1_ECX_F16C,
        ] {
            assert_eq!(leaf1.ecx & bit, 0, "bit {bit:#x} still set");
        }
        // SSE3 (bit 0) and SSE4.2 (bit 20) stay.
        assert_eq!(leaf1.ecx & 1, 1);
        assert_eq!(leaf1.ecx & (1 << 20), 1 << 20);
        let leaf7 = find(&entries, 7, 0);
        assert_eq!(leaf7.ebx & (1 << 5), 0, "AVX2");
        assert_eq!(leaf7.ebx & (1 << 16), 0, "AVX512F");
        assert_eq!(leaf7.ebx & (1 << 3), 1 << 3, "BMI1 stays");
        assert_eq!(find(&entries, 7, 1).eax & (1 << 4), 0, "AVX-VNNI");
        for index in [0, 1] {
            let xsave = find(&entries, 0xd, index);
            assert_eq!((xsave.eax, xsave.ebx, xsave.ecx, xsave.edx), (0, 0, 0, 0));
        }
        assert_eq!(
            find(&entries, 0x8000_0001, 0).ecx & LEAF_EXT1_ECX_AVX_DEPENDENT,
            0
        );
    }

    #[test]
    fn keeps_features_on_hardware_virtualization() {
        let mut entries = sample();
        filter(
            &mut entries,
            CpuidParams {
                vcpu_id: 0,
                vcpu_count: 1,
                hide_emulator_unsupported: false,
            },
        );
        let leaf1 = find(&entries, 1, 0);
        assert_eq!(
            leaf1.ecx & (LEAF1_ECX_CX16 | LEAF1_ECX_XSAVE),
            LEAF1_ECX_CX16 | LEAF1_ECX_XSAVE
        );
        assert_eq!(find(&entries, 0xd, 0).eax, 0x2e7);
        assert_eq!(find(&entries, 7, 0).ebx, u32::MAX);
    }

    #[test]
    fn adds_the_timing_leaf_and_announces_it() {
        let mut entries = sample();
        entries.push(entry(
            HYPERVISOR_BASE,
            0,
            0x4000_0001,
            0x4b4d_564b,
            0x564b_4d56,
            0x4d,
        ));
        entries.push(entry(0x4000_0001, 0, 0x01ff_ffff, 0, 0, 0));
        let timing = Timing {
            tsc_khz: 2_446_000,
            apic_bus_khz: KVM_APIC_BUS_KHZ,
        };
        assert!(add_timing_leaf(&mut entries, timing));
        let base = find(&entries, HYPERVISOR_BASE, 0);
        assert_eq!(base.eax, TIMING_LEAF, "highest hypervisor leaf");
        assert_eq!(base.ebx, 0x4b4d_564b, "signature kept");
        let leaf = find(&entries, TIMING_LEAF, 0);
        assert_eq!(
            (leaf.eax, leaf.ebx, leaf.ecx, leaf.edx),
            (2_446_000, 1_000_000, 0, 0)
        );
        assert_eq!(
            find(&entries, 0x4000_0001, 0).eax,
            0x01ff_ffff,
            "KVM features kept"
        );

        // Again (a second vCPU, a changed rate): still one timing leaf.
        let faster = Timing {
            tsc_khz: 3_000_000,
            ..timing
        };
        assert!(add_timing_leaf(&mut entries, faster));
        let leaves: Vec<_> = entries
            .iter()
            .filter(|e| e.function == TIMING_LEAF)
            .collect();
        assert_eq!(leaves.len(), 1);
        assert_eq!(leaves[0].eax, 3_000_000);
    }

    #[test]
    fn keeps_a_higher_hypervisor_max_leaf() {
        let mut entries = vec![entry(HYPERVISOR_BASE, 0, 0x4000_0020, 0, 0, 0)];
        let timing = Timing {
            tsc_khz: 1,
            apic_bus_khz: 1,
        };
        assert!(add_timing_leaf(&mut entries, timing));
        assert_eq!(find(&entries, HYPERVISOR_BASE, 0).eax, 0x4000_0020);
    }

    #[test]
    fn no_timing_leaf_without_a_base_leaf_or_rates() {
        let mut entries = sample();
        let timing = Timing {
            tsc_khz: 2_446_000,
            apic_bus_khz: KVM_APIC_BUS_KHZ,
        };
        assert!(!add_timing_leaf(&mut entries, timing));
        assert_eq!(entries.len(), sample().len());
        assert!(!entries.iter().any(|e| e.function == TIMING_LEAF));

        entries.push(entry(HYPERVISOR_BASE, 0, 0x4000_0001, 0, 0, 0));
        let unknown = Timing {
            tsc_khz: 0,
            ..timing
        };
        assert!(!add_timing_leaf(&mut entries, unknown));
        assert_eq!(find(&entries, HYPERVISOR_BASE, 0).eax, 0x4000_0001);
        assert!(!entries.iter().any(|e| e.function == TIMING_LEAF));
    }

    #[test]
    fn normalises_topology_and_hypervisor_bit() {
        let mut entries = sample();
        filter(
            &mut entries,
            CpuidParams {
                vcpu_id: 3,
                vcpu_count: 4,
                hide_emulator_unsupported: false,
            },
        );
        let leaf1 = find(&entries, 1, 0);
        assert_eq!(leaf1.ebx >> 24, 3, "initial APIC id");
        assert_eq!((leaf1.ebx >> 16) & 0xff, 4, "logical processors");
        assert_eq!(leaf1.ebx & 0xffff, 0x0800, "CLFLUSH line size kept");
        assert_ne!(leaf1.ecx & LEAF1_ECX_HYPERVISOR, 0);
        assert_ne!(leaf1.edx & LEAF1_EDX_HTT, 0);
        assert_eq!(find(&entries, 0xb, 0).edx, 3, "x2APIC id");

        let mut single = sample();
        filter(
            &mut single,
            CpuidParams {
                vcpu_id: 0,
                vcpu_count: 1,
                hide_emulator_unsupported: false,
            },
        );
        assert_eq!(find(&single, 1, 0).edx & LEAF1_EDX_HTT, 0);
    }
}
