// SPDX-License-Identifier: GPL-2.0

//! Fault injection, in the manner of iommufd's `fail_nth` selftest: for each
//! operation (export, attach, walk, mmap and first touch), make the 1st,
//! 2nd, 3rd... allocation or user copy of the call fail through
//! `/proc/thread-self/fail-nth`, until the call no longer reaches the n-th
//! point. Every injected failure must end in an error or a success (never a
//! crash: the harness checks the kernel log and runs kmemleak after the
//! suite), leave no file descriptor behind, and be followed by the same call
//! succeeding without injection.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;

use super::export::export_and_import;
use super::{case, ensure, must, Case, Context, Failure, Outcome, Which};
use crate::expect::{ranges, PAGE};
use crate::exporter::ExportRequest;
use crate::importer::Importer;
use crate::sys;
use crate::uapi;

/// The most failure points one call is swept over: a call that still reaches
/// its n-th point after this many is reported, not looped on.
const MAX_POINTS: u32 = 2000;

/// The debugfs knobs that make every GFP_KERNEL allocation, every order and
/// every user copy eligible, and keep injections out of the log.
const KNOBS: &[(&str, &str)] = &[
    ("failslab/ignore-gfp-wait", "N"),
    ("failslab/verbose", "0"),
    ("fail_page_alloc/ignore-gfp-wait", "N"),
    ("fail_page_alloc/ignore-gfp-highmem", "N"),
    ("fail_page_alloc/min-order", "0"),
    ("fail_page_alloc/verbose", "0"),
    ("fail_usercopy/verbose", "0"),
];

/// This thread's `fail-nth`, kept open so that arming it costs one write and
/// nothing else runs between the write and the call under test.
struct FailNth {
    file: File,
}

