// SPDX-License-Identifier: GPL-2.0

//! User mappings of an imported buffer (mmap() of a test importer file),
//! and 32-bit device accesses through them that report a `SIGBUS` instead of
//! dying of it.
//!
//! An access that may fault is made in a forked child: the mapping is shared,
//! so the child reaches the same page frames through the same importer file,
//! and the parent reads the value from a pipe or learns from the child's
//! wait status that it was killed by `SIGBUS`. No signal handler, no
//! `longjmp` over Rust frames.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

/// The page size the importer maps in.
pub const PAGE_SIZE: usize = 4096;
/// A PMD entry's span on x86-64.
pub const PMD_SIZE: usize = 2 << 20;
/// A PUD entry's span on x86-64.
pub const PUD_SIZE: usize = 1 << 30;

/// A shared, read-write mapping of part of an imported buffer.
#[derive(Debug)]
pub struct Mapping {
    addr: NonNull<u8>,
    len: usize,
}

/// What one access through a mapping gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The word read (for a write: the word written).
    Value(u32),
    /// The access raised `SIGBUS`: the exporter refused the page.
    Sigbus,
}

impl Mapping {
    /// Maps `len` bytes of the buffer imported by `importer` from byte
    /// `offset` on, at a virtual address aligned to `align` (a power of two,
    /// at least a page), so that the importer may use entries of up to that
    /// size.
    pub fn new(
        importer: BorrowedFd<'_>,
        offset: u64,
        len: usize,
        align: usize,
    ) -> io::Result<Self> {
        if len == 0 || !align.is_power_of_two() || align < PAGE_SIZE {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))?;
        // Reserve room for an aligned start, then map over the reservation.
        let room = len
            .checked_add(align - PAGE_SIZE)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        // SAFETY: a new anonymous reservation that nothing else refers to.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                room,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = (base as usize).next_multiple_of(align);
        // SAFETY: `start..start + len` lies inside the reservation just
        // made, which MAP_FIXED replaces and nothing else uses.
        let addr = unsafe {
            libc::mmap(
                start as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                importer.as_raw_fd(),
                offset,
            )
        };
        let error = io::Error::last_os_error();
        // Give back the reservation around the mapping (or all of it).
        let (keep_start, keep_end) = if addr == libc::MAP_FAILED {
            (start, start)
        } else {
            (start, start + len)
        };
        // SAFETY: these are the parts of our own reservation that the
        // mapping does not cover.
        unsafe {
            if keep_start > base as usize {
                libc::munmap(base, keep_start - base as usize);
            }
            let end = base as usize + room;
            if keep_end < end {
                libc::munmap(keep_end as *mut libc::c_void, end - keep_end);
            }
        }
        if addr == libc::MAP_FAILED {
            return Err(error);
        }
        Ok(Self {
            addr: NonNull::new(addr.cast()).expect("mmap() returned NULL without MAP_FAILED"),
            len,
        })
    }

    /// The mapping's first address.
    pub fn addr(&self) -> usize {
        self.addr.as_ptr() as usize
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never: [`Mapping::new`] refuses a length of 0).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn word(&self, offset: usize) -> io::Result<*mut u32> {
        if !offset.is_multiple_of(4) || offset.checked_add(4).is_none_or(|end| end > self.len) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: inside the mapping, as just checked.
        Ok(unsafe { self.addr.as_ptr().add(offset) }.cast())
    }

    /// Reads the 32-bit word at `offset` in this process: the caller knows
    /// the page is live (a `SIGBUS` would kill the process).
    pub fn read32(&self, offset: usize) -> io::Result<u32> {
        let word = self.word(offset)?;
        // SAFETY: an aligned word inside a live mapping; device memory is
        // read with one volatile access.
        Ok(unsafe { word.read_volatile() })
    }

    /// Writes the 32-bit word at `offset` in this process, as
    /// [`Mapping::read32`] reads.
    pub fn write32(&self, offset: usize, value: u32) -> io::Result<()> {
        let word = self.word(offset)?;
        // SAFETY: as for `read32`; the mapping is writable.
        unsafe { word.write_volatile(value) };
        Ok(())
    }

    /// Reads the word at `offset` in a child process, so that a `SIGBUS`
    /// is reported rather than fatal.
    pub fn probe_read32(&self, offset: usize) -> io::Result<Access> {
        let word = self.word(offset)?;
        // SAFETY: as for `read32`, in the child.
        in_child(|| unsafe { word.read_volatile() })
    }

    /// Writes `value` at `offset` in a child process, as
    /// [`Mapping::probe_read32`] reads.
    pub fn probe_write32(&self, offset: usize, value: u32) -> io::Result<Access> {
        let word = self.word(offset)?;
        in_child(|| {
            // SAFETY: as for `write32`, in the child.
            unsafe { word.write_volatile(value) };
            value
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, which no reference outlives (accesses
        // borrow `self`).
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
    }
}

/// Runs `access` in a forked child and returns the word it produced, or
/// [`Access::Sigbus`] if the child died of `SIGBUS`.
fn in_child(access: impl FnOnce() -> u32) -> io::Result<Access> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2() returned two new descriptors that we own.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child only makes the access and async-signal-safe calls
    // (write, _exit) before it exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let value = access().to_ne_bytes();
        // SAFETY: writing our own buffer to our own pipe, then leaving
        // without running the parent's atexit handlers or destructors.
        unsafe {
            let done = libc::write(write_end.as_raw_fd(), value.as_ptr().cast(), value.len());
            libc::_exit(if done == value.len() as isize { 0 } else { 1 });
        }
    }
    drop(write_end);
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS {
        return Ok(Access::Sigbus);
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(io::Error::other(format!(
            "access in a child process: wait status {status:#x}"
        )));
    }
    let mut value = [0u8; 4];
    // SAFETY: reading into our own buffer from our own pipe.
    let got = unsafe { libc::read(read_end.as_raw_fd(), value.as_mut_ptr().cast(), value.len()) };
    if got != value.len() as isize {
        return Err(io::Error::other("access in a child process: no value"));
    }
    Ok(Access::Value(u32::from_ne_bytes(value)))
}

