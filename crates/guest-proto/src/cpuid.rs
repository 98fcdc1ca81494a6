//! The clock rates the host hands the guest through CPUID, so that the guest need
//! not calibrate its clocks against a timer (10 ms of busy waiting, most of its
//! boot where KVM emulates every guest instruction). The host's engine writes the
//! timing leaf; the guest reads it with [`clock_rates_from_cpuid`].

/// CPUID leaf 1 ECX bit 31: running under a hypervisor (whose leaves start at
/// [`HYPERVISOR_BASE`]).
pub const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;
/// First hypervisor CPUID leaf; its EAX is the highest hypervisor leaf.
pub const HYPERVISOR_BASE: u32 = 0x4000_0000;
/// The hypervisor timing leaf (a VMware convention that KVM-based VMMs such as
/// QEMU with `invtsc` also follow, and kvmlab's engine): EAX is the TSC frequency
/// and EBX the local APIC bus (timer) frequency, both in kHz.
pub const TIMING_LEAF: u32 = 0x4000_0010;

/// Clock rates announced by the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockRates {
    /// TSC frequency in kHz.
    pub tsc_khz: u64,
    /// Local APIC bus frequency in kHz (the timer's input before its divider).
    pub apic_bus_khz: u64,
}

/// The clock rates in the hypervisor timing leaf, if the CPU says it runs
/// under a hypervisor that has that leaf and both rates are given. `cpuid`
/// executes CPUID for a leaf (sub-leaf 0) and returns `[eax, ebx, ecx, edx]`;
/// hypervisor leaves are only read when leaf 1 announces a hypervisor (on bare
/// metal, leaves past the highest basic one return unrelated data).
pub fn clock_rates_from_cpuid(cpuid: impl Fn(u32) -> [u32; 4]) -> Option<ClockRates> {
    if cpuid(1)[2] & CPUID1_ECX_HYPERVISOR == 0 {
        return None;
    }
    let max_leaf = cpuid(HYPERVISOR_BASE)[0];
    if !(TIMING_LEAF..HYPERVISOR_BASE + 0x1_0000).contains(&max_leaf) {
        return None;
    }
    let [tsc_khz, apic_bus_khz, _, _] = cpuid(TIMING_LEAF);
    (tsc_khz != 0 && apic_bus_khz != 0).then_some(ClockRates {
        tsc_khz: u64::from(tsc_khz),
        apic_bus_khz: u64::from(apic_bus_khz),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CPUID with the given leaves; missing leaves read as zeros.
    fn fake_cpuid(leaves: &[(u32, [u32; 4])]) -> impl Fn(u32) -> [u32; 4] + '_ {
        move |leaf| {
            leaves
                .iter()
                .find(|(l, _)| *l == leaf)
                .map_or([0; 4], |(_, regs)| *regs)
        }
    }

    #[test]
    fn clock_rates_come_from_the_hypervisor_timing_leaf() {
        let hv = CPUID1_ECX_HYPERVISOR;
        let kvmlab = [
            (1, [0x806f8, 0, hv | 1, 0]),
            (0x4000_0000, [0x4000_0010, 0x4b4d_564b, 0x564b_4d56, 0x4d]),
            (0x4000_0010, [2_446_000, 1_000_000, 0, 0]),
        ];
        assert_eq!(
            clock_rates_from_cpuid(fake_cpuid(&kvmlab)),
            Some(ClockRates {
                tsc_khz: 2_446_000,
                apic_bus_khz: 1_000_000
            })
        );

        // QEMU without invtsc: KVM's leaves end at 0x4000_0001.
        let qemu = [
            (1, [0x663, 0, hv, 0]),
            (0x4000_0000, [0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d]),
            (0x4000_0010, [2_446_000, 1_000_000, 0, 0]),
        ];
        assert_eq!(clock_rates_from_cpuid(fake_cpuid(&qemu)), None);

        // Bare metal: no hypervisor bit, the hypervisor leaves are not looked at
        // (Intel CPUs answer them with the highest basic leaf's data).
        let bare = [
            (1, [0x806f8, 0, 1, 0]),
            (0x4000_0000, [0x4000_0010, 0, 0, 0]),
            (0x4000_0010, [2_446_000, 1_000_000, 0, 0]),
        ];
        assert_eq!(clock_rates_from_cpuid(fake_cpuid(&bare)), None);

        // A rate of zero means unknown.
        let unknown = [
            (1, [0, 0, hv, 0]),
            (0x4000_0000, [0x4000_0010, 0, 0, 0]),
            (0x4000_0010, [0, 1_000_000, 0, 0]),
        ];
        assert_eq!(clock_rates_from_cpuid(fake_cpuid(&unknown)), None);

        // Garbage for the highest leaf (not in the hypervisor range).
        let garbage = [
            (1, [0, 0, hv, 0]),
            (0x4000_0000, [0xffff_ffff, 0, 0, 0]),
            (0x4000_0010, [2_446_000, 1_000_000, 0, 0]),
        ];
        assert_eq!(clock_rates_from_cpuid(fake_cpuid(&garbage)), None);
    }

    #[test]
    fn the_constants_are_the_documented_leaves() {
        assert_eq!(TIMING_LEAF, 0x4000_0010);
        assert_eq!(HYPERVISOR_BASE, 0x4000_0000);
        assert_eq!(CPUID1_ECX_HYPERVISOR, 0x8000_0000);
    }
}