impl FailNth {
    fn open() -> io::Result<Self> {
        for (knob, value) in KNOBS {
            std::fs::write(format!("/sys/kernel/debug/{knob}"), value)
                .map_err(|e| io::Error::new(e.kind(), format!("{knob}: {e}")))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")?;
        Ok(Self { file })
    }

    /// Makes the `n`-th failure point of this thread fail.
    fn arm(&self, n: u32) -> io::Result<()> {
        self.file.write_at(n.to_string().as_bytes(), 0).map(drop)
    }

    /// Whether the armed failure was injected; disarms it either way.
    ///
    /// Reading is itself a failure point (its copy to user space): if the
    /// call under test left exactly one point to go, the read is the one
    /// that fails, with EFAULT, which therefore also means "not injected".
    fn injected(&self) -> io::Result<bool> {
        let mut buf = [0u8; 16];
        let left = match self.file.read_at(&mut buf, 0) {
            Ok(len) => std::str::from_utf8(&buf[..len])
                .ok()
                .and_then(|t| t.trim().parse::<u32>().ok())
                .ok_or_else(|| io::Error::other("fail-nth: not a number"))?,
            Err(e) if e.raw_os_error() == Some(libc::EFAULT) => 1,
            Err(e) => return Err(e),
        };
        // Disarming is a failure point too (the copy from user space): if
        // the read left one point to go, the first write fails with EFAULT
        // and uses it up, and the second disarms.
        if let Err(e) = self.file.write_at(b"0", 0) {
            if e.raw_os_error() != Some(libc::EFAULT) {
                return Err(e);
            }
            self.file.write_at(b"0", 0)?;
        }
        Ok(left == 0)
    }
}

/// What a sweep found.
struct Sweep {
    points: u32,
    errors: u32,
    errnos: Vec<i32>,
}

/// Sweeps `call` (which must make the system calls under test and nothing
/// else that could reach a failure point) over its failure points. After
/// each injection `settle` runs without injection (closing what the call
/// returned, checking the next call succeeds).
fn sweep<T>(
    what: &str,
    mut call: impl FnMut() -> io::Result<T>,
    mut settle: impl FnMut(io::Result<T>) -> Outcome,
) -> Result<Sweep, Failure> {
    let nth = must("fail-nth", FailNth::open())?;
    let fds = must("counting /proc/self/fd", sys::open_fds())?;
    let mut sweep = Sweep {
        points: 0,
        errors: 0,
        errnos: Vec::new(),
    };
    for n in 1..=MAX_POINTS {
        must("arming fail-nth", nth.arm(n))?;
        let result = call();
        let injected = must("reading fail-nth", nth.injected())?;
        if let Err(e) = &result {
            let errno = e.raw_os_error().unwrap_or(0);
            ensure!(
                injected,
                "{what}: failed with {} without an injected failure (n = {n})",
                sys::describe(e)
            );
            sweep.errors += 1;
            if !sweep.errnos.contains(&errno) {
                sweep.errnos.push(errno);
            }
        }
        settle(result).map_err(|f| match f {
            Failure::Fail(m) => Failure::Fail(format!("{what}, failure point {n}: {m}")),
            skip => skip,
        })?;
        let now = must("counting /proc/self/fd", sys::open_fds())?;
        ensure!(
            now == fds,
            "{what}, failure point {n}: {fds} open files before, {now} after"
        );
        if !injected {
            return Ok(sweep);
        }
        sweep.points = n;
    }
    Err(Failure::Fail(format!(
        "{what}: still reaching failure point {MAX_POINTS}"
    )))
}

fn report(ctx: &mut Context, what: &str, sweep: &Sweep) -> Outcome {
    let names: Vec<String> = sweep.errnos.iter().map(|&e| sys::name(e)).collect();
    ctx.note(format!(
        "{what}: {} failure points, {} ended in an error ({})",
        sweep.points,
        sweep.errors,
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    ));
    ensure!(
        sweep.points > 0,
        "{what} reached no failure point: is fail-nth working?"
    );
    Ok(())
}

pub(super) fn cases() -> Vec<Case> {
    vec![
        case("fail-nth: EXPORT of 3 ivshmem ranges", export),
        case("fail-nth: IMPORT (dynamic attach without a device)", import),
        case("fail-nth: WALK of a 393-segment slice", walk),
        case("fail-nth: mmap and first touch of edu BAR0", mmap),
    ]
}

fn slice() -> Vec<crate::expect::ByteRange> {
    ranges(&[
        (3 * PAGE, 5 * PAGE),
        ((1 << 20) + 7 * PAGE, 3 << 20),
        ((512 << 20) + PAGE, 2 * PAGE),
    ])
}

fn export(ctx: &mut Context) -> Outcome {
    let exporter = &ctx.device(Which::Ivshmem)?.exporter;
    let request = ExportRequest::new(2, &slice());
    let mut words = request.words();
    let result = sweep(
        "EXPORT",
        || exporter.export_words(&mut words),
        |result| {
            if let Ok(fd) = result {
                must("closing the dma-buf", sys::close(fd))?;
            }
            let fd = must("EXPORT without injection", exporter.export(&request))?;
            must("closing the dma-buf", sys::close(fd))
        },
    )?;
    report(ctx, "EXPORT", &result)
}

fn import(ctx: &mut Context) -> Outcome {
    let exporter = &ctx.device(Which::Edu)?.exporter;
    let dmabuf = must(
        "EXPORT",
        exporter.export(&ExportRequest::new(0, &ranges(&[(0, 16 * PAGE)]))),
    )?;
    let importer = Importer::open()?;
    let mut arg = uapi::vfio_dmabuf_imp_import {
        argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_import>(),
        fd: dmabuf.as_raw_fd(),
        ..Default::default()
    };
    let result = sweep(
        "IMPORT",
        // SAFETY: IMPORT writes only its argument, which holds no address.
        || unsafe { sys::ioctl(importer.fd(), uapi::VFIO_DMABUF_IMP_IMPORT, &mut arg) },
        |_| {
            let size = must("IMPORT without injection", importer.import(dmabuf.as_fd()))?;
            ensure!(size == 16 * PAGE, "IMPORT says {size:#x} bytes");
            must("WALK after IMPORT", importer.walk(0, 4)).map(drop)
        },
    )?;
    report(ctx, "IMPORT", &result)
}

fn walk(ctx: &mut Context) -> Outcome {
    let (buffer, _dmabuf, importer) = export_and_import(ctx, Which::Ivshmem, 2, &slice())?;
    let expected = buffer.walk().len();
    let mut segments = vec![uapi::vfio_dmabuf_imp_segment::default(); expected];
    let mut arg = uapi::vfio_dmabuf_imp_walk {
        argsz: uapi::argsz::<uapi::vfio_dmabuf_imp_walk>(),
        nr_segments: expected as u32,
        segments: segments.as_mut_ptr() as u64,
        ..Default::default()
    };
    let result = sweep(
        "WALK",
        // SAFETY: WALK writes its argument and at most `nr_segments` entries
        // at `segments`, a live vector of that many entries; any bytes make
        // valid entries.
        || unsafe { sys::ioctl(importer.fd(), uapi::VFIO_DMABUF_IMP_WALK, &mut arg) },
        |_| {
            let walk = must("WALK without injection", importer.walk(0, expected))?;
            ensure!(
                walk.entries as usize == expected,
                "WALK gives {} entries, expected {expected}",
                walk.entries
            );
            Ok(())
        },
    )?;
    report(ctx, "WALK", &result)
}

fn mmap(ctx: &mut Context) -> Outcome {
    let (_buffer, _dmabuf, importer) =
        export_and_import(ctx, Which::Edu, 0, &ranges(&[(0, 1 << 20)]))?;
    let fd = importer.fd().as_raw_fd();
    let result = sweep(
        "mmap and touch",
        || {
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
        |result| {
            if let Ok(id) = result {
                ensure!(
                    id == super::mmap::EDU_ID,
                    "read {id:#010x} through the mapping"
                );
            }
            let mapping = must(
                "mmap without injection",
                importer.map(0, PAGE as usize, PAGE as usize),
            )?;
            let id = must("read", mapping.read32(0))?;
            ensure!(
                id == super::mmap::EDU_ID,
                "read {id:#010x} without injection"
            );
            Ok(())
        },
    )?;
    report(ctx, "mmap and touch", &result)
}
