//! kvmlab turns a YAML topology file into a running virtual lab on one Linux host.
//!
//! Dependencies point one way: `cli` uses everything else; `topology` is pure data
//! and validation; the engine under `vmm` knows nothing about topologies.

pub mod apply;
pub mod cli;
pub mod graph;
pub mod lab;
pub mod netlink;
pub mod netns;
pub mod observe;
pub mod plan;
pub mod runner;
pub mod state;
pub mod topology;
