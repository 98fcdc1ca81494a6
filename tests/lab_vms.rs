//! `kvmlab up`/`down` end to end with VMs (root, /dev/kvm; each lab in a fresh
//! namespace): every lab of `labs/` that needs no kernel comes up ready, its guests'
//! reports show the pings its comments promise, `status` lists it, and `down`
//! leaves nothing behind; idempotence, crash recovery, restarts on change, and a
//! VM that never becomes ready. Every wait is bounded; a guard takes the lab down
//! and kills leftover VM processes even when a test fails.

#[path = "common/netns.rs"]
mod netns;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kvmlab_guest_proto::ipv4::Dotted;
use kvmlab_guest_proto::report::{DONE_LINE, ProbeKind, Report};
use netns::{Sandbox, assert_ok, text};
use serde_json::Value;

/// How long guests get to finish their pings (the STP lab needs about 45 s).
const DONE_TIMEOUT: Duration = Duration::from_secs(120);

fn lab_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("labs")
        .join(format!("{name}.yaml"))
}

/// A lab brought up in a sandbox; taken down (and its VM processes killed) on drop.
struct Lab {
    sandbox: Sandbox,
    name: String,
}

impl Lab {
    fn new(name: &str) -> Lab {
        assert!(
            Path::new("/dev/kvm").exists(),
            "/dev/kvm is missing: these tests boot VMs (CI has it)"
        );
        Lab {
            sandbox: Sandbox::new(),
            name: name.to_string(),
        }
    }

    fn kvmlab(&self, args: &[&str]) -> std::process::Output {
        self.sandbox.kvmlab(args)
    }

    /// `up FILE --netns ours -o json` with extra arguments; the output, unchecked.
    fn try_up(&self, file: &Path, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "up",
            file.to_str().unwrap(),
            "--netns",
            &self.sandbox.netns,
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        self.kvmlab(&args)
    }

    fn up(&self, file: &Path) -> Value {
        let out = self.try_up(file, &[]);
        assert_ok(&out, "up");
        serde_json::from_slice(&out.stdout).expect("up prints JSON")
    }

    fn status(&self) -> Value {
        let out = self.kvmlab(&["status", &self.name, "-o", "json"]);
        assert_ok(&out, "status");
        serde_json::from_slice(&out.stdout).expect("status prints JSON")
    }

    fn vm_dir(&self, vm: &str) -> PathBuf {
        self.sandbox.lab_dir(&self.name).join("vms").join(vm)
    }

