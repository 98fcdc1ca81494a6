//! `kvmlab plan`, `up`, `down` and `status`: the host network of a lab.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::validate::print_error;
use super::{EXIT_INVALID_INPUT, OutputFormat};
use crate::lab::{self, LabOptions, LabStatus, PlanReport, RunReport, VmAction};
use crate::plan::Plan;
use crate::state::StateRoot;
use crate::topology::{self, LoadedTopology};

/// Exit status of `plan` when there are changes to make (as `terraform plan
/// -detailed-exitcode`); errors, an invalid file included, exit 1. `up` and `down`
/// exit 2 for an invalid file, as `validate` does, and 1 for other errors.
pub const EXIT_CHANGES: u8 = 2;

/// Options shared by commands that read a topology file.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// Run as this lab name instead of the file's `name` (one file, many copies).
    #[arg(long, value_name = "NAME")]
    pub lab: Option<String>,

    /// Run the lab in this network namespace instead of the file's `netns`.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,

    /// Where lab state lives [default: $KVMLAB_STATE_DIR or /run/kvmlab].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0)
        .ok_or_else(|| format!("{text:?} is not a positive number of seconds"))
}

impl LabArgs {
    /// The options; `ready_timeout` only matters to `up`, the one command that
    /// takes `--ready-timeout`.
    fn options(&self, ready_timeout: Option<f64>) -> LabOptions {
        LabOptions {
            lab: self.lab.clone(),
            netns: self.netns.clone(),
            root: StateRoot::resolve(self.state_dir.as_deref()),
            ready_timeout: ready_timeout
                .map_or(lab::DEFAULT_READY_TIMEOUT, Duration::from_secs_f64),
        }
    }
}

