//! VM exit statistics: how often each vCPU left guest mode for kvmlab (user
//! space), by exit reason and by device. Exits that KVM handles in the kernel
//! (in-kernel APIC, PIT, HLT with the in-kernel irqchip) do not reach kvmlab and
//! are not counted here; that split is exactly what these numbers show.
//!
//! Each vCPU thread counts into its own [`VcpuCounters`] (no locking on the hot
//! path); the runtime merges them into [`ExitStats`] when the VM stops. The JSON
//! form is what `kvmlab stats` reads back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::devices::virtio::net::NetCountersSnapshot;

/// Exit reasons kvmlab distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// Guest read an I/O port.
    IoIn,
    /// Guest wrote an I/O port.
    IoOut,
    /// Guest read MMIO.
    MmioRead,
    /// Guest wrote MMIO.
    MmioWrite,
    /// Guest halted (only without in-kernel irqchip).
    Hlt,
    /// KVM_RUN interrupted by a signal (kvmlab kicking the vCPU).
    Interrupted,
    /// Triple fault.
    Shutdown,
    /// Guest asked for reset or power-off through KVM (system event).
    SystemEvent,
    /// KVM internal error (emulation failure...).
    InternalError,
    /// Entry failure.
    FailEntry,
    /// Anything else.
    Other,
}

impl ExitReason {
    const ALL: [ExitReason; 11] = [
        ExitReason::IoIn,
        ExitReason::IoOut,
        ExitReason::MmioRead,
        ExitReason::MmioWrite,
        ExitReason::Hlt,
        ExitReason::Interrupted,
        ExitReason::Shutdown,
        ExitReason::SystemEvent,
        ExitReason::InternalError,
        ExitReason::FailEntry,
        ExitReason::Other,
    ];

    /// The name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ExitReason::IoIn => "io_in",
            ExitReason::IoOut => "io_out",
            ExitReason::MmioRead => "mmio_read",
            ExitReason::MmioWrite => "mmio_write",
            ExitReason::Hlt => "hlt",
            ExitReason::Interrupted => "interrupted",
            ExitReason::Shutdown => "shutdown",
            ExitReason::SystemEvent => "system_event",
            ExitReason::InternalError => "internal_error",
            ExitReason::FailEntry => "fail_entry",
            ExitReason::Other => "other",
        }
    }
}

/// Per-vCPU counters, merged when the VM stops.
#[derive(Debug, Clone)]
pub struct VcpuCounters {
    reasons: [u64; ExitReason::ALL.len()],
    /// Writes KVM buffered instead of exiting (coalesced), replayed later.
    pub coalesced: u64,
    pio_devices: Vec<u64>,
    mmio_devices: Vec<u64>,
    /// Accesses to ports without a device, per port.
    unclaimed_pio: BTreeMap<u16, u64>,
    /// Accesses to MMIO without a device, per 4 KiB page.
    unclaimed_mmio: BTreeMap<u64, u64>,
    /// KVM's own counters for this vCPU (see `vstate::kvm_stats`), read when
    /// the vCPU stops.
    pub kvm: BTreeMap<String, u64>,
}

/// Unclaimed addresses tracked individually before lumping the rest together.
const MAX_UNCLAIMED_KEYS: usize = 64;

impl VcpuCounters {
    /// Counters for buses with `pio_devices` and `mmio_devices` devices.
    pub fn new(pio_devices: usize, mmio_devices: usize) -> Self {
        VcpuCounters {
            reasons: [0; ExitReason::ALL.len()],
            coalesced: 0,
            pio_devices: vec![0; pio_devices],
            mmio_devices: vec![0; mmio_devices],
            unclaimed_pio: BTreeMap::new(),
            unclaimed_mmio: BTreeMap::new(),
            kvm: BTreeMap::new(),
        }
    }

    /// Counts one exit.
    pub fn exit(&mut self, reason: ExitReason) {
        self.reasons[reason as usize] += 1;
    }

    /// Exits counted, all reasons together.
    pub fn exits(&self) -> u64 {
        self.reasons.iter().sum()
    }

    /// Counts a port access, handled by device `device` (a bus index) or by none.
    pub fn pio(&mut self, port: u16, device: Option<usize>) {
        match device {
            Some(i) => self.pio_devices[i] += 1,
            None => bump_bounded(&mut self.unclaimed_pio, port, u16::MAX),
        }
    }

