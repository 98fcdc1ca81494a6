//! The contract between kvmlab (the host) and its built-in lab guest, defined once:
//! both sides depend on this crate. `no_std` with `alloc`, so that the freestanding
//! guest links it; it depends on nothing else.
//!
//! * [`cmdline`]: the `kvmlab.*` words of the guest's kernel command line, one
//!   [`cmdline::Word`] type whose `Display` the host writes and whose
//!   [`cmdline::Word::parse`] the guest reads, and the guest's whole
//!   [`cmdline::Config`];
//! * [`READY_MARKER`]: the line the guest prints once its NICs are configured;
//! * [`report`]: the `kvmlab-report {...}` lines the guest prints, one type per
//!   report, written by the guest and parsed by the host;
//! * [`cpuid`]: the hypervisor timing leaf, through which the host hands the guest
//!   its clock rates;
//! * the guest's other pure logic, tested here on the host: [`mmio`] (the
//!   `virtio_mmio.device=` words), [`ipv4`], [`vlan`] (802.1Q tags), [`checksum`]
//!   and [`text`] (byte-loop splitting).
//!
//! The guest runs where KVM may emulate every guest instruction (see the
//! repository's ENVIRONMENT.md), so what the guest executes at boot is written with
//! byte loops rather than `core::fmt` or the generic string searchers; the host-only
//! parts (the words' `Display`, the report parser) need no such care.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod checksum;
pub mod cmdline;
pub mod cpuid;
pub mod ipv4;
pub mod mmio;
pub mod report;
pub mod text;
pub mod vlan;

/// What the built-in guest prints on its console, as a line of its own, once its
/// NICs have their addresses: the host waits for it before it calls a VM ready.
pub const READY_MARKER: &str = "kvmlab-guest: ready";
