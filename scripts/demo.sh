#!/usr/bin/env bash
# `make demo`: set up, build, boot the VM and show the job in readable steps.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

"$REPO/scripts/setup.sh"
"$REPO/scripts/build-kernel.sh" test
"$REPO/scripts/build-modules.sh" test
"$REPO/scripts/build-guest-programs.sh"

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
exit $rc
