#!/usr/bin/env bash
# Write patches/0000-cover-letter.patch, what git format-patch
# --cover-letter makes, with the subject and blurb of
# patches/cover-letter.txt and the series' own shortlog and diffstat.
# For developers, after scripts/export-series.sh.
#   scripts/cover-letter.sh KERNEL_GIT_TREE BASE
set -euo pipefail
. "$(dirname "$0")/lib.sh"
tree=${1:?usage: cover-letter.sh KERNEL_GIT_TREE BASE}
base=${2:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git -C "$tree" format-patch -q --cover-letter --zero-commit --no-signature -o "$tmp" "$base..HEAD"
text=$REPO/patches/cover-letter.txt
subject=$(sed -n '1s/^Subject: //p' "$text")
python3 - "$tmp/0000-cover-letter.patch" "$text" "$subject" >"$REPO/patches/0000-cover-letter.patch" <<'PY'
import sys
letter, text, subject = open(sys.argv[1]).read(), open(sys.argv[2]).read(), sys.argv[3]
blurb = text.split("\n", 2)[2].rstrip("\n")
letter = letter.replace("*** SUBJECT HERE ***", subject).replace("*** BLURB HERE ***", blurb)
sys.stdout.write(letter)
PY
echo "wrote patches/0000-cover-letter.patch" >&2
