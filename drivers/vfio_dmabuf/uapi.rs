// SPDX-License-Identifier: GPL-2.0

//! The ioctls of the character device: this driver's own
//! (`include/uapi/linux/vfio_dmabuf.h`) and VFIO's that it answers
//! (`VFIO_DEVICE_GET_INFO`, `VFIO_DEVICE_GET_REGION_INFO` and
//! `VFIO_DEVICE_FEATURE` with `VFIO_DEVICE_FEATURE_DMA_BUF`), read as the
//! structures bindgen generates from the headers (`kernel::uapi`), and
//! refused with the errno each header documents.

use core::mem::size_of;
use kernel::{
    fs::file::flags::{
        O_ACCMODE,
        O_CLOEXEC, //
    },
    prelude::*,
    transmute::FromBytes,
    uaccess::{
        UserPtr,
        UserSlice,
        UserSliceReader, //
    },
    uapi::{
        self,
        vfio_device_feature,
        vfio_device_feature_dma_buf,
        vfio_device_info,
        vfio_dmabuf_bar_info,
        vfio_dmabuf_export,
        vfio_dmabuf_info,
        vfio_dmabuf_range,
        vfio_dmabuf_revoke,
        vfio_region_dma_range,
        vfio_region_info, //
    },
    vfio,
};

use crate::{
    buffer::State,
    function::{
        Function,
        NUM_BARS, //
    },
    range::{
        self,
        ByteRange,
        RequestError, //
    },
};

/// Answers one ioctl of the character device of `function`.
pub(crate) fn ioctl(function: &Function, cmd: u32, arg: usize) -> Result<isize> {
    let arg = UserPtr::from_addr(arg);
    match cmd {
        vfio::VFIO_DMABUF_INFO => info(function, arg).map(|()| 0),
        vfio::VFIO_DMABUF_EXPORT => export(function, arg).map(|fd| fd as isize),
        vfio::VFIO_DMABUF_REVOKE => change(function, arg, State::Revoked).map(|()| 0),
        vfio::VFIO_DMABUF_RESTORE => change(function, arg, State::Live).map(|()| 0),
        vfio::VFIO_DEVICE_GET_INFO => device_info(function, arg).map(|()| 0),
        vfio::VFIO_DEVICE_GET_REGION_INFO => region_info(function, arg).map(|()| 0),
        vfio::VFIO_DEVICE_FEATURE => feature(function, arg),
        _ => Err(ENOTTY),
    }
}

/// The errno this driver's uAPI documents for each refused request.
fn request_errno(e: RequestError) -> Error {
    match e {
        RequestError::TooManyRanges => E2BIG,
        RequestError::Overflow => EOVERFLOW,
        RequestError::NoRanges
        | RequestError::EmptyRange
        | RequestError::Unaligned
        | RequestError::OutsideBar => EINVAL,
    }
}

/// The `len` bytes at `arg + offset`.
fn at(arg: UserPtr, offset: usize, len: usize) -> Result<UserSliceReader> {
    let addr = (arg.as_const_ptr() as usize)
        .checked_add(offset)
        .ok_or(EFAULT)?;
    Ok(UserSlice::new(UserPtr::from_addr(addr), len).reader())
}

/// Reads the `argsz` that starts every argument.
fn argsz(arg: UserPtr) -> Result<usize> {
    Ok(usize::try_from(
        at(arg, 0, size_of::<u32>())?.read::<u32>()?,
    )?)
}

/// Reads this driver's argument `T` and checks its head as the uAPI
/// documents: `argsz` at least `size` (the structure, and what follows it in
/// the request), only zero bytes past that, and `flags` zero. The structure
/// is read once, whole.
fn read_own<T: FromBytes>(
    arg: UserPtr,
    size: impl FnOnce(&T) -> Result<usize>,
    flags: impl FnOnce(&T) -> u32,
) -> Result<T> {
    let argsz = argsz(arg)?;
    if argsz < size_of::<T>() {
        return Err(EINVAL);
    }
    let value: T = at(arg, 0, size_of::<T>())?.read()?;
    let size = size(&value)?;
    if argsz < size || flags(&value) != 0 {
        return Err(EINVAL);
    }
    if !at(arg, size, argsz - size)?.is_zeroed()? {
        return Err(E2BIG);
    }
    Ok(value)
}

/// A BAR index from user space, below [`NUM_BARS`], or `EINVAL`.
fn bar_index(region_index: u32) -> Result<usize> {
    usize::try_from(region_index)
        .ok()
        .filter(|&bar| bar < NUM_BARS)
        .ok_or(EINVAL)
}

