// SPDX-License-Identifier: GPL-2.0

//! Exports that must succeed, followed through the importer: the dma-buf's
//! size, the import, a walk by `max_order` whose every entry is checked
//! against what the reference computes from sysfs and the request, and
//! single page frame queries.

use std::os::fd::{AsFd, OwnedFd};

use super::{case, ensure, must, refused, Case, Context, Failure, Outcome, Shared, Which};
use crate::expect::{self, ranges, Buffer, ByteRange, PAGE};
use crate::exporter::ExportRequest;
use crate::importer::Importer;
use crate::pci::Resource;
use crate::sys;
use crate::uapi;

const MIB: u64 = 1 << 20;

/// Random pages asked about one by one, besides each piece's first and last.
const SAMPLES: usize = 64;

/// An export to follow through the importer.
#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    which: Which,
    bar: u32,
    /// The ranges, given the BAR (whose size the VM may choose).
    ranges: fn(&Resource) -> Vec<ByteRange>,
    /// The ranges are the whole BAR.
    whole: bool,
}

fn whole(bar: &Resource) -> Vec<ByteRange> {
    ranges(&[(0, bar.size())])
}

const SCENARIOS: [Scenario; 5] = [
    Scenario {
        name: "edu BAR0 whole",
        which: Which::Edu,
        bar: 0,
        ranges: whole,
        whole: true,
    },
    Scenario {
        name: "ivshmem BAR2 whole",
        which: Which::Ivshmem,
        bar: 2,
        ranges: whole,
        whole: true,
    },
    Scenario {
        name: "ivshmem BAR2 in ranges at odd pages",
        which: Which::Ivshmem,
        bar: 2,
        ranges: |bar| {
            ranges(&[
                (5 * PAGE, 4 * PAGE),
                (6 * MIB, 2 * MIB),
                (bar.size().saturating_sub(PAGE), PAGE),
            ])
        },
        whole: false,
    },
    Scenario {
        name: "pci-testdev BAR2 whole",
        which: Which::Testdev,
        bar: 2,
        ranges: whole,
        whole: true,
    },
    Scenario {
        name: "pci-testdev BAR2 in unaligned ranges",
        which: Which::Testdev,
        bar: 2,
        // An aligned sixteenth first (one large block), then pieces whose
        // page frames are skewed against their buffer pages.
        ranges: |bar| {
            let size = bar.size();
            ranges(&[
                (size / 16, size / 16),
                (3 * PAGE, 2 * MIB + 5 * PAGE),
                (size / 2 + PAGE, 4 * MIB),
                (size.saturating_sub(2 * MIB + PAGE), 2 * MIB),
                (0, PAGE),
            ])
        },
        whole: false,
    },
];

/// A buffer exported and, once imported, the importer holding it.
struct Exported {
    buffer: Buffer,
    dmabuf: OwnedFd,
    importer: Option<Importer>,
}

pub(super) fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for scenario in SCENARIOS {
        cases.extend(scenario_cases(scenario));
    }
    cases.push(case(
        "edu BAR0: a page-by-page walk gives one entry per page",
        walk_pages,
    ));
    cases.push(case(
        "ivshmem BAR2: a page-by-page walk of the whole 1 GiB keeps its 262144 entries",
        walk_pages_large,
    ));
    cases.push(case(
        "edu BAR0: GET_PFN past the end of the buffer fails with ERANGE",
        get_pfn_past_end,
    ));
    cases.push(case(
        "edu BAR0: overlapping ranges give the same page frames twice",
        overlapping,
    ));
    cases.push(case(
        "EXPORT's open_flags set the dma-buf file's access mode and close-on-exec",
        open_flags,
    ));
    cases
}

