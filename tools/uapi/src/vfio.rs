// SPDX-License-Identifier: GPL-2.0

//! VFIO as user space speaks it to a PCI function, written once for the
//! programs that speak it (`tools/vfio-dmabuf`, `tests/guest`):
//!
//! - the device requests, on any VFIO device file: a vfio-pci device opened
//!   through its group, or `/dev/vfio-dmabuf/<address>`, which answers them
//!   with the same structures: [`device_info`], [`region_info`],
//!   [`feature`] (`VFIO_DEVICE_FEATURE`) and [`export_dma_buf`]
//!   (`VFIO_DEVICE_FEATURE_DMA_BUF` with `GET`), and [`export_region`], the
//!   discovery and export a VFIO program makes, in one function;
//! - [`VfioDevice`]: a function bound to vfio-pci, opened the legacy way,
//!   through its group and a container (`VFIO_GET_API_VERSION`,
//!   `VFIO_GROUP_SET_CONTAINER`, `VFIO_SET_IOMMU`,
//!   `VFIO_GROUP_GET_DEVICE_FD`), in no-IOMMU mode when the group is a
//!   no-IOMMU one (`vfio.enable_unsafe_noiommu_mode`; it taints the kernel);
//! - the structures and constants of `<linux/vfio.h>` that the installed
//!   headers may lack (the dma-buf feature is Linux 6.19's) or that
//!   `build.rs` does not generate: [`vfio_device_feature`],
//!   [`vfio_device_feature_dma_buf`], [`vfio_region_dma_range`] and the
//!   `VFIO_DEVICE_FEATURE_*` bits. `vfio_device_info` and
//!   `vfio_region_info` are the installed header's, through bindgen.

use std::ffi::CString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub use crate::bindings::{vfio_device_info, vfio_region_info, VFIO_DEVICE_FLAGS_PCI};
pub use crate::{VFIO_DEVICE_FEATURE, VFIO_DEVICE_GET_INFO, VFIO_DEVICE_GET_REGION_INFO};

use crate::bindings::{VFIO_BASE, VFIO_TYPE};

/// `_IO(VFIO_TYPE, VFIO_BASE + n)`.
const fn vfio_io(n: u32) -> u32 {
    crate::ioc(0, VFIO_TYPE as u32, VFIO_BASE + n, 0)
}

/// `VFIO_GET_API_VERSION`, on the container.
pub const VFIO_GET_API_VERSION: u32 = vfio_io(0);
/// `VFIO_CHECK_EXTENSION`, on the container: an IOMMU type it offers.
pub const VFIO_CHECK_EXTENSION: u32 = vfio_io(1);
/// `VFIO_SET_IOMMU`, on the container.
pub const VFIO_SET_IOMMU: u32 = vfio_io(2);
/// `VFIO_GROUP_SET_CONTAINER`, on the group.
pub const VFIO_GROUP_SET_CONTAINER: u32 = vfio_io(4);
/// `VFIO_GROUP_GET_DEVICE_FD`, on the group, with the device's name.
pub const VFIO_GROUP_GET_DEVICE_FD: u32 = vfio_io(6);

/// What `VFIO_GET_API_VERSION` answers (`VFIO_API_VERSION`).
pub const VFIO_API_VERSION: i32 = 0;
/// The IOMMU type of a no-IOMMU container (`VFIO_NOIOMMU_IOMMU`).
pub const VFIO_NOIOMMU_IOMMU: u32 = 8;

