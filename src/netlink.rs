//! A small synchronous front to rtnetlink: one connection on a current-thread tokio
//! runtime, dumps, acknowledged write requests, and a count of the writes sent (so a
//! test can check that a no-op `up` changes nothing).

use std::io;

use futures_util::StreamExt;
use netlink_packet_core::{NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_route::RouteNetlinkMessage;
use tokio::runtime::{Builder, Runtime};

/// An open rtnetlink connection in the calling thread's network namespace.
pub struct Netlink {
    runtime: Runtime,
    handle: rtnetlink::Handle,
    writes: u64,
}

impl Netlink {
    /// Opens a connection. The socket belongs to the network namespace the calling
    /// thread is in now, whatever namespace the thread enters later.
    pub fn open() -> io::Result<Netlink> {
        let runtime = Builder::new_current_thread().enable_io().build()?;
        let (connection, handle, _) = runtime.block_on(async { rtnetlink::new_connection() })?;
        runtime.spawn(connection);
        Ok(Netlink {
            runtime,
            handle,
            writes: 0,
        })
    }

    /// How many write requests (anything but a dump) this connection has sent.
    pub fn writes(&self) -> u64 {
        self.writes
    }

    /// Counts a change made outside netlink (a TAP ioctl) as a write.
    pub fn count_write(&mut self) {
        self.writes += 1;
    }

    /// Sends a dump request and returns every message of the answer.
    pub fn dump(&mut self, message: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        self.exchange(request)
    }

    /// Sends a plain (non-dump) query and returns the answer.
    pub fn query(&mut self, message: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST;
        self.exchange(request)
    }

    /// Sends a change request with `flags` (besides REQUEST and ACK) and waits for
    /// the kernel's acknowledgement; a refusal comes back as the kernel's errno.
    pub fn write(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        self.writes += 1;
        self.exchange(request).map(drop)
    }

    fn exchange(
        &mut self,
        request: NetlinkMessage<RouteNetlinkMessage>,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut handle = self.handle.clone();
        self.runtime.block_on(async move {
            let mut answers = handle
                .request(request)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let mut out = Vec::new();
            while let Some(answer) = answers.next().await {
                match answer.payload {
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    _ => {}
                }
            }
            Ok(out)
        })
    }
}
