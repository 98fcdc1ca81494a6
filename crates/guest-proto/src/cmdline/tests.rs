use super::*;

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
        "kvmlab.hostname=",
        "kvmlab.hostname=a/b",
        "kvmlab.route=10.9.0.1/24@10.0.0.9",
        "kvmlab.route=10.9.0.0/24",
        "kvmlab.route=10.9.0.0/33@10.0.0.9",
        "kvmlab.forward=1",
    ];
    let cmdline = bad.join(" ");
    let config = Config::parse(&cmdline);
    assert_eq!(config.invalid, bad.to_vec());
    assert!(config.ips.is_empty() && config.ping.is_empty() && config.devices.is_empty());
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
fn what_a_malformed_word_still_gives() {
    // A flag with a value still counts; the good addresses of a list are kept;
    // empty items of a list are skipped; a range error keeps the default.
    let config = Config::parse(
        "kvmlab.poweroff=yes kvmlab.disk-checksum=1 kvmlab.ping=10.0.0.1,bad,10.0.0.2 \
         kvmlab.arping=,10.0.0.9,, kvmlab.count=1001 kvmlab.timeout_ms=3600001",
    );
    assert!(config.poweroff && config.disk_checksum);
    assert_eq!(config.ping, vec![[10, 0, 0, 1], [10, 0, 0, 2]]);
    assert_eq!(config.arping, vec![[10, 0, 0, 9]]);
    assert_eq!((config.count, config.timeout_ms), (3, 1000));
    assert_eq!(
        config.invalid,
        vec![
            "kvmlab.poweroff=yes",
            "kvmlab.disk-checksum=1",
            "kvmlab.ping=10.0.0.1,bad,10.0.0.2",
            "kvmlab.count=1001",
            "kvmlab.timeout_ms=3600001",
        ]
    );
    assert_eq!(
        Word::parse("kvmlab.ping=10.0.0.1,bad"),
        Parsed::Malformed(Some(Word::Ping(vec![[10, 0, 0, 1]])))
    );
    assert_eq!(Word::parse("kvmlab.ping=bad"), Parsed::Malformed(None));
    assert_eq!(
        Word::parse("kvmlab.ping=,"),
        Parsed::Word(Word::Ping(vec![]))
    );
    assert_eq!(Word::parse("kvmlab.x=1"), Parsed::Foreign);
    assert_eq!(Word::parse("console=ttyS0"), Parsed::Foreign);
    assert_eq!(Word::parse("kvmlab.ip"), Parsed::Malformed(None));
}

#[test]
fn words_given_twice() {
    // Lists add up, the last count wins, a device base counts once.
    let config = Config::parse(
        "kvmlab.ping=10.0.0.1 kvmlab.ping=10.0.0.2,10.0.0.3 kvmlab.count=2 kvmlab.count=7 \
         virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=512@0xd0000000:9",
    );
    assert_eq!(
        config.ping,
        vec![[10, 0, 0, 1], [10, 0, 0, 2], [10, 0, 0, 3]]
    );
    assert_eq!(config.count, 7);
    assert_eq!(
        config.devices,
        vec![MmioDevice {
            base: 0xd000_0000,
            size: 4096,
            irq: 5
        }]
    );
}

/// Which variant a word is; exhaustive (no `_`), so that a new variant fails to
/// compile here until [`every_word`] covers it.
fn variant(word: &Word<'_>) -> usize {
    match word {
        Word::MmioDevice(_) => 0,
        Word::Ip(_) => 1,
        Word::Ping(_) => 2,
        Word::Arping(_) => 3,
        Word::Count(_) => 4,
        Word::TimeoutMs(_) => 5,
        Word::DiskChecksum => 6,
        Word::Poweroff => 7,
        Word::Verbose => 8,
        Word::Cpuid => 9,
        Word::Test(_) => 10,
        Word::Hostname(_) => 11,
        Word::Route(_) => 12,
        Word::Forward => 13,
    }
}
const VARIANTS: usize = 14;

/// Words of every variant, with the edges of each range.
fn every_word() -> Vec<Word<'static>> {
    let mut words = vec![
        Word::MmioDevice(MmioDevice {
            base: 0xd000_0000,
            size: 4096,
            irq: 5,
        }),
        Word::MmioDevice(MmioDevice {
            base: 0xfeb0_0e00,
            size: 512,
            irq: 12,
        }),
        Word::MmioDevice(MmioDevice {
            base: 0x1_0000_0000,
            size: 0x100,
            irq: 0,
        }),
        Word::Ping(vec![[10, 0, 0, 2]]),
        Word::Ping(vec![[10, 0, 10, 2], [10, 0, 0, 9], [255, 255, 255, 255]]),
        Word::Arping(vec![[0, 0, 0, 0]]),
        Word::Arping(vec![[192, 168, 1, 254], [10, 0, 0, 1]]),
        Word::Count(1),
        Word::Count(DEFAULT_COUNT),
        Word::Count(MAX_COUNT),
        Word::TimeoutMs(1),
        Word::TimeoutMs(DEFAULT_TIMEOUT_MS),
        Word::TimeoutMs(MAX_TIMEOUT_MS),
        Word::DiskChecksum,
        Word::Poweroff,
        Word::Verbose,
        Word::Cpuid,
        Word::Test("triple-fault"),
        Word::Test("sse"),
        Word::Test("halt"),
        Word::Test(""),
        Word::Test("a=b"),
        Word::Hostname("pc1"),
        Word::Hostname("r1.lab-a_2"),
        Word::Route(RouteConfig {
            net: [0, 0, 0, 0],
            prefix: 0,
            via: [10, 0, 0, 254],
        }),
        Word::Route(RouteConfig {
            net: [10, 9, 0, 0],
            prefix: 24,
            via: [10, 0, 0, 9],
        }),
        Word::Route(RouteConfig {
            net: [192, 168, 7, 1],
            prefix: 32,
            via: [192, 168, 1, 1],
        }),
        Word::Forward,
    ];
    for nic in [0, 1, 9, 10, 4096] {
        for vlan in [None, Some(1), Some(10), Some(4094)] {
            for (addr, prefix) in [
                ([10, 0, 0, 1], 24),
                ([0, 0, 0, 0], 0),
                ([255, 255, 255, 255], 32),
                ([172, 16, 5, 40], 12),
            ] {
                words.push(Word::Ip(IpConfig {
                    nic,
                    vlan,
                    addr,
                    prefix,
                }));
            }
        }
    }
    words
}

