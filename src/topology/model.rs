//! The topology file, format version 1, as plain serde types.
//!
//! These types say what the file may contain; [`super::validate`] says what it must
//! mean. The JSON Schema under `schemas/` is generated from them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::size::ByteSize;

/// The only format version this kvmlab reads.
pub const FORMAT_VERSION: u32 = 1;

/// A lab: bridges, TAPs, links between bridges and virtual machines.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "kvmlab topology", extend("$id" = "https://kvmlab.dev/schemas/kvmlab.schema.json"))]
pub struct Topology {
    /// Format version of this file. Must be 1.
    pub version: u32,
    /// Name of the lab: a short DNS label (lowercase letters, digits and `-`, at most
    /// 32 characters). It names the lab's state directory and marks every host object
    /// the lab creates.
    pub name: String,
    /// Run the whole lab inside this network namespace (created by `up`, removed by
    /// `down`), so identical labs can run side by side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// Linux bridges: the lab's virtual switches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bridges: Vec<BridgeSpec>,
    /// TAP devices for programs other than kvmlab's VMs (VM NICs get their own TAPs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taps: Vec<TapSpec>,
    /// Cables between two bridges (veth pairs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkSpec>,
    /// Virtual machines, booted by kvmlab's embedded KVM engine.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vms: Vec<VmSpec>,
}

/// A Linux bridge (a virtual layer-2 switch).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BridgeSpec {
    /// Interface name of the bridge (at most 15 bytes).
    pub name: String,
    /// Run the spanning tree protocol, which breaks loops between switches.
    #[serde(default)]
    pub stp: bool,
    /// VLAN ids (1-4094) that exist on this bridge. Ports may only use these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vlans: Vec<u16>,
    /// Host-side IP address of the bridge, in CIDR form (`10.0.0.254/24`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// MTU of the bridge in bytes (68-65535). The kernel's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// A TAP device attached to a bridge, for a program other than a kvmlab VM.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TapSpec {
    /// Interface name of the TAP (at most 15 bytes).
    pub name: String,
    /// The bridge this TAP is a port of.
    pub bridge: String,
    /// Access port in this VLAN (untagged). Excludes `trunk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Tagged trunk port carrying these VLANs. Excludes `vlan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<Vec<u16>>,
}

/// A cable between two bridges: a veth pair with one end a port of each bridge.
///
/// The ends are named after the bridges they join (`sw1-sw2` on `sw1`, `sw2-sw1` on
/// `sw2`), shortened with a hash when that would exceed 15 bytes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    /// The bridge at one end.
    pub a: String,
    /// The bridge at the other end.
    pub b: String,
    /// Both ends are access ports in this VLAN. Excludes `trunk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Both ends are tagged trunk ports carrying these VLANs. Excludes `vlan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<Vec<u16>>,
}

/// A virtual machine.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Name of the VM: a short DNS label, unique in the lab.
    pub name: String,
    /// Number of virtual CPUs (1-255).
    #[serde(default = "default_vcpus")]
    pub vcpus: u32,
    /// Guest memory: `64MiB`, `1GiB`, `512M`; a plain number means MiB (`64` is
    /// 64 MiB). At least 2 MiB.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Linux kernel to boot (bzImage or vmlinux ELF), relative to this file's folder.
    /// Without a kernel the VM runs kvmlab's built-in lab guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk for the kernel, relative to this file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line (kvmlab adds what its devices need).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Text the guest prints on its console once it is ready (for Linux guests, such
    /// as `login:`). The built-in guest needs none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Disks: raw image files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<DiskSpec>,
    /// Network interfaces, each backed by a TAP on a bridge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<NicSpec>,
    /// IPv4 addresses the built-in guest pings once it is up; its console report
    /// (`kvmlab logs LAB VM`) shows what answered. Ignored by other kernels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ping: Vec<String>,
    /// Static routes: packets for each network `to` go to the router `via`, which
    /// must be on one of this VM's subnets. (The default route is a NIC's `gateway`.)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteSpec>,
    /// Make this VM a router: it forwards IPv4 between all its interfaces (VLAN
    /// sub-interfaces included), decrements the TTL and answers with ICMP errors.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forward: bool,
}

/// A static route of a VM.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// The destination network in CIDR form, host bits zero (`10.9.0.0/24`).
    pub to: String,
    /// The next hop: a router's address on one of this VM's subnets.
    pub via: String,
}

/// A VM's network interface.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NicSpec {
    /// The bridge this NIC's TAP is a port of.
    pub bridge: String,
    /// Access port in this VLAN: the guest sends and receives untagged frames.
    /// Excludes `trunk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Tagged trunk port carrying these VLANs. Excludes `vlan`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trunk: Option<Vec<u16>>,
    /// MAC address (`52:54:00:12:34:56`). Derived from the lab, VM and NIC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The guest's IP address on this NIC in CIDR form (`10.0.0.1/24`); on a trunk
    /// NIC, the address of its untagged traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// On a trunk NIC: the guest's address in each VLAN, by VLAN id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vlan_ips: BTreeMap<u16, String>,
    /// The default route, through this NIC: a router's IPv4 address on one of this
    /// NIC's subnets (`ip` or `vlan_ips`). One NIC of a VM at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
}

/// A disk backed by a raw image file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// Raw image file, relative to this file's folder.
    pub path: PathBuf,
    /// Attach the disk read-only.
    #[serde(default)]
    pub read_only: bool,
}

fn default_vcpus() -> u32 {
    1
}

fn default_memory() -> ByteSize {
    ByteSize::mib(64)
}
