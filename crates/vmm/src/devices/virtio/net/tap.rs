//! An existing TAP device, opened by name through `/dev/net/tun` with a virtio-net
//! header in front of every frame, so that offloads (checksum, TSO) pass between the
//! guest and the host kernel untouched.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

const IFF_TAP: i16 = 0x0002;
const IFF_NO_PI: i16 = 0x1000;
const IFF_VNET_HDR: i16 = 0x4000;

// _IOW('T', n, int) for the tun ioctls.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;

/// Offload flag for TUNSETOFFLOAD (what the host may hand the guest unfinished):
/// frames whose checksum is still partial (the guest accepts them so).
pub const TUN_F_CSUM: u32 = 0x01;
/// Offload flag: TCP over IPv4 segments larger than the MTU (needs [`TUN_F_CSUM`]).
pub const TUN_F_TSO4: u32 = 0x02;
/// Offload flag: TCP over IPv6 segments larger than the MTU (needs [`TUN_F_CSUM`]).
pub const TUN_F_TSO6: u32 = 0x04;
/// Offload flag: large TCP segments with the ECN CWR bit set.
pub const TUN_F_TSO_ECN: u32 = 0x08;

/// `struct ifreq` as the tun ioctls read it: a name and flags.
#[repr(C)]
struct IfReq {
    name: [u8; 16],
    flags: i16,
    _pad: [u8; 22],
}

/// An open TAP queue.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Opens the TAP called `name` (it must exist: the lab's reconciler makes it) with
    /// a virtio-net header of `vnet_hdr_len` bytes on every frame, non-blocking.
    pub fn open(name: &str, vnet_hdr_len: usize) -> io::Result<Tap> {
        if name.is_empty() || name.len() > 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{name}` is not a valid interface name"),
            ));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("cannot open /dev/net/tun: {e}")))?;
        let mut req = IfReq {
            name: [0; 16],
            flags: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: `file` is an open tun fd and `req` a live, properly laid out ifreq
        // that the kernel reads and writes only within its size.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReq) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("cannot attach to TAP {name}: {e}"),
            ));
        }
        let tap = Tap {
            file,
            name: name.to_string(),
        };
        let size = vnet_hdr_len as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer, which is valid.
        let rc = unsafe {
            libc::ioctl(
                tap.file.as_raw_fd(),
                TUNSETVNETHDRSZ,
                &size as *const libc::c_int,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(tap)
    }

    /// Tells the kernel which offloads the guest accepts on frames it receives.
    pub fn set_offload(&self, flags: u32) -> io::Result<()> {
        // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
        let rc =
            unsafe { libc::ioctl(self.file.as_raw_fd(), TUNSETOFFLOAD, flags as libc::c_ulong) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The TAP's interface name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl AsRawFd for Tap {
    fn as_raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.file.read(buf)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
