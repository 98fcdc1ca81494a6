//! The data path of a lab with kvmlab's own engine: built-in guests on virtio-net
//! NICs over TAPs on a Linux bridge ping each other and the host, the host's own
//! stack pings them, VLANs are enforced at the NICs (the bridge here cannot filter
//! them) and seen tagged on the bridge, and a guest checksums its virtio-blk disk.
//!
//! Root, /dev/kvm, /dev/net/tun, iproute2, iputils-ping and tcpdump (CI installs
//! them); every wait is bounded and the namespace is removed even on failure.

mod netlab;

use std::process::{Child, Command, Stdio};

use netlab::{Lab, disk_report, received, report};

const TCPDUMP: &[(&str, &str)] = &[("tcpdump", "tcpdump")];

/// Probes wait long enough for a peer that is still booting: smoltcp holds the
/// first echo request until ARP resolves, so nothing is lost to boot order.
const PATIENT: &str = "kvmlab.timeout_ms=20000";

#[test]
fn two_vms_ping_each_other_and_the_host_pings_them() {
    let mut lab = Lab::new("kvm-ping", &[]);
    lab.boot_kvmlab(
        &format!("kvmlab.ip=0:10.0.0.1/24 kvmlab.ping=10.0.0.2,10.0.0.254 kvmlab.arping=10.0.0.2 {PATIENT}"),
        "",
        &[],
    );
    lab.boot_kvmlab(
        &format!("kvmlab.ip=0:10.0.0.2/24 kvmlab.ping=10.0.0.1 {PATIENT}"),
        "",
        &[],
    );
    let reports = lab.wait_done();
    let consoles = lab.consoles();
    for (guest, kind, target) in [
        (0, "ping", "10.0.0.2"),
        (0, "ping", "10.0.0.254"),
        (0, "arping", "10.0.0.2"),
        (1, "ping", "10.0.0.1"),
    ] {
        let r = report(&reports[guest], kind, target);
        assert_eq!(
            received(r),
            (3, 3),
            "{kind} {target} from guest {}: {r}\n{consoles}",
            guest + 1
        );
        assert_eq!(r.loss_pct(), 0, "{consoles}");
    }
    // The host's own TCP/IP stack, an independent implementation, checks our frames.
    assert_eq!(lab.host_ping("10.0.0.1"), 3, "{}", lab.consoles());
    assert_eq!(lab.host_ping("10.0.0.2"), 3, "{}", lab.consoles());
}

/// tcpdump on the lab's bridge, writing to a file until stopped.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
    ns: String,
}

