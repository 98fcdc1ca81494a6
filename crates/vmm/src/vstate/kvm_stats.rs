//! KVM's own per-vCPU counters, read through its binary statistics interface
//! (KVM_GET_STATS_FD, Documentation/virt/kvm/api.rst): they count every exit
//! from guest mode, including the ones KVM handles in the kernel without
//! coming to kvmlab (in-kernel APIC and PIT, HLT, emulated instructions).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;

use vmm_sys_util::ioctl::ioctl;

/// The KVM_GET_STATS_FD ioctl, which kvm-ioctls does not wrap. In a module of its
/// own because the macro makes a public, undocumented function.
mod ioctls {
    use kvm_bindings::KVMIO;
    vmm_sys_util::ioctl_io_nr!(KVM_GET_STATS_FD, KVMIO, 0xce);
}
use ioctls::KVM_GET_STATS_FD;

/// The KVM counters kvmlab reports, when the kernel has them.
pub const REPORTED: &[&str] = &[
    "exits",
    "io_exits",
    "mmio_exits",
    "halt_exits",
    "irq_exits",
    "signal_exits",
    "request_irq_exits",
    "irq_window_exits",
    "insn_emulation",
    "insn_emulation_fail",
    "hypercalls",
    "irq_injections",
];

const HEADER_SIZE: usize = 24;
const DESC_FIXED_SIZE: usize = 16;
const STATS_TYPE_MASK: u32 = 0xf;
const STATS_TYPE_CUMULATIVE: u32 = 0;

/// Where one counter lives in the stats file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counter {
    name: String,
    /// Absolute file offset of its u64 value.
    offset: u64,
}

/// An open binary-statistics file of one vCPU.
pub struct VcpuKvmStats {
    file: File,
    counters: Vec<Counter>,
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// Parses the header and descriptors (`head` holds the file from offset 0
/// through the descriptor block) and returns the reported cumulative
/// single-value counters.
fn parse_descriptors(head: &[u8]) -> Option<Vec<Counter>> {
    let name_size = u32_at(head, 4)? as usize;
    let num_desc = u32_at(head, 8)? as usize;
    let desc_offset = u32_at(head, 16)? as usize;
    let data_offset = u64::from(u32_at(head, 20)?);
    let desc_size = DESC_FIXED_SIZE + name_size;
    let mut counters = Vec::new();
    for i in 0..num_desc {
        let at = desc_offset + i * desc_size;
        let flags = u32_at(head, at)?;
        let size = u16_at(head, at + 6)?;
        let offset = u32_at(head, at + 8)?;
        let raw_name = head.get(at + DESC_FIXED_SIZE..at + desc_size)?;
        let name = String::from_utf8_lossy(raw_name.split(|&b| b == 0).next().unwrap_or_default())
            .into_owned();
        if flags & STATS_TYPE_MASK == STATS_TYPE_CUMULATIVE
            && size == 1
            && REPORTED.contains(&name.as_str())
        {
            counters.push(Counter {
                name,
                offset: data_offset + u64::from(offset),
            });
        }
    }
    Some(counters)
}

impl VcpuKvmStats {
    /// Opens the statistics of the vCPU behind `vcpu_fd`; `None` when the
    /// kernel does not offer them.
    pub fn open(vcpu_fd: &impl AsRawFd) -> Option<VcpuKvmStats> {
        // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new file
        // descriptor or -1; nothing else is touched.
        let fd = unsafe { ioctl(vcpu_fd, KVM_GET_STATS_FD()) };
        if fd < 0 {
            return None;
        }
        // SAFETY: KVM just created `fd` for us; nothing else owns it.
        let file = unsafe { File::from_raw_fd(fd) };
        let mut header = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut header, 0).ok()?;
        let name_size = u32_at(&header, 4)? as usize;
        let num_desc = u32_at(&header, 8)? as usize;
        let desc_offset = u32_at(&header, 16)? as usize;
        let head_len =
            desc_offset.checked_add(num_desc.checked_mul(DESC_FIXED_SIZE + name_size)?)?;
        if head_len > 1 << 20 {
            return None;
        }
        let mut head = vec![0u8; head_len];
        file.read_exact_at(&mut head, 0).ok()?;
        let counters = parse_descriptors(&head)?;
        Some(VcpuKvmStats { file, counters })
    }

    /// Current values of the reported counters.
    pub fn read(&self) -> BTreeMap<String, u64> {
        let mut values = BTreeMap::new();
        for counter in &self.counters {
            let mut raw = [0u8; 8];
            if self.file.read_exact_at(&mut raw, counter.offset).is_ok() {
                values.insert(counter.name.clone(), u64::from_le_bytes(raw));
            }
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(flags: u32, size: u16, offset: u32, name: &str, name_size: usize) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&flags.to_le_bytes());
        d.extend_from_slice(&0i16.to_le_bytes()); // exponent
        d.extend_from_slice(&size.to_le_bytes());
        d.extend_from_slice(&offset.to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes()); // bucket size
        let mut n = name.as_bytes().to_vec();
        n.resize(name_size, 0);
        d.extend_from_slice(&n);
        d
    }

    #[test]
    fn parses_reported_cumulative_counters() {
        let name_size = 48;
        let descs = [
            descriptor(0, 1, 0, "exits", name_size),
            descriptor(1, 1, 8, "halt_poll_fail_hist_peak", name_size), // instant: skipped
            descriptor(0, 1, 16, "io_exits", name_size),
            descriptor(0, 32, 24, "insn_emulation", name_size), // histogram-sized: skipped
            descriptor(0, 1, 280, "not_reported", name_size),
        ];
        let desc_offset = 24 + 16; // header, then an id string
        let mut head = Vec::new();
        for v in [
            0u32,
            name_size as u32,
            descs.len() as u32,
            24,
            desc_offset,
            4096,
        ] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        head.resize(desc_offset as usize, 0);
        for d in &descs {
            head.extend_from_slice(d);
        }
        let counters = parse_descriptors(&head).unwrap();
        assert_eq!(
            counters,
            vec![
                Counter {
                    name: "exits".into(),
                    offset: 4096
                },
                Counter {
                    name: "io_exits".into(),
                    offset: 4096 + 16
                },
            ]
        );
        assert_eq!(
            parse_descriptors(&head[..head.len() - 1]),
            None,
            "truncated"
        );
    }
}
