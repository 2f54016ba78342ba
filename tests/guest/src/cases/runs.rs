// SPDX-License-Identifier: GPL-2.0

//! Walks by runs (`VFIO_DMABUF_IMP_WALK_RUNS`, `dma_buf_get_phys_vec()`):
//! the table is the buffer's maximal physically contiguous runs, computed
//! here from the raw request alone (the BAR's start in sysfs, each range's
//! offset and length: a range whose first frame follows the previous run's
//! last joins it), learned in ceil(runs / capacity) calls; the runs map the
//! same frames as a walk by `max_order`; a revoked buffer refuses the walk;
//! and a user mapping faulted in from a run table reads the device and uses
//! PMD entries where the run allows.

use vfio_dmabuf_uapi::mapping::{ivshmem_pattern, PMD_SIZE};

use super::export::export_and_import;
use super::{all_of, case, ensure, must, refused, Case, Context, Failure, Outcome, Which};
use crate::expect::{ranges, PAGE};
use crate::importer::{Importer, SegmentWalk};
use crate::pci::Resource;
use crate::uapi;

/// ivshmem's shared memory BAR.
const IVSHMEM_BAR: u32 = 2;
/// pci-testdev's memory BAR.
const TESTDEV_BAR: u32 = 2;
/// The importer's largest capacity (`VFIO_DMABUF_IMP_MAX_CAPACITY`).
const MAX_CAPACITY: u32 = uapi::VFIO_DMABUF_IMP_MAX_CAPACITY;

/// One run: `pages` buffer pages from `pgoff` on, backed by the frames from
/// `pfn` on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) pgoff: u64,
    pub(super) pfn: u64,
    pub(super) pages: u64,
}

/// The maximal physically contiguous runs of the buffer that `ranges`
/// (byte offset and length in the BAR) make of a BAR whose first byte is at
/// physical address `start`: the ranges in order, each joining the run
/// before it when its first frame is the one after that run's last.
pub(super) fn expected_runs(start: u64, ranges: &[(u64, u64)]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut pgoff = 0;
    for &(offset, length) in ranges {
        let pfn = (start + offset) / PAGE;
        let pages = length / PAGE;
        match runs.last_mut() {
            Some(last) if last.pfn + last.pages == pfn => last.pages += pages,
            _ => runs.push(Run { pgoff, pfn, pages }),
        }
        pgoff += pages;
    }
    runs
}

/// The frame behind each buffer page of `ranges` of a BAR at `start`.
pub(super) fn expected_frames(start: u64, ranges: &[(u64, u64)]) -> Vec<u64> {
    ranges
        .iter()
        .flat_map(|&(offset, length)| {
            let first = (start + offset) / PAGE;
            first..first + length / PAGE
        })
        .collect()
}

/// The byte offset in the BAR behind byte `at` of the buffer of `ranges`.
pub(super) fn bar_offset(ranges: &[(u64, u64)], at: u64) -> Option<u64> {
    let mut start = 0;
    for &(offset, length) in ranges {
        if at < start + length {
            return Some(offset + (at - start));
        }
        start += length;
    }
    None
}

/// A walk's table as runs; the entries of a walk by runs have order 0 and
/// a zero `__reserved`.
pub(super) fn runs_of(walk: &SegmentWalk) -> Result<Vec<Run>, String> {
    if walk.entries as usize != walk.segments.len() {
        return Err(format!(
            "WALK reports {} entries, {} written",
            walk.entries,
            walk.segments.len()
        ));
    }
    walk.segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if s.order != 0 || s.__reserved != 0 {
                return Err(format!("run {i} {s:x?}: order or __reserved not 0"));
            }
            Ok(Run {
                pgoff: s.pgoff,
                pfn: s.pfn,
                pages: s.pages,
            })
        })
        .collect()
}

/// Compares runs with the expected ones, naming the first difference.
pub(super) fn compare_runs(got: &[Run], expected: &[Run]) -> Result<(), String> {
    if let Some(i) = (0..got.len().min(expected.len())).find(|&i| got[i] != expected[i]) {
        return Err(format!(
            "run {i}: {:x?}, expected {:x?}",
            got[i], expected[i]
        ));
    }
    if got.len() != expected.len() {
        return Err(format!("{} runs, expected {}", got.len(), expected.len()));
    }
    Ok(())
}

