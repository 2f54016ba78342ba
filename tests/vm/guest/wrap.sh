#!/bin/bash
# Runs in the guest around a test command: debugfs, a kmemleak baseline,
# the command, a kmemleak scan, and the kernel log, all into $VM_OUT.
set -u
out=${VM_OUT:?}
export VM_OUT KDIR

mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug
leak=/sys/kernel/debug/kmemleak
# Objects allocated during boot are not ours to judge.
[ -w $leak ] && echo clear >$leak

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
dmesg >"$out/dmesg.txt"
echo $rc >"$out/rc"
sync
exit $rc
