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
build/bin/vfio-dmabuf list || fail=1

insmod tests/importer/vfio_dmabuf_importer.ko || fail=1
edu=$(grep -l 0x11e8 /sys/bus/pci/devices/*/device | head -n 1 | xargs dirname | xargs basename)
ivshmem=$(grep -l 0x1110 /sys/bus/pci/devices/*/device | head -n 1 | xargs dirname | xargs basename)
step "export edu BAR0 (1 MiB) and walk it through the importer"
build/bin/vfio-dmabuf export "$edu" --bar 0 || fail=1
step "export a multi-range ivshmem slice at odd pages, and walk it"
build/bin/vfio-dmabuf export "$ivshmem" --bar 2 0x5000:4K 0x201000:0x3ff000 0x3ffff000:4K || fail=1
tool=build/bin/vfio-dmabuf
# expect WHAT PATTERN TEXT: TEXT must match the extended regex PATTERN.
expect() {
	if printf '%s\n' "$3" | grep -Eq "$2"; then
		echo "   ok: $1"
	else
		echo "   FAILED: $1 (no match for /$2/)"
		fail=1
	fi
}

step "read edu's identification register through the importer's mapping"
out=$($tool peek "$edu" --bar 0 0) || fail=1
echo "$out"
expect "edu BAR0+0x0 is 0x010000ed" '\+0x0: 0x010000ed$' "$out"

step "edu liveness check: write v to BAR0+4, read back ~v"
for v in 0x12345678 0x00000000 0xcafef00d; do
	$tool poke "$edu" --bar 0 4 $v || fail=1
	out=$($tool peek "$edu" --bar 0 4) || fail=1
	echo "$out"
	expect "reads back ~$v" "$(printf ': 0x%08x$' $((~v & 0xffffffff)))" "$out"
done

step "ivshmem through the mapping: words the host wrote into the BAR's backing file"
# The pattern of tests/vm/ivshmem_pattern.py: mix(o >> 12) ^ (o & 0xfff).
out=$($tool peek "$ivshmem" --bar 2 0x6ff8 --count 4) || fail=1
echo "$out"
for o in 0x6ff8 0x6ffc 0x7000 0x7004; do
	w=$(( (((o >> 12) * 0x9E3779B1) & 0xffffffff) ^ (o & 0xfff) ))
	expect "BAR2+$o holds the pattern word $(printf '0x%08x' $w)" \
		"$(printf '\\+%#x: 0x%08x$' $o $w)" "$out"
done

step "revoke edu BAR0 while it is mapped: the importer is told, the next access SIGBUSes; restore"
out=$($tool map "$edu" --bar 0 --do peek:0 --do revoke --do counters --do peek:0 \
	--do poke:4=1 --do restore --do peek:0 --do counters) || fail=1
echo "$out"
expect "live before the revoke" '^  peek  0x0: 0x010000ed$' "$(printf '%s\n' "$out" | sed -n 2p)"
expect "one invalidation, the table dropped" '^  counters: 1 invalidation, 0 table segments' \
	"$(printf '%s\n' "$out" | sed -n 4p)"
expect "a read after the revoke raises SIGBUS" '^  peek  0x0: SIGBUS$' "$(printf '%s\n' "$out" | sed -n 5p)"
expect "a write after the revoke raises SIGBUS" 'SIGBUS$' "$(printf '%s\n' "$out" | sed -n 6p)"
expect "the same mapping reads the device after the restore" '^  peek  0x0: 0x010000ed$' \
	"$(printf '%s\n' "$out" | sed -n 8p)"
step "walk the multi-range slice by runs (the range form, dma_buf_get_phys_vec), two runs a call"
out=$($tool walk "$ivshmem" --bar 2 --runs 2 0x5000:4K 0x201000:0x3ff000 0x3ffff000:4K) || fail=1
echo "$out"

step "KVM: a nested guest reads edu and ivshmem through dma-buf memslots, then REVOKE stops it"
# tests/kvm/vmm.c: the edu slot (ID register, ~v), the 1 GiB ivshmem slot
# (the pattern, one 1 GiB mapping), and REVOKE while the guest reads.
build/bin/kvm-vmm -v edu ivshmem-1g revoke-running | tee "$VM_OUT/kvm-demo.ktap" || fail=1
rmmod vfio_dmabuf_importer || fail=1
rmmod vfio_dmabuf || fail=1
step "verdict"
if [ $fail = 0 ]; then echo "every step did what it should"; else echo "a step FAILED (see above)"; fi
exit $fail
