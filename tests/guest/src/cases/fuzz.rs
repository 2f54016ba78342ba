// SPDX-License-Identifier: GPL-2.0

//! A bounded, seeded random sequence of valid and invalid calls across both
//! character devices (export, import, walk, get_pfn, counters, revoke,
//! restore, close, unknown requests), each checked against a model of what
//! the call must do: the state of every BAR, the buffers and imports alive,
//! what each import's COUNTERS must say (walks, calls, invalidations, the
//! table's entries), and the reference arithmetic
//! (`tests/host/src/reference.rs`, from the raw request) for every whole
//! table and page frame. Only steps that made a system call count.
//!
//! The seed is printed, on stderr as soon as the case starts and in the
//! case's diagnostics; `VFIO_DMABUF_FUZZ_SEED` (hexadecimal, `0x` optional)
//! in guest-tests' environment replays one.

use std::os::fd::{AsFd, OwnedFd};

use super::{case, ensure, Case, Context, Failure, Outcome, Which};
use crate::expect::{ranges, Buffer, Entry, PAGE};
use crate::exporter::{ExportRequest, InfoWithTail};
use crate::importer::Importer;
use crate::sys;
use crate::uapi;

/// System calls made by one run.
pub(crate) const CALLS: u64 = 100_000;
const MAX_BUFFERS: usize = 12;
const MAX_IMPORTERS: usize = 6;
/// The environment variable that replays a seed.
pub(crate) const SEED_VAR: &str = "VFIO_DMABUF_FUZZ_SEED";

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

/// An import as the model sees it: what its COUNTERS must say.
struct Import {
    bar: usize,
    buffer: Buffer,
    walks: u64,
    calls: u64,
    invalidations: u64,
    table: u64,
}

struct Imported {
    importer: Importer,
    import: Option<Import>,
}

struct Model {
    live: [bool; BARS.len()],
    buffers: Vec<Exported>,
    importers: Vec<Imported>,
    /// System calls made.
    calls: u64,
    /// Steps of each kind that made a call.
    steps: [u64; NAMES.len()],
    /// Walks whose whole table was compared with the reference.
    tables: u64,
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
        format!("fuzz: {CALLS} seeded random calls across both devices keep the model, COUNTERS included"),
        run,
    )]
}

/// The seed: `VFIO_DMABUF_FUZZ_SEED` if set (a value that does not parse is
/// an error, never a fresh seed), else the time.
fn seed() -> Result<(u64, bool), String> {
    match std::env::var(SEED_VAR) {
        Ok(text) => {
            let digits = text.trim().trim_start_matches("0x");
            u64::from_str_radix(digits, 16)
                .map(|seed| (seed, true))
                .map_err(|e| format!("{SEED_VAR}={text:?} is not a hexadecimal seed: {e}"))
        }
        Err(std::env::VarError::NotPresent) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1);
            Ok((now | 1, false))
        }
        Err(e) => Err(format!("{SEED_VAR}: {e}")),
    }
}

