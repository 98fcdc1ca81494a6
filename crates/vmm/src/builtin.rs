//! The built-in lab guest (`crates/guest`), built by this crate's `build.rs` and embedded here.
//! It is a static ELF at 1 MiB with a Linux 64-bit entry point and a PVH note.

/// The built-in guest's ELF image.
pub static BUILTIN_GUEST: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kvmlab-guest"));
