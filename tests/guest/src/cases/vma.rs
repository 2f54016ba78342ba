// SPDX-License-Identifier: GPL-2.0

//! What mremap(2) and mprotect(2) do to the importer's mappings, and the
//! mappings of a read-only dma-buf.
//!
//! The importer's mappings are `VM_PFNMAP | VM_IO | VM_DONTEXPAND`: mremap
//! refuses to grow them (`EFAULT`, mm/mremap.c), in place or by moving,
//! and refuses `MREMAP_DONTUNMAP` (`EINVAL`); it shrinks and moves them,
//! and a moved mapping reaches the same page frames and is still zapped by
//! an invalidation. mprotect adds `PROT_WRITE` to a read-only shared
//! mapping when the file allows writing (`VM_MAYWRITE`), and the writes then
//! reach the device. A dma-buf exported `O_RDONLY` is mapped read-only: a
//! writable shared mapping is refused with `EACCES`, and so is mprotect to
//! `PROT_WRITE` later (the importer clears `VM_MAYWRITE`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use vfio_dmabuf_uapi::mapping::{ivshmem_pattern, PAGE_SIZE};

use super::export::export_and_import;
use super::mmap::EDU_ID;
use super::{all_of, case, ensure, must, refused, Case, Context, Outcome, Which};
use crate::expect::{ranges, PAGE};
use crate::exporter::ExportRequest;
use crate::importer::Importer;

/// edu's liveness register: reads back the complement of what was written.
const EDU_LIVENESS: usize = 4;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case(
            "mremap: an importer mapping does not grow (EFAULT, in place or moving) nor take MREMAP_DONTUNMAP (EINVAL)",
            mremap_refusals,
        ),
        case(
            "mremap: an importer mapping shrinks, and moved keeps its page frames and is still zapped by REVOKE",
            mremap_moves,
        ),
        case(
            "mprotect: PROT_WRITE added to a read-only mapping of a writable buffer is allowed and writes reach edu",
            mprotect_adds_write,
        ),
        case(
            "read-only dma-buf: a writable mapping is refused (EACCES), a read-only one reads edu, mprotect to PROT_WRITE is refused (EACCES)",
            read_only_buffer,
        ),
    ]
}

/// A mapping made with mmap(2) directly, unmapped on drop (at its current
/// address and length, which mremap may change).
struct Raw {
    addr: usize,
    len: usize,
}

