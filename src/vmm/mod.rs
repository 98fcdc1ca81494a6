//! The embedded KVM engine.

pub mod devices;
