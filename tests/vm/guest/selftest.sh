#!/bin/bash
# Runs one of the kernel's kselftest programs and prints KTAP on stdout: the
# program's own TAP as a subtest, then one result for the program, which
# fails on a non-zero exit status, a signal or a time-out.  tests/vm/ktap.py
# then checks the program's plan against its results (each missing one a
# failure) and counts the program's own result only when its cases do not
# explain its failure.
#
#   selftest.sh NAME PROGRAM [ARG...]
set -u
name=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "KTAP version 1"
echo "1..1"
echo "    # Subtest: $name"
if [ ! -x "$1" ]; then
	echo "# $name: $1 is missing (tests/selftests/build.sh builds it)"
	echo "not ok 1 $name # not built"
	exit 1
fi
timeout -k 10 600 "$@" >"$tmp/out" 2>"$tmp/err"
rc=$?
sed 's/^/    /' "$tmp/out"
sed 's/^/# stderr: /' "$tmp/err"
case $rc in
0) echo "ok 1 $name"; exit 0 ;;
124 | 137) why="timed out after 600 s" ;;
4) why="exit status 4 (KSFT_SKIP)" ;;
*) if [ $rc -gt 128 ]; then why="killed by signal $((rc - 128))"; else why="exit status $rc"; fi ;;
esac
echo "not ok 1 $name # $why"
exit 1
