// SPDX-License-Identifier: GPL-2.0

//! Unbinding ivshmem while a buffer, its import, a user mapping of it and
//! the character device are open: the importer is told once, the mapping
//! SIGBUSes, everything left answers `ENODEV` and closes cleanly, and the
//! function binds again.

use std::os::fd::{AsFd, OwnedFd};

use vfio_dmabuf_uapi::mapping::{ivshmem_pattern, Access, Mapping, PAGE_SIZE};

use super::export::{check_walk, export_and_import};
use super::setup::{self, NODE_TIMEOUT};
use super::{all_of, case, ensure, must, refused, Case, Context, Device, Outcome, Shared, Which};
use crate::expect::{ranges, Buffer, PAGE};
use crate::exporter::ExportRequest;
use crate::importer::Importer;
use crate::pci;
use crate::sys;

/// The BAR exported: ivshmem's shared memory.
const BAR: u32 = 2;

fn exported_ranges() -> Vec<crate::expect::ByteRange> {
    ranges(&[(0, 2 << 20), (PAGE, PAGE)])
}

struct Unbound {
    /// The device as it was bound: its character device is still open.
    device: Device,
    buffer: Buffer,
    dmabuf: OwnedFd,
    importer: Importer,
    /// The buffer mapped through the importer, touched before the unbind.
    mapping: Mapping,
}

pub(super) fn cases() -> Vec<Case> {
    let state = Shared::<Unbound>::new();
    let step = |name: &str, run: fn(&mut Context, &mut Unbound) -> Outcome| {
        let state = state.clone();
        case(format!("ivshmem: {name}"), move |ctx| {
            state.with(|unbound| run(ctx, unbound))
        })
    };
    let first = state.clone();
    let last = state.clone();
    // The function to bind again, once it has been unbound.
    let unbound = Shared::<pci::Function>::new();
    let to_rebind = unbound.clone();
    vec![
        case(
            "ivshmem: unbinding with a buffer imported tells the importer once",
            move |ctx| unbind_first(ctx, &first, &unbound),
        ),
        step("WALK and GET_PFN fail with ENODEV after unbind", |_, u| {
            refused("WALK", u.importer.walk(0, 16), libc::ENODEV)?;
            refused("GET_PFN of page 0", u.importer.get_pfn(0), libc::ENODEV)
        }),
        step("a mapped access raises SIGBUS after unbind", |_, u| {
            let read = must("read", u.mapping.probe_read32(0))?;
            let write = must("write", u.mapping.probe_write32(PAGE_SIZE, 1))?;
            ensure!(
                read == Access::Sigbus && write == Access::Sigbus,
                "a read gave {read:x?} and a write {write:x?}, expected SIGBUS"
            );
            Ok(())
        }),
        step("a new import fails with ENODEV after unbind", |_, u| {
            let importer = Importer::open()?;
            refused("IMPORT", importer.import(u.dmabuf.as_fd()), libc::ENODEV)
        }),
        step(
            "the open character device answers ENODEV to every request after unbind, VFIO's too",
            |_, u| {
                let exporter = &u.device.exporter;
                all_of([
                    refused(
                        "EXPORT of the ranges exported before",
                        exporter.export(&ExportRequest::new(BAR, &exported_ranges())),
                        libc::ENODEV,
                    ),
                    super::gone::exporter_refuses(exporter, BAR),
                ])
            },
        ),
        step(
            "/proc/iomem no longer shows the driver's claims of its BARs after unbind",
            |_, u| super::gone::expect_claims("after unbind", &u.device.bars, false),
        ),
        case(
            "ivshmem: after unbind the dma-buf keeps its size and every file closes",
            move |_| {
                let u = last.take()?;
                let size = sys::file_size(u.dmabuf.as_fd());
                let function = u.device.function.clone();
                drop(u.mapping);
                let closed = all_of([
                    must("closing the importer", u.importer.close()),
                    must("closing the dma-buf", sys::close(u.dmabuf)),
                    must("closing the character device", u.device.exporter.close()),
                ]);
                let size = must("lseek(SEEK_END) on the dma-buf", size)?;
                ensure!(
                    size == u.buffer.size(),
                    "the dma-buf is {size:#x} bytes, expected {:#x}",
                    u.buffer.size()
                );
                closed?;
                ensure!(
                    !function.node().exists(),
                    "{} is still there",
                    function.node().display()
                );
                Ok(())
            },
        ),
        case(
            "ivshmem: binding again through drivers_probe makes EXPORT work again",
            move |ctx| rebind(ctx, to_rebind.take()?),
        ),
    ]
}

fn unbind_first(
    ctx: &mut Context,
    state: &Shared<Unbound>,
    to_rebind: &Shared<pci::Function>,
) -> Outcome {
    super::gone::expect_claims("before unbind", &ctx.device(Which::Ivshmem)?.bars, true)?;
    let (buffer, dmabuf, importer) =
        export_and_import(ctx, Which::Ivshmem, BAR, &exported_ranges())?;
    check_walk(&importer, &buffer, None)?;
    let mapping = must("mmap", importer.map(0, buffer.size() as usize, PAGE_SIZE))?;
    // The first page of the slice is BAR offset 0: the pattern's first word.
    let first = must("read", mapping.read32(0))?;
    ensure!(
        first == ivshmem_pattern(0),
        "offset 0 reads {first:#010x} before unbind"
    );
    let device = ctx.take_device(Which::Ivshmem)?;
    let unbound = device.function.unbind();
    to_rebind.set(device.function.clone());
    let driver = device.function.driver();
    let node_gone = pci::wait_for(&device.function.node(), false, NODE_TIMEOUT);
    let counters = must("COUNTERS", importer.counters());
    let node = device.function.node();
    state.set(Unbound {
        device,
        buffer,
        dmabuf,
        importer,
        mapping,
    });
    unbound?;
    ensure!(driver?.is_none(), "still bound after unbind");
    let counters = counters?;
    ensure!(
        counters.invalidations == 1 && counters.table_segments == 0,
        "COUNTERS {counters:?}, expected 1 invalidation and no segment"
    );
    ensure!(node_gone, "{} is still there", node.display());
    Ok(())
}

fn rebind(ctx: &mut Context, function: pci::Function) -> Outcome {
    function.probe()?;
    let driver = function.driver()?;
    ensure!(
        driver.as_deref() == Some(pci::DRIVER),
        "{} is bound to {driver:?} after drivers_probe",
        function.address
    );
    ctx.set_device(Which::Ivshmem, setup::open(function)?);
    super::gone::expect_claims("bound again", &ctx.device(Which::Ivshmem)?.bars, true)?;
    let (buffer, _dmabuf, importer) =
        export_and_import(ctx, Which::Ivshmem, BAR, &exported_ranges())?;
    let walk = check_walk(&importer, &buffer, None)?;
    ctx.note(walk.note);
    Ok(())
}
