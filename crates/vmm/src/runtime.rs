//! Running a built VM: one thread per vCPU, a wait for the first stop request
//! (guest reset, power-off, error, time limit), then every vCPU is kicked out of
//! KVM_RUN with a signal and the exit statistics are gathered.

use std::sync::Arc;
use std::sync::Once;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use vmm_sys_util::signal::{Killable, SIGRTMIN, register_signal_handler};

use crate::devices::virtio::net::NetCounters;
use crate::error::{VmError, VmErrorKind};
use crate::resident;
use crate::stats::{ExitStats, RUNNING, VcpuCounters, unix_ms};
use crate::vstate::coalesced::CoalescedRing;
use crate::vstate::vcpu::drain_coalesced;
use crate::vstate::vcpu::{Buses, Vcpu};
use crate::vstate::vm::Vm;
use crate::vstate::{StopReason, VmControl};

/// How long to keep kicking vCPUs out of KVM_RUN before giving up on them.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// A VM ready to run (see [`crate::builder::build`]).
pub struct Vmm {
    pub(crate) name: String,
    // Keeps guest memory and the VM fd alive while vCPU threads run.
    pub(crate) _vm: Vm,
    pub(crate) vcpus: Vec<Vcpu>,
    pub(crate) buses: Arc<Buses>,
    pub(crate) control: Arc<VmControl>,
    pub(crate) kernel_description: String,
    pub(crate) notes: Vec<String>,
    /// Each NIC's TAP and counters.
    pub(crate) nics: Vec<(String, Arc<NetCounters>)>,
}

/// The outcome of [`Vmm::run`].
#[derive(Debug)]
pub struct VmRun {
    /// How the VM stopped: `Ok` for a guest reset or power-off or the time
    /// limit, `Err` when the guest or the engine failed.
    pub result: Result<StopReason, VmError>,
    /// Exit statistics.
    pub stats: ExitStats,
}

/// Stops a running VM from another thread: [`Vmm::run`] then returns as for any
/// other stop, with the statistics gathered.
#[derive(Clone)]
pub struct StopHandle(Arc<VmControl>);

impl StopHandle {
    /// Asks the VM to stop (a no-op once it is stopping for another reason).
    pub fn stop(&self) {
        self.0.request_stop(StopReason::Requested);
    }
}

/// Takes the exit statistics of the running VM from another thread (for
/// `kvmlab stats` while a lab runs).
#[derive(Clone)]
pub struct StatsHandle {
    name: String,
    control: Arc<VmControl>,
    buses: Arc<Buses>,
    nics: Vec<(String, Arc<NetCounters>)>,
    since: Instant,
}

/// How long a snapshot waits for the vCPUs to hand over their counters.
const SNAPSHOT_LIMIT: Duration = Duration::from_millis(500);

impl StatsHandle {
    /// The VM's statistics now, outcome [`RUNNING`]; the run time counts
    /// from when the handle was taken. A vCPU that does not answer within half
    /// a second (or that has stopped) is left out, and `vcpus` says how many
    /// answered. Writes KVM buffered and the flusher delivered are not counted
    /// until the VM stops.
    pub fn snapshot(&self) -> ExitStats {
        let counters = self.control.counters.collect(SNAPSHOT_LIMIT, kick_thread);
        let mut snapshot = ExitStats::merge(
            &self.name,
            &counters,
            &self.buses.pio.names(),
            &self.buses.mmio.names(),
        );
        snapshot.outcome = RUNNING.to_string();
        snapshot.taken_at_ms = unix_ms();
        snapshot.duration_ms = self.since.elapsed().as_millis() as u64;
        snapshot.nics = self
            .nics
            .iter()
            .map(|(tap, counters)| (tap.clone(), counters.snapshot()))
            .collect();
        snapshot
    }
}

/// Kicks one vCPU thread out of KVM_RUN.
fn kick_thread(thread: libc::pthread_t) {
    // SAFETY: the counter board hands out only threads still in their run loop
    // (a vCPU thread leaves the board, under the lock the caller holds, before
    // it exits), and the kick signal has a handler installed before any vCPU
    // thread starts.
    unsafe { libc::pthread_kill(thread, kick_signal()) };
}

