//! Drawings of a lab for slides and notes: Graphviz DOT and Mermaid.
//!
//! Bridges, TAPs and VMs are nodes; VM NICs and TAP ports are edges to their bridge,
//! labelled with the interface, its VLANs and address; links are edges between bridges.

use std::fmt::Write;

use crate::topology::{Topology, derive, validate::link_end_names};

/// A node of the drawing.
struct Node {
    id: String,
    lines: Vec<String>,
    kind: NodeKind,
}

#[derive(Clone, Copy, PartialEq)]
enum NodeKind {
    Bridge,
    Tap,
    Vm,
}

/// An edge of the drawing.
struct Edge {
    from: String,
    to: String,
    lines: Vec<String>,
    link: bool,
}

fn vlan_text(vlan: Option<u16>, trunk: Option<&[u16]>) -> Option<String> {
    match (vlan, trunk) {
        (Some(id), _) => Some(format!("VLAN {id}")),
        (None, Some(ids)) => {
            let ids: Vec<String> = ids.iter().map(u16::to_string).collect();
            Some(format!("trunk {}", ids.join(",")))
        }
        (None, None) => None,
    }
}

fn elements(t: &Topology) -> (Vec<Node>, Vec<Edge>) {
    let bridge_id = |name: &str| {
        t.bridges
            .iter()
            .position(|b| b.name == name)
            .map_or_else(|| format!("missing_{name}"), |i| format!("b{i}"))
    };
    let mut nodes = Vec::new();
    let mut edges = Vec::new();
    for (i, b) in t.bridges.iter().enumerate() {
        let mut lines = vec![b.name.clone()];
        if b.stp {
            lines.push("STP on".into());
        }
        if !b.vlans.is_empty() {
            let ids: Vec<String> = b.vlans.iter().map(u16::to_string).collect();
            lines.push(format!("VLANs {}", ids.join(",")));
        }
        if let Some(address) = &b.address {
            lines.push(address.clone());
        }
        nodes.push(Node {
            id: format!("b{i}"),
            lines,
            kind: NodeKind::Bridge,
        });
    }
    for (i, tap) in t.taps.iter().enumerate() {
        let id = format!("t{i}");
        nodes.push(Node {
            id: id.clone(),
            lines: vec![tap.name.clone(), "TAP".into()],
            kind: NodeKind::Tap,
        });
        edges.push(Edge {
            from: id,
            to: bridge_id(&tap.bridge),
            lines: vlan_text(tap.vlan, tap.trunk.as_deref())
                .into_iter()
                .collect(),
            link: false,
        });
    }
    for (i, vm) in t.vms.iter().enumerate() {
        let id = format!("v{i}");
        let cpus = if vm.vcpus == 1 { "vCPU" } else { "vCPUs" };
        let mut lines = vec![
            vm.name.clone(),
            format!("{} {cpus}, {}", vm.vcpus, vm.memory),
        ];
        if vm.forward {
            lines.push("router (forwards IPv4)".into());
        }
        lines.extend(vm.routes.iter().map(|r| format!("{} via {}", r.to, r.via)));
        nodes.push(Node {
            id: id.clone(),
            lines,
            kind: NodeKind::Vm,
        });
        for (n, nic) in vm.nics.iter().enumerate() {
            let mut lines = vec![format!("eth{n} ({})", derive::nic_tap_name(&vm.name, n))];
            lines.extend(vlan_text(nic.vlan, nic.trunk.as_deref()));
            lines.extend(nic.ip.clone());
            lines.extend(
                nic.vlan_ips
                    .iter()
                    .map(|(v, ip)| format!("{ip} (VLAN {v})")),
            );
            lines.extend(nic.gateway.as_ref().map(|gw| format!("gateway {gw}")));
            edges.push(Edge {
                from: id.clone(),
                to: bridge_id(&nic.bridge),
                lines,
                link: false,
            });
        }
    }
    for (link, (a_end, b_end)) in t.links.iter().zip(link_end_names(t)) {
        let mut lines = vec![format!("{a_end} / {b_end}")];
        lines.extend(vlan_text(link.vlan, link.trunk.as_deref()));
        edges.push(Edge {
            from: bridge_id(&link.a),
            to: bridge_id(&link.b),
            lines,
            link: true,
        });
    }
    (nodes, edges)
}

fn quoted(lines: &[String], separator: &str) -> String {
    lines
        .iter()
        .map(|l| l.replace('\\', "\\\\").replace('"', "'"))
        .collect::<Vec<_>>()
        .join(separator)
}

