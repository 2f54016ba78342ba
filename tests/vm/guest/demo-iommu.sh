#!/bin/bash
# The IOMMU half of `make demo` (tests/vm/run.sh --iommu), narrated into
# $VM_OUT/demo.txt: the tool maps a multi-range ivshmem buffer into an
# iommufd IOAS with IOMMU_IOAS_MAP_FILE, a client edu bound to vfio-pci
# DMAs from it and into it, REVOKE makes the next DMA fault, RESTORE alone
# does not remap, and a remap makes DMA work again. The two DMAR faults it
# provokes are declared to the log checker (tests/vm/guest/log-allow.sh).
set -u
exec > >(tee "$VM_OUT/demo.txt") 2>&1
step() { printf '\n== %s\n' "$*"; }
fail=0
expect() {
	if printf '%s\n' "$3" | grep -Eq "$2"; then
		echo "   ok: $1"
	else
		echo "   FAILED: $1 (no match for /$2/)"
		fail=1
	fi
}
functions() {
	local d
	for d in /sys/bus/pci/devices/*; do
		[ "$(cat "$d/vendor")" = "$1" ] && [ "$(cat "$d/device")" = "$2" ] && basename "$d"
	done
	return 0
}
client=$(functions 0x1234 0x11e8 | grep '^0000:00:')
ivshmem=$(functions 0x1af4 0x1110)

step "the IOMMU, and the client edu $client bound to vfio-pci (its iommufd cdev)"
ls /sys/class/iommu/
d=/sys/bus/pci/devices/$client
[ -e "$d/driver" ] && echo "$client" >"$d/driver/unbind"
echo vfio-pci >"$d/driver_override"
echo "$client" >/sys/bus/pci/drivers_probe
ls "$d/vfio-dev/" || fail=1
insmod drivers/vfio_dmabuf/vfio_dmabuf.ko || fail=1
insmod tests/importer/vfio_dmabuf_importer.ko || fail=1
echo vfio_dmabuf >"/sys/bus/pci/devices/$ivshmem/driver_override"
[ -e "/sys/bus/pci/devices/$ivshmem/driver" ] && echo "$ivshmem" >"/sys/bus/pci/devices/$ivshmem/driver/unbind"
echo "$ivshmem" >/sys/bus/pci/drivers_probe
sleep 0.5

# pattern O: the ivshmem word at BAR offset O (tests/vm/ivshmem_pattern.py).
pattern() { printf '0x%08x' $(( ((($1 >> 12) * 0x9E3779B1) & 0xffffffff) ^ ($1 & 0xfff) )); }

step "ivshmem BAR2 [0x5000, +4K) and [0x201000, +4M - 4K) mapped at one IOVA; edu reads and writes it"
regex='DMAR: (?:DRHD: handling fault status reg 2|\[DMA Read NO_PASID\] Request device \['"$client"'\] fault addr 0x[0-9a-f]+ \[fault reason 0x06\] PTE Read access is not set)\s*$'
tests/vm/guest/log-allow.sh begin demo-dma 4 "$regex"
out=$(build/bin/vfio-dmabuf dma "$ivshmem" --bar 2 --client "$client" 0x5000:4K 0x201000:0x3ff000 \
	--do read:0:16 --do read:0x1000:8 --do write:0x2000=0xcafef00d --do read:0x2000:4 \
	--do revoke --do read:0:16 --do restore --do read:0:16 --do remap --do read:0:16) || fail=1
sleep 1
tests/vm/guest/log-allow.sh end demo-dma
echo "$out"
line() { printf '%s\n' "$out" | sed -n "$1p"; }
expect "the first range's words are the pattern at BAR 0x5000" \
	"read  0x0 \\(16 bytes\\): $(pattern 0x5000) $(pattern 0x5004) $(pattern 0x5008) $(pattern 0x500c)$" "$(line 2)"
expect "buffer offset 0x1000 is the second range's first page, BAR 0x201000" \
	"read  0x1000 \\(8 bytes\\): $(pattern 0x201000) $(pattern 0x201004)$" "$(line 3)"
expect "edu's write reads back" 'read  0x2000 \(4 bytes\): 0xcafef00d$' "$(line 5)"
# A faulted read leaves zeros in QEMU's edu, where the pattern there is not zero.
expect "after REVOKE the DMA reads zeros, not the pattern" 'read  0x0 \(16 bytes\): 0x00000000 0x00000000 0x00000000 0x00000000 ' "$(line 7)"
expect "RESTORE alone does not remap: still zeros" 'read  0x0 \(16 bytes\): 0x00000000 0x00000000 0x00000000 0x00000000 ' "$(line 9)"
faults=$(dmesg | grep -c "DMAR: \[DMA Read NO_PASID\] Request device \[$client\] fault addr 0x1000000 ")
echo "DMAR faults of $client at IOVA 0x1000000 in the kernel log: $faults"
expect "the kernel logged the IOMMU's two faults of those reads" '^2$' "$faults"
expect "after the remap edu reads the pattern again" "read  0x0 \\(16 bytes\\): $(pattern 0x5000) " "$(line 11)"
rmmod vfio_dmabuf_importer || fail=1
rmmod vfio_dmabuf || fail=1
step "verdict"
if [ $fail = 0 ]; then echo "every step did what it should"; else echo "a step FAILED (see above)"; fi
exit $fail
