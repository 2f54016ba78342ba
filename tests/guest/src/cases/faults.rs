// SPDX-License-Identifier: GPL-2.0

//! Fault injection, in the manner of iommufd's `fail_nth` selftest: for each
//! operation (export, attach, walk, GET_PFN, mmap and first touch, REVOKE,
//! RESTORE, invalidation, and the releases), make the 1st, 2nd, 3rd...
//! failure point of the call fail through `/proc/thread-self/fail-nth`,
//! until the call no longer reaches the n-th point.
//!
//! Which kind of point failed is read from the fault attributes' `times`
//! counters (the kernel decrements the one it injected through), so each
//! failure is held to the errno its kind implies: `ENOMEM` for `failslab`
//! and `fail_page_alloc`, `EFAULT` for `fail_usercopy`. A call may succeed
//! when the allocation that failed had a fallback (kvmalloc's vmalloc, a
//! fault retried after `VM_FAULT_OOM`): the case says which points did, and
//! still sees the point's failure counted. After every point the
//! importer's COUNTERS and debugfs `bufinfo` must show the state the
//! outcome implies, no file descriptor may be left, and the same call must
//! then succeed without injection. The harness runs kmemleak after the
//! suite.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;

use vfio_dmabuf_uapi::mapping::{Access, PAGE_SIZE};

use super::mmap::EDU_ID;
use super::{case, ensure, must, refused, Case, Context, Failure, Outcome, Which};
use crate::bufinfo;
use crate::expect::{self, ranges, Buffer, ByteRange, Entry, PAGE};
use crate::exporter::{ExportRequest, Exporter};
use crate::importer::Importer;
use crate::sys;
use crate::uapi;

/// The most failure points one call is swept over: a call that still reaches
/// its n-th point after this many is reported, not looped on.
const MAX_POINTS: u32 = 3000;

/// The debugfs knobs that make every GFP_KERNEL allocation, every order and
/// every user copy eligible, and keep injections out of the log.
const KNOBS: &[(&str, &str)] = &[
    ("failslab/ignore-gfp-wait", "N"),
    ("failslab/cache-filter", "N"),
    ("failslab/verbose", "0"),
    ("fail_page_alloc/ignore-gfp-wait", "N"),
    ("fail_page_alloc/ignore-gfp-highmem", "N"),
    ("fail_page_alloc/min-order", "0"),
    ("fail_page_alloc/verbose", "0"),
    ("fail_usercopy/verbose", "0"),
];

const DEBUGFS: &str = "/sys/kernel/debug";
const BUFINFO: &str = "/sys/kernel/debug/dma_buf/bufinfo";

/// What each attribute's `times` is set to: an injection through fail-nth
/// decrements it, which is how the sweep learns which kind of point failed.
const TIMES: i64 = 1_000_000;

/// The kind of failure point that was made to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Slab,
    PageAlloc,
    Usercopy,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Slab, Kind::PageAlloc, Kind::Usercopy];

    fn attribute(self) -> &'static str {
        match self {
            Kind::Slab => "failslab",
            Kind::PageAlloc => "fail_page_alloc",
            Kind::Usercopy => "fail_usercopy",
        }
    }

    /// The errno a call that fails because of this kind of point returns.
    fn errno(self) -> i32 {
        match self {
            Kind::Slab | Kind::PageAlloc => libc::ENOMEM,
            Kind::Usercopy => libc::EFAULT,
        }
    }
}

/// This thread's `fail-nth`, kept open so that arming it costs one write and
/// nothing else runs between the write and the call under test, and the
/// attributes' `times` counters.
struct FailNth {
    file: File,
    /// `times` of each kind, as found, restored on drop.
    saved: [String; 3],
}

fn times_path(kind: Kind) -> String {
    format!("{DEBUGFS}/{}/times", kind.attribute())
}

fn read_times(kind: Kind) -> io::Result<i64> {
    let text = fs::read_to_string(times_path(kind))?;
    text.trim()
        .parse()
        .map_err(|_| io::Error::other(format!("{}: {text:?}", times_path(kind))))
}

