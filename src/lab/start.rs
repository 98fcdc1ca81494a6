//! Starting a lab's VMs: one background process each, all started before any is
//! waited for, then a wait until each printed its ready marker, shown as one line
//! per VM (a spinner on a terminal, plain lines otherwise). On a terminal the lines
//! stay as the final state (`pc1 ready in 18.8ms`) under the plan `up` printed.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::LabError;
use super::vms::VmAction;
use crate::runner::LabVm;
use crate::runner::{self, Starting, VmFiles};

/// One line per VM on stderr.
enum Progress {
    Bars(MultiProgress, HashMap<String, ProgressBar>, ProgressStyle),
    Plain,
}

impl Progress {
    fn new(names: &[String]) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::Plain;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} {prefix:12} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let bars = names
            .iter()
            .map(|name| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(style.clone());
                bar.set_prefix(name.clone());
                bar.set_message("starting");
                bar.enable_steady_tick(Duration::from_millis(100));
                (name.clone(), bar)
            })
            .collect();
        // Once a VM is done its line holds no spinner or clock: it is a result.
        let done = ProgressStyle::with_template("  {prefix} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Progress::Bars(multi, bars, done)
    }

    fn started(&self, name: &str) {
        if let Progress::Plain = self {
            eprintln!("kvmlab: {name}: starting");
        }
    }

    fn ready(&self, name: &str, after: Duration) {
        match self {
            Progress::Bars(_, bars, done) => {
                if let Some(bar) = bars.get(name) {
                    bar.set_style(done.clone());
                    bar.finish_with_message(format!("ready in {after:.1?}"));
                }
            }
            Progress::Plain => eprintln!("kvmlab: {name}: ready in {after:.1?}"),
        }
    }

    /// Leaves every line on screen as the final state of its VM.
    fn finish(self) {
        if let Progress::Bars(_multi, bars, done) = self {
            for bar in bars.values() {
                if !bar.is_finished() {
                    bar.set_style(done.clone());
                    bar.abandon_with_message("not ready");
                }
            }
        }
    }
}

/// Starts the VMs that `actions` start or restart (their old processes are gone
/// already) in namespace `netns` and waits, at most `timeout`, until all are ready.
pub fn start_phase(
    actions: &[VmAction],
    wanted: &[LabVm],
    lab_dir: &Path,
    netns: Option<&str>,
    timeout: Duration,
) -> Result<(), LabError> {
    let to_start: Vec<&LabVm> = wanted
        .iter()
        .filter(|vm| {
            actions.iter().any(|a| {
                matches!(a, VmAction::StartVm { .. } | VmAction::RestartVm { .. })
                    && a.vm() == vm.name
            })
        })
        .collect();
    if to_start.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = to_start.iter().map(|vm| vm.name.clone()).collect();
    let progress = Progress::new(&names);
    let mut starting = Vec::new();
    for vm in to_start {
        let files = VmFiles::new(lab_dir, &vm.name);
        let fail = |source| LabError::VmProcess {
            vm: vm.name.clone(),
            source,
        };
        files.write_config(vm).map_err(fail)?;
        let child = runner::spawn(&files, netns).map_err(fail)?;
        progress.started(&vm.name);
        starting.push(Starting {
            name: vm.name.clone(),
            files,
            marker: vm.ready.clone(),
            child,
        });
    }
    let result = runner::wait_ready(&mut starting, timeout, |name, after| {
        progress.ready(name, after)
    });
    progress.finish();
    result.map_err(|e| LabError::NotReady {
        vm: e.vm,
        reason: e.reason,
        console_tail: indent(&e.console_tail),
        vmm_tail: indent(&e.vmm_tail),
    })
}

fn indent(text: &str) -> String {
    if text.trim().is_empty() {
        return "    (nothing)".to_string();
    }
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
