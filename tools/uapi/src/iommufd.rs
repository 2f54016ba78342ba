// SPDX-License-Identifier: GPL-2.0

//! iommufd and VFIO's device cdev, as the tool's `dma` command speaks them
//! to map a dma-buf into an IOAS and let a client device DMA through it:
//!
//! - [`Iommufd`]: `/dev/iommu`, one IOAS (`IOMMU_IOAS_ALLOC`), and
//!   [`Iommufd::map_user`] (`IOMMU_IOAS_MAP`), [`Iommufd::map_file`]
//!   (`IOMMU_IOAS_MAP_FILE`, which maps page-frame dma-bufs) and
//!   [`Iommufd::unmap`] (`IOMMU_IOAS_UNMAP`);
//! - [`VfioCdev`]: a function bound to vfio-pci opened through its cdev
//!   (`/dev/vfio/devices/vfioN`), bound to the iommufd
//!   (`VFIO_DEVICE_BIND_IOMMUFD`) and attached to the IOAS
//!   (`VFIO_DEVICE_ATTACH_IOMMUFD_PT`).
//!
//! Debian 12's installed headers have neither `<linux/iommufd.h>` nor the
//! cdev requests (Linux 6.2 and 6.6), so the structures are written here,
//! as [`crate::vfio`] writes the dma-buf feature's; the tests check their
//! sizes and offsets against the kernel's headers as 7.3 defines them.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::vfio::Error;

/// `IOMMUFD_TYPE`, `';'`.
const IOMMUFD_TYPE: u32 = b';' as u32;

/// `_IO(IOMMUFD_TYPE, n)`.
const fn iommufd_io(n: u32) -> u32 {
    crate::ioc(0, IOMMUFD_TYPE, n, 0)
}

/// `IOMMU_IOAS_ALLOC`.
pub const IOMMU_IOAS_ALLOC: u32 = iommufd_io(0x81);
/// `IOMMU_IOAS_MAP`.
pub const IOMMU_IOAS_MAP: u32 = iommufd_io(0x85);
/// `IOMMU_IOAS_UNMAP`.
pub const IOMMU_IOAS_UNMAP: u32 = iommufd_io(0x86);
/// `IOMMU_IOAS_MAP_FILE`.
pub const IOMMU_IOAS_MAP_FILE: u32 = iommufd_io(0x8f);

/// `IOMMU_IOAS_MAP_FIXED_IOVA`.
pub const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
/// `IOMMU_IOAS_MAP_WRITEABLE`.
pub const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
/// `IOMMU_IOAS_MAP_READABLE`.
pub const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;

/// `VFIO_DEVICE_BIND_IOMMUFD`, `_IO(VFIO_TYPE, VFIO_BASE + 18)`.
pub const VFIO_DEVICE_BIND_IOMMUFD: u32 = crate::ioc(0, b';' as u32, 100 + 18, 0);
/// `VFIO_DEVICE_ATTACH_IOMMUFD_PT`, `_IO(VFIO_TYPE, VFIO_BASE + 19)`.
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u32 = crate::ioc(0, b';' as u32, 100 + 19, 0);

/// `struct iommu_ioas_alloc`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct iommu_ioas_alloc {
    pub size: u32,
    pub flags: u32,
    pub out_ioas_id: u32,
}

/// `struct iommu_ioas_map`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct iommu_ioas_map {
    pub size: u32,
    pub flags: u32,
    pub ioas_id: u32,
    pub __reserved: u32,
    pub user_va: u64,
    pub length: u64,
    pub iova: u64,
}

/// `struct iommu_ioas_map_file`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct iommu_ioas_map_file {
    pub size: u32,
    pub flags: u32,
    pub ioas_id: u32,
    pub fd: i32,
    pub start: u64,
    pub length: u64,
    pub iova: u64,
}

/// `struct iommu_ioas_unmap`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct iommu_ioas_unmap {
    pub size: u32,
    pub ioas_id: u32,
    pub iova: u64,
    pub length: u64,
}

/// `struct vfio_device_bind_iommufd`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct vfio_device_bind_iommufd {
    pub argsz: u32,
    pub flags: u32,
    pub iommufd: i32,
    pub out_devid: u32,
    pub token_uuid_ptr: u64,
}

/// `struct vfio_device_attach_iommufd_pt`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct vfio_device_attach_iommufd_pt {
    pub argsz: u32,
    pub flags: u32,
    pub pt_id: u32,
    pub pasid: u32,
}

