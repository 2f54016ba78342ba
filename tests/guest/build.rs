// SPDX-License-Identifier: GPL-2.0

//! Generates the bindings of both uAPIs the guest tests speak, the
//! exporter's (`include/uapi/linux/vfio_dmabuf.h`) and the test importer's
//! (`include/uapi/linux/vfio_dmabuf_importer.h`), with the shared code of
//! `tools/uapi_build.rs`: bindgen for the structures and constants, and
//! `ioctls.c` for the ioctl request numbers.
//!
//! The numbers come only from the C compiler, so the program that prints
//! them must run here: the tests are built for the machine that builds them
//! (the guest runs the host's kernel architecture and user space).

use std::env;
use std::path::PathBuf;

include!("../../tools/uapi_build.rs");

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let uapi_dir = uapi_dir(&manifest_dir);
    let exporter = uapi_dir.join("linux/vfio_dmabuf.h");
    let importer = uapi_dir.join("linux/vfio_dmabuf_importer.h");
    let ioctls_c = manifest_dir.join("ioctls.c");

    rerun_if_changed(&manifest_dir, &[&exporter, &importer, &ioctls_c]);
    bindings(&[&exporter, &importer], &uapi_dir, &out_dir.join("uapi.rs"));
    if ioctls_from_c(&ioctls_c, &uapi_dir, &out_dir).is_none() {
        panic!(
            "cross-compiling: the ioctl numbers come from running {}, which needs the host's target",
            ioctls_c.display()
        );
    }
}
