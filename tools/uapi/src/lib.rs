// SPDX-License-Identifier: GPL-2.0

//! What the user-space crates (`tools/vfio-dmabuf`, `tests/guest`) share of
//! the exporter's and the test importer's uAPI:
//!
//! - the structures and constants bindgen generates from
//!   `include/uapi/linux/vfio_dmabuf.h` and
//!   `tests/importer/vfio_dmabuf_importer.h` (see `build.rs`),
//!   [`bindings`], also re-exported here;
//! - the ioctl request numbers, computed here as `<asm-generic/ioctl.h>`
//!   does (which works when cross-compiling), and [`from_c`], the numbers
//!   the C compiler computes from the headers' macros when its program can
//!   run on the build machine;
//! - the names of the errnos they meet ([`errno_name`]);
//! - the parsing of a PCI function's sysfs `resource` file ([`sysfs`]);
//! - mappings of an imported buffer and device accesses through them that
//!   report a `SIGBUS` ([`mapping`]);
//! - VFIO's device requests, on a vfio-pci device or on the exporter's
//!   character device, and opening a vfio-pci function through its group
//!   ([`vfio`]).

mod errno;
pub mod iommufd;
pub mod mapping;
pub mod sysfs;
pub mod vfio;

pub use errno::errno_name;

/// The structures and constants of the headers, as bindgen generates them.
// `allow`, not `expect`: which of these fire depends on what the headers
// hold and what the users take of them.
#[allow(
    dead_code,
    missing_docs,
    non_camel_case_types,
    non_upper_case_globals,
    clippy::all,
    reason = "generated from the C headers by bindgen"
)]
pub mod bindings {
    include!(concat!(env!("OUT_DIR"), "/uapi.rs"));
}

/// The ioctl request numbers as the C compiler computes them from the
/// headers' `_IO()` macros (`ioctls.c`), among them
/// `VFIO_DMABUF_UNDEFINED`, a number in the exporter's range that is none of
/// its ioctls. Absent when cross-compiling: the program cannot run here.
#[cfg(ioctls_from_c)]
pub mod from_c {
    include!(concat!(env!("OUT_DIR"), "/ioctls_from_c.rs"));
}

pub use bindings::*;

use core::mem::size_of;

// The encoding of `<asm-generic/ioctl.h>`, which x86, arm64 and riscv use.
const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;

/// `_IOC(dir, ty, nr, size)`. Fails the build (in a `const`) when a field
/// does not fit, as `_IOC_TYPECHECK` does for the size.
const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    assert!(ty < 1 << IOC_TYPEBITS && nr < 1 << IOC_NRBITS);
    assert!(size < 1 << IOC_SIZEBITS);
    (dir << IOC_DIRSHIFT)
        | (ty << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}

/// `VFIO_DMABUF_INFO`: `_IO(VFIO_DMABUF_TYPE, 0x00)`.
pub const VFIO_DMABUF_INFO: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x00, 0);

/// `VFIO_DMABUF_EXPORT`: `_IO(VFIO_DMABUF_TYPE, 0x01)`.
pub const VFIO_DMABUF_EXPORT: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x01, 0);

/// `VFIO_DMABUF_REVOKE`: `_IO(VFIO_DMABUF_TYPE, 0x02)`.
pub const VFIO_DMABUF_REVOKE: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x02, 0);

/// `VFIO_DMABUF_RESTORE`: `_IO(VFIO_DMABUF_TYPE, 0x03)`.
pub const VFIO_DMABUF_RESTORE: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x03, 0);

/// `VFIO_DMABUF_IMP_IMPORT`: `_IO(0xDB, 0x10)`.
/// The importer shares the exporter's magic.
pub const VFIO_DMABUF_IMP_IMPORT: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x10, 0);

/// `VFIO_DMABUF_IMP_WALK`: `_IO(0xDB, 0x11)`.
pub const VFIO_DMABUF_IMP_WALK: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x11, 0);

