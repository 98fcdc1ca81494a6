//! `kvmlab vm`: run one VM with the embedded KVM engine, in the foreground.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use crate::topology::derive::{MacAddr, nic_mac};
use crate::topology::size::{ByteSize, ParseSizeError};
use kvmlab_vmm::{
    self as vmm, BlockConfig, BzImageMode, ConsoleIo, KernelSource, NetConfig, StopReason,
    VlanPolicy, VmConfig,
};

/// Exit status when `--timeout` stopped the VM (as coreutils' timeout).
pub const EXIT_TIMEOUT: u8 = 124;

/// Run virtual machines with kvmlab's embedded KVM engine.
///
/// `kvmlab up` starts a lab's VMs itself; `kvmlab vm run` boots one VM in the
/// foreground, for trying a kernel or a device by hand. Example:
///
///     kvmlab vm run --memory 128MiB --cmdline "hello"
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct VmArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: VmCommand,
}

/// `kvmlab vm` subcommands.
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Boot one VM in the foreground, its serial console on this terminal.
    ///
    /// Exits 0 when the guest resets or powers off, 124 when --timeout stops
    /// it, 2 for a bad kernel file or sizes, 1 for other errors (no /dev/kvm,
    /// a guest that crashed). Examples:
    ///
    ///     kvmlab vm run --cmdline "hello"
    ///     kvmlab vm run --kernel vmlinux --cmdline "console=ttyS0 earlyprintk=serial" --timeout 60
    ///     kvmlab vm run --net tap=pc1-eth0,vlan=10 --disk disk.img,ro
    #[command(verbatim_doc_comment)]
    Run(RunArgs),
}

/// Arguments of `kvmlab vm run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Kernel: a bzImage or an ELF vmlinux. Without it, the built-in lab guest.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// Initial ramdisk.
    #[arg(long, value_name = "FILE")]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub cmdline: String,
    /// Guest memory: 64MiB, 1GiB, 512M... (a plain number means MiB).
    #[arg(long, default_value = "64MiB", value_parser = parse_memory)]
    pub memory: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..))]
    pub vcpus: u8,
    /// The VM's name in messages and statistics.
    #[arg(long, default_value = "vm")]
    pub name: String,
    /// Boot a bzImage as it is (the kernel decompresses itself) instead of
    /// unpacking its payload on the host and booting the vmlinux inside.
    #[arg(long)]
    pub bzimage_direct: bool,
    /// Stop the VM after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Save the VM exit statistics as JSON to this file when the VM stops.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
    /// The KVM device (for tests).
    #[arg(long, value_name = "PATH", default_value = vmm::DEFAULT_KVM_DEVICE, hide = true)]
    pub kvm_device: PathBuf,
    /// A network card on an existing TAP: `tap=NAME[,mac=MAC][,vlan=ID|trunk=ID:ID...]`.
    /// `vlan` makes an access port (the VM sends untagged, the TAP sees the VLAN's
    /// tag); `trunk` passes the listed VLANs tagged. Repeatable.
    #[arg(long = "net", value_name = "SPEC", value_parser = parse_net)]
    pub nets: Vec<NicSpec>,
    /// A disk backed by a raw image file: `PATH[,ro]`. Repeatable.
    #[arg(long = "disk", value_name = "PATH[,ro]", value_parser = parse_disk)]
    pub disks: Vec<BlockConfig>,
}

/// A `--net` option before the VM's name gives it a default MAC.
#[derive(Debug, Clone)]
pub struct NicSpec {
    tap: String,
    mac: Option<[u8; 6]>,
    vlan: VlanPolicy,
}

fn parse_vlan_id(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|id| (1..=4094).contains(id))
        .ok_or_else(|| format!("{text:?} is not a VLAN id (1-4094)"))
}

/// Parses `tap=NAME[,mac=MAC][,vlan=ID|trunk=ID:ID]`.
fn parse_net(text: &str) -> Result<NicSpec, String> {
    let mut spec = NicSpec {
        tap: String::new(),
        mac: None,
        vlan: VlanPolicy::Transparent,
    };
    for part in text.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected key=value (tap=, mac=, vlan=, trunk=)"))?;
        match key {
            "tap" => spec.tap = value.to_string(),
            "mac" => {
                let mac = MacAddr::parse(value)
                    .ok_or_else(|| format!("{value:?} is not a MAC address"))?;
                if mac.is_multicast() {
                    return Err(format!(
                        "{value} is a multicast address; a NIC needs a unicast one"
                    ));
                }
                spec.mac = Some(mac.0);
            }
            "vlan" if spec.vlan == VlanPolicy::Transparent => {
                spec.vlan = VlanPolicy::Access(parse_vlan_id(value)?)
            }
            "trunk" if spec.vlan == VlanPolicy::Transparent => {
                let vlans = value
                    .split(':')
                    .map(parse_vlan_id)
                    .collect::<Result<Vec<_>, _>>()?;
                spec.vlan = VlanPolicy::Trunk {
                    vlans,
                    untagged: true,
                };
            }
            "vlan" | "trunk" => return Err("give one of vlan= and trunk=, once".to_string()),
            other => return Err(format!("unknown key {other:?} (tap, mac, vlan, trunk)")),
        }
    }
    if spec.tap.is_empty() || spec.tap.len() > 15 {
        return Err("tap=NAME is required (an existing TAP, at most 15 bytes)".to_string());
    }
    Ok(spec)
}

