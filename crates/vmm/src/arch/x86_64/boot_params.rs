//! The Linux zero page (`struct boot_params`) for the x86-64 boot protocol
//! (Documentation/arch/x86/boot.rst).

use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};

use super::e820::E820Entry;

/// "HdrS": the setup header's magic.
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// The boot sector signature, `boot_flag`.
const BOOT_FLAG: u16 = 0xaa55;
/// `type_of_loader` for a boot loader without an assigned id.
const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `loadflags`: protected-mode code is loaded at 1 MiB or above.
const LOADED_HIGH: u8 = 0x01;
/// Boot protocol version we claim when the kernel gave us no setup header.
const DEFAULT_PROTOCOL_VERSION: u16 = 0x020f;
/// Kernel alignment claimed when there is no setup header (16 MiB, as Linux's).
const DEFAULT_KERNEL_ALIGNMENT: u32 = 0x100_0000;
/// Entries that fit in the zero page's E820 table.
pub const E820_MAX_ENTRIES: usize = 128;

/// What goes into the zero page.
#[derive(Debug, Clone)]
pub struct ZeroPage<'a> {
    /// The kernel's own setup header (from a bzImage), if there is one.
    pub setup_header: Option<setup_header>,
    /// Guest address of the NUL-terminated command line.
    pub cmdline_addr: u64,
    /// Length of the command line, NUL included.
    pub cmdline_size: u32,
    /// Guest address and size of the initrd.
    pub initrd: Option<(u64, u64)>,
    /// The memory map.
    pub e820: &'a [E820Entry],
    /// Guest address of the ACPI RSDP, if the VM has ACPI tables (boot
    /// protocol 2.14 and later read it; older kernels scan for the RSDP).
    pub acpi_rsdp_addr: Option<u64>,
}

/// Errors building the zero page.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BootParamsError {
    /// The memory map has more entries than the zero page holds.
    #[error("the memory map has {0} entries, the zero page holds {E820_MAX_ENTRIES}")]
    TooManyE820Entries(usize),
    /// The command line or initrd lies above 4 GiB, out of the header's reach.
    #[error("{0} lies above 4 GiB")]
    Above4GiB(&'static str),
}

