//! The checksum of the disk report ([`crate::report::DiskReport`]).

/// FNV-1a, 64-bit, of `bytes`: the checksum the guest reports of a disk's first
/// sector.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a64(&[0u8; 512]), fnv_reference(&[0u8; 512]));
    }

    /// The textbook definition, written differently (fold) as a cross-check.
    fn fnv_reference(bytes: &[u8]) -> u64 {
        bytes
            .iter()
            .fold(14_695_981_039_346_656_037, |hash, &byte| {
                (hash ^ u64::from(byte)).wrapping_mul(1_099_511_628_211)
            })
    }
}
