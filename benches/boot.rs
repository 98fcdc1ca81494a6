//! Boot benchmark: kvmlab against QEMU's microvm machine, side by side, booting
//! the same built-in guest ELF (kvmlab through the Linux boot protocol, QEMU
//! through PVH).
//!
//! * start to banner: from spawning the VMM to the guest's memory line on the
//!   serial console (median of several runs);
//! * VMM memory overhead: the VMM's resident memory minus the guest RAM it has
//!   touched (from /proc/PID/smaps), with the guest halted after its banner.
//!
//! Not a pass/fail test: it prints the figures and the ratios. Run with
//! `cargo bench --bench boot` (root, /dev/kvm; `apt-get install qemu-system-x86`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const RUNS: usize = 15;
const GUEST_MIB: u64 = 64;
const BANNER: &str = "kvmlab-guest: memory";

struct Vmm {
    name: &'static str,
    command: Command,
}

fn kvmlab(cmdline: &str) -> Vmm {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kvmlab"));
    command.args([
        "vm",
        "run",
        "--memory",
        &format!("{GUEST_MIB}MiB"),
        "--cmdline",
        cmdline,
    ]);
    Vmm {
        name: "kvmlab",
        command,
    }
}

fn qemu(guest: &Path, cmdline: &str) -> Vmm {
    let mut command = Command::new("qemu-system-x86_64");
    command.args([
        "-M",
        "microvm",
        "-accel",
        "kvm",
        "-cpu",
        "qemu64,-cx16",
        "-m",
        &format!("{GUEST_MIB}M"),
    ]);
    command.args([
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-serial",
        "stdio",
        "-kernel",
    ]);
    command.arg(guest).args(["-append", cmdline]);
    Vmm {
        name: "qemu microvm",
        command,
    }
}

/// Starts the VMM and waits for the banner; returns the child and the time.
fn start_to_banner(mut vmm: Vmm) -> Option<(Child, Duration)> {
    let started = Instant::now();
    let mut child = vmm
        .command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(BANNER) {
                let _ = tx.send(started.elapsed());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(elapsed) => Some((child, elapsed)),
        Err(_) => {
            eprintln!("{}: no banner within 30 s", vmm.name);
            let _ = child.kill();
            let _ = child.wait();
            None
        }
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// (total RSS, RSS of guest-RAM-sized anonymous mappings), KiB.
fn rss_split(pid: u32) -> Option<(u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let guest_kib = GUEST_MIB << 10;
    let (mut total, mut guest) = (0, 0);
    let mut size = 0;
    let mut anonymous = false;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let key = fields.next().unwrap_or("");
        if key.contains('-') && !key.ends_with(':') {
            // A mapping header: "start-end perms offset dev inode [path]".
            anonymous = line.split_whitespace().nth(5).is_none();
            continue;
        }
        let value: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match key {
            "Size:" => size = value,
            "Rss:" => {
                total += value;
                if anonymous && size >= guest_kib && size <= guest_kib + (16 << 10) {
                    guest += value;
                }
            }
            _ => {}
        }
    }
    Some((total, guest))
}

fn median(mut values: Vec<Duration>) -> Option<Duration> {
    values.sort();
    values.get(values.len() / 2).copied()
}

fn measure(make: impl Fn(&str) -> Vmm) -> Option<(Duration, u64, u64)> {
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let (child, elapsed) = start_to_banner(make("bench"))?;
        stop(child);
        times.push(elapsed);
    }
    // Memory: keep the guest alive (halted) after its banner.
    let (child, _) = start_to_banner(make("bench kvmlab.test=halt"))?;
    thread::sleep(Duration::from_millis(200));
    let split = rss_split(child.id());
    stop(child);
    let (total, guest) = split?;
    Some((median(times)?, total, total.saturating_sub(guest)))
}

fn main() {
    if !Path::new("/dev/kvm").exists() {
        eprintln!("boot benchmark: /dev/kvm is missing; nothing to measure");
        return;
    }
    let guest = std::env::temp_dir().join(format!("kvmlab-guest-{}.elf", std::process::id()));
    std::fs::write(&guest, kvmlab::vmm::BUILTIN_GUEST).expect("write the guest ELF");

    let ours = measure(kvmlab);
    let theirs = if Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok()
    {
        measure(|c| qemu(&guest, c))
    } else {
        eprintln!("qemu-system-x86_64 not found (apt-get install qemu-system-x86): no baseline");
        None
    };
    let _ = std::fs::remove_file(&guest);

    println!("boot benchmark: built-in guest, {GUEST_MIB} MiB, 1 vCPU, median of {RUNS} runs");
    for (name, result) in [("kvmlab", ours), ("qemu microvm", theirs)] {
        match result {
            Some((time, total, vmm)) => println!(
                "  {name:<13} start to banner {:>8.2} ms   RSS {:>7} KiB, VMM overhead (RSS minus guest RAM) {:>7} KiB",
                time.as_secs_f64() * 1e3,
                total,
                vmm
            ),
            None => println!("  {name:<13} no result"),
        }
    }
    if let (Some((t_ours, _, m_ours)), Some((t_qemu, _, m_qemu))) = (ours, theirs) {
        println!(
            "  ratio: kvmlab reaches the banner {:.1}x faster than QEMU (goal >= 10x)",
            t_qemu.as_secs_f64() / t_ours.as_secs_f64()
        );
        println!(
            "  ratio: kvmlab's VMM overhead is {:.3} of QEMU's (goal <= 0.1; absolute goal < 2048 KiB)",
            m_ours as f64 / m_qemu.max(1) as f64
        );
    }
}
