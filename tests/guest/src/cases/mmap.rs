// SPDX-License-Identifier: GPL-2.0

//! The importer's user mappings, proved on the devices: edu's
//! identification and liveness registers, the ivshmem pattern the host wrote
//! into the BAR's backing file, the entry sizes the importer uses, and what
//! a revoked mapping does (SIGBUS, then the same access works after
//! RESTORE).

use vfio_dmabuf_uapi::mapping::{ivshmem_pattern, Access, Mapping, PAGE_SIZE, PMD_SIZE, PUD_SIZE};

use super::export::{check_walk, export_and_import};
use super::revoke::{exporter, whole};
use super::{all_of, case, ensure, must, refused, Case, Context, Outcome, Shared, Which};
use crate::expect::{ranges, sample_pages, Buffer, PAGE};
use crate::importer::Importer;
use crate::uapi;

/// edu's identification register (BAR0 offset 0): major 1, minor 0, 0xed.
pub(crate) const EDU_ID: u32 = 0x0100_00ed;
/// edu's liveness register (BAR0 offset 4) reads back the complement of
/// what was written.
const EDU_LIVENESS: usize = 4;
/// ivshmem's shared memory BAR.
const IVSHMEM_BAR: u32 = 2;

/// edu's BAR0 exported whole, imported and mapped.
struct Mapped {
    importer: Importer,
    mapping: Mapping,
    _dmabuf: std::os::fd::OwnedFd,
}

pub(super) fn cases() -> Vec<Case> {
    let edu = Shared::<Mapped>::new();
    let (first, second, third, last) = (edu.clone(), edu.clone(), edu.clone(), edu);
    vec![
        case("mmap: refused without an import (ENOENT)", |_| {
            let importer = Importer::open()?;
            refused(
                "mmap",
                importer.try_mmap(0, PAGE_SIZE, libc::PROT_READ, libc::MAP_SHARED),
                libc::ENOENT,
            )
        }),
        case(
            "mmap: refused outside the buffer and when private writable (EINVAL)",
            mmap_refusals,
        ),
        case(
            "edu BAR0 mapped: offset 0 reads the identification register",
            move |ctx| map_edu(ctx, &first),
        ),
        case(
            "edu BAR0 mapped: writing v to offset 4 reads back ~v",
            move |_| second.with(|m| liveness(&m.mapping)),
        ),
        case(
            "edu BAR0 mapped: REVOKE zaps the mapping, once, and the next access SIGBUSes",
            move |ctx| third.with(|m| revoke_mapped(ctx, m)),
        ),
        case(
            "edu BAR0 mapped: after RESTORE the same mapping reads the device again",
            move |ctx| {
                let m = last.take()?;
                must("RESTORE", exporter(ctx)?.restore(0))?;
                let access = must("read of offset 0", m.mapping.probe_read32(0))?;
                ensure!(
                    access == Access::Value(EDU_ID),
                    "offset 0 gave {access:x?} after RESTORE"
                );
                liveness(&m.mapping)?;
                let counters = must("COUNTERS", m.importer.counters())?;
                ensure!(
                    counters.invalidations == 1,
                    "{} invalidations, expected 1",
                    counters.invalidations
                );
                Ok(())
            },
        ),
        case(
            "ivshmem: a multi-range slice with odd page offsets reads the host's pattern",
            ivshmem_slice,
        ),
        case(
            "ivshmem: the whole 1 GiB BAR, 1 GiB-aligned, maps with PUD entries",
            |ctx| ivshmem_entries(ctx, PUD_SIZE, 1 << 30, 0, Level::Pud),
        ),
        case(
            "ivshmem: 64 MiB at a 2 MiB-aligned address maps with PMD entries",
            |ctx| ivshmem_entries(ctx, PMD_SIZE, 64 << 20, 0, Level::Pmd),
        ),
        case(
            "ivshmem: 4 MiB one page off the 2 MiB alignment maps with PTEs",
            |ctx| ivshmem_entries(ctx, PMD_SIZE, 4 << 20, PAGE, Level::Pte),
        ),
    ]
}

