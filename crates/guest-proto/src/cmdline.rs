//! The guest's kernel command line: the `kvmlab.*` words (and Linux's
//! `virtio_mmio.device=`) as one type, [`Word`]. The host writes a word with its
//! `Display`; the guest reads it back with [`Word::parse`], and collects a whole
//! command line into a [`Config`] with [`Config::parse`]. What the host writes, the
//! guest reads back unchanged, for every word (the tests below say so).
//!
//! The words:
//!
//! | word | meaning |
//! |------|---------|
//! | `virtio_mmio.device=<size>@<base>:<irq>` | a virtio-mmio device (see [`crate::mmio`]) |
//! | `kvmlab.ip=<nic>[.<vlan>]:<addr>/<prefix>` | an address of NIC `nic` (in VLAN `vlan` on a trunk) |
//! | `kvmlab.ping=<addr>[,<addr>...]` | ping these addresses and report |
//! | `kvmlab.arping=<addr>[,<addr>...]` | arping these addresses and report |
//! | `kvmlab.count=<n>` | probes per target, 1 to [`MAX_COUNT`] ([`DEFAULT_COUNT`]) |
//! | `kvmlab.timeout_ms=<ms>` | wait per probe, 1 to [`MAX_TIMEOUT_MS`] ([`DEFAULT_TIMEOUT_MS`]) |
//! | `kvmlab.disk-checksum` | report each disk's first-sector checksum |
//! | `kvmlab.poweroff` | power off once the tasks are done |
//! | `kvmlab.verbose` | also print the usable RAM |
//! | `kvmlab.cpuid` | also print CPUID leaf 1 |
//! | `kvmlab.test=<what>` | tests of the engine's error paths (`triple-fault`, `sse`, `halt`) |
//!
//! The guest runs this parser at boot, where KVM may emulate every instruction: it
//! splits with the byte loops of [`crate::text`], in one pass over the line.

use alloc::vec::Vec;
use core::fmt;

use crate::ipv4::{Dotted, Ipv4, parse_cidr, parse_ipv4};
use crate::mmio::MmioDevice;
use crate::text::{cut, pieces};

/// Probes per target when `kvmlab.count` is not given.
pub const DEFAULT_COUNT: u32 = 3;
/// Wait for each probe's answer when `kvmlab.timeout_ms` is not given.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;
/// Most probes per target we accept (bounds the run time of a guest).
pub const MAX_COUNT: u32 = 1000;
/// Longest wait per probe we accept (an hour).
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;

// The keys, written once: `Word`'s `Display` and `Word::parse` both use them.
const MMIO_DEVICE: &str = "virtio_mmio.device";
const IP: &str = "kvmlab.ip";
const PING: &str = "kvmlab.ping";
const ARPING: &str = "kvmlab.arping";
const COUNT: &str = "kvmlab.count";
const TIMEOUT_MS: &str = "kvmlab.timeout_ms";
const DISK_CHECKSUM: &str = "kvmlab.disk-checksum";
const POWEROFF: &str = "kvmlab.poweroff";
const VERBOSE: &str = "kvmlab.verbose";
const CPUID: &str = "kvmlab.cpuid";
const TEST: &str = "kvmlab.test";
const HOSTNAME: &str = "kvmlab.hostname";
const ROUTE: &str = "kvmlab.route";
const FORWARD: &str = "kvmlab.forward";

/// Longest host name the guest takes (Linux's limit).
pub const MAX_HOSTNAME: usize = 64;

/// One `kvmlab.ip=<nic>[.<vlan>]:<addr>/<prefix>` word's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// Index among the virtio-net devices, in command-line order.
    pub nic: usize,
    /// VLAN of a sub-interface on a trunk NIC (1 to 4094); `None` for untagged
    /// traffic.
    pub vlan: Option<u16>,
    /// The address.
    pub addr: Ipv4,
    /// The prefix length of the address's subnet, 0 to 32.
    pub prefix: u8,
}

