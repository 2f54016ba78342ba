// SPDX-License-Identifier: GPL-2.0

//! The last cases: the modules' lifetimes. A dma-buf holds a reference to
//! the module that exported it, so `vfio_dmabuf` cannot be unloaded while
//! one is open, even with no character device or importer file open; once
//! this program has closed every file, both modules unload, and unloading
//! the driver unbinds every function and releases its BARs (which
//! `/proc/iomem` showed claimed, each memory BAR of each bound function,
//! just before).
//!
//! Closing a dma-buf (or a file holding one) releases it only on the way
//! back to user space, and a release the kernel defers may come later
//! still, so an unload is tried a few times before it counts as failed.

use std::ffi::CStr;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::thread;
use std::time::Duration;

use super::setup::NODE_TIMEOUT;
use super::{all_of, case, ensure, must, Case, Context, Failure, Outcome, Shared, Which};
use crate::expect::{ranges, PAGE};
use crate::exporter::{self, ExportRequest};
use crate::importer;
use crate::pci::{self, Function};
use crate::sys;

/// The modules, by the names the kernel knows them.
const EXPORTER: &CStr = c"vfio_dmabuf";
const IMPORTER: &CStr = c"vfio_dmabuf_importer";

/// How many times, and how far apart, an unload that finds the module busy
/// is tried.
const TRIES: u32 = 20;
const PAUSE: Duration = Duration::from_millis(50);

/// What `/proc/self/fd` shows for a dma-buf without a name.
const DMABUF_LINK: &str = "/dmabuf:";

pub(super) fn cases() -> Vec<Case> {
    // The dma-buf that pins the driver, closed by the next case.
    let pinned = Shared::<OwnedFd>::new();
    let pin = pinned.clone();
    vec![
        case(
            "vfio_dmabuf: with only a dma-buf open, delete_module fails with EBUSY or EWOULDBLOCK",
            move |ctx| only_a_buffer(ctx, &pin),
        ),
        case(
            "vfio_dmabuf_importer: delete_module succeeds once every file is closed",
            move |ctx| unload_importer(ctx, &pinned),
        ),
        case(
            "vfio_dmabuf: delete_module succeeds, unbinding every function and releasing its BARs",
            unload_exporter,
        ),
    ]
}

/// Exports a page, closes every character device, and tries to unload the
/// driver with nothing but the dma-buf open.
fn only_a_buffer(ctx: &mut Context, pinned: &Shared<OwnedFd>) -> Outcome {
    let (which, bar, dmabuf) = export_a_page(ctx)?;
    ctx.note(format!(
        "holding a dma-buf of one page of {} BAR{bar}",
        which.name()
    ));
    let raw = dmabuf.as_raw_fd();
    pinned.set(dmabuf);
    let closed = close_devices(ctx);
    let others = ours_open(Some(raw));
    let before = module_state(EXPORTER);
    let unloaded = sys::delete_module(EXPORTER, libc::O_NONBLOCK);
    ctx.note(format!("vfio_dmabuf before delete_module: {before}"));
    let refused = match &unloaded {
        Ok(()) => Err(Failure::Fail(
            "delete_module(\"vfio_dmabuf\", O_NONBLOCK) succeeded with a dma-buf of it open"
                .to_owned(),
        )),
        // EWOULDBLOCK (EAGAIN on Linux): the module's reference count is
        // not zero; EBUSY: it cannot go now (it is going away already).
        Err(e) if matches!(e.raw_os_error(), Some(libc::EWOULDBLOCK | libc::EBUSY)) => Ok(()),
        Err(e) => Err(Failure::Fail(format!(
            "delete_module(\"vfio_dmabuf\", O_NONBLOCK): {}, expected EBUSY or EWOULDBLOCK",
            sys::describe(e)
        ))),
    };
    all_of([closed, nothing_else_open(others), refused])
}

