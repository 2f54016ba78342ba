#!/usr/bin/env bash
# The user-space programs the guest runs, the vfio-dmabuf tool and
# guest-tests, built statically linked (glibc, static-pie) so that they run
# on any root file system, and copied to build/bin/.
#
# crt-static applies to the target only when --target is explicit; without
# it, cargo would also link the proc-macro crates (clap, serde) statically,
# which cannot work.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

host=$(rustc -vV | sed -n 's/^host: //p')
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
	cargo build --release -q --manifest-path "$REPO/Cargo.toml" --target "$host" \
	-p vfio-dmabuf -p vfio-dmabuf-guest-tests
mkdir -p "$REPO/build/bin"
for program in vfio-dmabuf vfio-dmabuf-bench guest-tests; do
	cp -f "$REPO/target/$host/release/$program" "$REPO/build/bin/$program"
done
