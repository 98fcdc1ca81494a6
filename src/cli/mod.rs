//! The command line: argument parsing and one module per command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod validate;
mod vm;

/// Exit status for input that kvmlab rejects (an invalid topology file, say).
pub const EXIT_INVALID_INPUT: u8 = 2;

/// kvmlab: reproducible virtual network labs (bridges, VLANs, TAPs, KVM VMs) from one YAML file.
#[derive(Debug, Parser)]
#[command(name = "kvmlab", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Every kvmlab command.
#[derive(Debug, Subcommand)]
pub enum Command {
    Validate(validate::ValidateArgs),
    /// Run VMs with the embedded KVM engine.
    Vm(vm::VmArgs),
}

/// Parses the command line, runs the command and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Vm(args) => vm::run(&args),
    }
}
