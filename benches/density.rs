//! Density benchmark: how many built-in-guest VMs one host holds. For N VMs (16 MiB
//! each, 25 per bridge) it brings the lab up, lets it idle, and takes it down,
//! printing for each N: `up` to all ready (and ms per VM), the host CPU that all N
//! VM processes use together over 20 s of idle, 15 s after `up` (from /proc, as % of
//! one core), the
//! host memory per VM (PSS), and `down`.
//!
//! Not a pass/fail test: it prints figures (goals on a 2-core host: 1000 VMs up;
//! all 1000 idle together under 5% of one core; PSS under 1 MiB per VM; ms per VM
//! not growing with N). Run as root with /dev/kvm: `cargo bench --bench density`;
//! `KVMLAB_DENSITY=100,300` picks the sizes (default 100,300,1000).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PER_BRIDGE: usize = 25;
const IDLE: Duration = Duration::from_secs(20);
const SETTLE: Duration = Duration::from_secs(15);

fn topology(name: &str, vms: usize) -> String {
    let bridges = vms.div_ceil(PER_BRIDGE);
    let mut yaml = format!("version: 1\nname: {name}\nbridges:\n");
    for b in 0..bridges {
        yaml += &format!("  - {{ name: br{b} }}\n");
    }
    yaml += "vms:\n";
    for i in 0..vms {
        let b = i / PER_BRIDGE;
        yaml += &format!(
            "  - {{ name: vm{i}, memory: 16MiB, nics: [{{ bridge: br{b}, ip: 10.{}.{}.{}/24 }}] }}\n",
            b / 256,
            b % 256,
            i % PER_BRIDGE + 1
        );
    }
    yaml
}

/// Clock ticks per second of /proc's CPU times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// The pids of the lab's VM processes, from their pid files.
fn vm_pids(state: &Path, lab: &str, vms: usize) -> Vec<String> {
    (0..vms)
        .map(|i| {
            std::fs::read_to_string(state.join(format!("{lab}/vms/vm{i}/pid")))
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect()
}

/// User plus system CPU ticks of all threads of `pids`, so far.
fn cpu_ticks(pids: &[String]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // The fields after the command name, which is in parentheses.
            let after = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let user: u64 = fields.get(11)?.parse().ok()?;
            let system: u64 = fields.get(12)?.parse().ok()?;
            Some(user + system)
        })
        .sum()
}

/// Mean proportional set size of `pids` in KiB.
fn mean_pss_kib(pids: &[String]) -> f64 {
    let total: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok())
        .filter_map(|s| {
            let line = s.lines().find(|l| l.starts_with("Pss:"))?.to_string();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum();
    total as f64 / pids.len().max(1) as f64
}

fn run(what: &str, command: &mut Command) -> Duration {
    let start = Instant::now();
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    start.elapsed()
}

struct Figures {
    vms: usize,
    up: Duration,
    idle_pct: f64,
    pss_kib: f64,
    down: Duration,
}

fn measure(dir: &Path, vms: usize) -> Figures {
    let kvmlab = env!("CARGO_BIN_EXE_kvmlab");
    let lab = format!("density{vms}");
    let file = dir.join(format!("{lab}.yaml"));
    std::fs::write(&file, topology(&lab, vms)).unwrap();
    let state: PathBuf = dir.join("state");
    let netns = format!("kvdensity-{}-{vms}", std::process::id());
    let up = run(
        "kvmlab up",
        Command::new(kvmlab)
            .args(["up", file.to_str().unwrap(), "--netns", &netns])
            .args(["--ready-timeout", "900"])
            .env("KVMLAB_STATE_DIR", &state),
    );
    let pids = vm_pids(&state, &lab, vms);
    // Let the start-up settle: the host's own start-up chatter on the new TAPs
    // (IPv6 router solicitations, MLD reports) wakes every guest a few times in
    // its first seconds; idle is what comes after.
    std::thread::sleep(SETTLE);
    let before = cpu_ticks(&pids);
    std::thread::sleep(IDLE);
    let after = cpu_ticks(&pids);
    let idle_pct = (after - before) as f64 / ticks_per_second() / IDLE.as_secs_f64() * 100.0;
    let pss_kib = mean_pss_kib(&pids);
    let down = run(
        "kvmlab down",
        Command::new(kvmlab)
            .args(["down", "--lab", &lab])
            .env("KVMLAB_STATE_DIR", &state),
    );
    Figures {
        vms,
        up,
        idle_pct,
        pss_kib,
        down,
    }
}

fn main() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "the benchmark needs /dev/kvm"
    );
    let sizes: Vec<usize> = std::env::var("KVMLAB_DENSITY")
        .unwrap_or_else(|_| "100,300,1000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    // State on tmpfs, as /run is on a systemd host.
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("kvmlab-bench-density-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut results = Vec::new();
    for &vms in &sizes {
        results.push(measure(&dir, vms));
        // The kernel cleans a deleted namespace up in the background, holding
        // RTNL: the next `up` would wait for it (see ENVIRONMENT.md).
        std::thread::sleep(Duration::from_secs(5));
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("density: built-in guest, 16 MiB each, {PER_BRIDGE} VMs per bridge");
    println!(
        "{:>6}  {:>10}  {:>9}  {:>22}  {:>12}  {:>10}",
        "VMs", "up", "ms/VM", "idle CPU (all VMs)", "PSS per VM", "down"
    );
    for f in &results {
        println!(
            "{:>6}  {:>10.2?}  {:>9.2}  {:>15.2}% of a core  {:>8.0} KiB  {:>10.2?}",
            f.vms,
            f.up,
            f.up.as_secs_f64() * 1000.0 / f.vms as f64,
            f.idle_pct,
            f.pss_kib,
            f.down
        );
    }
}
