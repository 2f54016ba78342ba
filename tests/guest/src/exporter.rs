// SPDX-License-Identifier: GPL-2.0

//! The exporter's character device, `/dev/vfio-dmabuf/<PCI address>`, and
//! its ioctls, with the arguments built byte for byte so that the tests can
//! also send what a correct program never would.

use std::fs::{File, OpenOptions};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::expect::ByteRange;
use crate::sys;
use crate::uapi::{self, Uapi};

/// Where the driver's character devices appear.
pub(crate) const DEV_DIR: &str = "/dev/vfio-dmabuf";

/// `open_flags` of a well-formed export.
pub(crate) const OPEN_FLAGS: u32 = (libc::O_RDWR | libc::O_CLOEXEC) as u32;

/// An INFO argument followed by 8 bytes the kernel does not know, to try
/// `argsz` larger than the structure.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct InfoWithTail {
    pub(crate) info: uapi::vfio_dmabuf_info,
    pub(crate) tail: [u8; 8],
}

// SAFETY: a `vfio_dmabuf_info` (8-byte aligned, size a multiple of 8, no
// padding) followed by 8 bytes: no padding, any bytes valid.
unsafe impl Uapi for InfoWithTail {}

/// An EXPORT argument: the fixed part, the ranges, and any bytes after them.
/// `head.argsz` is what the kernel is told; the buffer handed over always
/// holds at least that many bytes, so that a short or long `argsz` is
/// refused for what it is and not for a bad address.
#[derive(Debug)]
pub(crate) struct ExportRequest {
    pub(crate) head: uapi::vfio_dmabuf_export,
    pub(crate) ranges: Vec<uapi::vfio_dmabuf_range>,
    pub(crate) tail: Vec<u8>,
}

impl ExportRequest {
    /// A well-formed request for `ranges` of BAR `region_index`, read-write
    /// and close-on-exec.
    pub(crate) fn new(region_index: u32, ranges: &[ByteRange]) -> Self {
        let mut request = Self {
            head: uapi::vfio_dmabuf_export {
                region_index,
                open_flags: OPEN_FLAGS,
                ..Default::default()
            },
            ranges: ranges
                .iter()
                .map(|r| uapi::vfio_dmabuf_range {
                    offset: r.offset,
                    length: r.length,
                })
                .collect(),
            tail: Vec::new(),
        };
        request.head.nr_ranges = u32::try_from(request.ranges.len()).unwrap_or(u32::MAX);
        request.head.argsz = u32::try_from(request.len()).unwrap_or(u32::MAX);
        request
    }

    /// Appends `tail` after the ranges and counts it in `argsz`.
    pub(crate) fn with_tail(mut self, tail: &[u8]) -> Self {
        self.tail.extend_from_slice(tail);
        self.head.argsz = u32::try_from(self.len()).unwrap_or(u32::MAX);
        self
    }

    /// The bytes of the structure, its ranges and its tail.
    fn len(&self) -> usize {
        size_of::<uapi::vfio_dmabuf_export>()
            + self.ranges.len() * size_of::<uapi::vfio_dmabuf_range>()
            + self.tail.len()
    }

    /// The argument as the kernel reads it, in 8-byte aligned words, zero
    /// filled up to `argsz` if that claims more.
    pub(crate) fn words(&self) -> Vec<u64> {
        let mut bytes = Vec::with_capacity(self.len());
        bytes.extend_from_slice(uapi::bytes_of(&self.head));
        for range in &self.ranges {
            bytes.extend_from_slice(uapi::bytes_of(range));
        }
        bytes.extend_from_slice(&self.tail);
        let claimed = self.head.argsz as usize;
        bytes.resize(bytes.len().max(claimed).next_multiple_of(8), 0);
        bytes
            .chunks_exact(8)
            .map(|chunk| {
                let mut word = [0u8; 8];
                word.copy_from_slice(chunk);
                u64::from_ne_bytes(word)
            })
            .collect()
    }
}

/// An open character device of one bound function.
#[derive(Debug)]
pub(crate) struct Exporter {
    file: File,
}

