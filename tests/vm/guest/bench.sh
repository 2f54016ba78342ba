#!/bin/bash
# The guest half of `make bench`: the importer's walks of whole BARs and of
# unaligned multi-range slices, by max_order, page by page and by runs, as JSON in
# $VM_OUT/bench/. Runs as root in the repository (see tests/vm/run.sh).
set -eu
dir=$VM_OUT/bench
mkdir -p "$dir"
tool=build/bin/vfio-dmabuf-bench
insmod drivers/vfio_dmabuf/vfio_dmabuf.ko
insmod tests/importer/vfio_dmabuf_importer.ko
for d in /sys/bus/pci/devices/*; do
	case "$(cat "$d/vendor"):$(cat "$d/device")" in
	0x1af4:0x1110 | 0x1b36:0x0005)
		echo vfio_dmabuf >"$d/driver_override"
		echo "${d##*/}" >/sys/bus/pci/drivers_probe
		;;
	esac
done
function_of() { grep -l "$1" /sys/bus/pci/devices/*/device | head -n 1 | xargs dirname | xargs basename; }
ivshmem=$(function_of 0x1110)
testdev=$(function_of 0x0005)
# name device bar repeat ranges...
bench() {
	local name=$1 device=$2 bar=$3 repeat=$4
	shift 4
	echo "bench: $name"
	$tool --json walk "$device" --bar "$bar" --repeat "$repeat" --max-pages $((1 << 22)) "$@" \
		>"$dir/$name.json"
}
bench ivshmem-1G-whole "$ivshmem" 2 5 whole
bench ivshmem-slice "$ivshmem" 2 5 0x5000:0x1ff000 0x201000:0x3ff000 0x3ffff000:4K
bench testdev-16G-whole "$testdev" 2 3 whole
bench testdev-slice "$testdev" 2 3 0x3000:0x7fffd000 0x80001000:0x3ffff000
for size in 64K 1M 16M 256M; do
	bench "ivshmem-$size" "$ivshmem" 2 5 "0:$size"
done
# 256 runs: one page at every other page of the BAR, for the range call's
# cost per run once a call returns 64 runs or more.
bench ivshmem-256-runs "$ivshmem" 2 5 $(for i in $(seq 0 255); do printf '%#x:4K ' $((i * 0x2000)); done)
echo "bench: revoke with 0, 1, 16, 256 and 1024 attachments"
$tool --json revoke "$ivshmem" --bar 2 --attachments 0,1,16,256,1024 --repeat 11 >"$VM_OUT/bench-revoke.json"
echo "bench: export"
$tool --json export "$ivshmem" --bar 2 --repeat 101 0:4K >"$VM_OUT/bench-export-1range.json"
$tool --json export "$ivshmem" --bar 2 --repeat 101 0x5000:0x1ff000 0x201000:0x3ff000 0x3ffff000:4K \
	>"$VM_OUT/bench-export-3ranges.json"
rmmod vfio_dmabuf_importer vfio_dmabuf

# The peer: upstream vfio-pci's dma-bufs of the same BARs, imported by the
# scatterlist importer for the edu function on the same PCIe switch
# (tests/vm/run.sh --switch), through vfio's no-IOMMU mode.
insmod tests/peer/vfio_dmabuf_peer.ko
echo 1 >/sys/module/vfio/parameters/enable_unsafe_noiommu_mode
for function in "$ivshmem" "$testdev"; do
	echo vfio-pci >"/sys/bus/pci/devices/$function/driver_override"
	echo "$function" >/sys/bus/pci/drivers_probe
	[ "$(basename "$(readlink "/sys/bus/pci/devices/$function/driver")")" = vfio-pci ] || {
		echo "bench: $function did not bind to vfio-pci" >&2
		exit 1
	}
done
# The switch's upstream port is two levels above ivshmem; the client is the
# edu function below it.
switch=$(dirname "$(dirname "$(readlink -f "/sys/bus/pci/devices/$ivshmem")")")
client=
for d in "$switch"/*/*/; do
	[ -f "$d/device" ] && [ "$(cat "$d/device")" = 0x11e8 ] && client=$(basename "$d")
done
[ -n "$client" ] || {
	echo "bench: no edu function beside $ivshmem behind a switch (run.sh --switch)" >&2
	exit 1
}
echo "bench: peer client $client"
# name device bar repeat [--attachments N,...] ranges...
peer() {
	local name=$1 device=$2 bar=$3 repeat=$4
	shift 4
	echo "bench: peer $name"
	$tool --json peer "$device" --bar "$bar" --client "$client" --repeat "$repeat" "$@" \
		>"$dir/peer-$name.json"
}
peer ivshmem-1G-whole "$ivshmem" 2 5 whole
peer ivshmem-slice "$ivshmem" 2 5 0x5000:0x1ff000 0x201000:0x3ff000 0x3ffff000:4K
peer testdev-16G-whole "$testdev" 2 3 whole
peer testdev-slice "$testdev" 2 3 0x3000:0x7fffd000 0x80001000:0x3ffff000
for size in 64K 1M 16M 256M; do
	peer "ivshmem-$size" "$ivshmem" 2 5 "0:$size"
done
peer ivshmem-256-runs "$ivshmem" 2 5 $(for i in $(seq 0 255); do printf '%#x:4K ' $((i * 0x2000)); done)
echo "bench: peer revoke and export"
$tool --json peer "$ivshmem" --bar 2 --client "$client" --repeat 11 \
	--attachments 0,1,16,256,1024 0:4K >"$VM_OUT/bench-peer-revoke.json"
$tool --json peer "$ivshmem" --bar 2 --client "$client" --repeat 101 0:4K \
	>"$VM_OUT/bench-peer-export-1range.json"
$tool --json peer "$ivshmem" --bar 2 --client "$client" --repeat 101 \
	0x5000:0x1ff000 0x201000:0x3ff000 0x3ffff000:4K >"$VM_OUT/bench-peer-export-3ranges.json"
rmmod vfio_dmabuf_peer

# KVM's dma-buf memslots (tests/kvm/vmm.c --bench): a nested guest touches
# one word in every 4 KiB page of the whole ivshmem and pci-testdev BARs,
# through our dma-buf slots, through a plain memslot over vfio-pci's mmap of
# the BAR, and (ivshmem only) with the exporter answering order 0.
echo "bench: KVM slots"
insmod drivers/vfio_dmabuf/vfio_dmabuf.ko
build/bin/kvm-vmm --bench dmabuf >"$VM_OUT/bench-kvm-dmabuf.json"
build/bin/kvm-vmm --bench user-mmap >"$VM_OUT/bench-kvm-user-mmap.json"
build/bin/kvm-vmm --bench revoke >"$VM_OUT/bench-kvm-revoke.json"
rmmod vfio_dmabuf
insmod drivers/vfio_dmabuf/vfio_dmabuf.ko bench_max_order=0
build/bin/kvm-vmm --bench dmabuf-order0 >"$VM_OUT/bench-kvm-dmabuf-order0.json"
rmmod vfio_dmabuf
