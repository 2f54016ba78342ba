// SPDX-License-Identifier: GPL-2.0

//! Regression tests of defects a maintainer's read of the series found
//! (issue 11), each written to fail on the kernel before its fix:
//!
//! 1. `fadvise(POSIX_FADV_WILLNEED)` and `madvise(MADV_WILLNEED)` on the
//!    importer's file reached `force_page_cache_ra()` through an address
//!    space with no `a_ops`: an oops, once the device node lives on a file
//!    system with a real backing device (devtmpfs has none): 9p here, the
//!    `$VM_OUT` directory, where the host makes the node (QEMU's 9p server
//!    refuses to make device nodes for the guest).
//! 4. REVOKE walked the export list through each dma-buf's `struct file`,
//!    which is freed at close while the buffer (and its place on the list)
//!    lives on with its dentry, held here by an `O_PATH` descriptor: KASAN
//!    reported the use after free (`CONFIG_SLUB_RCU_DEBUG` poisons the file
//!    once an RCU grace period has passed).
//! 5. RESTORE during a function reset made the exports live while the BAR
//!    did not decode: now it fails with `EBUSY` from `reset_prepare` to
//!    `reset_done`.

use std::fs;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vfio_dmabuf_uapi::mapping::{Mapping, PAGE_SIZE};

use super::export::{check_walk, export_and_import};
use super::mmap::EDU_ID;
use super::{case, ensure, must, refused, Case, Context, Failure, Outcome, Which};
use crate::bufinfo;
use crate::expect::{ranges, Buffer, PAGE};
use crate::exporter::ExportRequest;
use crate::importer::Importer;
use crate::sys;

/// The importer's misc device in sysfs: `dev` holds `MAJOR:MINOR`.
const IMPORTER_DEV: &str = "/sys/class/misc/vfio-dmabuf-importer/dev";
/// File systems with a backing device of their own (`super_setup_bdi()`),
/// unlike devtmpfs and tmpfs (`noop_backing_dev_info`), as mountinfo names
/// them: virtme-ng shares the root and `$VM_OUT` over 9p, or virtiofs.
const BACKED_FILE_SYSTEMS: &[&str] = &["9p", "virtiofs"];
/// The dma-buf core's list of every buffer.
const BUFINFO: &str = "/sys/kernel/debug/dma_buf/bufinfo";
/// The exporter's module: each dma-buf holds a reference to it
/// (`dma_buf_export_info.owner`) from export to `dma_buf_release()`.
const MODULE_REFCNT: &str = "/sys/module/vfio_dmabuf/refcnt";
/// Resets while RESTORE is hammered.
const RESETS: usize = 5;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case(
            "regression: fadvise(WILLNEED, DONTNEED) and madvise(WILLNEED) on the importer's file, opened through a node on 9p, succeed",
            fadvise_on_9p,
        ),
        case(
            "regression: REVOKE and RESTORE while a closed dma-buf's dentry is held by an O_PATH descriptor succeed, and the buffer is released when it closes",
            revoke_after_close,
        ),
        case(
            "regression: RESTORE during sysfs resets fails with EBUSY and nothing else, and the exports stay revoked after a reset until RESTORE",
            restore_during_reset,
        ),
    ]
}

/// A device node of the importer on a file system with a backing device;
/// removed when dropped if this case made it.
struct Node {
    path: PathBuf,
    made: bool,
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.made {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Where the host may have made device nodes before the guest booted, one
/// per `MAJOR:MINOR` of the misc devices' dynamic minors, since QEMU's 9p
/// server refuses to make them for the guest (it will not open a special
/// file, which its mknod does to set the owner).
const HOST_NODES: &str = "misc";

/// A node of the importer's device on a file system with a backing device:
/// one the host made in `$VM_OUT/misc/`, else one this makes in `$VM_OUT`
/// or the working directory (the repository on the guest's root); the node
/// and what it is on.
fn node_on_backed_fs() -> Result<(Node, String), Failure> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    let dev = must(
        &format!("reading {IMPORTER_DEV}"),
        fs::read_to_string(IMPORTER_DEV),
    )?;
    let dev = dev.trim();
    let (major, minor) = dev
        .split_once(':')
        .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)))
        .ok_or_else(|| format!("{IMPORTER_DEV}: {dev:?} is not MAJOR:MINOR"))?;
    let backed = |dir: &Path| -> Result<String, String> {
        match sys::mount_fstype(dir) {
            Ok(fstype) if BACKED_FILE_SYSTEMS.contains(&fstype.as_str()) => Ok(fstype),
            Ok(other) => Err(format!("{}: a {other} mount", dir.display())),
            Err(e) => Err(format!(
                "{}: /proc/self/mountinfo: {}",
                dir.display(),
                sys::describe(&e)
            )),
        }
    };
    let mut tried = Vec::new();
    let out = std::env::var_os("VM_OUT").map(PathBuf::from);
    if let Some(out) = &out {
        let path = out.join(HOST_NODES).join(dev);
        match fs::metadata(&path) {
            Ok(meta)
                if meta.file_type().is_char_device()
                    && meta.rdev() == libc::makedev(major, minor) =>
            {
                match backed(&path) {
                    Ok(fstype) => {
                        let what = format!("{fstype}, made by the host, device {dev}");
                        return Ok((Node { path, made: false }, what));
                    }
                    Err(e) => tried.push(e),
                }
            }
            Ok(_) => tried.push(format!("{}: not the device {dev}", path.display())),
            Err(e) => tried.push(format!("{}: {}", path.display(), sys::describe(&e))),
        }
    }
    let mut dirs: Vec<PathBuf> = out.into_iter().collect();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd);
    }
    for dir in dirs {
        let fstype = match backed(&dir) {
            Ok(fstype) => fstype,
            Err(e) => {
                tried.push(e);
                continue;
            }
        };
        let path = dir.join(format!("vfio-dmabuf-importer.{}", std::process::id()));
        let _ = fs::remove_file(&path);
        match sys::mknod_char(&path, major, minor) {
            Ok(()) => {
                let what = format!("{fstype} ({}), device {dev}", dir.display());
                return Ok((Node { path, made: true }, what));
            }
            Err(e) => tried.push(format!("mknod {}: {}", path.display(), sys::describe(&e))),
        }
    }
    Err(Failure::Fail(format!(
        "no node of the importer on a file system with a backing device: {}",
        tried.join("; ")
    )))
}