impl IpConfig {
    /// Parses `<nic>[.<vlan>]:<addr>/<prefix>`; `None` when a part is malformed or
    /// out of range.
    pub fn parse(value: &str) -> Option<IpConfig> {
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
        let (addr, prefix) = parse_cidr(cidr)?;
        Some(IpConfig {
            nic: nic.parse().ok()?,
            vlan,
            addr,
            prefix,
        })
    }
}

/// One `kvmlab.route=<net>/<prefix>@<via>` word's value: packets for `net/prefix`
/// go to the router `via`, which one of the guest's subnets holds. A default
/// gateway is the route to `0.0.0.0/0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteConfig {
    /// The destination network (its host bits zero).
    pub net: Ipv4,
    /// Its prefix length, 0 to 32.
    pub prefix: u8,
    /// The next hop.
    pub via: Ipv4,
}

impl RouteConfig {
    /// Parses `<net>/<prefix>@<via>`; `None` when a part is malformed or the
    /// network has host bits set.
    pub fn parse(value: &str) -> Option<RouteConfig> {
        let (cidr, via) = cut(value, b'@')?;
        let (net, prefix) = parse_cidr(cidr)?;
        let route = RouteConfig {
            net,
            prefix,
            via: parse_ipv4(via)?,
        };
        (crate::ipv4::network(net, prefix) == net).then_some(route)
    }

    /// Whether this is the default route.
    pub fn is_default(&self) -> bool {
        self.prefix == 0
    }
}

/// Writes the value as [`RouteConfig::parse`] reads it.
impl fmt::Display for RouteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}@{}",
            Dotted(self.net),
            self.prefix,
            Dotted(self.via)
        )
    }
}

/// Writes the value as [`IpConfig::parse`] reads it.
impl fmt::Display for IpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.nic)?;
        if let Some(vlan) = self.vlan {
            write!(f, ".{vlan}")?;
        }
        write!(f, ":{}/{}", Dotted(self.addr), self.prefix)
    }
}

/// One word of the guest's command line that the guest understands.
///
/// `Display` writes the word as the guest reads it back with [`Word::parse`]. It
/// round-trips for every value in the ranges documented on the variants; a value
/// outside them is written as given and the guest reports the word as malformed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Word<'a> {
    /// `virtio_mmio.device=<size>@<base>:<irq>`: a virtio-mmio device, in the
    /// ranges [`MmioDevice::parse`] accepts.
    MmioDevice(MmioDevice),
    /// `kvmlab.ip=<nic>[.<vlan>]:<addr>/<prefix>`: an address of a NIC.
    Ip(IpConfig),
    /// `kvmlab.ping=<addr>[,<addr>...]`: addresses to ping, at least one.
    Ping(Vec<Ipv4>),
    /// `kvmlab.arping=<addr>[,<addr>...]`: addresses to arping, at least one.
    Arping(Vec<Ipv4>),
    /// `kvmlab.count=<n>`: probes per target, 1 to [`MAX_COUNT`].
    Count(u32),
    /// `kvmlab.timeout_ms=<ms>`: wait per probe, 1 to [`MAX_TIMEOUT_MS`].
    TimeoutMs(u64),
    /// `kvmlab.disk-checksum`: report the checksum of each disk's first sector.
    DiskChecksum,
    /// `kvmlab.poweroff`: power off once every task is reported.
    Poweroff,
    /// `kvmlab.verbose`: also print the usable RAM.
    Verbose,
    /// `kvmlab.cpuid`: also print CPUID leaf 1 as the guest sees it.
    Cpuid,
    /// `kvmlab.test=<what>`: a test of the engine's error paths (`triple-fault`,
    /// `sse`, `halt`); `what` holds no whitespace.
    Test(&'a str),
    /// `kvmlab.hostname=<name>`: the guest's name, for its shell's prompt; 1 to
    /// [`MAX_HOSTNAME`] letters, digits, `-`, `_` or `.`.
    Hostname(&'a str),
    /// `kvmlab.route=<net>/<prefix>@<via>`: a static route (`0.0.0.0/0` is the
    /// default gateway).
    Route(RouteConfig),
    /// `kvmlab.forward`: forward IPv4 between the interfaces (a router).
    Forward,
}

/// What [`Word::parse`] makes of one word of a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not a word of the guest's: the kernel's, another program's, or a `kvmlab.`
    /// key the guest does not know. The guest ignores it.
    Foreign,
    /// One of the guest's words, well formed.
    Word(Word<'a>),
    /// One of the guest's words, malformed; the guest warns about it. It still takes
    /// what it can from it: a flag given a value, the well-formed addresses of a
    /// list.
    Malformed(Option<Word<'a>>),
}

impl<'a> Word<'a> {
    /// Reads one word of a kernel command line.
    #[inline]
    pub fn parse(text: &'a str) -> Parsed<'a> {
        let (key, value) = cut(text, b'=').unwrap_or((text, ""));
        let checked = |word: Option<Word<'a>>| match word {
            Some(word) => Parsed::Word(word),
            None => Parsed::Malformed(None),
        };
        // A flag given a value is still the flag, but malformed.
        let flag = |word: Word<'a>| match value {
            "" => Parsed::Word(word),
            _ => Parsed::Malformed(Some(word)),
        };
        match key {
            MMIO_DEVICE => checked(MmioDevice::parse(value).map(Word::MmioDevice)),
            IP => checked(IpConfig::parse(value).map(Word::Ip)),
            PING => parse_ip_list(value, Word::Ping),
            ARPING => parse_ip_list(value, Word::Arping),
            COUNT => checked(
                value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_COUNT).contains(n))
                    .map(Word::Count),
            ),
            TIMEOUT_MS => checked(
                value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_TIMEOUT_MS).contains(n))
                    .map(Word::TimeoutMs),
            ),
            DISK_CHECKSUM => flag(Word::DiskChecksum),
            POWEROFF => flag(Word::Poweroff),
            VERBOSE => flag(Word::Verbose),
            CPUID => flag(Word::Cpuid),
            TEST => Parsed::Word(Word::Test(value)),
            HOSTNAME => checked(is_hostname(value).then_some(Word::Hostname(value))),
            ROUTE => checked(RouteConfig::parse(value).map(Word::Route)),
            FORWARD => flag(Word::Forward),
            _ => Parsed::Foreign,
        }
    }
}

