//! Host tests of the built-in guest's pure logic (`guest/src/logic.rs`): the
//! command line it understands, 802.1Q tagging, the disk checksum and the
//! report lines. The guest itself is `no_std` and has no test harness, so the
//! file is compiled here as it is.

extern crate alloc;

#[path = "../crates/guest/src/logic.rs"]
#[allow(dead_code)]
mod logic;

use logic::{Config, IpConfig, MmioDevice};

#[test]
fn parses_devices_addresses_and_tasks() {
    let cmdline = "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 \
        virtio_mmio.device=512@0xfeb00e00:12:3 virtio_mmio.device=0x1000@3489665024:6 \
        kvmlab.ip=0:10.0.0.1/24 kvmlab.ip=1.10:10.0.10.3/24 \
        kvmlab.ping=10.0.0.2,10.0.10.1 kvmlab.arping=10.0.0.9 kvmlab.count=5 \
        kvmlab.timeout_ms=250 kvmlab.disk-checksum kvmlab.poweroff something=else";
    let config = Config::parse(cmdline);
    assert_eq!(config.invalid, Vec::<&str>::new());
    assert_eq!(
        config.devices,
        vec![
            MmioDevice {
                base: 0xd000_0000,
                size: 4096,
                irq: 5
            },
            MmioDevice {
                base: 0xfeb0_0e00,
                size: 512,
                irq: 12
            },
            MmioDevice {
                base: 0xd000_1000,
                size: 4096,
                irq: 6
            },
        ]
    );
    assert_eq!(
        config.ips,
        vec![
            IpConfig {
                nic: 0,
                vlan: None,
                addr: [10, 0, 0, 1],
                prefix: 24
            },
            IpConfig {
                nic: 1,
                vlan: Some(10),
                addr: [10, 0, 10, 3],
                prefix: 24
            },
        ]
    );
    assert_eq!(config.ping, vec![[10, 0, 0, 2], [10, 0, 10, 1]]);
    assert_eq!(config.arping, vec![[10, 0, 0, 9]]);
    assert_eq!((config.count, config.timeout_ms), (5, 250));
    assert!(config.disk_checksum && config.poweroff);
}

#[test]
fn defaults_without_our_words() {
    let config = Config::parse("console=ttyS0 hello kvmlab.x=1");
    assert!(config.devices.is_empty() && config.ips.is_empty() && config.ping.is_empty());
    assert_eq!((config.count, config.timeout_ms), (3, 1000));
    assert!(!config.disk_checksum && !config.poweroff);
    assert!(config.invalid.is_empty());
}

#[test]
fn malformed_words_are_reported() {
    let bad = [
        "kvmlab.ip=0:10.0.0.1",
        "kvmlab.ip=0:10.0.0.256/24",
        "kvmlab.ip=0:10.0.0.1/33",
        "kvmlab.ip=0.0:10.0.0.1/24",
        "kvmlab.ip=0.4095:10.0.0.1/24",
        "kvmlab.ip=x:10.0.0.1/24",
        "kvmlab.ping=10.0.0",
        "kvmlab.ping=",
        "kvmlab.arping=1.2.3.4.5",
        "kvmlab.count=0",
        "kvmlab.count=many",
        "kvmlab.timeout_ms=0",
        "virtio_mmio.device=4K@0xd0000000",
        "virtio_mmio.device=16@0xd0000000:5",
        "kvmlab.poweroff=yes",
    ];
    let cmdline = bad.join(" ");
    let config = Config::parse(&cmdline);
    assert_eq!(config.invalid, bad.to_vec());
    assert!(config.ips.is_empty() && config.ping.is_empty() && config.devices.is_empty());
}

#[test]
fn sizes_and_numbers() {
    assert_eq!(logic::parse_size("4K"), Some(4096));
    assert_eq!(logic::parse_size("1M"), Some(1 << 20));
    assert_eq!(logic::parse_size("0x200"), Some(512));
    assert_eq!(logic::parse_size("K"), None);
    assert_eq!(logic::parse_number("0xfeb00000"), Some(0xfeb0_0000));
    assert_eq!(logic::parse_ipv4("192.168.1.254"), Some([192, 168, 1, 254]));
    assert_eq!(logic::parse_ipv4("01.2.3.4"), Some([1, 2, 3, 4]));
    assert_eq!(logic::parse_ipv4("1.2.3.+4"), None);
}

