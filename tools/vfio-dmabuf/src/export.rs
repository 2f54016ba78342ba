// SPDX-License-Identifier: GPL-2.0

//! `export`: slices of a memory BAR as a new dma-buf, which the tool then
//! walks through the test importer (`walk.rs`), times (`bench.rs`) or hands
//! to a command as an inherited file descriptor.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::device::{self, Device};
use crate::error::Error;
use crate::size::{self, Range, RangeArg};
use crate::uapi;

/// The environment variable that tells `--exec`'s command the number of the
/// dma-buf's file descriptor.
pub const FD_VARIABLE: &str = "VFIO_DMABUF_FD";

/// A dma-buf the tool exported, and what it was exported from.
pub struct Exported {
    /// The exporter's character device.
    pub path: PathBuf,
    /// The function's PCI address.
    pub address: String,
    pub bar: u32,
    /// The BAR's size in bytes.
    pub bar_size: u64,
    /// The slices of the BAR, in buffer order.
    pub ranges: Vec<Range>,
    /// The dma-buf, read-write and close-on-exec.
    pub dmabuf: OwnedFd,
}

/// The size of BAR `bar` of `device`, after checking with
/// `VFIO_DMABUF_INFO` that it is a memory BAR, the only kind with exports.
pub fn memory_bar(device: &Device, bar: u32) -> Result<u64, Error> {
    let info = device.info()?;
    let entry = info
        .bars
        .get(bar as usize)
        .filter(|_| bar < info.num_bars)
        .ok_or_else(|| {
            Error::invalid(
                device.path(),
                format!("no BAR{bar}: the function reports {} BARs", info.num_bars),
            )
        })?;
    if entry.flags & uapi::VFIO_DMABUF_BAR_MEM != 0 {
        return Ok(entry.size);
    }
    let kind = if entry.flags & uapi::VFIO_DMABUF_BAR_ABSENT != 0 {
        "absent".to_owned()
    } else if entry.flags & uapi::VFIO_DMABUF_BAR_IO != 0 {
        "an I/O BAR".to_owned()
    } else {
        format!("of unknown kind (flags {:#x})", entry.flags)
    };
    Err(Error::invalid(
        device.path(),
        format!("BAR{bar} is {kind}: only memory BARs have exports"),
    ))
}

/// Exports `ranges` of BAR `bar` (the whole BAR when there are none) from
/// the device `name` (a path or a PCI address), after checking them against
/// the BAR as the kernel will.
pub fn export(name: &Path, bar: u32, ranges: &[RangeArg]) -> Result<Exported, Error> {
    let path = device::resolve(name);
    let device = Device::open(&path)?;
    let bar_size = memory_bar(&device, bar)?;
    let ranges = size::resolve(ranges, bar_size);
    size::check(
        &ranges,
        bar_size,
        device::page_size(),
        uapi::VFIO_DMABUF_MAX_RANGES as usize,
    )
    .map_err(|e| Error::invalid(&path, format!("BAR{bar}: {e}")))?;
    let dmabuf = device.export(bar, &ranges)?;
    Ok(Exported {
        address: device.address(),
        path,
        bar,
        bar_size,
        ranges,
        dmabuf,
    })
}

/// Runs `command` (a program and its arguments) with the dma-buf as an
/// inherited file descriptor, whose number is in [`FD_VARIABLE`], and waits
/// for it. Its exit status is the tool's: its code, 128 plus the signal
/// that killed it, or, as `env` does, 127 when the program is not found and
/// 126 when it cannot run.
pub fn exec(exported: &Exported, command: &[OsString]) -> ExitCode {
    let Some((program, args)) = command.split_first() else {
        eprintln!("vfio-dmabuf: --exec: no command");
        return ExitCode::from(2);
    };
    let fd = exported.dmabuf.as_raw_fd();
    let mut child = Command::new(program);
    child.args(args).env(FD_VARIABLE, fd.to_string());
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: it makes one fcntl(2) call
    // on a descriptor the child inherited, and allocates nothing (an
    // `io::Error` from an errno is not allocated).
    unsafe {
        child.pre_exec(move || {
            // The dma-buf is close-on-exec, so that no other program the
            // tool might start inherits it: clear that for this one.
            if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    match child.status() {
        Ok(status) => {
            if let Some(code) = status.code() {
                ExitCode::from(u8::try_from(code).unwrap_or(1))
            } else if let Some(signal) = status.signal() {
                ExitCode::from(u8::try_from(128 + signal).unwrap_or(255))
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            let code = if e.kind() == io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            eprintln!("vfio-dmabuf: {}", Error::os(Path::new(program), "exec", e));
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    /// A stand-in for a dma-buf: any open file behaves the same for `exec`.
    fn exported() -> Exported {
        let file = File::open("/dev/null").expect("opens /dev/null");
        Exported {
            path: PathBuf::from("/dev/null"),
            address: "0000:00:03.0".to_owned(),
            bar: 0,
            bar_size: 0x1000,
            ranges: vec![Range {
                offset: 0,
                length: 0x1000,
            }],
            dmabuf: OwnedFd::from(file),
        }
    }

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn exec_hands_the_fd_over() {
        let exported = exported();
        // The command sees the descriptor open, under the number given.
        let script = format!(
            "[ \"${FD_VARIABLE}\" = {} ] && [ -e /proc/self/fd/${FD_VARIABLE} ]",
            exported.dmabuf.as_raw_fd()
        );
        assert_eq!(
            exec(&exported, &args(&["sh", "-c", &script])),
            ExitCode::SUCCESS
        );
        assert_eq!(
            exec(&exported, &args(&["sh", "-c", "exit 7"])),
            ExitCode::from(7)
        );
        assert_eq!(
            exec(&exported, &args(&["sh", "-c", "kill -TERM $$"])),
            ExitCode::from(128 + 15)
        );
        assert_eq!(
            exec(&exported, &args(&["/nonexistent/command"])),
            ExitCode::from(127)
        );
        assert_eq!(exec(&exported, &args(&["/"])), ExitCode::from(126));
        // Still close-on-exec in the tool.
        // SAFETY: plain system call on an open descriptor.
        let flags = unsafe { libc::fcntl(exported.dmabuf.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }
}
