//! The `virtio_mmio.device=<size>@<base>:<irq>[:<id>]` words (Linux's format) that
//! announce a virtio-mmio register block on the kernel command line. The engine
//! writes them for its devices (QEMU's microvm does too), Linux and the built-in
//! guest read them.

use core::fmt;

use crate::text::cut;

/// One `virtio_mmio.device=<size>@<base>:<irq>` word's value: a virtio-mmio
/// register block and its interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioDevice {
    /// Guest-physical address of the register block (4-byte aligned).
    pub base: u64,
    /// Size of the register block in bytes (at least 0x100).
    pub size: u64,
    /// The interrupt line (GSI) the device raises.
    pub irq: u32,
}

impl MmioDevice {
    /// Parses `<size>@<base>:<irq>[:<id>]` (Linux's `virtio_mmio.device` format;
    /// the platform device id is ignored). `None` when a part is malformed, the
    /// block is smaller than 0x100 bytes or its base is not 4-byte aligned.
    pub fn parse(value: &str) -> Option<MmioDevice> {
        let (size, rest) = cut(value, b'@')?;
        let (base, rest) = cut(rest, b':')?;
        let irq = cut(rest, b':').map_or(rest, |(irq, _)| irq);
        let device = MmioDevice {
            size: parse_size(size)?,
            base: parse_number(base)?,
            irq: irq.parse().ok()?,
        };
        (device.size >= 0x100 && device.base & 3 == 0).then_some(device)
    }
}

/// Writes the value as [`MmioDevice::parse`] reads it: the size with the largest
/// K, M or G suffix that divides it, the base in hexadecimal (`4K@0xd0000000:5`).
impl fmt::Display for MmioDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = self.size;
        let (count, suffix) = match size {
            0 => (0, ""),
            _ if size % (1 << 30) == 0 => (size >> 30, "G"),
            _ if size % (1 << 20) == 0 => (size >> 20, "M"),
            _ if size % (1 << 10) == 0 => (size >> 10, "K"),
            _ => (size, ""),
        };
        write!(f, "{count}{suffix}@{:#x}:{}", self.base, self.irq)
    }
}

/// Parses a number in decimal or, with `0x`, hexadecimal.
pub fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Parses a size as Linux's `memparse` does: a number with an optional K, M
/// or G suffix.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 10),
        b'm' | b'M' => (&text[..text.len() - 1], 20),
        b'g' | b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    parse_number(digits)?.checked_mul(1 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_numbers() {
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("0x200"), Some(512));
        assert_eq!(parse_size("K"), None);
        assert_eq!(parse_number("0xfeb00000"), Some(0xfeb0_0000));
    }

    #[test]
    fn devices() {
        assert_eq!(
            MmioDevice::parse("512@0xfeb00e00:12:3"),
            Some(MmioDevice {
                base: 0xfeb0_0e00,
                size: 512,
                irq: 12
            })
        );
        assert_eq!(MmioDevice::parse("4K@0xd0000000"), None);
        assert_eq!(MmioDevice::parse("16@0xd0000000:5"), None);
        assert_eq!(MmioDevice::parse("4K@0xd0000002:5"), None);
        assert_eq!(MmioDevice::parse("4K@0xd0000000:x"), None);
    }

    #[test]
    fn display_is_what_parse_reads_back() {
        // The engine's own words (`4K@{base:#x}:{irq}`) come out unchanged.
        let engine = MmioDevice {
            base: 0xd000_0000,
            size: 4096,
            irq: 5,
        };
        assert_eq!(engine.to_string(), "4K@0xd0000000:5");
        for size in [
            0x100,
            512,
            0x1234,
            4096,
            3 << 10,
            1 << 20,
            5 << 20,
            1 << 30,
            3 << 31,
        ] {
            for base in [0, 0xd000_0000, 0xfeb0_0e00, 0x1_0000_0004, u64::MAX - 3] {
                for irq in [0, 5, 23, u32::MAX] {
                    let device = MmioDevice { base, size, irq };
                    let text = device.to_string();
                    assert_eq!(MmioDevice::parse(&text), Some(device), "{text}");
                }
            }
        }
    }
}