/// The lab as a Graphviz graph: `kvmlab graph lab.yaml | dot -Tsvg > lab.svg`.
pub fn to_dot(t: &Topology) -> String {
    let (nodes, edges) = elements(t);
    let mut out = String::new();
    let _ = writeln!(out, "graph \"{}\" {{", t.name);
    let _ = writeln!(out, "  label=\"lab {}\";", t.name);
    let _ = writeln!(out, "  node [fontname=\"Helvetica\"];");
    let _ = writeln!(out, "  edge [fontname=\"Helvetica\", fontsize=10];");
    for node in &nodes {
        let shape = match node.kind {
            NodeKind::Bridge => "box, style=\"rounded,filled\", fillcolor=\"#dde8f7\"",
            NodeKind::Tap => "note",
            NodeKind::Vm => "ellipse",
        };
        let _ = writeln!(
            out,
            "  {} [shape={shape}, label=\"{}\"];",
            node.id,
            quoted(&node.lines, "\\n")
        );
    }
    for edge in &edges {
        let style = if edge.link { ", penwidth=2" } else { "" };
        let _ = writeln!(
            out,
            "  {} -- {} [label=\"{}\"{style}];",
            edge.from,
            edge.to,
            quoted(&edge.lines, "\\n")
        );
    }
    out.push_str("}\n");
    out
}

/// The lab as a Mermaid flowchart, for Markdown slides and READMEs.
pub fn to_mermaid(t: &Topology) -> String {
    let (nodes, edges) = elements(t);
    let mut out = String::from("flowchart LR\n");
    for node in &nodes {
        let label = quoted(&node.lines, "<br/>");
        let _ = match node.kind {
            NodeKind::Bridge => writeln!(out, "  {}[\"{label}\"]", node.id),
            NodeKind::Tap => writeln!(out, "  {}>\"{label}\"]", node.id),
            NodeKind::Vm => writeln!(out, "  {}([\"{label}\"])", node.id),
        };
    }
    for edge in &edges {
        let arrow = if edge.link { "===" } else { "---" };
        let _ = writeln!(
            out,
            "  {} {arrow}|\"{}\"| {}",
            edge.from,
            quoted(&edge.lines, "<br/>"),
            edge.to
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Topology {
        serde_yaml::from_str(
            "version: 1\nname: demo\nbridges:\n  - { name: sw1, stp: true, vlans: [10, 20] }\n  - { name: sw2 }\n\
             taps:\n  - { name: ext0, bridge: sw2 }\nlinks:\n  - { a: sw1, b: sw2, trunk: [10] }\n\
             vms:\n  - name: pc1\n    nics: [{ bridge: sw1, vlan: 10, ip: 10.0.10.1/24 }]\n",
        )
        .unwrap()
    }

    #[test]
    fn routers_routes_and_gateways_are_drawn() {
        let t: Topology = serde_yaml::from_str(
            "version: 1\nname: lab\nbridges: [{ name: sw1 }, { name: sw2 }]\n\
             vms:\n  - name: r1\n    forward: true\n    routes: [{ to: 10.9.0.0/24, via: 10.0.2.9 }]\n    nics:\n      - { bridge: sw1, ip: 10.0.1.254/24 }\n      - { bridge: sw2, ip: 10.0.2.254/24, gateway: 10.0.2.1 }\n",
        )
        .unwrap();
        let dot = to_dot(&t);
        assert!(
            dot.contains(
                "label=\"r1\\n1 vCPU, 64MiB\\nrouter (forwards IPv4)\\n10.9.0.0/24 via 10.0.2.9\""
            ),
            "{dot}"
        );
        assert!(dot.contains("10.0.2.254/24\\ngateway 10.0.2.1\""), "{dot}");
    }

    #[test]
    fn dot_has_every_node_and_edge() {
        let dot = to_dot(&lab());
        assert!(dot.starts_with("graph \"demo\" {"));
        assert!(dot.contains("b0 [shape=box"));
        assert!(dot.contains("label=\"sw1\\nSTP on\\nVLANs 10,20\""));
        assert!(dot.contains("t0 -- b1"));
        assert!(dot.contains("v0 -- b0 [label=\"eth0 (pc1-eth0)\\nVLAN 10\\n10.0.10.1/24\"]"));
        assert!(dot.contains("b0 -- b1 [label=\"sw1-sw2 / sw2-sw1\\ntrunk 10\", penwidth=2]"));
    }

    #[test]
    fn mermaid_uses_safe_ids_and_html_breaks() {
        let mermaid = to_mermaid(&lab());
        assert!(mermaid.starts_with("flowchart LR\n"));
        assert!(mermaid.contains("v0([\"pc1<br/>1 vCPU, 64MiB\"])"));
        assert!(mermaid.contains("v0 ---|\"eth0 (pc1-eth0)<br/>VLAN 10<br/>10.0.10.1/24\"| b0"));
        assert!(mermaid.contains("b0 ===|"));
    }
}
