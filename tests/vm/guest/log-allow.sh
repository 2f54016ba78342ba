#!/bin/bash
# Declares a kernel log report a test provokes on purpose, for
# tests/vm/check_log.py (whose docstring defines the protocol):
#
#   log-allow.sh begin ID MAX REGEX   before provoking it
#   log-allow.sh end ID               once the test has checked it
#
# Only lines matching REGEX, at most MAX of them, between the two markers
# are excused; the rest of the log is judged as always.
set -eu
out=${VM_OUT:?}
case ${1:-} in
begin)
	[ $# -ge 4 ] || { echo "usage: log-allow.sh begin ID MAX REGEX" >&2; exit 2; }
	id=$2 max=$3
	shift 3
	printf '%s %s %s\n' "$id" "$max" "$*" >>"$out/log-allow"
	sync
	echo "<3>vfio-dmabuf-allow: begin $id" >/dev/kmsg
	;;
end)
	[ $# -eq 2 ] || { echo "usage: log-allow.sh end ID" >&2; exit 2; }
	echo "<3>vfio-dmabuf-allow: end $2" >/dev/kmsg
	;;
*)
	echo "usage: log-allow.sh begin ID MAX REGEX | end ID" >&2
	exit 2
	;;
esac
