#!/usr/bin/env bash
# Fetch Debian's linux-source-7.3 through a private apt configuration built
# from the machine's own Debian URIs and keyring, without touching the
# system's apt sources.  Prints the path of the kernel tarball.
set -euo pipefail

cache=${1:?usage: fetch-kernel.sh CACHE_DIR}
want_version=${KERNEL_DEB_VERSION:-7.3.4-1~bpo13+1}
pkg=linux-source-7.3
apt_dir=$cache/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$cache/src"

die() { echo "fetch-kernel: $*" >&2; exit 1; }

# Reuse a tarball we already have.
tarball=$cache/src/linux-source-7.3.tar.xz
if [ -s "$tarball" ] && [ -s "$cache/src/version" ]; then
	echo "$tarball"
	exit 0
fi

# The Debian archive URI this machine already uses (not the security one).
uri=""
for f in /etc/apt/sources.list.d/*.sources; do
	[ -r "$f" ] || continue
	u=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f" | grep -v -- '-security' | head -n 1 || true)
	if [ -n "$u" ] && grep -q 'debian-archive-keyring' "$f"; then uri=$u; break; fi
done
if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
	uri=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' /etc/apt/sources.list)
fi
[ -n "$uri" ] || die "no Debian archive URI found in /etc/apt/sources.list{,.d}; cannot fetch $pkg"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || die "missing $keyring (package debian-archive-keyring)"

echo "deb [signed-by=$keyring] $uri trixie-backports main" > "$apt_dir/sources.list"
apt_opts=(
	-o "Dir::Etc::SourceList=$apt_dir/sources.list"
	-o "Dir::Etc::SourceParts=/dev/null"
	-o "Dir::State::Lists=$apt_dir/lists"
	-o "Dir::Cache=$apt_dir"
	-o "Dir::Cache::archives=$apt_dir/archives"
	-o "APT::Get::List-Cleanup=0"
	-q
)
apt-get "${apt_opts[@]}" update >&2 || die "apt-get update of trixie-backports failed (network?)"

versions=$(apt-cache "${apt_opts[@]}" madison "$pkg" | awk -F'|' '{ gsub(/ /, "", $2); print $2 }')
[ -n "$versions" ] || die "$pkg is not served by trixie-backports"
if grep -qxF "$want_version" <<<"$versions"; then
	version=$want_version
else
	version=$(sort -V <<<"$versions" | tail -n 1)
	echo "fetch-kernel: WARNING: $pkg $want_version is gone; using $version" >&2
fi

(cd "$apt_dir/archives" && apt-get "${apt_opts[@]}" download "$pkg=$version" >&2) ||
	die "apt-get download $pkg=$version failed"
deb=$(ls -t "$apt_dir"/archives/${pkg}_*.deb | head -n 1)
tmp=$(mktemp -d "$cache/src/unpack.XXXXXX")
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/src/linux-source-7.3.tar.xz
mv "$tmp/usr/src/linux-source-7.3.tar.xz" "$tarball"
rm -rf "$tmp" "$deb"
echo "$version" > "$cache/src/version"
echo "$tarball"