impl Raw {
    fn new(fd: BorrowedFd<'_>, offset: u64, len: usize, prot: i32) -> io::Result<Self> {
        // SAFETY: a new mapping at an address the kernel chooses.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            addr: addr as usize,
            len,
        })
    }

    /// mremap(2) of the whole mapping to `new_len`, with `flags` (and
    /// `new_addr` for MREMAP_FIXED); follows the mapping if it succeeds.
    fn remap(&mut self, new_len: usize, flags: i32, new_addr: usize) -> io::Result<()> {
        // SAFETY: our own mapping; on success the old range is no longer
        // ours (or is the new one) and we follow it.
        let addr = unsafe {
            libc::mremap(
                self.addr as *mut libc::c_void,
                self.len,
                new_len,
                flags,
                new_addr as *mut libc::c_void,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        self.addr = addr as usize;
        self.len = new_len;
        Ok(())
    }

    fn protect(&self, prot: i32) -> io::Result<()> {
        // SAFETY: our own mapping; no reference into it is alive.
        if unsafe { libc::mprotect(self.addr as *mut libc::c_void, self.len, prot) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn word(&self, offset: usize) -> usize {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= self.len,
            "offset {offset:#x}"
        );
        self.addr + offset
    }

    /// Reads the word at `offset` in a forked child.
    fn read(&self, offset: usize) -> io::Result<End> {
        let at = self.word(offset);
        // SAFETY: an aligned word of the mapping; in the child.
        in_child(move || unsafe { (at as *const u32).read_volatile() })
    }

    /// Writes `value` at `offset` in a forked child.
    fn write(&self, offset: usize, value: u32) -> io::Result<End> {
        let at = self.word(offset);
        in_child(move || {
            // SAFETY: as for `read`.
            unsafe { (at as *mut u32).write_volatile(value) };
            value
        })
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: our own mapping, which no reference outlives.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

/// How an access in a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    Value(u32),
    Signal(i32),
}

/// Runs `access` in a forked child: the word it produced, or the signal
/// that killed it.
fn in_child(access: impl FnOnce() -> u32) -> io::Result<End> {
    let mut fds = [0; 2];
    // SAFETY: room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2() made both, which we own from here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the program is single-threaded here; the child makes the
    // access, writes and leaves with _exit().
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let value = access().to_ne_bytes();
        // SAFETY: our buffer to our pipe, then leaving.
        unsafe {
            let n = libc::write(write_end.as_raw_fd(), value.as_ptr().cast(), 4);
            libc::_exit(if n == 4 { 0 } else { 1 });
        }
    }
    drop(write_end);
    let mut status = 0;
    // SAFETY: our own child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return Err(io::Error::last_os_error());
    }
    if libc::WIFSIGNALED(status) {
        return Ok(End::Signal(libc::WTERMSIG(status)));
    }
    let mut value = [0u8; 4];
    let mut file = std::fs::File::from(read_end);
    io::Read::read_exact(&mut file, &mut value)?;
    Ok(End::Value(u32::from_ne_bytes(value)))
}

fn expect_end(what: &str, got: io::Result<End>, want: End) -> Outcome {
    let got = must(what, got)?;
    ensure!(got == want, "{what}: {got:x?}, expected {want:x?}");
    Ok(())
}

fn mremap_refusals(ctx: &mut Context) -> Outcome {
    let (_buffer, _dmabuf, importer) =
        export_and_import(ctx, Which::Ivshmem, 2, &ranges(&[(0, 4 * PAGE)]))?;
    let mut map = must(
        "mmap",
        Raw::new(importer.fd(), 0, 2 * PAGE_SIZE, libc::PROT_READ),
    )?;
    let (addr, len) = (map.addr, map.len);
    all_of([
        refused(
            "mremap growing in place",
            map.remap(3 * PAGE_SIZE, 0, 0),
            libc::EFAULT,
        ),
        refused(
            "mremap growing with MREMAP_MAYMOVE",
            map.remap(3 * PAGE_SIZE, libc::MREMAP_MAYMOVE, 0),
            libc::EFAULT,
        ),
        refused(
            "mremap with MREMAP_DONTUNMAP",
            map.remap(
                2 * PAGE_SIZE,
                libc::MREMAP_MAYMOVE | libc::MREMAP_DONTUNMAP,
                0,
            ),
            libc::EINVAL,
        ),
    ])?;
    ensure!(
        (map.addr, map.len) == (addr, len),
        "the mapping moved: {:#x}+{:#x}, was {addr:#x}+{len:#x}",
        map.addr,
        map.len
    );
    // Unchanged and still reading the BAR.
    expect_end(
        "read of page 1",
        map.read(PAGE_SIZE),
        End::Value(ivshmem_pattern(PAGE)),
    )
}

fn mremap_moves(ctx: &mut Context) -> Outcome {
    let (_buffer, _dmabuf, importer) =
        export_and_import(ctx, Which::Ivshmem, 2, &ranges(&[(0, 4 * PAGE)]))?;
    let mut map = must(
        "mmap",
        Raw::new(importer.fd(), 0, 4 * PAGE_SIZE, libc::PROT_READ),
    )?;
    // Fault two pages in before anything moves.
    expect_end(
        "read of page 1",
        map.read(PAGE_SIZE + 8),
        End::Value(ivshmem_pattern(PAGE + 8)),
    )?;
    let old = map.addr;
    must(
        "mremap shrinking to 2 pages",
        map.remap(2 * PAGE_SIZE, 0, 0),
    )?;
    ensure!(map.addr == old, "shrinking moved the mapping");
    expect_end(
        "read of page 1 after shrinking",
        map.read(PAGE_SIZE + 8),
        End::Value(ivshmem_pattern(PAGE + 8)),
    )?;
    // Where page 2 was is unmapped now: SIGSEGV.
    let past = Raw {
        addr: old + 2 * PAGE_SIZE,
        len: PAGE_SIZE,
    };
    let beyond = past.read(0);
    std::mem::forget(past);
    expect_end(
        "read past the shrunk end",
        beyond,
        End::Signal(libc::SIGSEGV),
    )?;

    // Move it to a free place (a reservation it replaces).
    let hole = must("reserving address space", Raw::new_anonymous(8 * PAGE_SIZE))?;
    let target = hole.addr + 3 * PAGE_SIZE;
    must(
        "mremap moving it",
        map.remap(
            2 * PAGE_SIZE,
            libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
            target,
        ),
    )?;
    ensure!(
        map.addr == target,
        "moved to {:#x}, asked {target:#x}",
        map.addr
    );
    for (offset, what) in [(4, "page 0"), (PAGE_SIZE + 0x10, "page 1")] {
        expect_end(
            &format!("read of {what} after the move"),
            map.read(offset),
            End::Value(ivshmem_pattern(offset as u64)),
        )?;
    }
    let exporter = &ctx.device(Which::Ivshmem)?.exporter;
    let revoked = must("REVOKE", exporter.revoke(2));
    let after = map.read(4);
    let restored = must("RESTORE", exporter.restore(2));
    revoked?;
    let c = must("COUNTERS", importer.counters())?;
    expect_end(
        "read of the moved mapping after REVOKE",
        after,
        End::Signal(libc::SIGBUS),
    )?;
    restored?;
    ensure!(c.invalidations == 1, "COUNTERS {c:?}");
    expect_end(
        "read of the moved mapping after RESTORE",
        map.read(PAGE_SIZE + 0x10),
        End::Value(ivshmem_pattern(PAGE + 0x10)),
    )?;
    // The reservation's pages around the mapping go with `hole`; the
    // mapping inside it is unmapped by `map` first.
    drop(map);
    drop(hole);
    Ok(())
}

impl Raw {
    /// An anonymous private reservation without access.
    fn new_anonymous(len: usize) -> io::Result<Self> {
        // SAFETY: a new anonymous mapping nothing else refers to.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            addr: addr as usize,
            len,
        })
    }
}