/// The frame behind each buffer page of a table whose entries tile the
/// buffer in order (`pgoff`, `pfn`, `pages` of each entry, whatever its
/// kind), or what breaks the tiling.
pub(super) fn frames_of(walk: &SegmentWalk) -> Result<Vec<u64>, String> {
    let mut frames = Vec::new();
    for (i, s) in walk.segments.iter().enumerate() {
        if s.pgoff != frames.len() as u64 {
            return Err(format!(
                "entry {i} {s:x?} starts at page {:#x}, expected {:#x}",
                s.pgoff,
                frames.len()
            ));
        }
        if s.pages == 0 || s.pages > 1 << 26 {
            return Err(format!("entry {i} {s:x?}: {} pages", s.pages));
        }
        frames.extend(s.pfn..s.pfn + s.pages);
    }
    Ok(frames)
}

/// Compares per-page frames, naming the first difference.
pub(super) fn compare_frames(what: &str, got: &[u64], expected: &[u64]) -> Result<(), String> {
    if let Some(p) = (0..got.len().min(expected.len())).find(|&p| got[p] != expected[p]) {
        return Err(format!(
            "{what}: page {p:#x} maps frame {:#x}, expected {:#x}",
            got[p], expected[p]
        ));
    }
    if got.len() != expected.len() {
        return Err(format!(
            "{what}: {} pages, expected {}",
            got.len(),
            expected.len()
        ));
    }
    Ok(())
}

/// A walk by runs of `importer`'s buffer with `capacity` runs a call,
/// checked against `expected`: the same runs, in ceil(runs / capacity)
/// calls, and kept as the importer's table.
pub(super) fn check_runs(
    importer: &Importer,
    capacity: u32,
    expected: &[Run],
) -> Result<SegmentWalk, Failure> {
    let walk = must(
        &format!("WALK by runs, capacity {capacity}"),
        importer.walk_runs(capacity, expected.len() + 16),
    )?;
    compare_runs(&runs_of(&walk)?, expected)?;
    let calls = (expected.len() as u64).div_ceil(u64::from(capacity));
    ensure!(
        walk.calls == calls,
        "{} calls for {} runs with capacity {capacity}, expected {calls}",
        walk.calls,
        expected.len()
    );
    let counters = must("COUNTERS", importer.counters())?;
    ensure!(
        counters.table_segments == expected.len() as u64,
        "the importer keeps {} entries after the walk, expected {}",
        counters.table_segments,
        expected.len()
    );
    Ok(walk)
}

/// The slice of ivshmem's BAR2 whose runs the cases check, with the runs it
/// must make, counted by hand: 11 ranges, 8 runs.
fn slice() -> Vec<(u64, u64)> {
    vec![
        // Run 0: BAR pages 5..8, from two ranges that follow on.
        (5 * PAGE, PAGE),
        (6 * PAGE, 2 * PAGE),
        // Run 1: 4 MiB less a page, from BAR page 513.
        (0x20_1000, 0x3f_f000),
        // Runs 2 and 3: overlapping ranges (the second starts inside the
        // first) do not merge.
        (0x70_0000, 4 * PAGE),
        (0x70_1000, 2 * PAGE),
        // Runs 4 and 5: reordered neighbours do not merge either.
        (0x3000, PAGE),
        (0x2000, PAGE),
        // Run 6: the last page of the 1 GiB BAR, then its first pages, which
        // do not follow it.
        (0x3fff_f000, PAGE),
        // Run 7: three ranges that follow on, from page 0.
        (0, PAGE),
        (PAGE, PAGE),
        (2 * PAGE, 3 * PAGE),
    ]
}

/// Runs [`slice`] makes, as counted in its comments.
const SLICE_RUNS: usize = 8;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("runs: edu BAR0 whole is 1 run in 1 call", |ctx| {
            whole_bar(ctx, Which::Edu, 0)
        }),
        case("runs: ivshmem BAR2 whole (1 GiB) is 1 run in 1 call", |ctx| {
            whole_bar(ctx, Which::Ivshmem, IVSHMEM_BAR)
        }),
        case("runs: pci-testdev BAR2 whole is 1 run in 1 call", |ctx| {
            whole_bar(ctx, Which::Testdev, TESTDEV_BAR)
        }),
        case(
            "runs: an ivshmem slice at unaligned offsets is its maximal runs: ranges that follow on merge, overlapping and reordered ones do not",
            slice_runs,
        ),
        case(
            "runs: capacity 1 makes one call per run, and capacities between give ceil(runs / capacity)",
            slice_capacities,
        ),
        case(
            "runs: 256 one-page ranges at every other page are 256 runs: 4 calls with capacity 64",
            many_runs,
        ),
        case(
            "runs: a run walk maps the same frames as a max_order walk, page for page",
            same_frames,
        ),
        case(
            "runs: WALK_RUNS with capacity 0 or 4097 or with WALK_PAGES, or a capacity without WALK_RUNS, fails with EINVAL",
            refusals,
        ),
        case(
            "runs: a run walk fails with ENODEV while ivshmem BAR2 is revoked, and works after RESTORE",
            revoked,
        ),
        case(
            "runs: a mapping faulted in from a run table reads the ivshmem pattern, with a PMD entry for the run's aligned 2 MiB block",
            mapping,
        ),
    ]
}

