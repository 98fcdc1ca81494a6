//! Loading a kernel (bzImage or ELF vmlinux), its initrd and its command line
//! into guest memory.

pub mod bzimage;

use std::io::Cursor;

use linux_loader::loader::bootparam::setup_header;
use linux_loader::loader::{KernelLoader, elf::Elf};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::x86_64::layout::{CMDLINE_MAX_SIZE, CMDLINE_START, HIMEM_START};
use crate::config::BzImageMode;
use crate::error::VmErrorKind;
use bzimage::Compression;

/// The 64-bit entry point of a bzImage, relative to its protected-mode code.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;
/// Highest initrd address when the kernel does not say (protocol < 2.03).
const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;

/// Where a kernel landed.
#[derive(Debug, Clone)]
pub struct LoadedKernel {
    /// Guest address of the 64-bit entry point.
    pub entry: u64,
    /// First guest address past the kernel (including its uninitialised data
    /// and, for a bzImage booted directly, room to decompress).
    pub end: u64,
    /// The bzImage setup header, if the kernel came from a bzImage.
    pub setup_header: Option<setup_header>,
    /// What was booted, for the log: "ELF", "ELF unpacked from a bzImage"...
    pub description: String,
}

/// Extent of the loadable segments of an ELF image: (lowest, highest end).
pub fn elf_extent(image: &[u8]) -> Result<(u64, u64), String> {
    let u16_at = |o: usize| {
        image
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        image
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    let u64_at = |o: usize| {
        image
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    if image.get(..4) != Some(b"\x7fELF") {
        return Err("no ELF magic".to_string());
    }
    if image.get(4) != Some(&2) || image.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".to_string());
    }
    if u16_at(18) != Some(62) {
        return Err("not an x86-64 ELF file".to_string());
    }
    let truncated = || "truncated ELF header".to_string();
    let phoff = u64_at(32).ok_or_else(truncated)? as usize;
    let phentsize = usize::from(u16_at(54).ok_or_else(truncated)?);
    let phnum = usize::from(u16_at(56).ok_or_else(truncated)?);
    let (mut low, mut high) = (u64::MAX, 0u64);
    for i in 0..phnum {
        let ph = phoff.checked_add(i * phentsize).ok_or_else(truncated)?;
        if u32_at(ph).ok_or_else(truncated)? != 1 {
            continue; // not PT_LOAD
        }
        let paddr = u64_at(ph + 24).ok_or_else(truncated)?;
        let memsz = u64_at(ph + 40).ok_or_else(truncated)?;
        let end = paddr
            .checked_add(memsz)
            .ok_or("segment wraps around the address space")?;
        low = low.min(paddr);
        high = high.max(end);
    }
    if high == 0 {
        return Err("no loadable segment".to_string());
    }
    Ok((low, high))
}

fn bad(kernel: &str, reason: impl Into<String>) -> VmErrorKind {
    VmErrorKind::BadKernel {
        kernel: kernel.to_string(),
        reason: reason.into(),
    }
}

fn too_small(mem_end: u64, needed: u64, what: &str) -> VmErrorKind {
    VmErrorKind::MemoryTooSmall {
        memory: mem_end,
        needed,
        what: what.to_string(),
    }
}

/// Loads `image` into `mem`, whose RAM below the MMIO gap ends at `low_end`.
/// `kernel` names the image in errors.
pub fn load_kernel(
    mem: &GuestMemoryMmap,
    low_end: u64,
    image: &[u8],
    kernel: &str,
    mode: BzImageMode,
) -> Result<LoadedKernel, VmErrorKind> {
    if bzimage::is_bzimage(image) {
        let bz = bzimage::parse(image).map_err(|r| bad(kernel, r))?;
        if mode == BzImageMode::UnpackPayload {
            if let Some(payload) = bz.payload {
                let elf = match Compression::detect(payload) {
                    Compression::Xz => {
                        Some(bzimage::decompress_xz(payload).map_err(|r| bad(kernel, r))?)
                    }
                    Compression::None => Some(payload.to_vec()),
                    _ => None,
                };
                if let Some(elf) = elf {
                    let mut loaded = load_elf(mem, low_end, &elf, kernel)?;
                    loaded.setup_header = Some(bz.header);
                    loaded.description = format!(
                        "vmlinux ELF unpacked from the bzImage ({:?}, {} MiB)",
                        Compression::detect(payload),
                        elf.len() >> 20
                    );
                    return Ok(loaded);
                }
            }
        }
        return load_bzimage_direct(mem, low_end, image, &bz, kernel);
    }
    if image.starts_with(b"\x7fELF") {
        return load_elf(mem, low_end, image, kernel);
    }
    Err(bad(
        kernel,
        "neither a bzImage (no \"HdrS\" setup header) nor an ELF vmlinux (no ELF magic)",
    ))
}

fn load_elf(
    mem: &GuestMemoryMmap,
    low_end: u64,
    image: &[u8],
    kernel: &str,
) -> Result<LoadedKernel, VmErrorKind> {
    let (low, high) = elf_extent(image).map_err(|r| bad(kernel, r))?;
    if low < HIMEM_START {
        return Err(bad(
            kernel,
            format!("a segment loads at {low:#x}, below 1 MiB"),
        ));
    }
    if high > low_end {
        return Err(too_small(low_end, high, "the kernel"));
    }
    let result = Elf::load(
        mem,
        None,
        &mut Cursor::new(image),
        Some(GuestAddress(HIMEM_START)),
    )
    .map_err(|e| bad(kernel, e.to_string()))?;
    Ok(LoadedKernel {
        entry: result.kernel_load.0,
        end: high,
        setup_header: None,
        description: "ELF".to_string(),
    })
}

fn load_bzimage_direct(
    mem: &GuestMemoryMmap,
    low_end: u64,
    image: &[u8],
    bz: &bzimage::BzImage<'_>,
    kernel: &str,
) -> Result<LoadedKernel, VmErrorKind> {
    let load = u64::from(bz.header.code32_start).max(HIMEM_START);
    let file_size = (image.len() - bz.protected_mode_offset) as u64;
    // The kernel decompresses itself in place and needs init_size bytes from
    // its load address (boot protocol 2.10+).
    let end = load + file_size.max(u64::from(bz.header.init_size));
    if end > low_end {
        return Err(too_small(
            low_end,
            end,
            "the bzImage and its in-place decompression",
        ));
    }
    let result = linux_loader::loader::bzimage::BzImage::load(
        mem,
        Some(GuestAddress(load)),
        &mut Cursor::new(image),
        Some(GuestAddress(HIMEM_START)),
    )
    .map_err(|e| bad(kernel, e.to_string()))?;
    Ok(LoadedKernel {
        entry: result.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET,
        end,
        setup_header: result.setup_header,
        description: "bzImage (64-bit boot protocol, decompressing itself)".to_string(),
    })
}

/// Places the initrd at the top of low RAM, under the kernel's limit;
/// returns its guest address.
pub fn load_initrd(
    mem: &GuestMemoryMmap,
    low_end: u64,
    kernel: &LoadedKernel,
    initrd: &[u8],
) -> Result<u64, VmErrorKind> {
    let addr_max = match kernel.setup_header {
        Some(h) if { h.version } >= 0x0203 => u64::from(h.initrd_addr_max),
        Some(_) => DEFAULT_INITRD_ADDR_MAX,
        None => u64::from(u32::MAX),
    };
    let top = low_end.min(addr_max.saturating_add(1));
    let size = initrd.len() as u64;
    let needed = kernel.end + size.next_multiple_of(4096);
    let addr = top
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|&a| a >= kernel.end);
    let addr = addr.ok_or_else(|| too_small(low_end, needed, "the kernel with its initrd"))?;
    mem.write_slice(initrd, GuestAddress(addr))
        .map_err(|e| VmErrorKind::Setup(format!("writing the initrd: {e}")))?;
    Ok(addr)
}

