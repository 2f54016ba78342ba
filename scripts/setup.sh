#!/usr/bin/env bash
# Install everything the build and the tests need, idempotently: Debian
# packages, bindgen-cli (cargo install), virtme-ng (pip, in a venv) and the
# kernel source.  A second run checks and does nothing.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

packages=(
	# kernel build, with Debian's Rust for the kernel (rustc-web 1.96)
	clang-19 lld-19 llvm-19 libclang-19-dev rustc-web rust-web-src rust-web-clippy
	flex bison bc libelf-dev libssl-dev cpio xz-utils patch make rsync perl
	# the VM and what virtme-ng-init uses in the guest (not udev: the guest needs
	# none, and tests/vm/run.sh hides a host's udevd from it)
	qemu-system-x86 kmod python3-venv busybox-static gnuplot-nox
	# the uAPI header's 32-bit layout check (tests/uapi/check.sh -m32)
	gcc-multilib
)

sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || die "not root and no sudo: cannot install ${packages[*]}"
	sudo_cmd=(sudo)
fi

missing=()
for p in "${packages[@]}"; do
	case $p in \#*) continue ;; esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	note "installing Debian packages: ${missing[*]}"
	"${sudo_cmd[@]}" apt-get update -q >/dev/null ||
		die "apt-get update failed (no network?): cannot install ${missing[*]}"
	"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
		--no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install failed for: ${missing[*]}"
fi
[ -x /usr/bin/rustc ] || die "rustc-web did not install /usr/bin/rustc"
[ -d /usr/lib/rustlib/src/rust/library ] || die "rust-web-src did not install the Rust library sources"

command -v cargo >/dev/null || die "cargo (rustup) is missing: needed for bindgen-cli and the host crates"
if [ "$("$TOOLS/bin/bindgen" --version 2>/dev/null)" != "bindgen $BINDGEN_VERSION" ]; then
	note "installing bindgen-cli $BINDGEN_VERSION"
	LIBCLANG_PATH=/usr/lib/llvm-19/lib cargo install -q --locked --force \
		--root "$TOOLS" bindgen-cli --version "$BINDGEN_VERSION" ||
		die "cargo install bindgen-cli $BINDGEN_VERSION failed (no network?)"
fi

if [ "$("$VENV/bin/vng" --version 2>/dev/null | awk '{print $NF}')" != "$VIRTME_NG_VERSION" ]; then
	note "installing virtme-ng $VIRTME_NG_VERSION in $VENV"
	python3 -m venv "$VENV" || die "python3 -m venv failed (python3-venv missing?)"
	"$VENV/bin/pip" install -q "virtme-ng==$VIRTME_NG_VERSION" ||
		die "pip install virtme-ng==$VIRTME_NG_VERSION failed (no network?)"
fi

KERNEL_DEB_VERSION=$KERNEL_DEB_VERSION "$REPO/scripts/fetch-kernel.sh" "$CACHE" >/dev/null
note "setup complete (cache: $CACHE)"
