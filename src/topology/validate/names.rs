//! Names: the lab's, the namespace's, and interface names that must be unique and
//! fit the kernel's limit.

use std::collections::HashMap;

use super::super::derive::{self, IFNAME_MAX};
use super::super::diagnostic::{Finding, clip};
use super::super::spans::{FieldPath, Part};
use super::{Checker, NAME_MAX, NameUse, link_end_names, root};

impl Checker<'_> {
    pub(super) fn check_dns_label(&mut self, path: FieldPath, name: &str, what: &str) {
        let valid = !name.is_empty()
            && name.len() <= NAME_MAX
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && !name.ends_with('-')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            self.report(
                path,
                Part::Value,
                Finding::new(
                    format!("invalid {what} name `{}`", clip(name)),
                    "not a short DNS label",
                )
                .help(format!(
                    "a {what} name has 1 to {NAME_MAX} lowercase letters, digits and `-`, \
                     starts with a letter and does not end with `-` (for example `pc-1`)"
                )),
            );
        }
    }

    pub(super) fn check_netns(&mut self, netns: &str) {
        let valid = !netns.is_empty()
            && netns.len() <= 64
            && netns != "."
            && netns != ".."
            && netns
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            self.report(
                root().key("netns"),
                Part::Value,
                Finding::new(
                    format!("invalid network namespace name `{}`", clip(netns)),
                    "not a usable namespace name",
                )
                .help("use 1 to 64 letters, digits, `-`, `_` or `.` (for example `lab1`)"),
            );
        }
    }

    /// Checks that `name` is a valid Linux interface name; false when it is not.
    pub(super) fn check_ifname(&mut self, path: FieldPath, name: &str) -> bool {
        let problem = if name.is_empty() {
            Some((
                "is empty".to_string(),
                "an interface needs a name".to_string(),
            ))
        } else if name.len() > IFNAME_MAX {
            Some((
                format!("is {} bytes long", name.len()),
                format!("Linux interface names are at most {IFNAME_MAX} bytes: shorten it"),
            ))
        } else if name == "." || name == ".." {
            Some(("is reserved".to_string(), "choose another name".to_string()))
        } else {
            name.chars()
                .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
                .map(|c| {
                    (
                        format!("contains `{c}`"),
                        "use only letters, digits, `-`, `_` and `.`".to_string(),
                    )
                })
        };
        let Some((what, help)) = problem else {
            return true;
        };
        let message = format!("interface name `{}` {what}", clip(name));
        self.report(
            path,
            Part::Value,
            Finding::new(message, "invalid interface name").help(help),
        );
        false
    }

    /// Every interface the lab creates has a valid name no other of its interfaces has.
    pub(super) fn check_names(&mut self) {
        let t = self.topology;
        let mut uses: HashMap<String, NameUse> = HashMap::new();
        let mut claim = |checker: &mut Self, name: String, path: FieldPath, what: String| {
            if let Some(earlier) = uses.get(&name) {
                checker.report(
                    path,
                    Part::Value,
                    Finding::new(
                        format!("duplicate interface name `{}`", clip(&name)),
                        format!("{what} would reuse this name"),
                    )
                    .help(format!(
                        "`{}` is already the {} at {}; interface names must be unique in a lab",
                        clip(&name),
                        earlier.what,
                        earlier.path
                    )),
                );
            } else {
                uses.insert(name, NameUse { path, what });
            }
        };
        for (i, bridge) in t.bridges.iter().enumerate() {
            let path = root().key("bridges").index(i).key("name");
            if self.check_ifname(path.clone(), &bridge.name) {
                claim(self, bridge.name.clone(), path, "bridge".into());
            }
        }
        for (i, tap) in t.taps.iter().enumerate() {
            let path = root().key("taps").index(i).key("name");
            if self.check_ifname(path.clone(), &tap.name) {
                claim(self, tap.name.clone(), path, "TAP".into());
            }
        }
        for (i, (a, b)) in link_end_names(t).into_iter().enumerate() {
            let link = root().key("links").index(i);
            claim(self, a, link.key("a"), format!("veth end of links[{i}]"));
            claim(self, b, link.key("b"), format!("veth end of links[{i}]"));
        }
        let mut vm_names: HashMap<&str, usize> = HashMap::new();
        for (i, vm) in t.vms.iter().enumerate() {
            let path = root().key("vms").index(i).key("name");
            self.check_dns_label(path.clone(), &vm.name, "VM");
            if let Some(first) = vm_names.insert(&vm.name, i) {
                self.report(
                    path.clone(),
                    Part::Value,
                    Finding::new(
                        format!("duplicate VM name `{}`", clip(&vm.name)),
                        "a second VM with this name",
                    )
                    .help(format!(
                        "vms[{first}] is already called `{}`; VM names must be unique in a lab",
                        vm.name
                    )),
                );
            }
            for n in 0..vm.nics.len() {
                let tap = derive::nic_tap_name(&vm.name, n);
                claim(self, tap, path.clone(), format!("TAP of NIC {n}"));
            }
        }
    }
}
