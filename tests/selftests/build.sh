#!/usr/bin/env bash
# The kernel's own dma-buf selftests, built statically on the host for the
# guest (tests/vm/guest/suite.sh runs them through selftest.sh):
#
#   tools/testing/selftests/drivers/dma-buf/udmabuf.c  -> build/selftests/udmabuf
#   tools/testing/selftests/dmabuf-heaps/dmabuf-heap.c -> build/selftests/dmabuf-heap
#
# from the tree the kernel of FLAVOR (default test) was built from, against
# that tree's uAPI headers installed with `make headers_install` (in a build
# directory of their own, kept in the cache by the kernel's key) and with
# kselftest.h, with the flags the selftests' lib.mk gives them.
#
#   tests/selftests/build.sh [FLAVOR]
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

flavor=${1:-test}
kdir=$(kbuild_dir "$flavor")
[ -f "$kdir/.vfio-dmabuf-key" ] || die "no $flavor kernel build in $kdir: run 'make kernel' first"
ksrc=$(readlink -f "$kdir/source")
[ -f "$ksrc/Makefile" ] || die "no kernel source behind $kdir/source"
key=$(cat "$kdir/.vfio-dmabuf-key")

hdr=$CACHE/uapi-headers-$flavor
if [ "$(cat "$hdr/.key" 2>/dev/null)" != "$key" ]; then
	note "installing the $flavor tree's uAPI headers into $hdr"
	rm -rf "$hdr"
	mkdir -p "$hdr/build"
	make -s -C "$ksrc" O="$hdr/build" ARCH=x86_64 headers_install INSTALL_HDR_PATH="$hdr/usr" \
		>"$hdr/headers_install.log" 2>&1 || {
		cat "$hdr/headers_install.log" >&2
		die "make headers_install failed"
	}
	rm -rf "$hdr/build"
	echo "$key" >"$hdr/.key"
fi

selftests=$ksrc/tools/testing/selftests
bin=$REPO/build/selftests
mkdir -p "$bin"
# lib.mk: -D_GNU_SOURCE= and -I selftests; KHDR_INCLUDES: the installed
# headers, as system headers ahead of the host's.
cflags=(-static -O2 -Wall -D_GNU_SOURCE= -isystem "$hdr/usr/include" -I "$selftests")
build() {
	local name=$1 src=$2
	rm -f "$bin/$name"
	${CC:-gcc} "${cflags[@]}" -o "$bin/$name" "$selftests/$src" ||
		die "$src did not build"
	file -L "$bin/$name" | grep -q 'statically linked' || die "$bin/$name is not statically linked"
}
build udmabuf drivers/dma-buf/udmabuf.c
build dmabuf-heap dmabuf-heaps/dmabuf-heap.c
note "selftests built: $bin/udmabuf $bin/dmabuf-heap ($flavor tree, $key)"
