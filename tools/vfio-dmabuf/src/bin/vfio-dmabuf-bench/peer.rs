// SPDX-License-Identifier: GPL-2.0

//! `bench-peer`: the path `get_pfn` is measured against. A BAR of a function
//! bound to upstream vfio-pci is exported with `VFIO_DEVICE_FEATURE_DMA_BUF`
//! and imported by the benchmarks' scatterlist importer
//! (`/dev/vfio-dmabuf-peer`, tests/peer) for a PCI client:
//! `dma_buf_map_attachment()` and a walk of the scatterlist, vfio-pci's
//! export, and its revoke when the function's memory decoding is turned off.
//!
//! vfio-pci is reached through the legacy group interface in no-IOMMU mode
//! (`vfio.enable_unsafe_noiommu_mode`), as the guest has no IOMMU: the
//! dma-buf feature does not depend on one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use vfio_dmabuf_uapi::vfio::{vfio_region_dma_range, VfioDevice};

use serde::Serialize;

use crate::bench::{median, timed, Timing};
use crate::device::ioctl;
use crate::error::Error;
use crate::size::{self, Range, RangeArg};
use crate::uapi;

/// The scatterlist importer's device.
const PEER_NODE: &str = "/dev/vfio-dmabuf-peer";

/// One open file of the scatterlist importer: attachments to one buffer.
struct Peer {
    file: File,
}

impl Peer {
    fn open() -> Result<Self, Error> {
        let file = open_rw(Path::new(PEER_NODE))
            .map_err(|e| e.with_hint("is the vfio_dmabuf_peer module loaded?"))?;
        Ok(Self { file })
    }

    /// Attaches `count` times to `dmabuf` for `client`, and maps each; the
    /// buffer's size.
    fn attach(&self, dmabuf: &OwnedFd, client: u32, count: u32) -> Result<u64, Error> {
        let mut arg = uapi::vfio_dmabuf_peer_attach {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_peer_attach>(),
            fd: dmabuf.as_raw_fd(),
            client,
            count,
            ..Default::default()
        };
        // SAFETY: ATTACH reads and writes `arg`, of the encoded size.
        unsafe {
            ioctl(
                &self.file,
                Path::new(PEER_NODE),
                uapi::VFIO_DMABUF_PEER_ATTACH,
                "VFIO_DMABUF_PEER_ATTACH",
                &raw mut arg,
            )
        }?;
        Ok(arg.size)
    }

    /// Maps again what invalidations unmapped; how many.
    fn remap(&self) -> Result<i32, Error> {
        // SAFETY: REMAP takes no argument.
        unsafe {
            ioctl(
                &self.file,
                Path::new(PEER_NODE),
                uapi::VFIO_DMABUF_PEER_REMAP,
                "VFIO_DMABUF_PEER_REMAP",
                std::ptr::null_mut::<u8>(),
            )
        }
    }

    fn walk(&self, blocks: bool) -> Result<uapi::vfio_dmabuf_peer_walk, Error> {
        let mut arg = uapi::vfio_dmabuf_peer_walk {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_peer_walk>(),
            flags: if blocks {
                uapi::VFIO_DMABUF_PEER_WALK_BLOCKS
            } else {
                0
            },
            ..Default::default()
        };
        // SAFETY: WALK reads and writes `arg`, of the encoded size.
        unsafe {
            ioctl(
                &self.file,
                Path::new(PEER_NODE),
                uapi::VFIO_DMABUF_PEER_WALK,
                "VFIO_DMABUF_PEER_WALK",
                &raw mut arg,
            )
        }?;
        Ok(arg)
    }

    /// Invalidations since the last call, and the time from the start of
    /// the first to the end of the last.
    fn span(&self) -> Result<uapi::vfio_dmabuf_peer_span, Error> {
        let mut arg = uapi::vfio_dmabuf_peer_span::default();
        // SAFETY: SPAN writes `arg`, of the encoded size.
        unsafe {
            ioctl(
                &self.file,
                Path::new(PEER_NODE),
                uapi::VFIO_DMABUF_PEER_SPAN,
                "VFIO_DMABUF_PEER_SPAN",
                &raw mut arg,
            )
        }?;
        Ok(arg)
    }

    fn bench(&self, loops: u32) -> Result<uapi::vfio_dmabuf_peer_bench, Error> {
        let mut arg = uapi::vfio_dmabuf_peer_bench {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_peer_bench>(),
            loops,
            ..Default::default()
        };
        // SAFETY: BENCH reads and writes `arg`, of the encoded size.
        unsafe {
            ioctl(
                &self.file,
                Path::new(PEER_NODE),
                uapi::VFIO_DMABUF_PEER_BENCH,
                "VFIO_DMABUF_PEER_BENCH",
                &raw mut arg,
            )
        }?;
        Ok(arg)
    }
}

