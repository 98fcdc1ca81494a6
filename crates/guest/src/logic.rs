//! The guest's pure logic: the kernel command line it understands, the clock
//! rates a hypervisor announces in CPUID, 802.1Q tags, the disk checksum and the
//! report lines.
//!
//! Uses only `core` and `alloc`, so that kvmlab's host tests can compile this
//! file as it is (`tests/guest_logic.rs` includes it with `#[path]`).

use alloc::vec::Vec;
use core::fmt;

/// An IPv4 address as its four octets.
pub type Ipv4 = [u8; 4];

/// Probes per target when `kvmlab.count` is not given.
pub const DEFAULT_COUNT: u32 = 3;
/// Wait for each probe's answer when `kvmlab.timeout_ms` is not given.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
/// Most probes per target we accept (bounds the run time of a guest).
pub const MAX_COUNT: u32 = 1000;
/// TPID of an 802.1Q tag.
pub const TPID_8021Q: u16 = 0x8100;

/// CPUID leaf 1 ECX bit 31: running under a hypervisor (whose leaves start at
/// [`HYPERVISOR_BASE`]).
pub const CPUID1_ECX_HYPERVISOR: u32 = 1 << 31;
/// First hypervisor CPUID leaf; its EAX is the highest hypervisor leaf.
pub const HYPERVISOR_BASE: u32 = 0x4000_0000;
/// Hypervisor timing leaf: EAX = TSC kHz, EBX = local APIC bus kHz (kvmlab,
/// VMware, QEMU with `invtsc`).
pub const TIMING_LEAF: u32 = 0x4000_0010;

/// Clock rates announced by the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockRates {
    pub tsc_khz: u64,
    /// Local APIC bus frequency in kHz (the timer's input before its divider).
    pub apic_bus_khz: u64,
}

/// The clock rates in the hypervisor timing leaf, if the CPU says it runs
/// under a hypervisor that has that leaf and both rates are given. `cpuid`
/// executes CPUID for a leaf (sub-leaf 0) and returns `[eax, ebx, ecx, edx]`;
/// hypervisor leaves are only read when leaf 1 announces a hypervisor (on bare
/// metal, leaves past the highest basic one return unrelated data).
pub fn clock_rates_from_cpuid(cpuid: impl Fn(u32) -> [u32; 4]) -> Option<ClockRates> {
    if cpuid(1)[2] & CPUID1_ECX_HYPERVISOR == 0 {
        return None;
    }
    let max_leaf = cpuid(HYPERVISOR_BASE)[0];
    if !(TIMING_LEAF..HYPERVISOR_BASE + 0x1_0000).contains(&max_leaf) {
        return None;
    }
    let [tsc_khz, apic_bus_khz, _, _] = cpuid(TIMING_LEAF);
    (tsc_khz != 0 && apic_bus_khz != 0).then_some(ClockRates {
        tsc_khz: u64::from(tsc_khz),
        apic_bus_khz: u64::from(apic_bus_khz),
    })
}

/// One `virtio_mmio.device=<size>@<base>:<irq>` word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioDevice {
    pub base: u64,
    pub size: u64,
    pub irq: u32,
}

/// One `kvmlab.ip=<nic>[.<vlan>]:<addr>/<prefix>` word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// Index among the virtio-net devices, in command-line order.
    pub nic: usize,
    /// VLAN of a sub-interface on a trunk NIC; `None` for untagged traffic.
    pub vlan: Option<u16>,
    pub addr: Ipv4,
    pub prefix: u8,
}

/// Everything the guest takes from its command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Config<'a> {
    pub devices: Vec<MmioDevice>,
    pub ips: Vec<IpConfig>,
    pub ping: Vec<Ipv4>,
    pub arping: Vec<Ipv4>,
    pub count: u32,
    pub timeout_ms: u64,
    pub disk_checksum: bool,
    pub poweroff: bool,
    /// `kvmlab.verbose`: also print the usable RAM.
    pub verbose: bool,
    /// `kvmlab.cpuid`: also print CPUID leaf 1.
    pub cpuid: bool,
    /// `kvmlab.test=<what>` words (tests of the VMM's error paths), in order.
    pub tests: Vec<&'a str>,
    /// Words that start like ours but could not be parsed.
    pub invalid: Vec<&'a str>,
}