/// `VFIO_DEVICE_FEATURE_MASK`: the feature number in
/// [`vfio_device_feature::flags`].
pub const VFIO_DEVICE_FEATURE_MASK: u32 = 0xffff;
/// `VFIO_DEVICE_FEATURE_GET`.
pub const VFIO_DEVICE_FEATURE_GET: u32 = 1 << 16;
/// `VFIO_DEVICE_FEATURE_SET`.
pub const VFIO_DEVICE_FEATURE_SET: u32 = 1 << 17;
/// `VFIO_DEVICE_FEATURE_PROBE`.
pub const VFIO_DEVICE_FEATURE_PROBE: u32 = 1 << 18;
/// `VFIO_DEVICE_FEATURE_DMA_BUF`: export slices of a region as a dma-buf.
pub const VFIO_DEVICE_FEATURE_DMA_BUF: u32 = 11;

/// `struct vfio_device_feature`: the head of a `VFIO_DEVICE_FEATURE`
/// argument; the feature's data follows it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vfio_device_feature {
    pub argsz: u32,
    pub flags: u32,
}

/// `struct vfio_device_feature_dma_buf`: the data of
/// `VFIO_DEVICE_FEATURE_DMA_BUF`; `nr_ranges` ranges follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vfio_device_feature_dma_buf {
    pub region_index: u32,
    pub open_flags: u32,
    pub flags: u32,
    pub nr_ranges: u32,
}

/// `struct vfio_region_dma_range`: a slice of the region, in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct vfio_region_dma_range {
    pub offset: u64,
    pub length: u64,
}

impl From<(u64, u64)> for vfio_region_dma_range {
    fn from((offset, length): (u64, u64)) -> Self {
        Self { offset, length }
    }
}

/// A VFIO request that failed: which, and the errno.
#[derive(Debug)]
pub struct Error {
    /// The request or step, and the file it was made on.
    pub what: String,
    pub source: io::Error,
}

impl Error {
    pub(crate) fn new(what: impl Into<String>, source: io::Error) -> Self {
        Self {
            what: what.into(),
            source,
        }
    }

    fn invalid(what: impl Into<String>, message: impl fmt::Display) -> Self {
        Self::new(
            what,
            io::Error::new(io::ErrorKind::InvalidData, message.to_string()),
        )
    }

