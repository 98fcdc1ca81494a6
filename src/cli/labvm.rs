//! `kvmlab console`, `logs`, `stats` and `inspect`: looking into a running lab.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::OutputFormat;
use super::net::fail;
use crate::lab::{LabError, names};
use crate::netlink::Netlink;
use crate::observe::bridge::inspect_bridge;
use crate::runner::{VmFiles, console};
use crate::state::StateRoot;
use kvmlab_vmm::ExitStats;

/// Which VM of which lab.
#[derive(Debug, clap::Args)]
pub struct VmRef {
    /// The lab.
    #[arg(value_name = "LAB")]
    pub lab: String,
    /// The VM.
    #[arg(value_name = "VM")]
    pub vm: String,
    /// Where lab state lives [default: $KVMLAB_STATE_DIR or /run/kvmlab].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

impl VmRef {
    /// The VM's files, or why there are none (with the labs or VMs there are).
    fn files(&self) -> Result<VmFiles, LabError> {
        let root = StateRoot::resolve(self.state_dir.as_deref());
        names::vm(&self.lab, &self.vm, &root)
    }
}

fn failed(message: &str) -> ExitCode {
    eprintln!("kvmlab: {message}");
    ExitCode::FAILURE
}

/// The error for `command` on a file of the VM's this user may not use.
fn needs_root(command: &str, vm: &str, what: &str, path: &Path) -> LabError {
    LabError::NeedsRoot {
        action: format!("kvmlab {command}"),
        reason: format!("{vm}'s {what} {} is root's", path.display()),
    }
}

/// Attach to a VM's serial console (Ctrl-] detaches)
///
/// Example:
///
///     sudo kvmlab console two-pcs pc1
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ConsoleArgs {
    #[command(flatten)]
    pub vm: VmRef,
}

/// Runs `kvmlab console`.
pub fn run_console(args: &ConsoleArgs) -> ExitCode {
    let files = match args.vm.files() {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    if files.running_pid().is_none() {
        return failed(&format!(
            "VM {} is not running (`kvmlab up` starts it; `kvmlab logs` shows its last console)",
            args.vm.vm
        ));
    }
    let socket = files.console_socket();
    // Said before connecting, and plainly: connect(2) would only say EACCES.
    if names::forbidden(&socket, true) {
        return fail(needs_root(
            "console",
            &args.vm.vm,
            "console socket",
            &socket,
        ));
    }
    let connected = || {
        eprintln!(
            "kvmlab: connected to {}'s console; Ctrl-] detaches\r",
            args.vm.vm
        );
    };
    match console::attach(&socket, connected) {
        Ok(()) => {
            eprintln!("\r\nkvmlab: detached");
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => fail(needs_root(
            "console",
            &args.vm.vm,
            "console socket",
            &socket,
        )),
        Err(e) => failed(&format!("console of {}: {e}", args.vm.vm)),
    }
}

/// Print (or follow) a VM's serial console log
///
/// Example:
///
///     sudo kvmlab logs two-pcs pc1 -f
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct LogsArgs {
    #[command(flatten)]
    pub vm: VmRef,
    /// Keep printing what the guest prints, until interrupted or the lab goes away.
    #[arg(long, short)]
    pub follow: bool,
}

fn copy_from(path: &Path, offset: u64, out: &mut impl Write) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(start + bytes.len() as u64)
}

/// Runs `kvmlab logs`.
pub fn run_logs(args: &LogsArgs) -> ExitCode {
    let files = match args.vm.files() {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let mut out = std::io::stdout();
    let log = files.serial_log();
    if names::forbidden(&log, false) {
        return fail(needs_root("logs", &args.vm.vm, "console log", &log));
    }
    let mut offset = match copy_from(&log, 0, &mut out) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return failed(&format!("reading the console log: {e}")),
    };
    while args.follow && files.dir.exists() {
        std::thread::sleep(Duration::from_millis(200));
        if let Ok(n) = copy_from(&files.serial_log(), offset, &mut out) {
            offset = n;
        }
    }
    ExitCode::SUCCESS
}

/// Show a VM's exit counts by reason and device
///
/// For a running VM, the counts so far (the VMM takes them when asked); for a
/// stopped one, those it saved when it stopped (`kvmlab down`, a guest
/// power-off).
///
/// Example:
///
///     sudo kvmlab stats two-pcs pc1
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct StatsArgs {
    #[command(flatten)]
    pub vm: VmRef,
    /// How to print them.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Runs `kvmlab stats`.
pub fn run_stats(args: &StatsArgs) -> ExitCode {
    let files = match args.vm.files() {
        Ok(f) => f,
        Err(e) => return fail(e),
    };
    let running = files.running_pid();
    // A running VM is asked by signal, and only root may signal it.
    let may_ask = running.is_none_or(|pid| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) != Err(Errno::EPERM)
    });
    if !may_ask {
        return fail(LabError::NeedsRoot {
            action: "kvmlab stats".to_string(),
            reason: format!(
                "{} runs as root, and only root may ask it for its statistics",
                args.vm.vm
            ),
        });
    }
    if names::forbidden(&files.stats(), false) {
        return fail(needs_root(
            "stats",
            &args.vm.vm,
            "statistics",
            &files.stats(),
        ));
    }
    let loaded = match running {
        Some(pid) => live_stats(&files, pid),
        None => ExitStats::load(&files.stats()),
    };
    match loaded {
        Ok(stats) => {
            match args.output {
                OutputFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&stats).expect("stats serialise")
                ),
                OutputFormat::Text => print!("{}", stats.render()),
            }
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => failed(&format!(
            "VM {} is not running and saved no statistics: start it with `kvmlab up`",
            args.vm.vm
        )),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => failed(&e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => fail(needs_root(
            "stats",
            &args.vm.vm,
            "statistics",
            &files.stats(),
        )),
        Err(e) => failed(&format!("reading {}: {e}", files.stats().display())),
    }
}

/// How long `kvmlab stats` waits for a running VM to save its statistics.
const LIVE_STATS_WAIT: Duration = Duration::from_secs(3);

/// Asks the running VM process `pid` to save its statistics now (SIGUSR1) and
/// reads them once it has.
fn live_stats(files: &VmFiles, pid: i32) -> std::io::Result<ExitStats> {
    // A VM process from a kvmlab before live statistics does not wait for
    // SIGUSR1, and SIGUSR1 would end it: give it its saved numbers, if any.
    if !crate::runner::blocks_signal(pid, libc::SIGUSR1) {
        return ExitStats::load(&files.stats());
    }
    let asked_at = kvmlab_vmm::unix_ms();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .map_err(std::io::Error::from)?;
    let deadline = Instant::now() + LIVE_STATS_WAIT;
    loop {
        // The VM may also have stopped meanwhile and saved its final numbers.
        if let Ok(stats) = ExitStats::load(&files.stats()) {
            if stats.taken_at_ms >= asked_at {
                return Ok(stats);
            }
        }
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the VM process (pid {pid}) did not save its statistics within {} s",
                    LIVE_STATS_WAIT.as_secs()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Show a bridge's forwarding database and STP port states
///
/// The learned MAC addresses per port (and VLAN) and each port's spanning-tree
/// state, read from the kernel over rtnetlink in the lab's namespace.
///
/// Example:
///
///     sudo kvmlab inspect stp-loop sw2
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct InspectArgs {
    /// The lab.
    #[arg(value_name = "LAB")]
    pub lab: String,
    /// The bridge.
    #[arg(value_name = "BRIDGE")]
    pub bridge: String,
    /// Where lab state lives [default: $KVMLAB_STATE_DIR or /run/kvmlab].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How to print it.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Runs `kvmlab inspect`.
pub fn run_inspect(args: &InspectArgs) -> ExitCode {
    let root = StateRoot::resolve(args.state_dir.as_deref());
    let meta = match names::lab(&args.lab, &root) {
        Ok(meta) => meta,
        Err(e) => return fail(e),
    };
    if let Err(e) = names::bridge(&meta, &args.bridge) {
        return fail(e);
    }
    if let Some(name) = &meta.netns {
        if let Err(e) = crate::lab::enter_netns(name) {
            return fail(e);
        }
    }
    let view = Netlink::open().and_then(|mut n| inspect_bridge(&mut n, &args.bridge));
    let view = match view {
        Ok(Some(view)) => view,
        Ok(None) => {
            return failed(&format!(
                "bridge {} of lab {} is missing from the host (`kvmlab status {}` shows what drifted; `kvmlab up` repairs it)",
                args.bridge, args.lab, args.lab
            ));
        }
        Err(e) => return failed(&format!("reading bridge {}: {e}", args.bridge)),
    };
    if args.output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&view).expect("views serialise")
        );
        return ExitCode::SUCCESS;
    }
    println!("bridge {}", view.bridge);
    if let Some(stp) = &view.stp {
        // As `brctl showstp` heads its table: the tree as this bridge sees it.
        let on = if stp.enabled { "on" } else { "off" };
        println!("  spanning tree: {on}");
        println!("    bridge id        {}", stp.bridge_id);
        if stp.is_root {
            println!("    root bridge      {} (this bridge)", stp.root_id);
        } else {
            println!("    root bridge      {}", stp.root_id);
            let port = stp.root_port.as_deref().unwrap_or("-");
            println!(
                "    root port        {port}, path cost {}",
                stp.root_path_cost
            );
        }
    }
    println!("  ports:");
    println!(
        "    {:<16} {:<11} {:<11} path cost",
        "port", "state", "role"
    );
    for port in &view.ports {
        let cost = port.path_cost.map_or("-".to_string(), |c| c.to_string());
        println!(
            "    {:<16} {:<11} {:<11} {cost}",
            port.name, port.stp_state, port.role
        );
    }
    println!("  forwarding database:");
    for entry in &view.fdb {
        let vlan = entry.vlan.map_or(String::new(), |v| format!(" vlan {v}"));
        println!(
            "    {}  on {:<16} {}{vlan}",
            entry.mac, entry.port, entry.kind
        );
    }
    ExitCode::SUCCESS
}
