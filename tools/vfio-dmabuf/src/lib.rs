// SPDX-License-Identifier: GPL-2.0

//! What the user's tool, `vfio-dmabuf`, and the benchmark driver,
//! `vfio-dmabuf-bench`, share: the exporter's character devices, exports,
//! the test importer, errors, output, sizes and ranges, sysfs, and the uAPI
//! bindings.

pub mod cli;
pub mod device;
pub mod error;
pub mod export;
pub mod importer;
pub mod output;
pub mod size;
pub mod sysfs;
pub mod uapi;
