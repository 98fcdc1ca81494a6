//! The VMM process's own resident memory.
//!
//! Starting a VM runs code that never runs again: argument parsing, the kernel
//! loader (an XZ decompressor for bzImages), ACPI and boot-structure builders.
//! The kernel maps the pages of that code (and 64 KiB around each one it
//! faults in) from the page cache into the process, and they would stay
//! resident for the VM's whole life: about 4 MiB of kvmlab's binary and its
//! shared libraries, against a few hundred KiB the running VM uses.
//!
//! Once the vCPUs run, [`release_startup_pages`] unmaps the pages of the
//! process's read-only file mappings (code and constants) that have no private
//! copy, and hands freed heap memory back to the kernel. Nothing is lost: the
//! pages stay in the page cache, shared with every other VM, and the next access
//! maps the same page again. What is left resident is the working set of the
//! running VM: the vCPU loop, the device models, the console.

/// One mapping of `/proc/self/smaps` whose resident pages can be dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanFileMapping {
    /// First address.
    pub start: usize,
    /// One past the last address.
    pub end: usize,
    /// Resident KiB.
    pub rss_kib: u64,
}

/// Header of one mapping: "start-end perms offset dev inode [path]".
struct Header {
    start: usize,
    end: usize,
    /// Private, not writable, and backed by a regular file.
    read_only_file: bool,
}

fn parse_header(line: &str) -> Option<Header> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let perms = fields.next()?;
    let (_offset, _dev, inode) = (fields.next()?, fields.next()?, fields.next()?);
    let path = fields.next().unwrap_or("");
    let perms = perms.as_bytes();
    let read_only_file = perms.len() == 4
        && perms[1] == b'-'
        && perms[3] == b'p'
        && inode != "0"
        && path.starts_with('/')
        && !path.starts_with("/dev/")
        && !path.starts_with("/memfd:");
    Some(Header {
        start: usize::from_str_radix(start, 16).ok()?,
        end: usize::from_str_radix(end, 16).ok()?,
        read_only_file,
    })
}

/// The mappings of `smaps` (the text of `/proc/PID/smaps`) that are private,
/// read-only, file-backed and hold resident pages but no anonymous (copied on
/// write) ones: dropping their pages loses nothing.
pub fn clean_file_mappings(smaps: &str) -> Vec<CleanFileMapping> {
    let mut found = Vec::new();
    let mut current: Option<(Header, u64, u64)> = None;
    let mut finish = |entry: Option<(Header, u64, u64)>| {
        if let Some((header, rss, anonymous)) = entry {
            if header.read_only_file && rss > 0 && anonymous == 0 {
                found.push(CleanFileMapping {
                    start: header.start,
                    end: header.end,
                    rss_kib: rss,
                });
            }
        }
    };
    for line in smaps.lines() {
        let Some((key, value)) = line.split_once(':').filter(|(k, _)| !k.contains(' ')) else {
            finish(current.take());
            current = parse_header(line).map(|h| (h, 0, u64::MAX));
            continue;
        };
        let kib = || -> u64 {
            value
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(u64::MAX)
        };
        if let Some((_, rss, anonymous)) = current.as_mut() {
            match key {
                "Rss" => *rss = kib(),
                "Anonymous" => *anonymous = kib(),
                _ => {}
            }
        }
    }
    finish(current.take());
    found
}

/// Unmaps the resident pages of this process's clean read-only file mappings
/// and trims the heap; returns how many KiB of file pages were released.
/// Best effort: a mapping that cannot be advised is left as it is.
pub fn release_startup_pages() -> u64 {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut released = 0;
    for mapping in clean_file_mappings(&smaps) {
        // SAFETY: the range is exactly one private, read-only mapping of a file
        // with no private (copied-on-write) page, so MADV_DONTNEED only unmaps
        // page-cache pages: the next access maps the same file contents back.
        // Being read-only, no write can create a private page meanwhile.
        let rc = unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.end - mapping.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            released += mapping.rss_kib;
        }
    }
    // SAFETY: malloc_trim only returns free heap memory to the kernel.
    unsafe { libc::malloc_trim(0) };
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d0a0000000-55d0a0100000 r--p 00000000 fe:00 1234 /usr/bin/kvmlab
Size:               1024 kB
Rss:                 512 kB
Anonymous:             0 kB
VmFlags: rd mr mw me dw sd
55d0a0100000-55d0a0400000 r-xp 00100000 fe:00 1234 /usr/bin/kvmlab
Size:               3072 kB
Rss:                2048 kB
Anonymous:             0 kB
55d0a0400000-55d0a0420000 r--p 00400000 fe:00 1234 /usr/bin/kvmlab
Size:                128 kB
Rss:                 128 kB
Anonymous:           120 kB
55d0a0420000-55d0a0424000 rw-p 00420000 fe:00 1234 /usr/bin/kvmlab
Size:                 16 kB
Rss:                  16 kB
Anonymous:            16 kB
7f0000000000-7f0004000000 rw-p 00000000 00:00 0
Size:              65536 kB
Rss:                 200 kB
Anonymous:           200 kB
7f0004000000-7f0004003000 rw-s 00000000 00:0e 55 anon_inode:kvm-vcpu:0
Size:                 12 kB
Rss:                   4 kB
Anonymous:             0 kB
7f0005000000-7f0005001000 r-xp 00000000 00:00 0 [vdso]
Size:                  4 kB
Rss:                   4 kB
Anonymous:             0 kB
7f0006000000-7f0006010000 r-xp 00000000 fe:00 99 /usr/lib/libc.so.6
Size:                 64 kB
Rss:                   0 kB
Anonymous:             0 kB
7f0007000000-7f0007200000 r-xp 00000000 fe:00 98 /usr/lib/x86_64-linux-gnu/libm.so.6
Size:               2048 kB
Rss:                 296 kB
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_file_mappings_with_resident_pages() {
        let found = clean_file_mappings(SMAPS);
        assert_eq!(
            found,
            vec![
                CleanFileMapping {
                    start: 0x55d0_a000_0000,
                    end: 0x55d0_a010_0000,
                    rss_kib: 512
                },
                CleanFileMapping {
                    start: 0x55d0_a010_0000,
                    end: 0x55d0_a040_0000,
                    rss_kib: 2048
                },
                // The relocated (copied-on-write) read-only data, the writable
                // data, anonymous memory, KVM's shared page, the vDSO and a
                // mapping with nothing resident are all left alone.
                CleanFileMapping {
                    start: 0x7f00_0700_0000,
                    end: 0x7f00_0720_0000,
                    rss_kib: 296
                },
            ]
        );
    }

    #[test]
    fn a_mapping_without_an_anonymous_line_is_not_taken_for_clean() {
        let smaps =
            "7f0006000000-7f0006010000 r-xp 00000000 fe:00 99 /usr/lib/libc.so.6\nRss: 64 kB\n";
        assert!(clean_file_mappings(smaps).is_empty());
    }

    #[test]
    fn releasing_drops_resident_file_pages_and_the_process_runs_on() {
        let resident = || -> u64 {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            clean_file_mappings(&smaps).iter().map(|m| m.rss_kib).sum()
        };
        let before = resident();
        assert!(before > 0, "a running test binary has resident code");
        let released = release_startup_pages();
        assert!(released > 0);
        // Code runs again (and is mapped back in) after its pages went.
        let sum: u64 = (1..=100u64).map(|i| i * i).sum();
        assert_eq!(sum, 338_350);
        let text = format!("{:?}", std::fs::read_dir("/proc/self").is_ok());
        assert_eq!(text, "true");
    }
}
