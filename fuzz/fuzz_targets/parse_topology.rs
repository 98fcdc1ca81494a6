//! Feeds arbitrary text to the topology reader and renders what it reports, as
//! `kvmlab validate` does: neither may panic, whatever the file holds.
//!
//!     cargo +nightly fuzz run parse_topology -- -max_total_time=120

#![no_main]

use std::path::PathBuf;

use kvmlab::topology::{Context, parse_str};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Bytes that are not UTF-8 never reach the parser: `load` refuses them first.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let ctx = Context {
        // No file the input names exists here, so file checks run and fail.
        base_dir: PathBuf::from("/nonexistent-kvmlab-fuzz"),
        host_memory: Some(1 << 30),
    };
    if let Err(problems) = parse_str("fuzz.yaml", text, &ctx) {
        for problem in problems.into_iter().take(50) {
            let _ = format!("{:?}", miette::Report::new(problem));
        }
    }
});
