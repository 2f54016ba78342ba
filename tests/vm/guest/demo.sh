#!/bin/bash
# The guest half of `make demo`, narrated into $VM_OUT/demo.txt.
set -u
exec > >(tee "$VM_OUT/demo.txt") 2>&1
step() { printf '\n== %s\n' "$*"; }
fail=0

step "kernel"
uname -r
grep -o 'KASAN\|PROVE_LOCKING' /proc/config.gz 2>/dev/null || true

step "PCI devices (the VM's edu, ivshmem-plain and pci-testdev among them)"
for d in /sys/bus/pci/devices/*; do
	printf '%s %s:%s class %s' "${d##*/}" "$(cut -c3- "$d/vendor")" \
		"$(cut -c3- "$d/device")" "$(cut -c3-6 "$d/class")"
	i=0
	while read -r start end flags; do
		if [ "$start" != 0x0000000000000000 ] || [ "$end" != 0x0000000000000000 ]; then
			size=$((end - start + 1))
			kind=mem
			[ $((flags & 0x100)) != 0 ] && kind=io
			[ $((flags & 0x100000)) != 0 ] && kind="$kind,64"
			[ $((flags & 0x2000)) != 0 ] && kind="$kind,pref"
			printf '  BAR%d %s %s' "$i" "$(numfmt --to=iec "$size")" "$kind"
		fi
		i=$((i + 1))
		[ $i = 6 ] && break
	done <"$d/resource"
	echo
done

step "KUnit: the dma-buf page frame interface"
insmod "$KDIR/lib/kunit/kunit.ko" || fail=1
insmod "$KDIR/drivers/dma-buf/st-dma-buf-pfn.ko" || fail=1
results=/sys/kernel/debug/kunit/dma-buf-pfn/results
if [ -f $results ]; then
	grep -E '^\s*(not )?ok ' $results
	grep -q '^not ok' $results && fail=1
else
	echo "no results for dma-buf-pfn"
	fail=1
fi
step "the exporter: bind edu by ID, ivshmem and pci-testdev through driver_override"
insmod drivers/vfio_dmabuf/vfio_dmabuf.ko || fail=1
for d in /sys/bus/pci/devices/*; do
	case "$(cat "$d/vendor"):$(cat "$d/device")" in
	0x1af4:0x1110 | 0x1b36:0x0005)
		echo vfio_dmabuf >"$d/driver_override"
		[ -e "$d/driver" ] && echo "${d##*/}" >"$d/driver/unbind"
		echo "${d##*/}" >/sys/bus/pci/drivers_probe
		;;
	esac
done
ls -l /dev/vfio-dmabuf/
target/release/vfio-dmabuf list || fail=1

insmod tests/importer/vfio_dmabuf_importer.ko || fail=1
edu=$(grep -l 0x11e8 /sys/bus/pci/devices/*/device | head -n 1 | xargs dirname | xargs basename)
ivshmem=$(grep -l 0x1110 /sys/bus/pci/devices/*/device | head -n 1 | xargs dirname | xargs basename)
step "export edu BAR0 (1 MiB) and walk it through the importer"
target/release/vfio-dmabuf export "$edu" --bar 0 || fail=1
step "export a multi-range ivshmem slice at odd pages, and walk it"
target/release/vfio-dmabuf export "$ivshmem" --bar 2 0x5000:0x4000 6M:2M 0x3ffff000:4K || fail=1
step "revoke edu BAR0, then restore it"
target/release/vfio-dmabuf revoke "$edu" --bar 0 || fail=1
target/release/vfio-dmabuf restore "$edu" --bar 0 || fail=1
rmmod vfio_dmabuf_importer || fail=1
rmmod vfio_dmabuf || fail=1
exit $fail