fn fadvise_on_9p(ctx: &mut Context) -> Outcome {
    let (node, where_) = node_on_backed_fs()?;
    ctx.note(format!("importer node {} on {where_}", node.path.display()));
    let importer = Importer::open_at(&node.path)?;
    let size = ctx.device(Which::Edu)?.bar(0).size();
    let exporter = &ctx.device(Which::Edu)?.exporter;
    let dmabuf = must(
        "EXPORT of edu BAR0",
        exporter.export(&ExportRequest::new(0, &ranges(&[(0, size)]))),
    )?;
    must("IMPORT through the node", importer.import(dmabuf.as_fd()))?;
    let map = must(
        "mmap of the buffer",
        Mapping::new(importer.fd(), 0, size as usize, PAGE_SIZE),
    )?;
    let id = must("read of offset 0", map.read32(0))?;
    ensure!(id == EDU_ID, "offset 0 reads {id:#010x} before the advice");
    let len = size as i64;
    must(
        "posix_fadvise(POSIX_FADV_WILLNEED) of the whole file",
        sys::fadvise(importer.fd(), 0, 0, libc::POSIX_FADV_WILLNEED),
    )?;
    must(
        "posix_fadvise(POSIX_FADV_WILLNEED) of the buffer",
        sys::fadvise(importer.fd(), 0, len, libc::POSIX_FADV_WILLNEED),
    )?;
    must(
        "posix_fadvise(POSIX_FADV_DONTNEED) of the buffer",
        sys::fadvise(importer.fd(), 0, len, libc::POSIX_FADV_DONTNEED),
    )?;
    must(
        "madvise(MADV_WILLNEED) of the mapping",
        sys::madvise_willneed(map.addr(), map.len()),
    )?;
    let id = must("read of offset 0", map.read32(0))?;
    ensure!(id == EDU_ID, "offset 0 reads {id:#010x} after the advice");
    drop(map);
    must("closing the importer", importer.close())?;
    drop(node);
    Ok(())
}

/// The exporter module's reference count.
fn module_refcnt() -> Result<u64, Failure> {
    let text = must(
        &format!("reading {MODULE_REFCNT}"),
        fs::read_to_string(MODULE_REFCNT),
    )?;
    Ok(text
        .trim()
        .parse()
        .map_err(|e| format!("{MODULE_REFCNT}: {text:?}: {e}"))?)
}

/// Whether `bufinfo` lists a buffer whose file has inode `ino`.
fn listed(ino: u64) -> Result<bool, Failure> {
    let text = must(&format!("reading {BUFINFO}"), fs::read_to_string(BUFINFO))?;
    Ok(bufinfo::parse(&text).iter().any(|o| o.ino == ino))
}

