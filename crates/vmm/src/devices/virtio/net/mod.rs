//! virtio-net backed by a TAP device, with VLAN membership enforced at the NIC where
//! the bridge cannot filter VLANs.
//!
//! Queue 0 receives (host to guest), queue 1 transmits. A worker thread per NIC waits
//! on the TAP and the queues' notification fds; frames are copied once each way, with
//! the virtio-net header passed through so that checksum and segmentation offloads
//! stay with the host kernel.

pub mod tap;
pub mod vlan;

use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use self::tap::Tap;
use self::vlan::{TAG_LEN, Verdict, VlanPolicy};
use super::{
    ActivateError, Activation, INTERRUPT_VRING, Interrupt, VIRTIO_F_VERSION_1, VirtioDevice,
    WorkerThread, read_config_bytes,
};

/// virtio device id of a network card.
pub const DEVICE_TYPE_NET: u32 = 1;
/// The virtio-net header of a modern device (`struct virtio_net_hdr_v1`).
pub const VNET_HDR_LEN: usize = 12;
/// Largest frame: a 64 KiB TSO segment, its Ethernet and VLAN headers, and the header.
const MAX_BUFFER: usize = VNET_HDR_LEN + 65_535 + 14 + TAG_LEN;
const QUEUE_SIZE: u16 = 256;

const F_CSUM: u64 = 1 << 0;
const F_GUEST_CSUM: u64 = 1 << 1;
const F_MAC: u64 = 1 << 5;
const F_GUEST_TSO4: u64 = 1 << 7;
const F_GUEST_TSO6: u64 = 1 << 8;
const F_HOST_TSO4: u64 = 1 << 11;
const F_HOST_TSO6: u64 = 1 << 12;

/// A NIC as the engine is asked to make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The TAP to open (it exists already).
    pub tap: String,
    /// The MAC address the guest reads from the device's configuration space.
    pub mac: [u8; 6],
    /// Which VLANs the NIC belongs to, enforced on every frame in both directions.
    pub vlan: VlanPolicy,
}

/// Per-NIC counters: what passed and, by reason, what was dropped.
#[derive(Debug, Default)]
pub struct NetCounters {
    /// Frames delivered to the guest.
    pub rx_frames: AtomicU64,
    /// Bytes of those frames, Ethernet header included, virtio-net header not.
    pub rx_bytes: AtomicU64,
    /// Frames from the guest written to the TAP.
    pub tx_frames: AtomicU64,
    /// Bytes of those frames, Ethernet header included, virtio-net header not.
    pub tx_bytes: AtomicU64,
    /// Frames from the TAP not in this NIC's VLANs.
    pub rx_vlan_dropped: AtomicU64,
    /// Frames from the guest not in this NIC's VLANs.
    pub tx_vlan_dropped: AtomicU64,
    /// Frames larger than the guest's receive buffer.
    pub rx_too_big: AtomicU64,
    /// Frames from the guest that were malformed or too large, or that the TAP
    /// refused.
    pub tx_errors: AtomicU64,
}

/// A copy of the counters, for `kvmlab stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetCountersSnapshot {
    /// See [`NetCounters::rx_frames`].
    pub rx_frames: u64,
    /// See [`NetCounters::rx_bytes`].
    pub rx_bytes: u64,
    /// See [`NetCounters::tx_frames`].
    pub tx_frames: u64,
    /// See [`NetCounters::tx_bytes`].
    pub tx_bytes: u64,
    /// See [`NetCounters::rx_vlan_dropped`].
    pub rx_vlan_dropped: u64,
    /// See [`NetCounters::tx_vlan_dropped`].
    pub tx_vlan_dropped: u64,
    /// See [`NetCounters::rx_too_big`].
    pub rx_too_big: u64,
    /// See [`NetCounters::tx_errors`].
    pub tx_errors: u64,
}

