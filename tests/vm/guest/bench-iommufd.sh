#!/bin/bash
# The guest half of `make bench`'s iommufd rows (tests/iommufd/map_bench.c,
# built into build/bin/iommufd-bench), in a VM of tests/vm/run.sh --iommu on
# the performance kernel: the client edu (on the root bus) bound to
# vfio-pci, the exporter loaded, then the program, whose JSON goes to
# $VM_OUT/bench-iommufd.json.  Runs as root inside the VM, in the repository.
set -eu
functions() {
	local d
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor")" = "$1" ] && [ "$(cat "$d/device")" = "$2" ] && basename "$d"
	done
	return 0
}
client=$(functions 0x1234 0x11e8 | grep '^0000:00:')
ivshmem=$(functions 0x1af4 0x1110)
testdev=$(functions 0x1b36 0x0005)
[ -n "$client" ] && [ -n "$ivshmem" ] && [ -n "$testdev" ] || {
	echo "bench-iommufd.sh: devices missing: client '$client', ivshmem '$ivshmem', pci-testdev '$testdev'" >&2
	exit 1
}
d=/sys/bus/pci/devices/$client
[ -e "$d/driver" ] && echo "$client" >"$d/driver/unbind"
echo vfio-pci >"$d/driver_override"
echo "$client" >/sys/bus/pci/drivers_probe
insmod drivers/vfio_dmabuf/vfio_dmabuf.ko
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug
echo "bench: iommufd maps (client $client, ivshmem $ivshmem, pci-testdev $testdev)"
build/bin/iommufd-bench --client "$client" --ivshmem "$ivshmem" --testdev "$testdev" \
	>"$VM_OUT/bench-iommufd.json"