    /// The errno, if the kernel refused the request.
    pub fn raw_os_error(&self) -> Option<i32> {
        self.source.raw_os_error()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.source.raw_os_error() {
            Some(errno) => {
                let text = self.source.to_string();
                let text = text
                    .strip_suffix(&format!(" (os error {errno})"))
                    .unwrap_or(&text);
                match crate::errno_name(errno) {
                    Some(name) => write!(f, "{}: {name} ({text})", self.what),
                    None => write!(f, "{}: errno {errno} ({text})", self.what),
                }
            }
            None => write!(f, "{}: {}", self.what, self.source),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The most bytes [`device_info_raw`] and [`region_info_raw`] let the
/// kernel write: their buffer.
pub const RAW_ARG_BYTES: usize = 64;

/// `ioctl(fd, request, arg)` on a buffer of words.
///
/// # Safety
///
/// The kernel must neither read nor write past `arg` for `request`.
unsafe fn ioctl_words(fd: BorrowedFd<'_>, request: u32, arg: &mut [u64]) -> io::Result<i32> {
    // SAFETY: `arg` is valid for reads and writes of its length, any bytes
    // make valid words, and the caller vouches that the kernel stays inside.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::Ioctl::from(request), arg.as_mut_ptr()) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `ioctl(fd, request, value)` for the requests whose argument is an
/// integer (`VFIO_GET_API_VERSION`, `VFIO_CHECK_EXTENSION`,
/// `VFIO_SET_IOMMU`): no memory is read or written.
fn ioctl_value(fd: BorrowedFd<'_>, request: u32, value: libc::c_ulong) -> io::Result<i32> {
    // SAFETY: these requests take an integer and touch no memory.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::Ioctl::from(request), value) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The bytes of `words` as a structure of `size_of::<T>()` bytes at their
/// start.
fn read_struct<T: Copy + Default>(words: &[u64]) -> T {
    assert!(words.len() * 8 >= size_of::<T>());
    let mut value = T::default();
    // SAFETY: `words` holds at least `size_of::<T>()` initialised bytes, and
    // the `T`s used here (`vfio_device_info`, `vfio_region_info`) are plain
    // `repr(C)` integers, valid for any bytes; the regions do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(
            words.as_ptr().cast::<u8>(),
            (&raw mut value).cast::<u8>(),
            size_of::<T>(),
        );
    }
    value
}

/// Bytes as native-endian words, zero filled to a whole word.
fn to_words(mut bytes: Vec<u8>) -> Vec<u64> {
    bytes.resize(bytes.len().next_multiple_of(8), 0);
    bytes
        .chunks_exact(8)
        .map(|chunk| {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            u64::from_ne_bytes(word)
        })
        .collect()
}

/// `VFIO_DEVICE_GET_INFO` with `argsz` the installed header's structure.
pub fn device_info(device: BorrowedFd<'_>) -> io::Result<vfio_device_info> {
    device_info_raw(device, size_of::<vfio_device_info>() as u32).map(|(info, _)| info)
}

/// `VFIO_DEVICE_GET_INFO` with the `argsz` given (at most
/// [`RAW_ARG_BYTES`]), on a buffer of [`RAW_ARG_BYTES`] bytes set to
/// `0xff` past the structure's first word: the structure as the kernel
/// left it, and the whole buffer, to see what it wrote.
pub fn device_info_raw(
    device: BorrowedFd<'_>,
    argsz: u32,
) -> io::Result<(vfio_device_info, [u8; RAW_ARG_BYTES])> {
    assert!(argsz as usize <= RAW_ARG_BYTES);
    let mut words = [u64::MAX; RAW_ARG_BYTES / 8];
    words[0] = pair(argsz, 0);
    // SAFETY: VFIO writes at most `argsz` bytes, and reads no more than the
    // buffer holds.
    unsafe { ioctl_words(device, VFIO_DEVICE_GET_INFO, &mut words) }?;
    Ok((read_struct(&words), bytes_of_words(&words)))
}

/// `VFIO_DEVICE_GET_REGION_INFO` of region `index`.
pub fn region_info(device: BorrowedFd<'_>, index: u32) -> io::Result<vfio_region_info> {
    region_info_raw(device, index, size_of::<vfio_region_info>() as u32).map(|(info, _)| info)
}

/// `VFIO_DEVICE_GET_REGION_INFO` of region `index` with the `argsz` given
/// (at most [`RAW_ARG_BYTES`]), as [`device_info_raw`] makes its request.
pub fn region_info_raw(
    device: BorrowedFd<'_>,
    index: u32,
    argsz: u32,
) -> io::Result<(vfio_region_info, [u8; RAW_ARG_BYTES])> {
    assert!(argsz as usize <= RAW_ARG_BYTES);
    let mut words = [u64::MAX; RAW_ARG_BYTES / 8];
    words[0] = pair(argsz, 0);
    words[1] = pair(index, 0);
    // SAFETY: as in `device_info_raw`.
    unsafe { ioctl_words(device, VFIO_DEVICE_GET_REGION_INFO, &mut words) }?;
    Ok((read_struct(&words), bytes_of_words(&words)))
}

fn bytes_of_words(words: &[u64; RAW_ARG_BYTES / 8]) -> [u8; RAW_ARG_BYTES] {
    let mut bytes = [0u8; RAW_ARG_BYTES];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_ne_bytes());
    }
    bytes
}

/// Two consecutive `__u32` fields as the one `u64` that holds them in
/// memory.
fn pair(first: u32, second: u32) -> u64 {
    let mut bytes = [0u8; 8];
    bytes[..4].copy_from_slice(&first.to_ne_bytes());
    bytes[4..].copy_from_slice(&second.to_ne_bytes());
    u64::from_ne_bytes(bytes)
}

/// A `VFIO_DEVICE_FEATURE` argument: the head, the dma-buf feature's data
/// and its ranges. Every field is public, so that a test can also send what
/// a correct program never would; [`FeatureRequest::words`] always holds
/// the whole of it and at least `head.argsz` bytes, so that a claim is
/// judged for what it says, never for a bad address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeatureRequest {
    pub head: vfio_device_feature,
    pub dma_buf: vfio_device_feature_dma_buf,
    pub ranges: Vec<vfio_region_dma_range>,
    /// Bytes after the ranges (counted in `head.argsz` by
    /// [`FeatureRequest::with_tail`]).
    pub tail: Vec<u8>,
}

