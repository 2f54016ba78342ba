// SPDX-License-Identifier: GPL-2.0

//! The exporter's and the test importer's uAPI: structures and constants that
//! bindgen generates from the headers, and the ioctl request numbers that the
//! C compiler computes from them (see `build.rs`).

// `allow`, not `expect`: which of these fire depends on what the headers
// hold and what the tests use of them.
#[allow(
    dead_code,
    non_camel_case_types,
    non_upper_case_globals,
    clippy::all,
    reason = "generated from the C headers by bindgen"
)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/uapi.rs"));
}

mod ioctls {
    include!(concat!(env!("OUT_DIR"), "/ioctls_from_c.rs"));
}

pub(crate) use generated::*;
pub(crate) use ioctls::*;

use core::mem::size_of;

/// The size of a structure as its `argsz` field states it.
pub(crate) const fn argsz<T>() -> u32 {
    let size = size_of::<T>();
    assert!(size <= u32::MAX as usize);
    size as u32
}

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
// `tests::layout` checks the sizes that imply it.
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
    use core::mem::offset_of;

    /// The sizes that leave no room for implicit padding, so that
    /// [`bytes_of`] reads initialised bytes only.
    #[test]
    fn layout() {
        assert_eq!(size_of::<vfio_dmabuf_bar_info>(), 16);
        assert_eq!(size_of::<vfio_dmabuf_info>(), 16 + 6 * 16);
        assert_eq!(size_of::<vfio_dmabuf_range>(), 16);
        assert_eq!(size_of::<vfio_dmabuf_export>(), 24);
        assert_eq!(offset_of!(vfio_dmabuf_export, ranges), 24);
        assert_eq!(size_of::<vfio_dmabuf_revoke>(), 16);
        assert_eq!(size_of::<vfio_dmabuf_imp_import>(), 24);
        assert_eq!(size_of::<vfio_dmabuf_imp_segment>(), 24);
        assert_eq!(size_of::<vfio_dmabuf_imp_walk>(), 40);
        assert_eq!(size_of::<vfio_dmabuf_imp_pfn>(), 32);
        assert_eq!(size_of::<vfio_dmabuf_imp_counters>(), 40);
    }

    /// The numbers as the headers define them, decoded: the C compiler's
    /// answer is the one used, this only catches a build that went wrong.
    #[test]
    fn ioctl_numbers() {
        let nr = |request: u32| request & 0xff;
        let ty = |request: u32| (request >> 8) & 0xff;
        let size = |request: u32| (request >> 16) & 0x3fff;
        for (request, number, bytes) in [
            (VFIO_DMABUF_INFO, 0x00, size_of::<vfio_dmabuf_info>()),
            (VFIO_DMABUF_EXPORT, 0x01, size_of::<vfio_dmabuf_export>()),
            (VFIO_DMABUF_REVOKE, 0x02, size_of::<vfio_dmabuf_revoke>()),
            (VFIO_DMABUF_RESTORE, 0x03, size_of::<vfio_dmabuf_revoke>()),
            (VFIO_DMABUF_UNDEFINED, 0x0f, size_of::<vfio_dmabuf_info>()),
            (
                VFIO_DMABUF_IMP_IMPORT,
                0x10,
                size_of::<vfio_dmabuf_imp_import>(),
            ),
            (
                VFIO_DMABUF_IMP_WALK,
                0x11,
                size_of::<vfio_dmabuf_imp_walk>(),
            ),
            (
                VFIO_DMABUF_IMP_GET_PFN,
                0x12,
                size_of::<vfio_dmabuf_imp_pfn>(),
            ),
            (
                VFIO_DMABUF_IMP_COUNTERS,
                0x13,
                size_of::<vfio_dmabuf_imp_counters>(),
            ),
        ] {
            assert_eq!(ty(request), VFIO_DMABUF_TYPE);
            assert_eq!(nr(request), number);
            assert_eq!(size(request) as usize, bytes);
        }
    }

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
