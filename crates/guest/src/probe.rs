//! Pings and arpings requested on the command line, run one target after the
//! other, one probe at a time: a probe is answered or times out, then the next
//! one goes out at once. Each target ends with one report line.

use alloc::vec::Vec;
use core::fmt::Write;

use kvmlab_guest_proto::ipv4::Ipv4;
use kvmlab_guest_proto::report::{ProbeError, ProbeKind, ProbeReport};

use crate::net::{ArpWatch, Net};

/// ICMP echo identifier of the guest's pings.
const PING_IDENT: u16 = 0x6b76;
/// Bytes of payload in an echo request ("kvmlab" and padding).
const PING_PAYLOAD: &[u8; 16] = b"kvmlab-guest-png";

/// Runs the probes.
pub struct Prober {
    targets: Vec<(ProbeKind, Ipv4)>,
    count: u32,
    timeout_us: u64,
    /// Index into `targets` of the target being probed.
    current: usize,
    port: Option<usize>,
    sent: u32,
    received: u32,
    /// Pings of this target that timed out; an answer that comes later still
    /// counts, as it does for iputils' ping (the first echo of a run may wait a
    /// second for ARP while its neighbour boots).
    late: Vec<u16>,
    seq: u16,
    /// When the outstanding probe times out; `None` when no probe is out.
    deadline: Option<u64>,
}

/// What a step of the prober did.
pub struct Step {
    /// A packet was queued or sent: poll the interfaces again.
    pub sent: bool,
    /// When the prober wants to run again at the latest (µs since boot).
    pub deadline: Option<u64>,
}

impl Prober {
    pub fn new(targets: Vec<(ProbeKind, Ipv4)>, count: u32, timeout_ms: u64) -> Prober {
        Prober {
            targets,
            count,
            timeout_us: timeout_ms * 1000,
            current: 0,
            port: None,
            sent: 0,
            received: 0,
            late: Vec::new(),
            seq: 0,
            deadline: None,
        }
    }

    /// Whether every target has been reported.
    pub fn done(&self) -> bool {
        self.current >= self.targets.len()
    }

    /// Advances the probes at time `now_us`, printing reports on `out`.
    pub fn step(&mut self, net: &mut Net, now_us: u64, out: &mut impl Write) -> Step {
        let mut sent = false;
        while let Some(&(kind, target)) = self.targets.get(self.current) {
            if self.sent == 0 && self.deadline.is_none() && self.port.is_none() {
                self.port = net.port_for(target);
                if self.port.is_none() {
                    let report = ProbeReport {
                        kind,
                        target,
                        sent: 0,
                        received: 0,
                        error: Some(ProbeError::NoInterface),
                    };
                    let _ = report.write_line(out);
                    self.next_target(net);
                    continue;
                }
            }
            let port = self.port.unwrap_or(0);
            if let Some(deadline) = self.deadline {
                if self.answered(kind, net, port) {
                    self.received += 1;
                } else if now_us < deadline {
                    return Step {
                        sent,
                        deadline: Some(deadline),
                    };
                } else if kind == ProbeKind::Ping {
                    self.late.push(self.seq);
                }
                self.deadline = None;
                self.seq = self.seq.wrapping_add(1);
            }
            if self.sent < self.count {
                // A probe that cannot even be queued (socket buffer full of
                // requests waiting for ARP) counts as sent and lost.
                sent |= self.send(kind, target, net, port);
                self.sent += 1;
                self.deadline = Some(now_us + self.timeout_us);
                continue;
            }
            let report = ProbeReport {
                kind,
                target,
                sent: self.sent,
                received: self.received,
                error: None,
            };
            let _ = report.write_line(out);
            self.next_target(net);
        }
        Step {
            sent,
            deadline: None,
        }
    }

    fn next_target(&mut self, net: &mut Net) {
        net.arp_watch = None;
        if let Some(port) = self.port {
            net.close_icmp(port, PING_IDENT);
        }
        self.current += 1;
        self.port = None;
        self.sent = 0;
        self.received = 0;
        self.late.clear();
        self.deadline = None;
    }

    /// Sends probe number `self.seq`; false if it cannot be queued now.
    fn send(&mut self, kind: ProbeKind, target: Ipv4, net: &mut Net, port: usize) -> bool {
        match kind {
            ProbeKind::Arping => {
                net.arp_watch = Some(ArpWatch {
                    port,
                    target,
                    answered: false,
                });
                net.send_arp_request(port, target);
                true
            }
            ProbeKind::Ping => {
                // Count late answers to earlier probes before this one goes out.
                let _ = self.answered(kind, net, port);
                net.send_echo(port, PING_IDENT, self.seq, PING_PAYLOAD, target, None)
            }
        }
    }

    /// Whether the outstanding probe has been answered; a late answer to an earlier
    /// ping of this target is counted on the way.
    fn answered(&mut self, kind: ProbeKind, net: &mut Net, port: usize) -> bool {
        match kind {
            ProbeKind::Arping => net.arp_watch.as_ref().is_some_and(|watch| watch.answered),
            ProbeKind::Ping => {
                let mut answered = false;
                for answer in net.take_echo_answers(port, PING_IDENT) {
                    if answer.seq == self.seq {
                        answered = true;
                    } else if let Some(at) = self.late.iter().position(|&s| s == answer.seq) {
                        self.late.swap_remove(at);
                        self.received += 1;
                    }
                }
                answered
            }
        }
    }
}
