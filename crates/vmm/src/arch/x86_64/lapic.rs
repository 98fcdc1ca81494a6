//! Local APIC setup: LINT0 delivers the legacy PIC's interrupts (ExtINT) and
//! LINT1 NMIs, as firmware leaves them for a PC-compatible guest.

use kvm_bindings::kvm_lapic_state;

/// Offset of the LVT LINT0 register in the APIC page.
pub const APIC_LVT0: usize = 0x350;
/// Offset of the LVT LINT1 register.
pub const APIC_LVT1: usize = 0x360;
/// Delivery mode field of an LVT entry.
const DELIVERY_MODE_MASK: u32 = 0x700;
/// Delivery mode ExtINT.
pub const APIC_MODE_EXTINT: u32 = 0x7;
/// Delivery mode NMI.
pub const APIC_MODE_NMI: u32 = 0x4;

/// Reads the 32-bit APIC register at `offset`.
pub fn get_reg(state: &kvm_lapic_state, offset: usize) -> u32 {
    let bytes: [u8; 4] = std::array::from_fn(|i| state.regs[offset + i] as u8);
    u32::from_le_bytes(bytes)
}

/// Writes the 32-bit APIC register at `offset`.
pub fn set_reg(state: &mut kvm_lapic_state, offset: usize, value: u32) {
    for (i, byte) in value.to_le_bytes().into_iter().enumerate() {
        state.regs[offset + i] = byte as _;
    }
}

fn with_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !DELIVERY_MODE_MASK) | (mode << 8)
}

/// Sets LINT0 to ExtINT and LINT1 to NMI in `state`.
pub fn configure_lint(state: &mut kvm_lapic_state) {
    let lvt0 = get_reg(state, APIC_LVT0);
    set_reg(state, APIC_LVT0, with_delivery_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = get_reg(state, APIC_LVT1);
    set_reg(state, APIC_LVT1, with_delivery_mode(lvt1, APIC_MODE_NMI));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint_modes() {
        let mut state = kvm_lapic_state::default();
        set_reg(&mut state, APIC_LVT0, 0x0001_0000); // masked, fixed
        configure_lint(&mut state);
        assert_eq!(get_reg(&state, APIC_LVT0), 0x0001_0700);
        assert_eq!(get_reg(&state, APIC_LVT1), 0x0000_0400);
    }
}
