// SPDX-License-Identifier: GPL-2.0

//! Hot-unplug through QEMU's monitor: with a buffer, its import and a user
//! mapping alive, the device is removed (`device_del`, by
//! `tests/vm/hotplug_agent.py` on the host, at the guest's request). The
//! importer is told once, the mapping SIGBUSes, everything answers
//! `ENODEV` and closes; the device is plugged back (`device_add`) and used
//! again. Repeated for many cycles.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use vfio_dmabuf_uapi::mapping::{ivshmem_pattern, Access, PAGE_SIZE};

use super::export::export_and_import;
use super::mmap::EDU_ID;
use super::setup;
use super::{all_of, case, ensure, must, refused, Case, Context, Failure, Outcome, Which};
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
    ]
}

/// The guest's side of the channel to the host's agent.
struct Monitor {
    dir: PathBuf,
    next: u32,
}

impl Monitor {
    fn new() -> Result<Self, Failure> {
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
    fn request(&mut self, verb: &str, id: &str) -> Outcome {
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

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) -> Outcome {
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
    let gone = PathBuf::from(format!("/sys/bus/pci/devices/{}", function.address));
    monitor.request("del", id)?;
    wait_until("the function leaving sysfs", || !gone.exists())?;

    let counters = must("COUNTERS", importer.counters())?;
    let access = must("read after the unplug", mapping.probe_read32(0))?;
    let checks = all_of([
        ensure_counters(&counters),
        refused("WALK after the unplug", importer.walk(0, 16), libc::ENODEV),
        refused(
            "INFO after the unplug",
            device.exporter.info(),
            libc::ENODEV,
        ),
        if access == Access::Sigbus {
            Ok(())
        } else {
            Err(Failure::Fail(format!(
                "a read after the unplug gave {access:x?}"
            )))
        },
    ]);
    drop(mapping);
    let closed = all_of([
        must("closing the importer", importer.close()),
        must("closing the dma-buf", sys::close(dmabuf)),
        must("closing the character device", device.exporter.close()),
    ]);
    checks?;
    closed?;

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
    ctx.set_device(which, setup::open(function)?);

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

fn ensure_counters(c: &crate::uapi::vfio_dmabuf_imp_counters) -> Outcome {
    ensure!(
        c.invalidations == 1 && c.table_segments == 0,
        "COUNTERS {c:?}, expected 1 invalidation and no segment"
    );
    Ok(())
}