fn run(ctx: &mut Context) -> Outcome {
    for (which, _) in BARS {
        ctx.device(which)?;
    }
    let (seed, replay) = seed()?;
    // On stderr at once, so that a run the kernel cuts short still says it.
    eprintln!("guest-tests: fuzz seed {seed:#x} (replay: {SEED_VAR}={seed:x})");
    ctx.note(format!(
        "seed {seed:#x} ({}; replay: {SEED_VAR}={seed:x})",
        if replay {
            format!("from {SEED_VAR}")
        } else {
            "from the clock".to_owned()
        }
    ));
    let fds_before = sys::open_fds().map_err(|e| e.to_string())?;
    let mut rng = Rng(seed);
    let mut model = Model {
        live: [true; BARS.len()],
        buffers: Vec::new(),
        importers: Vec::new(),
        calls: 0,
        steps: [0; NAMES.len()],
        tables: 0,
    };
    let mut outcome = Ok(());
    while model.calls < CALLS {
        if let Err(e) = step(ctx, &mut rng, &mut model) {
            outcome = Err(e);
            break;
        }
    }
    // Leave every BAR live and every file closed, whatever happened.
    let mut cleanup = Vec::new();
    for (i, &(which, bar)) in BARS.iter().enumerate() {
        if !model.live[i] {
            if let Ok(device) = ctx.device(which) {
                if let Err(e) = device.exporter.restore(bar) {
                    cleanup.push(format!(
                        "RESTORE of {} BAR{bar}: {}",
                        which.name(),
                        sys::describe(&e)
                    ));
                }
            }
        }
    }
    for imported in model.importers.drain(..) {
        if let Err(e) = imported.importer.close() {
            cleanup.push(format!("close of an importer: {}", sys::describe(&e)));
        }
    }
    for exported in model.buffers.drain(..) {
        if let Err(e) = sys::close(exported.fd) {
            cleanup.push(format!("close of a dma-buf: {}", sys::describe(&e)));
        }
    }
    let summary: Vec<String> = NAMES
        .iter()
        .zip(model.steps)
        .map(|(name, n)| format!("{name} {n}"))
        .collect();
    ctx.note(format!(
        "{} calls in {} steps: {}; {} whole tables compared",
        model.calls,
        model.steps.iter().sum::<u64>(),
        summary.join(", "),
        model.tables
    ));
    outcome.map_err(|f| match f {
        Failure::Fail(m) => Failure::Fail(format!(
            "seed {seed:#x}, call {}: {m} (replay: {SEED_VAR}={seed:x})",
            model.calls
        )),
        skip => skip,
    })?;
    ensure!(cleanup.is_empty(), "{}", cleanup.join("\n"));
    // Every kind of step ran, and walks compared tables.
    let idle: Vec<&str> = NAMES
        .iter()
        .zip(model.steps)
        .filter(|&(_, n)| n == 0)
        .map(|(name, _)| *name)
        .collect();
    ensure!(idle.is_empty(), "steps that never made a call: {idle:?}");
    ensure!(model.tables > 0, "no walk's table was compared");
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

/// One step: the calls it made are added to `m.calls`, and a step that made
/// one counts for its kind.
fn step(ctx: &Context, rng: &mut Rng, m: &mut Model) -> Outcome {
    let op = rng.below(NAMES.len() as u64) as usize;
    let before = m.calls;
    let result = match op {
        0 => export(ctx, rng, m),
        1 => {
            m.calls += 1;
            bad_export(ctx, rng)
        }
        2 => {
            if m.buffers.is_empty() {
                return Ok(());
            }
            let victim = rng.below(m.buffers.len() as u64) as usize;
            let gone = m.buffers.swap_remove(victim);
            m.calls += 1;
            sys::close(gone.fd).map_err(|e| format!("close of a dma-buf: {e}").into())
        }
        3 => import(rng, m),
        4 => walk(rng, m),
        5 => get_pfn(rng, m),
        6 => counters(rng, m),
        7 | 8 => change(ctx, rng, m, op == 7),
        _ => {
            let device = ctx.device(BARS[rng.below(BARS.len() as u64) as usize].0)?;
            let mut info = InfoWithTail::default();
            info.info.argsz = uapi::argsz::<uapi::vfio_dmabuf_info>();
            m.calls += 1;
            expect_err(
                "an undefined request",
                device
                    .exporter
                    .undefined(uapi::VFIO_DMABUF_UNDEFINED, &mut info),
                libc::ENOTTY,
            )
        }
    };
    if m.calls > before {
        m.steps[op] += 1;
    }
    result
}

fn export(ctx: &Context, rng: &mut Rng, m: &mut Model) -> Outcome {
    let bar = rng.below(BARS.len() as u64) as usize;
    let (which, index) = BARS[bar];
    let device = ctx.device(which)?;
    let pairs = random_ranges(rng, device.bar(index).size());
    let buffer = Buffer::new(&ranges(&pairs), device.bar(index))?;
    m.calls += 1;
    let fd = device
        .exporter
        .export(&ExportRequest::new(index, &ranges(&pairs)))
        .map_err(|e| format!("EXPORT {pairs:x?} from {} BAR{index}: {e}", which.name()))?;
    if m.buffers.len() == MAX_BUFFERS {
        let victim = rng.below(MAX_BUFFERS as u64) as usize;
        let old = m.buffers.swap_remove(victim);
        m.calls += 1;
        sys::close(old.fd).map_err(|e| format!("close of a dma-buf: {e}"))?;
    }
    m.buffers.push(Exported { fd, bar, buffer });
    Ok(())
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
        m.calls += 1;
        m.importers.push(Imported {
            importer: Importer::open()?,
            import: None,
        });
    }
    let i = rng.below(m.importers.len() as u64) as usize;
    if m.buffers.is_empty() || rng.below(8) == 0 {
        // Close it instead.
        let gone = m.importers.swap_remove(i);
        m.calls += 1;
        return gone
            .importer
            .close()
            .map_err(|e| format!("close of an importer: {e}").into());
    }
    let b = rng.below(m.buffers.len() as u64) as usize;
    let (bar, buffer) = (m.buffers[b].bar, m.buffers[b].buffer.clone());
    let imp = &mut m.importers[i];
    m.calls += 1;
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
        imp.import = Some(Import {
            bar,
            buffer,
            walks: 0,
            calls: 0,
            invalidations: 0,
            table: 0,
        });
        Ok(())
    } else {
        expect_err("IMPORT of a revoked buffer", result, libc::ENODEV)
    }
}