impl FailNth {
    fn open() -> io::Result<Self> {
        for (knob, value) in KNOBS {
            fs::write(format!("{DEBUGFS}/{knob}"), value)
                .map_err(|e| io::Error::new(e.kind(), format!("{knob}: {e}")))?;
        }
        let mut saved: [String; 3] = Default::default();
        for (slot, kind) in saved.iter_mut().zip(Kind::ALL) {
            *slot = fs::read_to_string(times_path(kind))?.trim().to_owned();
            fs::write(times_path(kind), TIMES.to_string())?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")?;
        Ok(Self { file, saved })
    }

    fn times(&self) -> io::Result<[i64; 3]> {
        Ok([
            read_times(Kind::Slab)?,
            read_times(Kind::PageAlloc)?,
            read_times(Kind::Usercopy)?,
        ])
    }

    /// Makes the `n`-th failure point of this thread fail.
    fn arm(&self, n: u32) -> io::Result<()> {
        self.file.write_at(n.to_string().as_bytes(), 0).map(drop)
    }

    /// The kind of point the armed failure was injected at, if it was;
    /// disarms it either way. `before` is `times` before arming.
    ///
    /// Reading is itself a failure point (its copy to user space): if the
    /// call under test left exactly one point to go, the read is the one
    /// that fails, with EFAULT, which therefore also means "not injected"
    /// (and one user copy counted that was not the call's).
    fn injected(&self, before: [i64; 3]) -> io::Result<(Option<Kind>, u32)> {
        let mut own_copies = 0;
        let mut buf = [0u8; 16];
        let left = match self.file.read_at(&mut buf, 0) {
            Ok(len) => std::str::from_utf8(&buf[..len])
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
                .ok_or_else(|| io::Error::other("fail-nth: not a number"))?,
            Err(e) if e.raw_os_error() == Some(libc::EFAULT) => {
                own_copies += 1;
                1
            }
            Err(e) => return Err(e),
        };
        // Disarming is a failure point too (the copy from user space): if
        // the read left one point to go, the first write fails with EFAULT
        // and uses it up, and the second disarms.
        if let Err(e) = self.file.write_at(b"0", 0) {
            if e.raw_os_error() != Some(libc::EFAULT) {
                return Err(e);
            }
            own_copies += 1;
            self.file.write_at(b"0", 0)?;
        }
        let after = self.times()?;
        let mut used = [
            before[0] - after[0],
            before[1] - after[1],
            before[2] - after[2],
        ];
        used[2] -= own_copies;
        let injected = left == 0;
        let kinds: Vec<Kind> = Kind::ALL
            .iter()
            .zip(used)
            .filter(|&(_, n)| n != 0)
            .map(|(&k, _)| k)
            .collect();
        match (injected, kinds.as_slice(), used) {
            (false, [], _) => Ok((None, left)),
            (true, [kind], _) if used.iter().sum::<i64>() == 1 => Ok((Some(*kind), 0)),
            _ => Err(io::Error::other(format!(
                "fail-nth says {} injected, but the attributes' times moved by {used:?} \
                 (failslab, fail_page_alloc, fail_usercopy)",
                if injected { "one point" } else { "nothing" }
            ))),
        }
    }
}

impl Drop for FailNth {
    fn drop(&mut self) {
        let _ = self.file.write_at(b"0", 0);
        for (value, kind) in self.saved.iter().zip(Kind::ALL) {
            let _ = fs::write(times_path(kind), value);
        }
    }
}

/// What a sweep found.
#[derive(Default)]
struct Sweep {
    /// Points injected (the call reached them).
    points: u32,
    /// Points injected, by kind.
    by_kind: [u32; 3],
    /// The calls that failed, by errno.
    errors: Vec<(i32, u32)>,
    /// Points whose failure the call survived: `(n, kind)`.
    fallbacks: Vec<(u32, Kind)>,
    /// With the first point armed, the call reached none and the point was
    /// still armed for the read of fail-nth after it: proof that a sweep
    /// of no point ran armed.
    none_reached: bool,
}

/// Sweeps a call over its failure points. For each `n`, `prepare` sets the
/// scene without injection, `call` (which must make the system call under
/// test and nothing else that could reach a failure point) runs with the
/// n-th point armed, and `check` judges the state the outcome left, without
/// injection, and makes the call once more, which must succeed. Every
/// failure must carry the errno its kind implies; no descriptor may be
/// left.
fn sweep<S, T>(
    what: &str,
    state: &mut S,
    mut prepare: impl FnMut(&mut S) -> Outcome,
    mut call: impl FnMut(&mut S) -> io::Result<T>,
    mut check: impl FnMut(&mut S, io::Result<T>, Option<Kind>) -> Outcome,
) -> Result<Sweep, Failure> {
    let nth = must("fail-nth", FailNth::open())?;
    let mut sweep = Sweep::default();
    let at = |n: u32, f: Failure| match f {
        Failure::Fail(m) => Failure::Fail(format!("{what}, failure point {n}: {m}")),
        skip => skip,
    };
    for n in 1..=MAX_POINTS {
        let fds = must("counting /proc/self/fd", sys::open_fds())?;
        prepare(state).map_err(|f| at(n, f))?;
        let before = must("reading the attributes' times", nth.times())?;
        must("arming fail-nth", nth.arm(n))?;
        let result = call(state);
        let (kind, left) = must("reading fail-nth", nth.injected(before))?;
        sweep.none_reached = n == 1 && kind.is_none() && left == 1;
        match (&result, kind) {
            (Err(e), None) => {
                return Err(at(
                    n,
                    Failure::Fail(format!(
                        "failed with {} without an injected failure",
                        sys::describe(e)
                    )),
                ))
            }
            (Err(e), Some(kind)) => {
                let errno = e.raw_os_error().unwrap_or(0);
                ensure!(
                    errno == kind.errno(),
                    "{what}, failure point {n} ({}): {}, expected {}",
                    kind.attribute(),
                    sys::describe(e),
                    sys::name(kind.errno())
                );
                match sweep.errors.iter_mut().find(|(e, _)| *e == errno) {
                    Some((_, count)) => *count += 1,
                    None => sweep.errors.push((errno, 1)),
                }
            }
            (Ok(_), Some(Kind::Usercopy)) => {
                return Err(at(
                    n,
                    Failure::Fail(
                        "succeeded although one of its user copies failed (fail_usercopy)"
                            .to_owned(),
                    ),
                ))
            }
            (Ok(_), Some(kind)) => sweep.fallbacks.push((n, kind)),
            (Ok(_), None) => {}
        }
        if let Some(kind) = kind {
            sweep.points = n;
            sweep.by_kind[kind as usize] += 1;
        }
        check(state, result, kind).map_err(|f| at(n, f))?;
        let now = must("counting /proc/self/fd", sys::open_fds())?;
        ensure!(
            now == fds,
            "{what}, failure point {n}: {fds} open files before, {now} after"
        );
        if kind.is_none() {
            return Ok(sweep);
        }
    }
    Err(Failure::Fail(format!(
        "{what}: still reaching failure point {MAX_POINTS}"
    )))
}

/// Notes what the sweep found and fails if it injected nothing, or (when
/// `must_fail` says the call can fail) no injection made it fail. A call
/// that cannot fail (a close) may have no failure point at all, if fail-nth
/// is seen armed after it.
fn report(ctx: &mut Context, what: &str, sweep: &Sweep, must_fail: bool) -> Outcome {
    let errors: Vec<String> = sweep
        .errors
        .iter()
        .map(|&(e, n)| format!("{n} {}", sys::name(e)))
        .collect();
    let fallbacks: Vec<String> = sweep
        .fallbacks
        .iter()
        .map(|&(n, kind)| format!("{n} ({})", kind.attribute()))
        .collect();
    ctx.note(format!(
        "{what}: {} failure points ({} failslab, {} fail_page_alloc, {} fail_usercopy); \
         errors: {}; succeeded anyway at: {}",
        sweep.points,
        sweep.by_kind[0],
        sweep.by_kind[1],
        sweep.by_kind[2],
        if errors.is_empty() {
            "none".to_owned()
        } else {
            errors.join(", ")
        },
        if fallbacks.is_empty() {
            "none".to_owned()
        } else {
            fallbacks.join(", ")
        }
    ));
    if sweep.points == 0 && !must_fail && sweep.none_reached {
        ctx.note(format!(
            "{what}: no failure point on this path (the first one armed was still armed after the call)"
        ));
        return Ok(());
    }
    ensure!(
        sweep.points > 0,
        "{what} reached no failure point: is fail-nth working?"
    );
    ensure!(
        !must_fail || !sweep.errors.is_empty(),
        "{what}: no injected failure made the call fail"
    );
    Ok(())
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("fail-nth: EXPORT of 3 ivshmem ranges", export),
        case(
            "fail-nth: IMPORT (dynamic attach without a device), with COUNTERS and bufinfo after each point",
            import,
        ),
        case("fail-nth: WALK of a 393-segment slice, with COUNTERS after each point", walk),
        case("fail-nth: GET_PFN, with COUNTERS after each point", get_pfn),
        case("fail-nth: mmap and first touch of edu BAR0", mmap),
        case("fail-nth: REVOKE of edu BAR0 with a buffer but no import", revoke),
        case("fail-nth: RESTORE of edu BAR0 with an import", restore),
        case(
            "fail-nth: invalidation (REVOKE with an import, its table and a mapping live)",
            invalidation,
        ),
        case(
            "fail-nth: release: closing a dma-buf's last descriptor while an import holds it",
            release_dmabuf_imported,
        ),
        case(
            "fail-nth: release: closing the importer that holds a dma-buf's last reference",
            release_importer,
        ),
        case(
            "fail-nth: release: closing a dma-buf's only reference, never imported",
            release_dmabuf,
        ),
    ]
}

