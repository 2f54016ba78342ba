// SPDX-License-Identifier: GPL-2.0

//! Exports of the most ranges one EXPORT may carry (256), walked and
//! queried entry by entry against what the request and sysfs imply: edu's
//! BAR0 as 256 single pages in reverse order, and ivshmem's BAR2 as 256
//! ranges of mixed sizes, offsets and alignments, read through a mapping.

use vfio_dmabuf_uapi::mapping::{ivshmem_pattern, PAGE_SIZE};

use super::export::{check_walk, export_and_import};
use super::{case, ensure, must, Case, Context, Outcome, Which};
use crate::expect::{self, ranges, PAGE};
use crate::uapi;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case(
            "EXPORT of 256 single pages of edu BAR0 in reverse order: every entry of both walks and every GET_PFN is the page the request names",
            edu_reversed,
        ),
        case(
            "EXPORT of 256 ivshmem ranges of mixed sizes: the walk is the reference's, entry by entry, and each range reads the host's pattern",
            ivshmem_mixed,
        ),
    ]
}

const MAX: u64 = uapi::VFIO_DMABUF_MAX_RANGES as u64;

fn edu_reversed(ctx: &mut Context) -> Outcome {
    let bar = *ctx.device(Which::Edu)?.bar(0);
    ensure!(
        bar.size() >= MAX * PAGE,
        "edu's BAR0 has {} pages",
        bar.size() / PAGE
    );
    let pairs: Vec<(u64, u64)> = (0..MAX).map(|i| ((MAX - 1 - i) * PAGE, PAGE)).collect();
    let (buffer, _dmabuf, importer) = export_and_import(ctx, Which::Edu, 0, &ranges(&pairs))?;
    // Buffer page i is BAR page 255 - i: frames descend, one block each.
    for (i, entry) in buffer.walk().iter().enumerate() {
        let want = bar.pfn() + MAX - 1 - i as u64;
        ensure!(
            entry.pgoff == i as u64 && entry.pfn == want && entry.order == 0,
            "the reference's entry {i} is {entry:x?}, the request names frame {want:#x}"
        );
    }
    let walk = check_walk(&importer, &buffer, None)?;
    ensure!(walk.entries == MAX, "{} entries", walk.entries);
    let pages = must(
        "WALK (pages)",
        importer.walk(uapi::VFIO_DMABUF_IMP_WALK_PAGES, MAX as usize + 1),
    )?;
    expect::compare(&pages.table, &buffer.walk_pages())?;
    for pgoff in 0..MAX {
        let got = must("GET_PFN", importer.get_pfn(pgoff))?;
        let want = buffer.get_pfn(pgoff);
        ensure!(
            Some(got) == want,
            "GET_PFN of page {pgoff}: {got:x?}, expected {want:x?}"
        );
    }
    ctx.note(walk.note);
    Ok(())
}

/// 256 ranges inside 1 GiB: at 4 MiB strides in a scrambled order, each a
/// few pages at an odd page offset, every sixteenth 2 MiB at a 2
/// MiB-aligned offset (a large block), every fifth overlapping the one
/// before.
fn mixed() -> Vec<(u64, u64)> {
    let mut pairs: Vec<(u64, u64)> = Vec::new();
    for i in 0..MAX {
        let slot = (i * 37) % MAX;
        let pair = if i % 16 == 0 {
            (slot << 22, 2 << 20)
        } else if i % 5 == 0 {
            let (offset, length) = pairs[(i - 1) as usize];
            (offset + PAGE * (length / PAGE / 2), length)
        } else {
            ((slot << 22) + (i % 7) * PAGE, (1 + i % 9) * PAGE)
        };
        pairs.push(pair);
    }
    pairs
}

fn ivshmem_mixed(ctx: &mut Context) -> Outcome {
    let bar = *ctx.device(Which::Ivshmem)?.bar(2);
    let pairs = mixed();
    let (buffer, _dmabuf, importer) = export_and_import(ctx, Which::Ivshmem, 2, &ranges(&pairs))?;
    let walk = check_walk(&importer, &buffer, None)?;
    ctx.note(format!("{}; {} pages", walk.note, buffer.pages()));
    for &pgoff in &expect::sample_pages(&buffer, 256) {
        let got = must("GET_PFN", importer.get_pfn(pgoff))?;
        let want = buffer.get_pfn(pgoff);
        ensure!(
            Some(got) == want,
            "GET_PFN of page {pgoff:#x}: {got:x?}, expected {want:x?}"
        );
    }
    // Each range's first and last word, through one mapping of the buffer.
    let mapping = must("mmap", importer.map(0, buffer.size() as usize, PAGE_SIZE))?;
    let mut offset = 0u64;
    for (i, &(bar_offset, length)) in pairs.iter().enumerate() {
        for within in [0, length - 4] {
            let got = must("read", mapping.read32((offset + within) as usize))?;
            let want = ivshmem_pattern(bar_offset + within);
            ensure!(
                got == want,
                "range {i} ({bar_offset:#x}+{length:#x}) at {within:#x}: {got:#010x}, expected {want:#010x} (BAR at {:#x})",
                bar.start
            );
        }
        offset += length;
    }
    ensure!(offset == buffer.size(), "the ranges add up to {offset:#x}");
    Ok(())
}
