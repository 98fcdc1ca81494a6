//! Memory sizes with units, as people write them: `64MiB`, `1GiB`, `512M`.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// A size in bytes. Written in a file as a number with a binary unit; `K`, `M`, `G`
/// and `T` mean KiB, MiB, GiB and TiB, and a plain number means MiB, as QEMU and
/// Firecracker read it (`B` asks for bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// `n` mebibytes.
    pub const fn mib(n: u64) -> Self {
        ByteSize(n * MIB)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

/// Why a size could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseSizeError {
    /// Not a number with a unit.
    #[error("`{0}` is not a size: expected a number with a unit, like 64MiB, 1GiB or 512M")]
    Malformed(String),
    /// A unit kvmlab does not know.
    #[error("`{0}` has an unknown unit `{1}`: use B, K/KiB, M/MiB, G/GiB or T/TiB")]
    UnknownUnit(String, String),
    /// More bytes than a u64 holds.
    #[error("`{0}` is too large")]
    Overflow(String),
}

impl std::str::FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let digits_end = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(digits_end);
        if number.is_empty() {
            return Err(ParseSizeError::Malformed(text.to_string()));
        }
        let number: u64 = number
            .parse()
            .map_err(|_| ParseSizeError::Overflow(text.to_string()))?;
        let multiplier = match unit.trim() {
            // A plain number is MiB, as `-m 64` in QEMU and `mem_size_mib` in
            // Firecracker: nobody means 64 bytes of guest memory.
            "" => MIB,
            "B" => 1,
            "K" | "k" | "KiB" => KIB,
            "M" | "MiB" => MIB,
            "G" | "GiB" => GIB,
            "T" | "TiB" => TIB,
            other if other.chars().all(|c| c.is_ascii_alphabetic()) => {
                return Err(ParseSizeError::UnknownUnit(
                    text.to_string(),
                    other.to_string(),
                ));
            }
            _ => return Err(ParseSizeError::Malformed(text.to_string())),
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| ParseSizeError::Overflow(text.to_string()))
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly: `64MiB`, `1GiB`, `1000B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, size) in [("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)] {
            if n != 0 && n % size == 0 {
                return write!(f, "{}{unit}", n / size);
            }
        }
        write!(f, "{n}B")
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 64MiB, 1GiB or 512M")
            }

            // A plain number in the file means MiB, as on the command line.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                v.checked_mul(MIB)
                    .map(ByteSize)
                    .ok_or_else(|| E::custom(format!("`{v}` MiB is too large")))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "`{v}` is not a size: sizes are positive"
                    ))),
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: a number with a binary unit (64MiB, 1GiB, 512M, 4096B); a plain number means MiB.",
            "oneOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^[0-9]+ ?(B|K|k|KiB|M|MiB|G|GiB|T|TiB)?$" }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!("64MiB".parse::<ByteSize>().unwrap(), ByteSize(64 * MIB));
        assert_eq!("1GiB".parse::<ByteSize>().unwrap(), ByteSize(GIB));
        assert_eq!("512M".parse::<ByteSize>().unwrap(), ByteSize(512 * MIB));
        assert_eq!("4096B".parse::<ByteSize>().unwrap(), ByteSize(4096));
        // A plain number is MiB, as in QEMU and Firecracker.
        assert_eq!("64".parse::<ByteSize>().unwrap(), ByteSize(64 * MIB));
        assert_eq!("2 G".parse::<ByteSize>().unwrap(), ByteSize(2 * GIB));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(matches!(
            "64MB".parse::<ByteSize>(),
            Err(ParseSizeError::UnknownUnit(_, u)) if u == "MB"
        ));
        assert!(matches!(
            "lots".parse::<ByteSize>(),
            Err(ParseSizeError::Malformed(_))
        ));
        assert!(matches!(
            "99999999999T".parse::<ByteSize>(),
            Err(ParseSizeError::Overflow(_))
        ));
    }

    #[test]
    fn a_plain_number_in_a_file_is_mib() {
        let size: ByteSize = serde_yaml::from_str("64").unwrap();
        assert_eq!(size, ByteSize(64 * MIB));
        let size: ByteSize = serde_yaml::from_str("64B").unwrap();
        assert_eq!(size, ByteSize(64));
        assert!(serde_yaml::from_str::<ByteSize>("-1").is_err());
    }

    #[test]
    fn displays_largest_exact_unit() {
        assert_eq!(ByteSize(64 * MIB).to_string(), "64MiB");
        assert_eq!(ByteSize(1536 * MIB).to_string(), "1536MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }
}