fn slice() -> Vec<ByteRange> {
    ranges(&[
        (3 * PAGE, 5 * PAGE),
        ((1 << 20) + 7 * PAGE, 3 << 20),
        ((512 << 20) + PAGE, 2 * PAGE),
    ])
}

/// Every dma-buf debugfs lists.
fn bufinfo() -> Result<Vec<bufinfo::Object>, Failure> {
    let text = must(BUFINFO, fs::read_to_string(BUFINFO))?;
    Ok(bufinfo::parse(&text))
}

/// The attachments bufinfo lists for the dma-buf of inode `ino`, or `None`
/// if it does not list the buffer.
fn attachments(ino: u64) -> Result<Option<Vec<String>>, Failure> {
    Ok(bufinfo()?
        .into_iter()
        .find(|o| o.ino == ino)
        .map(|o| o.attachments))
}

/// The buffer of inode `ino` is listed with `count` attachments, all
/// device-less (the importer's).
fn expect_attached(ino: u64, count: usize) -> Outcome {
    match attachments(ino)? {
        None => Err(Failure::Fail(format!(
            "bufinfo does not list the dma-buf (inode {ino})"
        ))),
        Some(a) if a.len() == count && a.iter().all(|d| d == "(no device)") => Ok(()),
        Some(a) => Err(Failure::Fail(format!(
            "bufinfo lists attachments {a:?}, expected {count} \"(no device)\""
        ))),
    }
}

