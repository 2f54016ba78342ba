#!/usr/bin/env bash
# The KVM importer's VMM for the guest (tests/vm/guest/kvm.sh runs it):
#
#   tests/kvm/vmm.c -> build/bin/kvm-vmm   (static)
#
# built against the uAPI headers of the 7.3 tree the FLAVOR (default test)
# kernel was built from, installed with `make headers_install` into
# $CACHE/uapi-headers-kvm-FLAVOR (keyed by the content of the tree's uAPI
# directories, so that a tree that gains the KVM patches installs them
# again), and the repository's include/uapi/linux/vfio_dmabuf.h, which comes
# first. The headers must have KVM_MEM_DMABUF (the series' KVM patches).
# A warm run (same headers, sources, compiler) does nothing.
#
#   tests/kvm/build.sh [FLAVOR]
#   KSRC=DIR tests/kvm/build.sh    (any kernel tree, e.g. a git tree with the
#                                   series applied, without a kernel build)
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

flavor=${1:-test}
if [ -n "${KSRC:-}" ]; then
	ksrc=$(readlink -f "$KSRC")
	tag=tree-$(printf '%s' "$ksrc" | sha256sum | cut -c1-12)
else
	kdir=$(kbuild_dir "$flavor")
	[ -e "$kdir/source" ] || die "no $flavor kernel build in $kdir: run 'make kernel' first (or set KSRC)"
	ksrc=$(readlink -f "$kdir/source")
	tag=$flavor
fi
[ -f "$ksrc/Makefile" ] && [ -f "$ksrc/include/uapi/linux/kvm.h" ] || die "$ksrc is not a kernel tree"

# The tree's uAPI, by content.
tree_key=$(tar -C "$ksrc" -c --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
	include/uapi arch/x86/include/uapi scripts/headers_install.sh | sha256sum | cut -d' ' -f1)
hdr=$CACHE/uapi-headers-kvm-$tag
if [ "$(cat "$hdr/.key" 2>/dev/null)" != "$tree_key" ]; then
	note "installing the uAPI headers of $ksrc into $hdr"
	rm -rf "$hdr"
	mkdir -p "$hdr/build"
	make -s -C "$ksrc" O="$hdr/build" ARCH=x86_64 headers_install INSTALL_HDR_PATH="$hdr/usr" \
		>"$hdr/headers_install.log" 2>&1 || {
		cat "$hdr/headers_install.log" >&2
		die "make headers_install failed"
	}
	rm -rf "$hdr/build"
	echo "$tree_key" >"$hdr/.key"
fi
grep -q 'KVM_MEM_DMABUF' "$hdr/usr/include/linux/kvm.h" ||
	die "$ksrc's <linux/kvm.h> has no KVM_MEM_DMABUF: that tree lacks the series' KVM patches"
grep -q 'dmabuf_fd' "$hdr/usr/include/linux/kvm.h" ||
	die "$ksrc's struct kvm_userspace_memory_region2 has no dmabuf_fd"

cc=${CC:-gcc}
src=$REPO/tests/kvm/vmm.c
bin=$REPO/build/bin/kvm-vmm
cflags=(-static -O2 -g -Wall -Wextra -Wno-format-truncation -Werror -pthread
	-I "$REPO/include/uapi" -isystem "$hdr/usr/include")
key=$({
	echo "$tree_key"
	sha256sum "$src" "$REPO/include/uapi/linux/vfio_dmabuf.h" "$0"
	"$cc" --version | head -n 1
	echo "${cflags[*]}"
} | sha256sum | cut -d' ' -f1)
stamp=$REPO/build/kvm/.key
if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
	exit 0
fi
mkdir -p "$REPO/build/bin" "$REPO/build/kvm"
rm -f "$bin" "$stamp"
"$cc" "${cflags[@]}" -o "$bin.tmp" "$src" || die "tests/kvm/vmm.c did not build"
file -L "$bin.tmp" | grep -q 'statically linked' || die "$bin is not statically linked"
mv -f "$bin.tmp" "$bin"
echo "$key" >"$stamp"
note "built $bin (headers of $ksrc)"
