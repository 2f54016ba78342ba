// SPDX-License-Identifier: GPL-2.0

//! The test importer, `/dev/vfio-dmabuf-importer`: each open file imports
//! one dma-buf, walks it with `dma_buf_get_pfn_unlocked()` and counts what
//! the exporter told it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use vfio_dmabuf_uapi::mapping::Mapping;

use crate::expect::Entry;
use crate::sys;
use crate::uapi;

/// The importer's device.
pub(crate) const NODE: &str = "/dev/vfio-dmabuf-importer";

/// What a walk reports.
#[derive(Debug)]
pub(crate) struct Walk {
    /// The table, as far as there was room for it.
    pub(crate) table: Vec<Entry>,
    /// Entries in the importer's table (may exceed `table.len()`).
    pub(crate) entries: u32,
    /// `dma_buf_get_pfn_unlocked()` calls made.
    pub(crate) calls: u64,
    /// Time the walk took.
    pub(crate) nanoseconds: u64,
}

/// One open file of the importer: one import.
#[derive(Debug)]
pub(crate) struct Importer {
    file: File,
}

impl Importer {
    pub(crate) fn open() -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(NODE)
            .map_err(|e| format!("{NODE}: open: {}", sys::describe(&e)))?;
        Ok(Self { file })
    }

    /// `VFIO_DMABUF_IMP_IMPORT`: attaches to `dmabuf`; the buffer's size.
    pub(crate) fn import(&self, dmabuf: BorrowedFd<'_>) -> io::Result<u64> {
        let mut arg = uapi::vfio_dmabuf_imp_import {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_import>(),
            fd: dmabuf.as_raw_fd(),
            ..Default::default()
        };
        // SAFETY: IMPORT writes only its argument, which holds no address.
        unsafe { sys::ioctl(self.fd(), uapi::VFIO_DMABUF_IMP_IMPORT, &mut arg) }?;
        Ok(arg.size)
    }

    /// `VFIO_DMABUF_IMP_WALK` with room for `room` entries; `flags` 0 steps
    /// by `max_order`, `VFIO_DMABUF_IMP_WALK_PAGES` page by page.
    pub(crate) fn walk(&self, flags: u32, room: usize) -> io::Result<Walk> {
        let room = room.min(u32::MAX as usize);
        let mut segments = vec![uapi::vfio_dmabuf_imp_segment::default(); room];
        let mut arg = uapi::vfio_dmabuf_imp_walk {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_walk>(),
            flags,
            nr_segments: room as u32,
            segments: segments.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: WALK writes its argument and at most `nr_segments` entries
        // at `segments`, which points to that many entries of a live,
        // exclusively owned vector; any bytes make valid entries.
        unsafe { sys::ioctl(self.fd(), uapi::VFIO_DMABUF_IMP_WALK, &mut arg) }?;
        segments.truncate((arg.nr_segments as usize).min(room));
        Ok(Walk {
            table: segments.iter().map(Entry::from).collect(),
            entries: arg.nr_segments,
            calls: arg.calls,
            nanoseconds: arg.nanoseconds,
        })
    }

    /// `VFIO_DMABUF_IMP_GET_PFN`: the page frame and `max_order` of buffer
    /// page `pgoff`.
    pub(crate) fn get_pfn(&self, pgoff: u64) -> io::Result<(u64, u32)> {
        let mut arg = uapi::vfio_dmabuf_imp_pfn {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_pfn>(),
            pgoff,
            ..Default::default()
        };
        // SAFETY: GET_PFN writes only its argument, which holds no address.
        unsafe { sys::ioctl(self.fd(), uapi::VFIO_DMABUF_IMP_GET_PFN, &mut arg) }?;
        Ok((arg.pfn, arg.order))
    }

    /// `VFIO_DMABUF_IMP_COUNTERS`.
    pub(crate) fn counters(&self) -> io::Result<uapi::vfio_dmabuf_imp_counters> {
        let mut arg = uapi::vfio_dmabuf_imp_counters {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_counters>(),
            ..Default::default()
        };
        // SAFETY: COUNTERS writes only its argument, which holds no address.
        unsafe { sys::ioctl(self.fd(), uapi::VFIO_DMABUF_IMP_COUNTERS, &mut arg) }?;
        Ok(arg)
    }

    /// Maps `len` bytes of the imported buffer from byte `offset` on, at a
    /// virtual address aligned to `align`.
    pub(crate) fn map(&self, offset: u64, len: usize, align: usize) -> io::Result<Mapping> {
        Mapping::new(self.fd(), offset, len, align)
    }

    /// mmap() of the file with `prot` and `flags` (MAP_SHARED, MAP_PRIVATE)
    /// at byte `offset`: only whether the kernel accepts it; an accepted
    /// mapping is unmapped at once.
    pub(crate) fn try_mmap(
        &self,
        offset: i64,
        len: usize,
        prot: i32,
        flags: i32,
    ) -> io::Result<()> {
        // SAFETY: a new mapping at an address the kernel chooses, unmapped
        // below before anything could use it.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                flags,
                self.fd().as_raw_fd(),
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the mapping just made, which nothing refers to.
        unsafe { libc::munmap(addr, len) };
        Ok(())
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Closes the file (detaching the import), reporting what close(2)
    /// returns.
    pub(crate) fn close(self) -> io::Result<()> {
        sys::close(OwnedFd::from(self.file))
    }
}

/// A walk's table with each entry's length, as the importer writes it: the
/// entries of a walk by runs have any length and order 0.
#[derive(Debug)]
pub(crate) struct SegmentWalk {
    /// The table, as far as there was room for it.
    pub(crate) segments: Vec<uapi::vfio_dmabuf_imp_segment>,
    /// Entries in the importer's table (may exceed `segments.len()`).
    pub(crate) entries: u32,
    /// `dma_buf_get_pfn_unlocked()` or `dma_buf_get_phys_vec_unlocked()`
    /// calls made.
    pub(crate) calls: u64,
    /// Time the walk took.
    pub(crate) nanoseconds: u64,
}

impl Importer {
    /// Opens the importer's device through another node of it, `path` (one
    /// made with mknod(2) elsewhere than devtmpfs, say).
    pub(crate) fn open_at(path: &std::path::Path) -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| format!("{}: open: {}", path.display(), sys::describe(&e)))?;
        Ok(Self { file })
    }

    /// `VFIO_DMABUF_IMP_WALK` with `flags` and `capacity` as given and room
    /// for `room` entries, keeping each entry whole.
    pub(crate) fn walk_segments(
        &self,
        flags: u32,
        capacity: u32,
        room: usize,
    ) -> io::Result<SegmentWalk> {
        let room = room.min(u32::MAX as usize);
        let mut segments = vec![uapi::vfio_dmabuf_imp_segment::default(); room];
        let mut arg = uapi::vfio_dmabuf_imp_walk {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_walk>(),
            flags,
            nr_segments: room as u32,
            capacity,
            segments: segments.as_mut_ptr() as u64,
            ..Default::default()
        };
        // SAFETY: WALK writes its argument and at most `nr_segments` entries
        // at `segments`, which points to that many entries of a live,
        // exclusively owned vector; any bytes make valid entries.
        unsafe { sys::ioctl(self.fd(), uapi::VFIO_DMABUF_IMP_WALK, &mut arg) }?;
        segments.truncate((arg.nr_segments as usize).min(room));
        Ok(SegmentWalk {
            segments,
            entries: arg.nr_segments,
            calls: arg.calls,
            nanoseconds: arg.nanoseconds,
        })
    }

    /// A walk by runs (`VFIO_DMABUF_IMP_WALK_RUNS`), `capacity` runs a call.
    pub(crate) fn walk_runs(&self, capacity: u32, room: usize) -> io::Result<SegmentWalk> {
        self.walk_segments(uapi::VFIO_DMABUF_IMP_WALK_RUNS, capacity, room)
    }
}
