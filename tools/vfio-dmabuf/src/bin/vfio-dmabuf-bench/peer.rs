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

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bench::{median, timed, Timing};
use crate::device::ioctl;
use crate::error::Error;
use crate::size::{self, Range, RangeArg};
use crate::uapi;

/// `<linux/vfio.h>`, the little of it this needs; the host's headers may
/// predate `VFIO_DEVICE_FEATURE_DMA_BUF` (Linux 6.19), so it is written out
/// here: `_IO(VFIO_TYPE, VFIO_BASE + n)` is `';' << 8 | (100 + n)`.
mod vfio {
    const fn io(n: u32) -> u32 {
        (b';' as u32) << 8 | (100 + n)
    }
    pub(super) const GET_API_VERSION: u32 = io(0);
    pub(super) const SET_IOMMU: u32 = io(2);
    pub(super) const GROUP_SET_CONTAINER: u32 = io(4);
    pub(super) const GROUP_GET_DEVICE_FD: u32 = io(6);
    pub(super) const DEVICE_GET_REGION_INFO: u32 = io(8);
    pub(super) const DEVICE_FEATURE: u32 = io(17);
    pub(super) const API_VERSION: i32 = 0;
    pub(super) const NOIOMMU_IOMMU: libc::c_ulong = 8;
    pub(super) const DEVICE_FEATURE_GET: u32 = 1 << 16;
    pub(super) const DEVICE_FEATURE_DMA_BUF: u32 = 11;
    pub(super) const PCI_CONFIG_REGION_INDEX: u32 = 7;

    /// `struct vfio_region_info`.
    #[repr(C)]
    #[derive(Default)]
    pub(super) struct RegionInfo {
        pub(super) argsz: u32,
        pub(super) flags: u32,
        pub(super) index: u32,
        pub(super) cap_offset: u32,
        pub(super) size: u64,
        pub(super) offset: u64,
    }
}

/// Two consecutive `__u32` fields as the one `u64` that holds them in memory.
fn pair(first: u32, second: u32) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&first.to_ne_bytes());
    bytes[4..].copy_from_slice(&second.to_ne_bytes());
    u64::from_ne_bytes(bytes)
}

/// `PCI_COMMAND` and its memory-decoding bit, `<linux/pci_regs.h>`.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 0x2;

