#!/usr/bin/env bash
# Checks that the host property tests can fail: builds the host test crate in
# a scratch directory against a copy of drivers/vfio_dmabuf/range.rs (or of
# the reference) with one deliberate bug at a time, and prints which tests
# each bug makes fail. The tree itself is never modified.
#
#   tests/host/mutants.sh [NAME...]     all mutants, or the ones named
#
# MUTANTS_BASE, if set, is a perl substitution applied to the scratch
# range.rs before every mutant (and to the baseline run), e.g. a fix not yet
# in the tree, so that a test failing on the tree does not hide what a
# mutant breaks. MUTANTS_DIR is the scratch directory (default
# /tmp/vfio-dmabuf-mutants). Exits non-zero if a mutant survived or did not
# apply. Takes about 6 minutes.
#
# Until range::for_each_run() stops handing out an empty run for an empty
# window that starts inside a segment, run it with that fixed:
#   MUTANTS_BASE='s/let Some\(first\) = find\(segments, pgoff\) else/let Some(first) = find(segments, pgoff).filter(|_| pages > 0) else/' \
#       tests/host/mutants.sh
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
DIR=${MUTANTS_DIR:-/tmp/vfio-dmabuf-mutants}
BASE=${MUTANTS_BASE:-}
export CARGO_TARGET_DIR=$DIR/target

# name, file (range or reference), perl substitution.
MUTANTS=(
	# layout: the pieces' page frames.
	"pfn-4k-shift|range|s/\.checked_add\(range\.offset >> page_shift\)/.checked_add(range.offset >> 12)/"
	"pfn-contiguous|range|s/\.checked_add\(range\.offset >> page_shift\)/.checked_add(if total == 0 { range.offset >> page_shift } else { (ranges[0].offset >> page_shift) + total })/"
	"pfn-plus-1-after-first|range|s/\*segment = Segment \{\n(\s*)pgoff: total,\n(\s*)pages,\n(\s*)pfn,/*segment = Segment {\n\$1pgoff: total,\n\$2pages,\n\$3pfn: pfn + u64::from(total != 0),/"
	"pgoff-plus-1-after-first|range|s/pgoff: total,/pgoff: total + u64::from(total != 0),/"
	# layout: validation.
	"mask-4k|range|s/let page_mask = \(1u64 << page_shift\) - 1;/let page_mask = 4095u64;/"
	"no-frame-overflow-check|range|s/pfn\.checked_add\(pages\)\.ok_or\(RequestError::Overflow\)\?;//"
	"no-size-overflow-check|range|s/total\s*\.checked_mul\(1u64 << page_shift\)\s*\.ok_or\(RequestError::Overflow\)\?;//"
	"outside-bar-off-by-one|range|s/if end > bar_size/if end > bar_size + (1u64 << page_shift)/"
	# find and pfn_and_order.
	"find-boundary|range|s/s\.pgoff \+ s\.pages <= pgoff/s.pgoff + s.pages < pgoff/"
	"skew-ignores-pgoff|range|s/segment\.pfn\.wrapping_sub\(segment\.pgoff\)/segment.pfn/"
	"block-may-start-before|range|s/start >= segment\.pgoff &&//"
	"order-capped-at-20|range|s/let limit = align\.min\(/let limit = align.min(20).min(/"
	"order-limit-off-by-one|range|s/align\.min\(63 - segment\.pages\.leading_zeros\(\)\)/align.min(63 - segment.pages.leading_zeros()).saturating_sub(1)/"
	# runs and for_each_run.
	"runs-never-merge|range|s/run\.pfn\.checked_add\(run\.pages\) == Some\(piece\.pfn\)/run.pfn.checked_add(run.pages) == Some(piece.pfn.wrapping_add(1))/"
	"runs-merge-same-start|range|s/Some\(run\) if run\.pfn\.checked_add\(run\.pages\) == Some\(piece\.pfn\)/Some(run) if run.pfn.checked_add(run.pages) == Some(piece.pfn) || run.pfn == piece.pfn/"
	"runs-ignore-window-end|range|s/\(segment\.pgoff \+ segment\.pages\)\.min\(end\)/segment.pgoff + segment.pages/"
	"runs-ignore-window-start|range|s/let start = segment\.pgoff\.max\(pgoff\);/let start = segment.pgoff;/"
	"runs-one-short-when-full|range|s/if count == max \{/if count + 1 >= max {/"
	"runs-last-not-extended|range|s/if count == max \{\n(\s*)return count;/if count + 1 == max {\n\$1emit(count, piece);\n\$1return max;/"
	"runs-drop-last|range|s/if let Some\(run\) = current \{\n\s*emit\(count, run\);\n\s*count \+= 1;\n\s*\}//"
	"runs-segment-at-end|range|s/if segment\.pgoff >= end/if segment.pgoff > end/"
	"runs-no-saturation|range|s/pgoff\.saturating_add\(pages\)/pgoff + pages/"
	# The reference's own greedy and minimal tiling (greedy_is_minimal).
	"reference-greedy-order-0|reference|s/while self\.is_block\(q, k \+ 1\)/while false \&\& self.is_block(q, k + 1)/"
	"reference-min-order-0|reference|s/for k in 0\.\.64u32 \{\n(\s*)if !self\.is_block\(i as u64, k\)/for k in 0..1u32 {\n\$1if !self.is_block(i as u64, k)/"
)

