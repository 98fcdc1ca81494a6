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
const BANNER: &str = "kvmlab-guest: cmdline";

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

/// Resident memory of a process, KiB.
#[derive(Clone, Copy, Debug, Default)]
struct Rss {
    /// All resident pages (shared library pages included).
    total: u64,
    /// Anonymous (private) resident pages.
    anon: u64,
    /// Resident pages of the guest RAM mapping (touched guest memory).
    guest: u64,
}

/// Reads /proc/PID/smaps; the guest RAM is the anonymous mapping sized like it.
fn rss(pid: u32) -> Option<Rss> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let guest_kib = GUEST_MIB << 10;
    let mut rss = Rss::default();
    let (mut size, mut anonymous_mapping) = (0, false);
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let key = fields.next().unwrap_or("");
        if !key.ends_with(':') {
            // A mapping header: "start-end perms offset dev inode [path]".
            anonymous_mapping = line.split_whitespace().nth(5).is_none();
            continue;
        }
        let value: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match key {
            "Size:" => size = value,
            "Rss:" => {
                rss.total += value;
                if anonymous_mapping && size >= guest_kib && size <= guest_kib + (16 << 10) {
                    rss.guest += value;
                }
            }
            "Anonymous:" => rss.anon += value,
            _ => {}
        }
    }
    Some(rss)
}

fn median(mut values: Vec<Duration>) -> Option<Duration> {
    values.sort();
    values.get(values.len() / 2).copied()
}

fn measure(make: impl Fn(&str) -> Vmm) -> Option<(Duration, Rss)> {
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let (child, elapsed) = start_to_banner(make("bench"))?;
        stop(child);
        times.push(elapsed);
    }
    // Memory: keep the guest alive (halted) after its banner.
    let (child, _) = start_to_banner(make("bench kvmlab.test=halt"))?;
    thread::sleep(Duration::from_millis(200));
    let rss = rss(child.id());
    stop(child);
    Some((median(times)?, rss?))
}

fn main() {
    if !Path::new("/dev/kvm").exists() {
        eprintln!("boot benchmark: /dev/kvm is missing; nothing to measure");
        return;
    }
    let guest = std::env::temp_dir().join(format!("kvmlab-guest-{}.elf", std::process::id()));
    std::fs::write(&guest, kvmlab_vmm::BUILTIN_GUEST).expect("write the guest ELF");

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
    println!(
        "  VMM overhead = resident memory minus touched guest RAM; private = anonymous pages only"
    );
    for (name, result) in [("kvmlab", ours), ("qemu microvm", theirs)] {
        match result {
            Some((time, rss)) => println!(
                "  {name:<13} start to banner {:>8.2} ms   RSS {:>6} KiB, VMM overhead {:>6} KiB (private {:>6} KiB)",
                time.as_secs_f64() * 1e3,
                rss.total,
                rss.total.saturating_sub(rss.guest),
                rss.anon.saturating_sub(rss.guest)
            ),
            None => println!("  {name:<13} no result"),
        }
    }
    if let (Some((t_ours, ours)), Some((t_qemu, qemu))) = (ours, theirs) {
        let overhead = |r: Rss| r.total.saturating_sub(r.guest).max(1) as f64;
        let private = |r: Rss| r.anon.saturating_sub(r.guest).max(1) as f64;
        println!(
            "  ratio: kvmlab reaches the banner {:.1}x faster than QEMU (goal >= 10x)",
            t_qemu.as_secs_f64() / t_ours.as_secs_f64()
        );
        println!(
            "  ratio: kvmlab's VMM overhead is {:.3} of QEMU's, private {:.3} (goal <= 0.1; absolute goal < 2048 KiB)",
            overhead(ours) / overhead(qemu),
            private(ours) / private(qemu)
        );
    }
}
