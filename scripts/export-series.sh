#!/usr/bin/env bash
# Write a kernel git branch's commits on top of BASE into patches/, as the
# series make kernel applies: git format-patch files with zero commit ids,
# and the series file listing them in order.  The cover letter,
# patches/0000-cover-letter.patch, is written by hand and kept.  For
# developers; the build never runs it.
#
#   scripts/export-series.sh KERNEL_GIT_TREE BASE
set -euo pipefail
. "$(dirname "$0")/lib.sh"
tree=${1:?usage: export-series.sh KERNEL_GIT_TREE BASE}
base=${2:?usage: export-series.sh KERNEL_GIT_TREE BASE}
out=$REPO/patches
find "$out" -maxdepth 1 -name '[0-9][0-9][0-9][0-9]-*.patch' ! -name '0000-*' -delete
git -C "$tree" format-patch -q --zero-commit --no-signature -o "$out" "$base..HEAD"
(cd "$out" && ls [0-9][0-9][0-9][0-9]-*.patch | grep -v '^0000-') >"$out/series"
echo "exported $(wc -l <"$out/series") patches to $out" >&2
