//! The command line: argument parsing and one module per command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod graph;
mod labvm;
mod net;
mod schema;
mod shell;
mod validate;
mod vm;

/// Exit status for input that kvmlab rejects (an invalid topology file, say).
pub const EXIT_INVALID_INPUT: u8 = 2;

/// kvmlab: reproducible virtual network labs (bridges, VLANs, TAPs, KVM VMs) from one YAML file.
#[derive(Debug, Parser)]
#[command(
    name = "kvmlab",
    version,
    about,
    propagate_version = true,
    after_help = "Example:\n\n    kvmlab validate labs/two-pcs.yaml\n    kvmlab graph labs/two-pcs.yaml | dot -Tsvg > two-pcs.svg\n\nEach command explains itself: kvmlab COMMAND --help"
)]
pub struct Cli {
    /// The command to run.
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
// clap would take a doc comment on a variant as the command's help, in place of the
// one its arguments' struct gives with its example; so the variants have none.
#[allow(missing_docs)]
#[derive(Debug, Subcommand)]
pub enum Command {
    Validate(validate::ValidateArgs),
    Schema(schema::SchemaArgs),
    Graph(graph::GraphArgs),
    Plan(net::PlanArgs),
    Up(net::UpArgs),
    Down(net::DownArgs),
    Status(net::StatusArgs),
    Vm(vm::VmArgs),
    Console(labvm::ConsoleArgs),
    Logs(labvm::LogsArgs),
    Stats(labvm::StatsArgs),
    Inspect(labvm::InspectArgs),
    Completions(shell::CompletionsArgs),
    Manpage(shell::ManpageArgs),
    /// Lists lab, VM or bridge names for the completion scripts.
    #[command(name = "__complete", hide = true)]
    Complete(shell::CompleteArgs),
    /// Runs one VM of a lab in the background (started by `kvmlab up`).
    #[command(name = "__vmm", hide = true)]
    Vmm(crate::runner::child::VmmArgs),
}

/// Sets what a write to a pipe whose reader has gone does to this process.
fn sigpipe(handler: libc::sighandler_t) {
    // SAFETY: called before any thread of ours exists; SIG_DFL and SIG_IGN are
    // valid dispositions and no handler function is installed.
    unsafe { libc::signal(libc::SIGPIPE, handler) };
}

/// Parses the command line, runs the command and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    // `kvmlab status | head -1`: once the reader has gone, end quietly, killed by
    // SIGPIPE as `ip` and `git` are, instead of panicking in `println!` (Rust
    // ignores SIGPIPE by default). Done first so that clap's help and errors
    // also go quietly.
    sigpipe(libc::SIG_DFL);
    let cli = Cli::parse();
    // The VMM and the console write to sockets whose far end may close: there a
    // closed peer is an error they handle, and must never kill a VM. `up` and
    // `down` change the host: a reader that goes away must not stop them
    // half-way, so they ignore it and carry on (their lines go nowhere).
    if matches!(
        cli.command,
        Command::Vmm(_) | Command::Console(_) | Command::Up(_) | Command::Down(_)
    ) {
        sigpipe(libc::SIG_IGN);
    }
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Schema(args) => schema::run(&args),
        Command::Graph(args) => graph::run(&args),
        Command::Plan(args) => net::run_plan(&args),
        Command::Up(args) => net::run_up(&args),
        Command::Down(args) => net::run_down(&args),
        Command::Status(args) => net::run_status(&args),
        Command::Vm(args) => vm::run(&args),
        Command::Console(args) => labvm::run_console(&args),
        Command::Logs(args) => labvm::run_logs(&args),
        Command::Stats(args) => labvm::run_stats(&args),
        Command::Inspect(args) => labvm::run_inspect(&args),
        Command::Completions(args) => shell::run_completions(&args),
        Command::Manpage(args) => shell::run_manpage(&args),
        Command::Complete(args) => shell::run_complete(&args),
        Command::Vmm(args) => crate::runner::child::run(&args),
    }
}
