#!/usr/bin/env bash
# `make check-patches`: scripts/checkpatch.pl --strict on every patch of the
# series and on the project's C sources, and kernel-doc -Wall on every C file and header the series (or the
# project) adds or changes, in the patched tree.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

version=$(cat "$CACHE/src/version" 2>/dev/null) || die "no kernel source: run 'make setup'"
srcname=linux-$(tr -c 'A-Za-z0-9.\n-' _ <<<"$version")
pristine=$CACHE/$srcname-pristine
src=$CACHE/$srcname
[ -f "$src/.patches-key" ] || die "no patched tree in $src: run 'make kernel' first"

status=0
while read -r p; do
	p=${p%%#*}
	[ -n "${p// /}" ] || continue
	if out=$(cd "$pristine" && perl scripts/checkpatch.pl --strict --no-signoff --quiet \
		--ignore FILE_PATH_CHANGES "$REPO/patches/$p" 2>&1); then
		echo "checkpatch: ok   $p"
	else
		echo "checkpatch: FAIL $p"
		echo "$out" | sed 's/^/    /'
		status=1
	fi
done <"$REPO/patches/series"

# The C and header files the series touches, plus the project's uAPI.
mapfile -t files < <(cd "$REPO/patches" && grep -h '^+++ b/' $(grep -v '^#' series) |
	sed 's|^+++ b/||' | grep -E '\.(c|h)$' | sort -u)
# Judged against the pristine file: warnings upstream already has are not
# the series' (compared without line numbers, which the series shifts).
kdoc_warnings() {
	[ -f "$1" ] || return 0
	"$src/scripts/kernel-doc" -none -Wall "$1" 2>&1 |
		sed -e "s|$2/||" -e 's/:[0-9]\+ / /' | sort -u
}
for f in "${files[@]}"; do
	new=$(comm -13 <(kdoc_warnings "$pristine/$f" "$pristine") <(kdoc_warnings "$src/$f" "$src"))
	if [ -z "$new" ]; then
		echo "kernel-doc: ok   $f"
	else
		echo "kernel-doc: FAIL $f"
		echo "$new" | sed 's/^/    /'
		status=1
	fi
done
# The project's own C sources (the benchmarks' scatterlist importer).
for f in "$REPO"/tests/peer/*.c; do
	case $f in *.mod.c) continue ;; esac
	[ -f "$f" ] || continue
	if out=$(cd "$pristine" && perl scripts/checkpatch.pl --strict --no-tree --quiet -f "$f" 2>&1); then
		echo "checkpatch: ok   ${f#"$REPO"/}"
	else
		echo "checkpatch: FAIL ${f#"$REPO"/}"
		echo "$out" | sed 's/^/    /'
		status=1
	fi
done
for f in "$REPO"/include/uapi/linux/*.h "$REPO"/tests/importer/*.h; do
	[ -f "$f" ] || continue
	if out=$("$src/scripts/kernel-doc" -none -Wall "$f" 2>&1) && [ -z "$out" ]; then
		echo "kernel-doc: ok   ${f#"$REPO"/}"
	else
		echo "kernel-doc: FAIL ${f#"$REPO"/}"
		echo "$out" | sed 's/^/    /'
		status=1
	fi
done
# The uAPI header the series puts in the tree is the repository's, byte for
# byte: one description of the interface.
for f in "$REPO"/include/uapi/linux/*.h; do
	rel=${f#"$REPO"/}
	if cmp -s "$f" "$src/$rel"; then
		echo "series:     ok   $rel is the tree's"
	else
		echo "series:     FAIL $rel differs from the one the series adds"
		status=1
	fi
done
exit $status
