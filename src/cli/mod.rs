//! The command line: argument parsing and one module per command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod graph;
mod schema;
mod validate;

/// Exit status for input that kvmlab rejects (an invalid topology file, say).
pub const EXIT_INVALID_INPUT: u8 = 2;

/// kvmlab: reproducible virtual network labs (bridges, VLANs, TAPs, KVM VMs) from one YAML file.
#[derive(Debug, Parser)]
#[command(name = "kvmlab", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// For people.
    Text,
    /// For scripts: one JSON document on standard output.
    Json,
}

/// Every kvmlab command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check topology files and report every problem with its line and column.
    Validate(validate::ValidateArgs),
    /// Print the JSON Schema of the topology file format.
    Schema(schema::SchemaArgs),
    /// Draw a lab as Graphviz DOT or Mermaid, for slides and notes.
    Graph(graph::GraphArgs),
}

/// Parses the command line, runs the command and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Schema(args) => schema::run(&args),
        Command::Graph(args) => graph::run(&args),
    }
}
