//! `ping`, as iputils prints it: a line per reply, the statistics at the end (after
//! the count, or at Ctrl-C).

use alloc::vec::Vec;
use core::fmt::{self, Write};

use kvmlab_guest_proto::ipv4::{Dotted, Ipv4, parse_ipv4};

use crate::net::{EchoAnswer, Net};
use crate::serial::Serial;

/// ICMP echo identifier of the shell's pings (the start-up probes use another).
const IDENT: u16 = 0x7368;
/// iputils' default payload: 56 bytes, so 64 with the ICMP header.
const DEFAULT_SIZE: usize = 56;
/// Largest payload: what one socket buffer holds.
const MAX_SIZE: usize = 1400;
/// How long to wait for the last reply when no `-W` is given: longer than a
/// router takes to give up on an unanswered next hop (3 ARP requests, 1 s apart),
/// so that its "Destination Host Unreachable" is seen.
const DEFAULT_WAIT_US: u64 = 4_000_000;

/// A ping in progress.
pub struct Ping {
    args: PingArgs,
    /// Sequence number of the next request (iputils starts at 1).
    seq: u16,
    sent: u32,
    received: u32,
    /// ICMP errors received about our requests (iputils' "+N errors").
    errors: u32,
    started_us: u64,
    next_send_us: u64,
    last_sent_us: u64,
    /// Requests not yet answered: sequence number and when it went out.
    outstanding: Vec<(u16, u64)>,
    /// Round-trip times in µs: min, max, sum, sum of squares.
    rtt: Option<(u64, u64, u64, u128)>,
}

/// What `ping` was asked, or why it cannot run.
pub fn parse(args: &[&str], net: &Net) -> Result<PingArgs, &'static str> {
    let mut parsed = PingArgs {
        target: [0; 4],
        port: 0,
        count: None,
        interval_us: 1_000_000,
        size: DEFAULT_SIZE,
        wait_us: DEFAULT_WAIT_US,
        ttl: None,
    };
    let mut target = None;
    let mut args = args.iter();
    while let Some(&arg) = args.next() {
        let mut value = || args.next().copied().ok_or("option needs a value");
        match arg {
            "-c" => {
                parsed.count = Some(
                    value()?
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or("bad number of packets to transmit")?,
                );
            }
            "-i" => parsed.interval_us = seconds(value()?).ok_or("bad timing interval")?,
            "-W" => parsed.wait_us = seconds(value()?).ok_or("bad linger time")?,
            "-s" => {
                parsed.size = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_SIZE)
                    .ok_or("bad packet size (0 to 1400)")?;
            }
            "-t" => {
                parsed.ttl = Some(
                    value()?
                        .parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or("bad TTL (1 to 255)")?,
                );
            }
            _ if arg.starts_with('-') => return Err("unknown option"),
            _ => target = Some(parse_ipv4(arg).ok_or("not an IPv4 address")?),
        }
    }
    parsed.target = target
        .ok_or("usage: ping [-c COUNT] [-i SECONDS] [-s SIZE] [-t TTL] [-W SECONDS] ADDRESS")?;
    parsed.port = net
        .route(parsed.target)
        .ok_or("connect: Network is unreachable")?
        .port;
    Ok(parsed)
}

/// `ping`'s options.
pub struct PingArgs {
    target: Ipv4,
    port: usize,
    count: Option<u32>,
    interval_us: u64,
    size: usize,
    wait_us: u64,
    ttl: Option<u8>,
}

/// Reads seconds with up to three decimals (`0.2`, `1`, `1.5`) as microseconds.
fn seconds(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut millis: u64 = 0;
    for (i, digit) in fraction.bytes().enumerate() {
        millis += u64::from(digit - b'0') * [100, 10, 1][i];
    }
    let us = whole.checked_mul(1_000_000)? + millis * 1000;
    (us > 0).then_some(us)
}

impl Ping {
    /// Starts pinging; prints iputils' first line.
    pub fn start(args: PingArgs, now_us: u64, out: &mut Serial) -> Ping {
        let _ = writeln!(
            out,
            "PING {0} ({0}) {1}({2}) bytes of data.",
            Dotted(args.target),
            args.size,
            args.size + 28
        );
        Ping {
            args,
            seq: 1,
            sent: 0,
            received: 0,
            errors: 0,
            started_us: now_us,
            next_send_us: now_us,
            last_sent_us: now_us,
            outstanding: Vec::new(),
            rtt: None,
        }
    }

    /// Sends what is due and prints the replies that came; returns when to be
    /// called again, or `None` once finished (the statistics printed).
    pub fn step(&mut self, net: &mut Net, now_us: u64, out: &mut Serial) -> Option<u64> {
        self.receive(net, now_us, out);
        let all_sent = self.args.count.is_some_and(|count| self.sent >= count);
        if !all_sent && now_us >= self.next_send_us {
            self.send(net, now_us, out);
            self.next_send_us = now_us + self.args.interval_us;
        }
        let all_sent = self.args.count.is_some_and(|count| self.sent >= count);
        if all_sent {
            let deadline = self.last_sent_us + self.args.wait_us;
            if self.outstanding.is_empty() || now_us >= deadline {
                self.finish(net, now_us, out);
                return None;
            }
            return Some(deadline);
        }
        Some(self.next_send_us)
    }

