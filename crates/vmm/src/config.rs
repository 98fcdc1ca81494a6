//! The plain description of a VM that the engine boots. It knows nothing of
//! topologies: the CLI (`vm run`) or the lab reconciler fills it in.

use std::io::{Read, Write};
use std::path::PathBuf;

/// The KVM device node.
pub const DEFAULT_KVM_DEVICE: &str = "/dev/kvm";
use crate::devices::virtio::block::BlockConfig;
use crate::devices::virtio::net::NetConfig;

/// Where the kernel comes from.
#[derive(Debug, Clone)]
pub enum KernelSource {
    /// A file: a bzImage or an ELF vmlinux.
    File(PathBuf),
    /// The built-in lab guest, embedded in kvmlab.
    Builtin,
}

/// How to boot a bzImage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BzImageMode {
    /// Decompress the payload (the vmlinux ELF) on the host and boot that: much
    /// faster under emulated KVM, and skips in-guest decompression everywhere.
    /// Falls back to `Direct` when the payload's compression is not supported.
    #[default]
    UnpackPayload,
    /// Load the bzImage as it is and enter its 64-bit entry point.
    Direct,
}

/// Everything the engine needs to build and boot one VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The VM's name, used in every error message.
    pub name: String,
    /// Guest RAM in bytes (a multiple of 4 KiB).
    pub memory_bytes: u64,
    /// Number of vCPUs (at least 1).
    pub vcpus: u8,
    /// The kernel.
    pub kernel: KernelSource,
    /// How to boot a bzImage kernel.
    pub bzimage_mode: BzImageMode,
    /// Optional initrd.
    pub initrd: Option<PathBuf>,
    /// Kernel command line (kvmlab appends the words that announce its devices).
    pub cmdline: String,
    /// The KVM device (`/dev/kvm`).
    pub kvm_device: PathBuf,
    /// Network cards, each backed by an existing TAP.
    pub nets: Vec<NetConfig>,
    /// Disks, each backed by a raw image file.
    pub disks: Vec<BlockConfig>,
}

impl VmConfig {
    /// A VM with the built-in guest, 64 MiB and one vCPU.
    pub fn new(name: impl Into<String>) -> Self {
        VmConfig {
            name: name.into(),
            memory_bytes: 64 << 20,
            vcpus: 1,
            kernel: KernelSource::Builtin,
            bzimage_mode: BzImageMode::default(),
            initrd: None,
            cmdline: String::new(),
            kvm_device: PathBuf::from(DEFAULT_KVM_DEVICE),
            nets: Vec::new(),
            disks: Vec::new(),
        }
    }
}

/// The serial console's ends, chosen by the caller.
pub struct ConsoleIo {
    /// Where the guest's console output goes (stdout, a log file...).
    pub output: Box<dyn Write + Send>,
    /// What the guest reads from its console, if anything.
    pub input: Option<Box<dyn Read + Send>>,
}

impl ConsoleIo {
    /// Output to stdout, flushed at every byte; no input.
    pub fn stdout() -> Self {
        ConsoleIo {
            output: Box::new(crate::devices::legacy::serial::Unbuffered(std::io::stdout())),
            input: None,
        }
    }
}