fn whole_bar(ctx: &mut Context, which: Which, bar_index: u32) -> Outcome {
    let bar = *ctx.device(which)?.bar(bar_index);
    let pairs = [(0, bar.size())];
    let (_buffer, _dmabuf, importer) = export_and_import(ctx, which, bar_index, &ranges(&pairs))?;
    let expected = expected_runs(bar.start, &pairs);
    ensure!(
        expected
            == [Run {
                pgoff: 0,
                pfn: bar.start / PAGE,
                pages: bar.size() / PAGE
            }],
        "the expectation is not one run: {expected:x?}"
    );
    // Capacity 1 and the largest: one call either way.
    for capacity in [1, MAX_CAPACITY] {
        let walk = check_runs(&importer, capacity, &expected)?;
        ensure!(walk.calls == 1, "{} calls", walk.calls);
    }
    ctx.note(format!(
        "{} BAR{bar_index}: 1 run of {:#x} pages from frame {:#x}",
        which.name(),
        bar.size() / PAGE,
        bar.start / PAGE
    ));
    Ok(())
}

/// Exports `pairs` of ivshmem's BAR2 and imports the buffer.
fn ivshmem_import(
    ctx: &Context,
    pairs: &[(u64, u64)],
) -> Result<(Resource, std::os::fd::OwnedFd, Importer), Failure> {
    let bar = *ctx.device(Which::Ivshmem)?.bar(IVSHMEM_BAR);
    let (_buffer, dmabuf, importer) =
        export_and_import(ctx, Which::Ivshmem, IVSHMEM_BAR, &ranges(pairs))?;
    Ok((bar, dmabuf, importer))
}

fn slice_runs(ctx: &mut Context) -> Outcome {
    let pairs = slice();
    let (bar, _dmabuf, importer) = ivshmem_import(ctx, &pairs)?;
    ensure!(
        bar.start % (1 << 30) == 0,
        "ivshmem's BAR2 is at {:#x}, not 1 GiB aligned: the slice's runs assume it",
        bar.start
    );
    let expected = expected_runs(bar.start, &pairs);
    ensure!(
        expected.len() == SLICE_RUNS,
        "the reference makes {} runs of the slice, counted {SLICE_RUNS}: {expected:x?}",
        expected.len()
    );
    let walk = check_runs(&importer, MAX_CAPACITY, &expected)?;
    ctx.note(format!(
        "{} ranges, {} runs in {} call(s), {} ns",
        pairs.len(),
        walk.entries,
        walk.calls,
        walk.nanoseconds
    ));
    Ok(())
}

fn slice_capacities(ctx: &mut Context) -> Outcome {
    let pairs = slice();
    let (bar, _dmabuf, importer) = ivshmem_import(ctx, &pairs)?;
    let expected = expected_runs(bar.start, &pairs);
    let capacities = [1, 2, 3, SLICE_RUNS as u32 - 1, SLICE_RUNS as u32, 64];
    all_of(
        capacities
            .iter()
            .map(|&capacity| check_runs(&importer, capacity, &expected).map(drop)),
    )
}

fn many_runs(ctx: &mut Context) -> Outcome {
    let count = u64::from(uapi::VFIO_DMABUF_MAX_RANGES);
    let pairs: Vec<(u64, u64)> = (0..count).map(|i| (2 * i * PAGE, PAGE)).collect();
    let (bar, _dmabuf, importer) = ivshmem_import(ctx, &pairs)?;
    let expected = expected_runs(bar.start, &pairs);
    ensure!(
        expected.len() as u64 == count,
        "the reference makes {} runs",
        expected.len()
    );
    let mut notes = Vec::new();
    let checks = [64, 1, 100, 255, 256, MAX_CAPACITY].map(|capacity| {
        let walk = check_runs(&importer, capacity, &expected)?;
        notes.push(format!("capacity {capacity}: {} calls", walk.calls));
        Ok(())
    });
    ctx.note(notes.join(", "));
    all_of(checks)
}