#[test]
fn every_word_the_host_writes_the_guest_reads_back_unchanged() {
    let words = every_word();
    let mut covered = [false; VARIANTS];
    for word in &words {
        covered[variant(word)] = true;
        let text = word.to_string();
        assert!(
            !text.contains(char::is_whitespace),
            "one word, no blanks: {text:?}"
        );
        assert_eq!(Word::parse(&text), Parsed::Word(word.clone()), "{text}");
    }
    assert_eq!(covered, [true; VARIANTS], "a variant without an example");

    // A whole command line of them, among foreign words, reads back as well.
    let line = words
        .iter()
        .map(ToString::to_string)
        .chain(["console=ttyS0".to_string(), "kvmlab.later=1".to_string()])
        .collect::<Vec<_>>()
        .join(" ");
    let config = Config::parse(&line);
    assert_eq!(config.invalid, Vec::<&str>::new());
    let ips: Vec<IpConfig> = words
        .iter()
        .filter_map(|w| match w {
            Word::Ip(ip) => Some(*ip),
            _ => None,
        })
        .collect();
    assert_eq!(config.ips, ips);
    assert_eq!(config.devices.len(), 3);
    assert_eq!(config.ping.len(), 4);
    assert_eq!(config.arping.len(), 3);
    assert_eq!(
        (config.count, config.timeout_ms),
        (MAX_COUNT, MAX_TIMEOUT_MS)
    );
    assert!(config.disk_checksum && config.poweroff && config.verbose && config.cpuid);
    assert_eq!(config.tests, vec!["triple-fault", "sse", "halt", "", "a=b"]);
}

#[test]
fn every_vlan_and_prefix_round_trips() {
    for vlan in 1..=4094 {
        for prefix in [0, 8, 31, 32] {
            let word = Word::Ip(IpConfig {
                nic: 3,
                vlan: Some(vlan),
                addr: [10, (vlan >> 8) as u8, vlan as u8, 1],
                prefix,
            });
            assert_eq!(Word::parse(&word.to_string()), Parsed::Word(word));
        }
    }
    for prefix in 0..=32 {
        let word = Word::Ip(IpConfig {
            nic: 0,
            vlan: None,
            addr: [10, 0, 0, prefix],
            prefix,
        });
        assert_eq!(Word::parse(&word.to_string()), Parsed::Word(word));
    }
}

#[test]
fn the_words_as_written() {
    // What the host has always written, byte for byte.
    let ip = |nic, vlan, addr, prefix| {
        Word::Ip(IpConfig {
            nic,
            vlan,
            addr,
            prefix,
        })
        .to_string()
    };
    assert_eq!(ip(0, None, [10, 0, 10, 1], 24), "kvmlab.ip=0:10.0.10.1/24");
    assert_eq!(
        ip(0, Some(10), [10, 0, 10, 100], 24),
        "kvmlab.ip=0.10:10.0.10.100/24"
    );
    assert_eq!(
        Word::Ping(vec![[10, 0, 10, 2], [10, 0, 0, 9]]).to_string(),
        "kvmlab.ping=10.0.10.2,10.0.0.9"
    );
    assert_eq!(
        Word::Arping(vec![[10, 0, 0, 2]]).to_string(),
        "kvmlab.arping=10.0.0.2"
    );
    assert_eq!(Word::Count(5).to_string(), "kvmlab.count=5");
    assert_eq!(
        Word::TimeoutMs(20000).to_string(),
        "kvmlab.timeout_ms=20000"
    );
    assert_eq!(Word::DiskChecksum.to_string(), "kvmlab.disk-checksum");
    assert_eq!(Word::Poweroff.to_string(), "kvmlab.poweroff");
    assert_eq!(Word::Verbose.to_string(), "kvmlab.verbose");
    assert_eq!(Word::Cpuid.to_string(), "kvmlab.cpuid");
    assert_eq!(Word::Test("halt").to_string(), "kvmlab.test=halt");
    assert_eq!(
        Word::MmioDevice(MmioDevice {
            base: 0xd000_1000,
            size: 4096,
            irq: 6
        })
        .to_string(),
        "virtio_mmio.device=4K@0xd0001000:6"
    );
}
