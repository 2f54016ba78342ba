// SPDX-License-Identifier: GPL-2.0

//! What outlives a binding: a buffer of edu's BAR0, its import (walked), a
//! mapping of it and the character device file, all opened under one
//! binding, kept while edu is unbound, bound again, unplugged and plugged
//! back, and while both modules are asked to unload. After the unbind and
//! at each later step every call on them gives the errno the uAPI says
//! (`cases::gone`), the import is told once and never again (not by the
//! new bindings' REVOKE, nor by their removal), and the new bindings work.
//!
//! A module reload proper cannot be made with them open: the dma-buf and
//! the character device file each hold a reference to `vfio_dmabuf`, the
//! importer's file one to `vfio_dmabuf_importer`, so `delete_module` is
//! refused (`EWOULDBLOCK`), which the last step checks, and the objects
//! still answer after it.

use std::os::fd::{AsFd, OwnedFd};

use vfio_dmabuf_uapi::mapping::{Access, Mapping, PAGE_SIZE};

use super::export::{check_walk, export_and_import};
use super::gone;
use super::hotplug::{replug, wait_until, Monitor};
use super::mmap::EDU_ID;
use super::setup;
use super::{
    all_of, case, ensure, must, refused, Case, Context, Device, Failure, Outcome, Shared, Which,
};
use crate::expect::{ranges, Buffer};
use crate::importer::Importer;
use crate::pci;
use crate::sys;

const BAR: u32 = 0;

/// The objects of the first binding.
struct Stale {
    device: Device,
    buffer: Buffer,
    dmabuf: OwnedFd,
    importer: Importer,
    mapping: Mapping,
}

pub(super) fn cases() -> Vec<Case> {
    let state = Shared::<Stale>::new();
    let (first, second, third, last) = (state.clone(), state.clone(), state.clone(), state);
    vec![
        case(
            "earlier binding: after unbinding edu, its buffer, import, mapping and character device answer each call with the documented errno",
            move |ctx| unbind(ctx, &first),
        ),
        case(
            "earlier binding: they still do once edu is bound again, whose REVOKE does not reach them",
            move |ctx| second.with(|s| rebind(ctx, s)),
        ),
        case(
            "earlier binding: they still do after the new binding is hot-unplugged and edu plugged back",
            move |ctx| third.with(|s| replugged(ctx, s)),
        ),
        case(
            "earlier binding: while they are open both modules refuse to unload (EWOULDBLOCK), and they still answer; then they close",
            move |_| modules(&last),
        ),
    ]
}

/// Every call on the stale objects, and the import told exactly once.
fn stale_checks(s: &Stale) -> Outcome {
    let access = must("read through the old mapping", s.mapping.probe_read32(0))?;
    all_of([
        gone::exporter_refuses(&s.device.exporter, BAR),
        gone::import_refuses(&s.importer, &s.buffer, 1),
        gone::dmabuf_refuses(s.dmabuf.as_fd(), &s.buffer),
        if access == Access::Sigbus {
            Ok(())
        } else {
            Err(Failure::Fail(format!(
                "a read through the old mapping gave {access:x?}, expected SIGBUS"
            )))
        },
    ])
}

fn unbind(ctx: &mut Context, state: &Shared<Stale>) -> Outcome {
    let whole = ranges(&[(0, ctx.device(Which::Edu)?.bar(BAR).size())]);
    let (buffer, dmabuf, importer) = export_and_import(ctx, Which::Edu, BAR, &whole)?;
    check_walk(&importer, &buffer, None)?;
    let mapping = must("mmap", importer.map(0, PAGE_SIZE, PAGE_SIZE))?;
    let id = must("read", mapping.read32(0))?;
    ensure!(id == EDU_ID, "offset 0 reads {id:#010x}");
    let device = ctx.take_device(Which::Edu)?;
    let unbound = device.function.unbind();
    let node_gone = pci::wait_for(&device.function.node(), false, setup::NODE_TIMEOUT);
    let stale = Stale {
        device,
        buffer,
        dmabuf,
        importer,
        mapping,
    };
    let checked = (|| {
        unbound?;
        ensure!(
            node_gone,
            "{} is still there",
            stale.device.function.node().display()
        );
        gone::expect_claims("after the unbind", &stale.device.bars, false)?;
        stale_checks(&stale)
    })();
    state.set(stale);
    checked
}

