//! Network tests of the built-in guest, with QEMU's microvm machine as the VMM
//! (kvmlab's own virtio devices are tested elsewhere): guests on a Linux bridge
//! in a fresh network namespace ping each other and the host, the host's own
//! stack pings them, VLAN sub-interfaces on trunks isolate traffic, and a
//! guest checksums its disk's first sector.
//!
//! They need root, /dev/kvm, /dev/net/tun, `ip` (iproute2), `ping` (iputils-ping)
//! and `qemu-system-x86_64` (qemu-system-x86), and fail, not skip, without them.
//! Every wait is bounded; QEMU processes are killed and the namespace deleted
//! even when a test fails.
//!
//! QEMU runs with `-M microvm,ioapic2=off,acpi=off`: then it appends
//! `virtio_mmio.device=512@0xfeb00e00:12` (and so on) to the guest's command
//! line itself, and routes the devices to pins of the first IOAPIC, which is
//! what kvmlab does too.

mod netlab;

use netlab::{Lab, disk_report, received, report};

/// QEMU, besides the lab's basic programs.
const QEMU: &[(&str, &str)] = &[("qemu-system-x86_64", "qemu-system-x86")];

#[test]
fn two_guests_ping_each_other_and_the_host() {
    let mut lab = Lab::new("ping", QEMU);
    lab.boot_qemu(
        "kvmlab.ip=0:10.0.0.1/24 kvmlab.ping=10.0.0.2,10.0.0.254 kvmlab.arping=10.0.0.2",
        &[],
    );
    lab.boot_qemu("kvmlab.ip=0:10.0.0.2/24 kvmlab.ping=10.0.0.1", &[]);
    let reports = lab.wait_done();
    let consoles = lab.consoles();
    assert!(consoles.contains("kvmlab-guest: ready"), "{consoles}");
    // The peer may still be booting when the first probe leaves; later ones
    // must all be answered.
    for (guest, kind, target) in [
        (0, "ping", "10.0.0.2"),
        (0, "ping", "10.0.0.254"),
        (0, "arping", "10.0.0.2"),
        (1, "ping", "10.0.0.1"),
    ] {
        let (sent, got) = received(report(&reports[guest], kind, target));
        assert_eq!(sent, 3, "{consoles}");
        assert!(
            got >= 2,
            "{kind} {target} from guest {}: {got}/3\n{consoles}",
            guest + 1
        );
    }
    // The host's own stack pings the guests, which are idle (halted) now.
    assert_eq!(lab.host_ping("10.0.0.1"), 3, "{}", lab.consoles());
    assert_eq!(lab.host_ping("10.0.0.2"), 3, "{}", lab.consoles());
}

#[test]
fn vlan_subinterfaces_isolate_and_disk_checksum() {
    let mut lab = Lab::new("vlan", QEMU);
    let (disk, expected) = lab.disk_image(7);
    let drive = format!(
        "file={},if=none,id=d0,format=raw,readonly=on",
        disk.display()
    );

    // A trunk guest in VLANs 10 and 20, a VLAN-10 guest with a disk, and a
    // guest in VLAN 20 that also has an untagged address in VLAN 10's subnet.
    // QEMU 7.2's virtio-mmio is legacy (version 1) unless told otherwise; this
    // test uses version 2, as kvmlab does (the other test covers version 1).
    let modern = ["-global", "virtio-mmio.force-legacy=false"];
    lab.boot_qemu(
        "kvmlab.ip=0.10:10.0.10.1/24 kvmlab.ip=0.20:10.0.20.1/24 kvmlab.ping=10.0.10.2,10.0.20.3",
        &modern,
    );
    lab.boot_qemu(
        "kvmlab.ip=0.10:10.0.10.2/24 kvmlab.ping=10.0.10.1 kvmlab.disk-checksum",
        &[
            &modern[..],
            &["-drive", &drive, "-device", "virtio-blk-device,drive=d0"],
        ]
        .concat(),
    );
    lab.boot_qemu(
        "kvmlab.ip=0.20:10.0.20.3/24 kvmlab.ip=0:10.0.10.9/24 kvmlab.ping=10.0.20.1,10.0.10.1 kvmlab.timeout_ms=300",
        &modern,
    );
    let reports = lab.wait_done();
    let consoles = lab.consoles();
    for (guest, target) in [
        (0, "10.0.10.2"),
        (0, "10.0.20.3"),
        (1, "10.0.10.1"),
        (2, "10.0.20.1"),
    ] {
        let (_, got) = received(report(&reports[guest], "ping", target));
        assert!(
            got >= 2,
            "ping {target} from guest {}: {got}/3\n{consoles}",
            guest + 1
        );
    }
    // Untagged frames do not reach VLAN 10's sub-interfaces.
    assert_eq!(
        received(report(&reports[2], "ping", "10.0.10.1")),
        (3, 0),
        "{consoles}"
    );

    let disk = disk_report(&reports[1]).expect("disk report");
    assert_eq!(disk.index, 0, "{consoles}");
    assert_eq!(disk.sectors, 2048, "{consoles}");
    assert_eq!(disk.checksum, Ok(expected), "{consoles}");
}