impl Exporter {
    /// Opens the device read-write, as VFIO device files are opened.
    pub(crate) fn open(path: &Path) -> Result<Self, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| format!("{}: open: {}", path.display(), sys::describe(&e)))?;
        Ok(Self { file })
    }

    /// `VFIO_DMABUF_INFO` with a well-formed argument.
    pub(crate) fn info(&self) -> io::Result<uapi::vfio_dmabuf_info> {
        let mut arg = InfoWithTail::default();
        arg.info.argsz = uapi::argsz::<uapi::vfio_dmabuf_info>();
        self.info_raw(&mut arg)?;
        Ok(arg.info)
    }

    /// `VFIO_DMABUF_INFO` with the argument as the caller made it.
    pub(crate) fn info_raw(&self, arg: &mut InfoWithTail) -> io::Result<()> {
        // SAFETY: INFO writes at most `struct vfio_dmabuf_info`, the start
        // of `arg`, and holds no address.
        unsafe { sys::ioctl(self.fd(), uapi::VFIO_DMABUF_INFO, arg) }.map(drop)
    }

    /// `VFIO_DMABUF_EXPORT`: the new dma-buf.
    pub(crate) fn export(&self, request: &ExportRequest) -> io::Result<OwnedFd> {
        let mut words = request.words();
        // SAFETY: EXPORT (`_IOW`) only reads its argument, which holds no
        // address the kernel writes through.
        let fd = unsafe { sys::ioctl_words(self.fd(), uapi::VFIO_DMABUF_EXPORT, &mut words) }?;
        sys::owned_fd(fd)
    }

    /// `VFIO_DMABUF_EXPORT` of an argument already laid out as words
    /// ([`ExportRequest::words`]): the one system call, nothing else.
    pub(crate) fn export_words(&self, words: &mut [u64]) -> io::Result<OwnedFd> {
        // SAFETY: EXPORT (`_IOW`) only reads its argument, which holds no
        // address the kernel writes through.
        let fd = unsafe { sys::ioctl_words(self.fd(), uapi::VFIO_DMABUF_EXPORT, words) }?;
        sys::owned_fd(fd)
    }

    /// `VFIO_DMABUF_REVOKE` of BAR `region_index`.
    pub(crate) fn revoke(&self, region_index: u32) -> io::Result<()> {
        self.change(uapi::VFIO_DMABUF_REVOKE, &mut revoke_arg(region_index))
    }

    /// `VFIO_DMABUF_RESTORE` of BAR `region_index`.
    pub(crate) fn restore(&self, region_index: u32) -> io::Result<()> {
        self.change(uapi::VFIO_DMABUF_RESTORE, &mut revoke_arg(region_index))
    }

    /// `VFIO_DMABUF_REVOKE` or `VFIO_DMABUF_RESTORE` (`request`) with the
    /// argument as the caller made it.
    pub(crate) fn change(
        &self,
        request: u32,
        arg: &mut uapi::vfio_dmabuf_revoke,
    ) -> io::Result<()> {
        assert!(
            request == uapi::VFIO_DMABUF_REVOKE || request == uapi::VFIO_DMABUF_RESTORE,
            "not a state change: {request:#x}"
        );
        // SAFETY: REVOKE and RESTORE (`_IOW`) only read their argument.
        unsafe { sys::ioctl(self.fd(), request, arg) }.map(drop)
    }

    /// A request the exporter does not define, with `arg` for its argument.
    pub(crate) fn undefined<T: Uapi>(&self, request: u32, arg: &mut T) -> io::Result<i32> {
        let encoded = ((request >> 16) & 0x3fff) as usize;
        assert!(
            encoded <= size_of::<T>(),
            "request {request:#x} encodes {encoded} bytes"
        );
        // SAFETY: whatever the driver makes of the request, the core copies
        // no more than the size the request encodes, which fits `arg`, and
        // the undefined requests used here hold no address.
        unsafe { sys::ioctl(self.fd(), request, arg) }
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Closes the file, reporting what close(2) returns.
    pub(crate) fn close(self) -> io::Result<()> {
        sys::close(OwnedFd::from(self.file))
    }
}

