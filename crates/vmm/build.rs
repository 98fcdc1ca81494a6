//! Builds the built-in lab guest (`crates/guest`, a freestanding `#![no_std]` program)
//! and leaves it at `$OUT_DIR/kvmlab-guest`, where `src/builtin.rs` embeds it.
//!
//! The guest is built by a nested cargo for the `x86_64-unknown-linux-gnu` target
//! given explicitly (so the flags below reach only the guest, never build
//! scripts or proc macros), in its own target directory under `$OUT_DIR`:
//! * `-nostartfiles -static -relocation-model=static` and `guest/link.ld`: a
//!   static ELF at 1 MiB with no C runtime;
//! * `-sse,-sse2`: KVM on hosts without VMX/SVM (PVM) runs guests through KVM's
//!   instruction emulator, which does not know SSE arithmetic such as `xorps`
//!   (that LLVM emits to zero memory). rustc warns that the target's ABI wants
//!   SSE2; the guest uses no floating point, so no value crosses that ABI.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let guest_dir = manifest_dir.join("../guest");
    for path in ["src", "Cargo.toml", "Cargo.lock", "link.ld"] {
        println!("cargo:rerun-if-changed={}", guest_dir.join(path).display());
    }
    // The guest links the host-guest contract crate by path: a change there
    // rebuilds the guest too.
    let proto_dir = manifest_dir.join("../guest-proto");
    for path in ["src", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", proto_dir.join(path).display());
    }

    let target = "x86_64-unknown-linux-gnu";
    let target_dir = out_dir.join("guest-target");
    let linker_script = guest_dir.join("link.ld");
    let rustflags = [
        "-C".to_string(),
        "link-arg=-nostartfiles".to_string(),
        "-C".to_string(),
        "link-arg=-static".to_string(),
        "-C".to_string(),
        "relocation-model=static".to_string(),
        "-C".to_string(),
        format!("link-arg=-T{}", linker_script.display()),
        "-C".to_string(),
        "link-arg=-Wl,--build-id=none".to_string(),
        "-C".to_string(),
        "target-feature=-sse,-sse2".to_string(),
    ]
    .join("\x1f");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--target", target, "--manifest-path"])
        .arg(guest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTC_WRAPPER")
        .status()
        .expect("cannot run cargo to build the built-in guest");
    assert!(
        status.success(),
        "building the built-in guest (guest/) failed"
    );

    let built = target_dir.join(target).join("release").join("kvmlab-guest");
    let dest = out_dir.join("kvmlab-guest");
    std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
}
