// SPDX-License-Identifier: GPL-2.0

//! The ioctls of `include/uapi/linux/vfio_dmabuf.h`: reading the arguments
//! and refusing bad ones with the errno the header documents.
//!
//! The structures are read and written field by field, in the header's
//! layout (whose sizes `tests/uapi` checks on the C side), so no kernel byte
//! ever reaches user space through padding.

use kernel::{
    fs::file::flags::{
        O_ACCMODE,
        O_CLOEXEC, //
    },
    ioctl::{
        _IOW,
        _IOWR, //
    },
    prelude::*,
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

use crate::{
    buffer::State,
    function::{
        request_errno,
        Function,
        NUM_BARS, //
    },
    range::{
        self,
        ByteRange, //
    },
};

const TYPE: u32 = 0xDB;

pub(crate) const BAR_MEM: u32 = 1 << 0;
pub(crate) const BAR_IO: u32 = 1 << 1;
pub(crate) const BAR_64: u32 = 1 << 2;
pub(crate) const BAR_PREFETCH: u32 = 1 << 3;
pub(crate) const BAR_ABSENT: u32 = 1 << 4;

/// `sizeof(struct vfio_dmabuf_info)`: a 16-byte head and six 16-byte BARs.
const INFO_SIZE: usize = 16 + NUM_BARS * 16;
/// `sizeof(struct vfio_dmabuf_export)`, without its ranges.
const EXPORT_SIZE: usize = 24;
/// `sizeof(struct vfio_dmabuf_range)`.
const RANGE_SIZE: usize = 16;
/// `sizeof(struct vfio_dmabuf_revoke)`.
const REVOKE_SIZE: usize = 16;

const INFO: u32 = _IOWR::<[u8; INFO_SIZE]>(TYPE, 0x00);
const EXPORT: u32 = _IOW::<[u8; EXPORT_SIZE]>(TYPE, 0x01);
const REVOKE: u32 = _IOW::<[u8; REVOKE_SIZE]>(TYPE, 0x02);
const RESTORE: u32 = _IOW::<[u8; REVOKE_SIZE]>(TYPE, 0x03);

pub(crate) fn ioctl(function: &Function, cmd: u32, arg: usize) -> Result<isize> {
    match cmd {
        INFO => info(function, arg).map(|()| 0),
        EXPORT => export(function, arg).map(|fd| fd as isize),
        REVOKE => change(function, arg, State::Revoked).map(|()| 0),
        RESTORE => change(function, arg, State::Live).map(|()| 0),
        _ => Err(ENOTTY),
    }
}

fn at(arg: usize, offset: usize, len: usize) -> Result<UserSlice> {
    Ok(UserSlice::new(
        UserPtr::from_addr(arg.checked_add(offset).ok_or(EFAULT)?),
        len,
    ))
}

/// Checks that the `len` bytes at `arg + offset` are zero, as
/// `copy_struct_from_user()` does for an argument larger than the kernel knows.
fn check_zero_tail(arg: usize, offset: usize, len: usize) -> Result {
    let mut reader = at(arg, offset, len)?.reader();
    let mut chunk = [0u8; 64];
    while !reader.is_empty() {
        let n = reader.len().min(chunk.len());
        reader.read_slice(&mut chunk[..n])?;
        if chunk[..n].iter().any(|&b| b != 0) {
            return Err(E2BIG);
        }
    }
    Ok(())
}

/// Reads `argsz` and `flags` and checks them against a structure of `size`
/// bytes: `argsz` at least `size`, `flags` zero. Returns `argsz`.
fn head(arg: usize, size: usize) -> Result<usize> {
    let mut reader = at(arg, 0, 8)?.reader();
    let argsz: u32 = reader.read()?;
    let flags: u32 = reader.read()?;
    let argsz = usize::try_from(argsz)?;
    if argsz < size || flags != 0 {
        return Err(EINVAL);
    }
    Ok(argsz)
}

fn info(function: &Function, arg: usize) -> Result {
    let argsz = head(arg, INFO_SIZE)?;
    check_zero_tail(arg, INFO_SIZE, argsz - INFO_SIZE)?;
    if function.is_gone() {
        return Err(ENODEV);
    }
    let mut writer = at(arg, 8, INFO_SIZE - 8)?.writer();
    writer.write(&(NUM_BARS as u32))?;
    writer.write(&0u32)?;
    for (index, bar) in function.bars.iter().enumerate() {
        writer.write(&(index as u32))?;
        writer.write(&bar.flags)?;
        writer.write(&bar.size)?;
    }
    Ok(())
}

fn export(function: &Function, arg: usize) -> Result<i32> {
    let argsz = head(arg, EXPORT_SIZE)?;
    let mut reader = at(arg, 8, EXPORT_SIZE - 8)?.reader();
    let region_index: u32 = reader.read()?;
    let open_flags: u32 = reader.read()?;
    let nr_ranges: u32 = reader.read()?;
    let reserved: u32 = reader.read()?;
    if reserved != 0 || open_flags & !(O_ACCMODE | O_CLOEXEC) != 0 {
        return Err(EINVAL);
    }
    let bar = usize::try_from(region_index)?;
    if bar >= NUM_BARS {
        return Err(EINVAL);
    }
    // Bounded before anything is read or allocated for the ranges.
    let count = range::check_count(u64::from(nr_ranges)).map_err(request_errno)?;
    let size = EXPORT_SIZE + count * RANGE_SIZE;
    if argsz < size {
        return Err(EINVAL);
    }
    check_zero_tail(arg, size, argsz - size)?;

    let mut ranges = KVec::with_capacity(count, GFP_KERNEL)?;
    let mut reader = at(arg, EXPORT_SIZE, count * RANGE_SIZE)?.reader();
    for _ in 0..count {
        let offset: u64 = reader.read()?;
        let length: u64 = reader.read()?;
        ranges.push(ByteRange { offset, length }, GFP_KERNEL)?;
    }
    function.export(bar, &ranges, open_flags)
}

fn change(function: &Function, arg: usize, state: State) -> Result {
    let argsz = head(arg, REVOKE_SIZE)?;
    let mut reader = at(arg, 8, REVOKE_SIZE - 8)?.reader();
    let region_index: u32 = reader.read()?;
    let reserved: u32 = reader.read()?;
    if reserved != 0 {
        return Err(EINVAL);
    }
    check_zero_tail(arg, REVOKE_SIZE, argsz - REVOKE_SIZE)?;
    let bar = usize::try_from(region_index)?;
    if bar >= NUM_BARS {
        return Err(EINVAL);
    }
    function.set_state(bar, state)
}
