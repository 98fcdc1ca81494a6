//! Puts virtio devices on a VM: an MMIO window and an interrupt line each, the
//! interrupt wired as a KVM irqfd and every queue's notify register as a KVM
//! ioeventfd, and the `virtio_mmio.device=` words that tell the guest where they are.

use std::sync::{Arc, Mutex};

use kvm_ioctls::{IoEventAddress, VmFd};
use kvmlab_guest_proto::cmdline::Word;
use kvmlab_guest_proto::mmio::MmioDevice;
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::VirtioDevice;
use super::mmio::{MMIO_WINDOW_SIZE, MmioTransport, QUEUE_NOTIFY_OFFSET};
use crate::devices::{Bus, BusDevice};
use crate::error::VmErrorKind;

/// First virtio-mmio window, inside the MMIO gap below 4 GiB.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
/// First interrupt line for virtio devices (COM1 has 4).
pub const VIRTIO_FIRST_IRQ: u32 = 5;
/// Last usable IOAPIC pin.
pub const VIRTIO_LAST_IRQ: u32 = 23;

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        MmioTransport::read(self, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        MmioTransport::write(self, offset, data);
    }
}

/// Where an attached device sits: what the guest needs to find it, whether
/// through the command line or through ACPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioSlot {
    /// Guest-physical address of the device's MMIO window.
    pub base: u64,
    /// Size of the window in bytes.
    pub size: u64,
    /// IOAPIC pin (GSI) of the device's edge-triggered interrupt.
    pub irq: u32,
}

/// The attached devices, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attached {
    /// The `virtio_mmio.device=` words that announce them on the command line.
    pub cmdline: String,
    /// Their windows and interrupts.
    pub slots: Vec<MmioSlot>,
}

/// Attaches `devices` in order; returns where they are and the command-line
/// words that announce them.
pub fn attach(
    vm: &VmFd,
    memory: &GuestMemoryMmap,
    mmio: &mut Bus,
    devices: Vec<(String, Box<dyn VirtioDevice>)>,
) -> Result<Attached, VmErrorKind> {
    let most = (VIRTIO_LAST_IRQ - VIRTIO_FIRST_IRQ + 1) as usize;
    if devices.len() > most {
        return Err(VmErrorKind::InvalidConfig(format!(
            "{} virtio devices asked for; a VM has room for {most}",
            devices.len()
        )));
    }
    let setup = |what: &str, e: std::io::Error| VmErrorKind::Setup(format!("{what}: {e}"));
    let kvm = |op: &'static str| move |source| VmErrorKind::Kvm { op, source };
    let mut words = Vec::new();
    let mut slots = Vec::new();
    for (index, (name, device)) in devices.into_iter().enumerate() {
        let base = VIRTIO_MMIO_START + index as u64 * MMIO_WINDOW_SIZE;
        let irq = VIRTIO_FIRST_IRQ + index as u32;
        let irq_fd = EventFd::new(EFD_NONBLOCK).map_err(|e| setup("eventfd", e))?;
        let transport = MmioTransport::new(device, memory.clone(), irq_fd)
            .map_err(|e| setup(&format!("{name}: queue event fds"), e))?;
        vm.register_irqfd(transport.interrupt().irq_fd(), irq)
            .map_err(kvm("KVM_IRQFD"))?;
        for (queue, notifier) in transport.queue_notifiers().iter().enumerate() {
            // The guest writes the queue's index to QueueNotify: KVM signals the
            // matching fd without an exit to user space.
            let address = IoEventAddress::Mmio(base + QUEUE_NOTIFY_OFFSET);
            vm.register_ioevent(notifier, &address, queue as u32)
                .map_err(kvm("KVM_IOEVENTFD"))?;
        }
        let label = format!("{name} {base:#x}");
        mmio.insert(
            base,
            MMIO_WINDOW_SIZE,
            &label,
            Arc::new(Mutex::new(transport)),
        )
        .map_err(|e| VmErrorKind::Setup(e.to_string()))?;
        // The word is part of the host–guest contract: the built-in guest parses it
        // with the same definition.
        words.push(
            Word::MmioDevice(MmioDevice {
                base,
                size: MMIO_WINDOW_SIZE,
                irq,
            })
            .to_string(),
        );
        slots.push(MmioSlot {
            base,
            size: MMIO_WINDOW_SIZE,
            irq,
        });
    }
    Ok(Attached {
        cmdline: words.join(" "),
        slots,
    })
}
