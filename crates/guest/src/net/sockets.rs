//! Sockets of the shell's commands (`nc`, `iperf`) on a port's interface.

use alloc::vec::Vec;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::{AnySocket, tcp};
use smoltcp::wire::{IpAddress, IpEndpoint};

use kvmlab_guest_proto::ipv4::Ipv4;

use super::{Net, ipv4};

impl Net {
    /// Adds `socket` to port `p`'s interface.
    pub fn add_socket<T: AnySocket<'static>>(&mut self, p: usize, socket: T) -> SocketHandle {
        self.ports[p].sockets.add(socket)
    }

    /// Socket `handle` of port `p`.
    pub fn socket<T: AnySocket<'static>>(&mut self, p: usize, handle: SocketHandle) -> &mut T {
        self.ports[p].sockets.get_mut::<T>(handle)
    }

    /// Removes socket `handle` from port `p` (whatever it still holds is dropped).
    pub fn remove_socket(&mut self, p: usize, handle: SocketHandle) {
        self.ports[p].sockets.remove(handle);
    }

    /// Closes TCP socket `handle` of port `p` (a FIN to the peer) and lets it go
    /// once the close is done; the socket must not be used afterwards.
    pub fn close_tcp(&mut self, p: usize, handle: SocketHandle) {
        self.socket::<tcp::Socket>(p, handle).close();
        self.closing.push((p, handle));
    }

    /// The TCP socket among `sockets` (port, socket) that has a connection, if one
    /// has: the others (listeners on the other ports) are removed, and `sockets`
    /// keeps that one alone.
    pub fn keep_established(
        &mut self,
        sockets: &mut Vec<(usize, SocketHandle)>,
    ) -> Option<(usize, SocketHandle)> {
        let established = sockets.iter().copied().find(|&(p, handle)| {
            self.socket::<tcp::Socket>(p, handle).state() == tcp::State::Established
        })?;
        for (p, handle) in sockets.drain(..).filter(|&s| s != established) {
            self.remove_socket(p, handle);
        }
        sockets.push(established);
        Some(established)
    }

    /// Removes the closed sockets of [`Net::close_tcp`].
    pub(super) fn reap_closed(&mut self) {
        let mut closing = core::mem::take(&mut self.closing);
        closing.retain(|&(p, handle)| {
            let state = self.socket::<tcp::Socket>(p, handle).state();
            let done = matches!(state, tcp::State::Closed | tcp::State::TimeWait);
            if done {
                self.remove_socket(p, handle);
            }
            !done
        });
        self.closing = closing;
    }

    /// Opens TCP socket `handle` of port `p` towards `addr:port`, from local port
    /// `local`.
    pub fn tcp_connect(
        &mut self,
        p: usize,
        handle: SocketHandle,
        addr: Ipv4,
        port: u16,
        local: u16,
    ) -> Result<(), tcp::ConnectError> {
        let this = &mut self.ports[p];
        let socket = this.sockets.get_mut::<tcp::Socket>(handle);
        socket.connect(
            this.iface.context(),
            IpEndpoint::new(IpAddress::Ipv4(ipv4(addr)), port),
            local,
        )
    }
}