impl NetCounters {
    /// Reads every counter (each on its own, relaxed: the copy is not one instant).
    pub fn snapshot(&self) -> NetCountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NetCountersSnapshot {
            rx_frames: get(&self.rx_frames),
            rx_bytes: get(&self.rx_bytes),
            tx_frames: get(&self.tx_frames),
            tx_bytes: get(&self.tx_bytes),
            rx_vlan_dropped: get(&self.rx_vlan_dropped),
            tx_vlan_dropped: get(&self.tx_vlan_dropped),
            rx_too_big: get(&self.rx_too_big),
            tx_errors: get(&self.tx_errors),
        }
    }
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// The data path of one NIC, independent of threads and fds so tests can drive it.
pub struct NetQueues {
    /// Queue 0: the guest's empty buffers, filled with frames from the TAP.
    pub rx: Queue,
    /// Queue 1: frames the guest sends, written to the TAP.
    pub tx: Queue,
    policy: VlanPolicy,
    counters: Arc<NetCounters>,
    /// Fixed buffers, so the data path never allocates; `*_len` bytes are in use.
    rx_buf: Box<[u8]>,
    rx_len: usize,
    /// A received frame still waiting for a guest buffer.
    rx_pending: bool,
    tx_buf: Box<[u8]>,
}

impl NetQueues {
    /// The data path over `rx` and `tx`, filtering frames through `policy` and
    /// counting into `counters`.
    pub fn new(rx: Queue, tx: Queue, policy: VlanPolicy, counters: Arc<NetCounters>) -> Self {
        NetQueues {
            rx,
            tx,
            policy,
            counters,
            rx_buf: vec![0; MAX_BUFFER].into_boxed_slice(),
            rx_len: 0,
            rx_pending: false,
            tx_buf: vec![0; MAX_BUFFER].into_boxed_slice(),
        }
    }

    /// Moves frames from `tap` into the guest's receive buffers until either runs out.
    /// Returns whether the guest should be interrupted.
    pub fn process_rx(&mut self, mem: &GuestMemoryMmap, tap: &mut impl Read) -> io::Result<bool> {
        let mut used = false;
        loop {
            if !self.rx_pending {
                self.rx_len = match tap.read(&mut self.rx_buf) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                };
                if self
                    .policy
                    .ingress(&mut self.rx_buf, &mut self.rx_len, VNET_HDR_LEN)
                    == Verdict::Drop
                {
                    add(&self.counters.rx_vlan_dropped, 1);
                    continue;
                }
                // One buffer per frame: num_buffers is 1.
                self.rx_buf[10..12].copy_from_slice(&1u16.to_le_bytes());
                self.rx_pending = true;
            }
            let Some(chain) = self.rx.pop_descriptor_chain(mem) else {
                break; // wait for the guest to give buffers back
            };
            let head = chain.head_index();
            let mut writer = chain
                .writer(mem)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let frame = &self.rx_buf[..self.rx_len];
            let len = if writer.available_bytes() < frame.len() {
                add(&self.counters.rx_too_big, 1);
                0
            } else {
                writer.write_all(frame)?;
                add(&self.counters.rx_frames, 1);
                add(&self.counters.rx_bytes, (frame.len() - VNET_HDR_LEN) as u64);
                frame.len() as u32
            };
            self.rx
                .add_used(mem, head, len)
                .map_err(|e| io::Error::other(e.to_string()))?;
            self.rx_pending = false;
            used = true;
        }
        Ok(used && self.rx.needs_notification(mem).unwrap_or(true))
    }

    /// Sends every frame the guest queued to `tap`. Returns whether the guest should be
    /// interrupted.
    pub fn process_tx(&mut self, mem: &GuestMemoryMmap, tap: &mut impl Write) -> io::Result<bool> {
        let mut used = false;
        while let Some(chain) = self.tx.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let mut reader = chain
                .reader(mem)
                .map_err(|e| io::Error::other(e.to_string()))?;
            // Keep room for a tag the VLAN policy may insert.
            let room = MAX_BUFFER - TAG_LEN;
            let mut len = 0;
            while len < room {
                match reader.read(&mut self.tx_buf[len..room])? {
                    0 => break,
                    n => len += n,
                }
            }
            if len <= VNET_HDR_LEN || reader.available_bytes() > 0 {
                add(&self.counters.tx_errors, 1);
            } else if self.policy.egress(&mut self.tx_buf, &mut len, VNET_HDR_LEN) == Verdict::Drop
            {
                add(&self.counters.tx_vlan_dropped, 1);
            } else {
                // A TAP takes a frame whole or not at all.
                match tap.write(&self.tx_buf[..len]) {
                    Ok(n) if n == len => {
                        add(&self.counters.tx_frames, 1);
                        add(&self.counters.tx_bytes, (len - VNET_HDR_LEN) as u64);
                    }
                    _ => add(&self.counters.tx_errors, 1),
                }
            }
            self.tx
                .add_used(mem, head, 0)
                .map_err(|e| io::Error::other(e.to_string()))?;
            used = true;
        }
        Ok(used && self.tx.needs_notification(mem).unwrap_or(true))
    }
}

