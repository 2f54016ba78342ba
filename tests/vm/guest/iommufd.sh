#!/bin/bash
# The guest side of the IOMMU VM run (tests/vm/run.sh --iommu): iommufd maps
# page-frame dma-bufs, proven by DMA (tests/iommufd/edu_dma.c, built by
# tests/iommufd/build.sh into build/bin/edu-dma).  Binds the client edu (the
# one on the root bus, pcie.0; edu0 sits behind a root port) to vfio-pci,
# loads the exporter and the test importer (which binds edu0 by ID, not the
# client: its driver_override names vfio-pci), binds ivshmem to vfio_dmabuf
# through driver_override, runs the program and writes its KTAP into
# $VM_OUT/ktap/iommufd.ktap.  Exit status non-zero on any failure.
# Runs as root inside the VM, in the repository.
set -u
ktap=$VM_OUT/ktap/iommufd.ktap
mkdir -p "$(dirname "$ktap")"

# A set-up that fails is one failed case, not a missing document.
setup_failed() {
	printf 'KTAP version 1\n1..1\n# %s\nnot ok 1 - iommufd: set-up\n' "$1" >"$ktap"
	echo "iommufd.sh: $1" >&2
	exit 1
}

# functions VENDOR DEVICE: the PCI addresses of the functions with those IDs.
functions() {
	local d
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor")" = "$1" ] && [ "$(cat "$d/device")" = "$2" ] && basename "$d"
	done
}

# bind ADDRESS DRIVER, through driver_override.
bind() {
	local d=/sys/bus/pci/devices/$1 now
	now=$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)
	[ "$now" = "$2" ] && return 0
	[ -e "$d/driver" ] && echo "$1" >"$d/driver/unbind"
	echo "$2" >"$d/driver_override" && echo "$1" >/sys/bus/pci/drivers_probe
	[ "$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)" = "$2" ]
}

ls /sys/class/iommu/ 2>/dev/null | grep -q . ||
	setup_failed "the VM has no IOMMU (/sys/class/iommu is empty): run it with tests/vm/run.sh --iommu"
[ -x build/bin/edu-dma ] || setup_failed "build/bin/edu-dma is missing: run tests/iommufd/build.sh"

mapfile -t ivshmem < <(functions 0x1af4 0x1110)
[ ${#ivshmem[@]} = 1 ] || setup_failed "want one ivshmem (1af4:1110), found ${#ivshmem[@]}: ${ivshmem[*]}"
mapfile -t client < <(functions 0x1234 0x11e8 | grep '^0000:00:')
[ ${#client[@]} = 1 ] ||
	setup_failed "want one edu (1234:11e8) on the root bus as the DMA client, found ${#client[@]}: ${client[*]}"

# vfio-pci before vfio_dmabuf loads, which would bind every edu by ID.
bind "${client[0]}" vfio-pci || setup_failed "${client[0]} did not bind to vfio-pci"
for m in drivers/vfio_dmabuf/vfio_dmabuf.ko tests/importer/vfio_dmabuf_importer.ko; do
	insmod "$m" || setup_failed "insmod $m failed"
done
bind "${ivshmem[0]}" vfio_dmabuf || setup_failed "${ivshmem[0]} did not bind to vfio_dmabuf"

build/bin/edu-dma --client "${client[0]}" --ivshmem "${ivshmem[0]}" >"$ktap"
rc=$?
[ $rc = 0 ] || echo "iommufd.sh: edu-dma exited $rc (see $ktap)" >&2
exit $rc
