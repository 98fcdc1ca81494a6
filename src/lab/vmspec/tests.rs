use std::path::Path;

use kvmlab_guest_proto::READY_MARKER;
use kvmlab_guest_proto::cmdline::Config;
use kvmlab_vmm::KernelSource;
use kvmlab_vmm::devices::virtio::net::vlan::VlanPolicy;

use super::*;
use crate::runner::NicVlans;

/// The serde layer only: these tests' files name kernels that do not exist.
fn parse(yaml: &str) -> Topology {
    serde_yaml::from_str(yaml).expect("test topology parses")
}

const LAB: &str = "version: 1
name: lab
bridges:
  - { name: sw1, vlans: [10, 20] }
  - { name: sw2 }
vms:
  - name: pc1
    memory: 128MiB
    vcpus: 2
    ping: [10.0.10.2, 10.0.0.9]
    nics:
      - { bridge: sw1, vlan: 10, ip: 10.0.10.1/24 }
      - { bridge: sw2, ip: 10.0.0.1/24, mac: \"52:54:00:aa:bb:cc\" }
  - name: srv
    cmdline: kvmlab.count=5
    nics:
      - bridge: sw1
        trunk: [10, 20]
        vlan_ips: { 10: 10.0.10.100/24, 20: 10.0.20.100/24 }
      - { bridge: sw1 }
";

#[test]
fn builtin_guest_gets_addresses_and_pings_on_its_command_line() {
    let t = parse(LAB);
    let vm = lab_vm(&t, "lab", 0, Path::new("/labs"), true);
    assert_eq!(
        vm.cmdline,
        "kvmlab.hostname=pc1 kvmlab.ip=0:10.0.10.1/24 kvmlab.ip=1:10.0.0.1/24 kvmlab.ping=10.0.10.2,10.0.0.9"
    );
    assert_eq!(vm.ready, READY_MARKER);
    let config = vm.vm_config();
    assert_eq!(config.memory_bytes, 128 << 20);
    assert_eq!(config.vcpus, 2);
    assert!(matches!(config.kernel, KernelSource::Builtin));
    assert_eq!(config.nets.len(), 2);
    assert_eq!(config.nets[0].tap, nic_tap_name("pc1", 0));
    assert_eq!(config.nets[0].mac, nic_mac("lab", "pc1", 0).0);
    assert_eq!(config.nets[0].vlan, VlanPolicy::Access(10));
    assert_eq!(config.nets[1].mac, [0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]);
    assert_eq!(config.nets[1].vlan, VlanPolicy::Transparent);
}

#[test]
fn trunk_and_untagged_nics_on_a_vlan_bridge() {
    let t = parse(LAB);
    let vm = lab_vm(&t, "lab", 1, Path::new("/labs"), true);
    assert_eq!(
        vm.cmdline,
        "kvmlab.count=5 kvmlab.hostname=srv kvmlab.ip=0.10:10.0.10.100/24 kvmlab.ip=0.20:10.0.20.100/24"
    );
    let config = vm.vm_config();
    assert_eq!(
        config.nets[0].vlan,
        VlanPolicy::Trunk {
            vlans: vec![10, 20],
            untagged: true
        }
    );
    assert_eq!(
        config.nets[1].vlan,
        VlanPolicy::Trunk {
            vlans: vec![],
            untagged: true
        }
    );
    // With bridge VLAN filtering the bridge enforces VLANs, not the VMM.
    let vm = lab_vm(&t, "lab", 1, Path::new("/labs"), false);
    assert!(vm.nics.iter().all(|n| n.vlans == NicVlans::Transparent));
}

#[test]
fn the_built_in_guest_reads_back_what_it_is_given() {
    let t = parse(LAB);
    let vm = lab_vm(&t, "lab", 1, Path::new("/labs"), true);
    let config = Config::parse(&vm.cmdline);
    assert!(config.invalid.is_empty(), "{:?}", config.invalid);
    assert_eq!(config.count, 5);
    let ips: Vec<_> = config
        .ips
        .iter()
        .map(|ip| (ip.nic, ip.vlan, ip.addr, ip.prefix))
        .collect();
    assert_eq!(
        ips,
        [
            (0, Some(10), [10, 0, 10, 100], 24),
            (0, Some(20), [10, 0, 20, 100], 24)
        ]
    );
    let vm = lab_vm(&t, "lab", 0, Path::new("/labs"), true);
    let config = Config::parse(&vm.cmdline);
    assert!(config.invalid.is_empty(), "{:?}", config.invalid);
    assert_eq!(config.ping, [[10, 0, 10, 2], [10, 0, 0, 9]]);
}

#[test]
fn an_address_the_built_in_guest_cannot_take_gets_no_word() {
    let t = parse(
        "version: 1
name: lab
vms:
  - name: pc1
    nics:
      - { bridge: sw1, ip: fd00::1/64 }
      - { bridge: sw1, ip: 10.0.0.1/24 }
",
    );
    let vm = lab_vm(&t, "lab", 0, Path::new("/labs"), true);
    assert_eq!(vm.cmdline, "kvmlab.hostname=pc1 kvmlab.ip=1:10.0.0.1/24");
}

#[test]
fn a_linux_guest_keeps_its_command_line_and_resolves_paths() {
    let t = parse(
        "version: 1
name: lab
vms:
  - name: web
    kernel: images/vmlinux
    initrd: images/initrd.img
    cmdline: console=ttyS0
    ready: \"login:\"
    ping: [10.0.0.1]
    disks: [{ path: images/disk.img, read_only: true }]
",
    );
    let vm = lab_vm(&t, "lab", 0, Path::new("/labs"), true);
    assert_eq!(vm.cmdline, "console=ttyS0");
    assert_eq!(vm.ready, "login:");
    let config = vm.vm_config();
    assert!(
        matches!(&config.kernel, KernelSource::File(p) if p == Path::new("/labs/images/vmlinux"))
    );
    assert_eq!(
        config.initrd.as_deref(),
        Some(Path::new("/labs/images/initrd.img"))
    );
    assert_eq!(config.disks[0].path, Path::new("/labs/images/disk.img"));
    assert!(config.disks[0].read_only);
}

#[test]
fn changes_name_what_differs() {
    let t = parse(LAB);
    let old = lab_vm(&t, "lab", 0, Path::new("/labs"), true);
    assert!(old.changes_from(&old).is_empty());
    let mut new = old.clone();
    new.memory_bytes = 256 << 20;
    new.vcpus = 1;
    assert_eq!(
        new.changes_from(&old),
        vec!["memory 128MiB -> 256MiB", "vcpus 2 -> 1"]
    );
}
