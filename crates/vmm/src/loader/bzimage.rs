//! bzImage inspection on the host: the setup header, and the compressed kernel
//! (the "payload", a vmlinux ELF) that the header points at.
//!
//! Booting the payload directly skips the in-guest decompressor, which under
//! emulated KVM costs billions of instructions (minutes), and even on hardware
//! is slower than decompressing on the host.

use std::io::Read;

use linux_loader::loader::bootparam::setup_header;
use vm_memory::ByteValued;

use crate::arch::x86_64::boot_params::HDRS_MAGIC;

/// Offset of the setup header in a bzImage.
const SETUP_HEADER_OFFSET: usize = 0x1f1;
/// `loadflags` bit: protected-mode code loads at 1 MiB.
const LOADED_HIGH: u8 = 0x01;
/// First boot protocol version with `payload_offset`/`payload_length`.
const PAYLOAD_PROTOCOL: u16 = 0x0208;
/// Largest decompressed kernel accepted (guards against decompression bombs).
const MAX_PAYLOAD: u64 = 1 << 30;

/// Compression of a bzImage payload, from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// XZ (with the x86 BCJ filter, as Linux builds it).
    Xz,
    /// gzip.
    Gzip,
    /// bzip2.
    Bzip2,
    /// Legacy LZMA.
    Lzma,
    /// LZO.
    Lzo,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
    /// Not compressed: an ELF already.
    None,
    /// Unrecognised magic.
    Unknown,
}

impl Compression {
    /// Recognises the compression from the first bytes of the payload.
    pub fn detect(payload: &[u8]) -> Compression {
        match payload {
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Compression::Xz,
            [0x1f, 0x8b, ..] | [0x1f, 0x9e, ..] => Compression::Gzip,
            [b'B', b'Z', b'h', ..] => Compression::Bzip2,
            [0x5d, 0x00, 0x00, ..] => Compression::Lzma,
            [0x89, b'L', b'Z', b'O', ..] => Compression::Lzo,
            [0x02, 0x21, 0x4c, 0x18, ..] => Compression::Lz4,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [0x7f, b'E', b'L', b'F', ..] => Compression::None,
            _ => Compression::Unknown,
        }
    }
}

/// A parsed bzImage.
#[derive(Debug, Clone)]
pub struct BzImage<'a> {
    /// The setup header, as in the file.
    pub header: setup_header,
    /// Offset of the protected-mode code in the file.
    pub protected_mode_offset: usize,
    /// The compressed payload, if the boot protocol describes one.
    pub payload: Option<&'a [u8]>,
}

/// Whether `image` carries a bzImage setup header ("HdrS" at 0x202).
pub fn is_bzimage(image: &[u8]) -> bool {
    image.len() > 0x206 && image[0x202..0x206] == HDRS_MAGIC.to_le_bytes()
}

/// Parses the setup header of a bzImage and locates its payload.
pub fn parse(image: &[u8]) -> Result<BzImage<'_>, String> {
    let mut header = setup_header::default();
    let size = std::mem::size_of::<setup_header>();
    let raw = image
        .get(SETUP_HEADER_OFFSET..SETUP_HEADER_OFFSET + size)
        .ok_or("the file is too short for a bzImage setup header")?;
    header.as_mut_slice().copy_from_slice(raw);
    if { header.header } != HDRS_MAGIC {
        return Err("no \"HdrS\" setup header".to_string());
    }
    if { header.version } < 0x0200 || header.loadflags & LOADED_HIGH == 0 {
        return Err(format!(
            "boot protocol {}.{:02} zImage (not loaded high); kvmlab boots bzImages only",
            header.version >> 8,
            header.version & 0xff
        ));
    }
    let setup_sects = if header.setup_sects == 0 {
        4
    } else {
        usize::from(header.setup_sects)
    };
    let protected_mode_offset = (setup_sects + 1) * 512;
    if protected_mode_offset >= image.len() {
        return Err("the setup code runs past the end of the file".to_string());
    }
    let payload = if { header.version } >= PAYLOAD_PROTOCOL && header.payload_length > 0 {
        let start = protected_mode_offset + header.payload_offset as usize;
        let end = start + header.payload_length as usize;
        Some(
            image
                .get(start..end)
                .ok_or("the payload runs past the end of the file")?,
        )
    } else {
        None
    };
    Ok(BzImage {
        header,
        protected_mode_offset,
        payload,
    })
}

/// Decompresses an XZ payload. Linux appends the uncompressed size (4 bytes)
/// after the XZ stream; the decoder stops at the end of the stream, so that
/// trailer is ignored.
pub fn decompress_xz(payload: &[u8]) -> Result<Vec<u8>, String> {
    let reader = lzma_rust2::XzReader::new(payload, false);
    let mut out = Vec::new();
    reader
        .take(MAX_PAYLOAD)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decompress the XZ payload: {e}"))?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A minimal bzImage: setup sectors, header, and `payload` at the start
    /// of the protected-mode code.
    pub(crate) fn fake_bzimage(payload: &[u8]) -> Vec<u8> {
        let setup_sects = 4u8;
        let pm = (usize::from(setup_sects) + 1) * 512;
        let mut image = vec![0u8; pm];
        image[0x1f1] = setup_sects;
        image[0x1fe..0x200].copy_from_slice(&0xaa55u16.to_le_bytes());
        image[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
        image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        image[0x211] = LOADED_HIGH;
        image[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes());
        image[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        image.extend_from_slice(payload);
        image
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::fake_bzimage;
    use super::*;

    #[test]
    fn detects_compression_magic() {
        assert_eq!(
            Compression::detect(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0]),
            Compression::Xz
        );
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"\x7fELF\x02"), Compression::None);
        assert_eq!(Compression::detect(b"junk"), Compression::Unknown);
    }

    #[test]
    fn finds_the_payload() {
        let image = fake_bzimage(b"\x7fELFpayload");
        assert!(is_bzimage(&image));
        let bz = parse(&image).unwrap();
        assert_eq!(bz.protected_mode_offset, 5 * 512);
        assert_eq!(bz.payload.unwrap(), b"\x7fELFpayload");
        assert_eq!({ bz.header.version }, 0x020f);
    }

    #[test]
    fn rejects_truncated_and_old_images() {
        assert!(!is_bzimage(b"garbage"));
        let mut image = fake_bzimage(b"abc");
        image.truncate(image.len() - 1);
        assert!(parse(&image).unwrap_err().contains("past the end"));
        let mut old = fake_bzimage(b"abc");
        old[0x211] = 0;
        assert!(parse(&old).unwrap_err().contains("zImage"));
    }

    #[test]
    fn bad_xz_is_an_error() {
        let err = decompress_xz(b"\xfd7zXZ\0garbage").unwrap_err();
        assert!(err.contains("XZ"), "{err}");
    }
}