/// Whether `name` is a host name the guest takes.
fn is_hostname(name: &str) -> bool {
    (1..=MAX_HOSTNAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A comma-separated list of addresses (empty items skipped): malformed when it
/// is empty or an item is not an address, the good items salvaged.
fn parse_ip_list<'a>(value: &str, word: fn(Vec<Ipv4>) -> Word<'a>) -> Parsed<'a> {
    let mut ok = !value.is_empty();
    let mut list = Vec::new();
    for item in pieces(value, b',').filter(|item| !item.is_empty()) {
        match parse_ipv4(item) {
            Some(addr) => list.push(addr),
            None => ok = false,
        }
    }
    match (ok, list.is_empty()) {
        (true, _) => Parsed::Word(word(list)),
        (false, true) => Parsed::Malformed(None),
        (false, false) => Parsed::Malformed(Some(word(list))),
    }
}

/// Writes the word as [`Word::parse`] reads it back.
impl fmt::Display for Word<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, key: &str, addrs: &[Ipv4]| {
            write!(f, "{key}=")?;
            for (i, &addr) in addrs.iter().enumerate() {
                let comma = if i == 0 { "" } else { "," };
                write!(f, "{comma}{}", Dotted(addr))?;
            }
            Ok(())
        };
        match self {
            Word::MmioDevice(device) => write!(f, "{MMIO_DEVICE}={device}"),
            Word::Ip(ip) => write!(f, "{IP}={ip}"),
            Word::Ping(addrs) => list(f, PING, addrs),
            Word::Arping(addrs) => list(f, ARPING, addrs),
            Word::Count(n) => write!(f, "{COUNT}={n}"),
            Word::TimeoutMs(ms) => write!(f, "{TIMEOUT_MS}={ms}"),
            Word::DiskChecksum => f.write_str(DISK_CHECKSUM),
            Word::Poweroff => f.write_str(POWEROFF),
            Word::Verbose => f.write_str(VERBOSE),
            Word::Cpuid => f.write_str(CPUID),
            Word::Test(what) => write!(f, "{TEST}={what}"),
            Word::Hostname(name) => write!(f, "{HOSTNAME}={name}"),
            Word::Route(route) => write!(f, "{ROUTE}={route}"),
            Word::Forward => f.write_str(FORWARD),
        }
    }
}

