//! Semantic validation: what a well-formed file must also mean. Every check runs, so
//! a file's problems are all reported at once. One checker walks the file; its checks
//! live beside it by what they look at: names, ports (bridges, TAPs, links, VLANs),
//! VMs, addresses, and routes.

mod addresses;
mod names;
mod ports;
mod routes;
mod syntax;
mod vms;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::derive;
use super::diagnostic::{Finding, clip};
use super::model::{FORMAT_VERSION, Topology};
use super::size::ByteSize;
use super::spans::{FieldPath, Part};
use syntax::ip_problem;

/// Longest lab or VM name: short enough to fit in state paths, markers and netns names.
pub const NAME_MAX: usize = 32;
/// Smallest guest memory kvmlab boots.
pub const MIN_MEMORY: ByteSize = ByteSize::mib(2);
/// Most vCPUs a VM may have.
pub const MAX_VCPUS: u32 = 255;

/// What validation needs to know about the world outside the file.
#[derive(Debug, Clone)]
pub struct Context {
    /// The topology file's folder: relative paths resolve against it.
    pub base_dir: PathBuf,
    /// The host's memory in bytes, when known; no VM may ask for more.
    pub host_memory: Option<u64>,
}

/// A finding placed at a path in the document.
#[derive(Debug, Clone)]
pub struct Located {
    /// Where in the document.
    pub path: FieldPath,
    /// The key or the value there.
    pub part: Part,
    /// What is wrong, and how to fix it.
    pub finding: Finding,
}

/// An IP address with its prefix length, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpCidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl IpCidr {
    /// Reads `10.0.0.1/24` or `fd00::1/64`; the error says what is wrong with this
    /// text in particular (the octet, the prefix, a name where an address belongs).
    pub fn parse(text: &str) -> Result<IpCidr, Finding> {
        let shown = clip(text);
        let invalid = |why: &str, label: String, help: String| {
            Finding::new(format!("invalid address `{shown}`: {why}"), label).help(help)
        };
        let Some((addr, prefix)) = text.split_once('/') else {
            return Err(match ip_problem(text) {
                None => {
                    let example = if text.contains(':') { 64 } else { 24 };
                    invalid(
                        "no prefix length",
                        "prefix length missing".to_string(),
                        format!("add the prefix length after a `/`, like {shown}/{example}"),
                    )
                }
                Some((why, label, help)) => invalid(&why, label, help),
            });
        };
        let addr: IpAddr = match ip_problem(addr) {
            None => addr.parse().expect("ip_problem accepted it"),
            Some((why, label, help)) => return Err(invalid(&why, label, help)),
        };
        let max: u8 = if addr.is_ipv4() { 32 } else { 128 };
        let range = format!(
            "the prefix length is a whole number from 0 to {max}, like {addr}/{}",
            if addr.is_ipv4() { 24 } else { 64 }
        );
        if prefix.is_empty() {
            return Err(invalid(
                "nothing after `/`",
                "prefix length missing".to_string(),
                range,
            ));
        }
        if !prefix.chars().all(|c| c.is_ascii_digit()) {
            return Err(invalid(
                &format!("prefix length `{}` is not a number", clip(prefix)),
                "not a prefix length".to_string(),
                range,
            ));
        }
        match prefix.parse::<u8>() {
            Ok(prefix) if prefix <= max => Ok(IpCidr { addr, prefix }),
            _ => Err(Finding::new(
                format!(
                    "prefix length /{} is out of range in `{shown}`",
                    clip(prefix)
                ),
                format!("at most /{max}"),
            )
            .help(format!("the prefix length of this address is 0 to {max}"))),
        }
    }
}

/// Checks `topology`, returning every problem found.
pub fn validate(topology: &Topology, ctx: &Context) -> Vec<Located> {
    validate_recovered(topology, ctx, &[])
}

/// Checks a topology read past unreadable values: `poisoned` are the paths whose
/// values were replaced by defaults, and checks that compare against them (a VLAN
/// against the bridge's list, a name against the bridges) stay quiet rather than
/// blame the replacement.
pub fn validate_recovered(
    topology: &Topology,
    ctx: &Context,
    poisoned: &[FieldPath],
) -> Vec<Located> {
    let mut checker = Checker {
        ctx,
        topology,
        poisoned,
        found: Vec::new(),
    };
    checker.run();
    checker.found
}

struct Checker<'a> {
    ctx: &'a Context,
    topology: &'a Topology,
    poisoned: &'a [FieldPath],
    found: Vec<Located>,
}

/// Who uses an interface name, for the "already used by" label.
struct NameUse {
    path: FieldPath,
    what: String,
}

fn root() -> FieldPath {
    FieldPath::root()
}

impl Checker<'_> {
    /// Whether the value at `path`, or one around it, was unreadable.
    fn poisoned(&self, path: &FieldPath) -> bool {
        self.poisoned.iter().any(|p| path.starts_with(p))
    }

    fn report(&mut self, path: FieldPath, part: Part, finding: Finding) {
        self.found.push(Located {
            path,
            part,
            finding,
        });
    }

    fn run(&mut self) {
        let t = self.topology;
        if t.version != FORMAT_VERSION {
            self.report(
                root().key("version"),
                Part::Value,
                Finding::new(
                    format!("unsupported format version {}", t.version),
                    format!("this kvmlab reads version {FORMAT_VERSION}"),
                )
                .help(format!("set `version: {FORMAT_VERSION}`")),
            );
        }
        self.check_dns_label(root().key("name"), &t.name, "lab");
        if let Some(netns) = &t.netns {
            self.check_netns(netns);
        }
        self.check_names();
        self.check_bridges();
        self.check_taps();
        self.check_links();
        self.check_vms();
        self.check_macs();
        self.check_addresses();
        self.check_routes();
    }
}

/// The veth end names of every link, in order.
pub fn link_end_names(t: &Topology) -> Vec<(String, String)> {
    let mut pairs: HashMap<(&str, &str), usize> = HashMap::new();
    t.links
        .iter()
        .map(|link| {
            let key = if link.a <= link.b {
                (link.a.as_str(), link.b.as_str())
            } else {
                (link.b.as_str(), link.a.as_str())
            };
            let parallel = pairs.entry(key).or_insert(0);
            let names = derive::link_end_names(&link.a, &link.b, *parallel);
            *parallel += 1;
            names
        })
        .collect()
}
