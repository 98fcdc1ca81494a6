//! virtio devices (network, block) and the virtio-mmio transport that presents them
//! to the guest.
//!
//! A device sees only guest memory, its queues, an [`Interrupt`] to raise and one
//! [`EventFd`] per queue that fires when the guest notifies it. The engine registers
//! those event fds as KVM ioeventfds and the interrupt's fd as an irqfd, so a packet
//! does not bounce through the vCPU thread; the transport also signals them itself
//! for a notification that arrives as an ordinary MMIO exit.

pub mod attach;
pub mod block;
pub mod mmio;
pub mod net;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use virtio_queue::Queue;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

/// Feature bit: the device follows virtio 1.0 or later ("modern").
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device status bits written by the driver (virtio 1.2, 2.1).
pub mod status {
    /// The guest has found the device and recognised it as a virtio device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The guest has a driver for the device.
    pub const DRIVER: u32 = 2;
    /// The driver is set up and the device may run: the device activates here.
    pub const DRIVER_OK: u32 = 4;
    /// The driver has acknowledged the features it understands; no more changes.
    pub const FEATURES_OK: u32 = 8;
    /// Set by the device: it hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u32 = 128;
}

/// Interrupt status bit: a queue has new used buffers.
pub const INTERRUPT_VRING: u32 = 1;
/// Interrupt status bit: the configuration space changed.
pub const INTERRUPT_CONFIG: u32 = 2;

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver set up a different number of queues than the device uses.
    #[error("the driver set up {got} queues, the device needs {want}")]
    QueueCount {
        /// How many queues the device needs.
        want: usize,
        /// How many the driver set up.
        got: usize,
    },
    /// A queue's rings (by index) do not fit in guest memory or are inconsistent.
    #[error("queue {0} lies outside guest memory or is malformed")]
    InvalidQueue(usize),
    /// An I/O error while starting the device: opening its backend (TAP, image file),
    /// duplicating its event fds or spawning its worker thread.
    #[error("cannot start the device's worker: {0}")]
    Worker(std::io::Error),
}

/// The interrupt line of one device: the status the guest reads back and the event
/// fd that injects the interrupt (a KVM irqfd in a running VM).
#[derive(Debug)]
pub struct Interrupt {
    status: AtomicU32,
    irq: EventFd,
}

impl Interrupt {
    /// An interrupt that signals `irq` when raised.
    pub fn new(irq: EventFd) -> Self {
        Interrupt {
            status: AtomicU32::new(0),
            irq,
        }
    }

    /// Sets `bit` in the interrupt status and injects the interrupt.
    pub fn raise(&self, bit: u32) -> std::io::Result<()> {
        self.status.fetch_or(bit, Ordering::SeqCst);
        self.irq.write(1)
    }

