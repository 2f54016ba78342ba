// SPDX-License-Identifier: GPL-2.0

//! Generates the bindings of the exporter's uAPI
//! (`include/uapi/linux/vfio_dmabuf.h`) and the test importer's
//! (`tests/importer/vfio_dmabuf_importer.h`), so the structures are
//! written once, in the headers: bindgen generates the structures and
//! constants; a small C program (`ioctls.c`), compiled against the same
//! headers, prints the ioctl request numbers, whose `_IO()` macros bindgen
//! cannot evaluate.
//!
//! bindgen loads libclang at run time from `LIBCLANG_PATH`; when that is
//! unset, Debian's LLVM 19 (`/usr/lib/llvm-19/lib`, which `make setup`
//! installs) is used if present. The C compiler is `$CC`, else `cc`.

use std::env;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let uapi_dir = uapi_dir(&manifest_dir);
    let exporter = uapi_dir.join("linux/vfio_dmabuf.h");
    let importer_dir = manifest_dir.join("../../tests/importer");
    let importer = importer_dir.join("vfio_dmabuf_importer.h");
    let ioctls_c = manifest_dir.join("ioctls.c");

    rerun_if_changed(&[&exporter, &importer, &ioctls_c]);
    println!("cargo::rustc-check-cfg=cfg(ioctls_from_c)");

    bindings(&[&exporter, &importer], &uapi_dir, &out_dir.join("uapi.rs"));
    // The crate computes the tool's numbers itself (src/lib.rs); the C
    // compiler's (`from_c`), which tests/guest uses and the tests compare
    // with those, exist only when the program can run here, i.e. when not
    // cross-compiling (`cfg(ioctls_from_c)` unset otherwise).
    if ioctls_from_c(&ioctls_c, &[&uapi_dir, &importer_dir], &out_dir).is_some() {
        println!("cargo::rustc-cfg=ioctls_from_c");
    } else {
        println!(
            "cargo::warning=cross-compiling: ioctl numbers not checked against C, no `from_c`"
        );
    }
}

/// Where libclang is looked for when `LIBCLANG_PATH` is unset.
const DEFAULT_LIBCLANG_PATH: &str = "/usr/lib/llvm-19/lib";

/// The repository's `include/uapi`, seen from this crate (`tools/uapi`).
fn uapi_dir(manifest_dir: &std::path::Path) -> std::path::PathBuf {
    manifest_dir.join("../../include/uapi")
}

/// Tells cargo to run the build script again when any of `paths`, this
/// file, or the environment that finds the compilers changes.
fn rerun_if_changed(paths: &[&std::path::Path]) {
    for path in paths {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=LIBCLANG_PATH");
    println!("cargo::rerun-if-env-changed=CC");
}

/// Runs bindgen over `headers` into one file, keeping only the
/// `vfio_dmabuf` names (the importer's `vfio_dmabuf_imp_*` among them).
fn bindings(headers: &[&std::path::Path], uapi_dir: &std::path::Path, out: &std::path::Path) {
    if std::env::var_os("LIBCLANG_PATH").is_none()
        && std::path::Path::new(DEFAULT_LIBCLANG_PATH).is_dir()
    {
        // Only this build script's process sees it, before any thread starts.
        std::env::set_var("LIBCLANG_PATH", DEFAULT_LIBCLANG_PATH);
    }
    let mut builder = bindgen::Builder::default();
    for header in headers {
        builder = builder.header(header.to_string_lossy());
    }
    // VFIO's own structures, from the installed headers: the exporter also
    // answers VFIO_DEVICE_GET_INFO and VFIO_DEVICE_GET_REGION_INFO.
    builder = builder.header_contents("vfio-requests.h", "#include <linux/vfio.h>\n");
    let bindings = builder
        .clang_arg(format!("-I{}", uapi_dir.display()))
        .allowlist_type("vfio_dmabuf_.*")
        .allowlist_var("VFIO_DMABUF_.*")
        .allowlist_type("vfio_(device|region)_info")
        .allowlist_var("VFIO_(TYPE|BASE|DEVICE_FLAGS_PCI|PCI_.*_REGION_INDEX)")
        .layout_tests(true)
        .derive_default(true)
        .derive_debug(true)
        .generate_comments(false)
        .generate()
        .unwrap_or_else(|e| {
            panic!(
                "bindgen failed on {headers:?} ({e}); is libclang installed (LIBCLANG_PATH={})?",
                std::env::var("LIBCLANG_PATH").unwrap_or_default()
            )
        });
    bindings
        .write_to_file(out)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

/// Compiles and runs `source`, a C program that prints the ioctl numbers as
/// Rust constants, into `$OUT_DIR/ioctls_from_c.rs`, and returns that path.
/// `None` when cross-compiling: the program cannot run here.
fn ioctls_from_c(
    source: &std::path::Path,
    include_dirs: &[&std::path::Path],
    out_dir: &std::path::Path,
) -> Option<std::path::PathBuf> {
    if std::env::var("HOST").ok() != std::env::var("TARGET").ok() {
        return None;
    }
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let exe = out_dir.join("ioctls");
    let status = std::process::Command::new(&cc)
        .args(
            include_dirs
                .iter()
                .map(|dir| format!("-I{}", dir.display())),
        )
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
    let output = std::process::Command::new(&exe)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
    assert!(output.status.success(), "{} failed", exe.display());
    let rs = out_dir.join("ioctls_from_c.rs");
    std::fs::write(&rs, &output.stdout)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", rs.display()));
    Some(rs)
}
