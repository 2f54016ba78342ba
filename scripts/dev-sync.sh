#!/usr/bin/env bash
# For developers: copy a kernel git tree's changes since BASE into the cached
# patched tree, so that a build there picks them up without re-applying the
# series (scripts/build-kernel.sh re-applies the exported series later).
#   scripts/dev-sync.sh KERNEL_GIT_TREE BASE
set -euo pipefail
. "$(dirname "$0")/lib.sh"
tree=${1:?usage: dev-sync.sh KERNEL_GIT_TREE BASE}
base=${2:?}
version=$(cat "$CACHE/src/version")
src=$CACHE/linux-$(tr -c 'A-Za-z0-9.\n-' _ <<<"$version")
git -C "$tree" diff --name-only "$base" | while read -r f; do
	if [ -f "$tree/$f" ]; then
		cmp -s "$tree/$f" "$src/$f" || { mkdir -p "$(dirname "$src/$f")"; cp "$tree/$f" "$src/$f"; echo "synced $f"; }
	fi
done