    /// Ctrl-C: prints the statistics of what was sent so far.
    pub fn interrupt(&mut self, net: &mut Net, now_us: u64, out: &mut Serial) {
        self.receive(net, now_us, out);
        self.finish(net, now_us, out);
    }

    fn send(&mut self, net: &mut Net, now_us: u64, out: &mut Serial) {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.sent += 1;
        self.last_sent_us = now_us;
        let data = [0x6bu8; MAX_SIZE];
        if net.send_echo(
            self.args.port,
            IDENT,
            seq,
            &data[..self.args.size],
            self.args.target,
            self.args.ttl,
        ) {
            self.outstanding.push((seq, now_us));
        } else {
            let _ = writeln!(out, "ping: sendmsg: No buffer space available");
        }
    }

    fn receive(&mut self, net: &mut Net, now_us: u64, out: &mut Serial) {
        let answers = net.take_echo_answers(self.args.port, IDENT);
        let mut errors = Vec::new();
        net.echo_errors.retain(|e| {
            let ours = e.ident == IDENT;
            if ours {
                errors.push(*e);
            }
            !ours
        });
        for error in errors {
            let Some(at) = self.outstanding.iter().position(|&(s, _)| s == error.seq) else {
                continue;
            };
            self.outstanding.swap_remove(at);
            self.errors += 1;
            let what = match error.kind {
                (11, _) => "Time to live exceeded",
                (3, 0) => "Destination Net Unreachable",
                (3, 1) => "Destination Host Unreachable",
                (3, 3) => "Destination Port Unreachable",
                _ => "Destination Unreachable",
            };
            let _ = writeln!(
                out,
                "From {} icmp_seq={} {what}",
                Dotted(error.from),
                error.seq
            );
        }
        for EchoAnswer { seq, from, len } in answers {
            let Some(at) = self.outstanding.iter().position(|&(s, _)| s == seq) else {
                continue; // a duplicate, or an answer to an earlier ping
            };
            let (_, sent_us) = self.outstanding.swap_remove(at);
            let rtt = now_us.saturating_sub(sent_us);
            self.received += 1;
            self.rtt = Some(match self.rtt {
                None => (rtt, rtt, rtt, u128::from(rtt) * u128::from(rtt)),
                Some((min, max, sum, squares)) => (
                    min.min(rtt),
                    max.max(rtt),
                    sum + rtt,
                    squares + u128::from(rtt) * u128::from(rtt),
                ),
            });
            let ttl = net
                .echo_replies
                .iter()
                .rev()
                .find(|r| r.ident == IDENT && r.seq == seq && r.from == from)
                .map_or(0, |r| r.ttl);
            let _ = writeln!(
                out,
                "{len} bytes from {}: icmp_seq={seq} ttl={ttl} time={} ms",
                Dotted(from),
                Millis(rtt)
            );
        }
    }

    fn finish(&mut self, net: &mut Net, now_us: u64, out: &mut Serial) {
        let sent = self.sent;
        let received = self.received;
        let loss = if sent == 0 {
            0
        } else {
            (u64::from(sent - received) * 100 / u64::from(sent)) as u32
        };
        let elapsed_ms = now_us.saturating_sub(self.started_us) / 1000;
        let _ = writeln!(
            out,
            "\n--- {} ping statistics ---",
            Dotted(self.args.target)
        );
        let _ = write!(out, "{sent} packets transmitted, {received} received");
        if self.errors > 0 {
            let _ = write!(out, ", +{} errors", self.errors);
        }
        let _ = writeln!(out, ", {loss}% packet loss, time {elapsed_ms}ms");
        if let Some((min, max, sum, squares)) = self.rtt {
            let n = u64::from(received.max(1));
            let avg = sum / n;
            let mean_square = squares / u128::from(n);
            let variance = mean_square.saturating_sub(u128::from(avg) * u128::from(avg));
            let mdev = isqrt(variance);
            let _ = writeln!(
                out,
                "rtt min/avg/max/mdev = {}/{}/{}/{} ms",
                Fixed3(min),
                Fixed3(avg),
                Fixed3(max),
                Fixed3(mdev)
            );
        }
        self.outstanding.clear();
        net.close_icmp(self.args.port, IDENT);
    }
}

/// Integer square root.
fn isqrt(n: u128) -> u64 {
    let mut x: u128 = 0;
    let mut bit: u128 = 1 << 126;
    let mut n = n;
    while bit > n {
        bit >>= 2;
    }
    while bit != 0 {
        if n >= x + bit {
            n -= x + bit;
            x = (x >> 1) + bit;
        } else {
            x >>= 1;
        }
        bit >>= 2;
    }
    x as u64
}

/// Microseconds as milliseconds with three decimals (`0.412`), as the statistics
/// line prints them. No floating point: the guest is built without SSE.
pub struct Fixed3(pub u64);

impl fmt::Display for Fixed3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// Microseconds as milliseconds with three significant digits where they fit, as
/// iputils prints a reply's time (`0.412`, `1.23`, `12.3`, `123`).
struct Millis(u64);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0;
        match us {
            0..1_000 => write!(f, "0.{us:03}"),
            1_000..10_000 => write!(f, "{}.{:02}", us / 1000, us % 1000 / 10),
            10_000..100_000 => write!(f, "{}.{}", us / 1000, us % 1000 / 100),
            _ => write!(f, "{}", us / 1000),
        }
    }
}
