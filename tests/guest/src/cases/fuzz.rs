// SPDX-License-Identifier: GPL-2.0

//! A bounded, seeded random sequence of valid and invalid calls across both
//! character devices (export, import, walk, get_pfn, counters, revoke,
//! restore, close, unknown requests), each checked against a model of what
//! the call must do: the state of every BAR, the buffers and imports alive,
//! and the reference arithmetic (`tests/host/src/reference.rs`, from the raw
//! request) for every table and page frame. The seed is printed;
//! `VFIO_DMABUF_FUZZ_SEED` replays one.

use std::os::fd::{AsFd, OwnedFd};

use super::{case, ensure, Case, Context, Failure, Outcome, Which};
use crate::expect::{ranges, Buffer, Entry, PAGE};
use crate::exporter::{ExportRequest, InfoWithTail};
use crate::importer::Importer;
use crate::sys;
use crate::uapi;

/// Calls made by one run.
pub(crate) const CALLS: u64 = 100_000;
const MAX_BUFFERS: usize = 12;
const MAX_IMPORTERS: usize = 6;

/// The memory BARs the sequence exports from.
const BARS: [(Which, u32); 4] = [
    (Which::Edu, 0),
    (Which::Ivshmem, 2),
    (Which::Testdev, 0),
    (Which::Testdev, 2),
];

/// xorshift64*: small, and the same sequence for the same seed everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

struct Exported {
    fd: OwnedFd,
    bar: usize,
    buffer: Buffer,
}

struct Imported {
    importer: Importer,
    /// Which BAR and the expected layout of what it imported.
    import: Option<(usize, Buffer)>,
}

struct Model {
    live: [bool; BARS.len()],
    buffers: Vec<Exported>,
    importers: Vec<Imported>,
    calls: u64,
    counts: [u64; 10],
}

const NAMES: [&str; 10] = [
    "export",
    "bad export",
    "close",
    "import",
    "walk",
    "get_pfn",
    "counters",
    "revoke",
    "restore",
    "unknown",
];

pub(super) fn cases() -> Vec<Case> {
    vec![case(
        format!("fuzz: {CALLS} seeded random calls across both devices keep the model"),
        run,
    )]
}

