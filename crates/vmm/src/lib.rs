//! kvmlab's embedded KVM engine: it takes a plain [`VmConfig`] (name, memory,
//! vCPUs, kernel, initrd, command line, disks as raw image files, NICs as the
//! names of existing TAPs) and builds and runs that one VM on the rust-vmm crates.
//!
//! It knows nothing of topologies, netlink, network namespaces or the CLI: the
//! kvmlab crate turns a lab into `VmConfig`s, makes the TAPs, and calls in here.
//! Dependencies point one way, from kvmlab to the engine (see README.md).
//!
//! # The face
//!
//! The rest of kvmlab is meant to use the engine through the names re-exported
//! here, rather than through the module paths below:
//!
//! - configuring a VM: [`VmConfig`], [`KernelSource`], [`BzImageMode`],
//!   [`NetConfig`], [`VlanPolicy`], [`BlockConfig`], [`ConsoleIo`],
//!   [`DEFAULT_KVM_DEVICE`], [`BUILTIN_GUEST`];
//! - running it: [`run_vm`] (build and run in one call), or [`build`] then
//!   [`Vmm::run`], with [`StopHandle`] and [`StatsHandle`] to stop it or read its
//!   statistics from another thread;
//! - the outcome: [`VmRun`], [`StopReason`], [`ExitStats`] (with [`unix_ms`] for
//!   its timestamps), [`VmError`], [`VmErrorKind`] and [`EXIT_INPUT`], the exit
//!   status for errors in what the user gave.
//!
//! # Modules
//!
//! Layout follows Firecracker's: `arch` (boot protocol structures and initial
//! CPU state), `vstate` (the KVM VM and vCPUs), `devices` (buses and device
//! models), `loader` (kernel images), `builder` (assembling a VM) and `runtime`
//! (running it). They stay public for tests and benchmarks.

pub mod arch;
pub mod builder;
pub mod builtin;
pub mod config;
pub mod devices;
pub mod error;
pub mod loader;
pub mod resident;
pub mod runtime;
pub mod stats;
pub mod vstate;

pub use builder::build;
pub use builtin::BUILTIN_GUEST;
pub use config::{BzImageMode, ConsoleIo, DEFAULT_KVM_DEVICE, KernelSource, VmConfig};
pub use devices::virtio::block::BlockConfig;
pub use devices::virtio::net::NetConfig;
pub use devices::virtio::net::vlan::VlanPolicy;
pub use error::{EXIT_INPUT, VmError, VmErrorKind};
pub use runtime::{StatsHandle, StopHandle, VmRun, Vmm};
pub use stats::{ExitStats, unix_ms};
pub use vstate::StopReason;

use std::time::Duration;

/// Builds and runs a VM until it stops or `timeout` passes. A VM that cannot
/// be built yields `Err`; one that ran yields its [`VmRun`] (whose `result`
/// may still be an error, such as a triple fault).
pub fn run_vm(
    config: &VmConfig,
    console: ConsoleIo,
    timeout: Option<Duration>,
) -> Result<VmRun, VmError> {
    Ok(builder::build(config, console)?.run(timeout))
}