impl<'a> Config<'a> {
    /// Parses a kernel command line. Words it does not know are ignored; words
    /// it knows but cannot parse are listed in `invalid`.
    pub fn parse(cmdline: &'a str) -> Config<'a> {
        let mut config = Config {
            count: DEFAULT_COUNT,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            ..Config::default()
        };
        for word in cmdline.split_ascii_whitespace() {
            if !config.parse_word(word) {
                config.invalid.push(word);
            }
        }
        config
    }

    /// Applies one word; false if it is one of ours but malformed.
    fn parse_word(&mut self, word: &'a str) -> bool {
        let (key, value) = cut(word, b'=').unwrap_or((word, ""));
        match key {
            "virtio_mmio.device" => match parse_mmio_device(value) {
                // The same device twice (a VMM that adds its own words, as QEMU's
                // microvm does, to a command line that has them): keep one.
                Some(device) if self.devices.iter().any(|d| d.base == device.base) => true,
                Some(device) => {
                    self.devices.push(device);
                    true
                }
                None => false,
            },
            "kvmlab.ip" => parse_ip_config(value).map(|ip| self.ips.push(ip)).is_some(),
            "kvmlab.ping" => parse_ip_list(value, &mut self.ping),
            "kvmlab.arping" => parse_ip_list(value, &mut self.arping),
            "kvmlab.count" => match value.parse::<u32>() {
                Ok(n) if (1..=MAX_COUNT).contains(&n) => {
                    self.count = n;
                    true
                }
                _ => false,
            },
            "kvmlab.timeout_ms" => match value.parse::<u64>() {
                Ok(n) if (1..=3_600_000).contains(&n) => {
                    self.timeout_ms = n;
                    true
                }
                _ => false,
            },
            "kvmlab.disk-checksum" => {
                self.disk_checksum = true;
                value.is_empty()
            }
            "kvmlab.poweroff" => {
                self.poweroff = true;
                value.is_empty()
            }
            "kvmlab.verbose" => {
                self.verbose = true;
                value.is_empty()
            }
            "kvmlab.cpuid" => {
                self.cpuid = true;
                value.is_empty()
            }
            "kvmlab.test" => {
                self.tests.push(value);
                true
            }
            _ => true,
        }
    }
}

/// `text` split at the first `delimiter` (an ASCII byte), as
/// `str::split_once` does, but with a plain byte loop: the generic character
/// searcher costs many more instructions, and the guest runs where KVM
/// emulates every one of them.
pub fn cut(text: &str, delimiter: u8) -> Option<(&str, &str)> {
    // A non-ASCII byte could match inside a character and make the slicing
    // below panic.
    debug_assert!(delimiter.is_ascii(), "cut at a non-ASCII byte");
    let at = text.bytes().position(|b| b == delimiter)?;
    // `at` and `at + 1` are character boundaries: `delimiter` is ASCII.
    Some((&text[..at], &text[at + 1..]))
}

/// The pieces of `text` between `delimiter`s (an ASCII byte), as `str::split`
/// gives them (see [`cut`]).
pub fn pieces(text: &str, delimiter: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    core::iter::from_fn(move || {
        let text = rest?;
        match cut(text, delimiter) {
            Some((piece, after)) => {
                rest = Some(after);
                Some(piece)
            }
            None => {
                rest = None;
                Some(text)
            }
        }
    })
}

/// Parses a number in decimal or, with `0x`, hexadecimal.
pub fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Parses a size as Linux's `memparse` does: a number with an optional K, M
/// or G suffix.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, shift) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 10),
        b'm' | b'M' => (&text[..text.len() - 1], 20),
        b'g' | b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    parse_number(digits)?.checked_mul(1 << shift)
}

/// Parses `<size>@<base>:<irq>[:<id>]` (Linux's virtio_mmio.device format).
pub fn parse_mmio_device(value: &str) -> Option<MmioDevice> {
    let (size, rest) = cut(value, b'@')?;
    let (base, rest) = cut(rest, b':')?;
    let irq = cut(rest, b':').map_or(rest, |(irq, _)| irq);
    let device = MmioDevice {
        size: parse_size(size)?,
        base: parse_number(base)?,
        irq: irq.parse().ok()?,
    };
    (device.size >= 0x100 && device.base & 3 == 0).then_some(device)
}

