# Common settings for the project's scripts.  Sourced, not run.
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# CI may run with a bare environment: find home and rustup's cargo anyway.
HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
export HOME
case ":$PATH:" in *":$HOME/.cargo/bin:"*) ;; *) [ -d "$HOME/.cargo/bin" ] && PATH=$PATH:$HOME/.cargo/bin ;; esac
CACHE=${VFIO_DMABUF_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vfio-dmabuf}
KVER=7.3
# The package version tested; fetch-kernel.sh falls back to the newest 7.3.x.
KERNEL_DEB_VERSION=${KERNEL_DEB_VERSION:-7.3.4-1~bpo13+1}
BINDGEN_VERSION=0.73.2
VIRTME_NG_VERSION=1.42
TOOLS=$CACHE/tools
VENV=$CACHE/venv
JOBS=$(($(nproc) + 1))

# The kernel is built with Debian's rustc-web (its sysroot carries the
# library sources the kernel needs); rustup's toolchain stays for the host
# crates and tools.
KMAKE_ARGS=(LLVM=-19 RUSTC=/usr/bin/rustc "BINDGEN=$TOOLS/bin/bindgen"
	"HOSTRUSTC=/usr/bin/rustc" "CLIPPY_DRIVER=/usr/bin/clippy-driver")

die() {
	echo "${0##*/}: error: $*" >&2
	exit 1
}

note() {
	echo "==> $*" >&2
}

kbuild_dir() {
	echo "$CACHE/build-$1"
}
