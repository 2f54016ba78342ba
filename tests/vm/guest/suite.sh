#!/bin/bash
# The guest half of `make test`: every guest test, each writing KTAP into
# $VM_OUT/ktap/.  Runs as root inside the VM (see tests/vm/run.sh).
set -u
ktap=$VM_OUT/ktap
mkdir -p "$ktap"
rc=0

# KUnit suites, built as modules of the test kernel: loading a module runs
# its suites; each suite's KTAP is then in debugfs.
kunit_modules=(
	lib/kunit/kunit.ko
	drivers/dma-buf/st-dma-buf-pfn.ko
)
for m in "${kunit_modules[@]}"; do
	if ! insmod "$KDIR/$m"; then
		echo "suite.sh: insmod $m failed" >&2
		rc=1
	fi
done
for d in /sys/kernel/debug/kunit/*/; do
	[ -f "$d/results" ] && cp "$d/results" "$ktap/kunit-$(basename "$d").ktap"
done

# The exporter and the importer on the VM's devices.
tests/vm/guest/exporter.sh || rc=1
# The vfio-dmabuf tool as a user runs it (loads the modules again).
python3 tests/vm/guest/tool.py >"$ktap/tool.ktap" || rc=1
# The benchmarks' peer path (upstream vfio-pci and tests/peer), checked.
python3 tests/vm/guest/peer.py >"$ktap/peer.ktap" || rc=1
exit $rc
