//! virtio-net backend throughput against real TAPs, measured on the host side.
//!
//! A mock guest driver fills the transmit ring of one NIC (TAP `t0`) and keeps the
//! receive ring of another (TAP `t1`) stocked; a Linux bridge joins the two TAPs. One
//! thread runs both devices, so the figures are for one core. The baseline, measured
//! in the same run, writes and reads the same frames on the same TAPs directly,
//! without the device: the ratio is what the virtio data path costs on top of the
//! kernel's own work.
//!
//! Run as root: `cargo bench --bench virtio_net`. Prints figures, not pass/fail.

use std::io::{Read, Write};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvmlab_vmm::devices::virtio::net::tap::{self, Tap};
use kvmlab_vmm::devices::virtio::net::vlan::VlanPolicy;
use kvmlab_vmm::devices::virtio::net::{NetQueues, VNET_HDR_LEN};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

const RING: u16 = 256;
/// Each descriptor's buffer: room for a 64 KiB TSO segment.
const BUFFER: u64 = 68 * 1024;
const DST: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const SRC: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const RUN: Duration = Duration::from_secs(2);

/// A split virtqueue as a guest driver sees it: descriptors, rings and buffers in
/// guest memory at `base`.
struct Ring {
    base: u64,
    avail_idx: u16,
    used_seen: u16,
}

impl Ring {
    fn desc(&self) -> u64 {
        self.base
    }
    fn avail(&self) -> u64 {
        self.base + 16 * u64::from(RING)
    }
    fn used(&self) -> u64 {
        self.base + 0x2000
    }
    fn buffer(&self, i: u16) -> u64 {
        self.base + 0x4000 + u64::from(i) * BUFFER
    }
    /// Guest memory one ring and its buffers take.
    const SPAN: u64 = 0x4000 + RING as u64 * BUFFER;

    fn queue(&self) -> Queue {
        let mut q = Queue::new(RING).unwrap();
        q.set_size(RING);
        q.set_desc_table_address(Some(self.desc() as u32), Some(0));
        q.set_avail_ring_address(Some(self.avail() as u32), Some(0));
        q.set_used_ring_address(Some(self.used() as u32), Some(0));
        q.set_ready(true);
        q
    }

    /// Offers descriptor `i` (a buffer of `len` bytes) to the device.
    fn offer(&mut self, mem: &GuestMemoryMmap, i: u16, len: u32, writable: bool) {
        let desc = GuestAddress(self.desc() + 16 * u64::from(i));
        mem.write_obj(self.buffer(i), desc).unwrap();
        mem.write_obj(len, desc.unchecked_add(8)).unwrap();
        mem.write_obj(if writable { 2u16 } else { 0 }, desc.unchecked_add(12))
            .unwrap();
        let slot = GuestAddress(self.avail() + 4 + 2 * u64::from(self.avail_idx % RING));
        mem.write_obj(i, slot).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        mem.write_obj(self.avail_idx, GuestAddress(self.avail() + 2))
            .unwrap();
    }