/// A function bound to vfio-pci, opened through its no-IOMMU group.
pub(crate) struct VfioDevice {
    /// Kept open: the device's file holds the group, the group the
    /// container.
    _container: File,
    _group: File,
    device: File,
    path: PathBuf,
    /// Where the configuration space is in the device's file.
    config_offset: u64,
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

impl VfioDevice {
    /// Opens the function at PCI address `address`.
    pub(crate) fn open(address: &str) -> Result<Self, Error> {
        let link = Path::new("/sys/bus/pci/devices")
            .join(address)
            .join("iommu_group");
        let target = fs::read_link(&link).map_err(|e| {
            Error::os(&link, "read link", e).with_hint("is the function bound to vfio-pci?")
        })?;
        let group = target
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::invalid(&link, "no group number"))?;
        let mut group_path = PathBuf::from(format!("/dev/vfio/noiommu-{group}"));
        if !group_path.exists() {
            group_path = PathBuf::from(format!("/dev/vfio/{group}"));
        }
        let container_path = Path::new("/dev/vfio/vfio");
        let container = open_rw(container_path)?;
        let group_file = open_rw(&group_path)?;
        let version = Self::call(
            &container,
            container_path,
            vfio::GET_API_VERSION,
            "VFIO_GET_API_VERSION",
            0,
        )?;
        if version != vfio::API_VERSION {
            return Err(Error::invalid(
                container_path,
                format!("VFIO API version {version}"),
            ));
        }
        let container_fd: i32 = container.as_raw_fd();
        // SAFETY: GROUP_SET_CONTAINER reads one int, `container_fd`.
        unsafe {
            ioctl(
                &group_file,
                &group_path,
                vfio::GROUP_SET_CONTAINER,
                "VFIO_GROUP_SET_CONTAINER",
                (&raw const container_fd).cast_mut(),
            )
        }?;
        Self::call(
            &container,
            container_path,
            vfio::SET_IOMMU,
            "VFIO_SET_IOMMU",
            vfio::NOIOMMU_IOMMU,
        )?;
        let name = CString::new(address).map_err(|_| Error::invalid(&link, "NUL in address"))?;
        // SAFETY: GROUP_GET_DEVICE_FD reads the NUL-terminated `name`.
        let fd = unsafe {
            ioctl(
                &group_file,
                &group_path,
                vfio::GROUP_GET_DEVICE_FD,
                "VFIO_GROUP_GET_DEVICE_FD",
                name.as_ptr().cast_mut(),
            )
        }?;
        // SAFETY: the kernel just gave us `fd`, which nothing else owns.
        let device = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut this = Self {
            _container: container,
            _group: group_file,
            device,
            path: PathBuf::from(format!("vfio-pci {address}")),
            config_offset: 0,
        };
        this.config_offset = this.region(vfio::PCI_CONFIG_REGION_INDEX)?.offset;
        Ok(this)
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` of region `index` (a BAR, or the
    /// configuration space).
    fn region(&self, index: u32) -> Result<vfio::RegionInfo, Error> {
        let mut info = vfio::RegionInfo {
            argsz: size_of::<vfio::RegionInfo>() as u32,
            index,
            ..Default::default()
        };
        // SAFETY: GET_REGION_INFO reads and writes `info`, of the size its
        // argsz says.
        unsafe {
            ioctl(
                &self.device,
                &self.path,
                vfio::DEVICE_GET_REGION_INFO,
                "VFIO_DEVICE_GET_REGION_INFO",
                &raw mut info,
            )
        }?;
        Ok(info)
    }

    /// An ioctl whose argument is a plain integer.
    fn call(
        file: &File,
        path: &Path,
        request: u32,
        name: &'static str,
        arg: libc::c_ulong,
    ) -> Result<i32, Error> {
        // SAFETY: these requests take an integer and touch no memory.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::Ioctl::from(request), arg) };
        if ret < 0 {
            return Err(Error::os(path, name, io::Error::last_os_error()));
        }
        Ok(ret)
    }

    /// The size of BAR `bar`.
    pub(crate) fn bar_size(&self, bar: u32) -> Result<u64, Error> {
        Ok(self.region(bar)?.size)
    }

    /// `VFIO_DEVICE_FEATURE_DMA_BUF` of `ranges` of BAR `bar`.
    pub(crate) fn export(&self, bar: u32, ranges: &[Range]) -> Result<OwnedFd, Error> {
        // struct vfio_device_feature { argsz, flags, data[] } holding
        // struct vfio_device_feature_dma_buf { region_index, open_flags,
        // flags, nr_ranges, dma_ranges[] { offset, length } }, as u64s.
        let mut words = vec![0u64; 3 + 2 * ranges.len()];
        let argsz = (words.len() * 8) as u32;
        let flags = vfio::DEVICE_FEATURE_GET | vfio::DEVICE_FEATURE_DMA_BUF;
        let open_flags = (libc::O_RDWR | libc::O_CLOEXEC) as u32;
        let nr_ranges = ranges.len() as u32;
        words[0] = pair(argsz, flags);
        words[1] = pair(bar, open_flags);
        words[2] = pair(0, nr_ranges);
        for (i, r) in ranges.iter().enumerate() {
            words[3 + 2 * i] = r.offset;
            words[4 + 2 * i] = r.length;
        }
        // SAFETY: the kernel reads `argsz` bytes of `words`, which has them.
        let fd = unsafe {
            ioctl(
                &self.device,
                &self.path,
                vfio::DEVICE_FEATURE,
                "VFIO_DEVICE_FEATURE(DMA_BUF)",
                words.as_mut_ptr(),
            )
        }?;
        // SAFETY: a new file descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Turns the function's memory decoding on or off through vfio-pci's
    /// view of its configuration space: off revokes the dma-bufs.
    pub(crate) fn set_memory(&self, on: bool) -> Result<(), Error> {
        let at = self.config_offset + PCI_COMMAND;
        let mut bytes = [0u8; 2];
        self.device
            .read_exact_at(&mut bytes, at)
            .map_err(|e| Error::os(&self.path, "read PCI_COMMAND", e))?;
        let mut command = u16::from_le_bytes(bytes);
        if on {
            command |= PCI_COMMAND_MEMORY;
        } else {
            command &= !PCI_COMMAND_MEMORY;
        }
        self.device
            .write_all_at(&command.to_le_bytes(), at)
            .map_err(|e| Error::os(&self.path, "write PCI_COMMAND", e))
    }
}

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
    let ranges = size::resolve(ranges, device.bar_size(bar)?);
    let dmabuf = device.export(bar, &ranges)?;
    let peer = Peer::open()?;
    let size = peer.attach(&dmabuf, client_id, 1)?;
    let expected: u64 = ranges.iter().map(|r| r.length).sum();

    let walk = walks(&peer, false, repeat, size, expected, &device.path)?;
    let blocks = walks(&peer, true, repeat, size, expected, &device.path)?;
    let bench = peer.bench(latency_loops)?;
    drop(peer);
    drop(dmabuf);

    let mut exports = Vec::with_capacity(repeat as usize);
    for _ in 0..repeat.max(1) {
        let (fd, ns) = timed(|| device.export(bar, &ranges))?;
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
        let dmabuf = (count > 0).then(|| device.export(bar, &page)).transpose()?;
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
            let ((), ns) = timed(|| device.set_memory(false))?;
            if dmabuf.is_some() {
                let span = peer.span()?;
                if span.invalidations != count {
                    return Err(Error::invalid(
                        &device.path,
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
                    &device.path,
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

    #[test]
    fn pairs_are_laid_out_as_two_u32s() {
        let word = pair(0x1111_2222, 0x3333_4444);
        let bytes = word.to_ne_bytes();
        assert_eq!(bytes[..4], 0x1111_2222u32.to_ne_bytes());
        assert_eq!(bytes[4..], 0x3333_4444u32.to_ne_bytes());
    }

    #[test]
    fn vfio_requests() {
        // <linux/vfio.h>: _IO(';', 100 + n).
        assert_eq!(vfio::GET_API_VERSION, 0x3b64);
        assert_eq!(vfio::GROUP_GET_DEVICE_FD, 0x3b6a);
        assert_eq!(vfio::DEVICE_GET_REGION_INFO, 0x3b6c);
        assert_eq!(vfio::DEVICE_FEATURE, 0x3b75);
        assert_eq!(size_of::<vfio::RegionInfo>(), 32);
    }
}