    fn pid(&self, vm: &str) -> i32 {
        let status = self.status();
        let entry = status["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == vm)
            .unwrap_or_else(|| panic!("status lists no VM {vm}: {status}"));
        entry["pid"].as_i64().expect("a running VM has a pid") as i32
    }

    fn serial(&self, vm: &str) -> String {
        std::fs::read_to_string(self.vm_dir(vm).join("serial.log")).unwrap_or_default()
    }

    /// Waits until `vm` printed its `done` report; returns its report lines.
    fn reports(&self, vm: &str) -> Vec<Report> {
        let deadline = Instant::now() + DONE_TIMEOUT;
        loop {
            let log = self.serial(vm);
            if log.contains(DONE_LINE) {
                return log.lines().filter_map(Report::parse).collect();
            }
            assert!(
                Instant::now() < deadline,
                "VM {vm} did not finish its pings within {DONE_TIMEOUT:?}; console:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Pings `addr` from the host side, inside the lab's namespace.
    fn host_ping(&self, addr: &str) -> bool {
        Command::new("timeout")
            .args(["10", "ip", "netns", "exec", &self.sandbox.netns])
            .args(["ping", "-c", "3", "-i", "0.2", "-W", "1", addr])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Processes running a VM of this sandbox.
    fn vm_processes(&self) -> Vec<i32> {
        let state = self.sandbox.state.to_string_lossy().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                cmdline.contains("__vmm") && cmdline.contains(&state)
            })
            .collect()
    }

    /// `down`, then checks that nothing is left: no VM process, no namespace (so no
    /// marked interface), no state directory.
    fn down_clean(&self) {
        let out = self.kvmlab(&["down", "--lab", &self.name]);
        assert_ok(&out, "down");
        assert_eq!(self.vm_processes(), Vec::<i32>::new(), "VM processes left");
        assert!(!self.sandbox.netns_exists(), "namespace left behind");
        assert!(
            !self.sandbox.lab_dir(&self.name).exists(),
            "state directory left behind"
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.kvmlab(&["down", "--lab", &self.name]);
        for pid in self.vm_processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The ping report of `vm` for `target`: (sent, received).
fn ping_result(reports: &[Report], vm: &str, target: &str) -> (u64, u64) {
    let report = reports
        .iter()
        .find_map(|r| match r {
            Report::Probe(p)
                if p.kind == ProbeKind::Ping && Dotted(p.target).to_string() == target =>
            {
                Some(p)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{vm} reported no ping of {target}: {reports:?}"));
    (u64::from(report.sent), u64::from(report.received))
}

/// Brings lab `name` up, checks the promised pings (`(vm, target, answered)`),
/// status and the host's view, then takes it down and checks nothing is left.
fn lab_comes_up_and_goes_down(name: &str, pings: &[(&str, &str, bool)], host_pings: &[&str]) {
    let lab = Lab::new(name);
    let file = lab_file(name);
    let report = lab.up(&file);
    let topology: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let vms: Vec<String> = topology["vms"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect();
    let started: Vec<&str> = report["vms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "start_vm")
        .map(|a| a["vm"].as_str().unwrap())
        .collect();
    assert_eq!(started, vms, "up starts every VM: {report}");
    for vm in &vms {
        assert!(
            lab.serial(vm).contains("kvmlab-guest: ready"),
            "up returned before {vm} was ready"
        );
    }

    let status = lab.status();
    for vm in &vms {
        let entry = status["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == vm.as_str())
            .unwrap_or_else(|| panic!("status lacks {vm}: {status}"));
        assert_eq!(entry["state"], "running", "{vm}: {entry}");
        assert!(entry["rss_bytes"].as_u64().unwrap_or(0) > 0);
        assert!(!entry["nics"].as_array().unwrap().is_empty());
    }
    for object in status["objects"].as_array().unwrap() {
        assert_eq!(object["state"], "present", "{object}");
    }

    for &(vm, target, answered) in pings {
        let reports = lab.reports(vm);
        let (sent, received) = ping_result(&reports, vm, target);
        assert!(sent > 0, "{vm} sent no ping to {target}");
        if answered {
            assert!(
                received > 0,
                "{vm} got no answer from {target}: {reports:?}"
            );
        } else {
            assert_eq!(received, 0, "{vm} reached {target}, which it must not");
        }
    }
    for addr in host_pings {
        assert!(lab.host_ping(addr), "the host cannot ping {addr}");
    }
    lab.down_clean();
}

#[test]
fn two_pcs_comes_up_pings_and_goes_down_clean() {
    lab_comes_up_and_goes_down(
        "two-pcs",
        &[("pc1", "10.0.0.2", true), ("pc2", "10.0.0.1", true)],
        &["10.0.0.1", "10.0.0.2"],
    );
}

#[test]
fn two_vlans_comes_up_pings_and_goes_down_clean() {
    lab_comes_up_and_goes_down(
        "two-vlans",
        &[
            ("pc1", "10.0.10.2", true),
            ("pc2", "10.0.10.1", true),
            ("pc3", "10.0.20.4", true),
            ("pc4", "10.0.20.3", true),
            ("pc5", "10.0.10.1", false),
            ("server", "10.0.10.1", true),
            ("server", "10.0.20.3", true),
        ],
        &[],
    );
}

#[test]
fn trunk_comes_up_pings_and_goes_down_clean() {
    lab_comes_up_and_goes_down(
        "trunk",
        &[
            ("staff1", "10.10.0.2", true),
            ("student1", "10.20.0.2", true),
            ("staff2", "10.10.0.1", true),
            ("student2", "10.20.0.1", true),
        ],
        &[],
    );
}

#[test]
fn router_comes_up_pings_across_and_goes_down_clean() {
    lab_comes_up_and_goes_down(
        "router",
        &[("pc1", "10.0.2.2", true), ("pc2", "10.0.1.1", true)],
        &[],
    );
}

#[test]
fn router_on_a_stick_comes_up_pings_across_vlans_and_goes_down_clean() {
    lab_comes_up_and_goes_down(
        "router-on-a-stick",
        &[
            ("pc1", "10.0.20.2", true),
            ("pc2", "10.0.10.1", true),
            ("pc3", "10.0.10.1", false),
        ],
        &[],
    );
}

#[test]
fn two_routers_come_up_ping_end_to_end_and_go_down_clean() {
    lab_comes_up_and_goes_down(
        "two-routers",
        &[("pc1", "10.0.3.3", true), ("pc3", "10.0.1.1", true)],
        &[],
    );
}

#[test]
fn stp_loop_comes_up_pings_and_goes_down_clean() {
    lab_comes_up_and_goes_down("stp-loop", &[("pc1", "192.168.1.3", true)], &[]);
}

#[test]
fn up_twice_changes_nothing_and_restarts_no_vm() {
    let lab = Lab::new("two-pcs");
    let file = lab_file("two-pcs");
    lab.up(&file);
    let pids = (lab.pid("pc1"), lab.pid("pc2"));
    let again = lab.up(&file);
    assert_eq!(again["plan"]["actions"], serde_json::json!([]), "{again}");
    assert_eq!(again["vms"], serde_json::json!([]), "{again}");
    assert_eq!((lab.pid("pc1"), lab.pid("pc2")), pids, "a VM was restarted");
    lab.down_clean();
}

#[test]
fn a_killed_vm_shows_crashed_and_only_it_restarts() {
    let lab = Lab::new("two-pcs");
    let file = lab_file("two-pcs");
    lab.up(&file);
    let (pc1, pc2) = (lab.pid("pc1"), lab.pid("pc2"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pc1),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = lab.status();
        let state = status["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "pc1")
            .map(|v| v["state"].clone());
        if state == Some(Value::from("crashed")) {
            break;
        }
        assert!(Instant::now() < deadline, "pc1 not shown crashed: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(lab.host_ping("10.0.0.2"), "pc2 stopped answering");
    let report = lab.up(&file);
    assert_eq!(
        report["vms"],
        serde_json::json!([{"action": "restart_vm", "vm": "pc1", "reason": "crashed (its process is gone)"}]),
        "{report}"
    );
    assert_eq!(lab.pid("pc2"), pc2, "pc2 was restarted");
    assert_ne!(lab.pid("pc1"), pc1);
    assert!(
        lab.host_ping("10.0.0.1"),
        "the restarted pc1 does not answer"
    );
    lab.down_clean();
}

#[test]
fn a_memory_change_restarts_only_that_vm() {
    let lab = Lab::new("two-pcs");
    let file = lab_file("two-pcs");
    lab.up(&file);
    let pc2 = lab.pid("pc2");
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replacen("  - name: pc1\n", "  - name: pc1\n    memory: 128MiB\n", 1);
    assert_ne!(edited, text);
    let copy = lab.sandbox.files.join("two-pcs.yaml");
    std::fs::write(&copy, edited).unwrap();
    let report = lab.up(&copy);
    assert_eq!(
        report["vms"],
        serde_json::json!([{"action": "restart_vm", "vm": "pc1", "reason": "memory 64MiB -> 128MiB"}]),
        "{report}"
    );
    assert_eq!(lab.pid("pc2"), pc2, "pc2 was restarted");
    let status = lab.status();
    let pc1 = status["vms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "pc1")
        .unwrap()
        .clone();
    assert_eq!(pc1["memory_bytes"], 128u64 << 20);
    lab.down_clean();
}

#[test]
fn a_vm_that_never_becomes_ready_fails_up_and_down_still_cleans() {
    let lab = Lab::new("two-pcs");
    let original = std::fs::read_to_string(lab_file("two-pcs")).unwrap();
    let edited = original.replacen(
        "  - name: pc2\n",
        "  - name: pc2\n    ready: \"this text never appears\"\n",
        1,
    );
    let copy = lab.sandbox.files.join("two-pcs.yaml");
    std::fs::write(&copy, edited).unwrap();
    let began = Instant::now();
    let out = lab.try_up(&copy, &["--ready-timeout", "3"]);
    assert!(!out.status.success(), "up succeeded: {}", text(&out));
    assert!(began.elapsed() < Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VM pc2 did not come up"), "{stderr}");
    assert!(stderr.contains("this text never appears"), "{stderr}");
    // The console tail: what the guest did print.
    assert!(stderr.contains("kvmlab-guest: ready"), "{stderr}");
    lab.down_clean();
}

#[test]
fn logs_inspect_and_stats_look_into_the_running_lab() {
    let lab = Lab::new("two-pcs");
    lab.up(&lab_file("two-pcs"));
    lab.reports("pc1");
    lab.reports("pc2");

    let out = lab.kvmlab(&["logs", "two-pcs", "pc1"]);
    assert_ok(&out, "logs");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("\"type\":\"ping\",\"target\":\"10.0.0.2\""),
        "{log}"
    );

    let out = lab.kvmlab(&["inspect", "two-pcs", "sw1", "-o", "json"]);
    assert_ok(&out, "inspect");
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = lab.status();
    for vm in status["vms"].as_array().unwrap() {
        let nic = &vm["nics"][0];
        let port = view["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == nic["tap"])
            .unwrap_or_else(|| panic!("inspect lacks port {}: {view}", nic["tap"]));
        assert_eq!(port["stp_state"], "forwarding");
        assert!(
            view["fdb"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["mac"] == nic["mac"]
                    && e["port"] == nic["tap"]
                    && e["kind"] == "learned"),
            "the bridge did not learn {} on {}: {view}",
            nic["mac"],
            nic["tap"]
        );
    }

    // A running VM's exit counts so far, asked of it and taken now; asked
    // twice, the counts go on.
    let pid = lab.pid("pc1");
    let live = |what: &str| -> Value {
        let out = lab.kvmlab(&["stats", "two-pcs", "pc1", "-o", "json"]);
        assert_ok(&out, what);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let first = live("live stats");
    assert_eq!(first["outcome"], "running", "{first}");
    assert_eq!(first["vcpus"], 1, "{first}");
    assert!(first["total_exits"].as_u64().unwrap() > 0, "{first}");
    assert!(
        first["by_device"]["serial 0x3f8-0x3ff"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{first}"
    );
    assert!(first["nics"]["pc1-eth0"].is_object(), "{first}");
    let second = live("live stats again");
    assert!(
        second["taken_at_ms"].as_u64() >= first["taken_at_ms"].as_u64()
            && second["total_exits"].as_u64() >= first["total_exits"].as_u64(),
        "{first}\n{second}"
    );
    assert_eq!(
        lab.pid("pc1"),
        pid,
        "asking for statistics keeps the VM running"
    );
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pc1's VM process survived the question"
    );

    // SIGTERM stops the VM cleanly and saves its final exit counts.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "pc1 did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = lab.kvmlab(&["stats", "two-pcs", "pc1", "-o", "json"]);
    assert_ok(&out, "stats");
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["outcome"], "stopped by the host", "{stats}");
    lab.down_clean();
}

/// Runs kvmlab as `nobody` (uid and gid 65534, no groups, no capabilities).
fn kvmlab_as_nobody(lab: &Lab, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(netns::kvmlab_binary())
        .args(args)
        .env("KVMLAB_STATE_DIR", &lab.sandbox.state)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("setpriv (util-linux) runs")
}

/// A user without the rights is told up front that a command needs root, not an
/// errno from half-way through.
#[test]
fn commands_say_up_front_that_they_need_root() {
    let lab = Lab::new("two-pcs");
    lab.up(&lab_file("two-pcs"));
    for (args, unsaid) in [
        (&["status", "two-pcs"][..], "Operation not permitted"),
        (&["console", "two-pcs", "pc1"], "connected to"),
        (&["stats", "two-pcs", "pc1"], "reading"),
        (&["inspect", "two-pcs", "sw1"], "Operation not permitted"),
    ] {
        let out = kvmlab_as_nobody(&lab, args);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {said}");
        assert!(said.contains("needs root"), "{args:?}: {said}");
        assert!(said.contains("sudo"), "{args:?}: {said}");
        assert!(!said.contains(unsaid), "{args:?}: {said}");
        assert!(out.stdout.is_empty(), "{args:?}: {said}");
    }
    lab.down_clean();
}

/// A VM that stops with an error says which VM once, not twice.
#[test]
fn a_failing_vm_is_named_once() {
    let lab = Lab::new("two-pcs");
    let original = std::fs::read_to_string(lab_file("two-pcs")).unwrap();
    // Not a kernel: the engine refuses it as soon as the VM process starts.
    std::fs::write(lab.sandbox.files.join("junk.bin"), [0x5a; 4096]).unwrap();
    let edited = original.replacen(
        "  - name: pc2\n",
        "  - name: pc2\n    kernel: junk.bin\n",
        1,
    );
    let copy = lab.sandbox.files.join("two-pcs.yaml");
    std::fs::write(&copy, edited).unwrap();
    let out = lab.try_up(&copy, &["--ready-timeout", "20"]);
    assert!(!out.status.success(), "up succeeded: {}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("VM pc2 did not come up"), "{stderr}");
    assert!(stderr.contains("kvmlab: VM 'pc2': "), "{stderr}");
    assert!(!stderr.contains("VM 'pc2': VM 'pc2'"), "{stderr}");
    lab.down_clean();
}

/// On a terminal, `up` prints what it will change first, then a line per VM that
/// stays on screen as that VM's final state, then its summary.
#[test]
fn up_on_a_terminal_keeps_each_vms_ready_line_under_the_plan() {
    let lab = Lab::new("two-pcs");
    let command = format!(
        "{} up {} --netns {}",
        netns::kvmlab_binary().display(),
        lab_file("two-pcs").display(),
        lab.sandbox.netns
    );
    // script(1) runs the command on a pseudo-terminal and copies what it shows.
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .env("KVMLAB_STATE_DIR", &lab.sandbox.state)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    assert_ok(&out, "up on a terminal");
    // Runs of spaces (padding) as one, so that `pc1   ready in` reads as one text.
    let shown = String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let plan = shown.find("+ start vm pc1").expect("the plan is shown");
    let summary = shown.find("lab two-pcs up").expect("the summary is shown");
    for vm in ["pc1", "pc2"] {
        let ready = shown
            .rfind(&format!("{vm} ready in "))
            .unwrap_or_else(|| panic!("no ready line for {vm}: {shown:?}"));
        assert!(plan < ready && ready < summary, "{shown:?}");
        // Nothing after the VM's last ready line moves the cursor up to erase it.
        let after = &shown[ready..summary];
        assert!(
            !after.contains("\x1b[2K"),
            "{vm}'s line was erased: {shown:?}"
        );
    }
    lab.down_clean();
}

/// `ip netns exec NS cat FILE`: the kernel's sysfs view of the lab's namespace, an
/// observer independent of kvmlab's rtnetlink reading.
fn sysfs(lab: &Lab, file: &str) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &lab.sandbox.netns, "cat", file])
        .output()
        .unwrap();
    assert_ok(&out, &format!("cat {file}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `inspect` shows the spanning tree as `brctl showstp` does (root bridge, this
/// bridge's id, root port, each port's role and path cost), checked against the
/// kernel's sysfs; `status` shows each NIC's addresses.
#[test]
fn inspect_shows_the_spanning_tree_and_status_the_addresses() {
    let lab = Lab::new("stp-loop");
    lab.up(&lab_file("stp-loop"));
    let status = lab.status();
    for (vm, address) in [("pc1", "192.168.1.1/24"), ("pc2", "192.168.1.2/24")] {
        let entry = status["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == vm)
            .unwrap();
        assert_eq!(
            entry["nics"][0]["addresses"],
            serde_json::json!([address]),
            "{status}"
        );
    }
    let out = lab.kvmlab(&["status", "stp-loop"]);
    assert!(
        text(&out).contains("192.168.1.3/24 tap pc3-eth0"),
        "{}",
        text(&out)
    );

    let inspect = |bridge: &str| -> Value {
        let out = lab.kvmlab(&["inspect", "stp-loop", bridge, "-o", "json"]);
        assert_ok(&out, "inspect");
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // The tree settles after twice the forward delay (about 30 s).
    let deadline = Instant::now() + Duration::from_secs(90);
    let views: Vec<Value> = loop {
        let views: Vec<Value> = ["sw1", "sw2", "sw3"].iter().map(|b| inspect(b)).collect();
        let settled = views.iter().all(|v| {
            v["ports"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["stp_state"] == "forwarding" || p["stp_state"] == "blocking")
        });
        if settled {
            break views;
        }
        assert!(Instant::now() < deadline, "STP did not settle: {views:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let mut alternates = Vec::new();
    for view in &views {
        let bridge = view["bridge"].as_str().unwrap();
        let stp = &view["stp"];
        let sys = format!("/sys/class/net/{bridge}/bridge");
        assert_eq!(stp["enabled"], true, "{view}");
        assert_eq!(
            stp["root_id"],
            sysfs(&lab, &format!("{sys}/root_id")),
            "{view}"
        );
        assert_eq!(
            stp["bridge_id"],
            sysfs(&lab, &format!("{sys}/bridge_id")),
            "{view}"
        );
        assert_eq!(
            stp["root_id"], views[0]["stp"]["root_id"],
            "one root for all"
        );
        let ports = view["ports"].as_array().unwrap();
        for port in ports {
            let name = port["name"].as_str().unwrap();
            let cost = sysfs(
                &lab,
                &format!("/sys/class/net/{bridge}/brif/{name}/path_cost"),
            );
            assert_eq!(port["path_cost"].to_string(), cost, "{view}");
            match port["role"].as_str().unwrap() {
                "alternate" => {
                    assert_eq!(port["stp_state"], "blocking", "{view}");
                    alternates.push(name.to_string());
                }
                "root" | "designated" => assert_eq!(port["stp_state"], "forwarding", "{view}"),
                other => panic!("port {name} has role {other}: {view}"),
            }
        }
        let roots: Vec<&Value> = ports.iter().filter(|p| p["role"] == "root").collect();
        if stp["is_root"] == true {
            assert!(roots.is_empty() && stp["root_port"].is_null(), "{view}");
        } else {
            assert_eq!(roots.len(), 1, "{view}");
            assert_eq!(roots[0]["name"], stp["root_port"], "{view}");
        }
    }
    assert_eq!(
        views.iter().filter(|v| v["stp"]["is_root"] == true).count(),
        1
    );
    // A loop of three switches: exactly one port is kept blocked.
    assert_eq!(alternates.len(), 1, "{views:?}");
    let out = lab.kvmlab(&["inspect", "stp-loop", "sw1"]);
    assert!(text(&out).contains("root bridge"), "{}", text(&out));
    lab.down_clean();
}
