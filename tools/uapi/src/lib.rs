// SPDX-License-Identifier: GPL-2.0

//! What the user-space crates (`tools/vfio-dmabuf`, `tests/guest`) share of
//! the exporter's and the test importer's uAPI:
//!
//! - the structures and constants bindgen generates from
//!   `include/uapi/linux/vfio_dmabuf.h` and
//!   `include/uapi/linux/vfio_dmabuf_importer.h` (see `build.rs`),
//!   [`bindings`], also re-exported here;
//! - the ioctl request numbers, computed here as `<asm-generic/ioctl.h>`
//!   does (which works when cross-compiling), and [`from_c`], the numbers
//!   the C compiler computes from the headers' macros when its program can
//!   run on the build machine;
//! - the names of the errnos they meet ([`errno_name`]);
//! - the parsing of a PCI function's sysfs `resource` file ([`sysfs`]);
//! - mappings of an imported buffer and device accesses through them that
//!   report a `SIGBUS` ([`mapping`]).

mod errno;
pub mod mapping;
pub mod sysfs;

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
/// headers' `_IOW()`/`_IOWR()` macros (`ioctls.c`), among them
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
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

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

/// `VFIO_DMABUF_INFO`: `_IOWR(VFIO_DMABUF_TYPE, 0x00, struct vfio_dmabuf_info)`.
pub const VFIO_DMABUF_INFO: u32 = ioc(
    IOC_READ | IOC_WRITE,
    VFIO_DMABUF_TYPE,
    0x00,
    size_of::<vfio_dmabuf_info>(),
);

/// `VFIO_DMABUF_EXPORT`: `_IOW(VFIO_DMABUF_TYPE, 0x01, struct vfio_dmabuf_export)`.
pub const VFIO_DMABUF_EXPORT: u32 = ioc(
    IOC_WRITE,
    VFIO_DMABUF_TYPE,
    0x01,
    size_of::<vfio_dmabuf_export>(),
);

/// `VFIO_DMABUF_REVOKE`: `_IOW(VFIO_DMABUF_TYPE, 0x02, struct vfio_dmabuf_revoke)`.
pub const VFIO_DMABUF_REVOKE: u32 = ioc(
    IOC_WRITE,
    VFIO_DMABUF_TYPE,
    0x02,
    size_of::<vfio_dmabuf_revoke>(),
);

/// `VFIO_DMABUF_RESTORE`: `_IOW(VFIO_DMABUF_TYPE, 0x03, struct vfio_dmabuf_revoke)`.
pub const VFIO_DMABUF_RESTORE: u32 = ioc(
    IOC_WRITE,
    VFIO_DMABUF_TYPE,
    0x03,
    size_of::<vfio_dmabuf_revoke>(),
);

/// `VFIO_DMABUF_IMP_IMPORT`: `_IOWR(0xDB, 0x10, struct vfio_dmabuf_imp_import)`.
/// The importer shares the exporter's magic.
pub const VFIO_DMABUF_IMP_IMPORT: u32 = ioc(
    IOC_READ | IOC_WRITE,
    VFIO_DMABUF_TYPE,
    0x10,
    size_of::<vfio_dmabuf_imp_import>(),
);

/// `VFIO_DMABUF_IMP_WALK`: `_IOWR(0xDB, 0x11, struct vfio_dmabuf_imp_walk)`.
pub const VFIO_DMABUF_IMP_WALK: u32 = ioc(
    IOC_READ | IOC_WRITE,
    VFIO_DMABUF_TYPE,
    0x11,
    size_of::<vfio_dmabuf_imp_walk>(),
);

/// `VFIO_DMABUF_IMP_COUNTERS`:
/// `_IOWR(0xDB, 0x13, struct vfio_dmabuf_imp_counters)`.
pub const VFIO_DMABUF_IMP_COUNTERS: u32 = ioc(
    IOC_READ | IOC_WRITE,
    VFIO_DMABUF_TYPE,
    0x13,
    size_of::<vfio_dmabuf_imp_counters>(),
);

/// `VFIO_DMABUF_IMP_BENCH`: `_IOWR(0xDB, 0x14, struct vfio_dmabuf_imp_bench)`.
pub const VFIO_DMABUF_IMP_BENCH: u32 = ioc(
    IOC_READ | IOC_WRITE,
    VFIO_DMABUF_TYPE,
    0x14,
    size_of::<vfio_dmabuf_imp_bench>(),
);

