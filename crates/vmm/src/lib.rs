//! The embedded KVM engine.
//!
//! It boots one VM from a plain [`VmConfig`] (memory, vCPUs, kernel, initrd,
//! command line) and knows nothing about topologies. Layout follows
//! Firecracker's: `arch` (boot protocol structures and initial CPU state),
//! `vstate` (the KVM VM and vCPUs), `devices` (buses and device models),
//! `loader` (kernel images), `builder` (assembling a VM) and `runtime` (running
//! it). [`run_vm`] is the one-call entry point.

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

pub use builtin::BUILTIN_GUEST;
pub use config::{BzImageMode, ConsoleIo, KernelSource, VmConfig};
pub use error::{VmError, VmErrorKind};
pub use runtime::{StatsHandle, StopHandle, VmRun, Vmm};
pub use stats::ExitStats;
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