/// Parses `PATH[,ro]`.
fn parse_disk(text: &str) -> Result<BlockConfig, String> {
    let (path, read_only) = match text.strip_suffix(",ro") {
        Some(path) => (path, true),
        None => (text, false),
    };
    if path.is_empty() {
        return Err("a disk needs a path".to_string());
    }
    Ok(BlockConfig {
        path: PathBuf::from(path),
        read_only,
    })
}

/// Parses a memory size as the topology file reads one ([`ByteSize`]), so that a
/// number means the same in both places: a binary unit (B, K/KiB, M/MiB, G/GiB,
/// T/TiB), and a plain number means MiB.
fn parse_memory(text: &str) -> Result<u64, String> {
    let size: ByteSize = text.parse().map_err(|e: ParseSizeError| e.to_string())?;
    if size.bytes() == 0 {
        return Err(format!(
            "{text:?} is no memory at all: give a size like 64MiB"
        ));
    }
    Ok(size.bytes())
}

/// Runs `kvmlab vm`.
pub fn run(args: &VmArgs) -> ExitCode {
    match &args.command {
        VmCommand::Run(run_args) => run_one(run_args),
    }
}

fn run_one(args: &RunArgs) -> ExitCode {
    let config = VmConfig {
        name: args.name.clone(),
        memory_bytes: args.memory,
        vcpus: args.vcpus,
        kernel: args
            .kernel
            .clone()
            .map_or(KernelSource::Builtin, KernelSource::File),
        bzimage_mode: if args.bzimage_direct {
            BzImageMode::Direct
        } else {
            BzImageMode::UnpackPayload
        },
        initrd: args.initrd.clone(),
        cmdline: args.cmdline.clone(),
        kvm_device: args.kvm_device.clone(),
        nets: args
            .nets
            .iter()
            .enumerate()
            .map(|(i, nic)| NetConfig {
                tap: nic.tap.clone(),
                mac: nic
                    .mac
                    .unwrap_or_else(|| nic_mac("vm-run", &args.name, i).0),
                vlan: nic.vlan.clone(),
            })
            .collect(),
        disks: args.disks.clone(),
    };
    let timeout = match args.timeout {
        Some(secs) if secs.is_finite() && secs > 0.0 => Some(Duration::from_secs_f64(secs)),
        Some(secs) => {
            eprintln!("kvmlab: --timeout must be a positive number of seconds, not {secs}");
            return ExitCode::from(vmm::EXIT_INPUT);
        }
        None => None,
    };
    let mut console = ConsoleIo::stdout();
    console.input = Some(Box::new(std::io::stdin()));

    let vm = match vmm::build(&config, console) {
        Ok(vm) => vm,
        Err(e) => {
            eprintln!("kvmlab: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    eprintln!(
        "kvmlab: VM '{}': booting {}, {} MiB, {} vCPU(s)",
        config.name,
        vm.kernel_description(),
        config.memory_bytes >> 20,
        config.vcpus
    );
    for note in vm.notes() {
        eprintln!("kvmlab: VM '{}': note: {note}", config.name);
    }
    let outcome = vm.run(timeout);
    eprint!("kvmlab: {}", outcome.stats.render());
    let mut code = match outcome.result {
        Ok(StopReason::Timeout) => {
            eprintln!(
                "kvmlab: VM '{}': stopped after the {}-second time limit",
                config.name,
                args.timeout.unwrap_or(0.0)
            );
            ExitCode::from(EXIT_TIMEOUT)
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvmlab: {e}");
            ExitCode::from(e.exit_code())
        }
    };
    if let Some(path) = &args.stats {
        if let Err(e) = outcome.stats.save(path) {
            eprintln!("kvmlab: cannot save statistics to {}: {e}", path.display());
            code = ExitCode::FAILURE;
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_memory("64MiB"), Ok(64 << 20));
        assert_eq!(parse_memory("64"), Ok(64 << 20));
        assert_eq!(parse_memory("1GiB"), Ok(1 << 30));
        assert_eq!(parse_memory("2G"), Ok(2 << 30));
        assert_eq!(parse_memory("4096B"), Ok(4096));
        assert_eq!(parse_memory("512 KiB"), Ok(512 << 10));
        assert!(parse_memory("0").is_err());
        assert!(parse_memory("64TB").is_err());
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("99999999999999GiB").is_err());
    }
}
