// SPDX-License-Identifier: GPL-2.0

//! The exporter's and the test importer's uAPI: structures and constants that
//! bindgen generates from the headers, and the ioctl request numbers that the
//! C compiler computes from them (the `vfio-dmabuf-uapi` crate, `tools/uapi`).

// The C compiler's numbers exist only when the build machine can run the
// program that prints them (`vfio_dmabuf_uapi::from_c`): the tests are built
// for the machine that builds them (the guest runs the host's kernel
// architecture and user space).
pub(crate) use vfio_dmabuf_uapi::argsz;
pub(crate) use vfio_dmabuf_uapi::bindings::*;
pub(crate) use vfio_dmabuf_uapi::from_c::*;

use core::mem::size_of;

/// The bytes of a uAPI structure, as the kernel reads them.
pub(crate) fn bytes_of<T: Uapi>(value: &T) -> &[u8] {
    // SAFETY: `value` is a valid reference, so its `size_of::<T>()` bytes are
    // readable for the lifetime of the borrow; `T: Uapi` promises that every
    // one of them is initialised (no padding).
    unsafe { core::slice::from_raw_parts((value as *const T).cast::<u8>(), size_of::<T>()) }
}

/// A structure of the headers: plain integers, no padding (the headers say
/// so, and bindgen's layout tests check the sizes), valid for every bit
/// pattern.
///
/// # Safety
///
/// Implement it only for types that have no padding bytes and for which any
/// bytes are a valid value.
pub(crate) unsafe trait Uapi {}

// SAFETY: each is a `#[repr(C)]` structure of fixed-width integers whose
// header guarantees explicit padding only ("Layout" in the uAPI DOC);
// `layout_has_no_padding` in the `vfio-dmabuf-uapi` crate checks the sizes
// that imply it.
unsafe impl Uapi for vfio_dmabuf_info {}
// SAFETY: as above.
unsafe impl Uapi for vfio_dmabuf_bar_info {}
// SAFETY: as above.
unsafe impl Uapi for vfio_dmabuf_export {}
// SAFETY: as above.
unsafe impl Uapi for vfio_dmabuf_range {}
// SAFETY: as above.
unsafe impl Uapi for vfio_dmabuf_revoke {}
// SAFETY: as above.
unsafe impl Uapi for vfio_dmabuf_imp_import {}
// SAFETY: as above.
unsafe impl Uapi for vfio_dmabuf_imp_segment {}
// SAFETY: as above.
unsafe impl Uapi for vfio_dmabuf_imp_walk {}
// SAFETY: as above.
unsafe impl Uapi for vfio_dmabuf_imp_pfn {}
// SAFETY: as above.
unsafe impl Uapi for vfio_dmabuf_imp_counters {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_of_is_the_layout() {
        let range = vfio_dmabuf_range {
            offset: 0x0102_0304_0506_0708,
            length: 0x1000,
        };
        let bytes = bytes_of(&range);
        assert_eq!(bytes.len(), 16);
        assert_eq!(bytes[..8], 0x0102_0304_0506_0708u64.to_ne_bytes());
        assert_eq!(bytes[8..], 0x1000u64.to_ne_bytes());
    }
}
