// SPDX-License-Identifier: GPL-2.0

//! Hot-unplug through QEMU's monitor: with a buffer, its import and a user
//! mapping alive, the device is removed (`device_del`, by
//! `tests/vm/hotplug_agent.py` on the host, at the guest's request). The
//! importer is told once, the mapping SIGBUSes, every request of the
//! character device and of the importer answers `ENODEV` (`cases::gone`),
//! `/proc/iomem` no longer shows the driver's claims of the BARs, and
//! everything closes; the device is plugged back (`device_add`) and used
//! again. Repeated for many cycles. And once with an importer fault in
//! flight: a child faults ivshmem's pages in, one by one, while the device
//! is removed under it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};

use vfio_dmabuf_uapi::mapping::{ivshmem_pattern, Access, Mapping, PAGE_SIZE, PMD_SIZE};

use super::export::export_and_import;
use super::gone;
use super::mmap::EDU_ID;
use super::setup;
use super::{all_of, case, ensure, must, Case, Context, Failure, Outcome, Which};
use crate::expect::{ranges, PAGE};
use crate::pci;
use crate::sys;

/// Unplug/plug cycles of edu, and of ivshmem (which must be bound through
/// driver_override again each time).
pub(crate) const EDU_CYCLES: u32 = 20;
pub(crate) const IVSHMEM_CYCLES: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(120);

pub(super) fn cases() -> Vec<Case> {
    vec![
        case(
            format!("hot-unplug: {EDU_CYCLES} cycles of edu with a buffer, an import and a mapping alive"),
            |ctx| cycles(ctx, Which::Edu, EDU_CYCLES),
        ),
        case(
            format!("hot-unplug: {IVSHMEM_CYCLES} cycles of ivshmem, bound again through driver_override"),
            |ctx| cycles(ctx, Which::Ivshmem, IVSHMEM_CYCLES),
        ),
        case(
            format!("hot-unplug: ivshmem removed while a child faults its pages in ({FAULT_MIB} MiB, one PTE each), which then dies of SIGBUS"),
            fault_in_flight,
        ),
    ]
}

/// The guest's side of the channel to the host's agent.
pub(super) struct Monitor {
    dir: PathBuf,
    next: u32,
}

impl Monitor {
    pub(super) fn new() -> Result<Self, Failure> {
        let out = std::env::var("VM_OUT").map_err(|_| {
            Failure::Fail("VM_OUT is not set: not run by tests/vm/run.sh".to_owned())
        })?;
        let dir = PathBuf::from(out).join("hotplug");
        ensure!(dir.is_dir(), "{} is missing", dir.display());
        // Numbers already used by an earlier case of this run.
        let next = std::fs::read_dir(&dir)
            .map(|entries| entries.filter_map(|e| e.ok()).count() as u32)
            .unwrap_or(0);
        Ok(Self { dir, next })
    }

