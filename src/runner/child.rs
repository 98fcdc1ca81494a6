//! The VM process (`kvmlab __vmm --dir DIR [--netns NS]`): enters the lab's
//! namespace (where its TAPs are), serves the console, boots the VM from `vm.json`
//! and runs it until the guest stops or SIGTERM asks it to, then saves the exit
//! statistics; a guest that reboots is booted again in the same process, on the
//! same console. SIGUSR1 saves them while the VM runs (`kvmlab stats`). Its stdout
//! and stderr are the VM's `vmm.log`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::signal::{SigSet, Signal};

use super::VmFiles;
use super::console;
use crate::netns;
use kvmlab_vmm::{ConsoleIo, StatsHandle, StopHandle, StopReason};

/// Arguments of the hidden `__vmm` subcommand.
#[derive(Debug, clap::Args)]
pub struct VmmArgs {
    /// The VM's folder in the lab's state directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The network namespace the lab's TAPs live in.
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
}

fn log(files: &VmFiles, message: &str) {
    let name = files
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    eprintln!("kvmlab: VM '{name}': {message}");
}

/// Runs one VM in this process until it stops.
pub fn run(args: &VmmArgs) -> ExitCode {
    let files = VmFiles {
        dir: args.dir.clone(),
    };
    // Stop signals are taken by one thread with sigwait; block them before any
    // thread exists so that every thread inherits the mask.
    let mut signals = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        signals.add(signal);
    }
    if let Err(e) = signals.thread_block() {
        log(&files, &format!("cannot block stop signals: {e}"));
        return ExitCode::FAILURE;
    }
    if let Some(name) = &args.netns {
        if let Err(e) = netns::enter(name) {
            log(
                &files,
                &format!("cannot enter network namespace {name}: {e}"),
            );
            return ExitCode::FAILURE;
        }
    }
    let lab_vm = match files.read_config() {
        Ok(vm) => vm,
        Err(e) => {
            log(
                &files,
                &format!("cannot read {}: {e}", files.config().display()),
            );
            return ExitCode::FAILURE;
        }
    };
    let serial_log = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.serial_log())
    {
        Ok(f) => f,
        Err(e) => {
            log(&files, &format!("cannot open the serial log: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let console = match console::serve(&files.console_socket(), serial_log) {
        Ok(console) => console,
        Err(e) => {
            log(&files, &format!("cannot serve the console socket: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let config = lab_vm.vm_config();
    // The VM of the current boot, for the signal thread: a reboot builds it anew.
    let current: Arc<Mutex<Option<(StopHandle, StatsHandle)>>> = Arc::default();
    let stopping = Arc::new(AtomicBool::new(false));
    let stats_file = files.stats();
    let (watched, stop_flag) = (current.clone(), stopping.clone());
    let waiter = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            while let Ok(signal) = signals.wait() {
                let vm = watched.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if signal == Signal::SIGUSR1 {
                    // `kvmlab stats` asks for the statistics of the running VM.
                    if let Some((_, stats)) = vm
                        && let Err(e) = stats.snapshot().save(&stats_file)
                    {
                        eprintln!("kvmlab: cannot save statistics: {e}");
                    }
                    continue;
                }
                eprintln!("kvmlab: {signal} received, stopping the VM");
                stop_flag.store(true, Ordering::SeqCst);
                if let Some((stopper, _)) = vm {
                    stopper.stop();
                }
                break;
            }
        });
    if let Err(e) = waiter {
        log(&files, &format!("cannot start the signal thread: {e}"));
    }
    loop {
        let (output, input) = match console.ends() {
            Ok(ends) => ends,
            Err(e) => {
                log(&files, &format!("cannot open the console: {e}"));
                return ExitCode::FAILURE;
            }
        };
        let io = ConsoleIo {
            output: Box::new(output),
            input: Some(Box::new(input)),
        };
        let vm = match kvmlab_vmm::build(&config, io) {
            Ok(vm) => vm,
            Err(e) => {
                // The error names the VM; `log` says which VM already.
                log(&files, &e.kind.to_string());
                return ExitCode::from(e.exit_code());
            }
        };
        log(
            &files,
            &format!(
                "booting {}, {} MiB, {} vCPU(s), pid {}",
                vm.kernel_description(),
                config.memory_bytes >> 20,
                config.vcpus,
                std::process::id()
            ),
        );
        for note in vm.notes() {
            log(&files, &format!("note: {note}"));
        }
        *current.lock().unwrap_or_else(|p| p.into_inner()) =
            Some((vm.stop_handle(), vm.stats_handle()));
        // A stop asked for while this boot was being built.
        if stopping.load(Ordering::SeqCst) {
            vm.stop_handle().stop();
        }
        let outcome = vm.run(None);
        eprint!("kvmlab: {}", outcome.stats.render());
        if let Err(e) = outcome.stats.save(&files.stats()) {
            log(&files, &format!("cannot save statistics: {e}"));
        }
        match outcome.result {
            Ok(StopReason::GuestReboot) if !stopping.load(Ordering::SeqCst) => {
                // The same machine boots again: same console, same process.
                log(&files, "rebooting");
                console.retire();
                continue;
            }
            Ok(StopReason::Requested) => log(&files, "stopped"),
            Ok(reason) => log(&files, &format!("stopped: {}", reason.describe())),
            Err(e) => {
                let _ = std::fs::remove_file(files.console_socket());
                // The error names the VM; `log` says which VM already.
                log(&files, &e.kind.to_string());
                return ExitCode::from(e.exit_code());
            }
        }
        let _ = std::fs::remove_file(files.console_socket());
        return ExitCode::SUCCESS;
    }
}