fn info(function: &Function, arg: UserPtr) -> Result {
    let info = read_own::<vfio_dmabuf_info>(
        arg,
        |_| Ok(size_of::<vfio_dmabuf_info>()),
        |info| info.flags,
    )?;
    if function.is_gone() {
        return Err(ENODEV);
    }
    let mut bars = [vfio_dmabuf_bar_info::default(); NUM_BARS];
    for (index, (bar, desc)) in bars.iter_mut().zip(&function.bars).enumerate() {
        *bar = vfio_dmabuf_bar_info {
            index: u32::try_from(index)?,
            flags: desc.flags,
            size: desc.size,
        };
    }
    let info = vfio_dmabuf_info {
        num_bars: u32::try_from(NUM_BARS)?,
        __reserved: 0,
        bars,
        ..info
    };
    UserSlice::new(arg, size_of::<vfio_dmabuf_info>())
        .writer()
        .write(&info)
}

/// Reads `count` ranges of type `R` from `reader`, as [`ByteRange`]s.
fn read_ranges<R: FromBytes>(
    mut reader: UserSliceReader,
    count: usize,
    byte_range: impl Fn(R) -> ByteRange,
) -> Result<KVec<ByteRange>> {
    let mut ranges = KVec::with_capacity(count, GFP_KERNEL)?;
    for _ in 0..count {
        ranges.push(byte_range(reader.read::<R>()?), GFP_KERNEL)?;
    }
    Ok(ranges)
}

/// Checks the open flags of a new dma-buf: an access mode and `O_CLOEXEC`.
fn open_flags(open_flags: u32) -> Result<u32> {
    if open_flags & !(O_ACCMODE | O_CLOEXEC) != 0 {
        return Err(EINVAL);
    }
    Ok(open_flags)
}

fn export(function: &Function, arg: UserPtr) -> Result<i32> {
    // The ranges follow the structure; `argsz` covers them. Their number is
    // bounded before anything is read or allocated for them.
    let export = read_own::<vfio_dmabuf_export>(
        arg,
        |export| {
            let count = range::check_count(u64::from(export.nr_ranges)).map_err(request_errno)?;
            Ok(size_of::<vfio_dmabuf_export>() + count * size_of::<vfio_dmabuf_range>())
        },
        |export| export.flags,
    )?;
    if export.__reserved != 0 {
        return Err(EINVAL);
    }
    let open_flags = open_flags(export.open_flags)?;
    let bar = bar_index(export.region_index)?;
    let count = usize::try_from(export.nr_ranges)?;
    let reader = at(
        arg,
        size_of::<vfio_dmabuf_export>(),
        count * size_of::<vfio_dmabuf_range>(),
    )?;
    let ranges = read_ranges(reader, count, |r: vfio_dmabuf_range| ByteRange {
        offset: r.offset,
        length: r.length,
    })?;
    function
        .export(bar, &ranges, open_flags)
        .map_err(|e| e.errno(request_errno))
}

fn change(function: &Function, arg: UserPtr, state: State) -> Result {
    let request = read_own::<vfio_dmabuf_revoke>(
        arg,
        |_| Ok(size_of::<vfio_dmabuf_revoke>()),
        |request| request.flags,
    )?;
    if request.__reserved != 0 {
        return Err(EINVAL);
    }
    function.set_state(bar_index(request.region_index)?, state)
}

/// `VFIO_DEVICE_GET_INFO`, as vfio-pci answers it for the parts that apply:
/// a PCI device whose only regions are its BARs, without interrupts.
fn device_info(function: &Function, arg: UserPtr) -> Result {
    // vfio-pci's minimum: up to `num_irqs`; `cap_offset` and the padding
    // only when `argsz` covers them.
    let minsz = core::mem::offset_of!(vfio_device_info, cap_offset);
    let argsz = argsz(arg)?;
    if argsz < minsz {
        return Err(EINVAL);
    }
    if function.is_gone() {
        return Err(ENODEV);
    }
    let info = vfio_device_info {
        argsz: u32::try_from(argsz)?,
        flags: uapi::VFIO_DEVICE_FLAGS_PCI,
        num_regions: uapi::VFIO_PCI_ROM_REGION_INDEX,
        num_irqs: 0,
        cap_offset: 0,
        pad: 0,
    };
    write_prefix(arg, &info, argsz)
}

