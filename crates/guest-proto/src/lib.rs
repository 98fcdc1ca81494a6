//! The contract between kvmlab (the host) and its built-in lab guest, defined once:
//! both sides depend on this crate. `no_std` with `alloc`, so that the freestanding
//! guest links it.

#![cfg_attr(not(test), no_std)]

extern crate alloc;
