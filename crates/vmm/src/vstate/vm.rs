//! The KVM VM: guest memory, in-kernel irqchip and PIT.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use kvm_bindings::{
    KVM_CAP_EXIT_ON_EMULATION_FAILURE, KVM_PIT_SPEAKER_DUMMY, kvm_enable_cap, kvm_pit_config,
    kvm_userspace_memory_region,
};
use std::sync::Arc;

use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::arch::x86_64::layout::{self, KVM_TSS_ADDRESS};
use crate::error::VmErrorKind;

/// A KVM VM with its memory.
pub struct Vm {
    /// The /dev/kvm handle.
    pub kvm: Kvm,
    /// The VM file descriptor. Devices that reconfigure KVM at run time (the
    /// serial console's write buffering) hold it weakly, so that dropping the
    /// `Vm` closes it.
    pub fd: Arc<VmFd>,
    /// Guest RAM.
    pub memory: GuestMemoryMmap,
}

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmErrorKind {
    move |source| VmErrorKind::Kvm { op, source }
}

impl Vm {
    /// Opens the KVM device, creates the VM with `mem_size` bytes of RAM, the in-kernel
    /// irqchip and PIT, and asks KVM to exit on emulation failures.
    pub fn new(kvm_device: &Path, mem_size: u64) -> Result<Vm, VmErrorKind> {
        let no_kvm = |source| VmErrorKind::NoKvm {
            path: kvm_device.to_path_buf(),
            source,
        };
        let c_path = CString::new(kvm_device.as_os_str().as_bytes())
            .map_err(|_| no_kvm(kvm_ioctls::Error::new(libc::EINVAL)))?;
        let kvm = Kvm::new_with_path(&c_path).map_err(no_kvm)?;
        let version = kvm.get_api_version();
        if version != 12 {
            return Err(VmErrorKind::KvmApiVersion(version));
        }
        let fd = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;

        let ranges: Vec<(GuestAddress, usize)> = layout::ram_ranges(mem_size)
            .into_iter()
            .map(|(start, len)| (GuestAddress(start), len as usize))
            .collect();
        let memory = GuestMemoryMmap::from_ranges(&ranges).map_err(|e| {
            VmErrorKind::Setup(format!(
                "cannot allocate {} MiB of guest memory: {e}",
                mem_size >> 20
            ))
        })?;
        for (slot, region) in memory.iter().enumerate() {
            let region_desc = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: region.as_ptr() as u64,
            };
            // SAFETY: the region is a live mmap owned by `memory`, which the Vm
            // keeps (and so keeps mapped) for as long as the VM fd exists.
            unsafe { fd.set_user_memory_region(region_desc) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }

        fd.set_tss_address(KVM_TSS_ADDRESS as usize)
            .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
        fd.create_irq_chip()
            .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        fd.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
        let fd = Arc::new(fd);

        if fd.check_extension_raw(u64::from(KVM_CAP_EXIT_ON_EMULATION_FAILURE)) > 0 {
            let cap = kvm_enable_cap {
                cap: KVM_CAP_EXIT_ON_EMULATION_FAILURE,
                args: [1, 0, 0, 0],
                ..Default::default()
            };
            fd.enable_cap(&cap)
                .map_err(kvm_err("KVM_ENABLE_CAP(EXIT_ON_EMULATION_FAILURE)"))?;
        }
        Ok(Vm { kvm, fd, memory })
    }
}
