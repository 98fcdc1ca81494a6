//! Host tests of the network reconciler (root; each test in its own namespace):
//! iproute2 is the independent observer of what `up` and `down` did.

#[path = "common/basic_lab.rs"]
mod basic_lab;
#[path = "common/netns.rs"]
mod netns;

use std::path::Path;

use basic_lab::{BASIC, check_basic, check_gone, owned, stp};
use netns::{Sandbox, assert_ok, fixture, text};

#[test]
fn basic_lab_up_is_exact_idempotent_and_down_leaves_nothing() {
    let sandbox = Sandbox::new();
    let file = fixture("basic.yaml");
    let (code, _) = sandbox.plan(&file);
    assert_eq!(code, 2, "a fresh lab has changes");
    let report = sandbox.up(&file);
    assert_eq!(report["steps"], 7);
    assert_eq!(report["vlan_mode"], "vm-nics");
    check_basic(&sandbox);
    // `ip netns exec` sees the lab too.
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &sandbox.netns, "ip", "link", "show", "sw1"])
        .output()
        .unwrap();
    assert_ok(&out, "ip netns exec");

    // The second up plans nothing and writes nothing.
    let again = sandbox.up(&file);
    assert_eq!(again["steps"], 0);
    assert_eq!(again["netlink_writes"], 0);
    assert_eq!(sandbox.plan(&file).0, 0);

    let status = sandbox.kvmlab(&["status", "basic", "-o", "json"]);
    assert_ok(&status, "status");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["objects"].as_array().unwrap().len(), 7);
    assert!(
        status["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["state"] == "present")
    );

    // The namespace kvmlab made holds only the lab: it goes as a whole.
    let down = sandbox.down("basic");
    assert_eq!(down["steps"], 0, "{down}");
    assert!(
        down["notes"][0]
            .as_str()
            .unwrap()
            .starts_with("removed namespace"),
        "{down}"
    );
    check_gone(&sandbox, "basic");
    // Down again from the file: nothing to do, still fine (cleanup scripts rely on
    // it). By name, a lab that no longer exists is an error, as a mistyped name is.
    let file = file.to_str().unwrap();
    let again = sandbox.kvmlab(&["down", file, "--netns", &sandbox.netns]);
    assert_ok(&again, "down from the file again");
    let by_name = sandbox.kvmlab(&["down", "--lab", "basic"]);
    assert_eq!(by_name.status.code(), Some(1), "{}", text(&by_name));
    assert!(
        text(&by_name).contains("no lab basic"),
        "{}",
        text(&by_name)
    );
    check_gone(&sandbox, "basic");
}

/// With an interface kvmlab did not create in the lab's namespace, `down`
/// removes the lab's objects one by one and leaves that interface, and so the
/// namespace, alone.
#[test]
fn down_leaves_what_it_did_not_create_and_its_namespace() {
    let sandbox = Sandbox::new();
    let file = fixture("basic.yaml");
    sandbox.up(&file);
    sandbox.ip(&[
        "link", "add", "keep0", "type", "veth", "peer", "name", "keep1",
    ]);
    let down = sandbox.down("basic");
    assert_eq!(down["steps"], 6, "{down}");
    assert!(down["notes"].to_string().contains("keep0"), "{down}");
    assert!(
        sandbox.link("keep0").is_some(),
        "the foreign interface was touched"
    );
    for (name, _) in BASIC {
        assert!(sandbox.link(name).is_none(), "{name} left behind");
    }
    assert!(
        sandbox.netns_exists(),
        "a namespace holding keep0 was deleted"
    );
    assert!(!sandbox.lab_dir("basic").exists(), "state directory left");
}

#[test]
fn vlan_lab_runs_with_vlans_at_vm_nics_and_links_as_plain_cables() {
    let sandbox = Sandbox::new();
    let file = fixture("vlans.yaml");
    let report = sandbox.up(&file);
    assert_eq!(report["vlan_mode"], "vm-nics");
    let notes = report["notes"].to_string();
    assert!(notes.contains("plain cables"), "{notes}");
    assert_eq!(
        sandbox.marked("vlans"),
        owned(&[
            ("sw1", "bridge"),
            ("sw2", "bridge"),
            ("pc1-eth0", "tun"),
            ("pc2-eth0", "tun"),
            ("sw1-sw2", "veth"),
            ("sw2-sw1", "veth"),
        ])
    );
    let status = sandbox.kvmlab(&["status", "vlans"]);
    let status = String::from_utf8_lossy(&status.stdout).to_string();
    assert!(status.contains("VLANs enforced at VM NICs"), "{status}");
    assert_eq!(sandbox.up(&file)["netlink_writes"], 0);
    sandbox.down("vlans");
    check_gone(&sandbox, "vlans");
}

