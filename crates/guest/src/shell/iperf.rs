//! `iperf`: TCP throughput between two lab computers, reported as iperf 2 does.
//! `iperf -s` serves (one connection after the other, until Ctrl-C); `iperf -c
//! ADDR [-t SECONDS]` sends as fast as the connection takes for that long.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt::{self, Write};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;

use kvmlab_guest_proto::ipv4::{Dotted, Ipv4, parse_ipv4};

use super::nc::ephemeral_port;
use crate::net::Net;
use crate::serial::Serial;

/// iperf 2's port.
const PORT: u16 = 5001;
/// Socket buffers: a window's worth each way.
const BUFFER: usize = 65536;
const DEFAULT_SECONDS: u64 = 10;
const RULE: &str = "------------------------------------------------------------";

/// What `iperf` was asked.
pub enum IperfArgs {
    /// `-s`.
    Server,
    /// `-c ADDR [-t SECONDS]`.
    Client { target: Ipv4, seconds: u64 },
}

/// Reads `iperf -s` or `iperf -c ADDRESS [-t SECONDS]`.
pub fn parse(args: &[&str]) -> Result<IperfArgs, &'static str> {
    let usage = "usage: iperf -s | iperf -c ADDRESS [-t SECONDS]";
    match args {
        ["-s"] => Ok(IperfArgs::Server),
        ["-c", addr, rest @ ..] => {
            let target = parse_ipv4(addr).ok_or("not an IPv4 address")?;
            let seconds = match rest {
                [] => DEFAULT_SECONDS,
                ["-t", s] => s
                    .parse()
                    .ok()
                    .filter(|s| (1..=3600).contains(s))
                    .ok_or("bad time (1 to 3600 seconds)")?,
                _ => return Err(usage),
            };
            Ok(IperfArgs::Client { target, seconds })
        }
        _ => Err(usage),
    }
}

fn socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; BUFFER]),
        tcp::SocketBuffer::new(vec![0; BUFFER]),
    )
}

/// An `iperf` in progress.
pub struct Iperf {
    client: Option<(Ipv4, u64)>,
    /// The connection's socket (a client's), or the listening ones (a server's),
    /// by port (interface).
    sockets: Vec<(usize, SocketHandle)>,
    /// The connection being measured: its socket, when it began, bytes moved.
    measured: Option<(usize, SocketHandle, u64, u64)>,
    connections: u32,
    done: bool,
}

