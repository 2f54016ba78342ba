#!/bin/bash
# Runs in the guest around a test command: debugfs, a kmemleak baseline, the
# kernel's taint and lockdep's debug_locks before and after, the command, a
# kmemleak scan, and the kernel log, all into $VM_OUT (tests/vm/check_log.py
# judges them on the host; a record missing there fails the run).
set -u
out=${VM_OUT:?}
export VM_OUT KDIR

# When the test script starts, in seconds since boot: run.sh reports it.
cut -d' ' -f1 /proc/uptime >"$out/uptime.script-start"

mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
leak=/sys/kernel/debug/kmemleak
# Objects allocated during boot are not ours to judge.
[ -w $leak ] && echo clear >$leak

# record WHEN: the taint mask and debug_locks ('absent' without lockdep).
record() {
	cat /proc/sys/kernel/tainted >"$out/tainted.$1" 2>/dev/null || echo absent >"$out/tainted.$1"
	if [ -r /proc/lockdep_stats ]; then
		awk '$1 == "debug_locks:" { print $2; found = 1 } END { if (!found) print "unreadable" }' \
			/proc/lockdep_stats >"$out/debug_locks.$1"
	else
		echo absent >"$out/debug_locks.$1"
	fi
}
record before

"$@"
rc=$?

if [ -w $leak ]; then
	# kmemleak reports only objects older than 5 s, found unreferenced by
	# two scans.
	sleep 6
	echo scan >$leak
	echo scan >$leak
	cat $leak >"$out/kmemleak.txt"
fi
record after
dmesg >"$out/dmesg.txt"
echo $rc >"$out/rc"
sync
exit $rc