/// `ioctl(fd, request, arg)` on a structure the kernel reads and may write.
///
/// # Safety
///
/// `request` must take a `T` (as its `size`/`argsz` field says) and write
/// no more than one.
unsafe fn ioctl_struct<T>(fd: BorrowedFd<'_>, request: u32, arg: &mut T) -> io::Result<i32> {
    // SAFETY: by the function's contract.
    let r = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::Ioctl::from(request),
            std::ptr::from_mut(arg),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn size_u32<T>() -> u32 {
    size_of::<T>() as u32
}

fn open_rw(path: &std::path::Path) -> Result<File, Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::new(format!("open {}", path.display()), e))
}

/// `/dev/iommu` with one IOAS.
pub struct Iommufd {
    file: File,
    ioas: u32,
}

/// The read and write permissions of a fixed-IOVA mapping.
const RW_FIXED: u32 =
    IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

impl Iommufd {
    /// Opens `/dev/iommu` and allocates an IOAS.
    pub fn open() -> Result<Self, Error> {
        let file = open_rw(std::path::Path::new("/dev/iommu"))?;
        let mut alloc = iommu_ioas_alloc {
            size: size_u32::<iommu_ioas_alloc>(),
            ..Default::default()
        };
        // SAFETY: IOAS_ALLOC takes and fills a `struct iommu_ioas_alloc`.
        unsafe { ioctl_struct(file.as_fd(), IOMMU_IOAS_ALLOC, &mut alloc) }
            .map_err(|e| Error::new("/dev/iommu: IOMMU_IOAS_ALLOC", e))?;
        Ok(Self {
            file,
            ioas: alloc.out_ioas_id,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    pub fn ioas(&self) -> u32 {
        self.ioas
    }

    /// `IOMMU_IOAS_MAP` of `length` bytes of user memory at `user_va` to
    /// `iova`, readable and writable.
    pub fn map_user(&self, user_va: usize, length: u64, iova: u64) -> Result<(), Error> {
        let mut map = iommu_ioas_map {
            size: size_u32::<iommu_ioas_map>(),
            flags: RW_FIXED,
            ioas_id: self.ioas,
            user_va: user_va as u64,
            length,
            iova,
            ..Default::default()
        };
        // SAFETY: IOAS_MAP takes a `struct iommu_ioas_map`.
        unsafe { ioctl_struct(self.fd(), IOMMU_IOAS_MAP, &mut map) }
            .map(|_| ())
            .map_err(|e| Error::new(format!("IOMMU_IOAS_MAP at IOVA {iova:#x}"), e))
    }

    /// `IOMMU_IOAS_MAP_FILE` of bytes `[start, start + length)` of `file` (a
    /// memfd, or a dma-buf whose exporter offers page frames) to `iova`.
    pub fn map_file(
        &self,
        file: BorrowedFd<'_>,
        start: u64,
        length: u64,
        iova: u64,
    ) -> Result<(), Error> {
        let mut map = iommu_ioas_map_file {
            size: size_u32::<iommu_ioas_map_file>(),
            flags: RW_FIXED,
            ioas_id: self.ioas,
            fd: file.as_raw_fd(),
            start,
            length,
            iova,
        };
        // SAFETY: IOAS_MAP_FILE takes a `struct iommu_ioas_map_file`.
        unsafe { ioctl_struct(self.fd(), IOMMU_IOAS_MAP_FILE, &mut map) }
            .map(|_| ())
            .map_err(|e| Error::new(format!("IOMMU_IOAS_MAP_FILE at IOVA {iova:#x}"), e))
    }

    /// `IOMMU_IOAS_UNMAP` of `[iova, iova + length)`: the bytes unmapped.
    pub fn unmap(&self, iova: u64, length: u64) -> Result<u64, Error> {
        let mut unmap = iommu_ioas_unmap {
            size: size_u32::<iommu_ioas_unmap>(),
            ioas_id: self.ioas,
            iova,
            length,
        };
        // SAFETY: IOAS_UNMAP takes and fills a `struct iommu_ioas_unmap`.
        unsafe { ioctl_struct(self.fd(), IOMMU_IOAS_UNMAP, &mut unmap) }
            .map(|_| unmap.length)
            .map_err(|e| Error::new(format!("IOMMU_IOAS_UNMAP at IOVA {iova:#x}"), e))
    }
}

/// A function bound to vfio-pci, opened through its cdev, bound to an
/// iommufd and attached to its IOAS.
pub struct VfioCdev {
    file: File,
    path: PathBuf,
}

impl VfioCdev {
    /// Opens the cdev of the function at PCI address `address`
    /// (`/sys/bus/pci/devices/ADDRESS/vfio-dev/vfioN`), binds it to
    /// `iommufd` and attaches it to the IOAS.
    pub fn open(address: &str, iommufd: &Iommufd) -> Result<Self, Error> {
        let dir = format!("/sys/bus/pci/devices/{address}/vfio-dev");
        let name = fs::read_dir(&dir)
            .map_err(|e| Error::new(format!("{dir} (is {address} bound to vfio-pci?)"), e))?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .find(|name| name.starts_with("vfio"))
            .ok_or_else(|| {
                Error::new(
                    format!("{dir}: no vfioN entry"),
                    io::Error::from_raw_os_error(libc::ENODEV),
                )
            })?;
        let path = PathBuf::from(format!("/dev/vfio/devices/{name}"));
        let file = open_rw(&path)?;
        let mut bind = vfio_device_bind_iommufd {
            argsz: size_u32::<vfio_device_bind_iommufd>(),
            iommufd: iommufd.fd().as_raw_fd(),
            ..Default::default()
        };
        // SAFETY: BIND_IOMMUFD takes and fills a `struct vfio_device_bind_iommufd`.
        unsafe { ioctl_struct(file.as_fd(), VFIO_DEVICE_BIND_IOMMUFD, &mut bind) }
            .map_err(|e| Error::new(format!("{}: VFIO_DEVICE_BIND_IOMMUFD", path.display()), e))?;
        let mut attach = vfio_device_attach_iommufd_pt {
            argsz: size_u32::<vfio_device_attach_iommufd_pt>(),
            pt_id: iommufd.ioas(),
            ..Default::default()
        };
        // SAFETY: ATTACH_IOMMUFD_PT takes and fills a `struct vfio_device_attach_iommufd_pt`.
        unsafe { ioctl_struct(file.as_fd(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &mut attach) }.map_err(
            |e| {
                Error::new(
                    format!("{}: VFIO_DEVICE_ATTACH_IOMMUFD_PT", path.display()),
                    e,
                )
            },
        )?;
        Ok(Self { file, path })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn request_numbers() {
        // _IO(';', n): type 0x3b in bits 8-15, the number in bits 0-7.
        assert_eq!(IOMMU_IOAS_ALLOC, 0x3b81);
        assert_eq!(IOMMU_IOAS_MAP, 0x3b85);
        assert_eq!(IOMMU_IOAS_UNMAP, 0x3b86);
        assert_eq!(IOMMU_IOAS_MAP_FILE, 0x3b8f);
        // VFIO_BASE is 100: 118 and 119.
        assert_eq!(VFIO_DEVICE_BIND_IOMMUFD, 0x3b76);
        assert_eq!(VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3b77);
    }

    #[test]
    fn layouts() {
        // As include/uapi/linux/iommufd.h and vfio.h of Linux 7.3 define them.
        assert_eq!(size_of::<iommu_ioas_alloc>(), 12);
        assert_eq!(size_of::<iommu_ioas_map>(), 40);
        assert_eq!(offset_of!(iommu_ioas_map, user_va), 16);
        assert_eq!(offset_of!(iommu_ioas_map, iova), 32);
        assert_eq!(size_of::<iommu_ioas_map_file>(), 40);
        assert_eq!(offset_of!(iommu_ioas_map_file, fd), 12);
        assert_eq!(offset_of!(iommu_ioas_map_file, start), 16);
        assert_eq!(offset_of!(iommu_ioas_map_file, iova), 32);
        assert_eq!(size_of::<iommu_ioas_unmap>(), 24);
        assert_eq!(offset_of!(iommu_ioas_unmap, iova), 8);
        assert_eq!(size_of::<vfio_device_bind_iommufd>(), 24);
        assert_eq!(offset_of!(vfio_device_bind_iommufd, out_devid), 12);
        assert_eq!(size_of::<vfio_device_attach_iommufd_pt>(), 16);
        assert_eq!(offset_of!(vfio_device_attach_iommufd_pt, pt_id), 8);
    }
}