/// `VFIO_DMABUF_IMP_COUNTERS`:
/// `_IO(0xDB, 0x13)`.
pub const VFIO_DMABUF_IMP_COUNTERS: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x13, 0);

/// `VFIO_DMABUF_IMP_BENCH`: `_IO(0xDB, 0x14)`.
pub const VFIO_DMABUF_IMP_BENCH: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x14, 0);

/// `VFIO_DMABUF_PEER_ATTACH`: `_IO(0xDB, 0x20)`,
/// of the benchmarks' scatterlist importer (tests/peer).
pub const VFIO_DMABUF_PEER_ATTACH: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x20, 0);

/// `VFIO_DMABUF_PEER_REMAP`: `_IO(0xDB, 0x21)`.
pub const VFIO_DMABUF_PEER_REMAP: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x21, 0);

/// `VFIO_DMABUF_PEER_WALK`: `_IO(0xDB, 0x22)`.
pub const VFIO_DMABUF_PEER_WALK: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x22, 0);

/// `VFIO_DMABUF_PEER_BENCH`: `_IO(0xDB, 0x23)`.
pub const VFIO_DMABUF_PEER_BENCH: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x23, 0);

/// `VFIO_DMABUF_PEER_SPAN`: `_IO(0xDB, 0x24)`.
pub const VFIO_DMABUF_PEER_SPAN: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x24, 0);

/// `VFIO_DEVICE_GET_INFO`: `_IO(VFIO_TYPE, VFIO_BASE + 7)`.
pub const VFIO_DEVICE_GET_INFO: u32 = ioc(0, VFIO_TYPE as u32, VFIO_BASE + 7, 0);
/// `VFIO_DEVICE_GET_REGION_INFO`: `_IO(VFIO_TYPE, VFIO_BASE + 8)`.
pub const VFIO_DEVICE_GET_REGION_INFO: u32 = ioc(0, VFIO_TYPE as u32, VFIO_BASE + 8, 0);
/// `VFIO_DEVICE_FEATURE`: `_IO(VFIO_TYPE, VFIO_BASE + 17)`.
pub const VFIO_DEVICE_FEATURE: u32 = ioc(0, VFIO_TYPE as u32, VFIO_BASE + 17, 0);