/// Closes every file this program still holds on either module, then
/// unloads the importer.
fn unload_importer(ctx: &mut Context, pinned: &Shared<OwnedFd>) -> Outcome {
    let mut closed = vec![close_devices(ctx)];
    if let Ok(dmabuf) = pinned.take() {
        closed.push(must("closing the dma-buf", sys::close(dmabuf)));
    }
    all_of(closed)?;
    nothing_else_open(ours_open(None))?;
    unload(ctx, IMPORTER)?;
    ensure!(
        pci::wait_for(Path::new(importer::NODE), false, NODE_TIMEOUT),
        "{} is still there",
        importer::NODE
    );
    Ok(())
}

/// Unloads the driver and checks that it let go of every function.
fn unload_exporter(ctx: &mut Context) -> Outcome {
    // Nothing is left open unless an earlier case failed early.
    close_devices(ctx)?;
    nothing_else_open(ours_open(None))?;
    // The claims to be released: every memory BAR of every function bound
    // to the driver, and nothing else, or releasing them proves nothing.
    let mut expected = Vec::new();
    for which in Which::ALL {
        let (vendor, device) = which.id();
        let Some(function) = Function::find(vendor, device)? else {
            continue;
        };
        if function.driver()?.as_deref() == Some(pci::DRIVER) {
            expected.extend(super::gone::memory_bars(&function.resources()?));
        }
    }
    let mut before = super::gone::iomem_claims()?;
    before.sort_unstable();
    expected.sort_unstable();
    ctx.note(format!(
        "{} BAR(s) claimed in /proc/iomem before unloading: {}",
        before.len(),
        before
            .iter()
            .map(|(start, end)| format!("{start:x}-{end:x}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    ensure!(
        !expected.is_empty(),
        "no function is bound to {}: nothing to release",
        pci::DRIVER
    );
    ensure!(
        before == expected,
        "/proc/iomem claims {before:x?} for {}, the bound functions' memory BARs are {expected:x?}",
        pci::DRIVER
    );
    unload(ctx, EXPORTER)?;
    let mut checks = Vec::new();
    let module = Path::new("/sys/module").join(name(EXPORTER));
    checks.push(if module.exists() {
        Err(format!("{} is still there", module.display()).into())
    } else {
        Ok(())
    });
    for which in Which::ALL {
        let (vendor, device) = which.id();
        let Some(function) = Function::find(vendor, device)? else {
            continue;
        };
        checks.push(unbound(&function));
    }
    let after = must("reading /proc/iomem", claims())?;
    checks.push(if after.is_empty() {
        Ok(())
    } else {
        Err(format!("BARs still claimed in /proc/iomem:\n{}", after.join("\n")).into())
    });
    all_of(checks)
}

/// Exports the first page of the first memory BAR of a bound device, edu's
/// if it is bound.
fn export_a_page(ctx: &Context) -> Result<(Which, u32, OwnedFd), Failure> {
    for which in Which::ALL {
        let Ok(device) = ctx.device(which) else {
            continue;
        };
        let Some(bar) = device
            .bars
            .iter()
            .position(|r| r.flags & pci::IORESOURCE_MEM != 0 && r.size() >= PAGE)
        else {
            continue;
        };
        let bar = bar as u32;
        let request = ExportRequest::new(bar, &ranges(&[(0, PAGE)]));
        let dmabuf = must(
            &format!("EXPORT from {} BAR{bar}", which.name()),
            device.exporter.export(&request),
        )?;
        return Ok((which, bar, dmabuf));
    }
    Err(Failure::Skip("no device is bound".to_owned()))
}

/// Closes the character device of every device still in `ctx`.
fn close_devices(ctx: &mut Context) -> Outcome {
    let mut closed = Vec::new();
    for which in Which::ALL {
        if let Ok(device) = ctx.take_device(which) {
            closed.push(must(
                &format!("closing {}'s character device", which.name()),
                device.exporter.close(),
            ));
        }
    }
    all_of(closed)
}

/// The files of this program on the exporter's or the importer's devices
/// and its dma-bufs, but `except`, as `fd N -> target` lines.
fn ours_open(except: Option<i32>) -> Result<Vec<String>, Failure> {
    let files = must("listing /proc/self/fd", sys::open_files())?;
    Ok(files
        .into_iter()
        .filter(|(fd, target)| {
            let target = target.to_string_lossy();
            Some(*fd) != except
                && (target.starts_with(exporter::DEV_DIR) || target.starts_with(DMABUF_LINK))
        })
        .map(|(fd, target)| format!("fd {fd} -> {}", target.display()))
        .collect())
}

fn nothing_else_open(open: Result<Vec<String>, Failure>) -> Outcome {
    let open = open?;
    ensure!(
        open.is_empty(),
        "this program still holds:\n{}",
        open.join("\n")
    );
    Ok(())
}

/// `delete_module(name, O_NONBLOCK)`, tried up to [`TRIES`] times while the
/// module is busy.
fn unload(ctx: &mut Context, module: &CStr) -> Outcome {
    let mut tries = 0;
    let busy = loop {
        tries += 1;
        match sys::delete_module(module, libc::O_NONBLOCK) {
            Ok(()) => {
                if tries > 1 {
                    ctx.note(format!("{} unloaded at try {tries}", name(module)));
                }
                return Ok(());
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EWOULDBLOCK | libc::EBUSY)) => {
                if tries == TRIES {
                    break e;
                }
                thread::sleep(PAUSE);
            }
            Err(e) => {
                return Err(Failure::Fail(format!(
                    "delete_module({module:?}, O_NONBLOCK): {}",
                    sys::describe(&e)
                )))
            }
        }
    };
    Err(Failure::Fail(format!(
        "delete_module({module:?}, O_NONBLOCK): {} on each of {TRIES} tries {} ms apart; {}",
        sys::describe(&busy),
        PAUSE.as_millis(),
        module_state(module)
    )))
}

/// The module's reference count and the modules using it, for messages.
fn module_state(module: &CStr) -> String {
    let dir = Path::new("/sys/module").join(name(module));
    if !dir.exists() {
        return "not loaded".to_owned();
    }
    let refcnt = fs::read_to_string(dir.join("refcnt"))
        .map_or_else(|e| sys::describe(&e), |text| text.trim().to_owned());
    let mut holders: Vec<String> = fs::read_dir(dir.join("holders"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    holders.sort();
    format!("refcnt {refcnt}, holders {holders:?}")
}

fn name(module: &CStr) -> String {
    module.to_string_lossy().into_owned()
}

/// The lines of `/proc/iomem` that name the driver: the BARs it claims.
fn claims() -> std::io::Result<Vec<String>> {
    let iomem = fs::read_to_string("/proc/iomem")?;
    Ok(iomem_claims(&iomem, pci::DRIVER))
}

fn iomem_claims(iomem: &str, owner: &str) -> Vec<String> {
    iomem
        .lines()
        .filter(|line| line.split_once(" : ").map(|(_, name)| name) == Some(owner))
        .map(|line| line.trim().to_owned())
        .collect()
}

/// The driver let go of `function`: not bound, no character device.
fn unbound(function: &Function) -> Outcome {
    let driver = function.driver()?;
    ensure!(
        driver.as_deref() != Some(pci::DRIVER),
        "{} is still bound to {}",
        function.address,
        pci::DRIVER
    );
    let node = function.node();
    ensure!(
        pci::wait_for(&node, false, NODE_TIMEOUT),
        "{} is still there",
        node.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_in_iomem() {
        let iomem = "\
00000000-00000fff : Reserved
fe800000-fe8fffff : PCI Bus 0000:01
  fe800000-fe8fffff : 0000:01:00.0
    fe800000-fe8fffff : vfio_dmabuf
800000000-83fffffff : 0000:02:00.0
  800000000-83fffffff : vfio_dmabuf_other
";
        assert_eq!(
            iomem_claims(iomem, "vfio_dmabuf"),
            ["fe800000-fe8fffff : vfio_dmabuf"]
        );
        assert!(iomem_claims("", "vfio_dmabuf").is_empty());
    }

    #[test]
    fn state_of_no_module() {
        assert_eq!(module_state(c"vfio_dmabuf_no_such_module"), "not loaded");
    }
}
