//! `nc`: a line typed on one side appears on the other, over TCP or UDP, as
//! netcat does (`nc -l [-u] PORT` listens, `nc [-u] ADDR PORT` connects).

use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU16, Ordering};

use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

use kvmlab_guest_proto::ipv4::{Dotted, Ipv4, parse_ipv4};

use crate::net::Net;
use crate::serial::Serial;

/// Socket buffer sizes: a few typed lines, or a burst of received text.
const TCP_BUFFER: usize = 8192;
const UDP_PACKETS: usize = 8;
const UDP_BUFFER: usize = 4096;
/// Longest line typed into `nc`.
const LINE_MAX: usize = 1024;

/// The next local port of an outgoing connection (the ephemeral range).
static NEXT_PORT: AtomicU16 = AtomicU16::new(49152);

/// A local port for an outgoing connection.
pub fn ephemeral_port() -> u16 {
    let port = NEXT_PORT.fetch_add(1, Ordering::Relaxed);
    if port == u16::MAX {
        NEXT_PORT.store(49152, Ordering::Relaxed);
    }
    port
}

/// What `nc` was asked.
pub struct NcArgs {
    udp: bool,
    /// Where to connect; `None` listens.
    target: Option<Ipv4>,
    port: u16,
}

/// Reads `nc [-u] -l PORT` or `nc [-u] ADDRESS PORT`.
pub fn parse(args: &[&str]) -> Result<NcArgs, &'static str> {
    let mut udp = false;
    let mut listen = false;
    let mut words = Vec::new();
    for &arg in args {
        match arg {
            "-u" => udp = true,
            "-l" => listen = true,
            "-lu" | "-ul" => {
                udp = true;
                listen = true;
            }
            _ if arg.starts_with('-') => return Err("unknown option"),
            _ => words.push(arg),
        }
    }
    let usage = "usage: nc [-u] -l PORT | nc [-u] ADDRESS PORT";
    let (target, port) = match (listen, words.as_slice()) {
        (true, [port]) => (None, *port),
        (false, [addr, port]) => (Some(parse_ipv4(addr).ok_or("not an IPv4 address")?), *port),
        _ => return Err(usage),
    };
    let port = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or("port number invalid (1 to 65535)")?;
    Ok(NcArgs { udp, target, port })
}

/// One socket of `nc`: the port (interface) it is on, and the socket.
type Sock = (usize, SocketHandle);

/// An `nc` in progress.
pub struct Nc {
    udp: bool,
    /// Listening sockets (one per interface) until a peer shows up, then the one.
    sockets: Vec<Sock>,
    /// UDP: where typed lines go (the target, or the last one heard from).
    peer: Option<IpEndpoint>,
    /// TCP: the connection was established once.
    connected: bool,
    target: Option<(Ipv4, u16)>,
    line: Vec<u8>,
    /// TCP: lines typed before the connection was up, sent once it is.
    unsent: Vec<u8>,
}

fn tcp_socket() -> tcp::Socket<'static> {
    tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
    )
}

fn udp_socket() -> udp::Socket<'static> {
    let buffer = || {
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; UDP_PACKETS],
            vec![0; UDP_BUFFER],
        )
    };
    udp::Socket::new(buffer(), buffer())
}

