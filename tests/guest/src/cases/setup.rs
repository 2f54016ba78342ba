// SPDX-License-Identifier: GPL-2.0

//! The first cases: what the others take for granted. The page size the
//! arithmetic assumes, the importer's device, and the three devices bound
//! to the driver: `edu` by its ID, the others through `driver_override`.

use std::path::Path;
use std::time::Duration;

use super::{case, ensure, Case, Context, Device, Outcome, Which};
use crate::expect::PAGE_SIZE;
use crate::exporter::Exporter;
use crate::importer::{self, Importer};
use crate::pci::{self, Function};
use crate::sys;

/// How long a device node may take to appear or go once the driver has
/// bound or unbound.
pub(crate) const NODE_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn cases() -> Vec<Case> {
    vec![
        case(
            "the page size is the 4 KiB the driver's arithmetic assumes",
            |_| {
                let size = sys::page_size();
                ensure!(size == PAGE_SIZE, "sysconf(_SC_PAGESIZE) is {size}");
                Ok(())
            },
        ),
        case(
            format!("the test importer's device {} opens", importer::NODE),
            |_| {
                Importer::open()?;
                Ok(())
            },
        ),
        case("edu (1234:11e8) is bound by its ID", |ctx| {
            bind(ctx, Which::Edu, false)
        }),
        case(
            "ivshmem-plain (1af4:1110) binds through driver_override",
            |ctx| bind(ctx, Which::Ivshmem, true),
        ),
        case(
            "pci-testdev (1b36:0005) binds through driver_override",
            |ctx| bind(ctx, Which::Testdev, true),
        ),
    ]
}

/// Finds the device, binds it (or checks that the driver did), opens its
/// character device and keeps it in `ctx`.
fn bind(ctx: &mut Context, which: Which, by_override: bool) -> Outcome {
    let (vendor, device) = which.id();
    let Some(function) = Function::find(vendor, device)? else {
        return Err(format!("no PCI function {vendor:04x}:{device:04x} in sysfs").into());
    };
    if by_override {
        function.bind_by_override()?;
    } else {
        let driver = function.driver()?;
        ensure!(
            driver.as_deref() == Some(pci::DRIVER),
            "{} is bound to {driver:?}, not {}",
            function.address,
            pci::DRIVER
        );
    }
    ctx.note(format!("{} is {}", which.name(), function.address));
    ctx.set_device(which, open(function)?);
    Ok(())
}

/// The device of a function the driver has just bound: its BARs and its
/// character device, once that appears.
pub(crate) fn open(function: Function) -> Result<Device, String> {
    let node = function.node();
    if !pci::wait_for(&node, true, NODE_TIMEOUT) {
        return Err(format!(
            "{} is bound but {} did not appear",
            function.address,
            node.display()
        ));
    }
    let bars = function.resources()?;
    let exporter = Exporter::open(Path::new(&node))?;
    Ok(Device {
        function,
        bars,
        exporter,
    })
}