impl FeatureRequest {
    /// `VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF` of `ranges`
    /// of region `region_index`, with `argsz` covering the ranges.
    pub fn dma_buf_get(
        region_index: u32,
        open_flags: u32,
        ranges: &[vfio_region_dma_range],
    ) -> Self {
        let mut request = Self {
            head: vfio_device_feature {
                argsz: 0,
                flags: VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF,
            },
            dma_buf: vfio_device_feature_dma_buf {
                region_index,
                open_flags,
                flags: 0,
                nr_ranges: u32::try_from(ranges.len()).unwrap_or(u32::MAX),
            },
            ranges: ranges.to_vec(),
            tail: Vec::new(),
        };
        request.head.argsz = u32::try_from(request.len()).unwrap_or(u32::MAX);
        request
    }

    /// `VFIO_DEVICE_FEATURE_PROBE | feature` with `argsz` the head alone.
    pub fn probe(feature: u32) -> Self {
        Self {
            head: vfio_device_feature {
                argsz: size_of::<vfio_device_feature>() as u32,
                flags: VFIO_DEVICE_FEATURE_PROBE | feature,
            },
            ..Self::default()
        }
    }

    /// Appends `tail` after the ranges and counts it in `argsz`.
    pub fn with_tail(mut self, tail: &[u8]) -> Self {
        self.tail.extend_from_slice(tail);
        self.head.argsz = u32::try_from(self.len()).unwrap_or(u32::MAX);
        self
    }

    /// The bytes of the head, the data, the ranges and the tail.
    pub fn len(&self) -> usize {
        size_of::<vfio_device_feature>()
            + size_of::<vfio_device_feature_dma_buf>()
            + self.ranges.len() * size_of::<vfio_region_dma_range>()
            + self.tail.len()
    }

    /// Never empty: the head and the data are always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The argument as the kernel reads it, in 8-byte aligned words, zero
    /// filled up to `argsz` if that claims more.
    pub fn words(&self) -> Vec<u64> {
        let mut bytes = Vec::with_capacity(self.len());
        bytes.extend_from_slice(&self.head.argsz.to_ne_bytes());
        bytes.extend_from_slice(&self.head.flags.to_ne_bytes());
        for field in [
            self.dma_buf.region_index,
            self.dma_buf.open_flags,
            self.dma_buf.flags,
            self.dma_buf.nr_ranges,
        ] {
            bytes.extend_from_slice(&field.to_ne_bytes());
        }
        for range in &self.ranges {
            bytes.extend_from_slice(&range.offset.to_ne_bytes());
            bytes.extend_from_slice(&range.length.to_ne_bytes());
        }
        bytes.extend_from_slice(&self.tail);
        let claimed = self.head.argsz as usize;
        bytes.resize(bytes.len().max(claimed), 0);
        to_words(bytes)
    }
}