/// bufinfo no longer lists the dma-buf of inode `ino`.
fn expect_released(ino: u64) -> Outcome {
    ensure!(
        attachments(ino)?.is_none(),
        "bufinfo still lists the dma-buf (inode {ino}) after its last reference went"
    );
    Ok(())
}

fn vfio_dmabuf_objects() -> Result<usize, Failure> {
    Ok(bufinfo()?
        .iter()
        .filter(|o| o.exp_name == "vfio_dmabuf")
        .count())
}

fn counters(importer: &Importer) -> Result<uapi::vfio_dmabuf_imp_counters, Failure> {
    must("COUNTERS", importer.counters())
}

fn export(ctx: &mut Context) -> Outcome {
    let device = ctx.device(Which::Ivshmem)?;
    let exporter = &device.exporter;
    let buffer = Buffer::new(&slice(), device.bar(2))?;
    let request = ExportRequest::new(2, &slice());
    let mut words = request.words();
    let baseline = vfio_dmabuf_objects()?;
    let result = sweep(
        "EXPORT",
        &mut (),
        |_| Ok(()),
        |_| exporter.export_words(&mut words),
        |_, result, _| {
            match result {
                Ok(fd) => {
                    let ino = must("fstat", sys::inode(fd.as_fd()))?;
                    let listed = bufinfo()?.into_iter().find(|o| o.ino == ino);
                    must("closing the dma-buf", sys::close(fd))?;
                    let Some(object) = listed else {
                        return Err(Failure::Fail(
                            "bufinfo does not list the dma-buf EXPORT returned".to_owned(),
                        ));
                    };
                    ensure!(
                        object.size == buffer.size() && object.attachments.is_empty(),
                        "bufinfo lists {object:?}, expected {:#x} bytes and no attachment",
                        buffer.size()
                    );
                    expect_released(ino)?;
                }
                Err(_) => {
                    let now = vfio_dmabuf_objects()?;
                    ensure!(
                        now == baseline,
                        "{now} vfio_dmabuf buffers in bufinfo after a failed EXPORT, {baseline} before"
                    );
                }
            }
            let fd = must("EXPORT without injection", exporter.export(&request))?;
            must("closing the dma-buf", sys::close(fd))
        },
    )?;
    report(ctx, "EXPORT", &result, true)
}