/// Writes the NUL-terminated command line; returns its size, NUL included.
pub fn load_cmdline(
    mem: &GuestMemoryMmap,
    cmdline: &str,
    kernel: &LoadedKernel,
) -> Result<u32, VmErrorKind> {
    let limit = match kernel.setup_header {
        Some(h) if { h.version } >= 0x0206 && h.cmdline_size > 0 => {
            (h.cmdline_size as usize + 1).min(CMDLINE_MAX_SIZE)
        }
        _ => CMDLINE_MAX_SIZE,
    };
    if cmdline.as_bytes().contains(&0) {
        return Err(VmErrorKind::InvalidConfig(
            "the command line contains a NUL byte".to_string(),
        ));
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    if bytes.len() > limit {
        return Err(VmErrorKind::InvalidConfig(format!(
            "the command line is {} bytes long; this kernel takes at most {}",
            bytes.len() - 1,
            limit - 1
        )));
    }
    mem.write_slice(&bytes, GuestAddress(CMDLINE_START))
        .map_err(|e| VmErrorKind::Setup(format!("writing the command line: {e}")))?;
    Ok(bytes.len() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem(size: usize) -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), size)]).unwrap()
    }

    /// A tiny x86-64 ELF with one PT_LOAD segment at `paddr` of `memsz` bytes.
    fn tiny_elf(paddr: u64, memsz: u64) -> Vec<u8> {
        let mut image = vec![0u8; 64 + 56 + 16];
        image[..4].copy_from_slice(b"\x7fELF");
        image[4] = 2; // 64-bit
        image[5] = 1; // little endian
        image[6] = 1;
        image[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        image[18..20].copy_from_slice(&62u16.to_le_bytes()); // x86-64
        image[24..32].copy_from_slice(&paddr.to_le_bytes()); // entry
        image[32..40].copy_from_slice(&64u64.to_le_bytes()); // phoff
        image[52..54].copy_from_slice(&64u16.to_le_bytes());
        image[54..56].copy_from_slice(&56u16.to_le_bytes());
        image[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        image[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        image[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes()); // offset
        image[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
        image[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
        image[ph + 32..ph + 40].copy_from_slice(&16u64.to_le_bytes()); // filesz
        image[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        image[120..136].copy_from_slice(b"kernel code here");
        image
    }

    #[test]
    fn loads_an_elf() {
        let m = mem(4 << 20);
        let loaded = load_kernel(
            &m,
            4 << 20,
            &tiny_elf(0x20_0000, 0x1000),
            "k",
            BzImageMode::default(),
        )
        .unwrap();
        assert_eq!((loaded.entry, loaded.end), (0x20_0000, 0x20_1000));
        let mut buf = [0u8; 16];
        m.read_slice(&mut buf, GuestAddress(0x20_0000)).unwrap();
        assert_eq!(&buf, b"kernel code here");
    }

    #[test]
    fn elf_too_big_for_memory() {
        let m = mem(2 << 20);
        let err = load_kernel(
            &m,
            2 << 20,
            &tiny_elf(0x10_0000, 0x20_0000),
            "k",
            BzImageMode::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                VmErrorKind::MemoryTooSmall {
                    needed: 0x30_0000,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_not_a_kernel() {
        let m = mem(2 << 20);
        let err = load_kernel(
            &m,
            2 << 20,
            b"this is not a kernel at all",
            "junk.bin",
            BzImageMode::default(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("junk.bin is not a kernel kvmlab can boot"),
            "{text}"
        );
    }

    #[test]
    fn unpacks_an_uncompressed_payload() {
        let image = bzimage::tests_support::fake_bzimage(&tiny_elf(0x30_0000, 0x100));
        let m = mem(8 << 20);
        let loaded = load_kernel(&m, 8 << 20, &image, "bz", BzImageMode::UnpackPayload).unwrap();
        assert_eq!(loaded.entry, 0x30_0000);
        assert!(loaded.setup_header.is_some());
    }

    #[test]
    fn bzimage_direct_enters_at_the_64_bit_entry() {
        let image = bzimage::tests_support::fake_bzimage(&[0x90; 4096]);
        let m = mem(8 << 20);
        let loaded = load_kernel(&m, 8 << 20, &image, "bz", BzImageMode::Direct).unwrap();
        assert_eq!(loaded.entry, HIMEM_START + 0x200);
        assert_eq!(loaded.end, HIMEM_START + 4096);
        assert_eq!(m.read_obj::<u8>(GuestAddress(HIMEM_START)).unwrap(), 0x90);
        // Not enough room for the kernel's in-place decompression (init_size).
        let mut big = image.clone();
        big[0x260..0x264].copy_from_slice(&(16u32 << 20).to_le_bytes());
        let err = load_kernel(&m, 8 << 20, &big, "bz", BzImageMode::Direct).unwrap_err();
        assert!(matches!(err, VmErrorKind::MemoryTooSmall { .. }), "{err}");
    }

    #[test]
    fn initrd_goes_to_the_top() {
        let m = mem(8 << 20);
        let kernel = LoadedKernel {
            entry: 0,
            end: 0x20_0000,
            setup_header: None,
            description: String::new(),
        };
        let addr = load_initrd(&m, 8 << 20, &kernel, &[7u8; 5000]).unwrap();
        assert_eq!(addr, (8 << 20) - 8192);
        let err = load_initrd(&m, 8 << 20, &kernel, &vec![0u8; 7 << 20]).unwrap_err();
        assert!(matches!(err, VmErrorKind::MemoryTooSmall { .. }));
    }

    #[test]
    fn cmdline_limits() {
        let m = mem(1 << 20);
        let kernel = LoadedKernel {
            entry: 0,
            end: 0,
            setup_header: None,
            description: String::new(),
        };
        assert_eq!(load_cmdline(&m, "console=ttyS0", &kernel).unwrap(), 14);
        assert!(load_cmdline(&m, &"x".repeat(CMDLINE_MAX_SIZE), &kernel).is_err());
    }
}
