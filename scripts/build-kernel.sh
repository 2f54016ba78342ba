#!/usr/bin/env bash
# Build the kernel for a flavor (test: debug kernel; perf: no debug options)
# in the cache, keyed by kernel version, patch series, config fragments and
# toolchain.  An unchanged key does nothing; a changed one rebuilds
# incrementally in the same output tree.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
# Our make invocations take their variables from here, not from a calling make.
unset MAKEFLAGS MFLAGS MAKELEVEL CLIPPY

flavor=${1:-test}
case $flavor in
test) frags=("$REPO/kconfig/base.config" "$REPO/kconfig/debug.config") ;;
perf) frags=("$REPO/kconfig/base.config" "$REPO/kconfig/perf.config") ;;
*) die "unknown flavor '$flavor' (test or perf)" ;;
esac

tarball=$(KERNEL_DEB_VERSION=$KERNEL_DEB_VERSION "$REPO/scripts/fetch-kernel.sh" "$CACHE")
version=$(cat "$CACHE/src/version")
# Debian versions carry ~ and +, which have no place in a kbuild path.
srcname=linux-$(tr -c 'A-Za-z0-9.\n-' _ <<<"$version")
pristine=$CACHE/$srcname-pristine
src=$CACHE/$srcname
out=$(kbuild_dir "$flavor")

series=()
while read -r p; do
	p=${p%%#*}
	[ -n "${p// /}" ] && series+=("$REPO/patches/$p")
done <"$REPO/patches/series"

toolchain=$({ /usr/bin/rustc --version; clang-19 --version | head -n 1; "$TOOLS/bin/bindgen" --version; })
patches_key=$({ echo "$version"; cat "${series[@]}"; } | sha256sum | cut -c1-16)
key=$({ echo "$patches_key"; cat "${frags[@]}"; echo "$toolchain"; } | sha256sum | cut -c1-16)

if [ -f "$out/.vfio-dmabuf-key" ] && [ "$(cat "$out/.vfio-dmabuf-key")" = "$key" ] &&
	[ -f "$out/arch/x86/boot/bzImage" ]; then
	note "kernel ($flavor) is up to date: $out ($key)"
	exit 0
fi

start=$(date +%s)

if [ ! -f "$pristine/.unpacked" ]; then
	note "unpacking $tarball"
	rm -rf "$pristine"
	mkdir -p "$pristine"
	tar -xJf "$tarball" -C "$pristine" --strip-components=1
	touch "$pristine/.unpacked"
fi

# The working tree: the pristine one plus our series.  To change the
# series, only the files the previous one touched are put back (with a new
# time stamp, so make rebuilds what depends on them) and the new series is
# applied: everything else keeps its time stamps and its objects.
patched_files() {
	sed -n -e 's|^--- a/||p' -e 's|^+++ b/||p' "$@" | sed 's/[[:space:]].*//' | sort -u
}
if [ ! -f "$src/.patches-key" ] || [ "$(cat "$src/.patches-key")" != "$patches_key" ]; then
	note "applying patches/ to $src"
	if [ -f "$src/.patched-files" ]; then
		while read -r f; do
			if [ -f "$pristine/$f" ]; then
				cp "$pristine/$f" "$src/$f"
			else
				rm -f "$src/$f"
			fi
		done <"$src/.patched-files"
	else
		# A new working tree: objects built from another one are stale.
		rm -rf "$src" "$out"
		cp -a "$pristine" "$src"
	fi
	rm -f "$src/.patches-key" "$src/.patched-files"
	for p in "${series[@]}"; do
		echo "    ${p##*/}" >&2
		patch -d "$src" -p1 --batch --forward --no-backup-if-mismatch -s <"$p" ||
			die "patch ${p##*/} does not apply to linux $version"
	done
	patched_files "${series[@]}" >"$src/.patched-files"
	echo "$patches_key" >"$src/.patches-key"
fi

# Configure: tinyconfig, our fragments, olddefconfig.  The .config is only
# replaced when it changes, so an unchanged config rebuilds nothing.
mkdir -p "$out"
cfg=$(mktemp -d)
trap 'rm -rf "$cfg"' EXIT
make -s -C "$src" O="$cfg" "${KMAKE_ARGS[@]}" tinyconfig >/dev/null
"$src/scripts/kconfig/merge_config.sh" -m -O "$cfg" "$cfg/.config" "${frags[@]}" >/dev/null
make -s -C "$src" O="$cfg" "${KMAKE_ARGS[@]}" olddefconfig >/dev/null
missing=0
while IFS= read -r line; do
	case $line in
	CONFIG_*=*) grep -qxF "$line" "$cfg/.config" || { echo "    not set: $line" >&2; missing=1; } ;;
	"# CONFIG_"*" is not set") opt=${line#\# }; opt=${opt%% *}
		grep -q "^$opt=" "$cfg/.config" && { echo "    still set: $opt" >&2; missing=1; } ;;
	esac
done < <(cat "${frags[@]}")
[ $missing = 0 ] || die "the config fragments ask for options Kconfig did not grant (above)"
if ! cmp -s "$cfg/.config" "$out/.config"; then
	cp "$cfg/.config" "$out/.config"
fi

note "building linux $version ($flavor) in $out with -j$JOBS"
make -C "$src" O="$out" "${KMAKE_ARGS[@]}" -j"$JOBS" olddefconfig >/dev/null
log=$out/.build.log
rm -f "$out/.vfio-dmabuf-key"
if ! make -C "$src" O="$out" "${KMAKE_ARGS[@]}" -j"$JOBS" bzImage modules >"$log" 2>&1; then
	grep -E 'error|Error|warning:' "$log" | head -n 60 >&2
	die "kernel build failed (full log: $log)"
fi
grep -E 'warning:' "$log" | head -n 20 >&2 || true

echo "$key" >"$out/.vfio-dmabuf-key"
echo "$version" >"$out/.vfio-dmabuf-version"
note "kernel ($flavor) built in $(($(date +%s) - start)) s"