fn revoke_after_close(ctx: &mut Context) -> Outcome {
    ensure!(
        Path::new(BUFINFO).exists(),
        "{BUFINFO} does not exist (debugfs not mounted, or no CONFIG_DEBUG_FS)"
    );
    let exporter = &ctx.device(Which::Edu)?.exporter;
    let before = module_refcnt()?;
    let dmabuf = must(
        "EXPORT of a page of edu BAR0",
        exporter.export(&ExportRequest::new(0, &ranges(&[(0, PAGE)]))),
    )?;
    let ino = must("fstat of the dma-buf", sys::inode(dmabuf.as_fd()))?;
    let exported = module_refcnt()?;
    ensure!(
        listed(ino)?,
        "bufinfo does not list the new buffer (inode {ino})"
    );
    let link = PathBuf::from(format!("/proc/self/fd/{}", dmabuf.as_raw_fd()));
    let path = must(
        &format!("open({}, O_PATH)", link.display()),
        sys::open_path(&link),
    )?;
    must("closing the dma-buf", sys::close(dmabuf))?;
    // The file is freed by the close's task work, before close() returns;
    // KASAN (with CONFIG_SLUB_RCU_DEBUG) poisons it once a grace period has
    // passed and its RCU callback has run.
    for _ in 0..2 {
        must("membarrier(MEMBARRIER_CMD_GLOBAL)", sys::synchronize_rcu())?;
    }
    std::thread::sleep(Duration::from_millis(100));
    let held = module_refcnt()?;
    let still_listed = listed(ino)?;
    let revoked = must("REVOKE of edu BAR0", exporter.revoke(0));
    let restored = must("RESTORE of edu BAR0", exporter.restore(0));
    let closed = must("closing the O_PATH descriptor", sys::close(path));
    let after = module_refcnt()?;
    let listed_after = listed(ino)?;
    ctx.note(format!(
        "vfio_dmabuf refcnt: {before} before, {exported} exported, {held} with the file closed and the dentry held, {after} after"
    ));
    revoked?;
    restored?;
    closed?;
    ensure!(
        exported == before + 1 && held == exported,
        "the buffer did not hold the module from export until its dentry was released: refcnt {before}, {exported}, {held}"
    );
    ensure!(
        !still_listed && !listed_after,
        "bufinfo lists inode {ino} after the dma-buf's file was closed"
    );
    ensure!(
        after == before,
        "refcnt {after} once the O_PATH descriptor is closed, {before} before the export: the buffer was not released"
    );
    Ok(())
}

/// What the RESTOREs made while the function was being reset returned.
#[derive(Debug, Default)]
struct Hammered {
    restored: u64,
    busy: u64,
    /// Any other errno, with how often.
    other: Vec<(i32, u64)>,
}

fn restore_during_reset(ctx: &mut Context) -> Outcome {
    let bar = *ctx.device(Which::Edu)?.bar(0);
    let (buffer, _dmabuf, importer) =
        export_and_import(ctx, Which::Edu, 0, &ranges(&[(0, bar.size())]))?;
    check_walk(&importer, &buffer, None)?;
    let device = ctx.device(Which::Edu)?;
    let function = device.function.clone();
    let methods = function.reset_methods();
    let exporter = &device.exporter;
    let stop = AtomicBool::new(false);
    let (hammered, resets) = std::thread::scope(|scope| {
        let hammer = scope.spawn(|| {
            let mut hammered = Hammered::default();
            while !stop.load(Ordering::Relaxed) {
                match exporter.restore(0) {
                    Ok(()) => hammered.restored += 1,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => hammered.busy += 1,
                    Err(e) => {
                        let errno = e.raw_os_error().unwrap_or(0);
                        match hammered.other.iter_mut().find(|(n, _)| *n == errno) {
                            Some((_, count)) => *count += 1,
                            None => hammered.other.push((errno, 1)),
                        }
                    }
                }
            }
            hammered
        });
        let mut resets = Vec::new();
        for _ in 0..RESETS {
            resets.push(function.reset());
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        (hammer.join(), resets)
    });
    // One more reset with no RESTORE racing it: the exports must stay
    // revoked after it until a RESTORE.
    let last_reset = function.reset();
    let after_reset = importer.get_pfn(0);
    let walk_after_reset = importer.walk(0, 16);
    let restored = exporter.restore(0);
    // edu's BAR0 is left live whatever happened.
    let _ = exporter.restore(0);
    ctx.note(format!(
        "{}: reset_method {} (the PCI core uses the first that works)",
        function.address,
        methods.as_deref().unwrap_or("(none)")
    ));
    let hammered = hammered.map_err(|_| Failure::Fail("the RESTORE thread panicked".to_owned()))?;
    ctx.note(format!(
        "{RESETS} resets: {} RESTOREs succeeded, {} failed with EBUSY, others: {:?}",
        hammered.restored, hammered.busy, hammered.other
    ));
    for (i, reset) in resets.into_iter().enumerate() {
        reset.map_err(|e| format!("reset {}: {e}", i + 1))?;
    }
    ensure!(
        hammered.other.is_empty(),
        "RESTORE failed otherwise than with EBUSY: {}",
        hammered
            .other
            .iter()
            .map(|&(errno, count)| format!("{} x{count}", sys::name(errno)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    ensure!(
        hammered.busy >= 1,
        "no RESTORE failed with EBUSY during {RESETS} resets ({} succeeded)",
        hammered.restored
    );
    last_reset.map_err(|e| format!("the last reset: {e}"))?;
    refused("GET_PFN after the last reset", after_reset, libc::ENODEV)?;
    refused("WALK after the last reset", walk_after_reset, libc::ENODEV)?;
    must("RESTORE after the last reset", restored)?;
    let got = must("GET_PFN of page 0 after RESTORE", importer.get_pfn(0))?;
    let expected = expected_page0(&buffer)?;
    ensure!(
        got == expected,
        "GET_PFN of page 0: {got:x?}, expected {expected:x?}"
    );
    check_walk(&importer, &buffer, None)?;
    Ok(())
}

fn expected_page0(buffer: &Buffer) -> Result<(u64, u32), Failure> {
    buffer
        .get_pfn(0)
        .ok_or_else(|| Failure::Fail("an empty buffer".to_owned()))
}