fn same_frames(ctx: &mut Context) -> Outcome {
    let pairs = slice();
    let (bar, _dmabuf, importer) = ivshmem_import(ctx, &pairs)?;
    let expected = expected_frames(bar.start, &pairs);
    let room = expected.len() + 16;
    let blocks = must("WALK by max_order", importer.walk_segments(0, 0, room))?;
    let by_blocks = frames_of(&blocks)?;
    let runs = must("WALK by runs", importer.walk_runs(MAX_CAPACITY, room))?;
    let by_runs = frames_of(&runs)?;
    compare_frames("runs against blocks", &by_runs, &by_blocks)?;
    compare_frames("runs against the ranges", &by_runs, &expected)?;
    ctx.note(format!(
        "{} pages: {} blocks, {} runs",
        expected.len(),
        blocks.entries,
        runs.entries
    ));
    Ok(())
}

fn refusals(ctx: &mut Context) -> Outcome {
    let (_bar, _dmabuf, importer) = ivshmem_import(ctx, &[(0, 4 * PAGE)])?;
    let runs = uapi::VFIO_DMABUF_IMP_WALK_RUNS;
    let pages = uapi::VFIO_DMABUF_IMP_WALK_PAGES;
    all_of([
        refused(
            "WALK_RUNS with capacity 0",
            importer.walk_segments(runs, 0, 16),
            libc::EINVAL,
        ),
        refused(
            "WALK_RUNS with capacity 4097",
            importer.walk_segments(runs, MAX_CAPACITY + 1, 16),
            libc::EINVAL,
        ),
        refused(
            "WALK_RUNS with capacity 2^32-1",
            importer.walk_segments(runs, u32::MAX, 16),
            libc::EINVAL,
        ),
        refused(
            "WALK_RUNS | WALK_PAGES",
            importer.walk_segments(runs | pages, 1, 16),
            libc::EINVAL,
        ),
        refused(
            "a walk by max_order with capacity 1",
            importer.walk_segments(0, 1, 16),
            libc::EINVAL,
        ),
        refused(
            "WALK_PAGES with capacity 1",
            importer.walk_segments(pages, 1, 16),
            libc::EINVAL,
        ),
    ])
}

fn revoked(ctx: &mut Context) -> Outcome {
    let pairs = slice();
    let (bar, _dmabuf, importer) = ivshmem_import(ctx, &pairs)?;
    let expected = expected_runs(bar.start, &pairs);
    check_runs(&importer, MAX_CAPACITY, &expected)?;
    let exporter = &ctx.device(Which::Ivshmem)?.exporter;
    let revoke = must("REVOKE of ivshmem BAR2", exporter.revoke(IVSHMEM_BAR));
    let while_revoked = importer.walk_runs(MAX_CAPACITY, 16);
    let counters = importer.counters();
    // Live again whatever happened, for the cases that follow.
    let restore = must("RESTORE of ivshmem BAR2", exporter.restore(IVSHMEM_BAR));
    revoke?;
    refused("WALK by runs while revoked", while_revoked, libc::ENODEV)?;
    let counters = must("COUNTERS", counters)?;
    ensure!(
        counters.invalidations == 1 && counters.table_segments == 0,
        "COUNTERS {counters:?} while revoked, expected 1 invalidation and no entry"
    );
    restore?;
    check_runs(&importer, MAX_CAPACITY, &expected)?;
    Ok(())
}