fn scenario_cases(scenario: Scenario) -> Vec<Case> {
    let name = scenario.name;
    let state = Shared::<Exported>::new();
    let (s1, s2, s3, s4) = (state.clone(), state.clone(), state.clone(), state);
    vec![
        case(
            format!("{name}: EXPORT gives a dma-buf of the ranges' total size"),
            move |ctx| export_step(ctx, scenario, &s1),
        ),
        case(
            format!("{name}: the importer imports it at that size"),
            move |_| {
                s2.with(|exported| {
                    let importer = Importer::open()?;
                    let size = must("IMPORT", importer.import(exported.dmabuf.as_fd()))?;
                    exported.importer = Some(importer);
                    ensure!(
                        size == exported.buffer.size(),
                        "IMPORT says {size:#x} bytes, expected {:#x}",
                        exported.buffer.size()
                    );
                    Ok(())
                })
            },
        ),
        case(
            format!("{name}: a max_order walk finds every page frame in the fewest calls"),
            move |ctx| {
                let device_bar = *ctx.device(scenario.which)?.bar(scenario.bar);
                let note = s3.with(|exported| {
                    let importer = imported(exported)?;
                    let whole_bar = scenario.whole.then_some(&device_bar);
                    let walk = check_walk(importer, &exported.buffer, whole_bar)?;
                    check_fresh_counters(importer, &walk)?;
                    Ok(walk.note)
                })?;
                ctx.note(note);
                Ok(())
            },
        ),
        case(
            format!("{name}: GET_PFN agrees at sampled pages"),
            move |_| {
                let exported = s4.take()?;
                let importer = imported(&exported)?;
                check_get_pfn(importer, &exported.buffer)
            },
        ),
    ]
}

fn imported(exported: &Exported) -> Result<&Importer, Failure> {
    exported
        .importer
        .as_ref()
        .ok_or_else(|| Failure::Skip("the import failed".to_owned()))
}

fn export_step(ctx: &mut Context, scenario: Scenario, state: &Shared<Exported>) -> Outcome {
    let device = ctx.device(scenario.which)?;
    let bar = *device.bar(scenario.bar);
    let ranges = (scenario.ranges)(&bar);
    let buffer = Buffer::new(&ranges, &bar)?;
    let request = ExportRequest::new(scenario.bar, &ranges);
    let dmabuf = must("EXPORT", device.exporter.export(&request))?;
    let size = must(
        "lseek(SEEK_END) on the dma-buf",
        sys::file_size(dmabuf.as_fd()),
    );
    let expected = buffer.size();
    ctx.note(format!(
        "{} range(s), {} from the BAR at {:#x}",
        ranges.len(),
        expect::human(expected),
        bar.start
    ));
    state.set(Exported {
        buffer,
        dmabuf,
        importer: None,
    });
    let size = size?;
    ensure!(
        size == expected,
        "the dma-buf is {size:#x} bytes, expected {expected:#x}"
    );
    Ok(())
}

/// A walk that was checked, and what to say about it.
pub(super) struct CheckedWalk {
    pub(super) table: Vec<expect::Entry>,
    pub(super) entries: u64,
    pub(super) calls: u64,
    pub(super) note: String,
}

/// Walks the buffer by `max_order` and checks the table: it tiles the
/// buffer, every entry is the page frame and order the reference computes
/// from the BAR's sysfs address and the ranges, the walk made one call per
/// entry, and no more than the greedy aligned decomposition has blocks. For
/// a whole BAR aligned to its size (`whole_bar`), that is one block.
pub(super) fn check_walk(
    importer: &Importer,
    buffer: &Buffer,
    whole_bar: Option<&Resource>,
) -> Result<CheckedWalk, Failure> {
    let expected = buffer.walk();
    let walk = must("WALK", importer.walk(0, expected.len() + 16))?;
    let entries = u64::from(walk.entries);
    ensure!(
        entries == expected.len() as u64,
        "WALK reports {entries} entries, expected {}",
        expected.len()
    );
    expect::check_tiling(&walk.table, buffer.pages())?;
    expect::compare(&walk.table, &expected)?;
    ensure!(
        walk.calls == entries,
        "{} dma_buf_get_pfn_unlocked() calls for {entries} entries",
        walk.calls
    );
    let greedy = buffer.greedy_blocks();
    ensure!(
        entries == greedy,
        "{entries} entries, the greedy decomposition has {greedy} blocks"
    );
    if let Some(bar) = whole_bar {
        let size = bar.size();
        if size.is_power_of_two() && bar.start % size == 0 {
            ensure!(
                entries == 1,
                "{entries} entries for a whole BAR aligned to its size"
            );
        }
    }
    Ok(CheckedWalk {
        table: walk.table,
        entries,
        calls: walk.calls,
        note: format!(
            "{entries} entries in {} calls (greedy: {greedy}), {} ns",
            walk.calls, walk.nanoseconds
        ),
    })
}