/// `VFIO_DEVICE_GET_REGION_INFO` for a BAR: its size, no access flags, as
/// the BARs are only exported through this device.
fn region_info(function: &Function, arg: UserPtr) -> Result {
    let minsz = size_of::<vfio_region_info>();
    let argsz = argsz(arg)?;
    if argsz < minsz {
        return Err(EINVAL);
    }
    let request: vfio_region_info = at(arg, 0, minsz)?.read()?;
    let desc = usize::try_from(request.index)
        .ok()
        .and_then(|index| function.bars.get(index))
        .ok_or(EINVAL)?;
    if function.is_gone() {
        return Err(ENODEV);
    }
    let info = vfio_region_info {
        flags: 0,
        cap_offset: 0,
        size: desc.size,
        offset: 0,
        ..request
    };
    write_prefix(arg, &info, argsz)
}

/// Writes as much of `value` as `argsz` covers, as VFIO does.
fn write_prefix<T: kernel::transmute::AsBytes>(arg: UserPtr, value: &T, argsz: usize) -> Result {
    let bytes = value.as_bytes();
    UserSlice::new(arg, argsz)
        .writer()
        .write_slice(&bytes[..bytes.len().min(argsz)])
}

/// `VFIO_DEVICE_FEATURE`: only `VFIO_DEVICE_FEATURE_DMA_BUF`, with the
/// checks and errnos of vfio's `vfio_ioctl_device_feature()`,
/// `vfio_check_feature()` and vfio-pci's `vfio_pci_core_feature_dma_buf()`.
fn feature(function: &Function, arg: UserPtr) -> Result<isize> {
    let head_size = size_of::<vfio_device_feature>();
    let head: vfio_device_feature = at(arg, 0, head_size)?.read()?;
    let argsz = usize::try_from(head.argsz)?;
    if argsz < head_size {
        return Err(EINVAL);
    }
    let (get, set, probe) = (
        uapi::VFIO_DEVICE_FEATURE_GET,
        uapi::VFIO_DEVICE_FEATURE_SET,
        uapi::VFIO_DEVICE_FEATURE_PROBE,
    );
    if head.flags & !(uapi::VFIO_DEVICE_FEATURE_MASK | get | set | probe) != 0 {
        return Err(EINVAL);
    }
    if head.flags & probe == 0 && head.flags & set != 0 && head.flags & get != 0 {
        return Err(EINVAL);
    }
    if head.flags & uapi::VFIO_DEVICE_FEATURE_MASK != uapi::VFIO_DEVICE_FEATURE_DMA_BUF {
        return Err(ENOTTY);
    }
    // vfio_check_feature(): only GET is supported; a probe ends here.
    if head.flags & set != 0 {
        return Err(EINVAL);
    }
    // A gone function supports nothing: every request answers ENODEV.
    if function.is_gone() {
        return Err(ENODEV);
    }
    if head.flags & probe != 0 {
        return Ok(0);
    }
    if head.flags & get == 0 || argsz - head_size < size_of::<vfio_device_feature_dma_buf>() {
        return Err(EINVAL);
    }

    let request: vfio_device_feature_dma_buf =
        at(arg, head_size, size_of::<vfio_device_feature_dma_buf>())?.read()?;
    if request.nr_ranges == 0 || request.flags != 0 {
        return Err(EINVAL);
    }
    // vfio-pci: a region that is not a BAR, or a BAR it has not claimed.
    let bar = usize::try_from(request.region_index)
        .ok()
        .filter(|&bar| bar < NUM_BARS && function.bars[bar].size != 0)
        .ok_or(ENODEV)?;
    // vfio-pci has no peer-to-peer provider for an I/O BAR: EINVAL there.
    if function.bars[bar].flags & uapi::VFIO_DMABUF_BAR_MEM == 0 {
        return Err(EINVAL);
    }
    let open_flags = open_flags(request.open_flags)?;
    // As in vfio-pci, the ranges follow the structure whatever `argsz` says.
    let count = range::check_count(u64::from(request.nr_ranges)).map_err(request_errno)?;
    let reader = at(
        arg,
        head_size + size_of::<vfio_device_feature_dma_buf>(),
        count * size_of::<vfio_region_dma_range>(),
    )?;
    let ranges = read_ranges(reader, count, |r: vfio_region_dma_range| ByteRange {
        offset: r.offset,
        length: r.length,
    })?;
    let fd = function
        .export(bar, &ranges, open_flags)
        .map_err(|e| e.errno(request_errno))?;
    Ok(fd as isize)
}