/// Parses a dotted-quad IPv4 address.
pub fn parse_ipv4(text: &str) -> Option<Ipv4> {
    let mut octets = [0u8; 4];
    let mut parts = pieces(text, b'.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts.next().is_none().then_some(octets)
}

/// Parses `<nic>[.<vlan>]:<addr>/<prefix>`.
pub fn parse_ip_config(value: &str) -> Option<IpConfig> {
    let (port, cidr) = cut(value, b':')?;
    let (nic, vlan) = match cut(port, b'.') {
        Some((nic, vlan)) => {
            let vlan: u16 = vlan.parse().ok()?;
            if !(1..=4094).contains(&vlan) {
                return None;
            }
            (nic, Some(vlan))
        }
        None => (port, None),
    };
    let (addr, prefix) = cut(cidr, b'/')?;
    let prefix: u8 = prefix.parse().ok()?;
    (prefix <= 32).then_some(())?;
    Some(IpConfig {
        nic: nic.parse().ok()?,
        vlan,
        addr: parse_ipv4(addr)?,
        prefix,
    })
}

/// Appends the addresses of a comma-separated list; false if one is malformed.
fn parse_ip_list(value: &str, list: &mut Vec<Ipv4>) -> bool {
    let mut ok = !value.is_empty();
    for item in pieces(value, b',').filter(|item| !item.is_empty()) {
        match parse_ipv4(item) {
            Some(addr) => list.push(addr),
            None => ok = false,
        }
    }
    ok
}

/// Whether `addr` lies in the subnet `net/prefix`.
pub fn in_subnet(addr: Ipv4, net: Ipv4, prefix: u8) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    };
    u32::from_be_bytes(addr) & mask == u32::from_be_bytes(net) & mask
}

/// Splits a received Ethernet frame into its VLAN and the untagged frame.
///
/// An 802.1Q-tagged frame yields `Some(vid)` and a copy without the tag; a
/// priority-tagged frame (VID 0) counts as untagged. Runts yield `None`.
pub fn untag(frame: &[u8]) -> Option<(Option<u16>, Vec<u8>)> {
    if frame.len() < 14 {
        return None;
    }
    if u16::from_be_bytes([frame[12], frame[13]]) != TPID_8021Q {
        return Some((None, frame.to_vec()));
    }
    if frame.len() < 18 {
        return None;
    }
    let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
    let mut inner = Vec::with_capacity(frame.len() - 4);
    inner.extend_from_slice(&frame[..12]);
    inner.extend_from_slice(&frame[16..]);
    Some(((vid != 0).then_some(vid), inner))
}

/// Tags a frame in place: `buf` holds 4 spare bytes followed by an untagged
/// frame (destination, source, EtherType, ...); afterwards it holds the same
/// frame with an 802.1Q tag for `vid` (priority 0) after the MAC addresses.
pub fn tag_in_place(buf: &mut [u8], vid: u16) {
    assert!(buf.len() >= 18, "frame too short to tag");
    buf.copy_within(4..16, 0);
    buf[12..14].copy_from_slice(&TPID_8021Q.to_be_bytes());
    buf[14..16].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
}

/// FNV-1a, 64-bit, of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Lost probes in percent, rounded down (100 when nothing was sent).
pub fn loss_pct(sent: u32, received: u32) -> u32 {
    if sent == 0 {
        return 100;
    }
    (u64::from(sent.saturating_sub(received)) * 100 / u64::from(sent)) as u32
}

/// An IPv4 address in dotted-quad form, for `write!`.
pub struct Dotted(pub Ipv4);

impl fmt::Display for Dotted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.0;
        write!(f, "{a}.{b}.{c}.{d}")
    }
}

/// Writes the report line of a ping or arping (`kind`) of `target`; `error`
/// says why nothing could be sent.
pub fn write_probe_report(
    out: &mut impl fmt::Write,
    kind: &str,
    target: Ipv4,
    sent: u32,
    received: u32,
    error: Option<&str>,
) -> fmt::Result {
    write!(
        out,
        "kvmlab-report {{\"type\":\"{kind}\",\"target\":\"{}\",\"sent\":{sent},\"received\":{received},\"loss_pct\":{}",
        Dotted(target),
        loss_pct(sent, received)
    )?;
    if let Some(error) = error {
        write!(out, ",\"error\":\"{error}\"")?;
    }
    writeln!(out, "}}")
}

/// Writes the report line of a disk's first-sector checksum.
pub fn write_disk_report(
    out: &mut impl fmt::Write,
    index: usize,
    sectors: u64,
    checksum: Result<u64, &str>,
) -> fmt::Result {
    write!(
        out,
        "kvmlab-report {{\"type\":\"disk\",\"index\":{index},\"sectors\":{sectors}"
    )?;
    match checksum {
        Ok(hash) => writeln!(out, ",\"fnv1a64\":\"{hash:#018x}\"}}"),
        Err(error) => writeln!(out, ",\"error\":\"{error}\"}}"),
    }
}