impl Nc {
    /// Opens the sockets; `Err` says why it cannot.
    pub fn start(args: NcArgs, net: &mut Net) -> Result<Nc, &'static str> {
        let mut nc = Nc {
            udp: args.udp,
            sockets: Vec::new(),
            peer: None,
            connected: false,
            target: None,
            line: Vec::new(),
            unsent: Vec::new(),
        };
        match args.target {
            None => {
                if net.ports.is_empty() {
                    return Err("no interface to listen on");
                }
                for port in 0..net.ports.len() {
                    let handle = if args.udp {
                        let mut socket = udp_socket();
                        socket
                            .bind(args.port)
                            .map_err(|_| "cannot listen on that port")?;
                        net.add_socket(port, socket)
                    } else {
                        let mut socket = tcp_socket();
                        socket
                            .listen(args.port)
                            .map_err(|_| "cannot listen on that port")?;
                        net.add_socket(port, socket)
                    };
                    nc.sockets.push((port, handle));
                }
            }
            Some(addr) => {
                let port = net
                    .route(addr)
                    .ok_or("connect: Network is unreachable")?
                    .port;
                let local = ephemeral_port();
                let handle = if args.udp {
                    let mut socket = udp_socket();
                    socket.bind(local).map_err(|_| "cannot bind a local port")?;
                    nc.peer = Some(IpEndpoint::new(
                        IpAddress::Ipv4(Ipv4Address::from(addr)),
                        args.port,
                    ));
                    net.add_socket(port, socket)
                } else {
                    let handle = net.add_socket(port, tcp_socket());
                    net.tcp_connect(port, handle, addr, args.port, local)
                        .map_err(|_| "cannot connect")?;
                    handle
                };
                nc.target = Some((addr, args.port));
                nc.sockets.push((port, handle));
            }
        }
        Ok(nc)
    }

    /// Takes a key typed at the console: a line goes to the peer at Enter.
    pub fn key(&mut self, byte: u8, net: &mut Net, out: &mut Serial) {
        match byte {
            b'\r' | b'\n' => {
                out.write_bytes(b"\n");
                let mut line = core::mem::take(&mut self.line);
                line.push(b'\n');
                self.send(&line, net, out);
            }
            0x08 | 0x7f if self.line.pop().is_some() => {
                out.write_bytes(b"\x08 \x08");
                out.flush();
            }
            0x20..=0x7e if self.line.len() < LINE_MAX => {
                self.line.push(byte);
                out.write_bytes(&[byte]);
                out.flush();
            }
            _ => {}
        }
    }

    fn send(&mut self, data: &[u8], net: &mut Net, out: &mut Serial) {
        let Some(&(port, handle)) = self.sockets.first() else {
            return;
        };
        if self.udp {
            let Some(peer) = self.peer else {
                let _ = writeln!(out, "nc: no peer yet: nothing has arrived to answer");
                return;
            };
            let socket = net.socket::<udp::Socket>(port, handle);
            if socket.send_slice(data, peer).is_err() {
                let _ = writeln!(out, "nc: send failed (buffer full)");
            }
        } else if self.connected {
            let socket = net.socket::<tcp::Socket>(port, handle);
            if socket.send_slice(data).is_err() {
                let _ = writeln!(out, "nc: send failed");
            }
        } else if self.unsent.len() + data.len() <= TCP_BUFFER {
            self.unsent.extend_from_slice(data);
        } else {
            let _ = writeln!(out, "nc: not connected yet");
        }
    }

    /// Prints what arrived; returns false once the connection is over.
    pub fn step(&mut self, net: &mut Net, out: &mut Serial) -> bool {
        let mut buffer = [0u8; 512];
        if self.udp {
            for (port, handle) in self.sockets.clone() {
                let socket = net.socket::<udp::Socket>(port, handle);
                while let Ok((n, meta)) = socket.recv_slice(&mut buffer) {
                    self.peer = Some(meta.endpoint);
                    out.write_bytes(&buffer[..n]);
                    out.flush();
                }
            }
            return true;
        }
        if !self.connected {
            match net.keep_established(&mut self.sockets) {
                Some(_) => {
                    self.connected = true;
                    let unsent = core::mem::take(&mut self.unsent);
                    if !unsent.is_empty() {
                        self.send(&unsent, net, out);
                    }
                }
                None => {
                    // A connection attempt that was refused or timed out.
                    if let (Some((addr, port)), Some(&(p, handle))) =
                        (self.target, self.sockets.first())
                        && !net.socket::<tcp::Socket>(p, handle).is_open()
                    {
                        let _ = writeln!(
                            out,
                            "nc: connect to {} port {port} (tcp) failed: Connection refused",
                            Dotted(addr)
                        );
                        return false;
                    }
                    return true;
                }
            }
        }
        let (port, handle) = self.sockets[0];
        let socket = net.socket::<tcp::Socket>(port, handle);
        while let Ok(n) = socket.recv_slice(&mut buffer) {
            if n == 0 {
                break;
            }
            out.write_bytes(&buffer[..n]);
            out.flush();
        }
        // The peer closed its side (or reset): end; `close` closes ours.
        !self.connected || socket.may_recv()
    }

    /// Closes the sockets (Ctrl-C, or the end of the connection): a TCP
    /// connection with a FIN, as netcat does at its end.
    pub fn close(&mut self, net: &mut Net) {
        for (port, handle) in self.sockets.drain(..) {
            if self.udp {
                net.remove_socket(port, handle);
            } else {
                net.close_tcp(port, handle);
            }
        }
    }
}
