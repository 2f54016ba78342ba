// SPDX-License-Identifier: GPL-2.0

//! The test importer, `/dev/vfio-dmabuf-importer`
//! (`tests/importer/vfio_dmabuf_importer.h`): each open file imports one
//! dma-buf and walks it with `dma_buf_get_pfn_unlocked()` or
//! `dma_buf_get_phys_vec_unlocked()`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::device::ioctl;
use crate::error::Error;
use crate::uapi;

/// The importer's device.
pub const NODE: &str = "/dev/vfio-dmabuf-importer";

/// How a walk steps through the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// One call per block of `2^max_order` pages, as the exporter allows.
    MaxOrder,
    /// One call per page (`VFIO_DMABUF_IMP_WALK_PAGES`).
    Pages,
    /// The range form, this many runs a call (`VFIO_DMABUF_IMP_WALK_RUNS`).
    Runs(u32),
}

impl Step {
    fn flags(self) -> u32 {
        match self {
            Self::MaxOrder => 0,
            Self::Pages => uapi::VFIO_DMABUF_IMP_WALK_PAGES,
            Self::Runs(_) => uapi::VFIO_DMABUF_IMP_WALK_RUNS,
        }
    }

    fn capacity(self) -> u32 {
        match self {
            Self::Runs(capacity) => capacity,
            Self::MaxOrder | Self::Pages => 0,
        }
    }

    /// The name the output gives the walk.
    pub fn name(self) -> &'static str {
        match self {
            Self::MaxOrder => "max_order",
            Self::Pages => "pages",
            Self::Runs(_) => "runs",
        }
    }

    /// The kernel call a walk of this kind makes.
    pub fn call(self) -> &'static str {
        match self {
            Self::MaxOrder | Self::Pages => "dma_buf_get_pfn_unlocked()",
            Self::Runs(_) => "dma_buf_get_phys_vec_unlocked()",
        }
    }
}

/// What one walk reports.
#[derive(Debug)]
pub struct Walk {
    /// The importer's table, when asked for.
    pub table: Vec<uapi::vfio_dmabuf_imp_segment>,
    /// The entries of the importer's table.
    pub segments: u32,
    /// `dma_buf_get_pfn_unlocked()` or `dma_buf_get_phys_vec_unlocked()`
    /// calls made.
    pub calls: u64,
    /// Time the walk took in the kernel.
    pub nanoseconds: u64,
}

/// One open file of the importer: one import.
pub struct Importer {
    file: File,
}