/// The importer's counters after one walk of a fresh import.
fn check_fresh_counters(importer: &Importer, walk: &CheckedWalk) -> Outcome {
    let counters = must("COUNTERS", importer.counters())?;
    ensure!(
        counters.walks == 1
            && counters.calls == walk.calls
            && counters.invalidations == 0
            && counters.table_segments == walk.entries,
        "COUNTERS {counters:?}, expected 1 walk, {} calls, no invalidation, {} segments",
        walk.calls,
        walk.entries
    );
    Ok(())
}

/// GET_PFN at the first and last page of each range and at sampled pages
/// answers the page frame and `max_order` the reference computes.
pub(super) fn check_get_pfn(importer: &Importer, buffer: &Buffer) -> Outcome {
    let mut mismatches = Vec::new();
    let pages = expect::sample_pages(buffer, SAMPLES);
    for &pgoff in &pages {
        let Some(expected) = buffer.get_pfn(pgoff) else {
            continue;
        };
        match importer.get_pfn(pgoff) {
            Ok(got) if got == expected => {}
            Ok((pfn, order)) => mismatches.push(format!(
                "page {pgoff:#x}: pfn {pfn:#x} order {order}, expected pfn {:#x} order {}",
                expected.0, expected.1
            )),
            Err(e) => mismatches.push(format!("page {pgoff:#x}: GET_PFN: {}", sys::describe(&e))),
        }
    }
    ensure!(
        mismatches.is_empty(),
        "{} of {} pages wrong:\n{}",
        mismatches.len(),
        pages.len(),
        mismatches[..mismatches.len().min(8)].join("\n")
    );
    Ok(())
}

/// Exports `ranges` of BAR `bar` and imports the buffer.
pub(super) fn export_and_import(
    ctx: &Context,
    which: Which,
    bar: u32,
    ranges: &[ByteRange],
) -> Result<(Buffer, OwnedFd, Importer), Failure> {
    let device = ctx.device(which)?;
    let buffer = Buffer::new(ranges, device.bar(bar))?;
    let dmabuf = must(
        "EXPORT",
        device.exporter.export(&ExportRequest::new(bar, ranges)),
    )?;
    let importer = Importer::open()?;
    let size = must("IMPORT", importer.import(dmabuf.as_fd()))?;
    ensure!(
        size == buffer.size(),
        "IMPORT says {size:#x} bytes, expected {:#x}",
        buffer.size()
    );
    Ok((buffer, dmabuf, importer))
}

fn walk_pages(ctx: &mut Context) -> Outcome {
    let bar = *ctx.device(Which::Edu)?.bar(0);
    let (buffer, _dmabuf, importer) = export_and_import(ctx, Which::Edu, 0, &whole(&bar))?;
    let expected = buffer.walk_pages();
    let walk = must(
        "WALK (pages)",
        importer.walk(uapi::VFIO_DMABUF_IMP_WALK_PAGES, expected.len() + 16),
    )?;
    ensure!(
        walk.entries as usize == expected.len(),
        "WALK reports {} entries, expected {}",
        walk.entries,
        expected.len()
    );
    expect::check_tiling(&walk.table, buffer.pages())?;
    expect::compare(&walk.table, &expected)?;
    ensure!(
        walk.calls == buffer.pages(),
        "{} calls for {} pages",
        walk.calls,
        buffer.pages()
    );
    ctx.note(format!(
        "{} entries in {} calls, {} ns",
        walk.entries, walk.calls, walk.nanoseconds
    ));
    Ok(())
}

