// SPDX-License-Identifier: GPL-2.0

//! Races: for a bounded time, threads export and close, import and walk,
//! map and read, revoke and restore, reset the function through sysfs (a
//! secondary bus reset: see [`RESET_METHOD`]) and unbind and rebind it, all
//! on ivshmem's BAR2 at once.
//!
//! Each thread that changes the state says so before and after, in a
//! counter that is odd while the change is under way; every other call
//! reads the counters before and after itself. A call that no change
//! overlapped must succeed; one on a buffer of a binding already unbound
//! must fail with `ENODEV`; only the others may meet `ENODEV`, `EAGAIN`,
//! `EBUSY`, a missing device node or `SIGBUS`, and any other error fails
//! the case. Every walk is compared whole with what the request and sysfs
//! give (`expect::Buffer`), every page frame too, and every mapped read
//! with the host's pattern at several words. Each kind of thread must reach
//! a minimum of successful operations ([`MINIMUM`]). Afterwards every BAR is
//! live again, a fresh export walks and maps right, and no file descriptor
//! or buffer is left.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use vfio_dmabuf_uapi::mapping::{ivshmem_pattern, Mapping, PAGE_SIZE};

use super::export::{check_walk, export_and_import};
use super::setup;
use super::{case, ensure, must, Case, Context, Failure, Outcome, Which};
use crate::expect::{self, ranges, Buffer, PAGE};
use crate::exporter::{ExportRequest, Exporter};
use crate::importer::Importer;
use crate::pci::{self, Resource};
use crate::sys;

/// The race runs at least `SECONDS`, and on until every kind of thread has
/// reached its minimum, at most `MAX_SECONDS`.
const SECONDS: u64 = 20;
const MAX_SECONDS: u64 = 60;
const BAR: u32 = 2;

/// The reset the PCI core makes of ivshmem when 1 is written to its sysfs
/// `reset`: the first method `reset_method` lists. QEMU's ivshmem-plain has
/// neither FLR nor a PM capability; it is alone behind its PCIe root port,
/// so the core resets it by resetting the port's secondary bus.
pub(crate) const RESET_METHOD: &str = "bus";

/// What each kind of thread must have done successfully at least.
const MINIMUM: [u64; KINDS] = [40, 15, 10, 10, 10, 4, 3];
const KINDS: usize = 7;
const NAMES: [&str; KINDS] = [
    "export",
    "import+walk",
    "map+read",
    "revoke",
    "restore",
    "bus reset+restore",
    "unbind+rebind",
];

pub(super) fn cases() -> Vec<Case> {
    vec![case(
        format!(
            "stress: {SECONDS} to {MAX_SECONDS} s of export, walk, mmap, revoke, sysfs {RESET_METHOD} reset and unbind racing on ivshmem, each thread kind reaching its minimum"
        ),
        run,
    )]
}

/// The state changes in flight, as the threads that make them announce
/// them: each counter is odd while its change is under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    /// Unbind and bind again.
    binding: u64,
    /// Unbinds that have completed.
    unbinds: u64,
    /// REVOKE until RESTORE has returned.
    revoke: u64,
    /// Reset until RESTORE has returned.
    reset: u64,
}

impl Window {
    fn quiet(self) -> bool {
        self.binding.is_multiple_of(2)
            && self.revoke.is_multiple_of(2)
            && self.reset.is_multiple_of(2)
    }
}

/// No change of any kind was under way at `a`, nor started until `b`.
fn quiet(a: Window, b: Window) -> bool {
    a == b && a.quiet()
}

/// The binding did not change from `a` to `b`.
fn bound(a: Window, b: Window) -> bool {
    a.binding == b.binding && a.binding.is_multiple_of(2)
}

/// An exported buffer, with what it should hold.
struct Held {
    fd: OwnedFd,
    buffer: Buffer,
    /// The completed unbinds when it was exported, if no unbind overlapped
    /// the export (so that it is known which binding it belongs to).
    binding: Option<u64>,
}

struct Shared<'a> {
    node: &'a Path,
    function: &'a pci::Function,
    bar: Resource,
    stop: AtomicBool,
    binding: AtomicU64,
    unbinds: AtomicU64,
    revoke: AtomicU64,
    reset: AtomicU64,
    buffers: Mutex<Vec<Held>>,
    done: [AtomicU64; KINDS],
    /// Errors the races made legitimate.
    tolerated: AtomicU64,
    failure: Mutex<Option<String>>,
}