/// A virtio-net device.
pub struct Net {
    config: NetConfig,
    acked: u64,
    counters: Arc<NetCounters>,
    worker: Option<WorkerThread>,
}

impl Net {
    /// A NIC for `config`. The TAP is opened only when the driver activates the
    /// device, so building one needs no privileges.
    pub fn new(config: NetConfig) -> Self {
        Net {
            config,
            acked: 0,
            counters: Arc::default(),
            worker: None,
        }
    }

    /// The NIC's counters, shared with its worker.
    pub fn counters(&self) -> Arc<NetCounters> {
        Arc::clone(&self.counters)
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | F_MAC
            | F_CSUM
            | F_GUEST_CSUM
            | F_HOST_TSO4
            | F_HOST_TSO6
            | F_GUEST_TSO4
            | F_GUEST_TSO6
    }

    fn ack_features(&mut self, features: u64) {
        self.acked = features & self.features();
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config.mac, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        let Activation {
            mem,
            queues,
            mut notifiers,
            interrupt,
        } = activation;
        if queues.len() != 2 || notifiers.len() != 2 {
            return Err(ActivateError::QueueCount {
                want: 2,
                got: queues.len(),
            });
        }
        let tap = Tap::open(&self.config.tap, VNET_HDR_LEN).map_err(ActivateError::Worker)?;
        let mut offload = 0;
        if self.acked & F_GUEST_CSUM != 0 {
            offload |= tap::TUN_F_CSUM;
            if self.acked & F_GUEST_TSO4 != 0 {
                offload |= tap::TUN_F_TSO4;
            }
            if self.acked & F_GUEST_TSO6 != 0 {
                offload |= tap::TUN_F_TSO6;
            }
        }
        tap.set_offload(offload).map_err(ActivateError::Worker)?;
        let mut queues = queues.into_iter();
        let (rx, tx) = (queues.next().unwrap(), queues.next().unwrap());
        let data = NetQueues::new(rx, tx, self.config.vlan.clone(), self.counters());
        let tx_notify = notifiers.pop().unwrap();
        let rx_notify = notifiers.pop().unwrap();
        // Stop the old worker before a new one takes the TAP.
        self.worker = None;
        self.worker = Some(WorkerThread::spawn(
            format!("net-{}", self.config.tap),
            move |kill| {
                Worker {
                    mem,
                    data,
                    tap,
                    rx_notify,
                    tx_notify,
                    kill,
                    interrupt,
                }
                .run()
            },
        )?);
        Ok(())
    }

    fn reset(&mut self) {
        self.worker = None;
        self.acked = 0;
    }
}

/// The thread that moves one NIC's frames.
struct Worker {
    mem: GuestMemoryMmap,
    data: NetQueues,
    tap: Tap,
    rx_notify: EventFd,
    tx_notify: EventFd,
    kill: EventFd,
    interrupt: Arc<Interrupt>,
}

const TOKEN_TAP: u64 = 0;
const TOKEN_RX: u64 = 1;
const TOKEN_TX: u64 = 2;
const TOKEN_KILL: u64 = 3;

impl Worker {
    fn run(mut self) {
        if let Err(error) = self.event_loop() {
            eprintln!("virtio-net {}: stopped: {error}", self.tap.name());
        }
    }

