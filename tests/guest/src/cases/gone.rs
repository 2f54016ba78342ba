// SPDX-License-Identifier: GPL-2.0

//! What a function that is gone (unbound, removed) leaves behind must say,
//! call by call, with the errno the uAPI documents: its character device
//! file answers `ENODEV` to every request it defines, this driver's and
//! VFIO's; a buffer exported from it cannot be imported (`ENODEV`); an
//! import of it answers `ENODEV` to every page frame query (`ERANGE` past
//! its end, as ever), keeps its counters, and its mappings raise `SIGBUS`.
//! Also the driver's claims of the BARs, as `/proc/iomem` shows them.

use std::fs;
use std::io;
use std::os::fd::BorrowedFd;

use vfio_dmabuf_uapi::mapping::{Access, PAGE_SIZE};

use super::{all_of, ensure, must, refused, Failure, Outcome};
use crate::expect::{Buffer, PAGE};
use crate::exporter::{ExportRequest, Exporter};
use crate::importer::Importer;
use crate::pci::{self, Resource};
use crate::sys;
use crate::uapi;

/// `<linux/vfio.h>`'s feature flags and the dma-buf feature.
const VFIO_DEVICE_FEATURE_GET: u32 = 1 << 16;
const VFIO_DEVICE_FEATURE_PROBE: u32 = 1 << 18;
const VFIO_DEVICE_FEATURE_DMA_BUF: u32 = 11;

/// An ioctl whose argument is `words`, which it may write; an fd it returns
/// is closed.
fn words_ioctl(fd: BorrowedFd<'_>, request: u32, words: &mut [u64]) -> io::Result<i32> {
    // SAFETY: each request used here reads and writes at most its
    // argument's structure, which `words` holds whole, and no address in it.
    let ret = unsafe { sys::ioctl_words(fd, request, words) }?;
    if request == uapi::VFIO_DEVICE_FEATURE && ret > 0 {
        // A dma-buf: not expected, but not to be leaked either.
        sys::close(sys::owned_fd(ret)?)?;
    }
    Ok(ret)
}

/// `VFIO_DEVICE_GET_INFO` with room for the whole `struct vfio_device_info`.
pub(super) fn vfio_device_info(exporter: &Exporter) -> io::Result<i32> {
    let mut words = [24u64, 0, 0];
    words_ioctl(exporter.fd(), uapi::VFIO_DEVICE_GET_INFO, &mut words)
}

/// `VFIO_DEVICE_GET_REGION_INFO` of region `index`.
pub(super) fn vfio_region_info(exporter: &Exporter, index: u32) -> io::Result<i32> {
    let mut words = [32u64, u64::from(index), 0, 0];
    words_ioctl(exporter.fd(), uapi::VFIO_DEVICE_GET_REGION_INFO, &mut words)
}

/// `VFIO_DEVICE_FEATURE(DMA_BUF)` with `flags` (GET or PROBE), exporting the
/// first page of BAR `bar`.
pub(super) fn vfio_feature_dma_buf(exporter: &Exporter, bar: u32, flags: u32) -> io::Result<i32> {
    let open_flags = (libc::O_RDWR | libc::O_CLOEXEC) as u64;
    let mut words = [
        40 | u64::from(flags | VFIO_DEVICE_FEATURE_DMA_BUF) << 32,
        u64::from(bar) | open_flags << 32,
        1 << 32, // flags 0, nr_ranges 1
        0,
        PAGE,
    ];
    words_ioctl(exporter.fd(), uapi::VFIO_DEVICE_FEATURE, &mut words)
}