    /// Asks the host to `verb` ("del" or "add") device `id` and waits
    /// until QEMU has done it.
    pub(super) fn request(&mut self, verb: &str, id: &str) -> Outcome {
        let n = self.next;
        self.next += 1;
        let tmp = self.dir.join(format!(".request.{n}"));
        must(
            "writing a request",
            std::fs::write(&tmp, format!("{verb} {id}\n")),
        )?;
        must(
            "posting a request",
            std::fs::rename(&tmp, self.dir.join(format!("request.{n}"))),
        )?;
        let done = self.dir.join(format!("done.{n}"));
        let start = Instant::now();
        while start.elapsed() < TIMEOUT {
            if let Ok(answer) = std::fs::read_to_string(&done) {
                ensure!(answer.trim() == "ok", "{verb} {id}: {}", answer.trim());
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(Failure::Fail(format!(
            "{verb} {id}: no answer from the host's agent in {} s",
            TIMEOUT.as_secs()
        )))
    }
}

pub(super) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> Outcome {
    let start = Instant::now();
    while start.elapsed() < TIMEOUT {
        if cond() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(Failure::Fail(format!(
        "{what}: not within {} s",
        TIMEOUT.as_secs()
    )))
}

fn cycles(ctx: &mut Context, which: Which, count: u32) -> Outcome {
    let mut monitor = Monitor::new()?;
    let (id, bar, len) = match which {
        Which::Edu => ("edu0", 0, 1 << 20),
        _ => ("ivshmem0", 2, 4 << 20),
    };
    let start = Instant::now();
    for cycle in 1..=count {
        one_cycle(ctx, &mut monitor, which, id, bar, len).map_err(|f| match f {
            Failure::Fail(m) => Failure::Fail(format!("cycle {cycle}: {m}")),
            skip => skip,
        })?;
    }
    ctx.note(format!(
        "{count} cycles in {:.1} s",
        start.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// The word a mapping of `which`'s BAR must read at offset 0.
fn first_word(which: Which) -> u32 {
    match which {
        Which::Edu => EDU_ID,
        _ => ivshmem_pattern(0),
    }
}

fn one_cycle(
    ctx: &mut Context,
    monitor: &mut Monitor,
    which: Which,
    id: &str,
    bar: u32,
    len: u64,
) -> Outcome {
    let (buffer, dmabuf, importer) = export_and_import(ctx, which, bar, &ranges(&[(0, len)]))?;
    must("WALK", importer.walk(0, 16))?;
    let mapping = must("mmap", importer.map(0, buffer.size() as usize, PAGE_SIZE))?;
    let word = must("read", mapping.read32(0))?;
    ensure!(
        word == first_word(which),
        "offset 0 reads {word:#010x} before the unplug"
    );

    let device = ctx.take_device(which)?;
    let function = device.function.clone();
    gone::expect_claims("before the unplug", &device.bars, true)?;
    let path = PathBuf::from(format!("/sys/bus/pci/devices/{}", function.address));
    monitor.request("del", id)?;
    wait_until("the function leaving sysfs", || !path.exists())?;

    let counters = must("COUNTERS", importer.counters())?;
    let access = must("read after the unplug", mapping.probe_read32(0))?;
    let checks = all_of([
        ensure_counters(&counters),
        gone::exporter_refuses(&device.exporter, bar),
        gone::import_refuses(&importer, &buffer, 1),
        gone::dmabuf_refuses(dmabuf.as_fd(), &buffer),
        gone::expect_claims("after the unplug", &device.bars, false),
        if access == Access::Sigbus {
            Ok(())
        } else {
            Err(Failure::Fail(format!(
                "a read after the unplug gave {access:x?}"
            )))
        },
    ]);
    drop(mapping);
    let reimport = gone::reimport_refuses(&importer, dmabuf.as_fd());
    let closed = all_of([
        must("closing the importer", importer.close()),
        must("closing the dma-buf", sys::close(dmabuf)),
        must("closing the character device", device.exporter.close()),
    ]);
    // Plugged back whatever the checks found, so that the cases after this
    // one still have the device.
    let replugged = replug(ctx, monitor, which, id);
    checks?;
    reimport?;
    closed?;
    replugged?;

    // Usable again: a new export maps the device.
    let (buffer, _dmabuf, importer) = export_and_import(ctx, which, bar, &ranges(&[(0, PAGE)]))?;
    let mapping = must("mmap", importer.map(0, buffer.size() as usize, PAGE_SIZE))?;
    let word = must("read", mapping.read32(0))?;
    ensure!(
        word == first_word(which),
        "offset 0 reads {word:#010x} after the plug"
    );
    Ok(())
}

/// Plugs `which` (QEMU id `id`) back in, binds it (through driver_override
/// but for edu) and keeps it in `ctx`.
pub(super) fn replug(ctx: &mut Context, monitor: &mut Monitor, which: Which, id: &str) -> Outcome {
    monitor.request("add", id)?;
    let (vendor, device_id) = which.id();
    let mut found = None;
    wait_until("the function coming back", || {
        found = pci::Function::find(vendor, device_id).ok().flatten();
        found.is_some()
    })?;
    let function = found.ok_or_else(|| Failure::Fail("lost the function".to_owned()))?;
    if which != Which::Edu {
        function.bind_by_override()?;
    }
    let node = function.node();
    wait_until("the character device coming back", || node.exists())?;
    let device = setup::open(function)?;
    gone::expect_claims("after the plug", &device.bars, true)?;
    ctx.set_device(which, device);
    Ok(())
}

fn ensure_counters(c: &crate::uapi::vfio_dmabuf_imp_counters) -> Outcome {
    ensure!(
        c.invalidations == 1 && c.table_segments == 0,
        "COUNTERS {c:?}, expected 1 invalidation and no segment"
    );
    Ok(())
}

/// The span of ivshmem the faulting child maps, from buffer offset one page
/// (so that the 2 MiB-aligned mapping is one page off the BAR's alignment,
/// and each page is its own PTE fault).
const FAULT_MIB: u64 = 64;
/// Faults the child must have made before the unplug is asked for.
const FAULTS_FIRST: u64 = 2000;

/// A page of memory shared with a forked child: word 0 counts the pages it
/// read right, words 1 and 2 hold a wrong read's offset and value.
struct SharedPage(*mut AtomicU64);

impl SharedPage {
    fn new() -> Result<Self, Failure> {
        // SAFETY: a new anonymous shared mapping nothing else refers to.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(Failure::Fail(format!(
                "mmap: {}",
                std::io::Error::last_os_error()
            )));
        }
        Ok(Self(addr.cast()))
    }

    fn word(&self, i: usize) -> &AtomicU64 {
        // SAFETY: the page holds 512 words, zeroed at mmap, aligned; atomics
        // are how both processes reach them.
        unsafe { &*self.0.add(i) }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: our own mapping, which no reference outlives.
        unsafe { libc::munmap(self.0.cast(), PAGE_SIZE) };
    }
}

/// The child: maps the span again and again and reads one word of each of
/// its pages, each read a fault, checking the host's pattern; it ends only
/// by SIGBUS (or exit status 3 for a wrong word, 4 for a failed mmap).
fn fault_loop(importer: &crate::importer::Importer, shared: &SharedPage) -> ! {
    let len = (FAULT_MIB << 20) as usize;
    loop {
        let Ok(mapping) = Mapping::new(importer.fd(), PAGE, len, PMD_SIZE) else {
            // SAFETY: leaving the child at once.
            unsafe { libc::_exit(4) };
        };
        for page in 0..(len / PAGE_SIZE) {
            let at = page * PAGE_SIZE + (page * 52) % PAGE_SIZE / 4 * 4;
            let want = ivshmem_pattern(PAGE + at as u64);
            let got = mapping.read32(at).unwrap_or(!want);
            if got != want {
                shared.word(1).store(at as u64, Ordering::SeqCst);
                shared.word(2).store(u64::from(got), Ordering::SeqCst);
                // SAFETY: leaving the child at once.
                unsafe { libc::_exit(3) };
            }
            shared.word(0).fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn fault_in_flight(ctx: &mut Context) -> Outcome {
    let mut monitor = Monitor::new()?;
    let bar_size = ctx.device(Which::Ivshmem)?.bar(2).size();
    let (buffer, dmabuf, importer) =
        export_and_import(ctx, Which::Ivshmem, 2, &ranges(&[(0, bar_size)]))?;
    let shared = SharedPage::new()?;
    // SAFETY: this program runs no other thread now; the child only maps,
    // reads and counts, and leaves with _exit() or a signal.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Failure::Fail(format!(
            "fork: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        fault_loop(&importer, &shared);
    }
    let child = Child {
        pid,
        reaped: std::cell::Cell::new(false),
    };
    let faulting = wait_until("the child's first faults", || {
        shared.word(0).load(Ordering::SeqCst) >= FAULTS_FIRST || child.exited()
    });
    let device = ctx.take_device(Which::Ivshmem);
    let before = shared.word(0).load(Ordering::SeqCst);
    let checked = (|| {
        faulting?;
        let device = device?;
        ensure!(
            !child.exited(),
            "the child ended before the unplug, after {before} pages"
        );
        let path = PathBuf::from(format!("/sys/bus/pci/devices/{}", device.function.address));
        monitor.request("del", "ivshmem0")?;
        wait_until("the function leaving sysfs", || !path.exists())?;
        let status = child.wait(Duration::from_secs(60))?;
        let after = shared.word(0).load(Ordering::SeqCst);
        ctx.note(format!(
            "the child read {before} pages before the unplug was asked for, {after} when it ended"
        ));
        ensure!(
            libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGBUS,
            "the child ended with wait status {status:#x} (offset {:#x} read {:#x})",
            shared.word(1).load(Ordering::SeqCst),
            shared.word(2).load(Ordering::SeqCst)
        );
        ensure!(
            after > before,
            "the child made no fault while the unplug was under way"
        );
        let counters = must("COUNTERS", importer.counters())?;
        ensure!(
            counters.pte_faults >= after && counters.pmd_faults == 0,
            "COUNTERS {counters:?}: fewer PTE faults than the {after} pages the child read"
        );
        let checks = all_of([
            ensure_counters(&counters),
            gone::exporter_refuses(&device.exporter, 2),
            gone::import_refuses(&importer, &buffer, 1),
            gone::dmabuf_refuses(dmabuf.as_fd(), &buffer),
            gone::expect_claims("after the unplug", &device.bars, false),
        ]);
        let closed = must("closing the character device", device.exporter.close());
        checks?;
        closed
    })();
    drop(child);
    let closed = all_of([
        must("closing the importer", importer.close()),
        must("closing the dma-buf", sys::close(dmabuf)),
    ]);
    // Plugged back whatever the checks found, unless the unplug was never
    // asked for.
    let (vendor, device_id) = Which::Ivshmem.id();
    let replugged = match pci::Function::find(vendor, device_id) {
        _ if ctx.device(Which::Ivshmem).is_ok() => Ok(()),
        Ok(None) => replug(ctx, &mut monitor, Which::Ivshmem, "ivshmem0"),
        Ok(Some(function)) => setup::open(function)
            .map(|device| ctx.set_device(Which::Ivshmem, device))
            .map_err(Failure::Fail),
        Err(e) => Err(Failure::Fail(e)),
    };
    checked?;
    closed?;
    replugged?;
    let (buffer, _dmabuf, importer) =
        export_and_import(ctx, Which::Ivshmem, 2, &ranges(&[(0, 2 << 20)]))?;
    let mapping = must("mmap", importer.map(0, buffer.size() as usize, PAGE_SIZE))?;
    let word = must("read", mapping.read32(PAGE_SIZE + 8))?;
    ensure!(
        word == ivshmem_pattern(PAGE + 8),
        "BAR offset {:#x} reads {word:#010x} after the plug",
        PAGE + 8
    );
    Ok(())
}

/// A forked child, killed and reaped on drop unless reaped already.
struct Child {
    pid: libc::pid_t,
    reaped: std::cell::Cell<bool>,
}

impl Child {
    /// Whether it has exited (it is then a zombie until reaped).
    fn exited(&self) -> bool {
        // SAFETY: all-zero bytes are a valid siginfo_t.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: WNOWAIT looks without reaping; `info` is valid for the
        // write.
        let ret = unsafe {
            libc::waitid(
                libc::P_PID,
                self.pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: waitid filled `info` (si_pid stays 0 if nothing exited).
        ret == 0 && unsafe { info.si_pid() } == self.pid
    }

    /// Its wait status, once it has ended, within `timeout`.
    fn wait(&self, timeout: Duration) -> Result<i32, Failure> {
        let start = Instant::now();
        loop {
            let mut status = 0;
            // SAFETY: our own child.
            let ret = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if ret == self.pid {
                self.reaped.set(true);
                return Ok(status);
            }
            if ret < 0 {
                return Err(Failure::Fail(format!(
                    "waitpid: {}",
                    std::io::Error::last_os_error()
                )));
            }
            if start.elapsed() >= timeout {
                return Err(Failure::Fail(format!(
                    "the faulting child is still running {} s after the unplug",
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped.get() {
            return;
        }
        // SAFETY: our own child, not reaped yet, so the pid is still its.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}
