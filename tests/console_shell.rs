//! The built-in guest's shell, driven the way a student drives it: keys typed into
//! `kvmlab console LAB VM`, the screen read back from it (root, /dev/kvm; the lab
//! in a namespace of its own). Every wait is bounded.

#[path = "common/netns.rs"]
mod netns;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use netns::{Sandbox, kvmlab_binary};
use serde_json::Value;

/// Longest wait for any one thing on the screen (a guest under emulated KVM).
const WAIT: Duration = Duration::from_secs(60);

/// A lab of `labs/`, up in a sandbox; taken down when dropped.
struct RunningLab {
    sandbox: Sandbox,
    name: &'static str,
}

impl RunningLab {
    fn up(name: &'static str) -> RunningLab {
        assert!(
            Path::new("/dev/kvm").exists(),
            "/dev/kvm is missing: these tests boot VMs (CI has it)"
        );
        let sandbox = Sandbox::new();
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("labs")
            .join(format!("{name}.yaml"));
        sandbox.up(&file);
        RunningLab { sandbox, name }
    }

    /// The MAC of `vm`'s first NIC, as `up` gave it.
    fn mac(&self, vm: &str) -> String {
        let path = self
            .sandbox
            .lab_dir(self.name)
            .join("vms")
            .join(vm)
            .join("vm.json");
        let spec: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        spec["nics"][0]["mac"].as_str().unwrap().to_string()
    }

    /// `kvmlab console LAB VM` at its first prompt: its keyboard and its screen.
    fn console(&self, vm: &str) -> Console {
        let mut console = self.attach(vm);
        console.type_keys("\r");
        let prompt = console.prompt.clone();
        console.until(&prompt);
        console
    }

    /// `kvmlab console LAB VM`, nothing typed yet.
    fn attach(&self, vm: &str) -> Console {
        let mut child = Command::new(kvmlab_binary())
            .args(["console", self.name, vm])
            .env("KVMLAB_STATE_DIR", &self.sandbox.state)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kvmlab console runs");
        let mut stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Console {
            keys: child.stdin.take().unwrap(),
            child,
            screen: rx,
            seen: String::new(),
            prompt: format!("{vm}> "),
        }
    }
}

impl Drop for RunningLab {
    fn drop(&mut self) {
        let _ = self.sandbox.kvmlab(&["down", "--lab", self.name]);
    }
}

/// One attached console.
struct Console {
    child: Child,
    keys: ChildStdin,
    screen: Receiver<Vec<u8>>,
    /// What the screen showed since the last [`Console::until`] matched.
    seen: String,
    /// The shell's prompt (`pc1> `).
    prompt: String,
}

impl Console {
    fn type_keys(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }

    /// Waits until the screen shows `text`; returns everything up to and including
    /// it (carriage returns removed), and keeps the rest for the next wait.
    fn until(&mut self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(at) = self.seen.find(text) {
                let end = at + text.len();
                let shown = self.seen[..end].to_string();
                self.seen.drain(..end);
                return shown;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.screen.recv_timeout(left) {
                Ok(bytes) => self
                    .seen
                    .push_str(&String::from_utf8_lossy(&bytes).replace('\r', "")),
                Err(_) => panic!(
                    "the console did not show {text:?} within {WAIT:?}; it showed:\n{}",
                    self.seen
                ),
            }
        }
    }

