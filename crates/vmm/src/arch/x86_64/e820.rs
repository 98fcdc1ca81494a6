//! The E820 memory map handed to the guest.

use super::layout::{BIOS_AREA_START, EBDA_START, HIMEM_START, MMIO_GAP_END, MMIO_GAP_START};

/// E820 type of usable RAM.
pub const E820_RAM: u32 = 1;
/// E820 type of reserved memory.
pub const E820_RESERVED: u32 = 2;

/// One entry of the memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    /// First byte.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// `E820_RAM` or `E820_RESERVED`.
    pub kind: u32,
}

/// The memory map of a VM with `mem_size` bytes of RAM: conventional memory up
/// to the EBDA, the legacy hole up to 1 MiB left out but for the BIOS area with
/// the ACPI tables (reserved), RAM from 1 MiB to the MMIO gap, and the rest
/// above 4 GiB.
pub fn memory_map(mem_size: u64) -> Vec<E820Entry> {
    let mut map = vec![E820Entry {
        addr: 0,
        size: EBDA_START.min(mem_size),
        kind: E820_RAM,
    }];
    if mem_size >= HIMEM_START {
        map.push(E820Entry {
            addr: BIOS_AREA_START,
            size: HIMEM_START - BIOS_AREA_START,
            kind: E820_RESERVED,
        });
    }
    let low_end = mem_size.min(MMIO_GAP_START);
    if low_end > HIMEM_START {
        map.push(E820Entry {
            addr: HIMEM_START,
            size: low_end - HIMEM_START,
            kind: E820_RAM,
        });
    }
    if mem_size > MMIO_GAP_START {
        map.push(E820Entry {
            addr: MMIO_GAP_END,
            size: mem_size - MMIO_GAP_START,
            kind: E820_RAM,
        });
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram_total(map: &[E820Entry]) -> u64 {
        map.iter()
            .filter(|e| e.kind == E820_RAM)
            .map(|e| e.size)
            .sum()
    }

    #[test]
    fn small_vm() {
        let map = memory_map(64 << 20);
        assert_eq!(
            map,
            vec![
                E820Entry {
                    addr: 0,
                    size: 0x9_fc00,
                    kind: E820_RAM
                },
                E820Entry {
                    addr: 0xe_0000,
                    size: 0x2_0000,
                    kind: E820_RESERVED
                },
                E820Entry {
                    addr: 0x10_0000,
                    size: (64 << 20) - 0x10_0000,
                    kind: E820_RAM
                },
            ]
        );
        // Only the legacy hole (under 1 MiB) is missing.
        assert_eq!(ram_total(&map), (64 << 20) - (0x10_0000 - 0x9_fc00));
    }

    #[test]
    fn large_vm_has_ram_above_4_gib() {
        let size = 5u64 << 30;
        let map = memory_map(size);
        assert_eq!(map.len(), 4);
        assert_eq!(map[2].addr + map[2].size, MMIO_GAP_START);
        assert_eq!(
            map[3],
            E820Entry {
                addr: 1 << 32,
                size: size - MMIO_GAP_START,
                kind: E820_RAM
            }
        );
        // No entry overlaps the MMIO gap.
        assert!(
            map.iter()
                .all(|e| e.addr + e.size <= MMIO_GAP_START || e.addr >= MMIO_GAP_END)
        );
    }

    #[test]
    fn entries_are_sorted_and_disjoint() {
        for size in [2u64 << 20, 64 << 20, 3 << 30, 8 << 30] {
            let map = memory_map(size);
            for pair in map.windows(2) {
                assert!(
                    pair[0].addr + pair[0].size <= pair[1].addr,
                    "{size}: {map:?}"
                );
            }
        }
    }
}