fn mprotect_adds_write(ctx: &mut Context) -> Outcome {
    let (_buffer, _dmabuf, importer) =
        export_and_import(ctx, Which::Edu, 0, &ranges(&[(0, PAGE)]))?;
    let map = must(
        "mmap read-only",
        Raw::new(importer.fd(), 0, PAGE_SIZE, libc::PROT_READ),
    )?;
    expect_end("read of the ID", map.read(0), End::Value(EDU_ID))?;
    expect_end(
        "write to the read-only mapping",
        map.write(EDU_LIVENESS, 1),
        End::Signal(libc::SIGSEGV),
    )?;
    must(
        "mprotect(PROT_READ | PROT_WRITE)",
        map.protect(libc::PROT_READ | libc::PROT_WRITE),
    )?;
    for v in [0x1234_5678u32, 0xdead_beef] {
        expect_end(
            "write of the liveness register",
            map.write(EDU_LIVENESS, v),
            End::Value(v),
        )?;
        expect_end(
            "read of the liveness register",
            map.read(EDU_LIVENESS),
            End::Value(!v),
        )?;
    }
    must("mprotect(PROT_READ)", map.protect(libc::PROT_READ))?;
    expect_end(
        "write after mprotect(PROT_READ)",
        map.write(EDU_LIVENESS, 1),
        End::Signal(libc::SIGSEGV),
    )?;
    expect_end("read of the ID", map.read(0), End::Value(EDU_ID))
}

/// Written to edu's liveness register before a write is refused.
const MARK: u32 = 0x0bad_cafe;

fn read_only_buffer(ctx: &mut Context) -> Outcome {
    {
        let (_buffer, _dmabuf, importer) =
            export_and_import(ctx, Which::Edu, 0, &ranges(&[(0, PAGE)]))?;
        let map = must(
            "mmap of a writable buffer",
            Raw::new(
                importer.fd(),
                0,
                PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
            ),
        )?;
        expect_end(
            "write of the liveness register",
            map.write(EDU_LIVENESS, MARK),
            End::Value(MARK),
        )?;
        expect_end(
            "read of the liveness register",
            map.read(EDU_LIVENESS),
            End::Value(!MARK),
        )?;
    }
    let device = ctx.device(Which::Edu)?;
    let mut request = ExportRequest::new(0, &ranges(&[(0, PAGE)]));
    request.head.open_flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u32;
    let dmabuf = must("EXPORT with O_RDONLY", device.exporter.export(&request))?;
    let importer = Importer::open()?;
    must(
        "IMPORT of the read-only dma-buf",
        importer.import(dmabuf.as_fd()),
    )?;
    all_of([
        refused(
            "mmap(PROT_READ | PROT_WRITE, MAP_SHARED)",
            Raw::new(
                importer.fd(),
                0,
                PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
            ),
            libc::EACCES,
        ),
        refused(
            "mmap(PROT_WRITE, MAP_SHARED)",
            Raw::new(importer.fd(), 0, PAGE_SIZE, libc::PROT_WRITE),
            libc::EACCES,
        ),
    ])?;
    let map = must(
        "mmap(PROT_READ, MAP_SHARED)",
        Raw::new(importer.fd(), 0, PAGE_SIZE, libc::PROT_READ),
    )?;
    expect_end("read of the ID", map.read(0), End::Value(EDU_ID))?;
    refused(
        "mprotect(PROT_READ | PROT_WRITE)",
        map.protect(libc::PROT_READ | libc::PROT_WRITE),
        libc::EACCES,
    )?;
    expect_end(
        "write through the read-only mapping",
        map.write(EDU_LIVENESS, 1),
        End::Signal(libc::SIGSEGV),
    )?;
    // The refused write never reached edu: the liveness register still
    // holds the complement of what was written through a writable mapping.
    expect_end(
        "read of the liveness register",
        map.read(EDU_LIVENESS),
        End::Value(!MARK),
    )?;
    drop(map);
    must("closing the importer", importer.close())?;
    must("closing the dma-buf", crate::sys::close(dmabuf))
}
