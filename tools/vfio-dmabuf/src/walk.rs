// SPDX-License-Identifier: GPL-2.0

//! `export` and `walk`: import an exported dma-buf into the test importer,
//! walk it, and print the importer's table of page frames beside the
//! physical addresses sysfs gives for the BAR, so that each segment can be
//! checked against the range it should come from.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::device;
use crate::error::Error;
use crate::export::Exported;
use crate::importer::{Importer, Step};
use crate::output;
use crate::size::{human_size, Range};
use crate::sysfs;
use crate::uapi;

/// The most table entries asked for at first when walking by `max_order`;
/// a larger table is fetched again at its size.
const FIRST_ROOM: u64 = 4096;

/// What `export` and `walk` print, and `--json` shows as is.
#[derive(Serialize)]
struct Report {
    /// The exporter's character device.
    device: PathBuf,
    /// The function's PCI address.
    address: String,
    bar: u32,
    /// The BAR's size in bytes.
    bar_size: u64,
    /// Where the BAR's start comes from.
    resource: PathBuf,
    /// The BAR's first byte in physical memory, from `resource`; null when
    /// that cannot be read.
    bar_start: Option<u64>,
    page_size: u64,
    /// The slices of the BAR, in buffer order.
    ranges: Vec<Range>,
    /// The buffer's size in bytes, as the importer reports it.
    size: u64,
    walk: WalkReport,
}

#[derive(Serialize)]
struct WalkReport {
    /// `max_order`, `pages` or `runs`.
    step: &'static str,
    /// The kernel call the walk made.
    call: &'static str,
    /// `dma_buf_get_pfn_unlocked()` or `dma_buf_get_phys_vec_unlocked()`
    /// calls the walk made.
    calls: u64,
    /// Time the walk took in the kernel.
    nanoseconds: u64,
    /// Segments whose BAR offset is not the one their range gives.
    mismatches: usize,
    table: Vec<Segment>,
}

/// One entry of the importer's table, with the addresses it stands for.
#[derive(Debug, PartialEq, Eq, Serialize)]
struct Segment {
    /// First buffer page of the block.
    pgoff: u64,
    /// Page frame behind `pgoff`.
    pfn: u64,
    /// A block is `2^order` pages; 0 for a run.
    order: u32,
    /// Bytes in the block or run.
    bytes: u64,
    /// Physical address of the block: `pfn` times the page size.
    phys: u64,
    /// `phys` from the BAR's start; null when the start is unknown or
    /// `phys` lies outside the BAR.
    bar_offset: Option<u64>,
    /// The BAR offset of page `pgoff`, from the ranges of the export.
    expected_bar_offset: Option<u64>,
}

impl Segment {
    fn new(
        entry: &uapi::vfio_dmabuf_imp_segment,
        page_size: u64,
        bar: Option<(u64, u64)>,
        layout: &Layout,
    ) -> Self {
        let phys = entry.pfn.saturating_mul(page_size);
        let bar_offset =
            bar.and_then(|(start, size)| phys.checked_sub(start).filter(|offset| *offset < size));
        Self {
            pgoff: entry.pgoff,
            pfn: entry.pfn,
            order: entry.order,
            bytes: entry.pages.saturating_mul(page_size),
            phys,
            bar_offset,
            expected_bar_offset: entry
                .pgoff
                .checked_mul(page_size)
                .and_then(|byte| layout.bar_offset(byte)),
        }
    }

    /// Whether the page frame is the one the ranges give; `None` when that
    /// cannot be told.
    fn matches(&self) -> Option<bool> {
        Some(self.bar_offset? == self.expected_bar_offset?)
    }
}

/// The buffer as the concatenation of its ranges: where each starts in the
/// buffer.
struct Layout {
    ranges: Vec<Range>,
    starts: Vec<u64>,
}

impl Layout {
    fn new(ranges: &[Range]) -> Self {
        let mut starts = Vec::with_capacity(ranges.len());
        let mut start = 0u64;
        for range in ranges {
            starts.push(start);
            start = start.saturating_add(range.length);
        }
        Self {
            ranges: ranges.to_vec(),
            starts,
        }
    }

    /// The BAR offset of byte `byte` of the buffer.
    fn bar_offset(&self, byte: u64) -> Option<u64> {
        let index = self.starts.partition_point(|start| *start <= byte);
        let range = self.ranges.get(index.checked_sub(1)?)?;
        let within = byte - self.starts[index - 1];
        (within < range.length).then(|| range.offset + within)
    }
}

