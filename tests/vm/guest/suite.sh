#!/bin/bash
# The guest half of `make test`: every guest test, each writing KTAP into
# $VM_OUT/ktap/.  Runs as root inside the VM (see tests/vm/run.sh).  The
# documents it must leave are listed in tests/vm/guest/expected-ktap, which
# scripts/test.sh checks too.
set -u
ktap=$VM_OUT/ktap
mkdir -p "$ktap"
rc=0
here=tests/vm/guest

# fail_doc FILE NAME WHY: a one-result KTAP document for something that did
# not run.
fail_doc() {
	printf 'KTAP version 1\n1..1\n# %s\nnot ok 1 %s\n' "$3" "$2" >"$1"
}

# KUnit suites, built as modules of the test kernel: loading a module runs
# its suites; each suite's KTAP is then in debugfs.  Each suite named in
# expected-ktap (kunit-NAME) that left no results there is a failure.
kunit_modules=(
	lib/kunit/kunit.ko
	drivers/dma-buf/dmabuf_kunit.ko
	drivers/dma-buf/st-dma-buf-pfn.ko
)
for m in "${kunit_modules[@]}"; do
	if ! insmod "$KDIR/$m"; then
		echo "suite.sh: insmod $m failed" >&2
		rc=1
	fi
done
mapfile -t suites < <(sed -n 's/^kunit-\([^ #]*\).*/\1/p' $here/expected-ktap)
for s in "${suites[@]}"; do
	results=/sys/kernel/debug/kunit/$s/results
	# debugfs files report a size of 0: judge the copy, not the original.
	if [ -f "$results" ] && cp "$results" "$ktap/kunit-$s.ktap" &&
		[ -s "$ktap/kunit-$s.ktap" ]; then
		:
	else
		echo "suite.sh: KUnit suite $s left no results in debugfs" >&2
		fail_doc "$ktap/kunit-$s.ktap" "$s" \
			"KUnit suite $s left no results in debugfs (its module did not load, or it does not exist)"
		rc=1
	fi
done
# Suites nobody expected are still counted, and named.
for d in /sys/kernel/debug/kunit/*/; do
	s=$(basename "$d")
	[ -f "$ktap/kunit-$s.ktap" ] && continue
	echo "suite.sh: KUnit suite $s is not in expected-ktap; counted anyway" >&2
	[ -f "$d/results" ] && cp "$d/results" "$ktap/kunit-$s.ktap"
done

# The kernel's own dma-buf selftests.  udmabuf's tests 6 and 7 map 2 GiB of
# 2 MiB huge pages from a hugetlbfs memfd: reserve them when the kernel has
# hugetlbfs (run.sh then gives the guest 4 GiB), and give them back after.
hugepages=/proc/sys/vm/nr_hugepages
[ -w $hugepages ] && echo 1024 >$hugepages
$here/selftest.sh udmabuf build/selftests/udmabuf >"$ktap/selftest-udmabuf.ktap" || rc=1
[ -w $hugepages ] && echo 0 >$hugepages
$here/selftest.sh dmabuf-heap build/selftests/dmabuf-heap >"$ktap/selftest-dmabuf-heap.ktap" || rc=1

# The exporter and the importer on the VM's devices.
$here/exporter.sh || rc=1
# The vfio-dmabuf tool as a user runs it (loads the modules again).
python3 $here/tool.py >"$ktap/tool.ktap" || rc=1
# The benchmarks' peer path (upstream vfio-pci and tests/peer), checked.
python3 $here/peer.py >"$ktap/peer.ktap" || rc=1
# KVM's dma-buf memslots: nested guests read and write the exported BARs
# (tests/kvm/vmm.c; loads the exporter again and unloads it after).
$here/kvm.sh || rc=1
exit $rc