    /// Counts an MMIO access, handled by device `device` or by none.
    pub fn mmio(&mut self, addr: u64, device: Option<usize>) {
        match device {
            Some(i) => self.mmio_devices[i] += 1,
            None => bump_bounded(&mut self.unclaimed_mmio, addr & !0xfff, u64::MAX),
        }
    }
}

/// Adds one to `key`, or to `overflow` once `MAX_UNCLAIMED_KEYS` keys exist.
fn bump_bounded<K: Ord + Copy>(map: &mut BTreeMap<K, u64>, key: K, overflow: K) {
    let key = if map.len() >= MAX_UNCLAIMED_KEYS && !map.contains_key(&key) {
        overflow
    } else {
        key
    };
    *map.entry(key).or_default() += 1;
}

/// The outcome of statistics taken while the VM runs.
pub const RUNNING: &str = "running";

/// Milliseconds since the Unix epoch, now.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Exit statistics of one VM run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExitStats {
    /// The VM's name.
    pub vm: String,
    /// How the VM ended ("guest reset", "error: ..."), or [`RUNNING`] for a
    /// snapshot of a running VM.
    pub outcome: String,
    /// When the statistics were taken, milliseconds since the Unix epoch.
    #[serde(default)]
    pub taken_at_ms: u64,
    /// Run time, milliseconds.
    pub duration_ms: u64,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Exits that reached kvmlab, all vCPUs together.
    pub total_exits: u64,
    /// Exits by reason.
    pub by_reason: BTreeMap<String, u64>,
    /// I/O port and MMIO accesses by device ("serial 0x3f8-0x3ff"), plus
    /// "unclaimed port 0x80" for accesses no device took.
    pub by_device: BTreeMap<String, u64>,
    /// KVM's in-kernel counters, all vCPUs together ("exits" counts every
    /// exit from guest mode, most handled by KVM itself); empty when the
    /// kernel does not offer binary statistics.
    #[serde(default)]
    pub kvm: BTreeMap<String, u64>,
    /// Guest writes KVM buffered without an exit (serial output), all vCPUs.
    #[serde(default)]
    pub coalesced_writes: u64,
    /// Each NIC's traffic and drops, by TAP name.
    #[serde(default)]
    pub nics: BTreeMap<String, NetCountersSnapshot>,
}

impl ExitStats {
    /// Merges per-vCPU counters; `pio_names` and `mmio_names` name bus indices.
    pub fn merge(
        vm: &str,
        counters: &[VcpuCounters],
        pio_names: &[String],
        mmio_names: &[String],
    ) -> Self {
        let mut stats = ExitStats {
            vm: vm.to_string(),
            vcpus: counters.len() as u32,
            ..Default::default()
        };
        for c in counters {
            for reason in ExitReason::ALL {
                let n = c.reasons[reason as usize];
                if n > 0 {
                    *stats
                        .by_reason
                        .entry(reason.name().to_string())
                        .or_default() += n;
                    stats.total_exits += n;
                }
            }
            for (names, counts) in [(pio_names, &c.pio_devices), (mmio_names, &c.mmio_devices)] {
                for (name, &n) in names.iter().zip(counts.iter()) {
                    if n > 0 {
                        *stats.by_device.entry(name.clone()).or_default() += n;
                    }
                }
            }
            stats.coalesced_writes += c.coalesced;
            for (name, &n) in &c.kvm {
                *stats.kvm.entry(name.clone()).or_default() += n;
            }
            for (&port, &n) in &c.unclaimed_pio {
                let key = if port == u16::MAX {
                    "unclaimed ports (others)".to_string()
                } else {
                    format!("unclaimed port {port:#x}")
                };
                *stats.by_device.entry(key).or_default() += n;
            }
            for (&page, &n) in &c.unclaimed_mmio {
                let key = if page == u64::MAX {
                    "unclaimed MMIO (others)".to_string()
                } else {
                    format!("unclaimed MMIO page {page:#x}")
                };
                *stats.by_device.entry(key).or_default() += n;
            }
        }
        stats
    }

