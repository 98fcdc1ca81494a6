//! The resolved, serialisable form of one VM of a lab: what `up` writes to the VM's
//! `vm.json`, what the VM process reads back and boots, and what the next `up`
//! compares with the file. [`LabVm::vm_config`] turns it into the engine's
//! [`VmConfig`]; mapping a topology to it is the lab's business (`lab::vmspec`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use kvmlab_vmm::{BlockConfig, KernelSource, NetConfig, VlanPolicy, VmConfig};

use crate::topology::ByteSize;
use crate::topology::derive::MacAddr;

/// The VLANs a NIC belongs to, as the VMM enforces them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NicVlans {
    /// Every frame passes (a bridge without VLANs, or VLANs enforced by the bridge).
    Transparent,
    /// Access port in this VLAN.
    Access(u16),
    /// Trunk carrying these VLANs tagged, and untagged frames.
    Trunk(Vec<u16>),
}

impl NicVlans {
    fn policy(&self) -> VlanPolicy {
        match self {
            NicVlans::Transparent => VlanPolicy::Transparent,
            NicVlans::Access(id) => VlanPolicy::Access(*id),
            NicVlans::Trunk(vlans) => VlanPolicy::Trunk {
                vlans: vlans.clone(),
                untagged: true,
            },
        }
    }

    /// The VLAN ids, for people.
    pub fn describe(&self) -> String {
        match self {
            NicVlans::Transparent => "-".to_string(),
            NicVlans::Access(id) => format!("access {id}"),
            NicVlans::Trunk(v) if v.is_empty() => "untagged only".to_string(),
            NicVlans::Trunk(v) => {
                let ids: Vec<String> = v.iter().map(u16::to_string).collect();
                format!("trunk {}", ids.join(","))
            }
        }
    }
}

/// One NIC of a lab VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabNic {
    /// Its TAP (created by the network part of `up`).
    pub tap: String,
    /// Its MAC address.
    pub mac: String,
    /// The bridge the TAP is a port of.
    pub bridge: String,
    /// VLAN membership enforced by the VMM.
    pub vlans: NicVlans,
}

/// One disk of a lab VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabDisk {
    /// Absolute path of the raw image.
    pub path: PathBuf,
    /// Attached read-only.
    pub read_only: bool,
}

/// A lab's VM, with every path resolved and every derived value filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabVm {
    /// The VM's name.
    pub name: String,
    /// Guest memory in bytes.
    pub memory_bytes: u64,
    /// vCPUs.
    pub vcpus: u8,
    /// The kernel; `None` for the built-in guest.
    pub kernel: Option<PathBuf>,
    /// The initrd.
    pub initrd: Option<PathBuf>,
    /// The whole command line the guest gets (user words, then kvmlab's).
    pub cmdline: String,
    /// What the guest prints on its console once it is ready.
    pub ready: String,
    /// NICs in order.
    pub nics: Vec<LabNic>,
    /// Disks in order.
    pub disks: Vec<LabDisk>,
}

/// Renders a size as people write it in the file (`64MiB`).
pub fn show_size(bytes: u64) -> String {
    ByteSize(bytes).to_string()
}

impl LabVm {
    /// The engine's configuration of this VM.
    pub fn vm_config(&self) -> VmConfig {
        let mut config = VmConfig::new(self.name.clone());
        config.memory_bytes = self.memory_bytes;
        config.vcpus = self.vcpus;
        config.kernel = self
            .kernel
            .clone()
            .map_or(KernelSource::Builtin, KernelSource::File);
        config.initrd = self.initrd.clone();
        config.cmdline = self.cmdline.clone();
        config.nets = self
            .nics
            .iter()
            .map(|nic| NetConfig {
                tap: nic.tap.clone(),
                mac: MacAddr::parse(&nic.mac).map_or([0x52, 0x54, 0, 0, 0, 1], |m| m.0),
                vlan: nic.vlans.policy(),
            })
            .collect();
        config.disks = self
            .disks
            .iter()
            .map(|d| BlockConfig {
                path: d.path.clone(),
                read_only: d.read_only,
            })
            .collect();
        config
    }

    /// Why a VM that runs as `old` must restart to become `self`: one phrase per
    /// changed setting (`memory 64MiB -> 128MiB`); empty when nothing changed.
    pub fn changes_from(&self, old: &LabVm) -> Vec<String> {
        let mut why = Vec::new();
        if old.memory_bytes != self.memory_bytes {
            why.push(format!(
                "memory {} -> {}",
                show_size(old.memory_bytes),
                show_size(self.memory_bytes)
            ));
        }
        if old.vcpus != self.vcpus {
            why.push(format!("vcpus {} -> {}", old.vcpus, self.vcpus));
        }
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or("built-in".to_string(), |p| p.display().to_string())
        };
        if old.kernel != self.kernel {
            why.push(format!(
                "kernel {} -> {}",
                path(&old.kernel),
                path(&self.kernel)
            ));
        }
        if old.initrd != self.initrd {
            why.push("initrd changed".to_string());
        }
        if old.cmdline != self.cmdline {
            why.push("command line changed".to_string());
        }
        if old.nics != self.nics {
            why.push("NICs changed".to_string());
        }
        if old.disks != self.disks {
            why.push("disks changed".to_string());
        }
        if old.ready != self.ready && why.is_empty() {
            why.push("ready marker changed".to_string());
        }
        why
    }
}
