// SPDX-License-Identifier: GPL-2.0

//! The exporter's and the test importer's uAPI: the structures and constants
//! bindgen generates from `include/uapi/linux/vfio_dmabuf.h` and
//! `include/uapi/linux/vfio_dmabuf_importer.h`, and the ioctl request
//! numbers, computed as `<asm-generic/ioctl.h>` does; all of them from the
//! `vfio-dmabuf-uapi` crate (`tools/uapi`), which checks the numbers against
//! the C compiler's.

pub use vfio_dmabuf_uapi::*;