/// `VFIO_DEVICE_FEATURE` with `request`: what the kernel returns (a new
/// file descriptor for a dma-buf `GET`, which the caller then owns; 0 for a
/// probe).
///
/// VFIO reads the head, the data and, for the dma-buf feature, the ranges
/// the data counts, whatever `argsz` says, and writes no more than `argsz`
/// bytes; [`FeatureRequest::words`] holds all of that. A request whose
/// `nr_ranges` claims more ranges than it carries may make the kernel read
/// past them (and fail with `EFAULT`, or export from the bytes it found):
/// only a test would send it.
pub fn feature(device: BorrowedFd<'_>, request: &FeatureRequest) -> io::Result<i32> {
    let mut words = request.words();
    // SAFETY: the kernel writes at most `argsz` bytes, which `words` holds;
    // what it reads past them is only read (see above).
    unsafe { ioctl_words(device, VFIO_DEVICE_FEATURE, &mut words) }
}

/// `VFIO_DEVICE_FEATURE_DMA_BUF` with `GET`: exports `ranges` of region
/// `region_index` as a new dma-buf with `open_flags`.
pub fn export_dma_buf(
    device: BorrowedFd<'_>,
    region_index: u32,
    open_flags: u32,
    ranges: &[vfio_region_dma_range],
) -> io::Result<OwnedFd> {
    let fd = feature(
        device,
        &FeatureRequest::dma_buf_get(region_index, open_flags, ranges),
    )?;
    if fd < 0 {
        return Err(io::Error::other(format!("the kernel returned fd {fd}")));
    }
    // SAFETY: the kernel just installed `fd` for this process, and nothing
    // else refers to it yet.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What [`export_region`] found and made.
#[derive(Debug)]
pub struct RegionExport {
    pub device: vfio_device_info,
    pub region: vfio_region_info,
    pub dmabuf: OwnedFd,
}

/// The export a VFIO program makes of a PCI function, whichever driver is
/// behind `device` (vfio-pci, vfio_dmabuf): `VFIO_DEVICE_GET_INFO` (a PCI
/// device with region `region_index`), `VFIO_DEVICE_GET_REGION_INFO` of
/// that region (every range inside its size), then
/// `VFIO_DEVICE_FEATURE_DMA_BUF` `GET` of `ranges`, read-write and
/// close-on-exec. `name` names the device in errors.
pub fn export_region(
    device: BorrowedFd<'_>,
    name: &str,
    region_index: u32,
    ranges: &[vfio_region_dma_range],
) -> Result<RegionExport, Error> {
    let info =
        device_info(device).map_err(|e| Error::new(format!("{name}: VFIO_DEVICE_GET_INFO"), e))?;
    if info.flags & VFIO_DEVICE_FLAGS_PCI == 0 {
        return Err(Error::invalid(
            format!("{name}: VFIO_DEVICE_GET_INFO"),
            format!("not a PCI device (flags {:#x})", info.flags),
        ));
    }
    if region_index >= info.num_regions {
        return Err(Error::invalid(
            format!("{name}: VFIO_DEVICE_GET_INFO"),
            format!("{} regions, no region {region_index}", info.num_regions),
        ));
    }
    let region = region_info(device, region_index).map_err(|e| {
        Error::new(
            format!("{name}: VFIO_DEVICE_GET_REGION_INFO of region {region_index}"),
            e,
        )
    })?;
    if let Some(r) = ranges.iter().find(|r| {
        r.offset
            .checked_add(r.length)
            .is_none_or(|end| end > region.size)
    }) {
        return Err(Error::invalid(
            format!("{name}: region {region_index}"),
            format!(
                "range {:#x}:{:#x} is not inside the region's {:#x} bytes",
                r.offset, r.length, region.size
            ),
        ));
    }
    let open_flags = (libc::O_RDWR | libc::O_CLOEXEC) as u32;
    let dmabuf = export_dma_buf(device, region_index, open_flags, ranges).map_err(|e| {
        Error::new(
            format!("{name}: VFIO_DEVICE_FEATURE(DMA_BUF) GET of region {region_index}"),
            e,
        )
    })?;
    Ok(RegionExport {
        device: info,
        region,
        dmabuf,
    })
}

/// Where sysfs lists the PCI functions.
const PCI_DEVICES: &str = "/sys/bus/pci/devices";
/// VFIO's container.
pub const CONTAINER: &str = "/dev/vfio/vfio";

/// The IOMMU group of the function at `address`, from sysfs.
pub fn iommu_group(address: &str) -> Result<String, Error> {
    let link = Path::new(PCI_DEVICES).join(address).join("iommu_group");
    let target = fs::read_link(&link).map_err(|e| {
        Error::new(
            format!(
                "{}: read link (is the function bound to vfio-pci?)",
                link.display()
            ),
            e,
        )
    })?;
    target
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| Error::invalid(link.display().to_string(), "no group number"))
}