fn write_text(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    write!(
        out,
        "{} BAR{}: {}",
        report.address,
        report.bar,
        human_size(report.bar_size)
    )?;
    match report.bar_start {
        Some(start) => writeln!(
            out,
            " at physical {start:#x}-{:#x} ({})",
            start.saturating_add(report.bar_size.saturating_sub(1)),
            report.resource.display()
        )?,
        None => writeln!(out, ", physical address unknown")?,
    }
    let ranges: Vec<String> = report.ranges.iter().map(Range::to_string).collect();
    writeln!(
        out,
        "dma-buf: {} ({} pages of {}) from {} range{}: {}",
        human_size(report.size),
        report.size / report.page_size,
        human_size(report.page_size),
        report.ranges.len(),
        if report.ranges.len() == 1 { "" } else { "s" },
        ranges.join(" ")
    )?;
    let walk = &report.walk;
    writeln!(
        out,
        "walk by {}: {} segment{}, {} {} call{}, {} ns",
        walk.step,
        walk.table.len(),
        if walk.table.len() == 1 { "" } else { "s" },
        walk.calls,
        walk.call,
        if walk.calls == 1 { "" } else { "s" },
        walk.nanoseconds
    )?;
    writeln!(
        out,
        "{:>10} {:>14} {:>5} {:>12} {:>18}  BAR offset",
        "pgoff", "pfn", "order", "bytes", "physical"
    )?;
    for segment in &walk.table {
        let bar_offset = segment
            .bar_offset
            .map_or_else(|| "-".to_owned(), |offset| format!("{offset:#x}"));
        write!(
            out,
            "{:>10} {:>14} {:>5} {:>12} {:>18}  {bar_offset}",
            segment.pgoff,
            format!("{:#x}", segment.pfn),
            segment.order,
            format!("{:#x}", segment.bytes),
            format!("{:#x}", segment.phys),
        )?;
        if segment.matches() == Some(false) {
            match segment.expected_bar_offset {
                Some(expected) => write!(out, "  MISMATCH: expected {expected:#x}")?,
                None => write!(out, "  MISMATCH: past the ranges")?,
            }
        }
        writeln!(out)?;
    }
    Ok(())
}

