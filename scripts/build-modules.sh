#!/usr/bin/env bash
# Build the project's out-of-tree modules (Kbuild at the top of the
# repository) against the cached kernel of a flavor.  Incremental: only
# what changed is rebuilt.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Our make invocations take their variables from here, not from a calling make.
unset MAKEFLAGS MFLAGS MAKELEVEL

flavor=${1:-test}
kdir=$(kbuild_dir "$flavor")
[ -f "$kdir/.vfio-dmabuf-key" ] || die "no $flavor kernel in $kdir: build it first"
# Kbuild lists no module until the drivers land.
if ! grep -q '^obj-' "$REPO/Kbuild" 2>/dev/null; then
	exit 0
fi
# `make CLIPPY=1` lints the Rust modules with the toolchain's clippy.
make -s -C "$kdir" M="$REPO" "${KMAKE_ARGS[@]}" ${CLIPPY:+CLIPPY=$CLIPPY} -j"$JOBS" modules
