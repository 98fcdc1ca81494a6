//! `kvmlab schema`: print the JSON Schema of the topology file.

use std::process::ExitCode;

use crate::topology::Topology;

/// Print the JSON Schema of the topology file format.
///
/// Editors use it for completion and checking as you type; for example, with the
/// YAML language server, put this first line in a lab file:
///
///     # yaml-language-server: $schema=../schemas/kvmlab.schema.json
///
/// The same schema is committed as schemas/kvmlab.schema.json. Example:
///
///     kvmlab schema > kvmlab.schema.json
#[derive(Debug, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct SchemaArgs {}

/// The schema, as the text `kvmlab schema` prints.
pub fn schema_json() -> String {
    let schema = schemars::schema_for!(Topology);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serialises");
    text.push('\n');
    text
}

pub fn run(_args: &SchemaArgs) -> ExitCode {
    print!("{}", schema_json());
    ExitCode::SUCCESS
}
