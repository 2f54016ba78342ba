// SPDX-License-Identifier: GPL-2.0

//! debugfs's `dma_buf/bufinfo` with an edu buffer imported: it lists the
//! buffer under the exporting module's name, and the importer's attachment,
//! which has no device, as `(no device)` (the kernel series makes it print
//! that instead of dereferencing a NULL device).

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use super::export::export_and_import;
use super::{case, ensure, must, Case, Context, Failure, Outcome, Shared, Which};
use crate::bufinfo::{self, Object};
use crate::expect::{ranges, Buffer, PAGE};
use crate::importer::Importer;
use crate::sys;

/// Where debugfs is mounted, as the kernel's documentation has it.
const DEBUGFS: &str = "/sys/kernel/debug";
/// The dma-buf core's list of every buffer.
const BUFINFO: &str = "/sys/kernel/debug/dma_buf/bufinfo";
/// The exporter's name in `bufinfo`: its module's.
const EXP_NAME: &str = "vfio_dmabuf";
/// What `bufinfo` prints for an attachment without a device.
const NO_DEVICE: &str = "(no device)";

/// The buffer listed, with its import alive.
struct Listed {
    buffer: Buffer,
    dmabuf: OwnedFd,
    importer: Importer,
    ino: u64,
}

pub(super) fn cases() -> Vec<Case> {
    let state = Shared::<Listed>::new();
    let (first, second, last) = (state.clone(), state.clone(), state);
    vec![
        case(
            "debugfs bufinfo lists an imported edu buffer with exp_name vfio_dmabuf",
            move |ctx| list_first(ctx, &first),
        ),
        case(
            "debugfs bufinfo shows the importer's device-less attachment as (no device)",
            move |_| {
                second.with(|listed| {
                    let object = find(listed.ino)?;
                    ensure!(
                        object.attachments == [NO_DEVICE],
                        "attachments {:?}, expected one {NO_DEVICE:?}",
                        object.attachments
                    );
                    Ok(())
                })
            },
        ),
        case(
            "debugfs bufinfo lists no attachment once the importer's file is closed",
            move |_| {
                let listed = last.take()?;
                must("closing the importer", listed.importer.close())?;
                let object = find(listed.ino)?;
                ensure!(
                    object.attachments.is_empty(),
                    "attachments {:?} after the importer detached",
                    object.attachments
                );
                ensure!(
                    object.size == listed.buffer.size(),
                    "size {:#x}, expected {:#x}",
                    object.size,
                    listed.buffer.size()
                );
                drop(listed.dmabuf);
                Ok(())
            },
        ),
    ]
}

fn list_first(ctx: &mut Context, state: &Shared<Listed>) -> Outcome {
    if mount_debugfs()? {
        ctx.note(format!("mounted debugfs on {DEBUGFS}"));
    }
    let (buffer, dmabuf, importer) =
        export_and_import(ctx, Which::Edu, 0, &ranges(&[(0, 4 * PAGE)]))?;
    let ino = must("fstat of the dma-buf", sys::inode(dmabuf.as_fd()))?;
    let object = find(ino);
    let size = buffer.size();
    state.set(Listed {
        buffer,
        dmabuf,
        importer,
        ino,
    });
    let object = object?;
    ctx.note(format!(
        "inode {ino}: {} bytes, exp_name {:?}, {} reference(s), {} attachment(s)",
        object.size,
        object.exp_name,
        object.count,
        object.attachments.len()
    ));
    ensure!(
        object.exp_name == EXP_NAME,
        "exp_name {:?}, expected {EXP_NAME:?}",
        object.exp_name
    );
    ensure!(
        object.size == size,
        "size {:#x}, expected {size:#x}",
        object.size
    );
    Ok(())
}

/// Mounts debugfs on [`DEBUGFS`] unless it is there; true if it mounted it.
fn mount_debugfs() -> Result<bool, Failure> {
    let mounts = must(
        "reading /proc/self/mounts",
        fs::read_to_string("/proc/self/mounts"),
    )?;
    if is_mounted(&mounts, DEBUGFS, "debugfs") {
        return Ok(false);
    }
    must(
        &format!("mount -t debugfs none {DEBUGFS}"),
        sys::mount(c"none", c"/sys/kernel/debug", c"debugfs"),
    )?;
    Ok(true)
}

/// Whether `/proc/self/mounts` shows a file system of type `fstype` on
/// `target`.
fn is_mounted(mounts: &str, target: &str, fstype: &str) -> bool {
    mounts.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(target) && fields.next() == Some(fstype)
    })
}

/// The buffer whose file has inode `ino`, as `bufinfo` lists it now.
fn find(ino: u64) -> Result<Object, Failure> {
    if !Path::new(BUFINFO).exists() {
        return Err(Failure::Fail(format!(
            "{BUFINFO} does not exist (a kernel without CONFIG_DEBUG_FS?)"
        )));
    }
    let text = must(&format!("reading {BUFINFO}"), fs::read_to_string(BUFINFO))?;
    let objects = bufinfo::parse(&text);
    let count = objects.len();
    objects
        .into_iter()
        .find(|object| object.ino == ino)
        .ok_or_else(|| {
            Failure::Fail(format!(
                "no buffer with inode {ino} among the {count} that {BUFINFO} lists"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounted_file_systems() {
        let mounts = "sysfs /sys sysfs rw,nosuid 0 0\n\
                      debugfs /sys/kernel/debug debugfs rw,relatime 0 0\n";
        assert!(is_mounted(mounts, DEBUGFS, "debugfs"));
        assert!(!is_mounted(mounts, "/sys/kernel/tracing", "tracefs"));
        assert!(!is_mounted(
            "none /sys/kernel/debug tmpfs rw 0 0\n",
            DEBUGFS,
            "debugfs"
        ));
    }
}