/// A well-formed REVOKE or RESTORE argument.
pub(crate) fn revoke_arg(region_index: u32) -> uapi::vfio_dmabuf_revoke {
    uapi::vfio_dmabuf_revoke {
        argsz: uapi::argsz::<uapi::vfio_dmabuf_revoke>(),
        region_index,
        ..Default::default()
    }
}

/// A REVOKE or RESTORE argument followed by 8 bytes the kernel does not
/// know, to try `argsz` larger than the structure.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RevokeWithTail {
    pub(crate) arg: uapi::vfio_dmabuf_revoke,
    pub(crate) tail: [u8; 8],
}

// SAFETY: a `vfio_dmabuf_revoke` (four `__u32`, no padding) followed by 8
// bytes: no padding, any bytes valid.
unsafe impl Uapi for RevokeWithTail {}

impl RevokeWithTail {
    /// A well-formed argument for BAR `region_index` whose `argsz` counts
    /// `tail` too.
    pub(crate) fn new(region_index: u32, tail: [u8; 8]) -> Self {
        let mut arg = revoke_arg(region_index);
        arg.argsz = uapi::argsz::<Self>();
        Self { arg, tail }
    }
}

impl Exporter {
    /// `VFIO_DMABUF_REVOKE` or `VFIO_DMABUF_RESTORE` (`request`) with an
    /// argument that has bytes past the structure.
    pub(crate) fn change_with_tail(
        &self,
        request: u32,
        arg: &mut RevokeWithTail,
    ) -> io::Result<()> {
        assert!(
            request == uapi::VFIO_DMABUF_REVOKE || request == uapi::VFIO_DMABUF_RESTORE,
            "not a state change: {request:#x}"
        );
        // SAFETY: REVOKE and RESTORE only read their argument.
        unsafe { sys::ioctl(self.fd(), request, arg) }.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expect::ranges;

    #[test]
    fn export_request_bytes() {
        let request = ExportRequest::new(2, &ranges(&[(0x1000, 0x2000), (0, 0x1000)]));
        assert_eq!(request.head.argsz, 24 + 2 * 16);
        assert_eq!(request.head.nr_ranges, 2);
        let words = request.words();
        assert_eq!(words.len(), (24 + 32) / 8);
        assert_eq!(words[0], u64::from(request.head.argsz)); // argsz, flags 0
        assert_eq!(words[1], 2 | (u64::from(OPEN_FLAGS) << 32));
        assert_eq!(words[2], 2); // nr_ranges, __reserved 0
        assert_eq!(words[3..], [0x1000, 0x2000, 0, 0x1000]);
    }

    #[test]
    fn export_request_tail_and_claims() {
        let request = ExportRequest::new(0, &ranges(&[(0, 0x1000)])).with_tail(&[0, 0, 0, 1]);
        assert_eq!(request.head.argsz, 24 + 16 + 4);
        let words = request.words();
        assert_eq!(words.len(), 6);
        assert_eq!(words[5], u64::from_ne_bytes([0, 0, 0, 1, 0, 0, 0, 0]));
        // A claim past the bytes is backed by zeros.
        let mut long = ExportRequest::new(0, &ranges(&[(0, 0x1000)]));
        long.head.argsz = 64;
        assert_eq!(long.words().len(), 8);
        // A short claim keeps every byte.
        let mut short = ExportRequest::new(0, &ranges(&[(0, 0x1000), (0, 0x1000)]));
        short.head.argsz = 24 + 16;
        assert_eq!(short.words().len(), 7);
    }

    #[test]
    fn info_on_another_file_is_enotty() {
        let exporter = Exporter::open(Path::new("/dev/null")).expect("opens /dev/null");
        let e = exporter.info().expect_err("/dev/null has no ioctls");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        let e = exporter.revoke(0).expect_err("/dev/null has no ioctls");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        exporter.close().expect("closes");
    }
}