    /// A human-readable summary, a few lines.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let state = if self.outcome == RUNNING {
            format!("running for {:.3} s", self.duration_ms as f64 / 1000.0)
        } else {
            format!(
                "stopped ({}) after {:.3} s",
                self.outcome,
                self.duration_ms as f64 / 1000.0
            )
        };
        let _ = writeln!(
            out,
            "VM '{}' {state}: {} exits to kvmlab (user space) on {} vCPU(s)",
            self.vm, self.total_exits, self.vcpus
        );
        let mut reasons: Vec<_> = self.by_reason.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let list: Vec<String> = reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(out, "  by reason: {}", list.join(", "));
        if self.coalesced_writes > 0 {
            let _ = writeln!(
                out,
                "  buffered by KVM without an exit: {} serial writes",
                self.coalesced_writes
            );
        }
        let mut devices: Vec<_> = self.by_device.iter().collect();
        devices.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        if !self.kvm.is_empty() {
            let list: Vec<String> = self
                .kvm
                .iter()
                .filter(|(_, v)| **v > 0)
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(out, "  inside KVM (kernel): {}", list.join(", "));
        }
        let _ = writeln!(out, "  by device:");
        for (name, n) in devices {
            let _ = writeln!(out, "    {name:<32} {n:>12}");
        }
        for (tap, c) in &self.nics {
            let _ = writeln!(
                out,
                "  NIC {tap}: received {} frames ({} bytes), sent {} frames ({} bytes); \
                 dropped: {} not in its VLANs from the TAP, {} from the guest, {} too big, {} TAP errors",
                c.rx_frames,
                c.rx_bytes,
                c.tx_frames,
                c.tx_bytes,
                c.rx_vlan_dropped,
                c.tx_vlan_dropped,
                c.rx_too_big,
                c.tx_errors
            );
        }
        out
    }

    /// Saves the statistics as JSON, replacing the file in one step so that a
    /// reader never sees half of it.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        std::fs::write(&temporary, json + "\n")?;
        std::fs::rename(&temporary, path)
    }

    /// Loads statistics saved by [`ExitStats::save`].
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_vcpus_and_names_devices() {
        let mut a = VcpuCounters::new(2, 0);
        let mut b = VcpuCounters::new(2, 0);
        for _ in 0..3 {
            a.exit(ExitReason::IoOut);
            a.pio(0x3f8, Some(1));
        }
        b.exit(ExitReason::IoIn);
        b.pio(0x80, None);
        b.exit(ExitReason::IoOut);
        b.pio(0x64, Some(0));
        let names = vec![
            "i8042 0x60-0x64".to_string(),
            "serial 0x3f8-0x3ff".to_string(),
        ];
        let stats = ExitStats::merge("pc1", &[a, b], &names, &[]);
        assert_eq!(stats.total_exits, 5);
        assert_eq!(stats.vcpus, 2);
        assert_eq!(stats.by_reason["io_out"], 4);
        assert_eq!(stats.by_reason["io_in"], 1);
        assert_eq!(stats.by_device["serial 0x3f8-0x3ff"], 3);
        assert_eq!(stats.by_device["i8042 0x60-0x64"], 1);
        assert_eq!(stats.by_device["unclaimed port 0x80"], 1);
        let text = stats.render();
        assert!(
            text.contains("5 exits") && text.contains("io_out 4"),
            "{text}"
        );
    }

    #[test]
    fn unclaimed_keys_are_bounded() {
        let mut c = VcpuCounters::new(0, 0);
        for port in 0..1000u16 {
            c.pio(port, None);
        }
        assert_eq!(c.unclaimed_pio.len(), MAX_UNCLAIMED_KEYS + 1);
        assert_eq!(c.unclaimed_pio[&u16::MAX], 1000 - MAX_UNCLAIMED_KEYS as u64);
    }

    #[test]
    fn json_round_trip() {
        let mut c = VcpuCounters::new(1, 0);
        c.exit(ExitReason::IoOut);
        c.pio(0x3f8, Some(0));
        let mut stats = ExitStats::merge("pc1", &[c], &["serial".to_string()], &[]);
        stats.outcome = "guest reset".into();
        let dir = std::env::temp_dir().join(format!("kvmlab-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stats.json");
        stats.save(&path).unwrap();
        assert_eq!(ExitStats::load(&path).unwrap(), stats);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
