#!/usr/bin/env bash
# `make bench`: build the performance kernel (kconfig/perf.config: no
# KASAN, lockdep or kmemleak) if needed, boot it with the same devices,
# run the walk benchmarks in the guest and report them. Never part of
# `make test`; nothing here asserts a time.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

"$REPO/scripts/setup.sh"
"$REPO/scripts/build-kernel.sh" perf
"$REPO/scripts/build-modules.sh" perf
"$REPO/scripts/build-guest-programs.sh"
"$REPO/tests/kvm/build.sh" perf

out=$REPO/build/bench
rm -rf "$out"
mkdir -p "$out"
set +e
"$REPO/tests/vm/run.sh" --flavor perf --switch --timeout 1800 --out "$out/vm" -- tests/vm/guest/bench.sh
rc=$?
set -e
# The modules in the tree are the perf kernel's now: make test rebuilds them.
if [ $rc != 0 ]; then
	echo "bench: FAIL (exit $rc; logs in $out/vm)"
	exit $rc
fi
# iommufd's rows: a second VM, with the emulated Intel IOMMU.
"$REPO/tests/iommufd/build.sh" perf
set +e
"$REPO/tests/vm/run.sh" --flavor perf --iommu --timeout 1800 --out "$out/vm-iommu" -- tests/vm/guest/bench-iommufd.sh
rc=$?
set -e
if [ $rc != 0 ]; then
	echo "bench: FAIL (the IOMMU VM: exit $rc; logs in $out/vm-iommu)"
	exit $rc
fi
python3 "$REPO/tests/vm/bench_report.py" "$out"
