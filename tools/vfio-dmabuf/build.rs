// SPDX-License-Identifier: GPL-2.0

//! Generates the uAPI bindings from `include/uapi/linux/vfio_dmabuf.h`, so
//! the structures are written once, in the header: bindgen for the
//! structures and constants, and a small C program (`ioctls.c`) for the
//! ioctl request numbers, whose `_IOW()`/`_IOWR()` macros bindgen cannot
//! evaluate.
//!
//! bindgen loads libclang at run time from `LIBCLANG_PATH`; when that is
//! unset, Debian's LLVM 19 (`/usr/lib/llvm-19/lib`, which `make setup`
//! installs) is used if present. The C compiler is `$CC`, else `cc`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_LIBCLANG_PATH: &str = "/usr/lib/llvm-19/lib";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let uapi_dir = manifest_dir.join("../../include/uapi");
    let header = uapi_dir.join("linux/vfio_dmabuf.h");
    let ioctls_c = manifest_dir.join("ioctls.c");

    println!("cargo::rerun-if-changed={}", header.display());
    println!("cargo::rerun-if-changed={}", ioctls_c.display());
    println!("cargo::rerun-if-env-changed=LIBCLANG_PATH");
    println!("cargo::rerun-if-env-changed=CC");
    println!("cargo::rustc-check-cfg=cfg(ioctls_from_c)");

    bindings(&header, &uapi_dir, &out_dir.join("uapi.rs"));
    ioctls(&ioctls_c, &uapi_dir, &out_dir);
}

/// Runs bindgen over the header, keeping only the `vfio_dmabuf` names.
fn bindings(header: &Path, uapi_dir: &Path, out: &Path) {
    if env::var_os("LIBCLANG_PATH").is_none() && Path::new(DEFAULT_LIBCLANG_PATH).is_dir() {
        // Only this build script's process sees it, before any thread starts.
        env::set_var("LIBCLANG_PATH", DEFAULT_LIBCLANG_PATH);
    }
    let bindings = bindgen::Builder::default()
        .header(header.to_string_lossy())
        .clang_arg(format!("-I{}", uapi_dir.display()))
        .allowlist_type("vfio_dmabuf_.*")
        .allowlist_var("VFIO_DMABUF_.*")
        .layout_tests(true)
        .derive_default(true)
        .derive_debug(true)
        .generate_comments(false)
        .generate()
        .unwrap_or_else(|e| {
            panic!(
                "bindgen failed on {} ({e}); is libclang installed (LIBCLANG_PATH={})?",
                header.display(),
                env::var("LIBCLANG_PATH").unwrap_or_default()
            )
        });
    bindings
        .write_to_file(out)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

/// Compiles and runs `ioctls.c`, which prints the ioctl numbers as Rust
/// constants, into `$OUT_DIR/ioctls_from_c.rs`. Only when the program can
/// run here, i.e. when not cross-compiling; the tests that compare with it
/// are then left out (`cfg(ioctls_from_c)` unset).
fn ioctls(source: &Path, uapi_dir: &Path, out_dir: &Path) {
    if env::var("HOST").ok() != env::var("TARGET").ok() {
        println!("cargo::warning=cross-compiling: ioctl numbers not checked against C");
        return;
    }
    let cc = env::var_os("CC").unwrap_or_else(|| "cc".into());
    let exe = out_dir.join("ioctls");
    let status = Command::new(&cc)
        .arg(format!("-I{}", uapi_dir.display()))
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&exe)
        .arg(source)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cc.to_string_lossy()));
    assert!(
        status.success(),
        "{} failed on {}",
        cc.to_string_lossy(),
        source.display()
    );
    let output = Command::new(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    assert!(output.status.success(), "{} failed", exe.display());
    let rs = out_dir.join("ioctls_from_c.rs");
    std::fs::write(&rs, &output.stdout)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", rs.display()));
    println!("cargo::rustc-cfg=ioctls_from_c");
}
