//! virtio-blk over a raw image file: read, write, flush and get-id, and read-only
//! disks. One request queue, served by a worker thread.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestMemoryMmap;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::{
    ActivateError, Activation, INTERRUPT_VRING, Interrupt, VIRTIO_F_VERSION_1, VirtioDevice,
    WorkerThread, read_config_bytes,
};

/// virtio device id of a block device.
pub const DEVICE_TYPE_BLOCK: u32 = 2;
/// The unit of `sector` in requests and of the capacity in the config space.
pub const SECTOR_SIZE: u64 = 512;
const QUEUE_SIZE: u16 = 256;
/// Length of the id string GET_ID returns.
const ID_LEN: usize = 20;

const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;

const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

/// A disk as the engine is asked to attach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    /// The raw image file; its size, rounded down to whole sectors, is the disk's.
    /// Its file name (first 20 bytes) is the id the guest reads.
    pub path: PathBuf,
    /// Open the image read-only and offer the disk to the guest as read-only;
    /// writes fail with an I/O error.
    pub read_only: bool,
}

/// The request path of a disk, independent of threads so tests can drive it.
pub struct BlockQueue {
    /// The request queue the guest fills.
    pub queue: Queue,
    file: File,
    capacity: u64,
    read_only: bool,
    id: [u8; ID_LEN],
    buf: Vec<u8>,
}

/// What one request asked for, read from the head of its descriptor chain.
struct Request {
    kind: u32,
    sector: u64,
}

impl BlockQueue {
    fn status_of(
        &mut self,
        request: &Request,
        data: &mut virtio_queue::Reader<'_>,
        out: &mut virtio_queue::Writer<'_>,
    ) -> (u8, u32) {
        let offset = request.sector.checked_mul(SECTOR_SIZE);
        match request.kind {
            T_IN => {
                // The last writable byte is the status; the rest is data.
                let len = out.available_bytes().saturating_sub(1);
                let Some(offset) = offset.filter(|o| o + len as u64 <= self.capacity * SECTOR_SIZE)
                else {
                    return (S_IOERR, 0);
                };
                self.buf.resize(len, 0);
                if self.file.read_exact_at(&mut self.buf, offset).is_err()
                    || out.write_all(&self.buf).is_err()
                {
                    return (S_IOERR, 0);
                }
                (S_OK, len as u32)
            }
            T_OUT => {
                if self.read_only {
                    return (S_IOERR, 0);
                }
                self.buf.clear();
                if data.read_to_end(&mut self.buf).is_err() {
                    return (S_IOERR, 0);
                }
                let Some(offset) =
                    offset.filter(|o| o + self.buf.len() as u64 <= self.capacity * SECTOR_SIZE)
                else {
                    return (S_IOERR, 0);
                };
                match self.file.write_all_at(&self.buf, offset) {
                    Ok(()) => (S_OK, 0),
                    Err(_) => (S_IOERR, 0),
                }
            }
            T_FLUSH => match self.file.sync_data() {
                Ok(()) => (S_OK, 0),
                Err(_) => (S_IOERR, 0),
            },
            T_GET_ID => {
                let n = out.available_bytes().saturating_sub(1).min(ID_LEN);
                match out.write_all(&self.id[..n]) {
                    Ok(()) => (S_OK, n as u32),
                    Err(_) => (S_IOERR, 0),
                }
            }
            _ => (S_UNSUPP, 0),
        }
    }

    /// Serves every request the guest queued. Returns whether to interrupt the guest.
    pub fn process(&mut self, mem: &GuestMemoryMmap) -> io::Result<bool> {
        let mut used = false;
        while let Some(chain) = self.queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let mut reader = chain
                .clone()
                .reader(mem)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let mut writer = chain
                .writer(mem)
                .map_err(|e| io::Error::other(e.to_string()))?;
            let mut header = [0u8; 16];
            let (status, len) = if writer.available_bytes() == 0 {
                // Nowhere to put a status: complete it without one.
                (None, 0)
            } else if reader.read_exact(&mut header).is_err() {
                (Some(S_IOERR), 0)
            } else {
                let request = Request {
                    kind: u32::from_le_bytes(header[0..4].try_into().unwrap()),
                    sector: u64::from_le_bytes(header[8..16].try_into().unwrap()),
                };
                let (status, len) = self.status_of(&request, &mut reader, &mut writer);
                (Some(status), len)
            };
            let mut written = len;
            if let Some(status) = status {
                // The status byte is the last writable byte of the chain.
                let skip = writer.available_bytes().saturating_sub(1);
                let mut rest = writer
                    .split_at(skip)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                rest.write_all(&[status])?;
                written += 1;
            }
            self.queue
                .add_used(mem, head, written)
                .map_err(|e| io::Error::other(e.to_string()))?;
            used = true;
        }
        Ok(used && self.queue.needs_notification(mem).unwrap_or(true))
    }
}