    /// The descriptors the device returned since the last call.
    fn reap(&mut self, mem: &GuestMemoryMmap) -> Vec<u16> {
        let used: u16 = mem.read_obj(GuestAddress(self.used() + 2)).unwrap();
        let mut done = Vec::new();
        while self.used_seen != used {
            let entry = GuestAddress(self.used() + 4 + 8 * u64::from(self.used_seen % RING));
            done.push(mem.read_obj::<u32>(entry).unwrap() as u16);
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        done
    }
}

/// A frame of `size` bytes after its virtio-net header. Frames above 1514 bytes are
/// TCP segments the kernel may segment later (TSO), as a Linux guest sends them.
fn frame(size: usize) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_LEN];
    f.extend_from_slice(&DST);
    f.extend_from_slice(&SRC);
    if size <= 1514 {
        f.extend_from_slice(&[0x88, 0xb5]);
        f.resize(VNET_HDR_LEN + size, 0x5a);
        return f;
    }
    // virtio_net_hdr: NEEDS_CSUM, GSO TCPv4, headers 54 bytes, MSS 1448, checksum at 34+16.
    f[0] = 1;
    f[1] = 1;
    f[2..4].copy_from_slice(&54u16.to_le_bytes());
    f[4..6].copy_from_slice(&1448u16.to_le_bytes());
    f[6..8].copy_from_slice(&34u16.to_le_bytes());
    f[8..10].copy_from_slice(&16u16.to_le_bytes());
    f.extend_from_slice(&[0x08, 0x00]);
    let ip_len = (size - 14) as u16;
    let mut ipv4 = [
        0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    ipv4[2..4].copy_from_slice(&ip_len.to_be_bytes());
    let sum = ipv4
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    ipv4[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ipv4);
    // TCP: ports 5001 -> 5002, sequence 1, data offset 5, ACK|PSH.
    f.extend_from_slice(&[
        0x13, 0x89, 0x13, 0x8a, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f.resize(VNET_HDR_LEN + size, 0x5a);
    f
}

fn ip(args: &[&str]) {
    let ok = Command::new("ip")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "ip {args:?} failed (iproute2, root)");
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one rusage into the zeroed struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

struct Result {
    frames: u64,
    seconds: f64,
    cpu: f64,
}

impl Result {
    fn print(&self, label: &str, size: usize) {
        let fps = self.frames as f64 / self.seconds;
        println!(
            "  {label:<9} {:>10.0} frames/s  {:>6.2} Gbit/s  core {:>3.0}%",
            fps,
            fps * size as f64 * 8.0 / 1e9,
            100.0 * self.cpu / self.seconds
        );
    }
}

fn measure(mut round: impl FnMut() -> u64) -> Result {
    let (start, cpu) = (Instant::now(), cpu_seconds());
    let mut frames = 0;
    while start.elapsed() < RUN {
        frames += round();
    }
    Result {
        frames,
        seconds: start.elapsed().as_secs_f64(),
        cpu: cpu_seconds() - cpu,
    }
}

fn through_device(t0: &mut Tap, t1: &mut Tap, size: usize) -> Result {
    let ring = |n: u64| Ring {
        base: n * Ring::SPAN,
        avail_idx: 0,
        used_seen: 0,
    };
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 4 * Ring::SPAN as usize)]).unwrap();
    let (mut tx_ring, sender_rx, mut rx_ring, receiver_tx) = (ring(0), ring(1), ring(2), ring(3));
    let mut sender = NetQueues::new(
        sender_rx.queue(),
        tx_ring.queue(),
        VlanPolicy::Transparent,
        Arc::default(),
    );
    let mut receiver = NetQueues::new(
        rx_ring.queue(),
        receiver_tx.queue(),
        VlanPolicy::Transparent,
        Arc::default(),
    );
    let data = frame(size);
    for i in 0..RING {
        mem.write_slice(&data, GuestAddress(tx_ring.buffer(i)))
            .unwrap();
        rx_ring.offer(&mem, i, BUFFER as u32, true);
    }
    let mut free: Vec<u16> = (0..RING).collect();
    measure(|| {
        // The mock driver sends a burst, the devices move it, the driver reaps.
        for i in free.drain(..).take(64).collect::<Vec<_>>() {
            tx_ring.offer(&mem, i, data.len() as u32, false);
        }
        sender.process_tx(&mem, t0).unwrap();
        free.extend(tx_ring.reap(&mem));
        receiver.process_rx(&mem, t1).unwrap();
        let received = rx_ring.reap(&mem);
        for &i in &received {
            rx_ring.offer(&mem, i, BUFFER as u32, true);
        }
        if free.is_empty() {
            free.extend(0..RING);
        }
        received.len() as u64
    })
}

fn direct(t0: &mut Tap, t1: &mut Tap, size: usize) -> Result {
    let data = frame(size);
    let mut buf = vec![0u8; 70_000];
    measure(|| {
        for _ in 0..64 {
            let _ = t0.write(&data);
        }
        let mut received = 0;
        while t1.read(&mut buf).is_ok() {
            received += 1;
        }
        received
    })
}

fn main() {
    // SAFETY: unshare changes this process's network namespace; no memory involved.
    if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
        eprintln!("virtio_net bench: needs root (unshare(CLONE_NEWNET) failed)");
        std::process::exit(1);
    }
    let mut t0 = Tap::open("t0", VNET_HDR_LEN).expect("TAP t0");
    let mut t1 = Tap::open("t1", VNET_HDR_LEN).expect("TAP t1");
    ip(&["link", "add", "br0", "type", "bridge"]);
    for dev in ["t0", "t1"] {
        ip(&["link", "set", dev, "master", "br0"]);
        ip(&["link", "set", dev, "up"]);
    }
    ip(&["link", "set", "br0", "up"]);
    println!(
        "virtio-net backend, one core, TAP -> bridge -> TAP ({}s per figure)",
        RUN.as_secs()
    );
    // The receiving TAP takes TSO segments whole, as for a guest that accepts them.
    for tap in [&t0, &t1] {
        tap.set_offload(tap::TUN_F_CSUM | tap::TUN_F_TSO4 | tap::TUN_F_TSO6)
            .expect("TUNSETOFFLOAD");
    }
    for size in [64, 1500, 65_000] {
        // Warm the bridge's forwarding database and the caches.
        direct(&mut t0, &mut t1, size);
        let baseline = direct(&mut t0, &mut t1, size);
        let device = through_device(&mut t0, &mut t1, size);
        let kind = if size > 1514 { " (TSO segments)" } else { "" };
        println!("{size}-byte frames{kind}:");
        baseline.print("TAPs only", size);
        device.print("virtio", size);
        let ratio =
            (device.frames as f64 / device.seconds) / (baseline.frames as f64 / baseline.seconds);
        println!("  virtio/TAPs-only throughput ratio: {ratio:.2}");
    }
}
