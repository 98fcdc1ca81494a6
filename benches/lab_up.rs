//! Lab benchmark: `kvmlab up` to all-ready and `kvmlab down` of a 20-VM, 4-bridge
//! lab of built-in guests, against a shell script that builds the same lab with
//! iproute2 and runs the same guest ELF under `qemu-system-x86_64 -M microvm`, side by
//! side in one run; plus the host memory (RSS and PSS) per VM process of each.
//!
//! Not a pass/fail test: it prints figures and ratios (goal: at least 5x faster for
//! up and down, at most a tenth of QEMU's memory per VM). Run as root with /dev/kvm:
//! `cargo bench --bench lab_up` (`apt-get install qemu-system-x86 iproute2`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const VMS: usize = 20;
const BRIDGES: usize = 4;
const READY: &str = "kvmlab-guest: ready";
const LIMIT: Duration = Duration::from_secs(300);

fn topology() -> String {
    let mut yaml = String::from("version: 1\nname: bench20\nbridges:\n");
    for b in 0..BRIDGES {
        yaml += &format!("  - {{ name: br{b} }}\n");
    }
    yaml += "vms:\n";
    for i in 0..VMS {
        let b = i % BRIDGES;
        yaml += &format!(
            "  - name: vm{i}\n    nics: [{{ bridge: br{b}, ip: 10.0.{b}.{}/24 }}]\n",
            i + 1
        );
    }
    yaml
}

/// The baseline: the same lab with iproute2 and QEMU microvm, as a shell script.
fn qemu_script(netns: &str, guest: &Path, dir: &Path) -> (String, String) {
    let mut up = format!("set -e\nip netns add {netns}\nNS=\"ip netns exec {netns}\"\n");
    for b in 0..BRIDGES {
        up += &format!("$NS ip link add br{b} type bridge\n$NS ip link set br{b} up\n");
    }
    for i in 0..VMS {
        let b = i % BRIDGES;
        up += &format!(
            "$NS ip tuntap add tap{i} mode tap\n$NS ip link set tap{i} master br{b}\n$NS ip link set tap{i} up\n\
             setsid $NS qemu-system-x86_64 -M microvm,ioapic2=off,acpi=off -accel kvm -cpu qemu64,-cx16 \
             -m 64M -nodefaults -no-user-config -display none -no-reboot -serial file:{d}/q{i}.log \
             -kernel {g} -append 'console=ttyS0 kvmlab.ip=0:10.0.{b}.{ip}/24' \
             -netdev tap,id=n0,ifname=tap{i},script=no,downscript=no \
             -device virtio-net-device,netdev=n0,mac=52:54:00:00:01:{i:02x} \
             -pidfile {d}/q{i}.pid -daemonize\n",
            d = dir.display(),
            g = guest.display(),
            ip = i + 1,
        );
    }
    up += &format!(
        "for i in $(seq 0 {last}); do until grep -q '{READY}' {d}/q$i.log 2>/dev/null; do sleep 0.01; done; done\n",
        last = VMS - 1,
        d = dir.display()
    );
    let down = format!(
        "for f in {d}/q*.pid; do kill $(cat $f); done\n\
         for f in {d}/q*.pid; do while kill -0 $(cat $f) 2>/dev/null; do sleep 0.01; done; done\n\
         ip netns del {netns}\n",
        d = dir.display()
    );
    (up, down)
}

fn timed(what: &str, mut command: Command) -> Duration {
    let start = Instant::now();
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < LIMIT, "{what} took {took:?}");
    took
}

fn sh(script: &str) -> Command {
    let mut command = Command::new("timeout");
    command.args([&LIMIT.as_secs().to_string(), "sh", "-c", script]);
    command
}

/// The `field` (KiB) of `file` under /proc/PID.
fn proc_kib(pid: &str, file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/{file}", pid.trim()))
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with(field))?.to_string();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Mean resident memory per VM process in MiB: all of it (RSS), and its
/// proportional share (PSS: pages shared by several processes, such as the
/// binary's, divided among them), which is what each VM costs the host.
fn mean_memory(pid_files: &[PathBuf]) -> (f64, f64) {
    let pids: Vec<String> = pid_files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    let mean = |file: &str, field: &str| {
        let total: u64 = pids.iter().map(|p| proc_kib(p, file, field)).sum();
        total as f64 / pids.len() as f64 / 1024.0
    };
    (mean("status", "VmRSS:"), mean("smaps_rollup", "Pss:"))
}

fn main() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "the benchmark needs /dev/kvm"
    );
    // State, logs and pid files of both sides on tmpfs, as kvmlab's default state
    // root /run is on a systemd host (on this project's build machines /run is
    // ext4, where each file deleted by `down` costs about a millisecond).
    let tmpfs = Path::new("/dev/shm");
    let base = if tmpfs.is_dir() {
        tmpfs.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("kvmlab-bench-lab-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bench20.yaml");
    std::fs::write(&file, topology()).unwrap();
    let guest = dir.join("kvmlab-guest");
    std::fs::write(&guest, kvmlab_vmm::BUILTIN_GUEST).unwrap();
    let state = dir.join("state");
    let kvmlab = env!("CARGO_BIN_EXE_kvmlab");
    let netns = format!("kvbench-{}", std::process::id());

    let mut up = Command::new(kvmlab);
    up.args(["up", file.to_str().unwrap(), "--netns", &netns])
        .env("KVMLAB_STATE_DIR", &state);
    let kvmlab_up = timed("kvmlab up", up);
    let kvm_pids: Vec<PathBuf> = (0..VMS)
        .map(|i| state.join(format!("bench20/vms/vm{i}/pid")))
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (kvmlab_rss, kvmlab_pss) = mean_memory(&kvm_pids);
    let mut down = Command::new(kvmlab);
    down.args(["down", "--lab", "bench20"])
        .env("KVMLAB_STATE_DIR", &state);
    let kvmlab_down = timed("kvmlab down", down);

    let qemu_ns = format!("{netns}-q");
    let (up_script, down_script) = qemu_script(&qemu_ns, &guest, &dir);
    let qemu_up = timed("qemu script up", sh(&up_script));
    std::thread::sleep(Duration::from_millis(500));
    let q_pids: Vec<PathBuf> = (0..VMS).map(|i| dir.join(format!("q{i}.pid"))).collect();
    let (qemu_rss, qemu_pss) = mean_memory(&q_pids);
    let qemu_down = timed("qemu script down", sh(&down_script));
    let _ = std::fs::remove_dir_all(&dir);

    println!("lab of {VMS} VMs on {BRIDGES} bridges, built-in guest, 64 MiB each");
    println!(
        "up to all ready: kvmlab {kvmlab_up:>10.1?}  iproute2+QEMU {qemu_up:>10.1?}  ratio {:.1}x",
        qemu_up.as_secs_f64() / kvmlab_up.as_secs_f64()
    );
    println!(
        "down:            kvmlab {kvmlab_down:>10.1?}  iproute2+QEMU {qemu_down:>10.1?}  ratio {:.1}x",
        qemu_down.as_secs_f64() / kvmlab_down.as_secs_f64()
    );
    println!(
        "host RSS per VM: kvmlab {kvmlab_rss:>7.1} MiB  QEMU {qemu_rss:>7.1} MiB  kvmlab/QEMU {:.2}",
        kvmlab_rss / qemu_rss
    );
    println!(
        "host PSS per VM: kvmlab {kvmlab_pss:>7.1} MiB  QEMU {qemu_pss:>7.1} MiB  kvmlab/QEMU {:.2}",
        kvmlab_pss / qemu_pss
    );
}
