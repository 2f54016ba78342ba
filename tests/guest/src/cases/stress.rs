// SPDX-License-Identifier: GPL-2.0

//! Races: for a bounded time, threads export and close, import and walk,
//! map and touch, revoke and restore, reset the function (FLR through
//! sysfs) and unbind and rebind it, all on ivshmem's BAR2 at once. Errors
//! the races make legitimate (ENODEV, ENOENT, EAGAIN, SIGBUS) are counted,
//! any other is a failure, and every word read through a mapping must be
//! the host's pattern. Afterwards every BAR is live again, a fresh export
//! walks and maps right, and no file descriptor is left.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vfio_dmabuf_uapi::mapping::{ivshmem_pattern, Access, PAGE_SIZE};

use super::export::{check_walk, export_and_import};
use super::setup;
use super::{case, ensure, must, Case, Context, Failure, Outcome, Which};
use crate::expect::{ranges, PAGE};
use crate::exporter::{ExportRequest, Exporter};
use crate::importer::Importer;
use crate::sys;

const SECONDS: u64 = 20;
const BAR: u32 = 2;

pub(super) fn cases() -> Vec<Case> {
    vec![case(
        format!(
            "stress: {SECONDS} s of export, walk, mmap, revoke, FLR and unbind racing on ivshmem"
        ),
        run,
    )]
}

/// Operation counters, and the errors seen.
#[derive(Default)]
struct Counts {
    ops: [AtomicU64; 8],
    tolerated: AtomicU64,
}

const OPS: [&str; 8] = [
    "export",
    "close",
    "import+walk",
    "map+touch",
    "revoke",
    "restore",
    "FLR",
    "unbind+rebind",
];

/// Whether `e` is an error the races make legitimate.
fn tolerated(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::EAGAIN) | Some(libc::ENXIO)
    )
}

struct Shared<'a> {
    node: &'a Path,
    stop: AtomicBool,
    buffers: Mutex<Vec<OwnedFd>>,
    counts: Counts,
    failure: Mutex<Option<String>>,
}

impl Shared<'_> {
    fn fail(&self, message: String) {
        self.failure.lock().unwrap().get_or_insert(message);
        self.stop.store(true, Ordering::Relaxed);
    }

    fn count(&self, op: usize) {
        self.counts.ops[op].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a tolerated error, or fails with any other.
    fn check<T>(&self, what: &str, result: std::io::Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) if tolerated(&e) => {
                self.counts.tolerated.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                self.fail(format!("{what}: {}", sys::describe(&e)));
                None
            }
        }
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    /// The exporter's device, opened afresh (it comes and goes with unbind).
    fn exporter(&self) -> Option<Exporter> {
        Exporter::open(self.node).ok()
    }
}

