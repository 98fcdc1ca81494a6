//! Devices the engine emulates for its guests.

pub mod virtio;