fn get_pfn_past_end(ctx: &mut Context) -> Outcome {
    let (buffer, _dmabuf, importer) =
        export_and_import(ctx, Which::Edu, 0, &ranges(&[(PAGE, 2 * PAGE)]))?;
    refused(
        "GET_PFN of the page after the last",
        importer.get_pfn(buffer.pages()),
        libc::ERANGE,
    )?;
    refused(
        "GET_PFN of page 2^64-1",
        importer.get_pfn(u64::MAX),
        libc::ERANGE,
    )?;
    Ok(())
}

fn overlapping(ctx: &mut Context) -> Outcome {
    let (buffer, _dmabuf, importer) = export_and_import(
        ctx,
        Which::Edu,
        0,
        &ranges(&[(0, 2 * PAGE), (0, 2 * PAGE), (PAGE, PAGE)]),
    )?;
    let walk = check_walk(&importer, &buffer, None)?;
    let table = &walk.table;
    // Already compared with the arithmetic; said once more in plain terms.
    ensure!(
        table.len() >= 2 && table[0].pfn == table[1].pfn,
        "buffer pages 0 and 2 map to different frames: {table:x?}"
    );
    ctx.note(walk.note);
    Ok(())
}

fn open_flags(ctx: &mut Context) -> Outcome {
    let device = ctx.device(Which::Edu)?;
    let one_page = ranges(&[(0, PAGE)]);
    for (open_flags, mode, cloexec) in [
        (libc::O_RDONLY, libc::O_RDONLY, false),
        (libc::O_RDWR | libc::O_CLOEXEC, libc::O_RDWR, true),
        (libc::O_WRONLY | libc::O_CLOEXEC, libc::O_WRONLY, true),
    ] {
        let mut request = ExportRequest::new(0, &one_page);
        request.head.open_flags = open_flags as u32;
        let what = format!("EXPORT with open_flags {open_flags:#o}");
        let dmabuf = must(&what, device.exporter.export(&request))?;
        let (status, fd_cloexec) = must("fcntl", sys::fd_flags(dmabuf.as_fd()))?;
        ensure!(
            status & libc::O_ACCMODE == mode && fd_cloexec == cloexec,
            "{what}: file flags {status:#o}, close-on-exec {fd_cloexec}"
        );
    }
    Ok(())
}

/// A table too large for kmalloc (6 MiB): the importer keeps it in
/// kvmalloc'ed memory. (It used kmalloc, and the page allocator WARNed.)
fn walk_pages_large(ctx: &mut Context) -> Outcome {
    let bar = *ctx.device(Which::Ivshmem)?.bar(2);
    let (buffer, _dmabuf, importer) =
        export_and_import(ctx, Which::Ivshmem, 2, &ranges(&[(0, bar.size())]))?;
    let walk = must(
        "WALK (pages)",
        importer.walk(uapi::VFIO_DMABUF_IMP_WALK_PAGES, 0),
    )?;
    ensure!(
        u64::from(walk.entries) == buffer.pages() && walk.calls == buffer.pages(),
        "WALK reports {} entries in {} calls for {} pages",
        walk.entries,
        walk.calls,
        buffer.pages()
    );
    let counters = must("COUNTERS", importer.counters())?;
    ensure!(
        counters.table_segments == buffer.pages(),
        "the importer keeps {} entries",
        counters.table_segments
    );
    ctx.note(format!(
        "{} entries in {} ns",
        walk.entries, walk.nanoseconds
    ));
    Ok(())
}
