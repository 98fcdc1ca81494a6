//! `kvmlab validate`: check topology files without touching the host.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use super::{EXIT_INVALID_INPUT, OutputFormat};
use crate::topology::{self, LoadError};

/// Check topology files and report every problem, with its line and column.
///
/// Nothing on the host is changed. Exits 0 when every file is valid and 2 when any
/// is not; problems go to standard error.
///
/// Example:
///
///     kvmlab validate labs/*.yaml
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ValidateArgs {
    /// Topology files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// How to print the result: `text` for people, `json` for scripts and editors.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

pub fn run(args: &ValidateArgs) -> ExitCode {
    let mut invalid = 0;
    let mut results = Vec::new();
    for file in &args.files {
        let outcome = topology::load(file);
        if outcome.is_err() {
            invalid += 1;
        }
        match args.output {
            OutputFormat::Text => match outcome {
                Ok(loaded) => {
                    for warning in topology::warnings(&loaded.topology) {
                        eprintln!("{}: warning: {warning}", file.display());
                    }
                    eprintln!("{}: valid", file.display());
                }
                Err(error) => print_error(error),
            },
            OutputFormat::Json => results.push(json_result(file, outcome)),
        }
    }
    if args.output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).expect("JSON values serialise")
        );
    } else if args.files.len() > 1 {
        eprintln!(
            "{} of {} files valid",
            args.files.len() - invalid,
            args.files.len()
        );
    }
    if invalid == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_INVALID_INPUT)
    }
}

/// Most problems of one file shown in full; past them a file is usually wrong in one
/// way many times over, and thousands of snippets would bury the first ones.
pub const SHOWN_MAX: usize = 50;

/// Prints the problems of a file in the style of rustc (the first [`SHOWN_MAX`] of
/// them, then how many more there are), then a summary line.
pub fn print_error(error: LoadError) {
    match error {
        LoadError::Invalid { file, problems } => {
            let count = problems.len();
            for problem in problems.into_iter().take(SHOWN_MAX) {
                eprintln!("{:?}", miette::Report::new(problem));
            }
            if count > SHOWN_MAX {
                let rest = count - SHOWN_MAX;
                let plural = if rest == 1 { "" } else { "s" };
                eprintln!(
                    "... and {rest} more problem{plural} not shown (fix these first, or see them all with `kvmlab validate --output json`)"
                );
            }
            let plural = if count == 1 { "" } else { "s" };
            eprintln!("error: {file} has {count} problem{plural}");
        }
        other => eprintln!("{:?}", miette::Report::new(other)),
    }
}

fn json_result(
    file: &std::path::Path,
    outcome: Result<topology::LoadedTopology, LoadError>,
) -> serde_json::Value {
    let problems: Vec<serde_json::Value> = match &outcome {
        Ok(_) => Vec::new(),
        Err(LoadError::Invalid { problems, .. }) => problems
            .iter()
            .map(|p| {
                json!({
                    "message": p.message,
                    "line": p.line,
                    "column": p.column,
                    "path": p.path.as_ref().map(ToString::to_string),
                    "label": p.label,
                    "help": p.help,
                })
            })
            .collect(),
        Err(other) => vec![json!({ "message": other.to_string() })],
    };
    let warnings = match &outcome {
        Ok(loaded) => topology::warnings(&loaded.topology),
        Err(_) => Vec::new(),
    };
    json!({ "file": file, "valid": outcome.is_ok(), "problems": problems, "warnings": warnings })
}
