#!/usr/bin/env bash
# Compile include/uapi/linux/vfio_dmabuf.h on its own, as user space and
# kbuild's header test do, and check its layout (layout.c): as C90, C11 and
# C++, 64- and 32-bit, against the host's installed kernel headers (old
# enough to lack __counted_by) and, when the kernel source is there, against
# the 7.3 tree's uapi headers after headers_install.sh, with headers_check.pl
# and kernel-doc -Wall.
#
# Usage: tests/uapi/check.sh [--require-tree]   (KSRC=<kernel tree> to choose the tree)
#
# Without a kernel tree the tree's checks are one skip, with its reason;
# with --require-tree (make test, which has just built the kernel from that
# tree) a missing tree is a failure.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

hdr=$REPO/include/uapi/linux/vfio_dmabuf.h
layout=$REPO/tests/uapi/layout.c
require_tree=0
case ${1:-} in
--require-tree) require_tree=1 ;;
"") ;;
*) echo "usage: check.sh [--require-tree]" >&2; exit 2 ;;
esac
CC=${CC:-gcc}
CXX=${CXX:-g++}

if [ -z "${KSRC:-}" ] && version=$(cat "$CACHE/src/version" 2>/dev/null); then
	KSRC=$CACHE/linux-$(tr -c 'A-Za-z0-9.\n-' _ <<<"$version")-pristine
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
skipped=0

# check NAME COMMAND...: run COMMAND, which must succeed and print nothing.
check() {
	local name=$1 out
	shift
	if out=$("$@" 2>&1) && [ -z "$out" ]; then
		echo "ok   $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name"
		[ -n "$out" ] && echo "$out" | sed 's/^/     /'
		failed=$((failed + 1))
	fi
}

skip() {
	echo "skip $1"
	skipped=$((skipped + 1))
}

# -Wpadded turns any implicit padding in the uAPI structures into an error.
warn=(-Wall -Wextra -Werror -Wpadded)
run_set() {
	local set=$1
	shift
	local inc=("$@")
	check "$set: header alone, C90 (as kbuild's header test)" \
		"$CC" -std=c90 "${warn[@]}" "${inc[@]}" -fsyntax-only -x c "$hdr"
	check "$set: layout, C11 -pedantic" \
		"$CC" -std=c11 -pedantic "${warn[@]}" "${inc[@]}" -o "$tmp/layout-c11" "$layout"
	check "$set: layout, C90" \
		"$CC" -std=c90 "${warn[@]}" "${inc[@]}" -o "$tmp/layout-c90" "$layout"
	check "$set: layout, C++17" \
		"$CXX" -std=c++17 "${warn[@]}" "${inc[@]}" -x c++ -o "$tmp/layout-cxx17" "$layout"
	check "$set: layout, C++98 (as kbuild's header test)" \
		"$CXX" -std=c++98 "${warn[@]}" "${inc[@]}" -x c++ -fsyntax-only "$layout"
	if echo '#include <linux/types.h>' |
		"$CC" -m32 "${inc[@]}" -fsyntax-only -x c - >/dev/null 2>&1; then
		check "$set: layout, C11 -m32 (i386 layout is the same)" \
			"$CC" -m32 -std=c11 -pedantic "${warn[@]}" "${inc[@]}" -fsyntax-only "$layout"
	else
		skip "$set: layout, C11 -m32 (no 32-bit headers or compiler support)"
	fi
}

# The host's headers: the layout program also runs.
run_set "host headers" -I "$REPO/include/uapi"
check "host headers: layout program runs" "$tmp/layout-c11"

if [ -n "${KSRC:-}" ] && [ -f "$KSRC/scripts/headers_install.sh" ]; then
	# A miniature usr/include: our header through headers_install.sh, the
	# tree's uapi headers, and the asm-generic wrappers kbuild generates
	# for x86 (scripts/Makefile.asm-headers).
	ours=$tmp/ours
	usr=$tmp/usr/include
	mkdir -p "$ours/linux" "$usr/asm" "$tmp/scripts"
	check "kernel tree: build scripts/unifdef" \
		"$CC" -O2 -o "$tmp/scripts/unifdef" "$KSRC/scripts/unifdef.c"
	check "kernel tree: headers_install.sh" \
		sh -c 'cd "$1" && sh "$2/scripts/headers_install.sh" "$3" "$4"' sh \
		"$tmp" "$KSRC" "$hdr" "$ours/linux/vfio_dmabuf.h"
	sed -n 's/^mandatory-y += //p' "$KSRC/include/uapi/asm-generic/Kbuild" |
		while read -r h; do
			[ -e "$KSRC/arch/x86/include/uapi/asm/$h" ] ||
				echo "#include <asm-generic/$h>" >"$usr/asm/$h"
		done
	# The tree's headers ours reaches, 64- and 32-bit, installed as ours is.
	deps=$(for m in -m64 -m32; do
		"$CC" $m -M -D__EXPORTED_HEADERS__ -nostdinc -I "$usr" \
			-I "$KSRC/arch/x86/include/uapi" -I "$KSRC/include/uapi" -x c "$hdr"
	done | tr ' \\' '\n\n' |
		sed -n "s@^$KSRC/\(arch/x86/\)\{0,1\}include/uapi/@@p" | sort -u)
	check "kernel tree: headers_install.sh on $(wc -w <<<"$deps") headers it includes" \
		sh -c 'cd "$1" && for h in $4; do
			mkdir -p "$3/$(dirname "$h")" &&
			if [ -e "$2/arch/x86/include/uapi/$h" ]; then
				sh "$2/scripts/headers_install.sh" "$2/arch/x86/include/uapi/$h" "$3/$h"
			else
				sh "$2/scripts/headers_install.sh" "$2/include/uapi/$h" "$3/$h"
			fi || exit 1
		done' sh "$tmp" "$KSRC" "$usr" "$deps"
	check "kernel tree: headers_check.pl" \
		perl "$KSRC/usr/include/headers_check.pl" "$KSRC/include/uapi" \
		"$ours/linux/vfio_dmabuf.h"
	check "kernel tree: kernel-doc -none -Wall" \
		sh -c 'cd "$1" && scripts/kernel-doc -none -Wall "$2"' sh "$KSRC" "$hdr"
	# Ours as installed; the tree's are system headers, as once installed.
	hdr=$ours/linux/vfio_dmabuf.h
	run_set "7.3 uapi headers" -nostdinc -isystem "$($CC -print-file-name=include)" \
		-I "$ours" -isystem "$usr"
elif [ $require_tree = 1 ]; then
	echo "FAIL kernel tree checks: no kernel source at ${KSRC:-(none: $CACHE/src/version names no tree)}"
	failed=$((failed + 1))
else
	skip "kernel tree checks (no kernel source: run 'make setup', or set KSRC)"
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