/// Everything the guest takes from its command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Config<'a> {
    /// The virtio-mmio devices, in command-line order, each base once.
    pub devices: Vec<MmioDevice>,
    /// The NICs' addresses, in command-line order.
    pub ips: Vec<IpConfig>,
    /// Addresses to ping, in order.
    pub ping: Vec<Ipv4>,
    /// Addresses to arping, in order.
    pub arping: Vec<Ipv4>,
    /// Probes per target.
    pub count: u32,
    /// Wait for each probe's answer, in milliseconds.
    pub timeout_ms: u64,
    /// `kvmlab.disk-checksum`: report each disk's first-sector checksum.
    pub disk_checksum: bool,
    /// `kvmlab.poweroff`: power off once the tasks are done.
    pub poweroff: bool,
    /// `kvmlab.verbose`: also print the usable RAM.
    pub verbose: bool,
    /// `kvmlab.cpuid`: also print CPUID leaf 1.
    pub cpuid: bool,
    /// `kvmlab.test=<what>` words (tests of the VMM's error paths), in order.
    pub tests: Vec<&'a str>,
    /// `kvmlab.hostname`: the guest's name (its shell's prompt).
    pub hostname: Option<&'a str>,
    /// Static routes (the default gateway among them), in order.
    pub routes: Vec<RouteConfig>,
    /// `kvmlab.forward`: the guest is a router.
    pub forward: bool,
    /// Words that start like ours but could not be parsed.
    pub invalid: Vec<&'a str>,
}

impl<'a> Config<'a> {
    /// Parses a kernel command line. Words it does not know are ignored; words
    /// it knows but cannot parse are listed in `invalid` (and what can still be
    /// taken from them is taken, see [`Parsed::Malformed`]).
    pub fn parse(cmdline: &'a str) -> Config<'a> {
        let mut config = Config {
            count: DEFAULT_COUNT,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            ..Config::default()
        };
        for text in cmdline.split_ascii_whitespace() {
            // One call of `apply`, so that it is inlined here: the guest runs this
            // at boot, where every instruction may be emulated.
            let (word, well_formed) = match Word::parse(text) {
                Parsed::Foreign => continue,
                Parsed::Word(word) => (Some(word), true),
                Parsed::Malformed(salvaged) => (salvaged, false),
            };
            if let Some(word) = word {
                config.apply(word);
            }
            if !well_formed {
                config.invalid.push(text);
            }
        }
        config
    }

    /// Takes in one word.
    #[inline(always)]
    fn apply(&mut self, word: Word<'a>) {
        match word {
            // The same device twice (a VMM that adds its own words, as QEMU's
            // microvm does, to a command line that has them): keep one.
            Word::MmioDevice(device) if self.devices.iter().any(|d| d.base == device.base) => {}
            Word::MmioDevice(device) => self.devices.push(device),
            Word::Ip(ip) => self.ips.push(ip),
            Word::Ping(addrs) => append(&mut self.ping, addrs),
            Word::Arping(addrs) => append(&mut self.arping, addrs),
            Word::Count(n) => self.count = n,
            Word::TimeoutMs(ms) => self.timeout_ms = ms,
            Word::DiskChecksum => self.disk_checksum = true,
            Word::Poweroff => self.poweroff = true,
            Word::Verbose => self.verbose = true,
            Word::Cpuid => self.cpuid = true,
            Word::Test(what) => self.tests.push(what),
            Word::Hostname(name) => self.hostname = Some(name),
            Word::Route(route) => self.routes.push(route),
            Word::Forward => self.forward = true,
        }
    }
}

/// Appends `addrs` to `list`, taking the vector over when `list` is empty (the
/// usual case: one word per list), which saves a copy.
fn append(list: &mut Vec<Ipv4>, mut addrs: Vec<Ipv4>) {
    if list.is_empty() {
        *list = addrs;
    } else {
        list.append(&mut addrs);
    }
}

#[cfg(test)]
mod tests;