fn mmap_refusals(ctx: &mut Context) -> Outcome {
    let bar = *ctx.device(Which::Edu)?.bar(0);
    // One page in the middle of the BAR: there is memory on both sides.
    let (buffer, _dmabuf, importer) =
        export_and_import(ctx, Which::Edu, 0, &ranges(&[(PAGE, PAGE)]))?;
    let size = buffer.size() as usize;
    let rw = libc::PROT_READ | libc::PROT_WRITE;
    ensure!(
        bar.size() > 2 * PAGE,
        "edu's BAR0 is {:#x} bytes",
        bar.size()
    );
    all_of([
        must(
            "mmap of the whole buffer",
            importer.try_mmap(0, size, rw, libc::MAP_SHARED),
        ),
        refused(
            "mmap of one page more than the buffer",
            importer.try_mmap(0, size + PAGE_SIZE, rw, libc::MAP_SHARED),
            libc::EINVAL,
        ),
        refused(
            "mmap at the buffer's end",
            importer.try_mmap(size as i64, PAGE_SIZE, rw, libc::MAP_SHARED),
            libc::EINVAL,
        ),
        refused(
            "mmap far past the buffer's end",
            importer.try_mmap(1 << 40, PAGE_SIZE, rw, libc::MAP_SHARED),
            libc::EINVAL,
        ),
        refused(
            "mmap MAP_PRIVATE, writable",
            importer.try_mmap(0, size, rw, libc::MAP_PRIVATE),
            libc::EINVAL,
        ),
    ])
}

fn map_edu(ctx: &mut Context, state: &Shared<Mapped>) -> Outcome {
    let (buffer, dmabuf, importer) = export_and_import(ctx, Which::Edu, 0, &whole(ctx)?)?;
    let mapping = must(
        "mmap of the whole BAR",
        importer.map(0, buffer.size() as usize, PAGE_SIZE),
    )?;
    let id = must("read of offset 0", mapping.read32(0))?;
    let counters = must("COUNTERS", importer.counters())?;
    ctx.note(format!(
        "edu BAR0 at {:#x}: ID {id:#010x}; faults: {} PTE, {} PMD, {} PUD",
        mapping.addr(),
        counters.pte_faults,
        counters.pmd_faults,
        counters.pud_faults
    ));
    state.set(Mapped {
        importer,
        mapping,
        _dmabuf: dmabuf,
    });
    ensure!(
        id == EDU_ID,
        "offset 0 reads {id:#010x}, expected {EDU_ID:#010x}"
    );
    ensure!(
        counters.pte_faults >= 1,
        "the read was mapped without a fault: {counters:?}"
    );
    Ok(())
}

fn liveness(mapping: &Mapping) -> Outcome {
    let mut wrong = Vec::new();
    for v in [0, 1, 0xdead_beef, 0x1234_5678, 0x8000_0000, 0xffff_ffff] {
        must("write of offset 4", mapping.write32(EDU_LIVENESS, v))?;
        let got = must("read of offset 4", mapping.read32(EDU_LIVENESS))?;
        if got != !v {
            wrong.push(format!(
                "wrote {v:#010x}, read {got:#010x}, expected {:#010x}",
                !v
            ));
        }
    }
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    Ok(())
}

fn revoke_mapped(ctx: &mut Context, m: &mut Mapped) -> Outcome {
    // The page is mapped in this process now, so a child forked after the
    // revoke would inherit the entry unless it was zapped.
    let before = must("read of offset 0", m.mapping.read32(0))?;
    ensure!(
        before == EDU_ID,
        "offset 0 reads {before:#010x} before REVOKE"
    );
    must("REVOKE", exporter(ctx)?.revoke(0))?;
    let counters = must("COUNTERS", m.importer.counters())?;
    let read = must("read of offset 0", m.mapping.probe_read32(0))?;
    let write = must(
        "write of offset 4",
        m.mapping.probe_write32(EDU_LIVENESS, 5),
    )?;
    ensure!(
        counters.invalidations == 1 && counters.table_segments == 0,
        "COUNTERS {counters:?}, expected 1 invalidation and no segment"
    );
    ensure!(
        read == Access::Sigbus && write == Access::Sigbus,
        "after REVOKE a read gave {read:x?} and a write {write:x?}, expected SIGBUS"
    );
    Ok(())
}

/// Buffer offset `offset` of `buffer` as a byte offset in the BAR whose
/// first page frame is `bar_pfn`.
fn bar_offset(buffer: &Buffer, offset: u64, bar_pfn: u64) -> Option<u64> {
    let (pfn, _) = buffer.get_pfn(offset / PAGE)?;
    Some(((pfn - bar_pfn) * PAGE) + offset % PAGE)
}

