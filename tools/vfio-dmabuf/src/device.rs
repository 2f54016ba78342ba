// SPDX-License-Identifier: GPL-2.0

//! The character devices of the functions the vfio_dmabuf driver has bound,
//! `/dev/vfio-dmabuf/<PCI address>`, and the ioctls on them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::mem::{align_of, offset_of, size_of};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::size::Range;
use crate::uapi;

/// `ioctl(file, request, arg)`; on failure, an error naming `path`, the
/// request (`name`) and the errno.
///
/// # Safety
///
/// `arg` must be valid for every read and write the kernel makes for
/// `request` on `file`, for the duration of the call.
pub unsafe fn ioctl<T>(
    file: &File,
    path: &Path,
    request: u32,
    name: &'static str,
    arg: *mut T,
) -> Result<i32, Error> {
    // SAFETY: `file` is open for the borrow; the caller vouches for `arg`.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::Ioctl::from(request), arg) };
    if ret < 0 {
        return Err(Error::os(path, name, io::Error::last_os_error()));
    }
    Ok(ret)
}

/// Where the driver's character devices appear.
pub const DEV_DIR: &str = "/dev/vfio-dmabuf";

/// Resolves what the user named: a path (anything with a `/`) as it is, a
/// bare PCI address such as `0000:00:03.0` under [`DEV_DIR`].
pub fn resolve(name: &Path) -> PathBuf {
    if name.as_os_str().as_bytes().contains(&b'/') {
        name.to_owned()
    } else {
        Path::new(DEV_DIR).join(name)
    }
}

/// Every character device in [`DEV_DIR`], sorted by name. No directory means
/// no function is bound, which is not an error.
pub fn all() -> Result<Vec<PathBuf>, Error> {
    let dir = Path::new(DEV_DIR);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::os(dir, "read directory", e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::os(dir, "read directory", e))?;
        let path = entry.path();
        // Follows symbolic links, so a link to a device counts.
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            // Unbound since the directory was read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::os(&path, "stat", e)),
        };
        if meta.file_type().is_char_device() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// An open character device of one bound function.
pub struct Device {
    path: PathBuf,
    file: File,
}

