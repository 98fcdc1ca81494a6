//! VMs: sizes, NICs, and the files (kernel, initrd, disks) they name.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::super::diagnostic::{Finding, clip};
use super::super::size::ByteSize;
use super::super::spans::{FieldPath, Part};
use super::syntax::ip_problem;
use super::{Checker, MAX_VCPUS, MIN_MEMORY, root};

impl Checker<'_> {
    pub(super) fn check_vms(&mut self) {
        for (i, vm) in self.topology.vms.iter().enumerate() {
            let path = root().key("vms").index(i);
            if !(1..=MAX_VCPUS).contains(&vm.vcpus) {
                self.report(
                    path.key("vcpus"),
                    Part::Value,
                    Finding::new(
                        format!("vcpus must be 1 to {MAX_VCPUS}, not {}", vm.vcpus),
                        "out of range",
                    )
                    .help("give the VM between 1 and 255 virtual CPUs"),
                );
            }
            if vm.memory < MIN_MEMORY {
                self.report(
                    path.key("memory"),
                    Part::Value,
                    Finding::new(format!("memory {} is too small", vm.memory), "below 2MiB").help(
                        format!("a VM needs at least {MIN_MEMORY}; 64MiB suits the built-in guest"),
                    ),
                );
            } else if let Some(host) = self.ctx.host_memory {
                if vm.memory.bytes() > host {
                    self.report(
                        path.key("memory"),
                        Part::Value,
                        Finding::new(
                            format!(
                                "memory {} is more than this host has ({})",
                                vm.memory,
                                ByteSize(host)
                            ),
                            "more than the host's memory",
                        )
                        .help("give the VM less memory"),
                    );
                }
            }
            if vm.initrd.is_some() && vm.kernel.is_none() {
                self.report(
                    path.key("initrd"),
                    Part::Key,
                    Finding::new("an initrd needs a kernel", "initrd without `kernel`")
                        .help("add `kernel:`, or remove `initrd:` to run the built-in guest"),
                );
            }
            for (key, file) in [("kernel", &vm.kernel), ("initrd", &vm.initrd)] {
                if let Some(file) = file {
                    self.check_file(path.key(key), key, file);
                }
            }
            for (d, disk) in vm.disks.iter().enumerate() {
                self.check_file(path.key("disks").index(d).key("path"), "disk", &disk.path);
            }
            for (p, target) in vm.ping.iter().enumerate() {
                if let Some(finding) = ping_problem(target) {
                    self.report(path.key("ping").index(p), Part::Value, finding);
                }
            }
            for (n, nic) in vm.nics.iter().enumerate() {
                let nic_path = path.key("nics").index(n);
                self.check_port(&nic_path, &nic.bridge, nic.vlan, nic.trunk.as_deref());
                for id in nic.vlan_ips.keys() {
                    if !nic.trunk.as_deref().unwrap_or_default().contains(id) {
                        self.report(
                            nic_path.key("vlan_ips").key(&id.to_string()),
                            Part::Key,
                            Finding::new(
                                format!("`vlan_ips` names VLAN {id}, which this NIC's trunk does not carry"),
                                "not in `trunk`",
                            )
                            .help(format!("add {id} to `trunk:`, or use `ip:` for an access port")),
                        );
                    }
                }
            }
        }
    }

    pub(super) fn check_file(&mut self, path: FieldPath, what: &str, file: &Path) {
        let resolved = self.ctx.base_dir.join(file);
        let relative_help = format!(
            "relative paths start from the topology file's folder ({})",
            self.ctx.base_dir.display()
        );
        let problem = match std::fs::metadata(&resolved) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some((
                format!("{what} file not found: {}", resolved.display()),
                match prepare_script(&resolved) {
                    Some(script) => format!("run {script} to fetch it"),
                    None => relative_help,
                },
            )),
            Err(e) => Some((
                format!("cannot read {what} file {}: {e}", resolved.display()),
                relative_help,
            )),
            Ok(meta) if !meta.is_file() => Some((
                format!("{what} path is not a file: {}", resolved.display()),
                format!("point `{what}` at a regular file"),
            )),
            Ok(_) => match std::fs::File::open(&resolved) {
                Err(e) => Some((
                    format!("cannot read {what} file {}: {e}", resolved.display()),
                    "check the file's permissions".to_string(),
                )),
                Ok(_) => None,
            },
        };
        if let Some((message, help)) = problem {
            self.report(
                path,
                Part::Value,
                Finding::new(message, "this path").help(help),
            );
        }
    }
}

/// The `prepare.sh` in the folder of a missing file, as a command to type from here.
///
/// Files too large or too local for git (a lab's kernel, its disk image) are made by a
/// script beside them, `labs/images/prepare.sh` in kvmlab's own examples; on a fresh
/// clone the fix for the missing file is to run it, not to look at the path.
fn prepare_script(missing: &Path) -> Option<String> {
    let script = missing.parent()?.join("prepare.sh");
    if !script.is_file() {
        return None;
    }
    // Both resolved, so that `labs/images/../images` and symlinks read as one place.
    let script = script.canonicalize().unwrap_or(script);
    let here = std::env::current_dir()
        .and_then(|here| here.canonicalize())
        .ok();
    let shown = match here
        .as_deref()
        .and_then(|here| script.strip_prefix(here).ok())
    {
        // A bare `prepare.sh` would be looked up in PATH: say `./prepare.sh`.
        Some(relative) if relative.parent() == Some(Path::new("")) => {
            format!("./{}", relative.display())
        }
        Some(relative) => relative.display().to_string(),
        None => script.display().to_string(),
    };
    Some(shown)
}

/// Why `target` is no address the built-in guest can ping; `None` when it is one.
fn ping_problem(target: &str) -> Option<Finding> {
    let shown = clip(target);
    let headline = |why: &str| format!("ping target `{shown}` is not an IPv4 address: {why}");
    let plain = "give a plain address such as 10.0.0.2";
    match target.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => return None,
        Ok(IpAddr::V6(_)) => {
            return Some(
                Finding::new(headline("it is IPv6"), "IPv6 address")
                    .help(format!("the built-in guest pings IPv4 only: {plain}")),
            );
        }
        Err(_) => {}
    }
    if let Some((addr, prefix)) = target.split_once('/') {
        if addr.parse::<Ipv4Addr>().is_ok() {
            return Some(
                Finding::new(
                    headline(&format!("it has a prefix length (/{})", clip(prefix))),
                    "prefix length",
                )
                .help(format!(
                    "ping a plain address such as {addr}, without the prefix"
                )),
            );
        }
    }
    let (why, label, help) = ip_problem(target)?;
    if help.contains("resolve names") {
        return Some(
            Finding::new(
                headline("it looks like a host name"),
                "a name, not an address",
            )
            .help(format!(
                "{plain}: the guest pings addresses, and kvmlab resolves no name"
            )),
        );
    }
    Some(Finding::new(headline(&why), label).help(help))
}
