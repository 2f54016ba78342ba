// SPDX-License-Identifier: GPL-2.0

//! Security properties, each its own case: who may open the devices, what a
//! dma-buf handed to an unprivileged process grants, and that a mapping
//! made before a revoke, in another process, gives no access after it.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use vfio_dmabuf_uapi::mapping::{Access, PAGE_SIZE};

use super::export::export_and_import;
use super::{case, ensure, must, Case, Context, Failure, Outcome, Which};
use crate::expect::{ranges, PAGE};
use crate::importer::NODE;
use crate::sys;

/// The unprivileged identity the children take.
const NOBODY: u32 = 65534;

pub(super) fn cases() -> Vec<Case> {
    vec![
        case(
            "security: an unprivileged process cannot open the exporter's or the importer's device",
            unprivileged_open,
        ),
        case(
            "security: a dma-buf and an import handed to an unprivileged process reach only the buffer's pages",
            handed_over,
        ),
        case(
            "security: a mapping another process made before REVOKE gives no access after it",
            other_process,
        ),
    ]
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Failure> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(Failure::Fail(format!(
            "pipe2: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: pipe2() made both descriptors, which we own from here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A forked child and the pipe it reports on.
struct Child {
    pid: libc::pid_t,
    report: OwnedFd,
}

/// Forks a child that runs `child` and reports `Ok` or its failure message.
fn spawn(child: impl FnOnce() -> Result<(), String>) -> Result<Child, Failure> {
    let (read_end, write_end) = pipe()?;
    // SAFETY: the test program is single-threaded, so the child may run
    // ordinary code; it leaves with _exit().
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Failure::Fail(format!(
            "fork: {}",
            std::io::Error::last_os_error()
        )));
    }
    if pid == 0 {
        drop(read_end);
        let message = child().err().unwrap_or_default();
        let mut pipe = std::fs::File::from(write_end);
        let _ = pipe.write_all(message.as_bytes());
        // SAFETY: leaving the child without running the parent's exit code.
        unsafe { libc::_exit(i32::from(!message.is_empty())) };
    }
    Ok(Child {
        pid,
        report: read_end,
    })
}

impl Child {
    fn wait(self) -> Outcome {
        let mut message = String::new();
        let _ = std::fs::File::from(self.report).read_to_string(&mut message);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
        if !message.is_empty() {
            return Err(Failure::Fail(message));
        }
        ensure!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child ended with wait status {status:#x}"
        );
        Ok(())
    }
}

/// Runs `child` in a forked process and returns what it reported.
fn in_child(child: impl FnOnce() -> Result<(), String>) -> Outcome {
    spawn(child)?.wait()
}

/// Drops to nobody:nogroup with no supplementary groups.
fn drop_privileges() -> Result<(), String> {
    // SAFETY: plain system calls on this process's credentials.
    let ok = unsafe {
        libc::setgroups(0, std::ptr::null()) == 0
            && libc::setresgid(NOBODY, NOBODY, NOBODY) == 0
            && libc::setresuid(NOBODY, NOBODY, NOBODY) == 0
    };
    if !ok {
        return Err(format!(
            "dropping privileges: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn expect_errno<T>(what: &str, result: std::io::Result<T>, errno: i32) -> Result<(), String> {
    match result {
        Ok(_) => Err(format!("{what}: succeeded, expected {}", sys::name(errno))),
        Err(e) if e.raw_os_error() == Some(errno) => Ok(()),
        Err(e) => Err(format!(
            "{what}: {}, expected {}",
            sys::describe(&e),
            sys::name(errno)
        )),
    }
}

fn unprivileged_open(ctx: &mut Context) -> Outcome {
    let node = ctx.device(Which::Edu)?.function.node();
    in_child(|| {
        drop_privileges()?;
        for path in [node.as_path(), std::path::Path::new(NODE)] {
            for write in [false, true] {
                let opened = std::fs::OpenOptions::new()
                    .read(true)
                    .write(write)
                    .open(path);
                expect_errno(
                    &format!("open of {} (write {write})", path.display()),
                    opened,
                    libc::EACCES,
                )?;
            }
        }
        Ok(())
    })
}

fn handed_over(ctx: &mut Context) -> Outcome {
    let bar = *ctx.device(Which::Edu)?.bar(0);
    // One page of edu's BAR0, its second.
    let (buffer, dmabuf, importer) =
        export_and_import(ctx, Which::Edu, 0, &ranges(&[(PAGE, PAGE)]))?;
    let expected = buffer.walk();
    in_child(move || {
        drop_privileges()?;
        // mmap: only the buffer's one page, nothing before or past it.
        let mmap = |offset: i64, len: usize| {
            importer.try_mmap(offset, len, libc::PROT_READ, libc::MAP_SHARED)
        };
        mmap(0, PAGE_SIZE).map_err(|e| format!("mmap of the buffer: {e}"))?;
        expect_errno("mmap of two pages", mmap(0, 2 * PAGE_SIZE), libc::EINVAL)?;
        expect_errno(
            "mmap at the second page",
            mmap(PAGE_SIZE as i64, PAGE_SIZE),
            libc::EINVAL,
        )?;
        expect_errno("mmap at 1 TiB", mmap(1 << 40, PAGE_SIZE), libc::EINVAL)?;
        // The dma-buf itself has no mmap.
        // SAFETY: a mapping the kernel is expected to refuse; unmapped if not.
        let direct = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE_SIZE,
                libc::PROT_READ,
                libc::MAP_SHARED,
                dmabuf.as_raw_fd(),
                0,
            )
        };
        if direct != libc::MAP_FAILED {
            // SAFETY: the mapping just made.
            unsafe { libc::munmap(direct, PAGE_SIZE) };
            return Err("the dma-buf itself could be mapped".to_owned());
        }
        // Walk and GET_PFN: the one page frame, nothing else.
        let walk = importer.walk(0, 8).map_err(|e| format!("WALK: {e}"))?;
        if walk.table != expected || walk.table.first().map(|e| e.pfn) != Some(bar.pfn() + 1) {
            return Err(format!("WALK gives {:x?}", walk.table));
        }
        expect_errno("GET_PFN of page 1", importer.get_pfn(1), libc::ERANGE)?;
        // Importing the buffer again on the handed-over file changes nothing.
        importer
            .import(dmabuf.as_fd())
            .map_err(|e| format!("IMPORT again: {e}"))?;
        expect_errno(
            "GET_PFN of page 1 after IMPORT",
            importer.get_pfn(1),
            libc::ERANGE,
        )?;
        Ok(())
    })
}

fn other_process(ctx: &mut Context) -> Outcome {
    let (_buffer, _dmabuf, importer) =
        export_and_import(ctx, Which::Edu, 0, &ranges(&[(0, PAGE)]))?;
    let mapping = must("mmap", importer.map(0, PAGE_SIZE, PAGE_SIZE))?;
    let (ready_read, ready_write) = pipe()?;
    let (go_read, go_write) = pipe()?;
    // The child faults the page in, in its own page tables, before the
    // revoke; after it, a read in a process forked from the child (which
    // would inherit the child's entry had it not been zapped) must SIGBUS.
    let fds = [
        ready_read.as_raw_fd(),
        ready_write.as_raw_fd(),
        go_read.as_raw_fd(),
        go_write.as_raw_fd(),
    ];
    let child = spawn(|| {
        // SAFETY: the child's own copies of the pipe ends, which it closes
        // or reads by number: the parent's `OwnedFd`s are not used here.
        let close_unused = || unsafe {
            libc::close(fds[0]);
            libc::close(fds[3]);
        };
        close_unused();
        let before = mapping.read32(0).map_err(|e| e.to_string())?;
        if before != super::mmap::EDU_ID {
            return Err(format!("the child read {before:#x} before REVOKE"));
        }
        let mut byte = 0u8;
        // SAFETY: as above; `byte` has room for the one byte read.
        unsafe {
            libc::close(fds[1]);
            libc::read(fds[2], (&raw mut byte).cast(), 1);
        }
        match mapping.probe_read32(0).map_err(|e| e.to_string())? {
            Access::Sigbus => Ok(()),
            Access::Value(v) => Err(format!("the child read {v:#x} after REVOKE")),
        }
    })?;
    drop(ready_write);
    drop(go_read);
    let mut byte = [0u8; 1];
    let _ = std::fs::File::from(ready_read).read(&mut byte);
    let exporter = &ctx.device(Which::Edu)?.exporter;
    let revoked = must("REVOKE", exporter.revoke(0));
    drop(go_write);
    let result = child.wait();
    let restored = must("RESTORE", exporter.restore(0));
    revoked?;
    result?;
    restored
}
