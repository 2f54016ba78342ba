#!/usr/bin/env bash
# Check that every prefix of patches/series builds: apply patches 1..k to the
# working tree and build what the series touches (drivers/dma-buf/ and the
# Rust kernel crate) in the test kernel's output tree.  Afterwards the tree
# holds the whole series again (its key is reset, so the next kernel build
# re-applies it and rebuilds only what differs).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
unset MAKEFLAGS MFLAGS MAKELEVEL CLIPPY

version=$(cat "$CACHE/src/version")
srcname=linux-$(tr -c 'A-Za-z0-9.\n-' _ <<<"$version")
pristine=$CACHE/$srcname-pristine
src=$CACHE/$srcname
out=$(kbuild_dir test)
[ -f "$src/.patched-files" ] && [ -f "$out/.config" ] || die "build the test kernel first"

series=()
while read -r p; do
	p=${p%%#*}
	[ -n "${p// /}" ] && series+=("$REPO/patches/$p")
done <"$REPO/patches/series"

revert() {
	while read -r f; do
		if [ -f "$pristine/$f" ]; then cp "$pristine/$f" "$src/$f"; else rm -f "$src/$f"; fi
	done <"$src/.patched-files"
}

status=0
for k in $(seq 1 ${#series[@]}); do
	revert
	rm -f "$src/.patches-key"
	for p in "${series[@]:0:k}"; do
		patch -d "$src" -p1 --batch --forward --no-backup-if-mismatch -s <"$p"
	done
	# Keep the record covering everything the whole series may touch.
	name=${series[k-1]##*/}
	if make -C "$src" O="$out" "${KMAKE_ARGS[@]}" -j"$JOBS" olddefconfig drivers/dma-buf/ rust/kernel.o \
		>"$out/.series-$k.log" 2>&1; then
		echo "builds: ok   1..$k ($name)"
	else
		echo "builds: FAIL 1..$k ($name): see $out/.series-$k.log"
		grep -E '^error|error:' "$out/.series-$k.log" | head -5 | sed 's/^/    /'
		status=1
	fi
done
exit $status
