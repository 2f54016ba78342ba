#!/bin/bash
# KVM's dma-buf memslots in the VM (issue 13): loads the exporter, binds
# edu (by its ID), ivshmem and pci-testdev (through driver_override) to it,
# and runs build/bin/kvm-vmm (tests/kvm/vmm.c, built by tests/kvm/build.sh),
# whose nested guests read the exported BARs through KVM_MEM_DMABUF slots.
# Writes $VM_OUT/ktap/kvm.ktap; exits non-zero on any failure. Leaves the
# exporter unloaded and ivshmem and pci-testdev unbound (driver_override
# still vfio_dmabuf). Runs as root inside the VM, in the repository (see
# tests/vm/run.sh); the no-IOMMU vfio-pci case taints the kernel (U), with
# the kernel's own message, which tests/vm/check_log.py allows.
set -u
ktap=$VM_OUT/ktap/kvm.ktap
mkdir -p "$(dirname "$ktap")"

fail_doc() {
	printf 'KTAP version 1\n1..1\n# %s\nnot ok 1 kvm: set-up\n' "$1" >"$ktap"
	echo "kvm.sh: $1" >&2
	exit 1
}

[ -x build/bin/kvm-vmm ] || fail_doc "build/bin/kvm-vmm is missing (tests/kvm/build.sh)"
[ -c /dev/kvm ] || fail_doc "no /dev/kvm: the kernel needs CONFIG_KVM and CONFIG_KVM_AMD, the VM -cpu max"

if [ ! -d /sys/module/vfio_dmabuf ]; then
	insmod drivers/vfio_dmabuf/vfio_dmabuf.ko || fail_doc "insmod drivers/vfio_dmabuf/vfio_dmabuf.ko failed"
fi

function_of() {
	local d
	for d in /sys/bus/pci/devices/*; do
		if [ "$(cat "$d/vendor"):$(cat "$d/device")" = "$1" ]; then
			basename "$d"
			return
		fi
	done
}
edu=$(function_of 0x1234:0x11e8)
ivshmem=$(function_of 0x1af4:0x1110)
testdev=$(function_of 0x1b36:0x0005)
[ -n "$edu" ] && [ -n "$ivshmem" ] && [ -n "$testdev" ] ||
	fail_doc "devices missing: edu '$edu', ivshmem '$ivshmem', pci-testdev '$testdev'"

driver_of() {
	local link=/sys/bus/pci/devices/$1/driver
	[ -e "$link" ] && basename "$(readlink "$link")"
}
for f in "$ivshmem" "$testdev"; do
	if [ "$(driver_of "$f")" != vfio_dmabuf ]; then
		[ -e "/sys/bus/pci/devices/$f/driver" ] && echo "$f" >"/sys/bus/pci/devices/$f/driver/unbind"
		echo vfio_dmabuf >"/sys/bus/pci/devices/$f/driver_override"
		echo "$f" >/sys/bus/pci/drivers_probe
	fi
done
[ "$(driver_of "$edu")" = vfio_dmabuf ] || echo "$edu" >/sys/bus/pci/drivers_probe
for f in "$edu" "$ivshmem" "$testdev"; do
	[ "$(driver_of "$f")" = vfio_dmabuf ] || fail_doc "$f is bound to '$(driver_of "$f")', not vfio_dmabuf"
	for _ in $(seq 50); do
		[ -e "/dev/vfio-dmabuf/$f" ] && break
		sleep 0.1
	done
	[ -e "/dev/vfio-dmabuf/$f" ] || fail_doc "/dev/vfio-dmabuf/$f did not appear"
done

start=$(date +%s.%N)
build/bin/kvm-vmm >"$ktap"
rc=$?
echo "kvm.sh: kvm-vmm exited $rc after $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s" >&2

# Leave the devices as the other suites do: unbound, the module unloaded.
for f in /sys/bus/pci/devices/*; do
	[ "$(driver_of "$(basename "$f")")" = vfio_dmabuf ] || continue
	case "$(cat "$f/device")" in
	0x11e8) ;; # edu goes with the module
	*) echo "$(basename "$f")" >"$f/driver/unbind" ;;
	esac
done
rmmod vfio_dmabuf || { echo "kvm.sh: rmmod vfio_dmabuf failed" >&2; rc=1; }
exit $rc