fn mapping(ctx: &mut Context) -> Outcome {
    // Buffer page 0 is BAR page 5; pages 1 to 1023 are BAR pages 513 to
    // 1535, one run, whose buffer pages 512 to 1023 are BAR pages 1024 to
    // 1535: a 2 MiB block aligned in the buffer and, with the BAR 2 MiB
    // aligned, in the frames; the last page is the BAR's last.
    let pairs = [
        (5 * PAGE, PAGE),
        (0x20_1000, 0x3f_f000),
        (0x3fff_f000, PAGE),
    ];
    let (bar, _dmabuf, importer) = ivshmem_import(ctx, &pairs)?;
    let block = PMD_SIZE as u64;
    let block_bar_offset =
        bar_offset(&pairs, block).ok_or_else(|| "the slice has no 2 MiB block".to_owned())?;
    ensure!(
        (bar.start + block_bar_offset) % block == 0,
        "buffer offset {block:#x} is at physical {:#x}, not 2 MiB aligned (BAR2 at {:#x})",
        bar.start + block_bar_offset,
        bar.start
    );
    let expected = expected_runs(bar.start, &pairs);
    ensure!(expected.len() == 3, "the reference makes {expected:x?}");
    let walk = check_runs(&importer, MAX_CAPACITY, &expected)?;
    let size: u64 = pairs.iter().map(|&(_, length)| length).sum();
    let map = must(
        "mmap of the buffer at a 2 MiB aligned address",
        importer.map(0, size as usize, PMD_SIZE),
    )?;
    // Words in every run, in the 2 MiB block, before it, and in the last
    // page, each at its own in-page offset.
    let offsets = [
        0,
        PAGE + 4,
        block - PAGE + 8,
        block,
        block + 0x1234 * 4,
        2 * block - 4,
        size - PAGE + 0xffc,
    ];
    let mut wrong = Vec::new();
    for &at in &offsets {
        let expected = ivshmem_pattern(
            bar_offset(&pairs, at).ok_or_else(|| format!("offset {at:#x} is outside"))?,
        );
        let got = must("read", map.read32(at as usize))?;
        if got != expected {
            wrong.push(format!(
                "buffer offset {at:#x}: {got:#010x}, expected {expected:#010x}"
            ));
        }
    }
    let c = must("COUNTERS", importer.counters())?;
    ctx.note(format!(
        "{} bytes mapped at {:#x}: {} PTE, {} PMD, {} PUD faults; {} calls",
        size,
        map.addr(),
        c.pte_faults,
        c.pmd_faults,
        c.pud_faults,
        c.calls
    ));
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    ensure!(
        c.pmd_faults >= 1,
        "no PMD entry for the run's aligned 2 MiB block ({} PTE faults)",
        c.pte_faults
    );
    ensure!(
        c.calls == walk.calls && c.table_segments == expected.len() as u64,
        "the faults asked the exporter ({} calls after the walk's {}) or changed the table ({} entries): the mapping was not built from the run table",
        c.calls,
        walk.calls,
        c.table_segments
    );
    drop(map);
    must("closing the importer", importer.close())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn runs_by_hand() {
        let start = 8 * GIB;
        let runs = expected_runs(start, &slice());
        assert_eq!(runs.len(), SLICE_RUNS);
        let pfn = start / PAGE;
        assert_eq!(
            runs[0],
            Run {
                pgoff: 0,
                pfn: pfn + 5,
                pages: 3
            }
        );
        assert_eq!(runs[1].pfn, pfn + 0x201);
        assert_eq!(runs[2].pages, 4);
        assert_eq!(runs[3].pfn, pfn + 0x701);
        assert_eq!(runs[6].pfn, pfn + 0x3ffff);
        assert_eq!(
            runs[7],
            Run {
                pgoff: 3 + 0x3ff + 4 + 2 + 1 + 1 + 1,
                pfn,
                pages: 5
            }
        );
        // Adjacent in the BAR and in the buffer: one run.
        assert_eq!(
            expected_runs(0, &[(0, PAGE), (PAGE, PAGE)]),
            [Run {
                pgoff: 0,
                pfn: 0,
                pages: 2
            }]
        );
    }

    #[test]
    fn frames_and_offsets() {
        let pairs = [(PAGE, 2 * PAGE), (0, PAGE)];
        assert_eq!(expected_frames(GIB, &pairs), [0x40001, 0x40002, 0x40000]);
        assert_eq!(bar_offset(&pairs, 0), Some(PAGE));
        assert_eq!(bar_offset(&pairs, 2 * PAGE + 4), Some(4));
        assert_eq!(bar_offset(&pairs, 3 * PAGE), None);
    }

    #[test]
    fn tables_tile() {
        let segment = |pgoff, pfn, pages| uapi::vfio_dmabuf_imp_segment {
            pgoff,
            pfn,
            pages,
            ..Default::default()
        };
        let walk = |segments: Vec<uapi::vfio_dmabuf_imp_segment>| SegmentWalk {
            entries: segments.len() as u32,
            segments,
            calls: 1,
            nanoseconds: 0,
        };
        let good = walk(vec![segment(0, 10, 2), segment(2, 20, 1)]);
        assert_eq!(frames_of(&good).expect("tiles"), [10, 11, 20]);
        assert_eq!(runs_of(&good).expect("runs").len(), 2);
        assert!(frames_of(&walk(vec![segment(0, 10, 2), segment(3, 20, 1)])).is_err());
        assert!(compare_frames("x", &[1, 2], &[1, 3]).is_err());
        assert!(compare_runs(&runs_of(&good).expect("runs"), &[]).is_err());
    }
}