/// A PCI address, `DDDD:BB:DD.F`, as the peer importer's `client`:
/// `domain << 16 | bus << 8 | devfn`.
pub(crate) fn client_id(address: &str) -> Result<u32, String> {
    let bad = || format!("{address:?} is not a PCI address (DDDD:BB:DD.F)");
    let (rest, function) = address.rsplit_once('.').ok_or_else(bad)?;
    let mut parts = rest.split(':');
    let (Some(domain), Some(bus), Some(slot), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let number = |text: &str, max: u32| {
        u32::from_str_radix(text, 16)
            .ok()
            .filter(|&n| n <= max && !text.is_empty())
            .ok_or_else(bad)
    };
    let (domain, bus) = (number(domain, 0xffff)?, number(bus, 0xff)?);
    let (slot, function) = (number(slot, 0x1f)?, number(function, 7)?);
    Ok(domain << 16 | bus << 8 | slot << 3 | function)
}

/// The scatterlist walks of one buffer, of one kind.
#[derive(Serialize)]
struct WalkStats {
    /// Entries of the table: DMA segments of the scatterlist, or aligned
    /// blocks.
    segments: u32,
    /// Their total length: the buffer's size, checked.
    length: u64,
    first_addr: u64,
    median_ns: u64,
    min_ns: u64,
    max_ns: u64,
}

/// One row of the peer's revoke.
#[derive(Serialize)]
struct RevokeRow {
    attachments: u32,
    /// Memory decoding turned off: every attachment invalidated and
    /// unmapped, and vfio-pci waits for the unmaps.
    revoke: Timing,
    /// The median over the count; none for 0.
    per_attachment_ns: Option<u64>,
    /// In the importer, from the start of the first invalidate_mappings
    /// callback to the end of the last: vfio-pci's walk over the
    /// attachments, unmaps included, without the configuration write and
    /// what QEMU does for it. None for 0.
    invalidation: Option<Timing>,
}

/// What `bench-peer` prints.
#[derive(Serialize)]
struct Report {
    address: String,
    client: String,
    bar: u32,
    size: u64,
    ranges: Vec<Range>,
    repeat: u32,
    /// Map, a table of the scatterlist's DMA segments, unmap.
    walk: WalkStats,
    /// Map, the segments merged and split into the aligned blocks a
    /// page-table builder maps (the table a get_pfn walk builds), unmap.
    blocks: WalkStats,
    /// One lock, map, unmap, unlock of the first attachment, in the kernel:
    /// the mean over `--latency-loops` of them.
    map_unmap_ns: f64,
    /// One lock/unlock pair alone, measured the same way.
    lock_floor_ns: f64,
    /// `VFIO_DEVICE_FEATURE_DMA_BUF` of the ranges, from user space.
    export: Timing,
    revoke: Vec<RevokeRow>,
}

/// Opens `path` read-write, close-on-exec.
fn open_rw(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::os(path, "open", e))
}

/// `VFIO_DEVICE_FEATURE_DMA_BUF` of `ranges` of BAR `bar` of `device`.
fn export(device: &VfioDevice, bar: u32, ranges: &[Range]) -> Result<OwnedFd, Error> {
    let ranges: Vec<vfio_region_dma_range> =
        ranges.iter().map(|r| (r.offset, r.length).into()).collect();
    Ok(device.export(bar, &ranges)?)
}

/// What `bench-peer` runs.
pub(crate) struct Plan<'a> {
    /// The function bound to vfio-pci.
    pub(crate) address: &'a str,
    pub(crate) bar: u32,
    /// The PCI function the importer maps for.
    pub(crate) client: &'a str,
    pub(crate) ranges: &'a [RangeArg],
    /// Attachment counts for the revoke.
    pub(crate) attachments: &'a [u32],
    pub(crate) repeat: u32,
    pub(crate) latency_loops: u32,
}