/// Every request the character device defines, on a file of a function
/// that is gone, fails with ENODEV.
pub(super) fn exporter_refuses(exporter: &Exporter, bar: u32) -> Outcome {
    let one_page = crate::expect::ranges(&[(0, PAGE)]);
    all_of([
        refused("INFO", exporter.info(), libc::ENODEV),
        refused(
            "EXPORT",
            exporter.export(&ExportRequest::new(bar, &one_page)),
            libc::ENODEV,
        ),
        refused("REVOKE", exporter.revoke(bar), libc::ENODEV),
        refused("RESTORE", exporter.restore(bar), libc::ENODEV),
        refused(
            "VFIO_DEVICE_GET_INFO",
            vfio_device_info(exporter),
            libc::ENODEV,
        ),
        refused(
            &format!("VFIO_DEVICE_GET_REGION_INFO of region {bar}"),
            vfio_region_info(exporter, bar),
            libc::ENODEV,
        ),
        refused(
            "VFIO_DEVICE_FEATURE(DMA_BUF | GET)",
            vfio_feature_dma_buf(exporter, bar, VFIO_DEVICE_FEATURE_GET),
            libc::ENODEV,
        ),
        refused(
            "VFIO_DEVICE_FEATURE(DMA_BUF | PROBE)",
            vfio_feature_dma_buf(exporter, bar, VFIO_DEVICE_FEATURE_PROBE),
            libc::ENODEV,
        ),
    ])
}

/// `VFIO_DMABUF_IMP_BENCH` of one get_pfn call at page `pgoff`.
fn bench(importer: &Importer, pgoff: u64) -> io::Result<i32> {
    // argsz, flags; pgoff; loops, capacity; get_pfn_ns; lock_ns;
    // phys_vec_ns; runs, __reserved.
    let mut words = [56u64, pgoff, 1, 0, 0, 0, 0];
    // SAFETY: BENCH reads and writes only its argument, 56 bytes, which
    // `words` holds, and no address.
    unsafe { sys::ioctl_words(importer.fd(), uapi::VFIO_DMABUF_IMP_BENCH, &mut words) }
}

/// Every page frame query of an import of a gone buffer fails with ENODEV
/// (ERANGE past the end), its counters say it was told `invalidations`
/// times and keep no table, and a mapping of it raises SIGBUS.
pub(super) fn import_refuses(importer: &Importer, buffer: &Buffer, invalidations: u64) -> Outcome {
    let counters = importer.counters();
    let mapping = importer.map(0, PAGE_SIZE, PAGE_SIZE);
    let access = match &mapping {
        Ok(m) => m.probe_read32(0).map_err(|e| e.to_string()),
        Err(e) => Err(format!("mmap: {}", sys::describe(e))),
    };
    all_of([
        match counters {
            Ok(c) if c.invalidations == invalidations && c.table_segments == 0 => Ok(()),
            Ok(c) => Err(Failure::Fail(format!(
                "COUNTERS {c:?}, expected {invalidations} invalidation(s) and no table"
            ))),
            Err(e) => Err(Failure::Fail(format!("COUNTERS: {}", sys::describe(&e)))),
        },
        refused("WALK", importer.walk(0, 16), libc::ENODEV),
        refused(
            "WALK (pages)",
            importer.walk(uapi::VFIO_DMABUF_IMP_WALK_PAGES, 16),
            libc::ENODEV,
        ),
        refused("WALK (runs)", importer.walk_runs(1, 16), libc::ENODEV),
        refused("GET_PFN of page 0", importer.get_pfn(0), libc::ENODEV),
        refused(
            "GET_PFN of the last page",
            importer.get_pfn(buffer.pages() - 1),
            libc::ENODEV,
        ),
        refused(
            "GET_PFN past the end",
            importer.get_pfn(buffer.pages()),
            libc::ERANGE,
        ),
        refused("BENCH", bench(importer, 0), libc::ENODEV),
        match access {
            Ok(Access::Sigbus) => Ok(()),
            Ok(other) => Err(Failure::Fail(format!(
                "a read through a new mapping gave {other:x?}, expected SIGBUS"
            ))),
            Err(e) => Err(Failure::Fail(e)),
        },
    ])
}

/// A gone buffer keeps its size and cannot be imported.
pub(super) fn dmabuf_refuses(dmabuf: BorrowedFd<'_>, buffer: &Buffer) -> Outcome {
    let size = must("lseek(SEEK_END) on the dma-buf", sys::file_size(dmabuf))?;
    ensure!(
        size == buffer.size(),
        "the dma-buf is {size:#x} bytes, expected {:#x}",
        buffer.size()
    );
    let importer = Importer::open()?;
    let import = importer.import(dmabuf);
    let closed = must("closing the importer", importer.close());
    refused("IMPORT into a new importer", import, libc::ENODEV)?;
    closed
}

