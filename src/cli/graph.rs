//! `kvmlab graph`: draw a lab as Graphviz DOT or Mermaid.

use std::path::PathBuf;
use std::process::ExitCode;

use super::EXIT_INVALID_INPUT;
use super::validate::print_error;
use crate::graph;
use crate::topology;

/// Which drawing language to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Graphviz: pipe into `dot -Tsvg`.
    Dot,
    /// Mermaid: paste into Markdown slides or a README.
    Mermaid,
}

/// Draw a lab: bridges, links, TAPs, VMs and their NICs with VLANs and addresses.
///
/// The file is validated first. Examples:
///
///     kvmlab graph labs/two-vlans.yaml | dot -Tsvg > two-vlans.svg
///     kvmlab graph --format mermaid labs/two-vlans.yaml
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct GraphArgs {
    /// The topology file to draw.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Drawing language.
    #[arg(long, short, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

pub fn run(args: &GraphArgs) -> ExitCode {
    match topology::load(&args.file) {
        Ok(loaded) => {
            let text = match args.format {
                GraphFormat::Dot => graph::to_dot(&loaded.topology),
                GraphFormat::Mermaid => graph::to_mermaid(&loaded.topology),
            };
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            print_error(error);
            ExitCode::from(EXIT_INVALID_INPUT)
        }
    }
}
