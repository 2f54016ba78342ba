// SPDX-License-Identifier: GPL-2.0

//! `bench`: how long the test importer takes to walk one exported dma-buf,
//! stepping by `max_order`, page by page and by runs (the range form), as
//! the importer times its walks in the kernel; and the per-call latency of
//! `get_pfn` at pages spread over the buffer and of the range call, beside
//! the reservation lock's floor.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;

use serde::Serialize;

use crate::device;
use crate::error::Error;
use crate::export::Exported;
use crate::importer::{Importer, Step};
use crate::output;
use crate::size::human_size;

/// The most pages a buffer may have for the page-by-page walks, unless
/// `--max-pages` says otherwise: past it they take too long to repeat.
pub(crate) const MAX_PAGES_BY_PAGE: u64 = 1 << 20;

/// What `bench` prints, and `--json` shows as is.
#[derive(Serialize)]
struct Report {
    /// The exporter's character device.
    device: PathBuf,
    /// The function's PCI address.
    address: String,
    bar: u32,
    /// The buffer's size in bytes.
    size: u64,
    pages: u64,
    /// The slices of the BAR, in buffer order.
    ranges: Vec<crate::size::Range>,
    /// The BAR's first byte in physical memory, from sysfs; null when that
    /// cannot be read.
    bar_start: Option<u64>,
    /// Walks of each kind.
    repeat: u32,
    max_order: Stats,
    /// Null when skipped, as `page_by_page_skipped` says.
    page_by_page: Option<Stats>,
    /// Why the page-by-page walks were skipped.
    page_by_page_skipped: Option<String>,
    /// Median time page by page over median time by `max_order`.
    ratio: Option<f64>,
    /// The walks by runs, [`RUN_CAPACITY`] runs a call.
    runs: Stats,
    runs_capacity: u32,
    /// The runs one such walk returned, in buffer order.
    run_table: Vec<RunEntry>,
    /// One `dma_buf_get_pfn_unlocked()` call, in the kernel: the mean over
    /// the pages of `latency`.
    get_pfn_ns: f64,
    /// One uncontended lock/unlock pair of the buffer's reservation lock,
    /// measured the same way: the floor of a get_pfn call.
    lock_floor_ns: f64,
    /// get_pfn at pages spread over the buffer, each the mean over
    /// [`LATENCY_LOOPS`] back-to-back calls, beside the floor measured right
    /// after.
    latency: Vec<LatencyRow>,
    /// One range call over the whole buffer, for each capacity of
    /// [`RANGE_CAPACITIES`].
    range_latency: Vec<RangeRow>,
}

/// Runs a range call may return in the walks by runs: a table the size of a
/// small stack array.
pub(crate) const RUN_CAPACITY: u32 = 64;
/// The capacities the range call's latency is measured with.
pub(crate) const RANGE_CAPACITIES: [u32; 2] = [64, 4096];
/// Pages of the buffer at which get_pfn's latency is measured.
const LATENCY_PAGES: u64 = 8;

/// One run of a walk by runs.
#[derive(Debug, PartialEq, Serialize)]
struct RunEntry {
    pgoff: u64,
    pfn: u64,
    pages: u64,
}

/// get_pfn's latency at one page.
#[derive(Debug, PartialEq, Serialize)]
struct LatencyRow {
    pgoff: u64,
    get_pfn_ns: f64,
    lock_floor_ns: f64,
}

/// The range call's latency with room for `capacity` runs.
#[derive(Debug, PartialEq, Serialize)]
struct RangeRow {
    capacity: u32,
    /// Runs one call returned.
    runs: u32,
    /// One call, the mean over the loops.
    call_ns: f64,
    /// `call_ns` over `runs`.
    per_run_ns: f64,
    /// The reservation lock's floor, measured in the same call.
    lock_floor_ns: f64,
}

/// `count` pages spread evenly over a buffer of `pages` pages, the first and
/// the last among them, without repeats.
fn spread(pages: u64, count: u64) -> Vec<u64> {
    let mut out: Vec<u64> = (0..count)
        .map(|i| i * (pages - 1) / (count - 1).max(1))
        .collect();
    out.dedup();
    out
}

/// Calls timed for the per-call latency.
pub(crate) const LATENCY_LOOPS: u32 = 100_000;

/// The walks of one kind.
#[derive(Debug, PartialEq, Serialize)]
struct Stats {
    /// `dma_buf_get_pfn_unlocked()` calls of one walk.
    calls: u64,
    /// Entries of the table one walk builds.
    segments: u32,
    median_ns: u64,
    min_ns: u64,
    max_ns: u64,
}

