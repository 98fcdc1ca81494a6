//! The engine as a library, as the lab reconciler will use it: a plain
//! `VmConfig`, the console going to a sink of the caller's choosing (here a
//! buffer, a log file for `kvmlab up`). Needs /dev/kvm (CI has it).

use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvmlab_vmm::{ConsoleIo, StopReason, VmConfig, VmErrorKind, run_vm};

/// A console sink the test can read back.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn require_kvm() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: this test boots a VM and needs KVM"
    );
}

#[test]
fn console_goes_to_the_callers_sink() {
    require_kvm();
    let capture = Capture::default();
    let mut config = VmConfig::new("lib-pc1");
    config.memory_bytes = 32 << 20;
    config.cmdline = "lab=demo".to_string();
    let console = ConsoleIo {
        output: Box::new(capture.clone()),
        input: None,
    };
    let run = run_vm(&config, console, Some(Duration::from_secs(30))).expect("VM builds");
    assert!(
        matches!(run.result, Ok(StopReason::GuestReset)),
        "{:?}",
        run.result
    );
    let text = capture.text();
    assert!(text.contains("): memory 32 MiB\r\n"), "{text:?}");
    assert!(
        text.contains("kvmlab-guest: cmdline \"lab=demo\"\r\n"),
        "{text:?}"
    );
    assert_eq!(run.stats.vm, "lib-pc1");
    assert_eq!(run.stats.outcome, "guest reset");
    assert!(run.stats.total_exits > 0);
}

#[test]
fn triple_fault_comes_back_as_an_error_value() {
    require_kvm();
    let mut config = VmConfig::new("lib-crash");
    config.cmdline = "kvmlab.test=triple-fault".to_string();
    let console = ConsoleIo {
        output: Box::new(io::sink()),
        input: None,
    };
    let run = run_vm(&config, console, Some(Duration::from_secs(30))).expect("VM builds");
    let err = run.result.expect_err("the guest crashed");
    assert_eq!(err.vm, "lib-crash");
    assert!(
        matches!(err.kind, VmErrorKind::TripleFault { vcpu: 0, .. }),
        "{err}"
    );
    assert!(
        run.stats.outcome.starts_with("error: vCPU 0: triple fault"),
        "{}",
        run.stats.outcome
    );
}
