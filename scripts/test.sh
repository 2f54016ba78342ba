#!/usr/bin/env bash
# `make test`: host tests, then the guest suite on the debug kernel, then one
# line 'N passed, N failed'.  Exit status non-zero on any failure.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

out=${VFIO_DMABUF_TEST_OUT:-$REPO/build/test}
rm -rf "$out"
mkdir -p "$out"
passed=0
failed=0
count() { passed=$((passed + $1)); failed=$((failed + $2)); }

"$REPO/scripts/setup.sh" || exit 1

note "host tests (cargo)"
if cargo test --manifest-path "$REPO/Cargo.toml" --workspace --release 2>&1 | tee "$out/cargo.log"; then :; fi
read -r p f < <(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
	END { print p + 0, f + 0 }' "$out/cargo.log")
if [ "$p" = 0 ] && [ "$f" = 0 ]; then
	echo "test.sh: cargo ran no test (see $out/cargo.log)" >&2
	f=1
fi
count "$p" "$f"

note "kernel"
t0=$(date +%s)
if ! "$REPO/scripts/build-kernel.sh" test; then
	echo "test.sh: the kernel did not build" >&2
	echo "$passed passed, $((failed + 1)) failed"
	exit 1
fi
if ! "$REPO/scripts/build-modules.sh" test; then
	echo "test.sh: the modules did not build" >&2
	echo "$passed passed, $((failed + 1)) failed"
	exit 1
fi
echo "kernel and modules ready in $(($(date +%s) - t0)) s" >&2

# After the kernel build: the header is also checked against the 7.3 tree.
note "uAPI header (C and C++, standalone)"
"$REPO/tests/uapi/check.sh" 2>&1 | tee "$out/uapi.log"
read -r p f < <(awk '/^[0-9]+ passed, [0-9]+ failed/ { print $1, $3 }' "$out/uapi.log" | tail -n 1)
count "${p:-0}" "${f:-1}"

note "guest programs"
if ! "$REPO/scripts/build-guest-programs.sh"; then
	echo "test.sh: the guest programs did not build" >&2
	echo "$passed passed, $((failed + 1)) failed"
	exit 1
fi

note "guest tests"
"$REPO/tests/vm/run.sh" --out "$out/vm" -- tests/vm/guest/suite.sh
vm_rc=$?
shopt -s nullglob
ktaps=("$out"/vm/ktap/*.ktap)
if [ ${#ktaps[@]} -gt 0 ]; then
	python3 "$REPO/tests/vm/ktap.py" --summary guest "${ktaps[@]}" | tee "$out/ktap.txt"
	read -r p f < <(awk '/^guest:/ { print $2, $4 }' "$out/ktap.txt")
	count "$p" "$f"
else
	echo "test.sh: the guest produced no KTAP results" >&2
	count 0 1
fi
# The guest run as a whole: its exit status and a clean kernel log.
if [ $vm_rc = 0 ]; then
	echo "ok   guest run: status 0, kernel log clean ($(cat "$out/vm/accel"), $(cat "$out/vm/seconds") s)"
	count 1 0
else
	echo "FAIL guest run: exit $vm_rc (3 = kernel log report; logs in $out/vm)"
	count 0 1
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
