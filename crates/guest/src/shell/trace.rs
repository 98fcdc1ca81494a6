//! `traceroute`: echo requests with TTL 1, 2, 3, ... (as `traceroute -I` sends
//! them), three per hop; each router on the way answers with ICMP time exceeded,
//! the target with an echo reply. Printed as Linux's traceroute prints it.

use core::fmt::Write;

use kvmlab_guest_proto::ipv4::{Dotted, Ipv4, parse_ipv4};

use super::ping::Fixed3;
use crate::net::Net;
use crate::serial::Serial;

/// ICMP echo identifier of traceroute's probes.
const IDENT: u16 = 0x7472;
const PROBES_PER_HOP: u8 = 3;
const DEFAULT_MAX_HOPS: u8 = 30;
/// How long one probe waits for its answer.
const DEFAULT_WAIT_US: u64 = 2_000_000;
/// Bytes of echo payload: 60-byte packets, as traceroute's default.
const PAYLOAD: [u8; 32] = [0x74; 32];

/// A traceroute in progress.
pub struct Trace {
    target: Ipv4,
    port: usize,
    max_hops: u8,
    wait_us: u64,
    hop: u8,
    probe: u8,
    seq: u16,
    /// When the outstanding probe went out; `None` between probes.
    sent_us: Option<u64>,
    /// Who answered this hop last (printed again only when it changes).
    last_from: Option<Ipv4>,
    /// The target answered on this hop: stop after it.
    reached: bool,
}

/// Reads `traceroute [-m MAX_HOPS] [-w SECONDS] ADDRESS`.
pub fn parse(args: &[&str], net: &Net) -> Result<Trace, &'static str> {
    let mut target = None;
    let mut max_hops = DEFAULT_MAX_HOPS;
    let mut wait_us = DEFAULT_WAIT_US;
    let mut args = args.iter();
    while let Some(&arg) = args.next() {
        let mut value = || args.next().copied().ok_or("option needs a value");
        match arg {
            "-m" => {
                max_hops = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or("bad max hops (1 to 255)")?;
            }
            "-w" => {
                wait_us = value()?
                    .parse::<u64>()
                    .ok()
                    .filter(|s| (1..=60).contains(s))
                    .ok_or("bad wait (1 to 60 seconds)")?
                    * 1_000_000;
            }
            _ if arg.starts_with('-') => return Err("unknown option"),
            _ => target = Some(parse_ipv4(arg).ok_or("not an IPv4 address")?),
        }
    }
    let target = target.ok_or("usage: traceroute [-m MAX_HOPS] [-w SECONDS] ADDRESS")?;
    let port = net
        .route(target)
        .ok_or("connect: Network is unreachable")?
        .port;
    Ok(Trace {
        target,
        port,
        max_hops,
        wait_us,
        hop: 1,
        probe: 0,
        seq: 0,
        sent_us: None,
        last_from: None,
        reached: false,
    })
}

impl Trace {
    /// Prints the first line.
    pub fn start(&self, out: &mut Serial) {
        let _ = writeln!(
            out,
            "traceroute to {0} ({0}), {1} hops max, {2} byte packets",
            Dotted(self.target),
            self.max_hops,
            PAYLOAD.len() + 28
        );
    }

    /// Sends the next probe, takes its answer or its timeout; returns when to be
    /// called again, or `None` once done.
    pub fn step(&mut self, net: &mut Net, now_us: u64, out: &mut Serial) -> Option<u64> {
        loop {
            let Some(sent_us) = self.sent_us else {
                if self.probe == 0 {
                    let _ = write!(out, "{:>2} ", self.hop);
                    out.flush();
                    self.last_from = None;
                }
                self.send(net);
                self.sent_us = Some(now_us);
                return Some(now_us + self.wait_us);
            };
            match self.answer(net) {
                Some((from, error)) => {
                    if self.last_from != Some(from) {
                        let _ = write!(out, " {}", Dotted(from));
                        self.last_from = Some(from);
                    }
                    let rtt = now_us.saturating_sub(sent_us);
                    let _ = write!(out, "  {} ms", Fixed3(rtt));
                    if let Some(mark) = error {
                        let _ = write!(out, " {mark}");
                    }
                }
                None if now_us < sent_us + self.wait_us => return Some(sent_us + self.wait_us),
                None => {
                    let _ = write!(out, " *");
                }
            }
            out.flush();
            self.sent_us = None;
            self.probe += 1;
            if self.probe < PROBES_PER_HOP {
                continue;
            }
            let _ = writeln!(out);
            self.probe = 0;
            if self.reached || self.hop >= self.max_hops {
                net.close_icmp(self.port, IDENT);
                return None;
            }
            self.hop += 1;
        }
    }

    /// Ctrl-C: ends the line and stops.
    pub fn interrupt(&mut self, net: &mut Net, out: &mut Serial) {
        let _ = writeln!(out);
        net.close_icmp(self.port, IDENT);
    }

    fn send(&mut self, net: &mut Net) {
        self.seq = self.seq.wrapping_add(1);
        net.send_echo(
            self.port,
            IDENT,
            self.seq,
            &PAYLOAD,
            self.target,
            Some(self.hop),
        );
    }

    /// The answer to the outstanding probe, if it came: who sent it, and the mark
    /// traceroute prints for an unreachable (`!N`, `!H`).
    fn answer(&mut self, net: &mut Net) -> Option<(Ipv4, Option<&'static str>)> {
        let seq = self.seq;
        let reply = net
            .take_echo_answers(self.port, IDENT)
            .into_iter()
            .find(|answer| answer.seq == seq)
            .map(|answer| answer.from);
        if let Some(from) = reply {
            self.reached = true;
            return Some((from, None));
        }
        let at = net
            .echo_errors
            .iter()
            .position(|e| e.ident == IDENT && e.seq == seq)?;
        let error = net.echo_errors.remove(at)?;
        let mark = match error.kind {
            (11, _) => None,
            (3, 0) => Some("!N"),
            (3, 1) => Some("!H"),
            _ => Some("!X"),
        };
        if mark.is_some() {
            self.reached = true;
        }
        Some((error.from, mark))
    }
}