/// Imports `exported` into a new file of the importer, walks it by `step`
/// and prints the table. Fails when a segment's page frame is not the one
/// its range gives.
pub(crate) fn run(exported: &Exported, step: Step, json: bool) -> Result<ExitCode, Error> {
    let importer = Importer::open()?;
    let size = importer.import(exported.dmabuf.as_fd())?;
    let page_size = device::page_size();
    let pages = size / page_size;
    let expected = match step {
        Step::Pages => pages,
        Step::MaxOrder | Step::Runs(_) => pages.min(FIRST_ROOM),
    };
    let walk = importer.walk_table(step, usize::try_from(expected).unwrap_or(usize::MAX))?;

    let resource = sysfs::resource_path(&exported.address);
    let bar_start = match sysfs::bar_start(&exported.address, exported.bar) {
        Ok(start) => Some(start),
        Err(e) => {
            eprintln!("vfio-dmabuf: {e}: physical addresses not checked");
            None
        }
    };
    let layout = Layout::new(&exported.ranges);
    let bar = bar_start.map(|start| (start, exported.bar_size));
    let table: Vec<Segment> = walk
        .table
        .iter()
        .map(|entry| Segment::new(entry, page_size, bar, &layout))
        .collect();
    let mismatches = table
        .iter()
        .filter(|segment| segment.matches() == Some(false))
        .count();
    let report = Report {
        device: exported.path.clone(),
        address: exported.address.clone(),
        bar: exported.bar,
        bar_size: exported.bar_size,
        resource,
        bar_start,
        page_size,
        ranges: exported.ranges.clone(),
        size,
        walk: WalkReport {
            step: step.name(),
            call: step.call(),
            calls: walk.calls,
            nanoseconds: walk.nanoseconds,
            mismatches,
            table,
        },
    };
    output::print(json, &report, |out, report| write_text(out, report))?;
    if mismatches > 0 {
        eprintln!(
            "vfio-dmabuf: {}: BAR{}: {mismatches} segment{} not where the ranges put {}",
            exported.path.display(),
            exported.bar,
            if mismatches == 1 { " is" } else { "s are" },
            if mismatches == 1 { "it" } else { "them" },
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    fn range(offset: u64, length: u64) -> Range {
        Range { offset, length }
    }

    fn entry(pgoff: u64, pfn: u64, order: u32) -> uapi::vfio_dmabuf_imp_segment {
        uapi::vfio_dmabuf_imp_segment {
            pgoff,
            pfn,
            pages: 1 << order,
            order,
            __reserved: 0,
        }
    }

    #[test]
    fn layout_maps_buffer_bytes_to_the_bar() {
        let layout = Layout::new(&[range(0x2000, 0x2000), range(0, 0x1000)]);
        assert_eq!(layout.bar_offset(0), Some(0x2000));
        assert_eq!(layout.bar_offset(0x1fff), Some(0x3fff));
        assert_eq!(layout.bar_offset(0x2000), Some(0));
        assert_eq!(layout.bar_offset(0x3000), None);
        assert_eq!(Layout::new(&[]).bar_offset(0), None);
    }

    #[test]
    fn segments_beside_sysfs() {
        let layout = Layout::new(&[range(0x2000, 0x2000), range(0, 0x1000)]);
        let bar = Some((0xfea0_0000, 0x10_0000));
        let first = Segment::new(&entry(0, 0xfea02, 1), PAGE, bar, &layout);
        assert_eq!(
            first,
            Segment {
                pgoff: 0,
                pfn: 0xfea02,
                order: 1,
                bytes: 0x2000,
                phys: 0xfea0_2000,
                bar_offset: Some(0x2000),
                expected_bar_offset: Some(0x2000),
            }
        );
        assert_eq!(first.matches(), Some(true));
        let wrong = Segment::new(&entry(2, 0xfea01, 0), PAGE, bar, &layout);
        assert_eq!(wrong.bar_offset, Some(0x1000));
        assert_eq!(wrong.expected_bar_offset, Some(0));
        assert_eq!(wrong.matches(), Some(false));
        let outside = Segment::new(&entry(2, 0x1000, 0), PAGE, bar, &layout);
        assert_eq!(outside.bar_offset, None);
        assert_eq!(outside.matches(), None);
        let unknown = Segment::new(&entry(2, 0xfea00, 0), PAGE, None, &layout);
        assert_eq!(unknown.matches(), None);
        let huge = Segment::new(&entry(0, 0, 63), PAGE, bar, &layout);
        assert_eq!(huge.bytes, u64::MAX);
    }

    fn report() -> Report {
        let ranges = vec![range(0x2000, 0x2000), range(0, 0x1000)];
        let layout = Layout::new(&ranges);
        let bar = Some((0xfea0_0000, 0x10_0000));
        let table = [entry(0, 0xfea02, 1), entry(2, 0xfea01, 0)]
            .iter()
            .map(|e| Segment::new(e, PAGE, bar, &layout))
            .collect();
        Report {
            device: PathBuf::from("/dev/vfio-dmabuf/0000:00:03.0"),
            address: "0000:00:03.0".to_owned(),
            bar: 0,
            bar_size: 0x10_0000,
            resource: sysfs::resource_path("0000:00:03.0"),
            bar_start: Some(0xfea0_0000),
            page_size: PAGE,
            ranges,
            size: 0x3000,
            walk: WalkReport {
                step: Step::MaxOrder.name(),
                call: Step::MaxOrder.call(),
                calls: 2,
                nanoseconds: 1234,
                mismatches: 1,
                table,
            },
        }
    }

    #[test]
    fn text() {
        let mut text = Vec::new();
        write_text(&mut text, &report()).expect("writes to a Vec");
        let text = String::from_utf8(text).expect("UTF-8");
        let expected = "\
0000:00:03.0 BAR0: 1 MiB at physical 0xfea00000-0xfeafffff (/sys/bus/pci/devices/0000:00:03.0/resource)
dma-buf: 12 KiB (3 pages of 4 KiB) from 2 ranges: 0x2000:0x2000 0x0:0x1000
walk by max_order: 2 segments, 2 dma_buf_get_pfn_unlocked() calls, 1234 ns
     pgoff            pfn order        bytes           physical  BAR offset
         0        0xfea02     1       0x2000         0xfea02000  0x2000
         2        0xfea01     0       0x1000         0xfea01000  0x1000  MISMATCH: expected 0x0
";
        assert_eq!(text, expected);
    }

    #[test]
    fn json() {
        let json = serde_json::to_value(report()).expect("serializes");
        assert_eq!(json["bar_start"], 0xfea0_0000u64);
        assert_eq!(json["ranges"][0]["offset"], 0x2000);
        assert_eq!(json["ranges"][1]["length"], 0x1000);
        assert_eq!(json["walk"]["step"], "max_order");
        assert_eq!(json["walk"]["mismatches"], 1);
        let first = &json["walk"]["table"][0];
        assert_eq!(first["pgoff"], 0);
        assert_eq!(first["pfn"], 0xfea02);
        assert_eq!(first["order"], 1);
        assert_eq!(first["bytes"], 0x2000);
        assert_eq!(first["phys"], 0xfea0_2000u64);
        assert_eq!(first["bar_offset"], 0x2000);
        assert_eq!(first["expected_bar_offset"], 0x2000);
    }
}