impl Capture {
    fn start(lab: &Lab) -> Capture {
        let file = lab.dir.join("br0.pcap");
        let child = Command::new("ip")
            .args([
                "netns", "exec", &lab.ns, "timeout", "120", "tcpdump", "-i", "br0", "-U", "-w",
            ])
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tcpdump");
        // tcpdump needs a moment to open the interface.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !file.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Capture {
            child,
            file,
            ns: lab.ns.clone(),
        }
    }

    /// Stops the capture; returns tcpdump's one-line-per-frame decoding, with
    /// link-level headers (`-e`), so 802.1Q tags show as `vlan N`.
    fn stop(mut self) -> String {
        // SAFETY: kill only sends a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let _ = self.child.wait();
        let out = Command::new("timeout")
            .args([
                "30", "ip", "netns", "exec", &self.ns, "tcpdump", "-e", "-n", "-r",
            ])
            .arg(&self.file)
            .output()
            .expect("read the capture");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[test]
fn vlans_isolate_at_the_nics_and_show_tagged_on_the_bridge() {
    let mut lab = Lab::new("kvm-vlan", TCPDUMP);
    let capture = Capture::start(&lab);
    let quick = "kvmlab.timeout_ms=1500";
    // Guest 1 and 2 in VLAN 10, guest 3 in VLAN 20, guest 4 in VLAN 20 with an
    // address of VLAN 10's subnet, guest 5 a trunk of both VLANs.
    lab.boot_kvmlab(
        &format!("kvmlab.ip=0:10.0.10.1/24 kvmlab.ping=10.0.10.2 {PATIENT}"),
        "vlan=10",
        &[],
    );
    lab.boot_kvmlab("kvmlab.ip=0:10.0.10.2/24", "vlan=10", &[]);
    lab.boot_kvmlab("kvmlab.ip=0:10.0.20.3/24", "vlan=20", &[]);
    // Guest 4 powers off when done, so its VMM saves its statistics.
    let stats = lab.dir.join("guest4-stats.json");
    let stats_arg = stats.display().to_string();
    lab.boot_kvmlab(
        &format!(
            "kvmlab.ip=0:10.0.10.4/24 kvmlab.ping=10.0.10.1,10.0.10.2 {quick} kvmlab.poweroff"
        ),
        "vlan=20",
        &["--stats", &stats_arg],
    );
    lab.boot_kvmlab(
        &format!("kvmlab.ip=0.10:10.0.10.100/24 kvmlab.ip=0.20:10.0.20.100/24 kvmlab.ping=10.0.10.1,10.0.20.3 {PATIENT}"),
        "trunk=10:20",
        &[],
    );
    let reports = lab.wait_done();
    let consoles = lab.consoles();
    let frames = capture.stop();

    // Same VLAN: every probe answered; the trunk reaches both VLANs.
    for (guest, target) in [(0, "10.0.10.2"), (4, "10.0.10.1"), (4, "10.0.20.3")] {
        let r = report(&reports[guest], "ping", target);
        assert_eq!(
            received(r),
            (3, 3),
            "ping {target} from guest {}: {r}\n{consoles}",
            guest + 1
        );
    }
    // Across VLANs: nothing, although guest 4 shares VLAN 10's subnet.
    for target in ["10.0.10.1", "10.0.10.2"] {
        let r = report(&reports[3], "ping", target);
        assert_eq!(
            received(r),
            (3, 0),
            "VLAN 20 reached {target}: {r}\n{consoles}"
        );
    }
    // On the bridge, every guest frame carries its VLAN's tag: access NICs tag
    // what their guest sends, the trunk guest tags its own frames.
    let arp_or_ip = |line: &&str| line.contains("ethertype ARP") || line.contains("ethertype IPv4");
    let tagged = |vlan: u16| {
        frames
            .lines()
            .filter(arp_or_ip)
            .filter(|l| {
                l.contains("ethertype 802.1Q (0x8100), length")
                    && l.contains(&format!("vlan {vlan},"))
            })
            .count()
    };
    assert!(tagged(10) > 0, "no VLAN 10 frames on the bridge:\n{frames}");
    assert!(tagged(20) > 0, "no VLAN 20 frames on the bridge:\n{frames}");
    let untagged: Vec<&str> = frames
        .lines()
        .filter(arp_or_ip)
        .filter(|l| !l.contains("802.1Q") && (l.contains("10.0.10.") || l.contains("10.0.20.")))
        .collect();
    assert!(
        untagged.is_empty(),
        "untagged guest frames on the bridge:\n{}",
        untagged.join("\n")
    );
}

#[test]
fn guest_checksums_its_disk() {
    let mut lab = Lab::new("kvm-disk", &[]);
    let (disk, expected) = lab.disk_image(13);
    let disk_arg = format!("{},ro", disk.display());
    lab.boot_kvmlab(
        "kvmlab.ip=0:10.0.0.1/24 kvmlab.disk-checksum",
        "",
        &["--disk", &disk_arg],
    );
    let reports = lab.wait_done();
    let consoles = lab.consoles();
    let r = disk_report(&reports[0]).expect("a disk report");
    assert_eq!(r.sectors, 2048, "{consoles}");
    assert_eq!(r.checksum, Ok(expected), "{consoles}");
}