fn import(ctx: &mut Context) -> Outcome {
    let exporter = &ctx.device(Which::Edu)?.exporter;
    let dmabuf = must(
        "EXPORT",
        exporter.export(&ExportRequest::new(0, &ranges(&[(0, 16 * PAGE)]))),
    )?;
    let ino = must("fstat", sys::inode(dmabuf.as_fd()))?;
    let importer = Importer::open()?;
    must("IMPORT", importer.import(dmabuf.as_fd()))?;
    let mut arg = uapi::vfio_dmabuf_imp_import {
        argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_import>(),
        fd: dmabuf.as_raw_fd(),
        ..Default::default()
    };
    let result = sweep(
        "IMPORT",
        &mut (),
        // The import being replaced has walked once, so that the counters
        // tell it from a new one.
        |_| {
            let walks = counters(&importer)?.walks;
            if walks == 0 {
                must("WALK", importer.walk(0, 4))?;
            }
            Ok(())
        },
        // SAFETY: IMPORT writes only its argument, which holds no address.
        |_| unsafe { sys::ioctl(importer.fd(), uapi::VFIO_DMABUF_IMP_IMPORT, &mut arg) },
        |_, result, kind| {
            let after = importer.counters();
            match (&result, kind) {
                (Ok(_), _) => {
                    let c = must("COUNTERS after IMPORT", after)?;
                    ensure!(
                        (c.walks, c.calls, c.invalidations, c.table_segments) == (0, 0, 0, 0),
                        "COUNTERS of a new import: {c:?}"
                    );
                    expect_attached(ino, 1)?;
                }
                // The argument could not be read (the old import stays, with
                // its walk) or written back (the new one is in place).
                (Err(_), Some(Kind::Usercopy)) => {
                    let c = must("COUNTERS after IMPORT failed with EFAULT", after)?;
                    ensure!(
                        c.walks <= 1 && c.invalidations == 0,
                        "COUNTERS after IMPORT failed with EFAULT: {c:?}"
                    );
                    expect_attached(ino, 1)?;
                }
                // Allocation failed: the old import is gone, no new one.
                (Err(_), _) => {
                    refused(
                        "COUNTERS after IMPORT failed with ENOMEM",
                        after,
                        libc::ENOENT,
                    )?;
                    expect_attached(ino, 0)?;
                }
            }
            let size = must("IMPORT without injection", importer.import(dmabuf.as_fd()))?;
            ensure!(size == 16 * PAGE, "IMPORT says {size:#x} bytes");
            expect_attached(ino, 1)?;
            must("WALK after IMPORT", importer.walk(0, 4)).map(drop)
        },
    )?;
    report(ctx, "IMPORT", &result, true)?;
    must("closing the importer", importer.close())?;
    expect_attached(ino, 0)
}

fn walk(ctx: &mut Context) -> Outcome {
    let (buffer, _dmabuf, importer) =
        super::export::export_and_import(ctx, Which::Ivshmem, 2, &slice())?;
    let expected = buffer.walk();
    let count = expected.len();
    let mut segments = vec![uapi::vfio_dmabuf_imp_segment::default(); count];
    let mut arg = uapi::vfio_dmabuf_imp_walk {
        argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_walk>(),
        nr_segments: count as u32,
        segments: segments.as_mut_ptr() as u64,
        ..Default::default()
    };
    let segments_addr = arg.segments;
    let result = sweep(
        "WALK",
        &mut counters(&importer)?,
        |before| {
            *before = counters(&importer)?;
            Ok(())
        },
        |_| {
            arg.nr_segments = count as u32;
            arg.segments = segments_addr;
            // SAFETY: WALK writes its argument and at most `nr_segments`
            // entries at `segments`, a live vector of that many entries; any
            // bytes make valid entries.
            unsafe { sys::ioctl(importer.fd(), uapi::VFIO_DMABUF_IMP_WALK, &mut arg) }
        },
        |before, result, _| {
            let c = counters(&importer)?;
            let kept = c.walks == before.walks + 1;
            ensure!(
                c.invalidations == 0
                    && (kept || c.walks == before.walks)
                    && (c.table_segments == 0 || c.table_segments == count as u64)
                    && (!kept || c.table_segments == count as u64)
                    && c.calls >= before.calls
                    && c.calls <= before.calls + count as u64
                    && (!kept || c.calls == before.calls + count as u64),
                "COUNTERS {c:?} after the walk ({}), before it {before:?}; {count} entries expected",
                match &result {
                    Ok(_) => "succeeded".to_owned(),
                    Err(e) => sys::describe(e),
                }
            );
            if result.is_ok() {
                ensure!(kept, "a successful WALK kept no table: {c:?}");
                let table: Vec<Entry> = segments.iter().map(Entry::from).collect();
                expect::compare(&table, &expected)?;
            }
            let walk = must("WALK without injection", importer.walk(0, count))?;
            expect::compare(&walk.table, &expected)?;
            Ok(())
        },
    )?;
    report(ctx, "WALK", &result, true)
}