fn rebind(ctx: &mut Context, s: &mut Stale) -> Outcome {
    let function = s.device.function.clone();
    function.probe()?;
    let driver = function.driver()?;
    ensure!(
        driver.as_deref() == Some(pci::DRIVER),
        "{} is bound to {driver:?} after drivers_probe",
        function.address
    );
    ctx.set_device(Which::Edu, setup::open(function)?);
    gone::expect_claims("after binding again", &ctx.device(Which::Edu)?.bars, true)?;
    // The new binding works, and its REVOKE tells its own importers only.
    let whole = ranges(&[(0, ctx.device(Which::Edu)?.bar(BAR).size())]);
    let (buffer, _dmabuf, importer) = export_and_import(ctx, Which::Edu, BAR, &whole)?;
    check_walk(&importer, &buffer, None)?;
    let exporter = &ctx.device(Which::Edu)?.exporter;
    let revoked = must("REVOKE on the new binding", exporter.revoke(BAR));
    let restored = must("RESTORE on the new binding", exporter.restore(BAR));
    revoked?;
    restored?;
    let c = must("COUNTERS of the new import", importer.counters())?;
    ensure!(c.invalidations == 1, "the new import: {c:?}");
    check_walk(&importer, &buffer, None)?;
    stale_checks(s)
}

fn replugged(ctx: &mut Context, s: &mut Stale) -> Outcome {
    let mut monitor = Monitor::new()?;
    let device = ctx.take_device(Which::Edu)?;
    let path = format!("/sys/bus/pci/devices/{}", device.function.address);
    must(
        "closing the new binding's character device",
        device.exporter.close(),
    )?;
    monitor.request("del", "edu0")?;
    wait_until("the function leaving sysfs", || {
        !std::path::Path::new(&path).exists()
    })?;
    // Checked while edu is out, plugged back whatever they found.
    let unplugged = stale_checks(s);
    replug(ctx, &mut monitor, Which::Edu, "edu0")?;
    let whole = ranges(&[(0, ctx.device(Which::Edu)?.bar(BAR).size())]);
    let (buffer, _dmabuf, importer) = export_and_import(ctx, Which::Edu, BAR, &whole)?;
    check_walk(&importer, &buffer, None)?;
    let plugged = stale_checks(s);
    unplugged?;
    plugged
}

fn modules(state: &Shared<Stale>) -> Outcome {
    let s = state.take()?;
    let refusals = all_of([
        refused(
            "delete_module(\"vfio_dmabuf\", O_NONBLOCK)",
            sys::delete_module(c"vfio_dmabuf", libc::O_NONBLOCK),
            libc::EWOULDBLOCK,
        ),
        refused(
            "delete_module(\"vfio_dmabuf_importer\", O_NONBLOCK)",
            sys::delete_module(c"vfio_dmabuf_importer", libc::O_NONBLOCK),
            libc::EWOULDBLOCK,
        ),
    ]);
    let checks = stale_checks(&s);
    let reimport = gone::reimport_refuses(&s.importer, s.dmabuf.as_fd());
    let ino = must("fstat", sys::inode(s.dmabuf.as_fd()));
    drop(s.mapping);
    let closed = all_of([
        must("closing the importer", s.importer.close()),
        must("closing the dma-buf", sys::close(s.dmabuf)),
        must(
            "closing the old character device",
            s.device.exporter.close(),
        ),
    ]);
    refusals?;
    checks?;
    reimport?;
    closed?;
    // The buffer is gone once its last reference is.
    let ino = ino?;
    let text = must(
        "reading bufinfo",
        std::fs::read_to_string("/sys/kernel/debug/dma_buf/bufinfo"),
    )?;
    ensure!(
        !crate::bufinfo::parse(&text).iter().any(|o| o.ino == ino),
        "bufinfo still lists the old buffer (inode {ino}) once closed"
    );
    Ok(())
}
