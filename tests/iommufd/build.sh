#!/usr/bin/env bash
# The iommufd proof by DMA (tests/iommufd/edu_dma.c) and the map benchmarks
# (tests/iommufd/map_bench.c), built statically on
# the host for the guest (tests/vm/guest/iommufd.sh runs it):
#
#   tests/iommufd/edu_dma.c -> build/bin/edu-dma
#   tests/iommufd/map_bench.c -> build/bin/iommufd-bench
#
# against the uAPI headers of the tree the kernel of FLAVOR (default test)
# was built from (<linux/iommufd.h> is not in Debian 12's own headers),
# installed with `make headers_install` into the cache by the kernel's key,
# as tests/selftests/build.sh does (the same directory: whichever runs first
# installs them), and against the repository's <linux/vfio_dmabuf.h> and the
# test importer's interface header.  Keyed by the sources, the headers'
# key and the compiler: a warm run builds nothing.
#
#   tests/iommufd/build.sh [FLAVOR]
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
[ -f "$hdr/usr/include/linux/iommufd.h" ] || die "$hdr has no linux/iommufd.h"

cc=${CC:-gcc}
cflags=(-static -O2 -Wall -Wextra -Werror -isystem "$hdr/usr/include"
	-I "$REPO/include/uapi" -I "$REPO/tests/importer")
# build SOURCE PROGRAM
build() {
	local src=$REPO/tests/iommufd/$1 bin=$REPO/build/bin/$2 stamp
	stamp=$(
		{
			echo "$key"
			printf '%s\n' "${cflags[@]}"
			"$cc" --version | head -n 1
			cat "$src" "$REPO/include/uapi/linux/vfio_dmabuf.h" \
				"$REPO/tests/importer/vfio_dmabuf_importer.h" "$REPO/tests/iommufd/build.sh"
		} | sha256sum | cut -d' ' -f1
	)
	if [ -x "$bin" ] && [ "$(cat "$bin.key" 2>/dev/null)" = "$stamp" ]; then
		return 0
	fi
	mkdir -p "$(dirname "$bin")"
	rm -f "$bin" "$bin.key"
	"$cc" "${cflags[@]}" -o "$bin" "$src" || die "$src did not build"
	file -L "$bin" | grep -q 'statically linked' || die "$bin is not statically linked"
	echo "$stamp" >"$bin.key"
	note "built $bin ($flavor tree's headers, $key)"
}
# The proof by DMA (make test) and the map benchmarks (make bench).
build edu_dma.c edu-dma
build map_bench.c iommufd-bench