/// `VFIO_DMABUF_PEER_ATTACH`: `_IOWR(0xDB, 0x20, struct vfio_dmabuf_peer_attach)`,
/// of the benchmarks' scatterlist importer (tests/peer).
pub const VFIO_DMABUF_PEER_ATTACH: u32 = ioc(
    IOC_READ | IOC_WRITE,
    VFIO_DMABUF_TYPE,
    0x20,
    size_of::<vfio_dmabuf_peer_attach>(),
);

/// `VFIO_DMABUF_PEER_REMAP`: `_IO(0xDB, 0x21)`.
pub const VFIO_DMABUF_PEER_REMAP: u32 = ioc(0, VFIO_DMABUF_TYPE, 0x21, 0);

/// `VFIO_DMABUF_PEER_WALK`: `_IOWR(0xDB, 0x22, struct vfio_dmabuf_peer_walk)`.
pub const VFIO_DMABUF_PEER_WALK: u32 = ioc(
    IOC_READ | IOC_WRITE,
    VFIO_DMABUF_TYPE,
    0x22,
    size_of::<vfio_dmabuf_peer_walk>(),
);

/// `VFIO_DMABUF_PEER_BENCH`: `_IOWR(0xDB, 0x23, struct vfio_dmabuf_peer_bench)`.
pub const VFIO_DMABUF_PEER_BENCH: u32 = ioc(
    IOC_READ | IOC_WRITE,
    VFIO_DMABUF_TYPE,
    0x23,
    size_of::<vfio_dmabuf_peer_bench>(),
);

/// `VFIO_DMABUF_PEER_SPAN`: `_IOR(0xDB, 0x24, struct vfio_dmabuf_peer_span)`.
pub const VFIO_DMABUF_PEER_SPAN: u32 = ioc(
    IOC_READ,
    VFIO_DMABUF_TYPE,
    0x24,
    size_of::<vfio_dmabuf_peer_span>(),
);

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
    }

    /// The numbers derived by hand from the layout, as a check on both.
    #[test]
    fn ioctl_numbers() {
        assert_eq!(VFIO_DMABUF_INFO, 0xc070_db00);
        assert_eq!(VFIO_DMABUF_EXPORT, 0x4018_db01);
        assert_eq!(VFIO_DMABUF_REVOKE, 0x4010_db02);
        assert_eq!(VFIO_DMABUF_RESTORE, 0x4010_db03);
        assert_eq!(VFIO_DMABUF_IMP_IMPORT, 0xc018_db10);
        assert_eq!(VFIO_DMABUF_IMP_WALK, 0xc028_db11);
        assert_eq!(VFIO_DMABUF_IMP_COUNTERS, 0xc040_db13);
        assert_eq!(VFIO_DMABUF_IMP_BENCH, 0xc028_db14);
        assert_eq!(VFIO_DMABUF_PEER_ATTACH, 0xc020_db20);
        assert_eq!(VFIO_DMABUF_PEER_REMAP, 0x0000_db21);
        assert_eq!(VFIO_DMABUF_PEER_WALK, 0xc028_db22);
        assert_eq!(VFIO_DMABUF_PEER_BENCH, 0xc020_db23);
        assert_eq!(VFIO_DMABUF_PEER_SPAN, 0x8010_db24);
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
        assert_eq!(size_of::<vfio_dmabuf_imp_segment>(), 24);
        assert_eq!(size_of::<vfio_dmabuf_imp_walk>(), 40);
        assert_eq!(offset_of!(vfio_dmabuf_imp_walk, segments), 16);
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
        assert_eq!(size_of::<vfio_dmabuf_imp_segment>(), 24);
        assert_eq!(size_of::<vfio_dmabuf_imp_walk>(), 40);
        assert_eq!(size_of::<vfio_dmabuf_imp_pfn>(), 32);
        assert_eq!(size_of::<vfio_dmabuf_imp_counters>(), 64);
        assert_eq!(size_of::<vfio_dmabuf_imp_bench>(), 40);
    }

    /// The numbers as the headers define them, decoded: the C compiler's
    /// answer is the one tests/guest uses, this only catches a build that
    /// went wrong.
    #[test]
    #[cfg(ioctls_from_c)]
    fn ioctl_numbers_from_c_decoded() {
        use crate::from_c::*;

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
}