/// `bench-peer`: exports the ranges of the BAR of the vfio-pci function,
/// imports them for the client and walks them `repeat` times each way;
/// times `latency_loops` map/unmap pairs, the export, and, for each count
/// of attachments, the revoke of a one-page buffer with that many mapped.
pub(crate) fn run(plan: &Plan<'_>, json: bool) -> Result<(), Error> {
    let Plan {
        address,
        bar,
        client,
        ranges,
        attachments,
        repeat,
        latency_loops,
    } = *plan;
    let device = VfioDevice::open(address)?;
    let client_id = client_id(client).map_err(|e| Error::invalid(Path::new(client), e))?;
    let ranges = size::resolve(ranges, device.region(bar)?.size);
    let dmabuf = export(&device, bar, &ranges)?;
    let peer = Peer::open()?;
    let size = peer.attach(&dmabuf, client_id, 1)?;
    let expected: u64 = ranges.iter().map(|r| r.length).sum();

    let name = Path::new(device.name());
    let walk = walks(&peer, false, repeat, size, expected, name)?;
    let blocks = walks(&peer, true, repeat, size, expected, name)?;
    let bench = peer.bench(latency_loops)?;
    drop(peer);
    drop(dmabuf);

    let mut exports = Vec::with_capacity(repeat as usize);
    for _ in 0..repeat.max(1) {
        let (fd, ns) = timed(|| export(&device, bar, &ranges))?;
        exports.push(ns);
        drop(fd);
    }

    let page = [Range {
        offset: 0,
        length: 4096,
    }];
    let mut rows = Vec::new();
    for &count in attachments {
        // 0: memory decoding toggled with no dma-buf at all, the fixed cost
        // of the revoke's trigger.
        let dmabuf = (count > 0)
            .then(|| export(&device, bar, &page))
            .transpose()?;
        let peer = Peer::open()?;
        if let Some(dmabuf) = &dmabuf {
            peer.attach(dmabuf, client_id, count)?;
        }
        let mut times = Vec::with_capacity(repeat as usize);
        let mut spans = Vec::with_capacity(repeat as usize);
        for _ in 0..repeat.max(1) {
            if dmabuf.is_some() {
                peer.span()?;
            }
            let ((), ns) = timed(|| Ok(device.set_memory(false)?))?;
            if dmabuf.is_some() {
                let span = peer.span()?;
                if span.invalidations != count {
                    return Err(Error::invalid(
                        Path::new(device.name()),
                        format!("{} of {count} attachments invalidated", span.invalidations),
                    ));
                }
                spans.push(span.nanoseconds);
            }
            device.set_memory(true)?;
            // Every attachment was unmapped by the revoke, or vfio-pci
            // would still be waiting for it.
            let remapped = if dmabuf.is_some() { peer.remap()? } else { 0 };
            if remapped != count as i32 {
                return Err(Error::invalid(
                    Path::new(device.name()),
                    format!("{remapped} of {count} attachments unmapped by the revoke"),
                ));
            }
            times.push(ns);
        }
        let revoke = Timing::new(&mut times);
        let per_attachment_ns = (count > 0).then(|| revoke.median_ns / u64::from(count));
        let invalidation = (!spans.is_empty()).then(|| Timing::new(&mut spans));
        rows.push(RevokeRow {
            attachments: count,
            revoke,
            per_attachment_ns,
            invalidation,
        });
    }

    let report = Report {
        address: address.to_owned(),
        client: client.to_owned(),
        bar,
        size,
        ranges,
        repeat,
        walk,
        blocks,
        map_unmap_ns: bench.map_ns as f64 / f64::from(latency_loops),
        lock_floor_ns: bench.lock_ns as f64 / f64::from(latency_loops),
        export: Timing::new(&mut exports),
        revoke: rows,
    };
    crate::output::print(json, &report, |out, r| write_text(out, r))
}

/// Walks `repeat` times (at least once), checking that the table covers
/// the buffer.
fn walks(
    peer: &Peer,
    blocks: bool,
    repeat: u32,
    size: u64,
    expected: u64,
    path: &Path,
) -> Result<WalkStats, Error> {
    let mut times = Vec::with_capacity(repeat as usize);
    let mut last = None;
    for _ in 0..repeat.max(1) {
        let walk = peer.walk(blocks)?;
        if walk.length != expected || size != expected {
            return Err(Error::invalid(
                path,
                format!(
                    "the table covers {} bytes of a {size}-byte buffer of {expected} bytes",
                    walk.length
                ),
            ));
        }
        times.push(walk.nanoseconds);
        last = Some(walk);
    }
    let last = last.expect("walked at least once");
    times.sort_unstable();
    Ok(WalkStats {
        segments: last.segments,
        length: last.length,
        first_addr: last.first_addr,
        median_ns: median(&times),
        min_ns: times[0],
        max_ns: times[times.len() - 1],
    })
}

fn write_text(out: &mut dyn Write, r: &Report) -> io::Result<()> {
    writeln!(
        out,
        "{} BAR{} (vfio-pci) for {}: {} bytes in {} range(s)",
        r.address,
        r.bar,
        r.client,
        r.size,
        r.ranges.len()
    )?;
    writeln!(
        out,
        "scatterlist walk: {} segments, median {} ns (min {}, max {})",
        r.walk.segments, r.walk.median_ns, r.walk.min_ns, r.walk.max_ns
    )?;
    writeln!(
        out,
        "aligned blocks: {} blocks, median {} ns (min {}, max {})",
        r.blocks.segments, r.blocks.median_ns, r.blocks.min_ns, r.blocks.max_ns
    )?;
    writeln!(
        out,
        "one map/unmap: {:.0} ns; one reservation lock/unlock pair: {:.0} ns",
        r.map_unmap_ns, r.lock_floor_ns
    )?;
    writeln!(
        out,
        "VFIO_DEVICE_FEATURE_DMA_BUF: median {} ns (min {})",
        r.export.median_ns, r.export.min_ns
    )?;
    for row in &r.revoke {
        writeln!(
            out,
            "revoke with {:>5} attachments: median {} ns",
            row.attachments, row.revoke.median_ns
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids() {
        assert_eq!(client_id("0000:06:00.0"), Ok(0x0600));
        assert_eq!(client_id("0001:ff:1f.7"), Ok(0x1_ffff));
        assert_eq!(client_id("0000:00:03.1"), Ok(0x19));
        for bad in [
            "",
            "0000:06:00",
            "06:00.0",
            "0000:06:20.0",
            "0000:06:00.8",
            "0000:100:00.0",
            "0000::00.0",
        ] {
            assert!(client_id(bad).is_err(), "{bad:?}");
        }
    }
}