/// The size of a structure as its `argsz` field states it.
pub const fn argsz<T>() -> u32 {
    let size = size_of::<T>();
    assert!(size <= u32::MAX as usize);
    size as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::offset_of;

    #[test]
    #[cfg(ioctls_from_c)]
    fn ioctl_numbers_match_c() {
        assert_eq!(VFIO_DMABUF_INFO, from_c::VFIO_DMABUF_INFO);
        assert_eq!(VFIO_DMABUF_EXPORT, from_c::VFIO_DMABUF_EXPORT);
        assert_eq!(VFIO_DMABUF_REVOKE, from_c::VFIO_DMABUF_REVOKE);
        assert_eq!(VFIO_DMABUF_RESTORE, from_c::VFIO_DMABUF_RESTORE);
        assert_eq!(VFIO_DMABUF_IMP_IMPORT, from_c::VFIO_DMABUF_IMP_IMPORT);
        assert_eq!(VFIO_DMABUF_IMP_WALK, from_c::VFIO_DMABUF_IMP_WALK);
        assert_eq!(VFIO_DMABUF_IMP_COUNTERS, from_c::VFIO_DMABUF_IMP_COUNTERS);
        assert_eq!(VFIO_DMABUF_IMP_BENCH, from_c::VFIO_DMABUF_IMP_BENCH);
        assert_eq!(VFIO_DMABUF_PEER_ATTACH, from_c::VFIO_DMABUF_PEER_ATTACH);
        assert_eq!(VFIO_DMABUF_PEER_REMAP, from_c::VFIO_DMABUF_PEER_REMAP);
        assert_eq!(VFIO_DMABUF_PEER_WALK, from_c::VFIO_DMABUF_PEER_WALK);
        assert_eq!(VFIO_DMABUF_PEER_BENCH, from_c::VFIO_DMABUF_PEER_BENCH);
        assert_eq!(VFIO_DMABUF_PEER_SPAN, from_c::VFIO_DMABUF_PEER_SPAN);
        assert_eq!(VFIO_DEVICE_GET_INFO, from_c::VFIO_DEVICE_GET_INFO);
        assert_eq!(
            VFIO_DEVICE_GET_REGION_INFO,
            from_c::VFIO_DEVICE_GET_REGION_INFO
        );
        assert_eq!(VFIO_DEVICE_FEATURE, from_c::VFIO_DEVICE_FEATURE);
    }

    /// The numbers written out by hand, as a check on both: `_IO()` numbers
    /// carry no size and no direction, only the magic and the number.
    #[test]
    fn ioctl_numbers() {
        assert_eq!(VFIO_DMABUF_INFO, 0x0000_db00);
        assert_eq!(VFIO_DMABUF_EXPORT, 0x0000_db01);
        assert_eq!(VFIO_DMABUF_REVOKE, 0x0000_db02);
        assert_eq!(VFIO_DMABUF_RESTORE, 0x0000_db03);
        assert_eq!(VFIO_DMABUF_IMP_IMPORT, 0x0000_db10);
        assert_eq!(VFIO_DMABUF_IMP_WALK, 0x0000_db11);
        assert_eq!(VFIO_DMABUF_IMP_COUNTERS, 0x0000_db13);
        assert_eq!(VFIO_DMABUF_IMP_BENCH, 0x0000_db14);
        assert_eq!(VFIO_DMABUF_PEER_ATTACH, 0x0000_db20);
        assert_eq!(VFIO_DMABUF_PEER_REMAP, 0x0000_db21);
        assert_eq!(VFIO_DMABUF_PEER_WALK, 0x0000_db22);
        assert_eq!(VFIO_DMABUF_PEER_BENCH, 0x0000_db23);
        assert_eq!(VFIO_DMABUF_PEER_SPAN, 0x0000_db24);
    }

    /// The ABI as tests/uapi/layout.c pins it; bindgen's own layout checks
    /// are compile-time assertions in the generated code.
    #[test]
    fn layout() {
        assert_eq!(size_of::<vfio_dmabuf_bar_info>(), 16);
        assert_eq!(offset_of!(vfio_dmabuf_bar_info, size), 8);
        assert_eq!(size_of::<vfio_dmabuf_info>(), 112);
        assert_eq!(offset_of!(vfio_dmabuf_info, bars), 16);
        assert_eq!(size_of::<vfio_dmabuf_range>(), 16);
        assert_eq!(size_of::<vfio_dmabuf_export>(), 24);
        assert_eq!(offset_of!(vfio_dmabuf_export, nr_ranges), 16);
        assert_eq!(offset_of!(vfio_dmabuf_export, ranges), 24);
        assert_eq!(size_of::<vfio_dmabuf_revoke>(), 16);
        assert_eq!(argsz::<vfio_dmabuf_info>(), 112);
        assert_eq!(size_of::<vfio_dmabuf_imp_import>(), 24);
        assert_eq!(offset_of!(vfio_dmabuf_imp_import, size), 16);
        assert_eq!(size_of::<vfio_dmabuf_imp_segment>(), 32);
        assert_eq!(offset_of!(vfio_dmabuf_imp_segment, pages), 16);
        assert_eq!(size_of::<vfio_dmabuf_imp_walk>(), 40);
        assert_eq!(offset_of!(vfio_dmabuf_imp_walk, capacity), 12);
        assert_eq!(offset_of!(vfio_dmabuf_imp_walk, segments), 16);
        assert_eq!(size_of::<vfio_dmabuf_imp_bench>(), 56);
        assert_eq!(offset_of!(vfio_dmabuf_imp_bench, phys_vec_ns), 40);
    }

    #[test]
    fn constants() {
        assert_eq!(VFIO_DMABUF_NUM_BARS, 6);
        assert_eq!(VFIO_DMABUF_MAX_RANGES, 256);
        assert_eq!(VFIO_DMABUF_TYPE, 0xdb);
        let bits = [
            VFIO_DMABUF_BAR_MEM,
            VFIO_DMABUF_BAR_IO,
            VFIO_DMABUF_BAR_64,
            VFIO_DMABUF_BAR_PREFETCH,
            VFIO_DMABUF_BAR_ABSENT,
        ];
        assert_eq!(bits, [1, 2, 4, 8, 16]);
        assert_eq!(VFIO_DMABUF_IMP_WALK_PAGES, 1);
        assert_eq!(VFIO_DMABUF_IMP_WALK_RUNS, 2);
        assert_eq!(VFIO_DMABUF_IMP_MAX_CAPACITY, 4096);
        assert_eq!(VFIO_DMABUF_IMP_TYPE, VFIO_DMABUF_TYPE);
    }

    /// The sizes that leave no room for implicit padding, so that
    /// tests/guest's `bytes_of` reads initialised bytes only.
    #[test]
    fn layout_has_no_padding() {
        assert_eq!(size_of::<vfio_dmabuf_bar_info>(), 16);
        assert_eq!(size_of::<vfio_dmabuf_info>(), 16 + 6 * 16);
        assert_eq!(size_of::<vfio_dmabuf_range>(), 16);
        assert_eq!(size_of::<vfio_dmabuf_export>(), 24);
        assert_eq!(offset_of!(vfio_dmabuf_export, ranges), 24);
        assert_eq!(size_of::<vfio_dmabuf_revoke>(), 16);
        assert_eq!(size_of::<vfio_dmabuf_imp_import>(), 24);
        assert_eq!(size_of::<vfio_dmabuf_imp_segment>(), 32);
        assert_eq!(size_of::<vfio_dmabuf_imp_walk>(), 40);
        assert_eq!(size_of::<vfio_dmabuf_imp_pfn>(), 32);
        assert_eq!(size_of::<vfio_dmabuf_imp_counters>(), 64);
        assert_eq!(size_of::<vfio_dmabuf_imp_bench>(), 56);
    }

    /// The numbers as the headers define them, decoded: the C compiler's
    /// answer is the one tests/guest uses, this only catches a build that
    /// went wrong. `_IO()`: no size, no direction.
    #[test]
    #[cfg(ioctls_from_c)]
    fn ioctl_numbers_from_c_decoded() {
        use crate::from_c::*;

        let nr = |request: u32| request & 0xff;
        let ty = |request: u32| (request >> 8) & 0xff;
        let rest = |request: u32| request >> 16;
        for (request, number) in [
            (VFIO_DMABUF_INFO, 0x00),
            (VFIO_DMABUF_EXPORT, 0x01),
            (VFIO_DMABUF_REVOKE, 0x02),
            (VFIO_DMABUF_RESTORE, 0x03),
            (VFIO_DMABUF_UNDEFINED, 0x0f),
            (VFIO_DMABUF_IMP_IMPORT, 0x10),
            (VFIO_DMABUF_IMP_WALK, 0x11),
            (VFIO_DMABUF_IMP_GET_PFN, 0x12),
            (VFIO_DMABUF_IMP_COUNTERS, 0x13),
            (VFIO_DMABUF_IMP_BENCH, 0x14),
        ] {
            assert_eq!(ty(request), VFIO_DMABUF_TYPE);
            assert_eq!(nr(request), number);
            assert_eq!(rest(request), 0);
        }
        // VFIO's, from the installed <linux/vfio.h>: ';' and VFIO_BASE + n.
        assert_eq!(VFIO_DEVICE_GET_INFO, 0x3b6b);
        assert_eq!(VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
        assert_eq!(VFIO_DEVICE_FEATURE, 0x3b75);
    }
}