impl Importer {
    pub fn open() -> Result<Self, Error> {
        let path = Path::new(NODE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                let missing = e.kind() == io::ErrorKind::NotFound;
                let e = Error::os(path, "open", e);
                if missing {
                    e.with_hint("is the vfio_dmabuf_importer module loaded?")
                } else {
                    e
                }
            })?;
        Ok(Self { file })
    }

    /// `VFIO_DMABUF_IMP_IMPORT`: attaches to `dmabuf`; the buffer's size in
    /// bytes.
    pub fn import(&self, dmabuf: BorrowedFd<'_>) -> Result<u64, Error> {
        let mut arg = uapi::vfio_dmabuf_imp_import {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_import>(),
            fd: dmabuf.as_raw_fd(),
            ..Default::default()
        };
        // SAFETY: the file is open for the lifetime of `self`; IMPORT reads
        // and writes `arg`, a valid `struct vfio_dmabuf_imp_import` of the
        // size the request encodes, which holds no address.
        unsafe {
            ioctl(
                &self.file,
                Path::new(NODE),
                uapi::VFIO_DMABUF_IMP_IMPORT,
                "VFIO_DMABUF_IMP_IMPORT",
                &raw mut arg,
            )
        }?;
        Ok(arg.size)
    }

    /// `VFIO_DMABUF_IMP_WALK` once, with room for `room` entries of the
    /// table (none: the kernel writes no table, only counts it).
    fn walk_once(&self, step: Step, room: usize) -> Result<Walk, Error> {
        let room = u32::try_from(room).unwrap_or(u32::MAX);
        let mut table = vec![uapi::vfio_dmabuf_imp_segment::default(); room as usize];
        let mut arg = uapi::vfio_dmabuf_imp_walk {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_walk>(),
            flags: step.flags(),
            capacity: step.capacity(),
            nr_segments: room,
            segments: if room == 0 {
                0
            } else {
                table.as_mut_ptr() as u64
            },
            ..Default::default()
        };
        // SAFETY: the file is open for the lifetime of `self`; WALK reads and
        // writes `arg`, a valid `struct vfio_dmabuf_imp_walk` of the size the
        // request encodes, and writes at most `nr_segments` entries at
        // `segments`, which is 0 or the start of `table`, a live vector of
        // that many entries that nothing else borrows; any bytes make valid
        // entries.
        unsafe {
            ioctl(
                &self.file,
                Path::new(NODE),
                uapi::VFIO_DMABUF_IMP_WALK,
                "VFIO_DMABUF_IMP_WALK",
                &raw mut arg,
            )
        }?;
        table.truncate(arg.nr_segments.min(room) as usize);
        Ok(Walk {
            table,
            segments: arg.nr_segments,
            calls: arg.calls,
            nanoseconds: arg.nanoseconds,
        })
    }

    /// The importer file, for mmap().
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// `VFIO_DMABUF_IMP_COUNTERS`.
    pub fn counters(&self) -> Result<uapi::vfio_dmabuf_imp_counters, Error> {
        let mut arg = uapi::vfio_dmabuf_imp_counters {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_counters>(),
            ..Default::default()
        };
        // SAFETY: the file is open for the lifetime of `self`; COUNTERS
        // reads and writes `arg`, a valid structure of the size the request
        // encodes, which holds no address.
        unsafe {
            ioctl(
                &self.file,
                Path::new(NODE),
                uapi::VFIO_DMABUF_IMP_COUNTERS,
                "VFIO_DMABUF_IMP_COUNTERS",
                &raw mut arg,
            )
        }?;
        Ok(arg)
    }

    /// `VFIO_DMABUF_IMP_BENCH`: the kernel's time for `loops` get_pfn calls
    /// of page `pgoff`, as many range calls over the whole buffer with room
    /// for `capacity` runs (none if 0), and as many reservation lock/unlock
    /// pairs.
    pub fn bench(
        &self,
        pgoff: u64,
        loops: u32,
        capacity: u32,
    ) -> Result<uapi::vfio_dmabuf_imp_bench, Error> {
        let mut arg = uapi::vfio_dmabuf_imp_bench {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_bench>(),
            pgoff,
            loops,
            capacity,
            ..Default::default()
        };
        // SAFETY: the file is open for the lifetime of `self`; BENCH reads
        // and writes `arg`, a valid structure of the size the request
        // encodes, which holds no address.
        unsafe {
            ioctl(
                &self.file,
                Path::new(NODE),
                uapi::VFIO_DMABUF_IMP_BENCH,
                "VFIO_DMABUF_IMP_BENCH",
                &raw mut arg,
            )
        }?;
        Ok(arg)
    }

    /// Walks the buffer and counts the table without copying it out, for
    /// timing.
    pub fn walk_counted(&self, step: Step) -> Result<Walk, Error> {
        self.walk_once(step, 0)
    }

    /// Walks the buffer and copies out the whole table. `expected` entries
    /// make the first guess at the room needed; a table that turns out
    /// larger is walked again with the room it needs.
    pub fn walk_table(&self, step: Step, expected: usize) -> Result<Walk, Error> {
        let mut room = expected.max(1);
        loop {
            let walk = self.walk_once(step, room)?;
            if walk.segments as usize <= room {
                return Ok(walk);
            }
            room = walk.segments as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_flags() {
        assert_eq!(Step::MaxOrder.flags(), 0);
        assert_eq!(Step::Pages.flags(), 1);
        assert_eq!(Step::Pages.name(), "pages");
        assert_eq!(Step::Runs(64).flags(), 2);
        assert_eq!(Step::Runs(64).capacity(), 64);
        assert_eq!(Step::MaxOrder.capacity(), 0);
    }
}
