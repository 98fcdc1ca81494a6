//! Errors of the engine. Each names the VM it concerns.

use std::io;
use std::path::PathBuf;

/// Exit status for errors in what the user gave (kernel file, sizes).
pub const EXIT_INPUT: u8 = 2;
/// Exit status for everything else (no KVM, the guest crashed...).
pub const EXIT_FAILURE: u8 = 1;

/// An error that stopped a VM, or kept it from starting.
#[derive(Debug, thiserror::Error)]
#[error("VM '{vm}': {kind}")]
pub struct VmError {
    /// The VM's name.
    pub vm: String,
    /// What went wrong.
    pub kind: VmErrorKind,
}

impl VmError {
    /// The process exit status that fits this error.
    pub fn exit_code(&self) -> u8 {
        match self.kind {
            VmErrorKind::ReadFile { .. }
            | VmErrorKind::BadKernel { .. }
            | VmErrorKind::MemoryTooSmall { .. }
            | VmErrorKind::InvalidConfig(_) => EXIT_INPUT,
            _ => EXIT_FAILURE,
        }
    }
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum VmErrorKind {
    /// /dev/kvm cannot be opened.
    #[error(
        "cannot open {}: {source}; kvmlab needs KVM (is the kvm module loaded, and may this user open it?)",
        path.display()
    )]
    NoKvm {
        /// The KVM device.
        path: PathBuf,
        /// Why it cannot be opened.
        source: kvm_ioctls::Error,
    },
    /// The KVM API is not the one kvmlab speaks.
    #[error("/dev/kvm speaks KVM API version {0}, kvmlab needs version 12")]
    KvmApiVersion(i32),
    /// A KVM ioctl failed.
    #[error("KVM {op} failed: {source}")]
    Kvm {
        /// What kvmlab asked KVM to do.
        op: &'static str,
        /// The error from KVM.
        source: kvm_ioctls::Error,
    },
    /// A kernel or initrd file cannot be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    ReadFile {
        /// "kernel" or "initrd".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The kernel file is not something kvmlab can boot.
    #[error("{kernel} is not a kernel kvmlab can boot: {reason}")]
    BadKernel {
        /// The kernel file, or "the built-in guest".
        kernel: String,
        /// Why.
        reason: String,
    },
    /// The VM's memory cannot hold what must be loaded.
    #[error("{} MiB of memory is too small: {what} needs at least {} MiB", memory >> 20, needed.div_ceil(1 << 20))]
    MemoryTooSmall {
        /// The VM's memory in bytes.
        memory: u64,
        /// Bytes needed.
        needed: u64,
        /// What needs them.
        what: String,
    },
    /// The configuration is invalid.
    #[error("{0}")]
    InvalidConfig(String),
    /// Setting up guest memory, boot structures or devices failed.
    #[error("setting up the VM failed: {0}")]
    Setup(String),
    /// KVM could not emulate a guest instruction.
    #[error(
        "vCPU {vcpu}: KVM cannot emulate the guest instruction at RIP {rip:#x} (bytes: {}); \
         the guest stopped\n{regs}",
        hex(bytes)
    )]
    EmulationFailure {
        /// The vCPU.
        vcpu: u8,
        /// Guest RIP.
        rip: u64,
        /// The instruction bytes at RIP, as far as known.
        bytes: Vec<u8>,
        /// Register dump.
        regs: String,
    },
    /// The guest triple-faulted (KVM_EXIT_SHUTDOWN).
    #[error("vCPU {vcpu}: triple fault: the guest crashed (KVM shutdown exit)\n{regs}")]
    TripleFault {
        /// The vCPU.
        vcpu: u8,
        /// Register dump.
        regs: String,
    },
    /// KVM reported an internal error other than an emulation failure.
    #[error("vCPU {vcpu}: KVM internal error, suberror {suberror}, data [{}]\n{regs}", data.iter().map(|d| format!("{d:#x}")).collect::<Vec<_>>().join(", "))]
    InternalError {
        /// The vCPU.
        vcpu: u8,
        /// KVM's suberror code.
        suberror: u32,
        /// KVM's extra data.
        data: Vec<u64>,
        /// Register dump.
        regs: String,
    },
    /// The vCPU could not enter the guest.
    #[error(
        "vCPU {vcpu}: KVM could not enter the guest (hardware entry failure reason {reason:#x})"
    )]
    FailEntry {
        /// The vCPU.
        vcpu: u8,
        /// Hardware failure reason.
        reason: u64,
    },
    /// KVM_RUN returned an exit kvmlab does not handle.
    #[error("vCPU {vcpu}: unexpected VM exit {exit}")]
    UnexpectedExit {
        /// The vCPU.
        vcpu: u8,
        /// The exit.
        exit: String,
    },
}

/// Formats bytes as space-separated hex.
pub fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "unknown".to_string();
    }
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_vm_and_details() {
        let err = VmError {
            vm: "pc1".into(),
            kind: VmErrorKind::EmulationFailure {
                vcpu: 0,
                rip: 0x1000,
                bytes: vec![0x0f, 0x57, 0xc0],
                regs: "RAX=0".into(),
            },
        };
        let text = err.to_string();
        assert!(
            text.starts_with("VM 'pc1': vCPU 0: KVM cannot emulate"),
            "{text}"
        );
        assert!(
            text.contains("RIP 0x1000") && text.contains("0f 57 c0"),
            "{text}"
        );
        assert_eq!(err.exit_code(), EXIT_FAILURE);

        let err = VmError {
            vm: "pc2".into(),
            kind: VmErrorKind::MemoryTooSmall {
                memory: 2 << 20,
                needed: (3 << 20) + 1,
                what: "the kernel".into(),
            },
        };
        assert_eq!(
            err.to_string(),
            "VM 'pc2': 2 MiB of memory is too small: the kernel needs at least 4 MiB"
        );
        assert_eq!(err.exit_code(), EXIT_INPUT);
    }
}