    /// The bits the guest has not acknowledged yet.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// Clears the bits the guest acknowledged.
    pub fn acknowledge(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// The fd the engine registers as an irqfd.
    pub fn irq_fd(&self) -> &EventFd {
        &self.irq
    }
}

/// What a device gets when the driver has set it up.
pub struct Activation {
    /// The guest's memory, where the queues and the buffers they point at live.
    pub mem: GuestMemoryMmap,
    /// The queues as the driver set them up, in queue-index order.
    pub queues: Vec<Queue>,
    /// One per queue: readable when the guest notified that queue.
    pub notifiers: Vec<EventFd>,
    /// The interrupt to raise when the device has used buffers for the guest.
    pub interrupt: Arc<Interrupt>,
}

/// A virtio device behind a transport.
pub trait VirtioDevice: Send {
    /// The virtio device id (1 network, 2 block).
    fn device_type(&self) -> u32;
    /// The largest size of each of its queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// The feature bits the device offers.
    fn features(&self) -> u64;
    /// The feature bits the driver accepted (a subset of [`Self::features`]).
    fn ack_features(&mut self, features: u64);
    /// Reads from the device-specific configuration space.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes to the configuration space; most devices ignore it.
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts the device on the queues the driver set up.
    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError>;
    /// Stops the device so the driver can set it up again.
    fn reset(&mut self);
}

/// A device's worker thread, told to stop through an event fd when the device is
/// reset or dropped.
pub(crate) struct WorkerThread {
    kill: EventFd,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl WorkerThread {
    /// Runs `body` on a thread called `name`; `body` gets the fd that becomes
    /// readable when it must stop.
    pub(crate) fn spawn(
        name: String,
        body: impl FnOnce(EventFd) + Send + 'static,
    ) -> Result<WorkerThread, ActivateError> {
        let kill =
            EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).map_err(ActivateError::Worker)?;
        let theirs = kill.try_clone().map_err(ActivateError::Worker)?;
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(move || body(theirs))
            .map_err(ActivateError::Worker)?;
        Ok(WorkerThread {
            kill,
            handle: Some(handle),
        })
    }
}

impl Drop for WorkerThread {
    fn drop(&mut self) {
        let _ = self.kill.write(1);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Copies `config[offset..]` into `data`, leaving bytes past its end untouched.
pub(crate) fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(source) = config.get(start..) {
        let n = source.len().min(data.len());
        data[..n].copy_from_slice(&source[..n]);
    }
}

#[cfg(any(test, feature = "test-utils"))]
pub mod testing {
    //! Guest memory and queues for device tests, built with virtio-queue's mocks
    //! (the `test-utils` feature offers them to tests outside this crate).

    use virtio_queue::desc::{RawDescriptor, split::Descriptor as SplitDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::{Queue, QueueT};
    use vm_memory::{GuestAddress, GuestMemoryMmap};

    /// Where test buffers start, past the mock queue's rings.
    pub const BUFFERS: u64 = 0x10_0000;

    /// 4 MiB of guest memory at address 0.
    pub fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).unwrap()
    }

    /// A descriptor of `len` bytes at `addr`, written by the device when `writable`.
    pub fn desc(addr: u64, len: u32, writable: bool) -> RawDescriptor {
        let flags = if writable {
            virtio_bindings::virtio_ring::VRING_DESC_F_WRITE as u16
        } else {
            0
        };
        RawDescriptor::from(SplitDescriptor::new(addr, len, flags, 0))
    }

    /// A queue of 16 entries at guest address 0 holding `chains`.
    pub fn queue<'a>(
        mem: &'a GuestMemoryMmap,
        chains: &[Vec<RawDescriptor>],
    ) -> (MockSplitQueue<'a, GuestMemoryMmap>, Queue) {
        queue_at(mem, 0, chains)
    }

    /// A queue of 16 entries at `base` (below [`BUFFERS`]) holding `chains`.
    pub fn queue_at<'a>(
        mem: &'a GuestMemoryMmap,
        base: u64,
        chains: &[Vec<RawDescriptor>],
    ) -> (MockSplitQueue<'a, GuestMemoryMmap>, Queue) {
        let mock = MockSplitQueue::create(mem, vm_memory::GuestAddress(base), 16);
        let mut offset = 0;
        for chain in chains {
            let mut linked = chain.clone();
            let last = linked.len() - 1;
            for (i, d) in linked.iter_mut().enumerate() {
                let sd = SplitDescriptor::from(*d);
                let (flags, next) = if i == last {
                    (
                        sd.flags() & !(virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16),
                        0,
                    )
                } else {
                    (
                        sd.flags() | virtio_bindings::virtio_ring::VRING_DESC_F_NEXT as u16,
                        offset + i as u16 + 1,
                    )
                };
                *d = RawDescriptor::from(SplitDescriptor::new(sd.addr().0, sd.len(), flags, next));
            }
            mock.add_desc_chains(&linked, offset).unwrap();
            offset += linked.len() as u16;
        }
        let mut queue: Queue = mock.create_queue().unwrap();
        queue.set_event_idx(false);
        (mock, queue)
    }
}