/// The 32-bit word that the test VM's ivshmem-plain BAR holds at byte
/// `offset` (`tests/vm/ivshmem_pattern.py` writes the backing file):
/// `mix(offset >> 12) ^ (offset & 0xfff)` with `mix(p) = p * 0x9E3779B1`
/// mod 2^32, so a wrong page and a wrong offset in a page both read wrong.
pub fn ivshmem_pattern(offset: u64) -> u32 {
    ((offset >> 12) as u32).wrapping_mul(0x9E37_79B1) ^ (offset & 0xfff) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::Write;
    use std::os::fd::AsFd;

    fn file_of(words: &[u32]) -> File {
        let mut file = tempfile();
        for w in words {
            file.write_all(&w.to_ne_bytes()).unwrap();
        }
        file.set_len(2 * PAGE_SIZE as u64).unwrap();
        file
    }

    fn tempfile() -> File {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("vfio-dmabuf-mapping-{}-{n}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file
    }

    #[test]
    fn aligned_mapping_reads_and_writes() {
        let file = file_of(&[0x010000ed, 7]);
        let map = Mapping::new(file.as_fd(), 0, PAGE_SIZE, PMD_SIZE).unwrap();
        assert_eq!(map.addr() % PMD_SIZE, 0);
        assert_eq!(map.read32(0).unwrap(), 0x010000ed);
        assert_eq!(map.probe_read32(4).unwrap(), Access::Value(7));
        assert_eq!(map.probe_write32(4, 9).unwrap(), Access::Value(9));
        assert_eq!(
            map.read32(4).unwrap(),
            9,
            "the child wrote through the shared mapping"
        );
    }

    #[test]
    fn out_of_range_and_unaligned_accesses_are_refused() {
        let file = file_of(&[1]);
        let map = Mapping::new(file.as_fd(), PAGE_SIZE as u64, PAGE_SIZE, PAGE_SIZE).unwrap();
        for offset in [2, PAGE_SIZE - 2, PAGE_SIZE, usize::MAX - 1] {
            assert_eq!(
                map.read32(offset).unwrap_err().raw_os_error(),
                Some(libc::EINVAL)
            );
        }
        assert!(Mapping::new(file.as_fd(), 0, 0, PAGE_SIZE).is_err());
        assert!(Mapping::new(file.as_fd(), 0, PAGE_SIZE, 3 * PAGE_SIZE).is_err());
    }

    #[test]
    fn sigbus_in_the_child_is_reported() {
        // A shared file mapping past the end of the file raises SIGBUS.
        let file = file_of(&[1]);
        let map = Mapping::new(file.as_fd(), 0, 4 * PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(map.probe_read32(0).unwrap(), Access::Value(1));
        assert_eq!(map.probe_read32(3 * PAGE_SIZE).unwrap(), Access::Sigbus);
        assert_eq!(map.probe_write32(3 * PAGE_SIZE, 5).unwrap(), Access::Sigbus);
    }

    #[test]
    fn the_pattern_is_the_generators() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/vm");
        let offsets = [
            0u64,
            4,
            0xffc,
            0x1000,
            0x1234 * 4,
            (1 << 30) - 4,
            0x3fff_f000,
        ];
        let list = offsets.map(|o| o.to_string()).join(",");
        let out = std::process::Command::new("python3")
            .current_dir(dir)
            .args([
                "-c",
                &format!("import ivshmem_pattern as p; print(*[p.word(o) for o in [{list}]])"),
            ])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let words: Vec<u32> = String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect();
        assert_eq!(words, offsets.map(ivshmem_pattern));
    }
}