impl Shared<'_> {
    fn window(&self) -> Window {
        Window {
            binding: self.binding.load(Ordering::SeqCst),
            unbinds: self.unbinds.load(Ordering::SeqCst),
            revoke: self.revoke.load(Ordering::SeqCst),
            reset: self.reset.load(Ordering::SeqCst),
        }
    }

    fn fail(&self, message: String) {
        self.failure.lock().unwrap().get_or_insert(message);
        self.stop.store(true, Ordering::SeqCst);
    }

    fn done(&self, kind: usize) {
        self.done[kind].fetch_add(1, Ordering::Relaxed);
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::SeqCst)
    }

    /// Sleeps `ms` milliseconds, or less if the race is stopped.
    fn pause(&self, ms: u64) {
        let end = Instant::now() + Duration::from_millis(ms);
        while self.running() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10).min(end - Instant::now()));
        }
    }

    /// The value, or a tolerated error if `legit` allows it (counted), or a
    /// failure (`None` either way).
    fn judge<T>(
        &self,
        what: &str,
        result: io::Result<T>,
        legit: impl Fn(i32) -> bool,
        window: (Window, Window),
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) if e.raw_os_error().is_some_and(&legit) => {
                self.tolerated.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                self.fail(format!(
                    "{what}: {} (window {:?} .. {:?})",
                    sys::describe(&e),
                    window.0,
                    window.1
                ));
                None
            }
        }
    }

    /// Opens the character device; it may be missing only while the
    /// function is unbound.
    fn exporter(&self, w0: Window) -> Option<Exporter> {
        let opened = Exporter::try_open(self.node);
        let w1 = self.window();
        let legit = !bound(w0, w1);
        match opened {
            Ok(exporter) => Some(exporter),
            Err(e)
                if legit
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENODEV | libc::ENXIO)
                    ) =>
            {
                self.tolerated.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(e) => {
                self.fail(format!(
                    "open of {}: {} (window {w0:?} .. {w1:?})",
                    self.node.display(),
                    sys::describe(&e)
                ));
                None
            }
        }
    }
}

/// The binding `held` belongs to is known to be unbound by `w`.
fn gone(binding: Option<u64>, w: Window) -> bool {
    binding.is_some_and(|b| w.unbinds > b)
}

/// Nothing can have taken `held`'s memory away from `w0` to `w1`.
fn live(binding: Option<u64>, w0: Window, w1: Window) -> bool {
    binding == Some(w0.unbinds) && quiet(w0, w1)
}