impl Stats {
    /// Walks `repeat` times (at least once) by `step`, copying no table out.
    fn measure(importer: &Importer, step: Step, repeat: u32) -> Result<Self, Error> {
        let mut times = Vec::with_capacity(repeat as usize);
        let mut last = None;
        for _ in 0..repeat.max(1) {
            let walk = importer.walk_counted(step)?;
            times.push(walk.nanoseconds);
            last = Some(walk);
        }
        let last = last.expect("walked at least once");
        Ok(Self::new(last.calls, last.segments, &mut times))
    }

    /// `times` is not empty.
    fn new(calls: u64, segments: u32, times: &mut [u64]) -> Self {
        times.sort_unstable();
        Self {
            calls,
            segments,
            median_ns: median(times),
            min_ns: times[0],
            max_ns: times[times.len() - 1],
        }
    }
}

/// The median of sorted, non-empty `values`: the middle one, or the mean of
/// the two middle ones.
pub(crate) fn median(values: &[u64]) -> u64 {
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        let sum = u128::from(values[middle - 1]) + u128::from(values[middle]);
        u64::try_from(sum / 2).unwrap_or(u64::MAX)
    }
}

fn write_text(out: &mut dyn Write, report: &Report) -> io::Result<()> {
    writeln!(
        out,
        "{} BAR{}: dma-buf of {} ({} pages), {} walk{} of each kind",
        report.address,
        report.bar,
        human_size(report.size),
        report.pages,
        report.repeat,
        if report.repeat == 1 { "" } else { "s" }
    )?;
    writeln!(
        out,
        "{:<10} {:>10} {:>10} {:>14} {:>14} {:>14}",
        "walk", "calls", "segments", "median ns", "min ns", "max ns"
    )?;
    let mut row = |name: &str, stats: &Stats| {
        writeln!(
            out,
            "{name:<10} {:>10} {:>10} {:>14} {:>14} {:>14}",
            stats.calls, stats.segments, stats.median_ns, stats.min_ns, stats.max_ns
        )
    };
    row("max_order", &report.max_order)?;
    row("runs", &report.runs)?;
    if let Some(stats) = &report.page_by_page {
        row("pages", stats)?;
    }
    if let Some(reason) = &report.page_by_page_skipped {
        writeln!(out, "pages: skipped: {reason}")?;
    }
    if let Some(ratio) = report.ratio {
        writeln!(out, "pages/max_order: {ratio:.1}x the median time")?;
    }
    writeln!(
        out,
        "one get_pfn call: {:.0} ns; one reservation lock/unlock pair: {:.0} ns",
        report.get_pfn_ns, report.lock_floor_ns
    )?;
    for r in &report.range_latency {
        writeln!(
            out,
            "one range call, room for {}: {} run{}, {:.0} ns, {:.1} ns a run ({:.2}x the floor)",
            r.capacity,
            r.runs,
            if r.runs == 1 { "" } else { "s" },
            r.call_ns,
            r.per_run_ns,
            r.per_run_ns / r.lock_floor_ns.max(f64::MIN_POSITIVE)
        )?;
    }
    Ok(())
}

/// Imports `exported`, walks it `repeat` times by `max_order` and `repeat`
/// times page by page (when it has at most `max_pages` pages), and prints
/// the times.
pub(crate) fn run(
    exported: &Exported,
    repeat: u32,
    max_pages: u64,
    json: bool,
) -> Result<(), Error> {
    let importer = Importer::open()?;
    let size = importer.import(exported.dmabuf.as_fd())?;
    let pages = size / device::page_size();

    let max_order = Stats::measure(&importer, Step::MaxOrder, repeat)?;
    let (page_by_page, page_by_page_skipped) = if pages <= max_pages {
        (Some(Stats::measure(&importer, Step::Pages, repeat)?), None)
    } else {
        let reason = format!("{pages} pages, more than --max-pages {max_pages}");
        (None, Some(reason))
    };
    let runs = Stats::measure(&importer, Step::Runs(RUN_CAPACITY), repeat)?;
    let run_table = importer
        .walk_table(Step::Runs(RUN_CAPACITY), RUN_CAPACITY as usize)?
        .table
        .iter()
        .map(|entry| RunEntry {
            pgoff: entry.pgoff,
            pfn: entry.pfn,
            pages: entry.pages,
        })
        .collect();

    let loops = f64::from(LATENCY_LOOPS);
    let mut latency = Vec::new();
    for pgoff in spread(pages, LATENCY_PAGES) {
        let b = importer.bench(pgoff, LATENCY_LOOPS, 0)?;
        latency.push(LatencyRow {
            pgoff,
            get_pfn_ns: b.get_pfn_ns as f64 / loops,
            lock_floor_ns: b.lock_ns as f64 / loops,
        });
    }
    let rows = latency.len() as f64;
    let get_pfn_ns = latency.iter().map(|r| r.get_pfn_ns).sum::<f64>() / rows;
    let lock_floor_ns = latency.iter().map(|r| r.lock_floor_ns).sum::<f64>() / rows;
    // Fewer loops: a call returning thousands of runs is long under TCG.
    let range_loops = LATENCY_LOOPS / 10;
    let mut range_latency = Vec::new();
    for capacity in RANGE_CAPACITIES {
        let b = importer.bench(0, range_loops, capacity)?;
        let call_ns = b.phys_vec_ns as f64 / f64::from(range_loops);
        range_latency.push(RangeRow {
            capacity,
            runs: b.runs,
            call_ns,
            per_run_ns: call_ns / f64::from(b.runs.max(1)),
            lock_floor_ns: b.lock_ns as f64 / f64::from(range_loops),
        });
    }
    let ratio = page_by_page
        .as_ref()
        .filter(|_| max_order.median_ns != 0)
        .map(|stats| stats.median_ns as f64 / max_order.median_ns as f64);

    let report = Report {
        device: exported.path.clone(),
        address: exported.address.clone(),
        bar: exported.bar,
        size,
        pages,
        ranges: exported.ranges.clone(),
        bar_start: crate::sysfs::bar_start(&exported.address, exported.bar).ok(),
        repeat,
        max_order,
        page_by_page,
        page_by_page_skipped,
        ratio,
        runs,
        runs_capacity: RUN_CAPACITY,
        run_table,
        get_pfn_ns,
        lock_floor_ns,
        latency,
        range_latency,
    };
    output::print(json, &report, |out, report| write_text(out, report))
}

