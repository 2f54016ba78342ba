#!/usr/bin/env bash
# `make demo`: set up, build, boot the VM and show the job in readable steps.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

"$REPO/scripts/setup.sh"
"$REPO/scripts/build-kernel.sh" test
"$REPO/scripts/build-modules.sh" test
"$REPO/scripts/build-guest-programs.sh"
"$REPO/tests/kvm/build.sh" test

out=$REPO/build/demo
rm -rf "$out"
set +e
"$REPO/tests/vm/run.sh" --out "$out" -- tests/vm/guest/demo.sh
rc=$?
set -e
# The guest's own narration.
cat "$out/demo.txt" 2>/dev/null || true
if [ $rc = 0 ]; then
	echo "demo: PASS (guest $(cat "$out/accel"), $(cat "$out/seconds") s, kernel log clean)"
else
	echo "demo: FAIL (exit $rc; logs in $out)"
fi

# iommufd: a second VM with an emulated Intel IOMMU, where the tool maps a
# buffer with IOMMU_IOAS_MAP_FILE and a client edu bound to vfio-pci DMAs
# through it: the pattern moves, REVOKE makes the next DMA fault (DMAR),
# RESTORE and a remap make it work again.
set +e
"$REPO/tests/vm/run.sh" --iommu --timeout 1200 --out "$out/iommu" -- tests/vm/guest/demo-iommu.sh
rc_iommu=$?
set -e
cat "$out/iommu/demo.txt" 2>/dev/null || true
if [ $rc_iommu = 0 ]; then
	echo "demo: iommufd PASS (guest $(cat "$out/iommu/accel"), $(cat "$out/iommu/seconds") s, kernel log clean but for the two DMAR faults it provoked)"
else
	echo "demo: iommufd FAIL (exit $rc_iommu; logs in $out/iommu)"
	[ $rc = 0 ] && rc=$rc_iommu
fi
exit $rc