fn get_pfn(ctx: &mut Context) -> Outcome {
    let (buffer, _dmabuf, importer) =
        super::export::export_and_import(ctx, Which::Ivshmem, 2, &slice())?;
    // The second range's first page: its frame is skewed against the page.
    let pgoff = 5;
    let expected = buffer
        .get_pfn(pgoff)
        .ok_or_else(|| Failure::Fail("page 5 is outside the slice".to_owned()))?;
    let arg = uapi::vfio_dmabuf_imp_pfn {
        argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_pfn>(),
        pgoff,
        ..Default::default()
    };
    let result = sweep(
        "GET_PFN",
        &mut (counters(&importer)?, arg),
        |(before, _)| {
            *before = counters(&importer)?;
            Ok(())
        },
        |(_, arg)| {
            arg.pfn = 0;
            arg.order = 0;
            // SAFETY: GET_PFN writes only its argument, which holds no
            // address.
            unsafe { sys::ioctl(importer.fd(), uapi::VFIO_DMABUF_IMP_GET_PFN, arg) }
        },
        |(before, arg), result, _| {
            let c = counters(&importer)?;
            ensure!(
                c.invalidations == 0
                    && c.walks == before.walks
                    && c.table_segments == before.table_segments
                    && (c.calls == before.calls || c.calls == before.calls + 1)
                    && (result.is_err() || c.calls == before.calls + 1),
                "COUNTERS {c:?} after GET_PFN, before it {before:?}"
            );
            if result.is_ok() {
                ensure!(
                    (arg.pfn, arg.order) == expected,
                    "GET_PFN of page {pgoff}: ({:#x}, {}), expected {expected:x?}",
                    arg.pfn,
                    arg.order
                );
            }
            let got = must("GET_PFN without injection", importer.get_pfn(pgoff))?;
            ensure!(got == expected, "GET_PFN: {got:x?}, expected {expected:x?}");
            Ok(())
        },
    )?;
    report(ctx, "GET_PFN", &result, true)
}

fn mmap(ctx: &mut Context) -> Outcome {
    let (_buffer, dmabuf, importer) =
        super::export::export_and_import(ctx, Which::Edu, 0, &ranges(&[(0, 1 << 20)]))?;
    let ino = must("fstat", sys::inode(dmabuf.as_fd()))?;
    let fd = importer.fd().as_raw_fd();
    let result = sweep(
        "mmap and touch",
        &mut counters(&importer)?,
        |before| {
            *before = counters(&importer)?;
            Ok(())
        },
        |_| {
            // SAFETY: a new shared mapping of the importer file at an
            // address the kernel chooses, read once and unmapped before
            // anything else could use it. A fault that cannot allocate is
            // retried by the kernel; a SIGBUS would end this test program,
            // which the harness reports.
            unsafe {
                let addr = libc::mmap(
                    std::ptr::null_mut(),
                    PAGE as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd,
                    0,
                );
                if addr == libc::MAP_FAILED {
                    return Err(io::Error::last_os_error());
                }
                let id = addr.cast::<u32>().read_volatile();
                libc::munmap(addr, PAGE as usize);
                Ok(id)
            }
        },
        |before, result, _| {
            let c = counters(&importer)?;
            let faults = if result.is_ok() { 1 } else { 0 };
            ensure!(
                c.invalidations == 0
                    && c.pte_faults == before.pte_faults + faults
                    && c.pmd_faults == before.pmd_faults
                    && c.pud_faults == before.pud_faults,
                "COUNTERS {c:?} after mmap and touch, before {before:?}"
            );
            expect_attached(ino, 1)?;
            if let Ok(id) = result {
                ensure!(id == EDU_ID, "read {id:#010x} through the mapping");
            }
            let mapping = must(
                "mmap without injection",
                importer.map(0, PAGE as usize, PAGE as usize),
            )?;
            let id = must("read", mapping.read32(0))?;
            ensure!(id == EDU_ID, "read {id:#010x} without injection");
            Ok(())
        },
    )?;
    report(ctx, "mmap and touch", &result, true)
}

