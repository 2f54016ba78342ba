// SPDX-License-Identifier: GPL-2.0

//! The character devices of the functions the vfio_dmabuf driver has bound,
//! `/dev/vfio-dmabuf/<PCI address>`, and the ioctls on them.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::uapi;

/// Where the driver's character devices appear.
pub(crate) const DEV_DIR: &str = "/dev/vfio-dmabuf";

/// A failed operation on a device file: which file, what was done, and the
/// error the kernel returned.
#[derive(Debug)]
pub(crate) struct Error {
    path: PathBuf,
    op: &'static str,
    err: io::Error,
}

impl Error {
    fn new(path: &Path, op: &'static str, err: io::Error) -> Self {
        Self {
            path: path.to_owned(),
            op,
            err,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.path.display(), self.op)?;
        let Some(errno) = self.err.raw_os_error() else {
            return write!(f, "{}", self.err);
        };
        // "Permission denied (os error 13)" without the number, which the
        // name replaces.
        let text = self.err.to_string();
        let text = text
            .strip_suffix(&format!(" (os error {errno})"))
            .unwrap_or(&text);
        match errno_name(errno) {
            Some(name) => write!(f, "{name}: {text}"),
            None => write!(f, "errno {errno}: {text}"),
        }
    }
}

impl std::error::Error for Error {}

/// The symbolic name of the errnos this uAPI and opening a device return.
fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EINVAL => "EINVAL",
        libc::EMFILE => "EMFILE",
        libc::ENOTTY => "ENOTTY",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EINTR => "EINTR",
        _ => return None,
    })
}

/// Resolves what the user named: a path (anything with a `/`) as it is, a
/// bare PCI address such as `0000:00:03.0` under [`DEV_DIR`].
pub(crate) fn resolve(name: &Path) -> PathBuf {
    if name.as_os_str().as_bytes().contains(&b'/') {
        name.to_owned()
    } else {
        Path::new(DEV_DIR).join(name)
    }
}

/// Every character device in [`DEV_DIR`], sorted by name. No directory means
/// no function is bound, which is not an error.
pub(crate) fn all() -> Result<Vec<PathBuf>, Error> {
    let dir = Path::new(DEV_DIR);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::new(dir, "read directory", e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::new(dir, "read directory", e))?;
        let path = entry.path();
        // Follows symbolic links, so a link to a device counts.
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            // Unbound since the directory was read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::new(&path, "stat", e)),
        };
        if meta.file_type().is_char_device() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

/// An open character device of one bound function.
pub(crate) struct Device {
    path: PathBuf,
    file: File,
}

impl Device {
    /// Opens the device read-write, as VFIO device files are opened.
    pub(crate) fn open(path: &Path) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::new(path, "open", e))?;
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// The device's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The function's PCI address, taken from the device's name.
    pub(crate) fn address(&self) -> String {
        self.path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `VFIO_DMABUF_INFO`: the function's BARs.
    pub(crate) fn info(&self) -> Result<uapi::vfio_dmabuf_info, Error> {
        let mut info = uapi::vfio_dmabuf_info {
            argsz: uapi::argsz::<uapi::vfio_dmabuf_info>(),
            ..Default::default()
        };
        // SAFETY: the file is open for the lifetime of `self`, and `info` is a
        // valid, exclusively borrowed `struct vfio_dmabuf_info` of exactly
        // the size the request number encodes, which the kernel may read and
        // write during the call.
        let ret = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::Ioctl::from(uapi::VFIO_DMABUF_INFO),
                &raw mut info,
            )
        };
        if ret < 0 {
            return Err(Error::new(
                &self.path,
                "VFIO_DMABUF_INFO",
                io::Error::last_os_error(),
            ));
        }
        Ok(info)
    }
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
    fn errors_name_path_and_errno() {
        let path = Path::new("/dev/vfio-dmabuf/0000:00:03.0");
        let e = Error::new(
            path,
            "VFIO_DMABUF_INFO",
            io::Error::from_raw_os_error(libc::ENODEV),
        );
        assert_eq!(
            e.to_string(),
            "/dev/vfio-dmabuf/0000:00:03.0: VFIO_DMABUF_INFO: ENODEV: No such device"
        );
        let e = Error::new(path, "open", io::Error::from_raw_os_error(4095));
        assert!(e
            .to_string()
            .starts_with("/dev/vfio-dmabuf/0000:00:03.0: open: errno 4095: "));
    }

    #[test]
    fn info_on_another_device_is_enotty() {
        let device = Device::open(Path::new("/dev/null")).expect("opens /dev/null");
        let e = device.info().expect_err("/dev/null has no ioctls");
        assert_eq!(e.err.raw_os_error(), Some(libc::ENOTTY));
    }
}
