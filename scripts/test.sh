#!/usr/bin/env bash
# `make test`: host tests, then the guest suite on the debug kernel, then one
# line 'N passed, N failed, N skipped'.  Exit status non-zero on any failure.
#
# Every source counts into the same totals: the harness's own tests, cargo
# (ignored tests are skips), the uAPI header check, the kernel's dma-buf
# selftests and KUnit suites and our guest suites (KTAP, every plan checked,
# every expected document required), and the guest run as a whole (its
# status, and the kernel's log, taint and lockdep state).  Every skip is
# printed with its reason before the last line, and so is every failure.
set -uo pipefail
. "$(dirname "$0")/lib.sh"

out=${VFIO_DMABUF_TEST_OUT:-$REPO/build/test}
rm -rf "$out"
mkdir -p "$out"
passed=0
failed=0
skipped=0
: >"$out/skips.txt"
: >"$out/failures.txt"

# tally LABEL FILE: add FILE's last 'LABEL: N passed, N failed, N skipped'
# line to the totals and keep its skip and failure lines; a FILE without
# that line is one failure.
tally() {
	local label=$1 file=$2 p f s
	read -r p f s < <(sed -n "s/^$label: \([0-9]*\) passed, \([0-9]*\) failed, \([0-9]*\) skipped$/\1 \2 \3/p" "$file" | tail -n 1)
	if [ -z "${p:-}" ]; then
		echo "FAIL $label: no summary line (see $file)" >>"$out/failures.txt"
		p=0 f=1 s=0
	fi
	grep '^skip ' "$file" | sed "s/^skip /skip [$label] /" >>"$out/skips.txt"
	grep '^FAIL ' "$file" | sed "s/^FAIL /FAIL [$label] /" >>"$out/failures.txt"
	passed=$((passed + p))
	failed=$((failed + f))
	skipped=$((skipped + s))
}

# one LABEL ok|FAIL DESCRIPTION: a single result of the run itself.
one() {
	echo "$2 $3"
	if [ "$2" = ok ]; then
		passed=$((passed + 1))
	else
		echo "FAIL [$1] $3" >>"$out/failures.txt"
		failed=$((failed + 1))
	fi
}

finish() {
	if [ -s "$out/skips.txt" ]; then
		echo "skipped, with their reasons:"
		cat "$out/skips.txt"
	fi
	if [ -s "$out/failures.txt" ]; then
		echo "failed:"
		cat "$out/failures.txt"
	fi
	echo "$passed passed, $failed failed, $skipped skipped"
	[ "$failed" = 0 ]
	exit
}

"$REPO/scripts/setup.sh" || exit 1

note "harness tests (ktap.py, check_log.py, cargo_results.py on synthetic input)"
python3 "$REPO/tests/vm/test_harness.py" >"$out/harness.ktap" 2>"$out/harness.err"
python3 "$REPO/tests/vm/ktap.py" --summary harness "$out/harness.ktap" | tee "$out/harness.txt"
tally harness "$out/harness.txt"

note "host tests (cargo)"
cargo test --manifest-path "$REPO/Cargo.toml" --workspace --release --no-fail-fast 2>&1 | tee "$out/cargo.log"
cargo_rc=${PIPESTATUS[0]}
python3 "$REPO/tests/vm/cargo_results.py" "$cargo_rc" "$out/cargo.log" | tee "$out/cargo.txt"
tally cargo "$out/cargo.txt"

note "kernel"
t0=$(date +%s)
if ! "$REPO/scripts/build-kernel.sh" test; then
	one kernel FAIL "the kernel did not build"
	finish
fi
if ! "$REPO/scripts/build-modules.sh" test; then
	one kernel FAIL "the modules did not build"
	finish
fi
echo "kernel and modules ready in $(($(date +%s) - t0)) s" >&2

# After the kernel build: the header is also checked against the 7.3 tree,
# which is there now, so its absence is a failure.
note "uAPI header (C and C++, standalone)"
"$REPO/tests/uapi/check.sh" --require-tree 2>&1 | tee "$out/uapi.log"
sed 's/^\([0-9]* passed\)/uapi: \1/' "$out/uapi.log" >"$out/uapi.txt"
tally uapi "$out/uapi.txt"

note "guest programs"
if ! "$REPO/scripts/build-guest-programs.sh"; then
	one guest FAIL "the guest programs did not build"
	finish
fi
# The kernel's own dma-buf selftests, against the tree's installed uAPI
# headers; a program that did not build is also a missing KTAP document.
if ! "$REPO/tests/selftests/build.sh" test; then
	one selftests FAIL "the kernel's dma-buf selftests did not build"
fi

# The iommufd proof (edu-dma) and the KVM VMM, against the uAPI headers of
# the tree the kernel was built from.
if ! "$REPO/tests/iommufd/build.sh" test; then
	one iommufd FAIL "tests/iommufd/edu_dma.c did not build"
fi
if ! "$REPO/tests/kvm/build.sh" test; then
	one kvm FAIL "tests/kvm/vmm.c did not build"
fi

note "guest tests"
# The whole guest suite, the kernel's own dma-buf suites included (their
# fence timeouts alone take minutes under TCG), bounded well inside CI's 90.
"$REPO/tests/vm/run.sh" --timeout 2400 --out "$out/vm" -- tests/vm/guest/suite.sh
vm_rc=$?
shopt -s nullglob
ktaps=("$out"/vm/ktap/*.ktap)
python3 "$REPO/tests/vm/ktap.py" --summary guest --expect "$REPO/tests/vm/guest/expected-ktap" \
	"${ktaps[@]}" | tee "$out/ktap.txt"
tally guest "$out/ktap.txt"
# The guest run as a whole: its exit status and the kernel's state.
if [ $vm_rc = 0 ]; then
	one guest ok "guest run: status 0, kernel log clean, no unexpected taint, lockdep on ($(cat "$out/vm/accel"), $(cat "$out/vm/seconds") s; script started $(cat "$out/vm/uptime.script-start" 2>/dev/null || echo '?') s after boot)"
else
	one guest FAIL "guest run: exit $vm_rc (3 = the kernel's log, taint or lockdep state; logs in $out/vm)"
fi

note "guest tests with an IOMMU (iommufd)"
# A second VM: an emulated Intel IOMMU, a client edu bound to vfio-pci that
# DMAs through iommufd into the exported BARs.
"$REPO/tests/vm/run.sh" --iommu --timeout 1200 --out "$out/vm-iommu" -- tests/vm/guest/iommufd.sh
vm_rc=$?
ktaps=("$out"/vm-iommu/ktap/*.ktap)
python3 "$REPO/tests/vm/ktap.py" --summary guest-iommu --expect "$REPO/tests/vm/guest/expected-ktap.iommu" \
	"${ktaps[@]}" | tee "$out/ktap-iommu.txt"
tally guest-iommu "$out/ktap-iommu.txt"
if [ $vm_rc = 0 ]; then
	one guest-iommu ok "IOMMU guest run: status 0, kernel log clean, no unexpected taint, lockdep on ($(cat "$out/vm-iommu/accel"), $(cat "$out/vm-iommu/seconds") s)"
else
	one guest-iommu FAIL "IOMMU guest run: exit $vm_rc (3 = the kernel's log, taint or lockdep state; logs in $out/vm-iommu)"
fi
finish