fn run(ctx: &mut Context) -> Outcome {
    let device = ctx.take_device(Which::Ivshmem)?;
    let function = device.function.clone();
    let bar = *device.bar(BAR);
    must("closing the character device", device.exporter.close())?;
    let methods = function.reset_methods();
    ctx.note(format!(
        "{} reset_method: {}",
        function.address,
        methods.as_deref().unwrap_or("(none)")
    ));
    let first = methods
        .as_deref()
        .and_then(|m| m.split_whitespace().next())
        .unwrap_or("");
    ensure!(
        first == RESET_METHOD,
        "the PCI core resets {} by {first:?} first, not by {RESET_METHOD:?}: the case's name is wrong",
        function.address
    );
    let fds = must("counting /proc/self/fd", sys::open_fds())?;
    let buffers_before = vfio_dmabuf_buffers()?;
    let node = function.node();
    let shared = Shared {
        node: &node,
        function: &function,
        bar,
        stop: AtomicBool::new(false),
        binding: AtomicU64::new(0),
        unbinds: AtomicU64::new(0),
        revoke: AtomicU64::new(0),
        reset: AtomicU64::new(0),
        buffers: Mutex::new(Vec::new()),
        done: Default::default(),
        tolerated: AtomicU64::new(0),
        failure: Mutex::new(None),
    };
    let start = Instant::now();
    let deadline = start + Duration::from_secs(SECONDS);
    let cap = start + Duration::from_secs(MAX_SECONDS);
    std::thread::scope(|scope| {
        let s = &shared;
        scope.spawn(move || exporter_thread(s));
        scope.spawn(move || importer_thread(s));
        scope.spawn(move || mapper_thread(s));
        scope.spawn(move || revoke_thread(s));
        scope.spawn(move || reset_thread(s));
        scope.spawn(move || unbind_thread(s));
        // At least SECONDS; then on until every kind of thread has reached
        // its minimum, which a slow TCG run may need, but no longer than
        // MAX_SECONDS: a kind still short then fails the case.
        let reached = || {
            s.done
                .iter()
                .zip(MINIMUM)
                .all(|(n, min)| n.load(Ordering::Relaxed) >= min)
        };
        while s.running() && (Instant::now() < deadline || (!reached() && Instant::now() < cap)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        s.stop.store(true, Ordering::SeqCst);
    });

    let done: Vec<u64> = shared
        .done
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    let counts: Vec<String> = NAMES
        .iter()
        .zip(&done)
        .zip(MINIMUM)
        .map(|((name, n), min)| format!("{name} {n} (minimum {min})"))
        .collect();
    ctx.note(format!(
        "successful operations in {:.1} s: {}; {} errors the races made legitimate",
        start.elapsed().as_secs_f64(),
        counts.join(", "),
        shared.tolerated.load(Ordering::Relaxed)
    ));
    for held in shared.buffers.into_inner().unwrap() {
        must("closing a dma-buf", sys::close(held.fd))?;
    }
    if let Some(message) = shared.failure.into_inner().unwrap() {
        return Err(Failure::Fail(message));
    }
    let short: Vec<String> = NAMES
        .iter()
        .zip(&done)
        .zip(MINIMUM)
        .filter(|((_, &n), min)| n < *min)
        .map(|((name, n), min)| format!("{name}: {n} < {min}"))
        .collect();
    ensure!(
        short.is_empty(),
        "too few successful operations: {}",
        short.join(", ")
    );

    function.bind_by_override()?;
    ctx.set_device(Which::Ivshmem, setup::open(function.clone())?);
    must("RESTORE", ctx.device(Which::Ivshmem)?.exporter.restore(BAR))?;
    let now = must("counting /proc/self/fd", sys::open_fds())?;
    // The device's own file is open again now.
    ensure!(
        now == fds + 1,
        "{fds} open files before (device closed), {now} after (device open)"
    );
    let buffers_after = vfio_dmabuf_buffers()?;
    ensure!(
        buffers_after == buffers_before,
        "{buffers_before} vfio_dmabuf buffers in bufinfo before, {buffers_after} after"
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

/// The vfio_dmabuf buffers debugfs lists.
fn vfio_dmabuf_buffers() -> Result<usize, Failure> {
    let text = must(
        "reading bufinfo",
        std::fs::read_to_string("/sys/kernel/debug/dma_buf/bufinfo"),
    )?;
    Ok(crate::bufinfo::parse(&text)
        .iter()
        .filter(|o| o.exp_name == pci::DRIVER)
        .count())
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Exports random slices (one to three ranges); closes some.
fn exporter_thread(s: &Shared<'_>) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let pages = s.bar.size() / PAGE;
    while s.running() {
        let w0 = s.window();
        if let Some(exporter) = s.exporter(w0) {
            let pairs: Vec<(u64, u64)> = (0..=rng.below(2))
                .map(|_| {
                    let offset = rng.below(pages);
                    let length = 1 + rng.below((pages - offset).min(1024));
                    (offset * PAGE, length * PAGE)
                })
                .collect();
            let request = ranges(&pairs);
            let buffer = match Buffer::new(&request, &s.bar) {
                Ok(buffer) => buffer,
                Err(e) => return s.fail(e),
            };
            let result = exporter.export(&ExportRequest::new(BAR, &request));
            let w1 = s.window();
            let legit = |e| !bound(w0, w1) && e == libc::ENODEV;
            if let Some(fd) = s.judge("EXPORT", result, legit, (w0, w1)) {
                match sys::file_size(fd.as_fd()) {
                    Ok(size) if size == buffer.size() => {}
                    Ok(size) => s.fail(format!(
                        "EXPORT of {pairs:x?}: {size:#x} bytes, expected {:#x}",
                        buffer.size()
                    )),
                    Err(e) => s.fail(format!("lseek: {}", sys::describe(&e))),
                }
                s.done(0);
                let held = Held {
                    fd,
                    buffer,
                    binding: bound(w0, w1).then_some(w0.unbinds),
                };
                let mut buffers = s.buffers.lock().unwrap();
                buffers.push(held);
                if buffers.len() > 8 {
                    let victim = rng.below(buffers.len() as u64) as usize;
                    let old = buffers.remove(victim);
                    drop(buffers);
                    if let Err(e) = sys::close(old.fd) {
                        s.fail(format!("close of a dma-buf: {}", sys::describe(&e)));
                    }
                }
            }
            if let Err(e) = exporter.close() {
                s.fail(format!(
                    "close of the character device: {}",
                    sys::describe(&e)
                ));
            }
        }
        s.pause(5);
    }
}

/// A buffer to use: a duplicate of its descriptor and what it should hold.
fn pick(s: &Shared<'_>, last: bool) -> Option<(OwnedFd, Buffer, Option<u64>)> {
    let buffers = s.buffers.lock().unwrap();
    let held = if last {
        buffers.last()
    } else {
        buffers.first()
    }?;
    match held.fd.try_clone() {
        Ok(fd) => Some((fd, held.buffer.clone(), held.binding)),
        Err(e) => {
            drop(buffers);
            s.fail(format!("dup of a dma-buf: {}", sys::describe(&e)));
            None
        }
    }
}

fn open_importer(s: &Shared<'_>) -> Option<Importer> {
    match Importer::open() {
        Ok(importer) => Some(importer),
        Err(e) => {
            s.fail(e);
            None
        }
    }
}

/// Imports the newest buffer, walks it and asks for page frames.
fn importer_thread(s: &Shared<'_>) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    while s.running() {
        if let Some((fd, buffer, binding)) = pick(s, true) {
            if let Some(importer) = open_importer(s) {
                import_and_walk(s, &importer, fd.as_fd(), &buffer, binding, &mut rng);
                if let Err(e) = importer.close() {
                    s.fail(format!("close of the importer: {}", sys::describe(&e)));
                }
            }
        }
        s.pause(3);
    }
}

fn import_and_walk(
    s: &Shared<'_>,
    importer: &Importer,
    fd: std::os::fd::BorrowedFd<'_>,
    buffer: &Buffer,
    binding: Option<u64>,
    rng: &mut Rng,
) {
    let w0 = s.window();
    let imported = importer.import(fd);
    if gone(binding, w0) {
        if !matches!(&imported, Err(e) if e.raw_os_error() == Some(libc::ENODEV)) {
            s.fail(format!(
                "IMPORT of a buffer of an unbound binding: {:?}, expected ENODEV",
                imported.map_err(|e| sys::describe(&e))
            ));
        }
        return;
    }
    let expected = buffer.walk();
    let walked = imported
        .as_ref()
        .ok()
        .map(|_| importer.walk(0, expected.len()));
    let pgoff = rng.below(buffer.pages());
    let frame = imported.as_ref().ok().map(|_| importer.get_pfn(pgoff));
    let w1 = s.window();
    let strict = live(binding, w0, w1);
    let legit = |e| !strict && matches!(e, libc::ENODEV | libc::EAGAIN);
    let Some(size) = s.judge("IMPORT", imported, legit, (w0, w1)) else {
        return;
    };
    if size != buffer.size() {
        return s.fail(format!(
            "IMPORT: {size:#x} bytes, expected {:#x}",
            buffer.size()
        ));
    }
    let mut ok = true;
    if let Some(walk) = walked.and_then(|w| s.judge("WALK", w, legit, (w0, w1))) {
        if u64::from(walk.entries) != expected.len() as u64 {
            return s.fail(format!(
                "WALK: {} entries, expected {}",
                walk.entries,
                expected.len()
            ));
        }
        if let Err(e) = expect::compare(&walk.table, &expected) {
            return s.fail(format!("WALK: {e}"));
        }
        if walk.calls != expected.len() as u64 {
            return s.fail(format!(
                "WALK: {} calls for {} entries",
                walk.calls,
                expected.len()
            ));
        }
    } else {
        ok = false;
    }
    if let Some(got) = frame.and_then(|f| s.judge("GET_PFN", f, legit, (w0, w1))) {
        let want = buffer.get_pfn(pgoff);
        if Some(got) != want {
            return s.fail(format!(
                "GET_PFN of page {pgoff:#x}: {got:x?}, expected {want:x?}"
            ));
        }
    } else {
        ok = false;
    }
    if ok {
        s.done(1);
    }
}

/// Buffer byte offsets to read: the first and last word, and six more at
/// random pages and in-page offsets.
fn offsets(buffer: &Buffer, rng: &mut Rng) -> Vec<u64> {
    let size = buffer.size();
    let mut offsets = vec![0, size - 4];
    for _ in 0..6 {
        offsets.push(rng.below(size / 4) * 4);
    }
    offsets
}

/// Maps the oldest buffer whole and reads several words of it, each of
/// which must be the host's pattern at its BAR offset.
fn mapper_thread(s: &Shared<'_>) {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    while s.running() {
        if let Some((fd, buffer, binding)) = pick(s, false) {
            if let Some(importer) = open_importer(s) {
                map_and_read(s, &importer, fd.as_fd(), &buffer, binding, &mut rng);
                if let Err(e) = importer.close() {
                    s.fail(format!("close of the importer: {}", sys::describe(&e)));
                }
            }
        }
        s.pause(10);
    }
}

fn map_and_read(
    s: &Shared<'_>,
    importer: &Importer,
    fd: std::os::fd::BorrowedFd<'_>,
    buffer: &Buffer,
    binding: Option<u64>,
    rng: &mut Rng,
) {
    let w0 = s.window();
    let imported = importer.import(fd);
    if gone(binding, w0) {
        if !matches!(&imported, Err(e) if e.raw_os_error() == Some(libc::ENODEV)) {
            s.fail(format!(
                "IMPORT of a buffer of an unbound binding: {:?}, expected ENODEV",
                imported.map_err(|e| sys::describe(&e))
            ));
        }
        return;
    }
    let at = offsets(buffer, rng);
    let (mapped, read) = match imported {
        Ok(_) => match importer.map(0, buffer.size() as usize, PAGE_SIZE) {
            Ok(mapping) => {
                let read = read_words(&mapping, &at);
                (Ok(()), Some(read))
            }
            Err(e) => (Err(e), None),
        },
        Err(e) => (Err(e), None),
    };
    let w1 = s.window();
    let strict = live(binding, w0, w1);
    let legit = |e| !strict && e == libc::ENODEV;
    if s.judge("IMPORT and mmap", mapped, legit, (w0, w1))
        .is_none()
    {
        return;
    }
    let (words, sigbus) = match read {
        Some(Ok(read)) => read,
        Some(Err(e)) => return s.fail(format!("reading through the mapping: {e}")),
        None => return,
    };
    for (&offset, &word) in at.iter().zip(&words) {
        let Some((pfn, _)) = buffer.get_pfn(offset / PAGE) else {
            return s.fail(format!("offset {offset:#x} outside the buffer"));
        };
        let bar_offset = (pfn - s.bar.pfn()) * PAGE + offset % PAGE;
        let want = ivshmem_pattern(bar_offset);
        if word != want {
            return s.fail(format!(
                "buffer offset {offset:#x} (BAR offset {bar_offset:#x}) reads {word:#010x}, expected {want:#010x}"
            ));
        }
    }
    if sigbus {
        if strict {
            return s.fail(format!(
                "SIGBUS after {} of {} reads with nothing revoked (window {w0:?} .. {w1:?})",
                words.len(),
                at.len()
            ));
        }
        s.tolerated.fetch_add(1, Ordering::Relaxed);
    } else {
        s.done(2);
    }
}

/// Reads the words at `offsets` of `mapping` in a forked child, which sends
/// each one as it reads it: the words read, and whether the child then died
/// of SIGBUS.
fn read_words(mapping: &Mapping, offsets: &[u64]) -> Result<(Vec<u32>, bool), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(format!("pipe2: {}", io::Error::last_os_error()));
    }
    // SAFETY: pipe2() returned two new descriptors that we own.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let base = mapping.addr();
    for &offset in offsets {
        if offset % 4 != 0 || offset + 4 > mapping.len() as u64 {
            return Err(format!("offset {offset:#x} outside the mapping"));
        }
    }
    // SAFETY: the child only reads the mapping, writes to the pipe and
    // leaves with _exit(), all async-signal-safe (other threads exist).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        for &offset in offsets {
            // SAFETY: an aligned word inside the live mapping (checked
            // above); a revoked page raises SIGBUS, which ends the child.
            let word = unsafe { ((base + offset as usize) as *const u32).read_volatile() };
            let bytes = word.to_ne_bytes();
            // SAFETY: our own buffer, to our own pipe.
            let n = unsafe { libc::write(write_end.as_raw_fd(), bytes.as_ptr().cast(), 4) };
            if n != 4 {
                // SAFETY: leaving the child at once.
                unsafe { libc::_exit(2) };
            }
        }
        // SAFETY: leaving the child without the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(write_end);
    let mut bytes = Vec::new();
    let mut file = std::fs::File::from(read_end);
    let read = io::Read::read_to_end(&mut file, &mut bytes);
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(format!("waitpid: {e}"));
        }
    }
    read.map_err(|e| format!("reading the pipe: {e}"))?;
    let words: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS {
        return Ok((words, true));
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 || words.len() != offsets.len() {
        return Err(format!(
            "the reading child ended with wait status {status:#x} after {} words",
            words.len()
        ));
    }
    Ok((words, false))
}