/// edu's exporter, and a whole-BAR buffer of it, left live at the end.
fn edu(ctx: &Context) -> Result<(&Exporter, Buffer, Vec<ByteRange>), Failure> {
    let device = ctx.device(Which::Edu)?;
    let whole = ranges(&[(0, device.bar(0).size())]);
    let buffer = Buffer::new(&whole, device.bar(0))?;
    Ok((&device.exporter, buffer, whole))
}

fn revoke(ctx: &mut Context) -> Outcome {
    let (exporter, _buffer, whole) = edu(ctx)?;
    let dmabuf = must("EXPORT", exporter.export(&ExportRequest::new(0, &whole)))?;
    let mut arg = crate::exporter::revoke_arg(0);
    let result = sweep(
        "REVOKE",
        &mut (),
        |_| must("RESTORE", exporter.restore(0)),
        |_| exporter.change(uapi::VFIO_DMABUF_REVOKE, &mut arg),
        |_, result, _| {
            // Whether it took effect, as an importer sees it.
            let probe = Importer::open()?;
            let import = probe.import(dmabuf.as_fd());
            must("closing the importer", probe.close())?;
            match result {
                Ok(()) => refused("IMPORT after REVOKE", import, libc::ENODEV)?,
                Err(_) => {
                    must("IMPORT after a failed REVOKE", import)?;
                }
            }
            must("REVOKE without injection", exporter.revoke(0))
        },
    );
    let restored = must("RESTORE", exporter.restore(0));
    let result = result?;
    restored?;
    report(ctx, "REVOKE", &result, true)
}

fn restore(ctx: &mut Context) -> Outcome {
    let (exporter, buffer, whole) = edu(ctx)?;
    let expected = buffer.walk();
    let dmabuf = must("EXPORT", exporter.export(&ExportRequest::new(0, &whole)))?;
    let importer = Importer::open()?;
    must("IMPORT", importer.import(dmabuf.as_fd()))?;
    let mut arg = crate::exporter::revoke_arg(0);
    let result = sweep(
        "RESTORE",
        &mut 0u64,
        |revokes| {
            must("REVOKE", exporter.revoke(0))?;
            *revokes += 1;
            Ok(())
        },
        |_| exporter.change(uapi::VFIO_DMABUF_RESTORE, &mut arg),
        |revokes, result, _| {
            let revokes = *revokes;
            let walk = importer.walk(0, expected.len());
            match result {
                Ok(()) => {
                    let walk = must("WALK after RESTORE", walk)?;
                    expect::compare(&walk.table, &expected)?;
                }
                Err(_) => refused("WALK after a failed RESTORE", walk, libc::ENODEV)?,
            }
            let c = counters(&importer)?;
            ensure!(
                c.invalidations == revokes,
                "{} invalidations after {revokes} REVOKEs: {c:?}",
                c.invalidations
            );
            must("RESTORE without injection", exporter.restore(0))?;
            let walk = must("WALK after RESTORE", importer.walk(0, expected.len()))?;
            expect::compare(&walk.table, &expected)?;
            Ok(())
        },
    );
    let restored = must("RESTORE", exporter.restore(0));
    let result = result?;
    restored?;
    report(ctx, "RESTORE", &result, true)
}