/// Prints a line on standard output, ignoring a reader that has gone: `up` and
/// `down` ignore SIGPIPE so that a closed pipe never stops them half-way, and
/// every other command is ended by SIGPIPE before this could matter.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Show what `kvmlab up` would change on the host, without changing it
///
/// Exits 0 when the host already matches the file, 2 when there are changes, and
/// 1 on error. Lines read `+ create bridge sw1 (stp on)`, `~ sw1: stp off -> on`,
/// `- delete tap ext0`.
///
/// Example:
///
///     kvmlab plan labs/two-pcs.yaml --netns class1
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct PlanArgs {
    /// The topology file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub lab: LabArgs,
    /// How to print the plan.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Bring a lab up: its network, then its VMs, and wait until every VM is ready
///
/// Creates the lab's bridges, TAPs and links, repairs what drifted and removes
/// what the file no longer lists; then starts each VM in a background process
/// of its own and returns once every VM printed its ready line on its console.
/// A second run changes nothing; a VM whose settings changed, or whose process
/// died, is restarted, and the plan says why. Everything it creates carries the
/// alias `kvmlab:<lab>`; nothing else is touched.
///
/// Example:
///
///     kvmlab up labs/two-pcs.yaml --netns student7 --lab two-pcs-7
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct UpArgs {
    /// The topology file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub lab: LabArgs,
    /// How long to wait for every VM to print its ready marker [default: 120].
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub ready_timeout: Option<f64>,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Stop a lab's VMs and remove everything it created, from its state (the file may be gone)
///
/// Example:
///
///     kvmlab down labs/two-pcs.yaml
///     kvmlab down --lab two-pcs-7
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
// Either way names the lab, so the usage line and the error for neither show both,
// as `git` shows each form of a command on a line of its own.
#[command(
    override_usage = "kvmlab down [OPTIONS] <FILE>\n       kvmlab down [OPTIONS] --lab <NAME>",
    group(clap::ArgGroup::new("which").args(["file", "lab"]).required(true).multiple(true))
)]
pub struct DownArgs {
    /// The topology file (its lab name and namespace); or give --lab.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub lab: LabArgs,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Show a lab: its VMs (running, crashed) and each object (present, missing, drifted)
///
/// Example:
///
///     kvmlab status two-pcs --output json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct StatusArgs {
    /// The lab; all labs when left out.
    #[arg(value_name = "LAB")]
    pub lab: Option<String>,
    /// Where lab state lives [default: $KVMLAB_STATE_DIR or /run/kvmlab].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How to print the status.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Loads a topology; an invalid file exits with `code`.
fn load(file: &Path, code: u8) -> Result<LoadedTopology, ExitCode> {
    topology::load(file).map_err(|error| {
        print_error(error);
        ExitCode::from(code)
    })
}

/// Prints `error` as a diagnostic; a plain failure.
pub(super) fn fail(error: impl miette::Diagnostic + Send + Sync + 'static) -> ExitCode {
    eprintln!("{:?}", miette::Report::new(error));
    ExitCode::FAILURE
}

fn print_json(value: &impl serde::Serialize) {
    say!(
        "{}",
        serde_json::to_string_pretty(value).expect("reports serialise")
    );
}

/// Runs `kvmlab plan`.
pub fn run_plan(args: &PlanArgs) -> ExitCode {
    // Exit 2 means "changes" here, so an invalid file is a plain failure.
    let loaded = match load(&args.file, 1) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let report = match lab::plan_up(&loaded.topology, Some(&args.file), &args.lab.options(None)) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match args.output {
        OutputFormat::Json => print_json(&report),
        OutputFormat::Text => print_plan(&report),
    }
    if report.has_changes() {
        ExitCode::from(EXIT_CHANGES)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_plan(report: &PlanReport) {
    if let (true, Some(netns)) = (report.create_netns, &report.netns) {
        say!("+ create netns {netns}");
    }
    for action in &report.plan.actions {
        say!("{action}");
    }
    for action in &report.vms {
        say!("{action}");
    }
    for note in &report.notes {
        say!("note: {note}");
    }
    if !report.has_changes() {
        say!("lab {}: nothing to do, the host matches", report.lab);
    } else {
        let count = report.plan.actions.len() + report.vms.len() + usize::from(report.create_netns);
        say!("lab {}: {count} change(s) planned", report.lab);
    }
}

/// The lines of a plan as `up` applies it: the network, then the VMs.
fn print_up_plan(plan: &Plan, vms: &[VmAction]) {
    for action in &plan.actions {
        say!("{action}");
    }
    for action in vms {
        say!("{action}");
    }
}

/// The end of `up` or `down`: notes and a summary line (`up`'s says how VLANs
/// are enforced, for a lab that has VLANs). `up` printed its plan before it began.
fn print_run(verb: &str, report: &RunReport, output: OutputFormat) {
    if output == OutputFormat::Json {
        print_json(report);
        return;
    }
    if verb == "down" {
        // `down` stops VMs before the network goes.
        for action in &report.vms {
            say!("{action}");
        }
        for action in &report.plan.actions {
            say!("{action}");
        }
    }
    for note in &report.notes {
        say!("note: {note}");
    }
    let place = report
        .netns
        .as_ref()
        .map(|n| format!(" in netns {n}"))
        .unwrap_or_default();
    // Once a lab is down, how its VLANs were enforced no longer matters.
    let vlans = if report.vlans && verb == "up" {
        format!("; {}", report.vlan_mode.describe())
    } else {
        String::new()
    };
    say!(
        "lab {} {verb}{place}: {} step(s), {} netlink write(s){vlans}",
        report.lab,
        report.steps,
        report.netlink_writes,
    );
}

/// Runs `kvmlab up`.
pub fn run_up(args: &UpArgs) -> ExitCode {
    let loaded = match load(&args.file, EXIT_INVALID_INPUT) {
        Ok(l) => l,
        Err(code) => return code,
    };
    // What will change comes first; the VMs' progress lines follow it and stay.
    let mut planned = |plan: &Plan, vms: &[VmAction]| {
        if args.output == OutputFormat::Text {
            print_up_plan(plan, vms);
        }
    };
    let options = args.lab.options(args.ready_timeout);
    match lab::up(&loaded.topology, Some(&args.file), &options, &mut planned) {
        Ok(report) => {
            print_run("up", &report, args.output);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Runs `kvmlab down`.
pub fn run_down(args: &DownArgs) -> ExitCode {
    let options = args.lab.options(None);
    let (name, netns) = match (&options.lab, &args.file) {
        (Some(lab), None) => {
            // A mistyped name must not look like a lab taken down.
            if !options.root.lab_dir(lab).exists() {
                return fail(lab::names::no_such_lab(lab, &options.root));
            }
            (lab.clone(), options.netns.clone())
        }
        (_, Some(file)) => match topology::load(file) {
            Ok(loaded) => lab::identity(&loaded.topology, &options),
            // The file may be gone or broken since `up`: the state remembers
            // which lab came from it.
            Err(error) => match lab::lab_from_file(file, &options.root) {
                Some(name) => (name, options.netns.clone()),
                None => {
                    print_error(error);
                    return ExitCode::from(EXIT_INVALID_INPUT);
                }
            },
        },
        (None, None) => unreachable!("clap requires FILE or --lab"),
    };
    match lab::down(&name, netns, &options.root) {
        Ok(report) => {
            print_run("down", &report, args.output);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Runs `kvmlab status`.
pub fn run_status(args: &StatusArgs) -> ExitCode {
    let root = StateRoot::resolve(args.state_dir.as_deref());
    let labs = match &args.lab {
        Some(lab) => vec![lab.clone()],
        None => root.labs(),
    };
    let mut reports = Vec::new();
    for lab in &labs {
        match lab::status(lab, &root) {
            Ok(status) => reports.push(status),
            Err(e) => return fail(e),
        }
    }
    match (args.output, &args.lab) {
        (OutputFormat::Json, Some(_)) => print_json(&reports[0]),
        (OutputFormat::Json, None) => print_json(&reports),
        (OutputFormat::Text, _) => {
            if reports.is_empty() {
                say!("no labs in {}", root.0.display());
            }
            reports.iter().for_each(print_status);
        }
    }
    ExitCode::SUCCESS
}

fn print_status(status: &LabStatus) {
    let place = match (&status.netns, status.netns_present) {
        (Some(n), true) => format!(" (netns {n})"),
        (Some(n), false) => format!(" (netns {n}: MISSING)"),
        (None, _) => String::new(),
    };
    let health = if status.healthy() { "ok" } else { "needs `up`" };
    say!("lab {}{place}: {health}", status.lab);
    if status.vlans {
        say!("  {}", status.vlan_mode_text);
    }
    for object in &status.objects {
        say!(
            "  {:<8} {:<6} {:<16} {}",
            object.state,
            object.kind,
            object.name,
            object.role
        );
        for repair in &object.repairs {
            say!("           {repair}");
        }
    }
    for stale in &status.stale {
        say!("  stale    {stale} (no longer in the file)");
    }
    for vm in &status.vms {
        let pid = vm.pid.map_or("-".to_string(), |p| p.to_string());
        let uptime = vm.uptime_s.map_or("-".to_string(), |s| format!("{s}s"));
        let rss = vm.rss_bytes.map_or("-".to_string(), |b| {
            format!("{:.1}MiB", b as f64 / 1048576.0)
        });
        say!(
            "  {:<8} vm     {:<16} pid {pid}, up {uptime}, {} vCPU, {} (host RSS {rss})",
            vm.state,
            vm.name,
            vm.vcpus,
            vm.memory
        );
        for nic in &vm.nics {
            let addresses = if nic.addresses.is_empty() {
                "-".to_string()
            } else {
                nic.addresses.join(", ")
            };
            say!(
                "           nic {} {addresses} tap {} on {} vlans {}",
                nic.mac,
                nic.tap,
                nic.bridge,
                nic.vlans
            );
        }
        if vm.forward {
            say!("           router: forwards IPv4 between its interfaces");
        }
        for route in &vm.routes {
            say!("           route {route}");
        }
    }
    for note in &status.notes {
        say!("  note: {note}");
    }
}