    fn event_loop(&mut self) -> io::Result<()> {
        let epoll = Epoll::new()?;
        let add = |fd: i32, token: u64, edge: bool| {
            let mut events = EventSet::IN;
            if edge {
                events |= EventSet::EDGE_TRIGGERED;
            }
            epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(events, token))
        };
        // Edge-triggered: a frame left waiting for guest buffers must not spin the loop.
        add(self.tap.as_raw_fd(), TOKEN_TAP, true)?;
        add(self.rx_notify.as_raw_fd(), TOKEN_RX, false)?;
        add(self.tx_notify.as_raw_fd(), TOKEN_TX, false)?;
        add(self.kill.as_raw_fd(), TOKEN_KILL, false)?;
        let mut events = vec![EpollEvent::default(); 4];
        // The guest may have queued frames before we started listening.
        self.transmit()?;
        self.receive()?;
        loop {
            let n = match epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            for event in &events[..n] {
                match event.data() {
                    TOKEN_TAP => self.receive()?,
                    TOKEN_RX => {
                        let _ = self.rx_notify.read();
                        self.receive()?;
                    }
                    TOKEN_TX => {
                        let _ = self.tx_notify.read();
                        self.transmit()?;
                        // Sending may have been blocked on a full TAP; receive either way.
                    }
                    _ => return Ok(()),
                }
            }
        }
    }

    fn receive(&mut self) -> io::Result<()> {
        if self.data.process_rx(&self.mem, &mut self.tap)? {
            self.interrupt.raise(INTERRUPT_VRING)?;
        }
        Ok(())
    }

    fn transmit(&mut self) -> io::Result<()> {
        if self.data.process_tx(&self.mem, &mut self.tap)? {
            self.interrupt.raise(INTERRUPT_VRING)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::devices::virtio::testing::{BUFFERS, desc, memory, queue, queue_at};

    /// A TAP stand-in: frames to read, and frames written.
    #[derive(Default)]
    struct FakeTap {
        incoming: VecDeque<Vec<u8>>,
        sent: Vec<Vec<u8>>,
    }

    impl Read for FakeTap {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let frame = self.incoming.pop_front().ok_or(io::ErrorKind::WouldBlock)?;
            buf[..frame.len()].copy_from_slice(&frame);
            Ok(frame.len())
        }
    }

    impl Write for FakeTap {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.sent.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A header and a broadcast ARP-sized frame, tagged with `vlan` if given.
    fn frame(vlan: Option<u16>, fill: u8) -> Vec<u8> {
        let mut buf = vec![0u8; VNET_HDR_LEN];
        buf.extend_from_slice(&[0xff; 6]);
        buf.extend_from_slice(&[2, 0, 0, 0, 0, fill]);
        if let Some(id) = vlan {
            buf.extend_from_slice(&[0x81, 0x00]);
            buf.extend_from_slice(&id.to_be_bytes());
        }
        buf.extend_from_slice(&[0x08, 0x06]);
        buf.extend_from_slice(&[fill; 28]);
        buf
    }

    fn queues(
        mem: &GuestMemoryMmap,
        rx_chains: &[Vec<virtio_queue::desc::RawDescriptor>],
        policy: VlanPolicy,
    ) -> NetQueues {
        let (_, rx) = queue(mem, rx_chains);
        let (_, tx) = queue_at(mem, 0x8000, &[]);
        NetQueues::new(rx, tx, policy, Arc::default())
    }

    #[test]
    fn received_frames_land_in_guest_buffers() {
        let mem = memory();
        let mut net = queues(
            &mem,
            &[
                vec![desc(BUFFERS, 2048, true)],
                vec![desc(BUFFERS + 0x1000, 2048, true)],
            ],
            VlanPolicy::Transparent,
        );
        let mut tap = FakeTap::default();
        tap.incoming.push_back(frame(None, 1));
        tap.incoming.push_back(frame(None, 2));
        assert!(net.process_rx(&mem, &mut tap).unwrap());
        let mut got = vec![0u8; frame(None, 2).len()];
        mem.read_slice(&mut got, GuestAddress(BUFFERS + 0x1000))
            .unwrap();
        let mut want = frame(None, 2);
        want[10] = 1; // num_buffers
        assert_eq!(got, want);
        let c = net.counters.snapshot();
        assert_eq!(
            (c.rx_frames, c.rx_bytes),
            (2, 2 * (frame(None, 1).len() - VNET_HDR_LEN) as u64)
        );
    }

    #[test]
    fn a_frame_waits_for_a_guest_buffer_instead_of_being_lost() {
        let mem = memory();
        let mut net = queues(
            &mem,
            &[vec![desc(BUFFERS, 2048, true)]],
            VlanPolicy::Transparent,
        );
        let mut tap = FakeTap::default();
        tap.incoming
            .extend([frame(None, 1), frame(None, 2), frame(None, 3)]);
        net.process_rx(&mem, &mut tap).unwrap();
        assert_eq!(net.counters.snapshot().rx_frames, 1);
        assert!(net.rx_pending, "frame 2 is held, not dropped");
        assert_eq!(tap.incoming.len(), 1, "frame 3 stays in the TAP");
    }

    #[test]
    fn a_frame_too_big_for_the_buffer_is_counted() {
        let mem = memory();
        let mut net = queues(
            &mem,
            &[vec![desc(BUFFERS, 16, true)]],
            VlanPolicy::Transparent,
        );
        let mut tap = FakeTap::default();
        tap.incoming.push_back(frame(None, 1));
        net.process_rx(&mem, &mut tap).unwrap();
        let c = net.counters.snapshot();
        assert_eq!((c.rx_frames, c.rx_too_big), (0, 1));
    }

    #[test]
    fn access_nic_delivers_its_vlan_untagged_and_drops_others() {
        let mem = memory();
        let mut net = queues(
            &mem,
            &[vec![desc(BUFFERS, 2048, true)]],
            VlanPolicy::Access(10),
        );
        let mut tap = FakeTap::default();
        tap.incoming
            .extend([frame(Some(20), 1), frame(None, 2), frame(Some(10), 3)]);
        net.process_rx(&mem, &mut tap).unwrap();
        let mut got = vec![0u8; frame(None, 3).len()];
        mem.read_slice(&mut got, GuestAddress(BUFFERS)).unwrap();
        let mut want = frame(None, 3);
        want[10] = 1;
        assert_eq!(got, want, "VLAN 10's frame arrives untagged");
        let c = net.counters.snapshot();
        assert_eq!((c.rx_frames, c.rx_vlan_dropped), (1, 2));
    }

    #[test]
    fn transmitted_frames_reach_the_tap_tagged_for_an_access_nic() {
        let mem = memory();
        let first = frame(None, 7);
        let split = 20; // a frame over two descriptors
        mem.write_slice(&first[..split], GuestAddress(BUFFERS))
            .unwrap();
        mem.write_slice(&first[split..], GuestAddress(BUFFERS + 0x1000))
            .unwrap();
        mem.write_slice(&frame(Some(20), 8), GuestAddress(BUFFERS + 0x2000))
            .unwrap();
        let (_, rx) = queue_at(&mem, 0x8000, &[]);
        let (_, tx) = queue(
            &mem,
            &[
                vec![
                    desc(BUFFERS, split as u32, false),
                    desc(BUFFERS + 0x1000, (first.len() - split) as u32, false),
                ],
                vec![desc(
                    BUFFERS + 0x2000,
                    frame(Some(20), 8).len() as u32,
                    false,
                )],
            ],
        );
        let mut net = NetQueues::new(rx, tx, VlanPolicy::Access(10), Arc::default());
        let mut tap = FakeTap::default();
        assert!(net.process_tx(&mem, &mut tap).unwrap());
        assert_eq!(tap.sent, vec![frame(Some(10), 7)]);
        let c = net.counters.snapshot();
        assert_eq!((c.tx_frames, c.tx_vlan_dropped), (1, 1));
    }

    #[test]
    fn offers_mac_and_offloads() {
        let net = Net::new(NetConfig {
            tap: "t0".into(),
            mac: [2, 1, 2, 3, 4, 5],
            vlan: VlanPolicy::Transparent,
        });
        let mut mac = [0u8; 6];
        net.read_config(0, &mut mac);
        assert_eq!(mac, [2, 1, 2, 3, 4, 5]);
        assert_ne!(net.features() & F_MAC, 0);
        assert_ne!(net.features() & VIRTIO_F_VERSION_1, 0);
    }
}
