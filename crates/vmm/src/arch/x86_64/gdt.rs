//! The boot GDT and the segment registers derived from it.

use kvm_bindings::kvm_segment;

/// Flags of a 64-bit code segment (present, DPL 0, execute/read, L=1, G=1).
pub const CODE64_FLAGS: u16 = 0xa09b;
/// Flags of a data segment (present, DPL 0, read/write, D/B=1, G=1).
pub const DATA_FLAGS: u16 = 0xc093;
/// Flags of a 64-bit TSS (present, busy).
pub const TSS_FLAGS: u16 = 0x808b;

/// Selector index of the code segment.
pub const CODE_INDEX: u16 = 1;
/// Selector index of the data segment.
pub const DATA_INDEX: u16 = 2;
/// Selector index of the TSS.
pub const TSS_INDEX: u16 = 3;

/// Encodes a GDT descriptor from its flags (access byte in bits 0..8, the
/// flags nibble in bits 12..16), base and 20-bit limit.
pub const fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << (56 - 24))
        | ((flags as u64 & 0x0000_f0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << (48 - 16))
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The boot GDT: null, code, data, TSS.
pub fn boot_gdt() -> [u64; 4] {
    [
        0,
        gdt_entry(CODE64_FLAGS, 0, 0xfffff),
        gdt_entry(DATA_FLAGS, 0, 0xfffff),
        gdt_entry(TSS_FLAGS, 0, 0xfffff),
    ]
}

fn base(entry: u64) -> u64 {
    ((entry & 0xff00_0000_0000_0000) >> 32)
        | ((entry & 0x0000_00ff_0000_0000) >> 16)
        | ((entry & 0x0000_0000_ffff_0000) >> 16)
}

fn limit(entry: u64) -> u32 {
    let raw = (((entry & 0x000f_0000_0000_0000) >> 32) | (entry & 0x0000_0000_0000_ffff)) as u32;
    // With G=1 the limit counts 4 KiB pages.
    if (entry >> 55) & 1 == 1 {
        (raw << 12) | 0xfff
    } else {
        raw
    }
}

/// The KVM segment register contents for descriptor `entry` at GDT index `index`.
pub fn segment_from_gdt(entry: u64, index: u16) -> kvm_segment {
    let bit = |n: u32| ((entry >> n) & 1) as u8;
    kvm_segment {
        base: base(entry),
        limit: limit(entry),
        selector: index * 8,
        type_: ((entry >> 40) & 0xf) as u8,
        present: bit(47),
        dpl: ((entry >> 45) & 0x3) as u8,
        db: bit(54),
        s: bit(44),
        l: bit(53),
        g: bit(55),
        avl: bit(52),
        unusable: if bit(47) == 1 { 0 } else { 1 },
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_flat_segments() {
        assert_eq!(gdt_entry(CODE64_FLAGS, 0, 0xfffff), 0x00af_9b00_0000_ffff);
        assert_eq!(gdt_entry(DATA_FLAGS, 0, 0xfffff), 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn encodes_base_and_limit() {
        let bytes = gdt_entry(0x0093, 0x1234_5678, 0xa_bcde);
        assert_eq!(base(bytes), 0x1234_5678);
        assert_eq!(limit(bytes), 0xa_bcde);
        // With G=1 the limit is in 4 KiB units.
        let pages = gdt_entry(0x8093, 0, 0xa_bcde);
        assert_eq!(limit(pages), 0xabcd_efff);
    }

    #[test]
    fn code_segment_is_64_bit() {
        let seg = segment_from_gdt(boot_gdt()[1], CODE_INDEX);
        assert_eq!(seg.selector, 0x8);
        assert_eq!(
            (seg.l, seg.db, seg.g, seg.present, seg.s, seg.type_),
            (1, 0, 1, 1, 1, 0xb)
        );
        assert_eq!(seg.limit, 0xffff_ffff);
        assert_eq!(seg.unusable, 0);
    }

    #[test]
    fn data_and_tss_segments() {
        let data = segment_from_gdt(boot_gdt()[2], DATA_INDEX);
        assert_eq!(
            (data.selector, data.db, data.l, data.type_),
            (0x10, 1, 0, 0x3)
        );
        let tss = segment_from_gdt(boot_gdt()[3], TSS_INDEX);
        assert_eq!((tss.selector, tss.s, tss.type_), (0x18, 0, 0xb));
    }
}
