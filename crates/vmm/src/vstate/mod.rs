//! KVM state: the VM (memory, irqchip, PIT) and its vCPUs with their run loop.

pub mod coalesced;
pub mod counter_board;
pub mod kvm_stats;
pub mod vcpu;
pub mod vm;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::error::VmErrorKind;
use counter_board::CounterBoard;

/// Why a VM stopped.
#[derive(Debug)]
pub enum StopReason {
    /// The guest reset the machine (i8042 reset, or KVM's reset event).
    GuestReset,
    /// The guest powered off (KVM's shutdown system event).
    GuestPowerOff,
    /// The guest asked for a reboot (the reset control register, port 0xcf9); the
    /// caller may build the VM anew.
    GuestReboot,
    /// The caller's time limit ran out.
    Timeout,
    /// The host asked the VM to stop (`kvmlab down`, SIGTERM to the VM process).
    Requested,
    /// A vCPU hit an error (triple fault, emulation failure...).
    Failed(VmErrorKind),
}

impl StopReason {
    /// Short description for statistics and logs.
    pub fn describe(&self) -> String {
        match self {
            StopReason::GuestReset => "guest reset".to_string(),
            StopReason::GuestPowerOff => "guest power-off".to_string(),
            StopReason::GuestReboot => "guest reboot".to_string(),
            StopReason::Timeout => "time limit".to_string(),
            StopReason::Requested => "stopped by the host".to_string(),
            StopReason::Failed(kind) => {
                format!("error: {}", kind.to_string().lines().next().unwrap_or(""))
            }
        }
    }
}

/// Shared between the vCPU threads, the devices and the thread that runs the
/// VM: the first stop request wins, and every vCPU sees `should_stop`.
#[derive(Debug, Default)]
pub struct VmControl {
    stop: AtomicBool,
    reason: Mutex<Option<StopReason>>,
    changed: Condvar,
    /// Copies of the vCPUs' exit counters, for statistics while the VM runs.
    pub counters: CounterBoard,
}

impl VmControl {
    /// Asks the VM to stop for `reason` (ignored if a reason is already set).
    pub fn request_stop(&self, reason: StopReason) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.stop.store(true, Ordering::SeqCst);
        self.changed.notify_all();
    }

    /// Whether vCPUs should leave their run loop.
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Waits until a stop is requested or `timeout` passes (then requests a
    /// stop for `StopReason::Timeout`).
    pub fn wait(&self, timeout: Option<Duration>) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        while slot.is_none() {
            match deadline {
                None => slot = self.changed.wait(slot).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let now = std::time::Instant::now();
                    if now >= deadline {
                        *slot = Some(StopReason::Timeout);
                        self.stop.store(true, Ordering::SeqCst);
                        break;
                    }
                    slot = self
                        .changed
                        .wait_timeout(slot, deadline - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    }

    /// Sleeps for `period`, or less if a stop is requested meanwhile; returns
    /// whether the VM is stopping.
    pub fn sleep_unless_stopped(&self, period: Duration) -> bool {
        let slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() || self.should_stop() {
            return true;
        }
        let _ = self
            .changed
            .wait_timeout(slot, period)
            .unwrap_or_else(|p| p.into_inner());
        self.should_stop()
    }

    /// Takes the stop reason (after `wait`).
    pub fn take_reason(&self) -> Option<StopReason> {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn first_stop_reason_wins() {
        let control = Arc::new(VmControl::default());
        let other = control.clone();
        let t = std::thread::spawn(move || other.request_stop(StopReason::GuestReset));
        control.wait(Some(Duration::from_secs(10)));
        t.join().unwrap();
        control.request_stop(StopReason::Timeout);
        assert!(control.should_stop());
        assert!(matches!(
            control.take_reason(),
            Some(StopReason::GuestReset)
        ));
    }

    #[test]
    fn a_stop_cuts_a_sleep_short() {
        let control = Arc::new(VmControl::default());
        assert!(!control.sleep_unless_stopped(Duration::from_millis(1)));
        let other = control.clone();
        let started = std::time::Instant::now();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            other.request_stop(StopReason::Requested);
        });
        assert!(control.sleep_unless_stopped(Duration::from_secs(60)));
        assert!(started.elapsed() < Duration::from_secs(30));
        t.join().unwrap();
        assert!(control.sleep_unless_stopped(Duration::from_secs(60)));
    }

    #[test]
    fn wait_times_out() {
        let control = VmControl::default();
        control.wait(Some(Duration::from_millis(10)));
        assert!(control.should_stop());
        assert!(matches!(control.take_reason(), Some(StopReason::Timeout)));
    }
}