/// Times of repeated system calls.
#[derive(Serialize)]
pub(crate) struct Timing {
    pub(crate) median_ns: u64,
    pub(crate) min_ns: u64,
    pub(crate) max_ns: u64,
}

impl Timing {
    /// `times` is not empty.
    pub(crate) fn new(times: &mut [u64]) -> Self {
        times.sort_unstable();
        Self {
            median_ns: median(times),
            min_ns: times[0],
            max_ns: times[times.len() - 1],
        }
    }
}

/// Time of one system call, measured around it from user space.
pub(crate) fn timed<T>(call: impl FnOnce() -> Result<T, Error>) -> Result<(T, u64), Error> {
    let start = std::time::Instant::now();
    let value = call()?;
    Ok((
        value,
        u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX),
    ))
}

/// One row of `bench-revoke`.
#[derive(Serialize)]
struct RevokeRow {
    attachments: usize,
    /// REVOKE, which invalidates every attachment and waits for fences.
    revoke: Timing,
    /// `revoke.median_ns` over `attachments`.
    per_attachment_ns: u64,
}

/// Raises the soft limit on open files to the hard one: each attachment is
/// an open importer file.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// `bench-revoke`: for each count, attaches that many importers to one
/// buffer and times REVOKE (from user space, around the ioctl), `repeat`
/// times, restoring in between.
pub(crate) fn revoke(
    exported: &Exported,
    counts: &[usize],
    repeat: u32,
    json: bool,
) -> Result<(), Error> {
    raise_file_limit();
    let device = crate::device::Device::open(&exported.path)?;
    let mut rows = Vec::new();
    for &count in counts {
        let mut importers = Vec::with_capacity(count);
        for _ in 0..count {
            let importer = Importer::open()?;
            importer.import(exported.dmabuf.as_fd())?;
            importers.push(importer);
        }
        let mut times = Vec::with_capacity(repeat as usize);
        for _ in 0..repeat.max(1) {
            let ((), ns) = timed(|| device.revoke(exported.bar))?;
            device.restore(exported.bar)?;
            times.push(ns);
        }
        let revoke = Timing::new(&mut times);
        let per_attachment_ns = revoke.median_ns / count.max(1) as u64;
        rows.push(RevokeRow {
            attachments: count,
            revoke,
            per_attachment_ns,
        });
    }
    output::print(json, &rows, |out, rows| {
        writeln!(
            out,
            "{:>12} {:>14} {:>14} {:>14}",
            "attachments", "median ns", "min ns", "ns/attachment"
        )?;
        for r in rows {
            writeln!(
                out,
                "{:>12} {:>14} {:>14} {:>14}",
                r.attachments, r.revoke.median_ns, r.revoke.min_ns, r.per_attachment_ns
            )?;
        }
        Ok(())
    })
}