#[test]
fn host_side_vlan_tap_is_refused_naming_the_kernel_feature() {
    let sandbox = Sandbox::new();
    let file = fixture("vlan-tap.yaml");
    let out = sandbox.kvmlab(&["up", file.to_str().unwrap(), "--netns", &sandbox.netns]);
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("CONFIG_BRIDGE_VLAN_FILTERING"),
        "{message}"
    );
    assert!(message.contains("ext0"), "{message}");
    assert!(!sandbox.netns_exists(), "nothing may be created");
    assert!(!sandbox.lab_dir("vlantap").exists(), "no state may be left");
}

#[test]
fn drift_is_repaired_by_up() {
    let sandbox = Sandbox::new();
    let file = fixture("basic.yaml");
    sandbox.up(&file);
    sandbox.ip(&["link", "del", "ext0"]);
    sandbox.ip(&["link", "set", "sw1", "type", "bridge", "stp_state", "0"]);
    sandbox.ip(&["link", "set", "pc2-eth0", "nomaster"]);
    sandbox.ip(&["link", "set", "sw1-sw2", "mtu", "1500"]);

    let status = sandbox.kvmlab(&["status", "basic", "-o", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let state_of = |name: &str| {
        status["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == name)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state_of("ext0"), "missing");
    assert_eq!(state_of("sw1"), "drifted");
    assert_eq!(state_of("pc2-eth0"), "drifted");

    let (code, plan) = sandbox.plan(&file);
    assert_eq!(code, 2);
    assert_eq!(
        plan["plan"]["actions"].as_array().unwrap().len(),
        4,
        "{plan}"
    );
    sandbox.up(&file);
    check_basic(&sandbox);
    assert_eq!(sandbox.plan(&file).0, 0);
    sandbox.down("basic");
    check_gone(&sandbox, "basic");
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn edited_file_converges_and_down_works_after_the_file_is_gone() {
    let sandbox = Sandbox::new();
    let basic = std::fs::read_to_string(fixture("basic.yaml")).unwrap();
    let file = write(&sandbox.files, "lab.yaml", &basic);
    sandbox.up(&file);
    // Remove sw2 (with its link and VM), add a TAP.
    let edited = "version: 1\nname: basic\nbridges:\n  - name: sw1\n    stp: true\n    \
                  address: 10.0.0.254/24\ntaps:\n  - { name: ext0, bridge: sw1 }\n  \
                  - { name: ext1, bridge: sw1 }\nvms:\n  - name: pc1\n    nics:\n      \
                  - { bridge: sw1 }\n";
    let file = write(&sandbox.files, "lab.yaml", edited);
    let report = sandbox.up(&file);
    let actions = report["plan"]["actions"].to_string();
    assert!(actions.contains("create_tap"), "{actions}");
    assert_eq!(
        sandbox.marked("basic"),
        owned(&[
            ("sw1", "bridge"),
            ("ext0", "tun"),
            ("ext1", "tun"),
            ("pc1-eth0", "tun"),
        ])
    );
    assert_eq!(
        sandbox.bridge_ports(),
        owned(&[("ext0", "sw1"), ("ext1", "sw1"), ("pc1-eth0", "sw1")])
    );
    assert_eq!(sandbox.plan(&file).0, 0);
    std::fs::remove_file(&file).unwrap();
    // `down FILE` still knows the lab from its state.
    let out = sandbox.kvmlab(&["down", file.to_str().unwrap()]);
    assert_ok(&out, "down of a deleted file");
    check_gone(&sandbox, "basic");
}

#[test]
fn foreign_interface_with_a_wanted_name_stops_up_untouched() {
    let sandbox = Sandbox::new();
    let out = std::process::Command::new("ip")
        .args(["netns", "add", &sandbox.netns])
        .output()
        .unwrap();
    assert_ok(&out, "ip netns add");
    sandbox.ip(&["tuntap", "add", "ext0", "mode", "tap"]);
    sandbox.ip(&["link", "set", "ext0", "alias", "someone-else"]);
    let before = sandbox.link("ext0").unwrap();
    let file = fixture("basic.yaml");
    let out = sandbox.kvmlab(&["up", file.to_str().unwrap(), "--netns", &sandbox.netns]);
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("ext0") && message.contains("created by lab basic"),
        "{message}"
    );
    assert_eq!(sandbox.link("ext0").unwrap(), before, "ext0 was touched");
    assert!(sandbox.marked("basic").is_empty(), "up changed something");
    // Down of the lab must not touch it either, nor remove a namespace it did not make.
    sandbox.kvmlab(&["down", file.to_str().unwrap(), "--netns", &sandbox.netns]);
    assert_eq!(sandbox.link("ext0").unwrap(), before);
    assert!(sandbox.netns_exists());
}

#[test]
fn busy_lab_fails_naming_the_lock_holder() {
    use nix::fcntl::{Flock, FlockArg};
    use std::io::Write;
    let sandbox = Sandbox::new();
    let dir = sandbox.lab_dir("basic");
    std::fs::create_dir_all(&dir).unwrap();
    let mut file = std::fs::File::create(dir.join("lock")).unwrap();
    write!(file, "424242").unwrap();
    let _held = Flock::lock(file, FlockArg::LockExclusiveNonblock).unwrap();
    let fixture = fixture("basic.yaml");
    let out = sandbox.kvmlab_env(
        &["up", fixture.to_str().unwrap(), "--netns", &sandbox.netns],
        &[("KVMLAB_LOCK_WAIT_MS", "300")],
    );
    assert!(!out.status.success());
    let message = text(&out);
    assert!(message.contains("pid 424242"), "{message}");
    assert!(!sandbox.netns_exists());
}

/// Without CAP_NET_ADMIN, `up` says so and changes nothing.
#[test]
fn up_without_cap_net_admin_is_a_clear_error() {
    let sandbox = Sandbox::new();
    let file = fixture("basic.yaml");
    let out = std::process::Command::new("setpriv")
        .args(["--bounding-set=-net_admin", "--inh-caps=-net_admin", "--"])
        .arg(netns::kvmlab_binary())
        .args(["up", file.to_str().unwrap(), "--netns", &sandbox.netns])
        .env("KVMLAB_STATE_DIR", &sandbox.state)
        .output()
        .expect("setpriv (util-linux) runs");
    assert!(!out.status.success());
    assert!(text(&out).contains("CAP_NET_ADMIN"), "{}", text(&out));
    assert!(!sandbox.netns_exists());
    assert!(!sandbox.lab_dir("basic").exists());
}

/// Every lab under `labs/` (once the main branch's labs are merged) and every
/// fixture here: `up` creates exactly what the topology declares (checked with
/// iproute2), a second `up` writes nothing, `down` leaves nothing. A lab with
/// host-side VLAN ports must instead be refused naming the missing kernel feature.
#[test]
fn every_lab_comes_up_exactly_and_goes_away() {
    use kvmlab::plan::{Desired, PortKind};
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<std::path::PathBuf> = ["labs", "tests/fixtures/net"]
        .iter()
        .flat_map(|d| {
            std::fs::read_dir(root.join(d))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let Ok(loaded) = kvmlab::topology::load(&file) else {
            continue; // e.g. a lab naming a kernel image that is not installed
        };
        let topology = &loaded.topology;
        let desired = Desired::from_topology(topology, &topology.name);
        let sandbox = Sandbox::new();
        let path = file.to_str().unwrap();
        if !desired.host_vlan_ports().is_empty() {
            let out = sandbox.kvmlab(&["up", path, "--netns", &sandbox.netns]);
            assert!(!out.status.success(), "{path}");
            assert!(
                text(&out).contains("CONFIG_BRIDGE_VLAN_FILTERING"),
                "{path}"
            );
            continue;
        }
        sandbox.up(&file);
        let mut expected: Vec<(String, String)> = desired
            .bridges
            .iter()
            .map(|b| (b.name.clone(), "bridge".to_string()))
            .chain(desired.ports.iter().map(|p| {
                let kind = if matches!(p.kind, PortKind::Veth { .. }) {
                    "veth"
                } else {
                    "tun"
                };
                (p.name.clone(), kind.to_string())
            }))
            .collect();
        expected.sort();
        assert_eq!(sandbox.marked(&topology.name), expected, "{path}");
        let mut ports: Vec<(String, String)> = desired
            .ports
            .iter()
            .map(|p| (p.name.clone(), p.bridge.clone()))
            .collect();
        ports.sort();
        assert_eq!(sandbox.bridge_ports(), ports, "{path}");
        for bridge in &desired.bridges {
            assert_eq!(stp(&sandbox, &bridge.name), u64::from(bridge.stp), "{path}");
        }
        assert_eq!(sandbox.up(&file)["netlink_writes"], 0, "{path}");
        sandbox.down(&topology.name);
        check_gone(&sandbox, &topology.name);
    }
}

/// `plan` says what `up` would do, refusals included: a lab that runs in one
/// namespace is refused in another by both, with the same error.
#[test]
fn plan_refuses_a_namespace_change_as_up_does() {
    let sandbox = Sandbox::new();
    let file = fixture("basic.yaml");
    sandbox.up(&file);
    let file = file.to_str().unwrap();
    // basic.yaml names no namespace: without --netns the lab would be the host's.
    let plan = sandbox.kvmlab(&["plan", file]);
    let up = sandbox.kvmlab(&["up", file]);
    for (what, out) in [("plan", &plan), ("up", &up)] {
        assert_eq!(out.status.code(), Some(1), "{what}: {}", text(out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("kvmlab::netns_changed"), "{what}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "lab basic runs in namespace {}, not (host)",
                sandbox.netns
            )),
            "{what}: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{what}: {}", text(out));
    }
    // In its own namespace, the plan is still empty.
    assert_eq!(sandbox.plan(&fixture("basic.yaml")).0, 0);
    sandbox.down("basic");
    check_gone(&sandbox, "basic");
}

/// How VLANs are enforced is said once, and only for a lab that has VLANs.
#[test]
fn the_vlan_note_is_only_for_labs_with_vlans() {
    const NOTE: &str = "VLANs enforced";
    let sandbox = Sandbox::new();
    for (file, lab, vlans) in [
        ("basic.yaml", "basic", false),
        ("vlans.yaml", "vlans", true),
    ] {
        let file = fixture(file);
        let up = sandbox.kvmlab(&["up", file.to_str().unwrap(), "--netns", &sandbox.netns]);
        let status = sandbox.kvmlab(&["status", lab]);
        let down = sandbox.kvmlab(&["down", "--lab", lab]);
        for (what, out) in [("up", &up), ("status", &status), ("down", &down)] {
            assert_ok(out, what);
            let said = text(out).matches(NOTE).count();
            let expected = usize::from(vlans && what != "down");
            assert_eq!(said, expected, "{lab}: {what}: {}", text(out));
        }
        check_gone(&sandbox, lab);
    }
}

/// `up` and `down` change the host: a reader that goes away must not stop them
/// half-way. They finish their work and exit 0; their lines go nowhere.
#[test]
fn up_and_down_finish_when_their_reader_goes_away() {
    let sandbox = Sandbox::new();
    let file = fixture("basic.yaml");
    let closed = || {
        let (reader, writer) = nix::unistd::pipe().expect("a pipe");
        drop(reader);
        std::process::Stdio::from(writer)
    };
    let run = |args: &[&str]| {
        std::process::Command::new(netns::kvmlab_binary())
            .args(args)
            .env("KVMLAB_STATE_DIR", &sandbox.state)
            .stdout(closed())
            .output()
            .expect("kvmlab runs")
    };
    let up = run(&["up", file.to_str().unwrap(), "--netns", &sandbox.netns]);
    assert_ok(&up, "up into a closed pipe");
    let said = text(&up);
    assert!(
        !said.contains("panicked") && !said.contains("Broken pipe"),
        "{said}"
    );
    check_basic(&sandbox);
    let down = run(&["down", "--lab", "basic"]);
    assert_ok(&down, "down into a closed pipe");
    check_gone(&sandbox, "basic");
}