/// REVOKE, then RESTORE, of BAR2.
fn revoke_thread(s: &Shared<'_>) {
    while s.running() {
        let w0 = s.window();
        if let Some(exporter) = s.exporter(w0) {
            s.revoke.fetch_add(1, Ordering::SeqCst);
            let revoked = exporter.revoke(BAR);
            let w1 = s.window();
            let legit = |e| !bound(w0, w1) && e == libc::ENODEV;
            if s.judge("REVOKE", revoked, legit, (w0, w1)).is_some() {
                s.done(3);
            }
            s.pause(20);
            let w2 = s.window();
            let restored = exporter.restore(BAR);
            let w3 = s.window();
            s.revoke.fetch_add(1, Ordering::SeqCst);
            let resetting = w2.reset != w3.reset || w2.reset % 2 == 1;
            let legit =
                |e| (!bound(w0, w3) && e == libc::ENODEV) || (resetting && e == libc::EBUSY);
            if s.judge("RESTORE", restored, legit, (w0, w3)).is_some() {
                s.done(4);
            }
            if let Err(e) = exporter.close() {
                s.fail(format!(
                    "close of the character device: {}",
                    sys::describe(&e)
                ));
            }
        }
        s.pause(30);
    }
}

/// A reset through sysfs, then RESTORE (a reset leaves the exports
/// revoked). The reset itself must always work, bound or not.
fn reset_thread(s: &Shared<'_>) {
    while s.running() {
        s.pause(700);
        if !s.running() {
            break;
        }
        s.reset.fetch_add(1, Ordering::SeqCst);
        let w0 = s.window();
        if let Err(e) = s.function.reset() {
            s.reset.fetch_add(1, Ordering::SeqCst);
            return s.fail(format!("{RESET_METHOD} reset: {e}"));
        }
        let restored = s.exporter(w0).map(|exporter| {
            let restored = exporter.restore(BAR);
            if let Err(e) = exporter.close() {
                s.fail(format!(
                    "close of the character device: {}",
                    sys::describe(&e)
                ));
            }
            restored
        });
        let w1 = s.window();
        s.reset.fetch_add(1, Ordering::SeqCst);
        let legit = |e| !bound(w0, w1) && e == libc::ENODEV;
        if let Some(restored) = restored {
            if s.judge("RESTORE after the reset", restored, legit, (w0, w1))
                .is_some()
            {
                s.done(5);
            }
        }
    }
}

/// Unbinds the function and binds it again through drivers_probe.
fn unbind_thread(s: &Shared<'_>) {
    while s.running() {
        s.pause(2500);
        if !s.running() {
            break;
        }
        s.binding.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = s.function.unbind() {
            return s.fail(format!("unbind: {e}"));
        }
        s.unbinds.fetch_add(1, Ordering::SeqCst);
        s.pause(200);
        if let Err(e) = s.function.probe() {
            return s.fail(format!("drivers_probe: {e}"));
        }
        match s.function.driver() {
            Ok(Some(driver)) if driver == pci::DRIVER => {}
            other => return s.fail(format!("bound to {other:?} after drivers_probe")),
        }
        if !pci::wait_for(s.node, true, setup::NODE_TIMEOUT) {
            return s.fail(format!("{} did not come back", s.node.display()));
        }
        s.binding.fetch_add(1, Ordering::SeqCst);
        s.done(6);
    }
}