fn invalidation(ctx: &mut Context) -> Outcome {
    let (exporter, buffer, whole) = edu(ctx)?;
    let expected = buffer.walk();
    let dmabuf = must("EXPORT", exporter.export(&ExportRequest::new(0, &whole)))?;
    let importer = Importer::open()?;
    must("IMPORT", importer.import(dmabuf.as_fd()))?;
    let mapping = must("mmap", importer.map(0, PAGE_SIZE, PAGE_SIZE))?;
    let mut arg = crate::exporter::revoke_arg(0);
    let result = sweep(
        "invalidation",
        &mut counters(&importer)?,
        |before| {
            must("RESTORE", exporter.restore(0))?;
            let walk = must("WALK", importer.walk(0, expected.len()))?;
            expect::compare(&walk.table, &expected)?;
            let id = must("read", mapping.read32(0))?;
            ensure!(id == EDU_ID, "read {id:#010x} before REVOKE");
            *before = counters(&importer)?;
            Ok(())
        },
        |_| exporter.change(uapi::VFIO_DMABUF_REVOKE, &mut arg),
        |before, result, _| {
            let c = counters(&importer)?;
            // A child inherits this process's page table entries of the
            // mapping (a VM_PFNMAP mapping's are copied at fork): it reads
            // the device unless the invalidation zapped them.
            let access = must("read in a child", mapping.probe_read32(0))?;
            match result {
                Ok(()) => ensure!(
                    c.invalidations == before.invalidations + 1
                        && c.table_segments == 0
                        && access == Access::Sigbus,
                    "after REVOKE: COUNTERS {c:?} (before {before:?}), a read gave {access:x?}"
                ),
                Err(_) => ensure!(
                    c.invalidations == before.invalidations
                        && c.table_segments == before.table_segments
                        && access == Access::Value(EDU_ID),
                    "after a failed REVOKE: COUNTERS {c:?} (before {before:?}), a read gave {access:x?}"
                ),
            }
            must("REVOKE without injection", exporter.revoke(0))
        },
    );
    let restored = must("RESTORE", exporter.restore(0));
    drop(mapping);
    let result = result?;
    restored?;
    report(ctx, "invalidation", &result, true)
}

/// Objects a release sweep makes afresh for each point.
#[derive(Default)]
struct Release {
    dmabuf: Option<OwnedFd>,
    importer: Option<Importer>,
    ino: u64,
}

fn fresh_buffer(exporter: &Exporter, state: &mut Release, import: bool) -> Outcome {
    let dmabuf = must(
        "EXPORT",
        exporter.export(&ExportRequest::new(0, &ranges(&[(PAGE, 4 * PAGE)]))),
    )?;
    state.ino = must("fstat", sys::inode(dmabuf.as_fd()))?;
    if import {
        let importer = Importer::open()?;
        must("IMPORT", importer.import(dmabuf.as_fd()))?;
        must("WALK", importer.walk(0, 8))?;
        state.importer = Some(importer);
    }
    state.dmabuf = Some(dmabuf);
    Ok(())
}

fn taken<T>(slot: &mut Option<T>, what: &str) -> io::Result<T> {
    slot.take()
        .ok_or_else(|| io::Error::other(format!("no {what} to close")))
}

fn release_dmabuf_imported(ctx: &mut Context) -> Outcome {
    let exporter = &ctx.device(Which::Edu)?.exporter;
    let result = sweep(
        "close of an imported dma-buf",
        &mut Release::default(),
        |s| fresh_buffer(exporter, s, true),
        |s| sys::close(taken(&mut s.dmabuf, "dma-buf")?),
        |s, result, _| {
            must("close", result)?;
            // The import still holds the buffer: nothing was released.
            expect_attached(s.ino, 1)?;
            let importer = s
                .importer
                .take()
                .ok_or_else(|| Failure::Fail("no importer".to_owned()))?;
            must("WALK after the dma-buf's close", importer.walk(0, 8))?;
            must("closing the importer", importer.close())?;
            expect_released(s.ino)
        },
    )?;
    report(ctx, "close of an imported dma-buf", &result, false)
}

fn release_importer(ctx: &mut Context) -> Outcome {
    let exporter = &ctx.device(Which::Edu)?.exporter;
    let result = sweep(
        "close of the importer holding the last reference",
        &mut Release::default(),
        |s| {
            fresh_buffer(exporter, s, true)?;
            let dmabuf = s
                .dmabuf
                .take()
                .ok_or_else(|| Failure::Fail("no dma-buf".to_owned()))?;
            must("closing the dma-buf", sys::close(dmabuf))?;
            expect_attached(s.ino, 1)
        },
        |s| taken(&mut s.importer, "importer")?.close(),
        |s, result, _| {
            must("close", result)?;
            expect_released(s.ino)
        },
    )?;
    report(
        ctx,
        "close of the importer holding the last reference",
        &result,
        false,
    )
}

fn release_dmabuf(ctx: &mut Context) -> Outcome {
    let exporter = &ctx.device(Which::Edu)?.exporter;
    let result = sweep(
        "close of a dma-buf's only reference",
        &mut Release::default(),
        |s| fresh_buffer(exporter, s, false),
        |s| sys::close(taken(&mut s.dmabuf, "dma-buf")?),
        |s, result, _| {
            must("close", result)?;
            expect_released(s.ino)
        },
    )?;
    report(ctx, "close of a dma-buf's only reference", &result, false)
}