/// Builds the zero page.
pub fn build(page: &ZeroPage<'_>) -> Result<boot_params, BootParamsError> {
    if page.e820.len() > E820_MAX_ENTRIES {
        return Err(BootParamsError::TooManyE820Entries(page.e820.len()));
    }
    let mut params = boot_params::default();
    let hdr = &mut params.hdr;
    match page.setup_header {
        Some(header) => *hdr = header,
        None => {
            hdr.boot_flag = BOOT_FLAG;
            hdr.header = HDRS_MAGIC;
            hdr.version = DEFAULT_PROTOCOL_VERSION;
            hdr.kernel_alignment = DEFAULT_KERNEL_ALIGNMENT;
        }
    }
    hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    hdr.loadflags |= LOADED_HIGH;
    hdr.cmd_line_ptr = u32::try_from(page.cmdline_addr)
        .map_err(|_| BootParamsError::Above4GiB("the command line"))?;
    hdr.cmdline_size = page.cmdline_size;
    if let Some((addr, size)) = page.initrd {
        hdr.ramdisk_image =
            u32::try_from(addr).map_err(|_| BootParamsError::Above4GiB("the initrd"))?;
        hdr.ramdisk_size =
            u32::try_from(size).map_err(|_| BootParamsError::Above4GiB("the initrd"))?;
    }
    if let Some(addr) = page.acpi_rsdp_addr {
        params.acpi_rsdp_addr = addr;
    }
    for (slot, entry) in params.e820_table.iter_mut().zip(page.e820) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.size,
            r#type: entry.kind,
        };
    }
    // At most E820_MAX_ENTRIES (128), checked above.
    params.e820_entries = page.e820.len() as u8;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::e820::memory_map;
    use vm_memory::ByteValued;

    fn read_u32(bytes: &[u8], offset: usize) -> u32 {
        u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
    }

    #[test]
    fn zero_page_for_an_elf_kernel() {
        let map = memory_map(128 << 20);
        let params = build(&ZeroPage {
            setup_header: None,
            cmdline_addr: 0x2_0000,
            cmdline_size: 12,
            initrd: Some((0x700_0000, 0x1234)),
            e820: &map,
            acpi_rsdp_addr: Some(0xe_0000),
        })
        .unwrap();
        // Check the raw layout against the offsets of zero-page.rst.
        let bytes = params.as_slice();
        assert_eq!(bytes.len(), 4096);
        assert_eq!(u16::from_le_bytes([bytes[0x1fe], bytes[0x1ff]]), 0xaa55);
        assert_eq!(read_u32(bytes, 0x202), HDRS_MAGIC);
        assert_eq!(bytes[0x210], 0xff, "type_of_loader");
        assert_eq!(bytes[0x211] & LOADED_HIGH, LOADED_HIGH, "loadflags");
        assert_eq!(read_u32(bytes, 0x218), 0x700_0000, "ramdisk_image");
        assert_eq!(read_u32(bytes, 0x21c), 0x1234, "ramdisk_size");
        assert_eq!(read_u32(bytes, 0x228), 0x2_0000, "cmd_line_ptr");
        assert_eq!(
            u64::from_le_bytes(bytes[0x70..0x78].try_into().unwrap()),
            0xe_0000,
            "acpi_rsdp_addr"
        );
        assert_eq!(bytes[0x1e8], 3, "e820_entries");
        let himem = 0x2d0 + 2 * 20;
        assert_eq!(
            u64::from_le_bytes(bytes[himem..himem + 8].try_into().unwrap()),
            0x10_0000
        );
        assert_eq!(
            u64::from_le_bytes(bytes[himem + 8..himem + 16].try_into().unwrap()),
            (128 << 20) - 0x10_0000
        );
        assert_eq!(read_u32(bytes, himem + 16), 1, "E820_RAM");
    }

    #[test]
    fn kernel_setup_header_is_kept() {
        let header = setup_header {
            header: HDRS_MAGIC,
            version: 0x020f,
            setup_sects: 39,
            init_size: 0x200_0000,
            ..Default::default()
        };
        let params = build(&ZeroPage {
            setup_header: Some(header),
            cmdline_addr: 0x2_0000,
            cmdline_size: 1,
            initrd: None,
            e820: &[],
            acpi_rsdp_addr: None,
        })
        .unwrap();
        assert_eq!({ params.hdr.setup_sects }, 39);
        assert_eq!({ params.hdr.init_size }, 0x200_0000);
        assert_eq!({ params.hdr.type_of_loader }, 0xff);
        assert_eq!({ params.hdr.ramdisk_image }, 0);
    }

    #[test]
    fn rejects_too_many_e820_entries() {
        let map = vec![
            E820Entry {
                addr: 0,
                size: 1,
                kind: 1
            };
            129
        ];
        let page = ZeroPage {
            setup_header: None,
            cmdline_addr: 0,
            cmdline_size: 1,
            initrd: None,
            e820: &map,
            acpi_rsdp_addr: None,
        };
        assert_eq!(
            build(&page).unwrap_err(),
            BootParamsError::TooManyE820Entries(129)
        );
    }

    #[test]
    fn rejects_initrd_above_4_gib() {
        let page = ZeroPage {
            setup_header: None,
            cmdline_addr: 0x2_0000,
            cmdline_size: 1,
            initrd: Some((1 << 32, 10)),
            e820: &[],
            acpi_rsdp_addr: None,
        };
        assert_eq!(
            build(&page).unwrap_err(),
            BootParamsError::Above4GiB("the initrd")
        );
    }
}
