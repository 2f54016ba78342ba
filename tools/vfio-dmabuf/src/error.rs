// SPDX-License-Identifier: GPL-2.0

//! What a subcommand reports when it fails: the file it was working on, what
//! it was doing, and the errno by name, or why the request does not fit the
//! device.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use vfio_dmabuf_uapi::errno_name;

/// A failed subcommand.
#[derive(Debug)]
pub enum Error {
    /// A system call on a file failed: which file, what was done, and the
    /// error the kernel returned.
    Os {
        path: PathBuf,
        op: &'static str,
        err: io::Error,
        /// What to check, for the errors with a likely cause.
        hint: Option<&'static str>,
    },
    /// What the user asked for does not fit the file it names (a range past
    /// the end of the BAR, an I/O BAR to export), found before asking the
    /// kernel.
    Invalid { path: PathBuf, message: String },
    /// A VFIO request failed (`vfio_dmabuf_uapi::vfio`), which names the
    /// device and the request itself.
    Vfio(vfio_dmabuf_uapi::vfio::Error),
}

impl From<vfio_dmabuf_uapi::vfio::Error> for Error {
    fn from(e: vfio_dmabuf_uapi::vfio::Error) -> Self {
        Self::Vfio(e)
    }
}

impl Error {
    pub fn os(path: &Path, op: &'static str, err: io::Error) -> Self {
        Self::Os {
            path: path.to_owned(),
            op,
            err,
            hint: None,
        }
    }

    /// Adds what to check to a failed system call.
    pub fn with_hint(mut self, text: &'static str) -> Self {
        if let Self::Os { hint, .. } = &mut self {
            *hint = Some(text);
        }
        self
    }

    pub fn invalid(path: &Path, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_owned(),
            message: message.into(),
        }
    }

    /// The errno of a failed system call.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Os { err, .. } => err.raw_os_error(),
            Self::Invalid { .. } => None,
            Self::Vfio(e) => e.raw_os_error(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, op, err, hint) = match self {
            Self::Os {
                path,
                op,
                err,
                hint,
            } => (path, op, err, hint),
            Self::Invalid { path, message } => {
                return write!(f, "{}: {message}", path.display());
            }
            Self::Vfio(e) => return write!(f, "{e}"),
        };
        write!(f, "{}: {op}: ", path.display())?;
        if let Some(errno) = err.raw_os_error() {
            // "Permission denied (os error 13)" without the number, which the
            // name replaces.
            let text = err.to_string();
            let text = text
                .strip_suffix(&format!(" (os error {errno})"))
                .unwrap_or(&text);
            match errno_name(errno) {
                Some(name) => write!(f, "{name}: {text}")?,
                None => write!(f, "errno {errno}: {text}")?,
            }
        } else {
            write!(f, "{err}")?;
        }
        match hint {
            Some(hint) => write!(f, " ({hint})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_path_and_errno() {
        let path = Path::new("/dev/vfio-dmabuf/0000:00:03.0");
        let e = Error::os(
            path,
            "VFIO_DMABUF_INFO",
            io::Error::from_raw_os_error(libc::ENODEV),
        );
        assert_eq!(
            e.to_string(),
            "/dev/vfio-dmabuf/0000:00:03.0: VFIO_DMABUF_INFO: ENODEV: No such device"
        );
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
        let e = Error::os(
            Path::new("/dev/vfio-dmabuf-importer"),
            "open",
            io::Error::from_raw_os_error(libc::ENOENT),
        )
        .with_hint("is vfio_dmabuf_importer loaded?");
        assert_eq!(
            e.to_string(),
            "/dev/vfio-dmabuf-importer: open: ENOENT: No such file or directory \
             (is vfio_dmabuf_importer loaded?)"
        );
        let e = Error::os(path, "open", io::Error::from_raw_os_error(4095));
        assert!(e
            .to_string()
            .starts_with("/dev/vfio-dmabuf/0000:00:03.0: open: errno 4095: "));
        let e = Error::invalid(path, "BAR3 is an I/O BAR");
        assert_eq!(
            e.to_string(),
            "/dev/vfio-dmabuf/0000:00:03.0: BAR3 is an I/O BAR"
        );
        assert_eq!(e.raw_os_error(), None);
    }
}