impl Iperf {
    /// Starts serving or connecting, printing iperf's heading.
    pub fn start(args: IperfArgs, net: &mut Net, out: &mut Serial) -> Result<Iperf, &'static str> {
        let mut iperf = Iperf {
            client: None,
            sockets: Vec::new(),
            measured: None,
            connections: 0,
            done: false,
        };
        match args {
            IperfArgs::Server => {
                if net.ports.is_empty() {
                    return Err("no interface to listen on");
                }
                iperf.listen(net)?;
                let _ = writeln!(out, "{RULE}\nServer listening on TCP port {PORT}\n{RULE}");
            }
            IperfArgs::Client { target, seconds } => {
                let port = net
                    .route(target)
                    .ok_or("connect: Network is unreachable")?
                    .port;
                let handle = net.add_socket(port, socket());
                net.tcp_connect(port, handle, target, PORT, ephemeral_port())
                    .map_err(|_| "cannot connect")?;
                iperf.sockets.push((port, handle));
                iperf.client = Some((target, seconds));
                let _ = writeln!(
                    out,
                    "{RULE}\nClient connecting to {}, TCP port {PORT}\n{RULE}",
                    Dotted(target)
                );
            }
        }
        Ok(iperf)
    }

    fn listen(&mut self, net: &mut Net) -> Result<(), &'static str> {
        for port in 0..net.ports.len() {
            let mut listener = socket();
            listener
                .listen(PORT)
                .map_err(|_| "cannot listen on port 5001")?;
            self.sockets.push((port, net.add_socket(port, listener)));
        }
        Ok(())
    }

    /// Moves data and prints results; returns false once finished (a client's
    /// test is over).
    pub fn step(&mut self, net: &mut Net, now_us: u64, out: &mut Serial) -> bool {
        if self.done {
            return false;
        }
        if self.measured.is_none() {
            let Some((port, handle)) = net.keep_established(&mut self.sockets) else {
                if let (Some((target, _)), Some(&(p, h))) = (self.client, self.sockets.first())
                    && !net.socket::<tcp::Socket>(p, h).is_open()
                {
                    let _ = writeln!(
                        out,
                        "connect failed: Connection refused ({} port {PORT})",
                        Dotted(target)
                    );
                    self.done = true;
                    self.close(net);
                    return false;
                }
                return true;
            };
            // A server measures this connection; its other listeners are gone, and
            // come back once the connection is over.
            self.connections += 1;
            let socket = net.socket::<tcp::Socket>(port, handle);
            if let (Some(local), Some(remote)) = (socket.local_endpoint(), socket.remote_endpoint())
            {
                let _ = writeln!(
                    out,
                    "[{:>3}] local {} port {} connected with {} port {}",
                    self.connections, local.addr, local.port, remote.addr, remote.port
                );
            }
            self.measured = Some((port, handle, now_us, 0));
        }
        let Some((port, handle, began_us, mut bytes)) = self.measured else {
            return true;
        };
        let socket = net.socket::<tcp::Socket>(port, handle);
        let finished = match self.client {
            Some((_, seconds)) => {
                let fill = [0x69u8; 1460];
                while socket.can_send() {
                    match socket.send_slice(&fill) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => bytes += n as u64,
                    }
                }
                now_us >= began_us + seconds * 1_000_000
            }
            None => {
                let mut sink = [0u8; 2048];
                while let Ok(n) = socket.recv_slice(&mut sink) {
                    if n == 0 {
                        break;
                    }
                    bytes += n as u64;
                }
                !socket.may_recv()
            }
        };
        self.measured = Some((port, handle, began_us, bytes));
        if !finished {
            return true;
        }
        let elapsed_us = now_us.saturating_sub(began_us).max(1);
        let _ = writeln!(out, "[ ID] Interval       Transfer     Bandwidth");
        let _ = writeln!(
            out,
            "[{:>3}] 0.0-{}.{} sec  {}  {}",
            self.connections,
            elapsed_us / 1_000_000,
            elapsed_us % 1_000_000 / 100_000,
            Transfer(bytes),
            Bandwidth(bytes * 8 * 1_000_000 / elapsed_us)
        );
        self.measured = None;
        net.close_tcp(port, handle);
        self.sockets.clear();
        if self.client.is_some() {
            self.done = true;
            return false;
        }
        // A server takes the next connection.
        self.listen(net).is_ok()
    }

    /// Ctrl-C: closes every socket.
    pub fn close(&mut self, net: &mut Net) {
        for (port, handle) in self.sockets.drain(..) {
            net.close_tcp(port, handle);
        }
        self.measured = None;
    }
}

/// Bytes as iperf prints a transfer: `1.25 MBytes`, `512 KBytes`.
struct Transfer(u64);

impl fmt::Display for Transfer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        if bytes >= 1 << 20 {
            let hundredths = bytes * 100 / (1 << 20);
            write!(f, "{}.{:02} MBytes", hundredths / 100, hundredths % 100)
        } else {
            write!(f, "{} KBytes", bytes / 1024)
        }
    }
}

/// Bits per second as iperf prints a bandwidth: `10.5 Mbits/sec`.
struct Bandwidth(u64);

impl fmt::Display for Bandwidth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = self.0;
        if bits >= 1_000_000 {
            let hundredths = bits / 10_000;
            write!(f, "{}.{:02} Mbits/sec", hundredths / 100, hundredths % 100)
        } else {
            write!(f, "{} Kbits/sec", bits / 1000)
        }
    }
}