    /// Types `line` and Enter, and returns what the command printed up to the
    /// next prompt.
    fn run(&mut self, line: &str) -> String {
        self.type_keys(&format!("{line}\r"));
        self.until(&format!("{line}\n"));
        let prompt = self.prompt.clone();
        let shown = self.until(&prompt);
        shown.trim_end_matches(prompt.as_str()).to_string()
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_student_pings_and_reads_the_tables_at_the_console() {
    let lab = RunningLab::up("two-pcs");
    let mut console = lab.console("pc1");

    let ping = console.run("ping -c 3 10.0.0.2");
    let replies: Vec<&str> = ping
        .lines()
        .filter(|l| l.starts_with("64 bytes from 10.0.0.2: icmp_seq="))
        .collect();
    assert_eq!(replies.len(), 3, "{ping}");
    for (line, seq) in replies.iter().zip(1..) {
        assert!(
            line.contains(&format!("icmp_seq={seq} ttl=64 time=")),
            "{line}"
        );
        assert!(line.ends_with(" ms"), "{line}");
    }
    assert!(
        ping.contains(
            "\n--- 10.0.0.2 ping statistics ---\n3 packets transmitted, 3 received, 0% packet loss"
        ),
        "{ping}"
    );
    assert!(ping.contains("rtt min/avg/max/mdev = "), "{ping}");

    let addr = console.run("ip addr");
    assert!(
        addr.contains("1: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP>"),
        "{addr}"
    );
    assert!(
        addr.contains(&format!("link/ether {}", lab.mac("pc1"))),
        "{addr}"
    );
    assert!(
        addr.contains("inet 10.0.0.1/24 scope global eth0"),
        "{addr}"
    );

    let neigh = console.run("ip neigh");
    assert!(
        neigh.contains(&format!(
            "10.0.0.2 dev eth0 lladdr {} REACHABLE",
            lab.mac("pc2")
        )),
        "{neigh}"
    );
    // A flushed ARP cache is empty until the next packet asks again.
    assert_eq!(console.run("ip neigh flush all"), "");
    assert!(!console.run("ip neigh").contains("10.0.0.2"));
    assert!(console.run("ping -c 1 10.0.0.2").contains("1 received"));
    let neigh = console.run("ip neigh");
    assert!(
        neigh.contains(&format!(
            "10.0.0.2 dev eth0 lladdr {} REACHABLE",
            lab.mac("pc2")
        )),
        "{neigh}"
    );

    let arping = console.run("arping -c 2 10.0.0.2");
    let upper = lab.mac("pc2").to_uppercase();
    assert_eq!(
        arping
            .matches(&format!("Unicast reply from 10.0.0.2 [{upper}]  "))
            .count(),
        2,
        "{arping}"
    );
    assert!(
        arping.contains("Sent 2 probes (2 broadcast(s))\nReceived 2 response(s)"),
        "{arping}"
    );
    let counters = console.run("ip -s link");
    let rx: Vec<u64> = counters
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("RX:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no RX counters: {counters}"))
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(
        rx[0] > 0 && rx[1] >= 7,
        "after 5 pings and 2 arpings: {counters}"
    );

    let route = console.run("ip route");
    assert!(
        route.contains("10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1"),
        "{route}"
    );
}

#[test]
fn a_late_attach_replays_the_boot_report_and_the_prompt() {
    let lab = RunningLab::up("two-pcs");
    // Wait for the guest's start-up pings to end (its shell starts then).
    let log = lab.sandbox.lab_dir("two-pcs").join("vms/pc2/serial.log");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("pc2> ")
    {
        assert!(Instant::now() < deadline, "pc2 never showed its prompt");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut console = lab.attach("pc2");
    let replay = console.until("pc2> ");
    assert!(replay.contains("kvmlab-guest: ready\n"), "{replay}");
    assert!(
        replay
            .contains(r#"kvmlab-report {"type":"ping","target":"10.0.0.1","sent":3,"received":3"#),
        "{replay}"
    );
}

#[test]
fn ctrl_c_stops_a_ping_and_the_line_editor_works_on_a_raw_line() {
    let lab = RunningLab::up("two-pcs");
    let mut console = lab.console("pc1");

    // A ping without -c runs until Ctrl-C, then prints its statistics.
    console.type_keys("ping 10.0.0.2\r");
    console.until("icmp_seq=2 ");
    console.type_keys("\x03");
    let stopped = console.until("pc1> ");
    assert!(stopped.contains("^C"), "{stopped}");
    assert!(
        stopped.contains("--- 10.0.0.2 ping statistics ---"),
        "{stopped}"
    );
    assert!(stopped.contains("packets transmitted"), "{stopped}");

    // Backspace rubs out, Ctrl-U kills the line, the up arrow brings back the last.
    console.type_keys("hostnXX\x7f\x7fame\r");
    let shown = console.until("pc1> ");
    assert!(
        shown.ends_with("\x08 \x08\x08 \x08ame\npc1\npc1> "),
        "{shown:?}"
    );
    console.type_keys("nonsense\x15uptime\r");
    let shown = console.until("pc1> ");
    assert!(shown.contains("\nup 0:"), "{shown:?}");
    console.type_keys("\x1b[A\x1b[A\r");
    let shown = console.until("pc1> ");
    assert!(shown.ends_with("hostname\npc1\npc1> "), "{shown:?}");
    // Ctrl-C at the prompt drops the line.
    console.type_keys("ping 10.0.0.2\x03");
    let shown = console.until("pc1> ");
    assert!(shown.ends_with("ping 10.0.0.2^C\npc1> "), "{shown:?}");

    // An unknown command says so and names the nearest one; `help` lists them.
    let typo = console.run("pnig 10.0.0.2");
    assert!(
        typo.contains("pnig: command not found; did you mean `ping`?"),
        "{typo}"
    );
    let help = console.run("help");
    for command in ["ip", "ping", "hostname", "uptime", "poweroff"] {
        assert!(
            help.contains(&format!("\n  {command} ")),
            "{command}: {help}"
        );
    }
}

#[test]
fn a_router_forwards_between_subnets_and_answers_with_icmp_errors() {
    let lab = RunningLab::up("router");
    // `status` shows what the file gave each VM at layer 3.
    let out = lab.sandbox.kvmlab(&["status", "router", "-o", "json"]);
    let status: Value = serde_json::from_slice(&out.stdout).expect("status prints JSON");
    let vm = |name: &str| {
        status["vms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .clone()
    };
    assert_eq!(
        vm("pc1")["routes"],
        serde_json::json!(["default via 10.0.1.254"])
    );
    assert_eq!(vm("pc1")["forward"], false);
    assert_eq!(vm("r1")["forward"], true);
    let out = lab.sandbox.kvmlab(&["status", "router"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("route default via 10.0.2.254"), "{text}");
    assert!(text.contains("router: forwards IPv4"), "{text}");

    let mut console = lab.console("pc1");

    let ping = console.run("ping -c 2 10.0.2.2");
    assert!(
        ping.contains("64 bytes from 10.0.2.2: icmp_seq=1 ttl=63 "),
        "{ping}"
    );
    assert!(
        ping.contains("2 packets transmitted, 2 received, 0% packet loss"),
        "{ping}"
    );

    let trace = console.run("traceroute 10.0.2.2");
    let hops: Vec<&str> = trace.lines().filter(|l| l.starts_with(' ')).collect();
    assert_eq!(hops.len(), 2, "{trace}");
    assert!(hops[0].starts_with(" 1  10.0.1.254  "), "{trace}");
    assert!(hops[1].starts_with(" 2  10.0.2.2  "), "{trace}");

    let expired = console.run("ping -c 1 -t 1 10.0.2.2");
    assert!(
        expired.contains("From 10.0.1.254 icmp_seq=1 Time to live exceeded"),
        "{expired}"
    );
    assert!(
        expired.contains("1 packets transmitted, 0 received, +1 errors"),
        "{expired}"
    );

    let routes = console.run("ip route");
    assert!(
        routes.contains("default via 10.0.1.254 dev eth0\n"),
        "{routes}"
    );
    assert_eq!(console.run("ip route del default"), "");
    let unreachable = console.run("ping -c 1 10.0.2.2");
    assert!(
        unreachable.contains("ping: connect: Network is unreachable"),
        "{unreachable}"
    );
    assert_eq!(console.run("ip route add default via 10.0.1.254"), "");
    let again = console.run("ping -c 1 10.0.2.2");
    assert!(again.contains("1 received"), "{again}");

    // r1 knows no way to 10.0.99.0/24 and says so; for an address on its own
    // subnet that nobody owns, it gives up after three ARP requests.
    let no_net = console.run("ping -c 1 10.0.99.1");
    assert!(
        no_net.contains("From 10.0.1.254 icmp_seq=1 Destination Net Unreachable"),
        "{no_net}"
    );
    let no_host = console.run("ping -c 1 10.0.2.99");
    assert!(
        no_host.contains("From 10.0.1.254 icmp_seq=1 Destination Host Unreachable"),
        "{no_host}"
    );
}

#[test]
fn two_routers_in_a_chain_route_with_static_routes() {
    let lab = RunningLab::up("two-routers");
    let mut console = lab.console("pc1");
    let ping = console.run("ping -c 2 10.0.3.3");
    assert!(
        ping.contains("64 bytes from 10.0.3.3: icmp_seq=1 ttl=62 "),
        "{ping}"
    );
    let trace = console.run("traceroute 10.0.3.3");
    let hops: Vec<&str> = trace.lines().filter(|l| l.starts_with(' ')).collect();
    assert_eq!(hops.len(), 3, "{trace}");
    assert!(hops[0].starts_with(" 1  10.0.1.254  "), "{trace}");
    assert!(hops[1].starts_with(" 2  10.0.12.2  "), "{trace}");
    assert!(hops[2].starts_with(" 3  10.0.3.3  "), "{trace}");

    // Without its static route, r1 answers for the far subnet it no longer knows.
    let mut r1 = lab.console("r1");
    let routes = r1.run("ip route");
    assert!(
        routes.contains("10.0.3.0/24 via 10.0.12.2 dev eth1\n"),
        "{routes}"
    );
    assert_eq!(r1.run("ip route del 10.0.3.0/24"), "");
    let lost = console.run("ping -c 1 10.0.3.3");
    assert!(
        lost.contains("From 10.0.1.254 icmp_seq=1 Destination Net Unreachable"),
        "{lost}"
    );
}

#[test]
fn a_router_on_a_stick_routes_between_vlans_that_stay_apart() {
    let lab = RunningLab::up("router-on-a-stick");
    let mut pc1 = lab.console("pc1");
    let ping = pc1.run("ping -c 2 10.0.20.2");
    assert!(
        ping.contains("64 bytes from 10.0.20.2: icmp_seq=1 ttl=63 "),
        "{ping}"
    );
    let mut r1 = lab.console("r1");
    let addr = r1.run("ip addr");
    assert!(addr.contains("eth0.10@eth0"), "{addr}");
    assert!(
        addr.contains("inet 10.0.10.254/24 scope global eth0.10"),
        "{addr}"
    );
    assert!(
        addr.contains("inet 10.0.20.254/24 scope global eth0.20"),
        "{addr}"
    );
    // pc3 is in VLAN 20 with VLAN 10's subnet and no gateway: nothing answers it.
    let mut pc3 = lab.console("pc3");
    let lonely = pc3.run("ping -c 1 -W 1 10.0.10.1");
    assert!(
        lonely.contains("1 packets transmitted, 0 received"),
        "{lonely}"
    );
}

#[test]
fn nc_carries_a_typed_line_over_tcp_and_udp_and_iperf_measures_a_rate() {
    let lab = RunningLab::up("two-pcs");
    let mut pc1 = lab.console("pc1");
    let mut pc2 = lab.console("pc2");

    // TCP: a line typed on pc1 appears on pc2's console, and one typed back.
    pc2.type_keys("nc -l 7000\r");
    pc2.until("nc -l 7000\n");
    pc1.type_keys("nc 10.0.0.2 7000\r");
    pc1.until("nc 10.0.0.2 7000\n");
    pc1.type_keys("hello over tcp\r");
    pc2.until("hello over tcp\n");
    pc2.type_keys("and back\r");
    pc1.until("hello over tcp\nand back\n");
    // Ctrl-C on pc1 closes the connection; pc2's nc ends with it.
    pc1.type_keys("\x03");
    pc1.until("pc1> ");
    pc2.until("pc2> ");

    // UDP: the same, with no connection; the listener answers whoever wrote last.
    pc2.type_keys("nc -u -l 7001\r");
    pc2.until("nc -u -l 7001\n");
    pc1.type_keys("nc -u 10.0.0.2 7001\r");
    pc1.until("nc -u 10.0.0.2 7001\n");
    pc1.type_keys("hello over udp\r");
    pc2.until("hello over udp\n");
    pc2.type_keys("udp back\r");
    pc1.until("udp back\n");
    pc1.type_keys("\x03");
    pc1.until("pc1> ");
    pc2.type_keys("\x03");
    pc2.until("pc2> ");

    // iperf: a TCP stream for two seconds, measured on both sides.
    pc2.type_keys("iperf -s\r");
    pc2.until("Server listening on TCP port 5001");
    let client = pc1.run("iperf -c 10.0.0.2 -t 2");
    assert!(
        client.contains("connected with 10.0.0.2 port 5001"),
        "{client}"
    );
    let rate = client
        .lines()
        .find(|l| l.starts_with("[  1] 0.0-"))
        .unwrap_or_else(|| panic!("no result line: {client}"));
    let bandwidth: f64 = rate
        .split("  ")
        .last()
        .and_then(|b| b.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rate in {rate:?}"));
    assert!(bandwidth > 0.0, "{rate}");
    let server = pc2.until("bits/sec");
    assert!(server.contains("connected with 10.0.0.1 port "), "{server}");
}

#[test]
fn reboot_boots_the_same_vm_again_on_the_same_console() {
    let lab = RunningLab::up("two-pcs");
    let pid_file = lab.sandbox.lab_dir("two-pcs").join("vms/pc1/pid");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let mut console = lab.console("pc1");
    console.type_keys("reboot\r");
    console.until("kvmlab-guest: rebooting\n");
    let boot = console.until("pc1> ");
    assert!(boot.contains("kvmlab-guest: ready\n"), "{boot}");
    assert!(
        boot.contains(r#"kvmlab-report {"type":"ping","target":"10.0.0.2","sent":3,"received":3"#),
        "{boot}"
    );
    // The keys reach the new boot, in the same VM process.
    assert_eq!(console.run("hostname").trim(), "pc1");
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid);
    let log =
        std::fs::read_to_string(lab.sandbox.lab_dir("two-pcs").join("vms/pc1/vmm.log")).unwrap();
    assert!(log.contains("VM 'pc1': rebooting"), "{log}");
    // `down` stops the rebooted VM as any other.
    let out = lab.sandbox.kvmlab(&["down", "--lab", "two-pcs"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Gone, or a zombie its new parent has yet to reap (no command line left).
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
    assert!(cmdline.is_empty(), "the VM process outlived down");
}
