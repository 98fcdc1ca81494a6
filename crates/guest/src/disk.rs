//! virtio-blk: the checksum of a disk's first sector.

use virtio_drivers::device::blk::{SECTOR_SIZE, VirtIOBlk};

use kvmlab_guest_proto::checksum::fnv1a64;
use kvmlab_guest_proto::report::DiskError;

use crate::heap::GuestHal;
use crate::net::Transport;

/// Reads sector 0 of the disk behind `transport`; returns the disk's size in
/// sectors and the FNV-1a 64 of the sector (or why it could not be read).
pub fn first_sector_checksum(transport: Transport) -> (u64, Result<u64, DiskError>) {
    let mut disk = match VirtIOBlk::<GuestHal, Transport>::new(transport) {
        Ok(disk) => disk,
        Err(_) => return (0, Err(DiskError::InitFailed)),
    };
    let sectors = disk.capacity();
    if sectors == 0 {
        return (0, Err(DiskError::Empty));
    }
    let mut sector = [0u8; SECTOR_SIZE];
    match disk.read_blocks(0, &mut sector) {
        Ok(()) => (sectors, Ok(fnv1a64(&sector))),
        Err(_) => (sectors, Err(DiskError::ReadFailed)),
    }
}