#[test]
fn subnets() {
    assert!(logic::in_subnet([10, 0, 0, 7], [10, 0, 0, 1], 24));
    assert!(!logic::in_subnet([10, 0, 1, 7], [10, 0, 0, 1], 24));
    assert!(logic::in_subnet([8, 8, 8, 8], [10, 0, 0, 1], 0));
    assert!(!logic::in_subnet([10, 0, 0, 2], [10, 0, 0, 1], 32));
}

/// An ARP-sized frame: broadcast destination, a source MAC, `ethertype`.
fn frame(ethertype: [u8; 2], payload_len: usize) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    frame.extend_from_slice(&ethertype);
    frame.extend((0..payload_len).map(|i| i as u8));
    frame
}

#[test]
fn vlan_tag_round_trip() {
    let untagged = frame([0x08, 0x06], 28);
    let mut buffer = vec![0u8; 4];
    buffer.extend_from_slice(&untagged);
    logic::tag_in_place(&mut buffer, 10);
    assert_eq!(&buffer[..12], &untagged[..12]);
    assert_eq!(&buffer[12..16], &[0x81, 0x00, 0x00, 0x0a]);
    assert_eq!(&buffer[16..], &untagged[12..]);
    assert_eq!(logic::untag(&buffer), Some((Some(10), untagged.clone())));
    // Priority bits are ignored, VID 0 is untagged, a plain frame passes as is.
    buffer[14] |= 0xe0;
    assert_eq!(logic::untag(&buffer), Some((Some(10), untagged.clone())));
    buffer[14] = 0;
    buffer[15] = 0;
    assert_eq!(logic::untag(&buffer), Some((None, untagged.clone())));
    assert_eq!(logic::untag(&untagged), Some((None, untagged.clone())));
    // Runts.
    assert_eq!(logic::untag(&untagged[..13]), None);
    assert_eq!(logic::untag(&buffer[..17]), None);
}

