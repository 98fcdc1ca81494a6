//! Ports: bridges, TAPs and links, each port's bridge and its VLANs.

use super::super::diagnostic::{Finding, clip, did_you_mean};
use super::super::spans::{FieldPath, Part};
use super::{Checker, root};

impl Checker<'_> {
    pub(super) fn bridge_vlans(&self, name: &str) -> Option<&[u16]> {
        self.topology
            .bridges
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.vlans.as_slice())
    }

    /// Reports a reference to a bridge that does not exist; returns its VLANs if it does.
    /// When the bridge's VLANs, or a bridge's name, were unreadable (and reported as
    /// such), it returns `None` without a word: a check against the default that
    /// replaced them would only repeat that problem in other words.
    pub(super) fn check_bridge_ref(&mut self, path: FieldPath, name: &str) -> Option<Vec<u16>> {
        let bridges = &self.topology.bridges;
        if let Some(i) = bridges.iter().position(|b| b.name == name) {
            if self.poisoned(&root().key("bridges").index(i).key("vlans")) {
                return None;
            }
            return self.bridge_vlans(name).map(<[u16]>::to_vec);
        }
        let unreadable_name =
            (0..bridges.len()).any(|i| self.poisoned(&root().key("bridges").index(i).key("name")));
        if unreadable_name || self.poisoned(&root().key("bridges")) {
            return None;
        }
        let known: Vec<&str> = self
            .topology
            .bridges
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        let help = match did_you_mean(name, known.iter().copied()) {
            Some(suggestion) => suggestion,
            None if known.is_empty() => "declare the bridge under `bridges:`".to_string(),
            None => format!(
                "declare it under `bridges:`, or use one of: {}",
                known.join(", ")
            ),
        };
        self.report(
            path,
            Part::Value,
            Finding::new(
                format!("unknown bridge `{}`", clip(name)),
                "no bridge of this name",
            )
            .help(help),
        );
        None
    }

    pub(super) fn check_vlan_id(&mut self, path: FieldPath, id: u16) -> bool {
        if (1..=4094).contains(&id) {
            return true;
        }
        self.report(
            path,
            Part::Value,
            Finding::new(
                format!("VLAN id {id} is out of range"),
                "not a usable VLAN id",
            )
            .help("VLAN ids are 1 to 4094 (0 and 4095 are reserved by 802.1Q)"),
        );
        false
    }

    /// The VLAN settings of one bridge port: `vlan` and `trunk` exclusive, no VLAN
    /// listed twice, ids in range. Returns the valid ids with where they are written.
    pub(super) fn check_port_vlans(
        &mut self,
        port: &FieldPath,
        vlan: Option<u16>,
        trunk: Option<&[u16]>,
    ) -> Vec<(FieldPath, u16)> {
        if vlan.is_some() && trunk.is_some() {
            self.report(
                port.key("trunk"),
                Part::Key,
                Finding::new("`vlan` and `trunk` are exclusive", "`trunk` set together with `vlan`")
                    .help("use `vlan:` for an untagged access port or `trunk:` for a tagged trunk port, not both"),
            );
        }
        let trunk = trunk.unwrap_or_default();
        let mut ids: Vec<(FieldPath, u16)> = Vec::new();
        if let Some(id) = vlan {
            ids.push((port.key("vlan"), id));
        }
        for (i, id) in trunk.iter().enumerate() {
            let path = port.key("trunk").index(i);
            if trunk[..i].contains(id) {
                self.report(
                    path,
                    Part::Value,
                    Finding::new(
                        format!("VLAN {id} is listed twice in this trunk"),
                        "listed again here",
                    )
                    .help("remove the repeated VLAN id"),
                );
            } else {
                ids.push((path, *id));
            }
        }
        ids.retain(|(path, id)| self.check_vlan_id(path.clone(), *id));
        ids
    }

    /// Every VLAN a port uses is declared on its bridge.
    pub(super) fn check_vlan_membership(
        &mut self,
        ids: &[(FieldPath, u16)],
        bridge: &str,
        declared: &[u16],
    ) {
        for (path, id) in ids {
            if declared.contains(id) {
                continue;
            }
            let has = if declared.is_empty() {
                "it declares no VLANs".to_string()
            } else {
                let list: Vec<String> = declared.iter().map(u16::to_string).collect();
                format!("it has {}", list.join(", "))
            };
            self.report(
                path.clone(),
                Part::Value,
                Finding::new(
                    format!("VLAN {id} is not declared on bridge `{}`", clip(bridge)),
                    "VLAN not on this bridge",
                )
                .help(format!(
                    "add {id} to the `vlans:` of bridge `{bridge}` ({has})"
                )),
            );
        }
    }

    /// A port on `bridge`: the bridge exists, and the port's VLANs are valid and declared.
    pub(super) fn check_port(
        &mut self,
        port: &FieldPath,
        bridge: &str,
        vlan: Option<u16>,
        trunk: Option<&[u16]>,
    ) {
        let declared = self.check_bridge_ref(port.key("bridge"), bridge);
        let ids = self.check_port_vlans(port, vlan, trunk);
        if let Some(declared) = declared {
            self.check_vlan_membership(&ids, bridge, &declared);
        }
    }

    pub(super) fn check_bridges(&mut self) {
        for (i, bridge) in self.topology.bridges.iter().enumerate() {
            let path = root().key("bridges").index(i);
            for (j, id) in bridge.vlans.iter().enumerate() {
                let at = path.key("vlans").index(j);
                if bridge.vlans[..j].contains(id) {
                    self.report(
                        at,
                        Part::Value,
                        Finding::new(
                            format!(
                                "VLAN {id} is declared twice on bridge `{}`",
                                clip(&bridge.name)
                            ),
                            "declared again here",
                        )
                        .help("remove the repeated VLAN id"),
                    );
                } else {
                    self.check_vlan_id(at, *id);
                }
            }
            if let Some(mtu) = bridge.mtu {
                if !(68..=65535).contains(&mtu) {
                    self.report(
                        path.key("mtu"),
                        Part::Value,
                        Finding::new(format!("MTU {mtu} is out of range"), "not a usable MTU")
                            .help("an MTU is 68 to 65535 bytes; 1500 is Ethernet's usual"),
                    );
                }
            }
        }
    }

    pub(super) fn check_taps(&mut self) {
        for (i, tap) in self.topology.taps.iter().enumerate() {
            let path = root().key("taps").index(i);
            self.check_port(&path, &tap.bridge, tap.vlan, tap.trunk.as_deref());
        }
    }

    pub(super) fn check_links(&mut self) {
        for (i, link) in self.topology.links.iter().enumerate() {
            let path = root().key("links").index(i);
            let a = self.check_bridge_ref(path.key("a"), &link.a);
            let b = self.check_bridge_ref(path.key("b"), &link.b);
            if link.a == link.b {
                self.report(
                    path.key("b"),
                    Part::Value,
                    Finding::new(
                        format!("link joins bridge `{}` to itself", clip(&link.a)),
                        "same bridge as `a`",
                    )
                    .help("a link is a cable between two different bridges"),
                );
            }
            let ids = self.check_port_vlans(&path, link.vlan, link.trunk.as_deref());
            for (end, declared) in [(&link.a, a), (&link.b, b)] {
                if let Some(declared) = declared {
                    self.check_vlan_membership(&ids, end, &declared);
                }
            }
        }
    }
}