/// A virtio-blk device.
pub struct Block {
    config: BlockConfig,
    file: File,
    capacity: u64,
    worker: Option<WorkerThread>,
}

/// The id string a guest reads: the image's file name, cut to 20 bytes.
fn disk_id(path: &Path) -> [u8; ID_LEN] {
    let mut id = [0u8; ID_LEN];
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = name.len().min(ID_LEN);
    id[..n].copy_from_slice(&name.as_bytes()[..n]);
    id
}

impl Block {
    /// Opens the image; its size rounded down to whole sectors is the capacity.
    pub fn new(config: BlockConfig) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(!config.read_only)
            .open(&config.path)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot open disk image {}: {e}", config.path.display()),
                )
            })?;
        let capacity = file.metadata()?.len() / SECTOR_SIZE;
        Ok(Block {
            config,
            file,
            capacity,
            worker: None,
        })
    }

    /// The disk's size in sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn queue(&self, queue: Queue) -> io::Result<BlockQueue> {
        Ok(BlockQueue {
            queue,
            file: self.file.try_clone()?,
            capacity: self.capacity,
            read_only: self.config.read_only,
            id: disk_id(&self.config.path),
            buf: Vec::new(),
        })
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn features(&self) -> u64 {
        let ro = if self.config.read_only { F_RO } else { 0 };
        VIRTIO_F_VERSION_1 | F_FLUSH | ro
    }

    fn ack_features(&mut self, _features: u64) {}

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_blk_config starts with the capacity in sectors.
        read_config_bytes(&self.capacity.to_le_bytes(), offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), ActivateError> {
        let Activation {
            mem,
            mut queues,
            mut notifiers,
            interrupt,
        } = activation;
        let (Some(queue), Some(notify)) = (queues.pop(), notifiers.pop()) else {
            return Err(ActivateError::QueueCount { want: 1, got: 0 });
        };
        let data = self.queue(queue).map_err(ActivateError::Worker)?;
        let name = self.config.path.display().to_string();
        self.worker = None;
        self.worker = Some(WorkerThread::spawn("virtio-blk".into(), move |kill| {
            if let Err(error) = serve(mem, data, notify, kill, &interrupt) {
                eprintln!("virtio-blk {name}: stopped: {error}");
            }
        })?);
        Ok(())
    }

    fn reset(&mut self) {
        self.worker = None;
    }
}

