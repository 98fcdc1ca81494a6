//! Benchmarks of the network reconciler against iproute2, measured side by side in
//! one run and printed as ratios (not pass/fail: the machine is shared and noisy).
//!
//! Needs root. Run with `cargo bench --bench reconcile`. Each lab lives in its own
//! throwaway namespace.
//!
//! 1. `kvmlab up` of 200 bridges and 400 TAPs (2 per bridge) against `ip -batch`
//!    making the same bridges and TAPs (goal: within 1.5x).
//! 2. A no-op `kvmlab up` of that lab against one `ip -d -j link show` of the
//!    namespace (goal: within 2x).
//! 3. `kvmlab down` of that lab against `ip -batch` deleting the same interfaces
//!    (once; both take seconds here, the kernel's per-interface teardown).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BRIDGES: usize = 200;
const TAPS_PER_BRIDGE: usize = 2;
const ROUNDS: usize = 3;
const NOOP_ROUNDS: usize = 10;

fn run(command: &mut Command) -> Duration {
    let start = Instant::now();
    let out = command.output().expect("command runs");
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn topology() -> String {
    let mut yaml = String::from("version: 1\nname: bench\nbridges:\n");
    for b in 0..BRIDGES {
        writeln!(yaml, "  - {{ name: b{b} }}").unwrap();
    }
    yaml.push_str("taps:\n");
    for b in 0..BRIDGES {
        for t in 0..TAPS_PER_BRIDGE {
            writeln!(yaml, "  - {{ name: t{b}x{t}, bridge: b{b} }}").unwrap();
        }
    }
    yaml
}

fn batch_delete() -> String {
    let mut script = String::new();
    for b in 0..BRIDGES {
        for t in 0..TAPS_PER_BRIDGE {
            writeln!(script, "link del t{b}x{t}").unwrap();
        }
    }
    for b in 0..BRIDGES {
        writeln!(script, "link del b{b}").unwrap();
    }
    script
}

fn batch() -> String {
    let mut script = String::new();
    for b in 0..BRIDGES {
        writeln!(script, "link add b{b} type bridge stp_state 0").unwrap();
        writeln!(script, "link set b{b} up").unwrap();
    }
    for b in 0..BRIDGES {
        for t in 0..TAPS_PER_BRIDGE {
            writeln!(script, "tuntap add t{b}x{t} mode tap vnet_hdr").unwrap();
            writeln!(script, "link set t{b}x{t} master b{b} up").unwrap();
        }
    }
    script
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        if Path::new("/run/netns").join(&self.0).exists() {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
}

fn kvmlab(state: &Path) -> Command {
    // A private copy: a shared target directory may be rebuilt under our feet.
    let mut command = Command::new(state.with_file_name("kvmlab"));
    command.env("KVMLAB_STATE_DIR", state);
    command
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("benchmarks need root (network namespaces, bridges, TAPs): skipped");
        return;
    }
    let dir: PathBuf = std::env::temp_dir().join(format!("kvmlab-bench-{}", std::process::id()));
    let state = dir.join("state");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_kvmlab"), dir.join("kvmlab")).unwrap();
    let lab = dir.join("lab.yaml");
    std::fs::write(&lab, topology()).unwrap();
    let script = dir.join("batch.ip");
    std::fs::write(&script, batch()).unwrap();
    let delete = dir.join("delete.ip");
    std::fs::write(&delete, batch_delete()).unwrap();
    let lab = lab.to_str().unwrap();

    // Deleting hundreds of interfaces keeps the kernel busy (holding the RTNL lock)
    // for seconds, so every namespace is kept until all measurements are taken.
    let pid = std::process::id();
    let mut namespaces = Vec::new();
    let (mut ours, mut theirs, mut noop, mut dump) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let ns_ip = Netns(format!("kvmlab-bench-ip-{pid}-{round}"));
        theirs.push(
            run(Command::new("ip").args(["netns", "add", &ns_ip.0]))
                + run(Command::new("ip").args([
                    "-n",
                    &ns_ip.0,
                    "-batch",
                    script.to_str().unwrap(),
                ])),
        );
        namespaces.push(ns_ip);

        let ns = Netns(format!("kvmlab-bench-{pid}-{round}"));
        let lab_name = format!("bench{round}");
        ours.push(run(
            kvmlab(&state).args(["up", lab, "--netns", &ns.0, "--lab", &lab_name])
        ));
        if round == 0 {
            for _ in 0..NOOP_ROUNDS {
                noop.push(run(
                    kvmlab(&state).args(["up", lab, "--netns", &ns.0, "--lab", &lab_name])
                ));
                dump.push(run(
                    Command::new("ip").args(["-n", &ns.0, "-d", "-j", "link", "show"])
                ));
            }
        }
        namespaces.push(ns);
    }
    // Taking one lab apart object by object, both ways (once: it is slow).
    let down = run(kvmlab(&state).args(["down", "--lab", "bench0"]));
    let ip_delete =
        run(Command::new("ip").args(["-n", &namespaces[0].0, "-batch", delete.to_str().unwrap()]));
    // Removing the namespaces removes their interfaces in one batch; `down` then
    // only clears the labs' state.
    drop(namespaces);
    for round in 1..ROUNDS {
        run(kvmlab(&state).args(["down", "--lab", &format!("bench{round}")]));
    }
    let _ = std::fs::remove_dir_all(&dir);

    let (ours, theirs) = (median(ours), median(theirs));
    let (noop, dump) = (median(noop), median(dump));
    println!(
        "create {BRIDGES} bridges + {} TAPs: kvmlab up {:.1} ms, ip -batch {:.1} ms, ratio {:.2}x (goal <= 1.5x)",
        BRIDGES * TAPS_PER_BRIDGE,
        ms(ours),
        ms(theirs),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    println!(
        "no-op up: kvmlab up {:.1} ms, ip -d -j link show {:.1} ms, ratio {:.2}x (goal <= 2x)",
        ms(noop),
        ms(dump),
        noop.as_secs_f64() / dump.as_secs_f64()
    );
    println!(
        "delete the lab: kvmlab down {:.1} ms, ip -batch link del {:.1} ms, ratio {:.2}x",
        ms(down),
        ms(ip_delete),
        down.as_secs_f64() / ip_delete.as_secs_f64()
    );
}
