//! `kvmlab`: provision virtual network labs from a YAML topology file.

use std::process::ExitCode;

fn main() -> ExitCode {
    kvmlab::cli::main()
}