fn serve(
    mem: GuestMemoryMmap,
    mut data: BlockQueue,
    notify: EventFd,
    kill: EventFd,
    interrupt: &Arc<Interrupt>,
) -> io::Result<()> {
    let epoll = Epoll::new()?;
    epoll.ctl(
        ControlOperation::Add,
        notify.as_raw_fd(),
        EpollEvent::new(EventSet::IN, 0),
    )?;
    epoll.ctl(
        ControlOperation::Add,
        kill.as_raw_fd(),
        EpollEvent::new(EventSet::IN, 1),
    )?;
    let mut events = vec![EpollEvent::default(); 2];
    loop {
        if data.process(&mem)? {
            interrupt.raise(INTERRUPT_VRING)?;
        }
        let n = match epoll.wait(-1, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if events[..n].iter().any(|e| e.data() == 1) {
            return Ok(());
        }
        let _ = notify.read();
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::devices::virtio::testing::{BUFFERS, desc, memory, queue};

    struct Image(PathBuf);

    impl Image {
        fn new(name: &str, sectors: u64) -> Image {
            let path =
                std::env::temp_dir().join(format!("kvmlab-blk-{}-{name}.img", std::process::id()));
            let content: Vec<u8> = (0..sectors * SECTOR_SIZE)
                .map(|i| (i / SECTOR_SIZE) as u8 ^ (i as u8))
                .collect();
            std::fs::write(&path, content).unwrap();
            Image(path)
        }
    }

    impl Drop for Image {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn header(kind: u32, sector: u64) -> [u8; 16] {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&kind.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        h
    }

    const HDR: u64 = BUFFERS;
    const DATA: u64 = BUFFERS + 0x1000;
    const STATUS: u64 = BUFFERS + 0x3000;

    /// Runs one request with `data_len` bytes of data at DATA; returns (status, used len).
    fn run(block: &Block, kind: u32, sector: u64, data_len: u32, data_writable: bool) -> (u8, u32) {
        let mem = memory();
        mem.write_slice(&header(kind, sector), GuestAddress(HDR))
            .unwrap();
        mem.write_slice(&[0xee], GuestAddress(STATUS)).unwrap();
        let mut chain = vec![desc(HDR, 16, false)];
        if data_len > 0 {
            chain.push(desc(DATA, data_len, data_writable));
        }
        chain.push(desc(STATUS, 1, true));
        let (mock, q) = queue(&mem, &[chain]);
        let mut bq = block.queue(q).unwrap();
        bq.process(&mem).unwrap();
        let status: u8 = mem.read_obj(GuestAddress(STATUS)).unwrap();
        let used_len = mock.used().ring().ref_at(0).unwrap().load().len();
        (status, used_len)
    }

    #[test]
    fn reads_sectors() {
        let image = Image::new("read", 8);
        let block = Block::new(BlockConfig {
            path: image.0.clone(),
            read_only: false,
        })
        .unwrap();
        assert_eq!(block.capacity(), 8);
        let mem = memory();
        mem.write_slice(&header(T_IN, 2), GuestAddress(HDR))
            .unwrap();
        let (_, q) = queue(
            &mem,
            &[vec![
                desc(HDR, 16, false),
                desc(DATA, 1024, true),
                desc(STATUS, 1, true),
            ]],
        );
        let mut bq = block.queue(q).unwrap();
        assert!(bq.process(&mem).unwrap());
        let mut got = vec![0u8; 1024];
        mem.read_slice(&mut got, GuestAddress(DATA)).unwrap();
        let want = &std::fs::read(&image.0).unwrap()[1024..2048];
        assert_eq!(got, want);
        assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), S_OK);
    }

    #[test]
    fn writes_sectors_and_flushes() {
        let image = Image::new("write", 8);
        let block = Block::new(BlockConfig {
            path: image.0.clone(),
            read_only: false,
        })
        .unwrap();
        let mem = memory();
        mem.write_slice(&header(T_OUT, 1), GuestAddress(HDR))
            .unwrap();
        mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
        let (_, q) = queue(
            &mem,
            &[vec![
                desc(HDR, 16, false),
                desc(DATA, 512, false),
                desc(STATUS, 1, true),
            ]],
        );
        block.queue(q).unwrap().process(&mem).unwrap();
        assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), S_OK);
        assert_eq!(
            &std::fs::read(&image.0).unwrap()[512..1024],
            &[0x5a; 512][..]
        );
        assert_eq!(run(&block, T_FLUSH, 0, 0, false).0, S_OK);
    }

    #[test]
    fn read_only_disk_refuses_writes() {
        let image = Image::new("ro", 4);
        let before = std::fs::read(&image.0).unwrap();
        let block = Block::new(BlockConfig {
            path: image.0.clone(),
            read_only: true,
        })
        .unwrap();
        assert_ne!(block.features() & F_RO, 0);
        assert_eq!(run(&block, T_OUT, 0, 512, false).0, S_IOERR);
        assert_eq!(std::fs::read(&image.0).unwrap(), before);
    }

    #[test]
    fn requests_past_the_end_fail() {
        let image = Image::new("end", 4);
        let block = Block::new(BlockConfig {
            path: image.0.clone(),
            read_only: false,
        })
        .unwrap();
        assert_eq!(run(&block, T_IN, 3, 1024, true).0, S_IOERR);
        assert_eq!(run(&block, T_IN, u64::MAX, 512, true).0, S_IOERR);
    }

    #[test]
    fn get_id_names_the_image_and_unknown_requests_are_unsupported() {
        let image = Image::new("id", 1);
        let block = Block::new(BlockConfig {
            path: image.0.clone(),
            read_only: false,
        })
        .unwrap();
        let (status, len) = run(&block, T_GET_ID, 0, 20, true);
        assert_eq!((status, len), (S_OK, 21));
        assert_eq!(run(&block, 99, 0, 0, false).0, S_UNSUPP);
        let mut capacity = [0u8; 8];
        block.read_config(0, &mut capacity);
        assert_eq!(u64::from_le_bytes(capacity), 1);
    }
}