fn run(ctx: &mut Context) -> Outcome {
    let device = ctx.take_device(Which::Ivshmem)?;
    let function = device.function.clone();
    let bar_size = device.bar(BAR).size();
    must("closing the character device", device.exporter.close())?;
    let fds = must("counting /proc/self/fd", sys::open_fds())?;
    let node = function.node();
    let shared = Shared {
        node: &node,
        stop: AtomicBool::new(false),
        buffers: Mutex::new(Vec::new()),
        counts: Counts::default(),
        failure: Mutex::new(None),
    };
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let f = &function;
    std::thread::scope(|scope| {
        let s = &shared;
        // Exporter: export random slices; close some.
        scope.spawn(move || {
            let mut seed = 0x2545_f491_4f6c_dd1du64;
            while s.running() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let pages = bar_size / PAGE;
                let offset = seed % pages;
                let length = 1 + (seed >> 32) % (pages - offset).min(4096);
                if let Some(exporter) = s.exporter() {
                    let request =
                        ExportRequest::new(BAR, &ranges(&[(offset * PAGE, length * PAGE)]));
                    if let Some(fd) = s.check("EXPORT", exporter.export(&request)) {
                        s.count(0);
                        let mut buffers = s.buffers.lock().unwrap();
                        buffers.push(fd);
                        if buffers.len() > 8 {
                            let victim = (seed as usize) % buffers.len();
                            let old = buffers.remove(victim);
                            drop(buffers);
                            s.check("close", sys::close(old));
                            s.count(1);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        // Importer: import a buffer and walk it.
        scope.spawn(move || {
            while s.running() {
                let dup = s
                    .buffers
                    .lock()
                    .unwrap()
                    .last()
                    .and_then(|fd| fd.try_clone().ok());
                if let Some(fd) = dup {
                    if let Ok(importer) = Importer::open() {
                        if s.check("IMPORT", importer.import(fd.as_fd())).is_some() {
                            s.check("WALK", importer.walk(0, 64));
                        }
                        s.count(2);
                    }
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        // Mapper: map a buffer whole and touch its first word; it must be
        // the pattern or SIGBUS.
        scope.spawn(move || {
            while s.running() {
                let dup = s
                    .buffers
                    .lock()
                    .unwrap()
                    .first()
                    .and_then(|fd| fd.try_clone().ok());
                if let Some(fd) = dup {
                    if let Ok(importer) = Importer::open() {
                        if s.check("IMPORT", importer.import(fd.as_fd())).is_some() {
                            // The first page frame, to know which pattern word to expect.
                            if let Some((pfn, _)) = s.check("GET_PFN", importer.get_pfn(0)) {
                                if let Some(m) =
                                    s.check("mmap", importer.map(0, PAGE_SIZE, PAGE_SIZE))
                                {
                                    let bar_pfn = function_pfn(s.node);
                                    match m.probe_read32(0) {
                                        Ok(Access::Value(v)) => {
                                            if let Some(base) = bar_pfn {
                                                let want = ivshmem_pattern((pfn - base) * PAGE);
                                                if v != want {
                                                    s.fail(format!(
                                                        "read {v:#x}, expected {want:#x}"
                                                    ));
                                                }
                                            }
                                        }
                                        Ok(Access::Sigbus) => {
                                            s.counts.tolerated.fetch_add(1, Ordering::Relaxed);
                                        }
                                        Err(e) => s.fail(format!("touch: {e}")),
                                    }
                                    s.count(3);
                                }
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        // Revoke and restore.
        scope.spawn(move || {
            while s.running() {
                if let Some(exporter) = s.exporter() {
                    if s.check("REVOKE", exporter.revoke(BAR)).is_some() {
                        s.count(4);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                    if s.check("RESTORE", exporter.restore(BAR)).is_some() {
                        s.count(5);
                    }
                }
                std::thread::sleep(Duration::from_millis(30));
            }
        });
        // FLR, then RESTORE (a reset leaves the exports revoked).
        scope.spawn(move || {
            while s.running() {
                std::thread::sleep(Duration::from_millis(700));
                if f.driver().ok().flatten().is_some() && f.reset().is_ok() {
                    s.count(6);
                    if let Some(exporter) = s.exporter() {
                        s.check("RESTORE after FLR", exporter.restore(BAR));
                    }
                }
            }
        });
        // Unbind and bind again.
        scope.spawn(move || {
            while s.running() {
                std::thread::sleep(Duration::from_millis(2500));
                if let Err(e) = f.unbind() {
                    s.fail(format!("unbind: {e}"));
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
                if let Err(e) = f.probe() {
                    s.fail(format!("drivers_probe: {e}"));
                    break;
                }
                s.count(7);
            }
        });
        while Instant::now() < deadline && s.running() {
            std::thread::sleep(Duration::from_millis(100));
        }
        s.stop.store(true, Ordering::Relaxed);
    });

    let counts: Vec<String> = OPS
        .iter()
        .zip(&shared.counts.ops)
        .map(|(name, n)| format!("{name} {}", n.load(Ordering::Relaxed)))
        .collect();
    ctx.note(format!(
        "{}; {} tolerated errors (ENODEV, ENOENT, EAGAIN, SIGBUS)",
        counts.join(", "),
        shared.counts.tolerated.load(Ordering::Relaxed)
    ));
    drop(shared.buffers.into_inner().unwrap());
    if let Some(message) = shared.failure.into_inner().unwrap() {
        return Err(Failure::Fail(message));
    }
    let function = pci_function()?;
    function.bind_by_override()?;
    ctx.set_device(Which::Ivshmem, setup::open(function)?);
    must("RESTORE", ctx.device(Which::Ivshmem)?.exporter.restore(BAR))?;
    let now = must("counting /proc/self/fd", sys::open_fds())?;
    // The device's own file is open again now.
    ensure!(
        now == fds + 1,
        "{fds} open files before (device closed), {now} after (device open)"
    );
    // Everything consistent: a fresh buffer walks and maps right.
    let (buffer, _dmabuf, importer) =
        export_and_import(ctx, Which::Ivshmem, BAR, &ranges(&[(PAGE, 3 << 20)]))?;
    check_walk(&importer, &buffer, None)?;
    let mapping = must("mmap", importer.map(0, buffer.size() as usize, PAGE_SIZE))?;
    let word = must("read", mapping.read32(0))?;
    ensure!(word == ivshmem_pattern(PAGE), "offset 0 reads {word:#x}");
    Ok(())
}

fn pci_function() -> Result<crate::pci::Function, Failure> {
    let (vendor, device) = Which::Ivshmem.id();
    crate::pci::Function::find(vendor, device)?
        .ok_or_else(|| Failure::Fail("ivshmem is gone".to_owned()))
}

/// The first page frame of BAR2 of the function whose node is `node`.
fn function_pfn(node: &Path) -> Option<u64> {
    let address = node.file_name()?.to_str()?;
    let text = std::fs::read_to_string(format!("/sys/bus/pci/devices/{address}/resource")).ok()?;
    let start = vfio_dmabuf_uapi::sysfs::parse_bar_start(&text, BAR).ok()?;
    Some(start / PAGE)
}