#[test]
fn fnv1a64_known_values() {
    assert_eq!(logic::fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(logic::fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(logic::fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    assert_eq!(logic::fnv1a64(&[0u8; 512]), fnv_reference(&[0u8; 512]));
}

/// The textbook definition, written differently (fold) as a cross-check.
fn fnv_reference(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(14_695_981_039_346_656_037, |hash, &byte| {
            (hash ^ u64::from(byte)).wrapping_mul(1_099_511_628_211)
        })
}

#[test]
fn report_lines() {
    let mut out = String::new();
    logic::write_probe_report(&mut out, "ping", [10, 0, 0, 2], 3, 3, None).unwrap();
    logic::write_probe_report(&mut out, "arping", [10, 0, 0, 9], 3, 1, None).unwrap();
    logic::write_probe_report(&mut out, "ping", [1, 2, 3, 4], 0, 0, Some("no interface")).unwrap();
    logic::write_disk_report(&mut out, 0, 2048, Ok(0xaf63_dc4c_8601_ec8c)).unwrap();
    logic::write_disk_report(&mut out, 1, 0, Err("empty disk")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            r#"kvmlab-report {"type":"ping","target":"10.0.0.2","sent":3,"received":3,"loss_pct":0}"#,
            r#"kvmlab-report {"type":"arping","target":"10.0.0.9","sent":3,"received":1,"loss_pct":66}"#,
            r#"kvmlab-report {"type":"ping","target":"1.2.3.4","sent":0,"received":0,"loss_pct":100,"error":"no interface"}"#,
            r#"kvmlab-report {"type":"disk","index":0,"sectors":2048,"fnv1a64":"0xaf63dc4c8601ec8c"}"#,
            r#"kvmlab-report {"type":"disk","index":1,"sectors":0,"error":"empty disk"}"#,
        ]
    );
    for line in lines {
        let json = line.strip_prefix("kvmlab-report ").unwrap();
        serde_json::from_str::<serde_json::Value>(json).unwrap();
    }
}

/// A CPUID with the given leaves; missing leaves read as zeros.
fn fake_cpuid(leaves: &[(u32, [u32; 4])]) -> impl Fn(u32) -> [u32; 4] + '_ {
    move |leaf| {
        leaves
            .iter()
            .find(|(l, _)| *l == leaf)
            .map_or([0; 4], |(_, regs)| *regs)
    }
}

#[test]
fn clock_rates_come_from_the_hypervisor_timing_leaf() {
    let hv = logic::CPUID1_ECX_HYPERVISOR;
    let kvmlab = [
        (1, [0x806f8, 0, hv | 1, 0]),
        (0x4000_0000, [0x4000_0010, 0x4b4d_564b, 0x564b_4d56, 0x4d]),
        (0x4000_0010, [2_446_000, 1_000_000, 0, 0]),
    ];
    assert_eq!(
        logic::clock_rates_from_cpuid(fake_cpuid(&kvmlab)),
        Some(logic::ClockRates {
            tsc_khz: 2_446_000,
            apic_bus_khz: 1_000_000
        })
    );

    // QEMU without invtsc: KVM's leaves end at 0x4000_0001.
    let qemu = [
        (1, [0x663, 0, hv, 0]),
        (0x4000_0000, [0x4000_0001, 0x4b4d_564b, 0x564b_4d56, 0x4d]),
        (0x4000_0010, [2_446_000, 1_000_000, 0, 0]),
    ];
    assert_eq!(logic::clock_rates_from_cpuid(fake_cpuid(&qemu)), None);

    // Bare metal: no hypervisor bit, the hypervisor leaves are not looked at
    // (Intel CPUs answer them with the highest basic leaf's data).
    let bare = [
        (1, [0x806f8, 0, 1, 0]),
        (0x4000_0000, [0x4000_0010, 0, 0, 0]),
        (0x4000_0010, [2_446_000, 1_000_000, 0, 0]),
    ];
    assert_eq!(logic::clock_rates_from_cpuid(fake_cpuid(&bare)), None);

    // A rate of zero means unknown.
    let unknown = [
        (1, [0, 0, hv, 0]),
        (0x4000_0000, [0x4000_0010, 0, 0, 0]),
        (0x4000_0010, [0, 1_000_000, 0, 0]),
    ];
    assert_eq!(logic::clock_rates_from_cpuid(fake_cpuid(&unknown)), None);

    // Garbage for the highest leaf (not in the hypervisor range).
    let garbage = [
        (1, [0, 0, hv, 0]),
        (0x4000_0000, [0xffff_ffff, 0, 0, 0]),
        (0x4000_0010, [2_446_000, 1_000_000, 0, 0]),
    ];
    assert_eq!(logic::clock_rates_from_cpuid(fake_cpuid(&garbage)), None);
}

#[test]
fn diagnostic_and_test_words() {
    let config = Config::parse("kvmlab.verbose kvmlab.cpuid kvmlab.test=sse kvmlab.test=halt");
    assert_eq!(config.invalid, Vec::<&str>::new());
    assert!(config.verbose && config.cpuid);
    assert_eq!(config.tests, vec!["sse", "halt"]);

    let config = Config::parse("kvmlab.verbose=1 kvmlab.cpuid=yes");
    assert_eq!(config.invalid, vec!["kvmlab.verbose=1", "kvmlab.cpuid=yes"]);

    let plain = Config::parse("console=ttyS0");
    assert!(!plain.verbose && !plain.cpuid && plain.tests.is_empty());
}

#[test]
fn cut_and_pieces_split_like_str() {
    for (text, delimiter) in [
        ("a=b=c", '='),
        ("=", '='),
        ("", '='),
        ("none", '='),
        ("10.0.0.1", '.'),
        ("1,,2,", ','),
        ("é:ü:", ':'),
    ] {
        assert_eq!(
            logic::cut(text, delimiter as u8),
            text.split_once(delimiter),
            "{text:?}"
        );
        assert_eq!(
            logic::pieces(text, delimiter as u8).collect::<Vec<_>>(),
            text.split(delimiter).collect::<Vec<_>>(),
            "{text:?}"
        );
    }
}

#[test]
#[should_panic(expected = "non-ASCII")]
fn cut_refuses_a_non_ascii_delimiter() {
    // 0xa9 is the second byte of "é": cutting there would split the character.
    let _ = logic::cut("é", 0xa9);
}