/// IMPORT of the gone buffer again on `importer`: ENODEV, and the old
/// import is dropped, so nothing is imported any more (ENOENT).
pub(super) fn reimport_refuses(importer: &Importer, dmabuf: BorrowedFd<'_>) -> Outcome {
    refused("IMPORT again", importer.import(dmabuf), libc::ENODEV)?;
    all_of([
        refused(
            "COUNTERS after a failed IMPORT",
            importer.counters(),
            libc::ENOENT,
        ),
        refused(
            "WALK after a failed IMPORT",
            importer.walk(0, 1),
            libc::ENOENT,
        ),
        refused(
            "GET_PFN after a failed IMPORT",
            importer.get_pfn(0),
            libc::ENOENT,
        ),
        refused(
            "mmap after a failed IMPORT",
            importer.try_mmap(0, PAGE_SIZE, libc::PROT_READ, libc::MAP_SHARED),
            libc::ENOENT,
        ),
    ])
}

/// The address ranges `/proc/iomem` says the driver claims.
pub(super) fn iomem_claims() -> Result<Vec<(u64, u64)>, Failure> {
    let text = must("reading /proc/iomem", fs::read_to_string("/proc/iomem"))?;
    Ok(parse_claims(&text, pci::DRIVER))
}

fn parse_claims(iomem: &str, owner: &str) -> Vec<(u64, u64)> {
    iomem
        .lines()
        .filter_map(|line| {
            let (range, name) = line.trim().split_once(" : ")?;
            if name != owner {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            ))
        })
        .collect()
}

/// The memory BARs of `bars`, as `/proc/iomem` ranges.
pub(super) fn memory_bars(bars: &[Resource]) -> Vec<(u64, u64)> {
    bars.iter()
        .filter(|r| r.flags & pci::IORESOURCE_MEM != 0 && r.size() > 0)
        .map(|r| (r.start, r.end))
        .collect()
}

/// Every memory BAR of `bars` is claimed by the driver (`claimed`) or none
/// is.
pub(super) fn expect_claims(what: &str, bars: &[Resource], claimed: bool) -> Outcome {
    let claims = iomem_claims()?;
    let wanted = memory_bars(bars);
    ensure!(!wanted.is_empty(), "{what}: no memory BAR to look for");
    let wrong: Vec<String> = wanted
        .iter()
        .filter(|bar| claims.contains(bar) != claimed)
        .map(|(start, end)| format!("{start:x}-{end:x}"))
        .collect();
    ensure!(
        wrong.is_empty(),
        "{what}: /proc/iomem {} {} as {}",
        if claimed {
            "does not show"
        } else {
            "still shows"
        },
        wrong.join(", "),
        pci::DRIVER
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_in_iomem() {
        let iomem = "\
00000000-00000fff : Reserved
fe800000-fe8fffff : PCI Bus 0000:01
  fe800000-fe8fffff : 0000:01:00.0
    fe800000-fe8fffff : vfio_dmabuf
800000000-83fffffff : 0000:02:00.0
  800000000-83fffffff : vfio_dmabuf_other
";
        assert_eq!(
            parse_claims(iomem, "vfio_dmabuf"),
            [(0xfe80_0000, 0xfe8f_ffff)]
        );
        assert!(parse_claims("", "vfio_dmabuf").is_empty());
        let bars = [
            Resource {
                start: 0xfe80_0000,
                end: 0xfe8f_ffff,
                flags: pci::IORESOURCE_MEM,
            },
            Resource {
                start: 0xc000,
                end: 0xc0ff,
                flags: pci::IORESOURCE_IO,
            },
            Resource::default(),
        ];
        assert_eq!(memory_bars(&bars), [(0xfe80_0000, 0xfe8f_ffff)]);
    }
}
