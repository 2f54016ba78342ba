// SPDX-License-Identifier: GPL-2.0

//! Generates the bindings of the exporter's uAPI
//! (`include/uapi/linux/vfio_dmabuf.h`) and the test importer's
//! (`include/uapi/linux/vfio_dmabuf_importer.h`), so the structures are
//! written once, in the headers: bindgen for the structures and constants,
//! and a small C program (`ioctls.c`) for the ioctl request numbers, whose
//! `_IOW()`/`_IOWR()` macros bindgen cannot evaluate. The work is
//! `tools/uapi_build.rs`, shared with `tests/guest`.
//!
//! bindgen loads libclang at run time from `LIBCLANG_PATH`; when that is
//! unset, Debian's LLVM 19 (`/usr/lib/llvm-19/lib`, which `make setup`
//! installs) is used if present. The C compiler is `$CC`, else `cc`.

use std::env;
use std::path::PathBuf;

include!("../uapi_build.rs");

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let uapi_dir = uapi_dir(&manifest_dir);
    let exporter = uapi_dir.join("linux/vfio_dmabuf.h");
    let importer = uapi_dir.join("linux/vfio_dmabuf_importer.h");
    let ioctls_c = manifest_dir.join("ioctls.c");

    rerun_if_changed(&manifest_dir, &[&exporter, &importer, &ioctls_c]);
    println!("cargo::rustc-check-cfg=cfg(ioctls_from_c)");

    bindings(&[&exporter, &importer], &uapi_dir, &out_dir.join("uapi.rs"));
    // The tool computes the numbers itself (src/uapi.rs); its tests compare
    // them with the C compiler's when the program can run here, i.e. when
    // not cross-compiling (`cfg(ioctls_from_c)` unset otherwise).
    if ioctls_from_c(&ioctls_c, &uapi_dir, &out_dir).is_some() {
        println!("cargo::rustc-cfg=ioctls_from_c");
    } else {
        println!("cargo::warning=cross-compiling: ioctl numbers not checked against C");
    }
}