fn walk(rng: &mut Rng, m: &mut Model) -> Outcome {
    if m.importers.is_empty() {
        return Ok(());
    }
    let i = rng.below(m.importers.len() as u64) as usize;
    let pages = rng.below(4) == 0;
    let flags = if pages {
        uapi::VFIO_DMABUF_IMP_WALK_PAGES
    } else {
        0
    };
    let live = m.live;
    let imp = &mut m.importers[i];
    let Some(import) = &mut imp.import else {
        m.calls += 1;
        return expect_err(
            "WALK without an import",
            imp.importer.walk(flags, 1),
            libc::ENOENT,
        );
    };
    let expected: Vec<Entry> = if pages {
        import.buffer.walk_pages()
    } else {
        import.buffer.walk()
    };
    if expected.len() > 4096 {
        // No call made: too large a table to ask for.
        return Ok(());
    }
    m.calls += 1;
    let result = imp.importer.walk(flags, expected.len());
    if !live[import.bar] {
        // The first page frame query fails.
        import.calls += 1;
        return expect_err("WALK of a revoked buffer", result, libc::ENODEV);
    }
    let walk = result.map_err(|e| format!("WALK of a live buffer: {e}"))?;
    let calls = if pages {
        import.buffer.pages()
    } else {
        expected.len() as u64
    };
    ensure!(
        u64::from(walk.entries) == expected.len() as u64,
        "WALK{}: {} entries, expected {}",
        if pages { " (pages)" } else { "" },
        walk.entries,
        expected.len()
    );
    crate::expect::compare(&walk.table, &expected)?;
    ensure!(
        walk.calls == calls,
        "WALK: {} calls, expected {calls}",
        walk.calls
    );
    import.walks += 1;
    import.calls += calls;
    import.table = expected.len() as u64;
    m.tables += 1;
    Ok(())
}

fn get_pfn(rng: &mut Rng, m: &mut Model) -> Outcome {
    if m.importers.is_empty() {
        return Ok(());
    }
    let i = rng.below(m.importers.len() as u64) as usize;
    let live = m.live;
    let imp = &mut m.importers[i];
    m.calls += 1;
    let Some(import) = &mut imp.import else {
        return expect_err(
            "GET_PFN without an import",
            imp.importer.get_pfn(0),
            libc::ENOENT,
        );
    };
    let pgoff = match rng.below(8) {
        0 => import.buffer.pages() + rng.below(1 << 20),
        1 => u64::MAX - rng.below(4),
        _ => rng.below(import.buffer.pages()),
    };
    let result = imp.importer.get_pfn(pgoff);
    import.calls += 1;
    match import.buffer.get_pfn(pgoff) {
        None => expect_err("GET_PFN past the end", result, libc::ERANGE),
        Some(_) if !live[import.bar] => {
            expect_err("GET_PFN of a revoked buffer", result, libc::ENODEV)
        }
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

/// COUNTERS of `imported` against the model.
fn check_counters(imported: &Imported, calls: &mut u64) -> Outcome {
    *calls += 1;
    let result = imported.importer.counters();
    let Some(import) = &imported.import else {
        return expect_err("COUNTERS without an import", result, libc::ENOENT);
    };
    let c = result.map_err(|e| format!("COUNTERS: {e}"))?;
    let expected = (
        import.walks,
        import.calls,
        import.invalidations,
        import.table,
    );
    ensure!(
        (c.walks, c.calls, c.invalidations, c.table_segments) == expected
            && (c.pte_faults, c.pmd_faults, c.pud_faults) == (0, 0, 0),
        "COUNTERS {c:?}, the model says (walks, calls, invalidations, table) = {expected:?} and no faults"
    );
    Ok(())
}

fn counters(rng: &mut Rng, m: &mut Model) -> Outcome {
    if m.importers.is_empty() {
        return Ok(());
    }
    let i = rng.below(m.importers.len() as u64) as usize;
    check_counters(&m.importers[i], &mut m.calls)
}

/// REVOKE (`revoke`) or RESTORE of a random BAR, then every import's
/// COUNTERS.
fn change(ctx: &Context, rng: &mut Rng, m: &mut Model, revoke: bool) -> Outcome {
    let bar = rng.below(BARS.len() as u64) as usize;
    let (which, index) = BARS[bar];
    let exporter = &ctx.device(which)?.exporter;
    m.calls += 1;
    if revoke {
        exporter.revoke(index).map_err(|e| format!("REVOKE: {e}"))?;
        // Told only on the way from live: each import of the BAR once.
        if m.live[bar] {
            for imp in &mut m.importers {
                if let Some(import) = imp.import.as_mut().filter(|i| i.bar == bar) {
                    import.invalidations += 1;
                    import.table = 0;
                }
            }
        }
        m.live[bar] = false;
    } else {
        exporter
            .restore(index)
            .map_err(|e| format!("RESTORE: {e}"))?;
        m.live[bar] = true;
    }
    for imported in &m.importers {
        check_counters(imported, &mut m.calls)?;
    }
    Ok(())
}