setup() {
	rm -rf "$DIR/tests" "$DIR/drivers"
	mkdir -p "$DIR/tests" "$DIR/drivers/vfio_dmabuf"
	cp -r "$REPO/tests/host" "$DIR/tests/host"
	cp "$REPO/drivers/vfio_dmabuf/range.rs" "$DIR/drivers/vfio_dmabuf/range.rs"
	[ -f "$REPO/Cargo.lock" ] && cp "$REPO/Cargo.lock" "$DIR/Cargo.lock"
	cat >"$DIR/Cargo.toml" <<-EOF
		[workspace]
		resolver = "2"
		members = ["tests/host"]

		[profile.release]
		overflow-checks = true
		debug-assertions = true
	EOF
	if [ -n "$BASE" ]; then
		apply range "$BASE" || { echo "MUTANTS_BASE does not apply" >&2; exit 1; }
	fi
}

# apply FILE PERL: applies a substitution, fails if it changed nothing.
apply() {
	local file
	case $1 in
	range) file=$DIR/drivers/vfio_dmabuf/range.rs ;;
	reference) file=$DIR/tests/host/src/reference.rs ;;
	*) echo "unknown file $1" >&2; return 1 ;;
	esac
	cp "$file" "$file.orig"
	perl -0pi -e "$2" "$file"
	! cmp -s "$file" "$file.orig"
}

# Runs each test on its own, bounded in time and memory (a mutant may make
# a test loop or allocate without end); prints the names of those that
# failed, or BUILD-FAILED.
failing() {
	local out test bin
	if ! out=$(cd "$DIR" && cargo test --release --offline --no-run -p vfio-dmabuf-host-tests 2>&1); then
		echo BUILD-FAILED
		grep -m5 '^error' <<<"$out" >&2 || true
		return
	fi
	bin=$(grep -oP 'Executable unittests src/lib.rs \(\K[^)]+' <<<"$out")
	case $bin in /*) ;; *) bin=$DIR/$bin ;; esac
	for test in $(cd "$DIR/tests/host" && "$bin" --list 2>/dev/null | sed -n 's/: test$//p'); do
		if ! (cd "$DIR/tests/host" && ulimit -v 8000000 &&
			timeout 600 "$bin" --exact "$test" >/dev/null 2>&1); then
			printf '%s ' "$test"
		fi
	done
}

setup
base=$(failing)
echo "baseline: ${base:-no failure}"
[ -n "$base" ] && echo "(a mutant counts as caught by the tests that fail beyond these)"
status=0
for entry in "${MUTANTS[@]}"; do
	IFS='|' read -r name file subst <<<"$entry"
	if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$name"; then
		continue
	fi
	setup
	if ! apply "$file" "$subst"; then
		echo "$name: DOES NOT APPLY"
		status=1
		continue
	fi
	caught=
	for test in $(failing); do
		case " $base " in *" $test "*) ;; *) caught="$caught $test" ;; esac
	done
	if [ -z "$caught" ]; then
		echo "$name: SURVIVED"
		status=1
	else
		echo "$name: caught by$caught"
	fi
done
exit $status
