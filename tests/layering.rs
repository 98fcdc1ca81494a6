//! The shape of the code (DESIGN.md, "Layout of the code"): dependencies point one
//! way, cli → lab → (apply, plan, observe, runner, graph) → (topology, state, netns,
//! netlink) → the engine and the host–guest contract. A module that names a module of
//! a higher layer, or modules of one layer that name each other in a circle, fail here
//! with the file and line to fix.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of the root crate and its layer (higher uses lower).
const LAYERS: &[(&str, u8)] = &[
    ("cli", 4),
    ("lab", 3),
    ("apply", 2),
    ("plan", 2),
    ("observe", 2),
    ("runner", 2),
    ("graph", 2),
    ("topology", 1),
    ("state", 1),
    ("netns", 1),
    ("netlink", 1),
];

/// Crates the engine and the contract must never depend on.
const NOT_BELOW: &[&str] = &[
    "kvmlab",
    "rtnetlink",
    "netlink-packet-route",
    "netlink-sys",
    "serde_yaml",
    "miette",
    "clap",
    "tokio",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/lab/up.rs` → `lab`).
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(root().join("src")).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// The top-level modules named by `crate::...` paths in `source`, with line numbers:
/// `use crate::plan::X`, `crate::state::read_json(...)`, `use crate::{plan, state}`.
fn crate_references(source: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (index, line) in source.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let preceded_by_ident = rest[..at]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
            if !preceded_by_ident {
                if let Some(group) = after.strip_prefix('{') {
                    let group = group.split('}').next().unwrap_or("");
                    for item in group.split(',') {
                        let name: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if !name.is_empty() {
                            found.push((index + 1, name));
                        }
                    }
                } else {
                    let name: String = after
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.push((index + 1, name));
                    }
                }
            }
            rest = after;
        }
    }
    found
}

/// Every `crate::` reference in the root crate that climbs a layer, and the graph of
/// references between modules of one layer.
fn check_layers() -> (Vec<String>, BTreeMap<String, BTreeSet<String>>) {
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    files.sort();
    let mut climbing = Vec::new();
    let mut lateral: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(file) else {
            continue;
        };
        let own = *layer.get(module.as_str()).unwrap_or_else(|| {
            panic!(
                "{}: module `{module}` has no layer: add it to LAYERS in tests/layering.rs (and to DESIGN.md's picture)",
                file.display()
            )
        });
        let source = std::fs::read_to_string(file).unwrap();
        for (line, target) in crate_references(&source) {
            if target == module {
                continue;
            }
            let Some(&theirs) = layer.get(target.as_str()) else {
                continue;
            };
            if theirs > own {
                climbing.push(format!(
                    "{}:{line}: `{module}` (layer {own}) uses `crate::{target}` (layer {theirs}), a layer above it",
                    file.strip_prefix(root()).unwrap().display()
                ));
            } else if theirs == own {
                lateral.entry(module.clone()).or_default().insert(target);
            }
        }
    }
    (climbing, lateral)
}

/// A circle in `graph`, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_uses_a_layer_above_it() {
    let (climbing, _) = check_layers();
    assert!(
        climbing.is_empty(),
        "imports that climb a layer (move the type to the layer that owns it):\n{}",
        climbing.join("\n")
    );
}

#[test]
fn modules_of_one_layer_do_not_use_each_other_in_a_circle() {
    let (_, lateral) = check_layers();
    if let Some(cycle) = find_cycle(&lateral) {
        panic!("modules use each other in a circle: {}", cycle.join(" → "));
    }
}

#[test]
fn the_engine_and_the_contract_depend_on_nothing_above_them() {
    for (krate, allowed_local) in [("vmm", &["kvmlab-guest-proto"][..]), ("guest-proto", &[])] {
        let manifest = root().join("crates").join(krate).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            if section != "[dependencies]" || line.is_empty() || line.starts_with('#') {
                continue;
            }
            let name = line.split(['=', '.', ' ']).next().unwrap();
            assert!(
                !NOT_BELOW.contains(&name),
                "crates/{krate} depends on `{name}`, which belongs to a layer above it"
            );
            if name.starts_with("kvmlab") {
                assert!(
                    allowed_local.contains(&name),
                    "crates/{krate} depends on `{name}`"
                );
            }
            if krate == "guest-proto" {
                panic!(
                    "crates/guest-proto must depend on nothing (it builds for the guest's freestanding target), yet names `{name}`"
                );
            }
        }
    }
}

#[test]
fn the_checker_sees_every_form_of_reference() {
    let source = "use crate::plan::Desired;\nuse crate::{state, netns::enter};\n    let x = crate::cli::main(); // crate::lab in a comment\nmy_crate::graph::x();\n";
    assert_eq!(
        crate_references(source),
        [
            (1, "plan".to_string()),
            (2, "state".to_string()),
            (2, "netns".to_string()),
            (3, "cli".to_string()),
        ]
    );
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "a".into()])
    );
    graph.remove("b");
    assert_eq!(find_cycle(&graph), None);
}
