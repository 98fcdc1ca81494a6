//! Architecture support. kvmlab runs on x86-64 hosts only.

pub mod x86_64;