/// `bench-export`: times EXPORT of the ranges (and the close of the new
/// dma-buf, separately), `repeat` times.
pub(crate) fn export(
    device: &std::path::Path,
    bar: u32,
    ranges: &[crate::size::RangeArg],
    repeat: u32,
    json: bool,
) -> Result<(), Error> {
    let first = crate::export::export(device, bar, ranges)?;
    let handle = crate::device::Device::open(&first.path)?;
    let mut exports = Vec::new();
    let mut closes = Vec::new();
    for _ in 0..repeat.max(1) {
        let (fd, ns) = timed(|| handle.export(bar, &first.ranges))?;
        exports.push(ns);
        let ((), ns) = timed(|| {
            drop(fd);
            Ok(())
        })?;
        closes.push(ns);
    }
    #[derive(Serialize)]
    struct ExportReport {
        ranges: usize,
        export: Timing,
        close: Timing,
    }
    let report = ExportReport {
        ranges: first.ranges.len(),
        export: Timing::new(&mut exports),
        close: Timing::new(&mut closes),
    };
    output::print(json, &report, |out, r| {
        writeln!(
            out,
            "EXPORT of {} range(s): median {} ns (min {}); close: median {} ns",
            r.ranges, r.export.median_ns, r.export.min_ns, r.close.median_ns
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&[5]), 5);
        assert_eq!(median(&[1, 2, 9]), 2);
        assert_eq!(median(&[1, 2, 4, 9]), 3);
        assert_eq!(median(&[u64::MAX, u64::MAX]), u64::MAX);
        let stats = Stats::new(8, 4, &mut [30, 10, 20, 40]);
        assert_eq!(
            stats,
            Stats {
                calls: 8,
                segments: 4,
                median_ns: 25,
                min_ns: 10,
                max_ns: 40
            }
        );
    }

    fn report(page_by_page: Option<Stats>) -> Report {
        let skipped = page_by_page.is_none();
        Report {
            device: PathBuf::from("/dev/vfio-dmabuf/0000:00:04.0"),
            address: "0000:00:04.0".to_owned(),
            bar: 2,
            size: 1 << 30,
            pages: 1 << 18,
            ranges: vec![crate::size::Range {
                offset: 0,
                length: 1 << 30,
            }],
            bar_start: Some(0x8_0000_0000),
            repeat: 3,
            max_order: Stats::new(1, 1, &mut [100, 300, 200]),
            ratio: page_by_page.as_ref().map(|p| p.median_ns as f64 / 200.0),
            runs: Stats::new(1, 1, &mut [50, 60, 70]),
            runs_capacity: RUN_CAPACITY,
            run_table: vec![RunEntry {
                pgoff: 0,
                pfn: 0x80_0000,
                pages: 1 << 18,
            }],
            get_pfn_ns: 100.0,
            lock_floor_ns: 60.0,
            latency: vec![LatencyRow {
                pgoff: 0,
                get_pfn_ns: 100.0,
                lock_floor_ns: 60.0,
            }],
            range_latency: vec![RangeRow {
                capacity: 64,
                runs: 1,
                call_ns: 120.0,
                per_run_ns: 120.0,
                lock_floor_ns: 60.0,
            }],
            page_by_page,
            page_by_page_skipped: skipped
                .then(|| "4194304 pages, more than 1048576 (1 << 20)".into()),
        }
    }

    #[test]
    fn text() {
        let mut text = Vec::new();
        let pages = Stats::new(1 << 18, 1 << 18, &mut [500_000, 400_000, 600_000]);
        write_text(&mut text, &report(Some(pages))).expect("writes to a Vec");
        let expected = "\
0000:00:04.0 BAR2: dma-buf of 1 GiB (262144 pages), 3 walks of each kind
walk            calls   segments      median ns         min ns         max ns
max_order           1          1            200            100            300
runs                1          1             60             50             70
pages          262144     262144         500000         400000         600000
pages/max_order: 2500.0x the median time
one get_pfn call: 100 ns; one reservation lock/unlock pair: 60 ns
one range call, room for 64: 1 run, 120 ns, 120.0 ns a run (2.00x the floor)
";
        assert_eq!(String::from_utf8(text).expect("UTF-8"), expected);

        let mut text = Vec::new();
        write_text(&mut text, &report(None)).expect("writes to a Vec");
        let text = String::from_utf8(text).expect("UTF-8");
        assert!(text.contains(
            "max_order           1          1            200            100            300
runs                1          1             60             50             70
pages: skipped: 4194304 pages, more than 1048576 (1 << 20)
"
        ));
    }

    #[test]
    fn spread_pages() {
        assert_eq!(spread(1, 8), vec![0]);
        assert_eq!(spread(4, 8), vec![0, 1, 2, 3]);
        assert_eq!(spread(701, 8), vec![0, 100, 200, 300, 400, 500, 600, 700]);
    }

    #[test]
    fn json() {
        let json = serde_json::to_value(report(None)).expect("serializes");
        assert_eq!(json["max_order"]["median_ns"], 200);
        assert_eq!(json["max_order"]["calls"], 1);
        assert!(json["page_by_page"].is_null());
        assert!(json["ratio"].is_null());
        assert!(json["page_by_page_skipped"]
            .as_str()
            .expect("a reason")
            .contains("1 << 20"));
    }
}