fn ivshmem_slice(ctx: &mut Context) -> Outcome {
    let bar = *ctx.device(Which::Ivshmem)?.bar(IVSHMEM_BAR);
    let slice = ranges(&[
        (3 * PAGE, 5 * PAGE),
        ((1 << 20) + 7 * PAGE, 3 << 20),
        ((512 << 20) + PAGE, 2 * PAGE),
        (17 * PAGE, PAGE),
    ]);
    let (buffer, _dmabuf, importer) = export_and_import(ctx, Which::Ivshmem, IVSHMEM_BAR, &slice)?;
    let walk = check_walk(&importer, &buffer, None)?;
    ctx.note(walk.note);
    let mapping = must(
        "mmap of the slice",
        importer.map(0, buffer.size() as usize, PMD_SIZE),
    )?;
    let mut wrong = Vec::new();
    let pages = sample_pages(&buffer, 64);
    for &pgoff in &pages {
        // A different word of each page, so that in-page offsets count too.
        let offset = pgoff * PAGE + (pgoff * 52) % PAGE / 4 * 4;
        let expected = ivshmem_pattern(
            bar_offset(&buffer, offset, bar.pfn())
                .ok_or_else(|| format!("offset {offset:#x} is outside the buffer"))?,
        );
        let got = must("read", mapping.read32(offset as usize))?;
        if got != expected {
            wrong.push(format!(
                "buffer offset {offset:#x}: {got:#010x}, expected {expected:#010x}"
            ));
        }
    }
    ensure!(
        wrong.is_empty(),
        "{} of {} words wrong:\n{}",
        wrong.len(),
        pages.len(),
        wrong[..wrong.len().min(8)].join("\n")
    );
    ctx.note(format!("{} pages checked against the pattern", pages.len()));
    Ok(())
}

/// The page table level a mapping should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Pte,
    Pmd,
    Pud,
}

/// Maps `len` bytes of ivshmem's whole BAR from byte `offset` on at an
/// address aligned to `align`, reads the pattern across it, and checks that
/// every fault was answered at `level`.
fn ivshmem_entries(
    ctx: &mut Context,
    align: usize,
    len: usize,
    offset: u64,
    level: Level,
) -> Outcome {
    if level == Level::Pud && !cpu_has("pdpe1gb") {
        return Err(super::Failure::Skip(
            "the guest CPU has no 1 GiB pages (pdpe1gb)".to_owned(),
        ));
    }
    let bar = *ctx.device(Which::Ivshmem)?.bar(IVSHMEM_BAR);
    let (buffer, _dmabuf, importer) = export_and_import(
        ctx,
        Which::Ivshmem,
        IVSHMEM_BAR,
        &ranges(&[(0, bar.size())]),
    )?;
    let walk = check_walk(&importer, &buffer, None)?;
    ensure!(walk.entries == 1, "the walk has {} segments", walk.entries);
    let mapping = must("mmap", importer.map(offset, len, align))?;
    // Sample every eighth of the mapping and its last word.
    let mut wrong = Vec::new();
    for i in 0..=8u64 {
        let at = ((len as u64 * i / 8).min(len as u64 - 4)) & !3;
        let expected = ivshmem_pattern(offset + at);
        let got = must("read", mapping.read32(at as usize))?;
        if got != expected {
            wrong.push(format!(
                "offset {:#x}: {got:#010x}, expected {expected:#010x}",
                offset + at
            ));
        }
    }
    let c: uapi::vfio_dmabuf_imp_counters = must("COUNTERS", importer.counters())?;
    ctx.note(format!(
        "{} bytes at {:#x}: faults: {} PTE, {} PMD, {} PUD",
        len,
        mapping.addr(),
        c.pte_faults,
        c.pmd_faults,
        c.pud_faults
    ));
    ensure!(wrong.is_empty(), "{}", wrong.join("\n"));
    let (pte, pmd, pud) = (c.pte_faults, c.pmd_faults, c.pud_faults);
    let ok = match level {
        Level::Pud => pud >= 1 && pmd == 0 && pte == 0,
        Level::Pmd => pmd >= 1 && pud == 0 && pte == 0,
        Level::Pte => pte >= 1 && pmd == 0 && pud == 0,
    };
    ensure!(
        ok,
        "expected only {level:?} entries: {pte} PTE, {pmd} PMD, {pud} PUD"
    );
    Ok(())
}

/// Whether /proc/cpuinfo lists `flag` for the CPU.
fn cpu_has(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| {
            info.lines()
                .filter(|l| l.starts_with("flags"))
                .any(|l| l.split_whitespace().any(|f| f == flag))
        })
        .unwrap_or(false)
}