fn seed() -> u64 {
    if let Some(seed) = std::env::var("VFIO_DMABUF_FUZZ_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
    {
        return seed;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    now | 1
}

fn run(ctx: &mut Context) -> Outcome {
    let seed = seed();
    ctx.note(format!(
        "seed {seed:#x} (replay: VFIO_DMABUF_FUZZ_SEED={seed:x})"
    ));
    let fds_before = sys::open_fds().map_err(|e| e.to_string())?;
    let mut rng = Rng(seed);
    let mut model = Model {
        live: [true; BARS.len()],
        buffers: Vec::new(),
        importers: Vec::new(),
        calls: 0,
        counts: [0; 10],
    };
    let mut outcome = Ok(());
    while model.calls < CALLS {
        if let Err(e) = step(ctx, &mut rng, &mut model) {
            outcome = Err(e);
            break;
        }
    }
    // Leave every BAR live and every file closed, whatever happened.
    for (i, &(which, bar)) in BARS.iter().enumerate() {
        if !model.live[i] {
            if let Ok(device) = ctx.device(which) {
                let _ = device.exporter.restore(bar);
            }
        }
    }
    let (calls, counts) = (model.calls, model.counts);
    drop(model);
    let summary: Vec<String> = NAMES
        .iter()
        .zip(counts)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    ctx.note(format!("{calls} calls: {}", summary.join(", ")));
    outcome.map_err(|f| match f {
        Failure::Fail(m) => Failure::Fail(format!("seed {seed:#x}, call {calls}: {m}")),
        skip => skip,
    })?;
    let fds_after = sys::open_fds().map_err(|e| e.to_string())?;
    ensure!(
        fds_after == fds_before,
        "{fds_before} open files before, {fds_after} after"
    );
    Ok(())
}

/// `what` failed with `errno` as expected, or says how it did not.
fn expect_err<T>(what: &str, result: std::io::Result<T>, errno: i32) -> Outcome {
    super::refused(what, result, errno)
}

fn random_ranges(rng: &mut Rng, bar_size: u64) -> Vec<(u64, u64)> {
    let pages = bar_size / PAGE;
    (0..=rng.below(3))
        .map(|_| {
            let offset = rng.below(pages);
            let length = 1 + rng.below((pages - offset).min(1024));
            (offset * PAGE, length * PAGE)
        })
        .collect()
}

fn step(ctx: &Context, rng: &mut Rng, m: &mut Model) -> Outcome {
    let op = rng.below(NAMES.len() as u64) as usize;
    m.counts[op] += 1;
    m.calls += 1;
    match op {
        0 => {
            let bar = rng.below(BARS.len() as u64) as usize;
            let (which, index) = BARS[bar];
            let device = ctx.device(which)?;
            let pairs = random_ranges(rng, device.bar(index).size());
            let buffer = Buffer::new(&ranges(&pairs), device.bar(index))?;
            let fd = device
                .exporter
                .export(&ExportRequest::new(index, &ranges(&pairs)))
                .map_err(|e| format!("EXPORT {pairs:x?} from {} BAR{index}: {e}", which.name()))?;
            if m.buffers.len() == MAX_BUFFERS {
                let victim = rng.below(MAX_BUFFERS as u64) as usize;
                m.buffers.swap_remove(victim);
                m.calls += 1;
            }
            m.buffers.push(Exported { fd, bar, buffer });
            Ok(())
        }
        1 => bad_export(ctx, rng),
        2 => {
            if m.buffers.is_empty() {
                return Ok(());
            }
            let victim = rng.below(m.buffers.len() as u64) as usize;
            let gone = m.buffers.swap_remove(victim);
            sys::close(gone.fd).map_err(|e| format!("close of a dma-buf: {e}"))?;
            Ok(())
        }
        3 => import(rng, m),
        4 => walk(rng, m),
        5 => get_pfn(rng, m),
        6 => counters(rng, m),
        7 | 8 => {
            let bar = rng.below(BARS.len() as u64) as usize;
            let (which, index) = BARS[bar];
            let exporter = &ctx.device(which)?.exporter;
            if op == 7 {
                exporter.revoke(index).map_err(|e| format!("REVOKE: {e}"))?;
                m.live[bar] = false;
                // Every import of that BAR dropped its table.
                for imp in &m.importers {
                    if matches!(&imp.import, Some((b, _)) if *b == bar) {
                        let c = imp
                            .importer
                            .counters()
                            .map_err(|e| format!("COUNTERS: {e}"))?;
                        m.calls += 1;
                        ensure!(c.table_segments == 0, "a table survived REVOKE: {c:?}");
                    }
                }
            } else {
                exporter
                    .restore(index)
                    .map_err(|e| format!("RESTORE: {e}"))?;
                m.live[bar] = true;
            }
            Ok(())
        }
        _ => {
            let device = ctx.device(BARS[rng.below(BARS.len() as u64) as usize].0)?;
            let mut info = InfoWithTail::default();
            info.info.argsz = uapi::argsz::<uapi::vfio_dmabuf_info>();
            expect_err(
                "an undefined request",
                device
                    .exporter
                    .undefined(uapi::VFIO_DMABUF_UNDEFINED, &mut info),
                libc::ENOTTY,
            )
        }
    }
}

fn bad_export(ctx: &Context, rng: &mut Rng) -> Outcome {
    let (which, index) = BARS[rng.below(BARS.len() as u64) as usize];
    let device = ctx.device(which)?;
    let size = device.bar(index).size();
    let mut request = ExportRequest::new(index, &ranges(&random_ranges(rng, size)));
    let last = request.ranges.len() - 1;
    let (what, errno) = match rng.below(9) {
        0 => {
            request.head.flags = 1 << rng.below(32);
            ("flags", libc::EINVAL)
        }
        1 => {
            request.head.__reserved = 1 + rng.below(u32::MAX as u64) as u32;
            ("__reserved", libc::EINVAL)
        }
        2 => {
            request.head.region_index = 6 + rng.below(1000) as u32;
            ("region_index", libc::EINVAL)
        }
        3 => {
            request.ranges[last].length = 0;
            ("a zero length", libc::EINVAL)
        }
        4 => {
            request.ranges[last].offset += 1 + rng.below(PAGE - 1);
            ("an unaligned offset", libc::EINVAL)
        }
        5 => {
            request.ranges[last].offset = size;
            request.ranges[last].length = PAGE;
            ("a range past the end", libc::EINVAL)
        }
        6 => {
            request.ranges[last].offset = !(PAGE - 1);
            request.ranges[last].length = PAGE * (1 + rng.below(16));
            ("an overflowing range", libc::EOVERFLOW)
        }
        7 => {
            request = ExportRequest::new(
                index,
                &ranges(&vec![(0, PAGE); 257 + rng.below(64) as usize]),
            );
            ("too many ranges", libc::E2BIG)
        }
        _ => {
            request.head.open_flags |= libc::O_APPEND as u32;
            ("open_flags", libc::EINVAL)
        }
    };
    expect_err(
        &format!("EXPORT from {} BAR{index} with {what}", which.name()),
        device.exporter.export(&request),
        errno,
    )
}

fn import(rng: &mut Rng, m: &mut Model) -> Outcome {
    if m.importers.len() < MAX_IMPORTERS && (m.importers.is_empty() || rng.below(4) == 0) {
        m.importers.push(Imported {
            importer: Importer::open()?,
            import: None,
        });
        m.calls += 1;
    }
    let i = rng.below(m.importers.len() as u64) as usize;
    if m.buffers.is_empty() || rng.below(8) == 0 {
        // Close it instead.
        m.importers.swap_remove(i);
        return Ok(());
    }
    let b = rng.below(m.buffers.len() as u64) as usize;
    let (bar, buffer) = (m.buffers[b].bar, m.buffers[b].buffer.clone());
    let imp = &mut m.importers[i];
    let result = imp.importer.import(m.buffers[b].fd.as_fd());
    // A new import replaces the old one even when it fails.
    imp.import = None;
    if m.live[bar] {
        let size = result.map_err(|e| format!("IMPORT of a live buffer: {e}"))?;
        ensure!(
            size == buffer.size(),
            "IMPORT says {size:#x} bytes, expected {:#x}",
            buffer.size()
        );
        imp.import = Some((bar, buffer));
        Ok(())
    } else {
        expect_err("IMPORT of a revoked buffer", result, libc::ENODEV)
    }
}

fn walk(rng: &mut Rng, m: &mut Model) -> Outcome {
    let Some(imp) = pick(rng, &m.importers) else {
        return Ok(());
    };
    let pages = rng.below(4) == 0;
    let flags = if pages {
        uapi::VFIO_DMABUF_IMP_WALK_PAGES
    } else {
        0
    };
    match &imp.import {
        None => expect_err(
            "WALK without an import",
            imp.importer.walk(flags, 1),
            libc::ENOENT,
        ),
        Some((bar, buffer)) => {
            let expected: Vec<Entry> = if pages {
                buffer.walk_pages()
            } else {
                buffer.walk()
            };
            if pages && expected.len() > 4096 {
                return Ok(());
            }
            let result = imp.importer.walk(flags, expected.len());
            if !m.live[*bar] {
                return expect_err("WALK of a revoked buffer", result, libc::ENODEV);
            }
            let walk = result.map_err(|e| format!("WALK of a live buffer: {e}"))?;
            ensure!(
                walk.table == expected,
                "WALK table differs from the reference"
            );
            Ok(())
        }
    }
}

fn get_pfn(rng: &mut Rng, m: &mut Model) -> Outcome {
    let Some(imp) = pick(rng, &m.importers) else {
        return Ok(());
    };
    let Some((bar, buffer)) = &imp.import else {
        return expect_err(
            "GET_PFN without an import",
            imp.importer.get_pfn(0),
            libc::ENOENT,
        );
    };
    let pgoff = match rng.below(8) {
        0 => buffer.pages() + rng.below(1 << 20),
        1 => u64::MAX - rng.below(4),
        _ => rng.below(buffer.pages()),
    };
    let result = imp.importer.get_pfn(pgoff);
    match buffer.get_pfn(pgoff) {
        None => expect_err("GET_PFN past the end", result, libc::ERANGE),
        Some(_) if !m.live[*bar] => expect_err("GET_PFN of a revoked buffer", result, libc::ENODEV),
        Some(expected) => {
            let got = result.map_err(|e| format!("GET_PFN of page {pgoff:#x}: {e}"))?;
            ensure!(
                got == expected,
                "GET_PFN of page {pgoff:#x}: {got:x?}, expected {expected:x?}"
            );
            Ok(())
        }
    }
}

fn counters(rng: &mut Rng, m: &mut Model) -> Outcome {
    let Some(imp) = pick(rng, &m.importers) else {
        return Ok(());
    };
    let result = imp.importer.counters();
    match &imp.import {
        None => expect_err("COUNTERS without an import", result, libc::ENOENT),
        Some((bar, _)) => {
            let c = result.map_err(|e| format!("COUNTERS: {e}"))?;
            ensure!(
                m.live[*bar] || c.table_segments == 0,
                "a revoked import keeps a table: {c:?}"
            );
            Ok(())
        }
    }
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        None
    } else {
        items.get(rng.below(items.len() as u64) as usize)
    }
}
