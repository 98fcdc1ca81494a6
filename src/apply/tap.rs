//! TAP devices through `/dev/net/tun`: rtnetlink cannot create them on any kernel.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;

/// Creates the persistent TAP `name` (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) in the
/// calling thread's network namespace; fails if an interface of that name exists. The device outlives this call; a VMM opens it
/// by name later.
pub fn create_persistent_tap(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TAP name `{name}` does not fit IFNAMSIZ"),
        ));
    }
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // SAFETY: ifreq is a plain C struct (a name array and a union of plain data);
    // all-zero bytes are a valid value of it.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    // IFF_TUN_EXCL: fail with EBUSY rather than attach to an existing device.
    let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_TUN_EXCL;
    request.ifr_ifru.ifru_flags = flags as i16;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq` at the pointer, which
    // points at `request`, live and exclusively borrowed for the call; the fd is an
    // open /dev/net/tun.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: TUNSETPERSIST takes its argument by value (an int as unsigned long);
    // no memory is passed. The fd is attached to the TAP by the ioctl above.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
