//! The virtio-net device against a real TAP (root; in a network namespace of its
//! own): the device model with mock queues on one side, the host kernel's network
//! stack on the other.

use std::io;
use std::sync::Arc;

use kvmlab_vmm::VlanPolicy;
use kvmlab_vmm::devices::virtio::net::tap::Tap;
use kvmlab_vmm::devices::virtio::net::{NetCounters, NetQueues, VNET_HDR_LEN};
use kvmlab_vmm::devices::virtio::testing::{BUFFERS, desc, memory, queue, queue_at};
use vm_memory::{Bytes, GuestAddress};

/// The kernel's own network stack answers an ARP request the "guest" sends through
/// a real TAP: frames cross the device in both directions intact. Needs root; runs
/// in a network namespace of its own (unshared by this test's thread only).
#[test]
fn real_tap_carries_an_arp_exchange_with_the_host_kernel() {
    std::thread::spawn(|| {
        // SAFETY: unshare only changes this thread's namespaces; no memory involved.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET) failed: run the tests as root ({})",
            io::Error::last_os_error()
        );
        let mut tap =
            Tap::open("kvt0", VNET_HDR_LEN).expect("create a TAP (needs /dev/net/tun and root)");
        for args in [
            &["addr", "add", "10.9.0.1/24", "dev", "kvt0"][..],
            &["link", "set", "kvt0", "up"],
        ] {
            let status = std::process::Command::new("ip")
                .args(args)
                .status()
                .expect("iproute2 is installed");
            assert!(status.success(), "ip {args:?}");
        }
        let mem = memory();
        let guest_mac = [2, 0, 0, 0, 0, 2];
        let mut request = vec![0u8; VNET_HDR_LEN];
        request.extend_from_slice(&[0xff; 6]);
        request.extend_from_slice(&guest_mac);
        request.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        request.extend_from_slice(&guest_mac);
        request.extend_from_slice(&[10, 9, 0, 2]);
        request.extend_from_slice(&[0; 6]);
        request.extend_from_slice(&[10, 9, 0, 1]);
        mem.write_slice(&request, GuestAddress(BUFFERS)).unwrap();
        let (_, tx) = queue(&mem, &[vec![desc(BUFFERS, request.len() as u32, false)]]);
        let (_, rx) = queue_at(&mem, 0x8000, &[vec![desc(BUFFERS + 0x1000, 2048, true)]]);
        let counters = Arc::new(NetCounters::default());
        let mut net = NetQueues::new(rx, tx, VlanPolicy::Transparent, Arc::clone(&counters));
        net.process_tx(&mem, &mut tap).unwrap();
        assert_eq!(counters.snapshot().tx_frames, 1);
        // The kernel answers within moments; poll the TAP for up to five seconds.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while counters.snapshot().rx_frames == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no ARP reply from the kernel"
            );
            net.process_rx(&mem, &mut tap).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut reply = [0u8; VNET_HDR_LEN + 42];
        mem.read_slice(&mut reply, GuestAddress(BUFFERS + 0x1000))
            .unwrap();
        let frame = &reply[VNET_HDR_LEN..];
        assert_eq!(&frame[0..6], &guest_mac, "addressed to the guest");
        assert_eq!(&frame[12..14], &[0x08, 0x06], "an ARP frame");
        assert_eq!(&frame[20..22], &[0, 2], "an ARP reply");
        assert_eq!(&frame[28..32], &[10, 9, 0, 1], "from the host's address");
    })
    .join()
    .unwrap();
}