/// The signal that kicks a vCPU thread out of KVM_RUN.
fn kick_signal() -> i32 {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

impl Vmm {
    /// Things the user should know about this VM's setup (host limitations).
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// What kernel format was booted ("ELF", "vmlinux ELF unpacked from the bzImage"...).
    pub fn kernel_description(&self) -> &str {
        &self.kernel_description
    }

    /// A handle that stops the running VM from another thread (for
    /// [`StopReason::Requested`]).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.control.clone())
    }

    /// A handle that takes the statistics of the running VM from another thread.
    pub fn stats_handle(&self) -> StatsHandle {
        StatsHandle {
            name: self.name.clone(),
            control: self.control.clone(),
            buses: self.buses.clone(),
            nics: self.nics.clone(),
            since: Instant::now(),
        }
    }

    /// Runs the VM until it stops, or until `timeout` passes.
    pub fn run(self, timeout: Option<Duration>) -> VmRun {
        static HANDLER: Once = Once::new();
        let mut handler_result = Ok(());
        HANDLER.call_once(|| handler_result = register_signal_handler(kick_signal(), on_kick));
        let started = Instant::now();
        let control = self.control.clone();
        if let Err(e) = handler_result {
            control.request_stop(StopReason::Failed(VmErrorKind::Setup(format!(
                "installing the vCPU kick signal handler: {e}"
            ))));
        }

        let flusher = self
            .vcpus
            .first()
            .and_then(Vcpu::map_coalesced_ring)
            .map(|ring| spawn_flusher(ring, self.buses.clone(), control.clone()));
        let mut handles: Vec<JoinHandle<VcpuCounters>> = Vec::new();
        for (index, vcpu) in self.vcpus.into_iter().enumerate() {
            if control.should_stop() {
                break;
            }
            match thread::Builder::new()
                .name(format!("vcpu{index}"))
                .spawn(move || vcpu.run())
            {
                Ok(handle) => handles.push(handle),
                Err(e) => control.request_stop(StopReason::Failed(VmErrorKind::Setup(format!(
                    "starting vCPU thread {index}: {e}"
                )))),
            }
        }

        // Start-up is over: its code need not stay resident while the VM runs.
        if !control.should_stop() {
            resident::release_startup_pages();
        }
        control.wait(timeout);
        let counters = stop_vcpus(handles);
        let flushed = flusher.and_then(|f| f.join().ok()).unwrap_or(0);
        let reason = control.take_reason().unwrap_or(StopReason::Timeout);
        let mut stats = ExitStats::merge(
            &self.name,
            &counters,
            &self.buses.pio.names(),
            &self.buses.mmio.names(),
        );
        stats.outcome = reason.describe();
        stats.coalesced_writes += flushed;
        stats.nics = self
            .nics
            .iter()
            .map(|(tap, counters)| (tap.clone(), counters.snapshot()))
            .collect();
        stats.duration_ms = started.elapsed().as_millis() as u64;
        stats.taken_at_ms = unix_ms();
        let result = match reason {
            StopReason::Failed(kind) => Err(VmError {
                vm: self.name,
                kind,
            }),
            other => Ok(other),
        };
        VmRun { result, stats }
    }
}

/// How often buffered console writes are delivered while no vCPU exits and the
/// guest is writing.
const FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// The longest wait between looks once the guest has stopped writing: an idle VM
/// should cost its host (next to) nothing. Guests that read the UART's status
/// after writing (the built-in guest, Linux's 8250 driver) have their output
/// delivered at that exit anyway; the flusher is the safety net.
const IDLE_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

/// A thread that delivers writes KVM buffered (the console's last bytes before
/// the guest halts) until the VM stops, then once more; returns how many. It looks
/// every [`FLUSH_INTERVAL`] while there is output, and backs off to
/// [`IDLE_FLUSH_INTERVAL`] while there is none.
fn spawn_flusher(
    mut ring: CoalescedRing,
    buses: Arc<Buses>,
    control: Arc<VmControl>,
) -> JoinHandle<u64> {
    thread::spawn(move || {
        let mut delivered = 0;
        let mut interval = FLUSH_INTERVAL;
        // Woken early by a stop, so that stopping never waits out an interval.
        while !control.sleep_unless_stopped(interval) {
            let found = drain_coalesced(&mut ring, &buses);
            delivered += found;
            interval = if found > 0 {
                FLUSH_INTERVAL
            } else {
                (interval * 2).min(IDLE_FLUSH_INTERVAL)
            };
        }
        delivered + drain_coalesced(&mut ring, &buses)
    })
}

/// Kicks every vCPU thread until it leaves its run loop (the stop flag is
/// already set), for at most `STOP_GRACE`; returns the counters of those that
/// ended. A signal can land just before a thread enters KVM_RUN and be lost,
/// hence the repeated kicks.
fn stop_vcpus(mut handles: Vec<JoinHandle<VcpuCounters>>) -> Vec<VcpuCounters> {
    let deadline = Instant::now() + STOP_GRACE;
    let mut counters = Vec::new();
    while !handles.is_empty() {
        let (done, running): (Vec<_>, Vec<_>) = handles.into_iter().partition(|h| h.is_finished());
        counters.extend(done.into_iter().filter_map(|h| h.join().ok()));
        handles = running;
        if handles.is_empty() || Instant::now() >= deadline {
            break;
        }
        for handle in &handles {
            let _ = handle.kill(kick_signal());
        }
        thread::sleep(Duration::from_micros(200));
    }
    counters
}