/// The group's character device: `/dev/vfio/noiommu-N` for a no-IOMMU
/// group, else `/dev/vfio/N`.
pub fn group_node(group: &str) -> PathBuf {
    let noiommu = PathBuf::from(format!("/dev/vfio/noiommu-{group}"));
    if noiommu.exists() {
        noiommu
    } else {
        PathBuf::from(format!("/dev/vfio/{group}"))
    }
}

/// Opens `path` read-write, close-on-exec.
fn open_rw(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::new(format!("{}: open", path.display()), e))
}

/// `PCI_COMMAND` and its memory-decoding bit, `<linux/pci_regs.h>`.
const PCI_COMMAND: u64 = 0x04;
const PCI_COMMAND_MEMORY: u16 = 0x2;

/// A function bound to vfio-pci, opened through its group. The device's
/// file holds the group and the group the container, but all three stay
/// open for as long as this lives.
#[derive(Debug)]
pub struct VfioDevice {
    container: File,
    group: File,
    device: File,
    group_path: PathBuf,
    name: String,
}

impl VfioDevice {
    /// Opens the function at PCI address `address`: its group
    /// ([`group_node`]), a new container (whose API version must be
    /// [`VFIO_API_VERSION`]) set as the group's, `VFIO_NOIOMMU_IOMMU` as
    /// the container's IOMMU, and the device from the group by its address.
    pub fn open(address: &str) -> Result<Self, Error> {
        let group_path = group_node(&iommu_group(address)?);
        let container_path = Path::new(CONTAINER);
        let container = open_rw(container_path)?;
        let group = open_rw(&group_path)?;
        let on = |path: &Path, request: &str| format!("{}: {request}", path.display());
        let version = ioctl_value(container.as_fd(), VFIO_GET_API_VERSION, 0)
            .map_err(|e| Error::new(on(container_path, "VFIO_GET_API_VERSION"), e))?;
        if version != VFIO_API_VERSION {
            return Err(Error::invalid(
                on(container_path, "VFIO_GET_API_VERSION"),
                format!("API version {version}, expected {VFIO_API_VERSION}"),
            ));
        }
        let mut container_fd = [container.as_raw_fd()];
        // SAFETY: GROUP_SET_CONTAINER reads one int, `container_fd`, and
        // writes nothing.
        let set = unsafe {
            libc::ioctl(
                group.as_raw_fd(),
                libc::Ioctl::from(VFIO_GROUP_SET_CONTAINER),
                container_fd.as_mut_ptr(),
            )
        };
        if set < 0 {
            return Err(Error::new(
                on(&group_path, "VFIO_GROUP_SET_CONTAINER"),
                io::Error::last_os_error(),
            ));
        }
        ioctl_value(
            container.as_fd(),
            VFIO_SET_IOMMU,
            libc::c_ulong::from(VFIO_NOIOMMU_IOMMU),
        )
        .map_err(|e| Error::new(on(container_path, "VFIO_SET_IOMMU(NOIOMMU)"), e))?;
        let name = CString::new(address)
            .map_err(|_| Error::invalid(address.to_owned(), "NUL in the address"))?;
        // SAFETY: GROUP_GET_DEVICE_FD reads the NUL-terminated `name` and
        // writes nothing.
        let fd = unsafe {
            libc::ioctl(
                group.as_raw_fd(),
                libc::Ioctl::from(VFIO_GROUP_GET_DEVICE_FD),
                name.as_ptr(),
            )
        };
        if fd < 0 {
            return Err(Error::new(
                on(&group_path, &format!("VFIO_GROUP_GET_DEVICE_FD({address})")),
                io::Error::last_os_error(),
            ));
        }
        // SAFETY: the kernel just gave us `fd`, which nothing else owns.
        let device = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Self {
            container,
            group,
            device,
            group_path,
            name: format!("vfio-pci {address}"),
        })
    }

    /// The device's file, for the device requests.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.device.as_fd()
    }

    /// The group's character device this was opened through.
    pub fn group_path(&self) -> &Path {
        &self.group_path
    }

    /// `vfio-pci <address>`, as errors name the device.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` of region `index` (a BAR, or the
    /// configuration space).
    pub fn region(&self, index: u32) -> Result<vfio_region_info, Error> {
        region_info(self.fd(), index).map_err(|e| {
            Error::new(
                format!(
                    "{}: VFIO_DEVICE_GET_REGION_INFO of region {index}",
                    self.name
                ),
                e,
            )
        })
    }

    /// `VFIO_DEVICE_FEATURE_DMA_BUF` `GET` of `ranges` of BAR `bar`,
    /// read-write and close-on-exec.
    pub fn export(&self, bar: u32, ranges: &[vfio_region_dma_range]) -> Result<OwnedFd, Error> {
        let open_flags = (libc::O_RDWR | libc::O_CLOEXEC) as u32;
        export_dma_buf(self.fd(), bar, open_flags, ranges).map_err(|e| {
            Error::new(
                format!(
                    "{}: VFIO_DEVICE_FEATURE(DMA_BUF) GET of BAR{bar}",
                    self.name
                ),
                e,
            )
        })
    }

    /// Turns the function's memory decoding on or off through vfio-pci's
    /// view of its configuration space: off revokes its dma-bufs.
    pub fn set_memory(&self, on: bool) -> Result<(), Error> {
        let config = crate::bindings::VFIO_PCI_CONFIG_REGION_INDEX;
        let at = self.region(config)?.offset + PCI_COMMAND;
        let mut bytes = [0u8; 2];
        self.device
            .read_exact_at(&mut bytes, at)
            .map_err(|e| Error::new(format!("{}: read PCI_COMMAND", self.name), e))?;
        let mut command = u16::from_le_bytes(bytes);
        if on {
            command |= PCI_COMMAND_MEMORY;
        } else {
            command &= !PCI_COMMAND_MEMORY;
        }
        self.device
            .write_all_at(&command.to_le_bytes(), at)
            .map_err(|e| Error::new(format!("{}: write PCI_COMMAND", self.name), e))
    }

    /// Closes the device, the group and the container, in that order,
    /// reporting the first error close(2) returns.
    pub fn close(self) -> io::Result<()> {
        let mut result = Ok(());
        for file in [self.device, self.group, self.container] {
            let raw = std::os::fd::IntoRawFd::into_raw_fd(file);
            // SAFETY: `raw` came from a `File` this owned, and nothing else
            // closes it.
            if unsafe { libc::close(raw) } < 0 && result.is_ok() {
                result = Err(io::Error::last_os_error());
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    fn request_numbers() {
        // ';' is 0x3b, VFIO_BASE 100.
        assert_eq!(VFIO_GET_API_VERSION, 0x3b64);
        assert_eq!(VFIO_CHECK_EXTENSION, 0x3b65);
        assert_eq!(VFIO_SET_IOMMU, 0x3b66);
        assert_eq!(VFIO_GROUP_SET_CONTAINER, 0x3b68);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD, 0x3b6a);
        assert_eq!(VFIO_DEVICE_GET_INFO, 0x3b6b);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
        assert_eq!(VFIO_DEVICE_FEATURE, 0x3b75);
    }

    /// `<linux/vfio.h>` of Linux 6.19 and later, as the kernel defines it.
    #[test]
    fn layout() {
        assert_eq!(size_of::<vfio_device_feature>(), 8);
        assert_eq!(offset_of!(vfio_device_feature, flags), 4);
        assert_eq!(size_of::<vfio_device_feature_dma_buf>(), 16);
        assert_eq!(offset_of!(vfio_device_feature_dma_buf, open_flags), 4);
        assert_eq!(offset_of!(vfio_device_feature_dma_buf, flags), 8);
        assert_eq!(offset_of!(vfio_device_feature_dma_buf, nr_ranges), 12);
        assert_eq!(size_of::<vfio_region_dma_range>(), 16);
        assert_eq!(offset_of!(vfio_region_dma_range, length), 8);
        assert_eq!(offset_of!(vfio_region_info, size), 16);
        assert_eq!(offset_of!(vfio_region_info, offset), 24);
        assert_eq!(size_of::<vfio_region_info>(), 32);
        assert_eq!(offset_of!(vfio_device_info, num_irqs), 12);
    }

    #[test]
    fn feature_bits() {
        assert_eq!(
            VFIO_DEVICE_FEATURE_MASK
                & (VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_SET | VFIO_DEVICE_FEATURE_PROBE),
            0
        );
        assert_eq!(VFIO_DEVICE_FEATURE_DMA_BUF & !VFIO_DEVICE_FEATURE_MASK, 0);
    }

    #[test]
    fn feature_request_bytes() {
        let ranges = [(0x1000, 0x2000).into(), (0, 0x1000).into()];
        let request = FeatureRequest::dma_buf_get(2, 0o2000002, &ranges);
        assert_eq!(request.head.argsz, 8 + 16 + 2 * 16);
        let words = request.words();
        assert_eq!(words.len(), 7);
        assert_eq!(
            words[0],
            pair(56, VFIO_DEVICE_FEATURE_GET | VFIO_DEVICE_FEATURE_DMA_BUF)
        );
        assert_eq!(words[1], pair(2, 0o2000002));
        assert_eq!(words[2], pair(0, 2));
        assert_eq!(words[3..], [0x1000, 0x2000, 0, 0x1000]);
        // A claim past the bytes is backed by zeros; a tail is counted.
        let mut long = request.clone();
        long.head.argsz = 80;
        assert_eq!(long.words().len(), 10);
        let tail = request.with_tail(&[0, 1]);
        assert_eq!(tail.head.argsz, 58);
        assert_eq!(tail.words().len(), 8);
        assert_eq!(
            tail.words()[7],
            u64::from_ne_bytes([0, 1, 0, 0, 0, 0, 0, 0])
        );
        // A probe's argsz is the head alone; the data is still there.
        let probe = FeatureRequest::probe(VFIO_DEVICE_FEATURE_DMA_BUF);
        assert_eq!(probe.head.argsz, 8);
        assert_eq!(probe.words().len(), 3);
    }

    #[test]
    fn requests_on_another_file_are_enotty() {
        let file = File::open("/dev/null").expect("opens /dev/null");
        let e = device_info(file.as_fd()).expect_err("/dev/null has no ioctls");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        let e = region_info(file.as_fd(), 0).expect_err("/dev/null has no ioctls");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        let e = export_region(file.as_fd(), "/dev/null", 0, &[(0, 0x1000).into()])
            .expect_err("/dev/null has no ioctls");
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        assert!(
            e.to_string()
                .starts_with("/dev/null: VFIO_DEVICE_GET_INFO: ENOTTY"),
            "{e}"
        );
    }

    #[test]
    fn no_group_without_a_function() {
        let e = iommu_group("ffff:ff:1f.7").expect_err("no such function");
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
        assert!(group_node("4294967295").ends_with("4294967295"));
    }
}