impl Device {
    /// Opens the device read-write, as VFIO device files are opened.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| {
                let missing = e.kind() == io::ErrorKind::NotFound;
                let e = Error::os(path, "open", e);
                if missing {
                    e.with_hint("is the function bound to vfio_dmabuf?")
                } else {
                    e
                }
            })?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// The device's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The function's PCI address, taken from the device's name (the name
    /// of the node, when the path is a symbolic link to it).
    pub fn address(&self) -> String {
        let real = fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        real.file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `VFIO_DMABUF_INFO`: the function's BARs.
    pub fn info(&self) -> Result<uapi::vfio_dmabuf_info, Error> {
        let mut info = uapi::vfio_dmabuf_info {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_info>(),
            ..Default::default()
        };
        // SAFETY: the file is open for the lifetime of `self`, and `info` is a
        // valid, exclusively borrowed `struct vfio_dmabuf_info` of exactly
        // the size the request number encodes, which the kernel may read and
        // write during the call.
        unsafe {
            ioctl(
                &self.file,
                &self.path,
                uapi::VFIO_DMABUF_INFO,
                "VFIO_DMABUF_INFO",
                &raw mut info,
            )
        }?;
        Ok(info)
    }

    /// `VFIO_DMABUF_EXPORT`: `ranges` of BAR `bar` as a new dma-buf, open
    /// read-write and close-on-exec.
    pub fn export(&self, bar: u32, ranges: &[Range]) -> Result<OwnedFd, Error> {
        let mut words = export_argument(bar, ranges).ok_or_else(|| {
            Error::invalid(
                &self.path,
                format!("{} ranges do not fit in one export", ranges.len()),
            )
        })?;
        // SAFETY: the file is open for the lifetime of `self`; EXPORT (`_IOW`)
        // reads `argsz` bytes from `words`, which holds them, and writes
        // nothing.
        let fd = unsafe {
            ioctl(
                &self.file,
                &self.path,
                uapi::VFIO_DMABUF_EXPORT,
                "VFIO_DMABUF_EXPORT",
                words.as_mut_ptr(),
            )
        }?;
        // SAFETY: the kernel just installed `fd` for this process and nothing
        // else refers to it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// `VFIO_DMABUF_REVOKE` of BAR `bar`.
    pub fn revoke(&self, bar: u32) -> Result<(), Error> {
        self.change_state(uapi::VFIO_DMABUF_REVOKE, "VFIO_DMABUF_REVOKE", bar)
    }

    /// `VFIO_DMABUF_RESTORE` of BAR `bar`.
    pub fn restore(&self, bar: u32) -> Result<(), Error> {
        self.change_state(uapi::VFIO_DMABUF_RESTORE, "VFIO_DMABUF_RESTORE", bar)
    }

    fn change_state(&self, request: u32, name: &'static str, bar: u32) -> Result<(), Error> {
        let mut arg = uapi::vfio_dmabuf_revoke {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_revoke>(),
            region_index: bar,
            ..Default::default()
        };
        // SAFETY: the file is open for the lifetime of `self`; REVOKE and
        // RESTORE (`_IOW`) read `arg`, a valid `struct vfio_dmabuf_revoke` of
        // the size the request encodes, and write nothing.
        unsafe { ioctl(&self.file, &self.path, request, name, &raw mut arg) }?;
        Ok(())
    }
}

/// The argument of `VFIO_DMABUF_EXPORT` for `ranges` of BAR `bar`, read-write
/// and close-on-exec; `None` when it would be too large for `argsz`.
fn export_argument(bar: u32, ranges: &[Range]) -> Option<Vec<u64>> {
    // The structure and its ranges, contiguous, in 8-byte words: the
    // alignment of both, whose sizes the header keeps multiples of 8.
    const HEAD_WORDS: usize = size_of::<uapi::vfio_dmabuf_export>() / 8;
    const RANGE_WORDS: usize = size_of::<uapi::vfio_dmabuf_range>() / 8;
    const {
        assert!(offset_of!(uapi::vfio_dmabuf_export, ranges) == HEAD_WORDS * 8);
        assert!(size_of::<uapi::vfio_dmabuf_range>() == RANGE_WORDS * 8);
        assert!(align_of::<uapi::vfio_dmabuf_export>() <= align_of::<u64>());
        assert!(align_of::<uapi::vfio_dmabuf_range>() <= align_of::<u64>());
    }
    let mut words = vec![0u64; HEAD_WORDS + RANGE_WORDS * ranges.len()];
    let argsz = u32::try_from(words.len() * 8).ok()?;
    let head = uapi::vfio_dmabuf_export {
        argsz,
        region_index: bar,
        open_flags: (libc::O_RDWR | libc::O_CLOEXEC) as u32,
        nr_ranges: u32::try_from(ranges.len()).unwrap_or(u32::MAX),
        ..Default::default()
    };
    let base = words.as_mut_ptr();
    // SAFETY: `words` holds `HEAD_WORDS` words for the structure, then
    // `RANGE_WORDS` per range, each place aligned for what is written
    // there (the `const` block checks it); `write` moves plain integers
    // in.
    unsafe {
        base.cast::<uapi::vfio_dmabuf_export>().write(head);
        let entries = base.add(HEAD_WORDS).cast::<uapi::vfio_dmabuf_range>();
        for (i, range) in ranges.iter().enumerate() {
            entries.add(i).write(uapi::vfio_dmabuf_range {
                offset: range.offset,
                length: range.length,
            });
        }
    }
    Some(words)
}

/// The kernel's page size, the unit of the uAPI's ranges and page frames.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_names() {
        assert_eq!(
            resolve(Path::new("0000:00:03.0")),
            Path::new("/dev/vfio-dmabuf/0000:00:03.0")
        );
        assert_eq!(resolve(Path::new("./dev/x")), Path::new("./dev/x"));
        assert_eq!(resolve(Path::new("/dev/x")), Path::new("/dev/x"));
    }

    #[test]
    fn export_argument_layout() {
        let ranges = [
            Range {
                offset: 0x2000,
                length: 0x1000,
            },
            Range {
                offset: 0,
                length: 0x20_0000,
            },
        ];
        let words = export_argument(4, &ranges).expect("fits");
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let u32_at = |at: usize| u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().expect("8"));
        assert_eq!(bytes.len(), 24 + 2 * 16);
        assert_eq!(u32_at(0), 24 + 2 * 16); // argsz
        assert_eq!(u32_at(4), 0); // flags
        assert_eq!(u32_at(8), 4); // region_index
        assert_eq!(u32_at(12), (libc::O_RDWR | libc::O_CLOEXEC) as u32);
        assert_eq!(u32_at(16), 2); // nr_ranges
        assert_eq!(u32_at(20), 0); // __reserved
        assert_eq!(
            [u64_at(24), u64_at(32), u64_at(40), u64_at(48)],
            [0x2000, 0x1000, 0, 0x20_0000]
        );
    }

    #[test]
    fn ioctls_on_another_device_are_enotty() {
        let device = Device::open(Path::new("/dev/null")).expect("opens /dev/null");
        let e = device.info().expect_err("/dev/null has no ioctls");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        let ranges = [Range {
            offset: 0,
            length: 0x1000,
        }];
        let e = device
            .export(0, &ranges)
            .expect_err("/dev/null exports nothing");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        assert!(e
            .to_string()
            .starts_with("/dev/null: VFIO_DMABUF_EXPORT: ENOTTY: "));
        let e = device.revoke(0).expect_err("/dev/null revokes nothing");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        let e = device.restore(0).expect_err("/dev/null restores nothing");
        assert!(e
            .to_string()
            .starts_with("/dev/null: VFIO_DMABUF_RESTORE: ENOTTY: "));
    }
}
