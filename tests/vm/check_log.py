#!/usr/bin/env python3
"""Fail when a guest's kernel log holds a report a test must not cause.

Arguments: the kernel log files of one run (the console capture, the
guest's dmesg and kmemleak output).  Prints each report found and exits 1.
"""
import re
import sys

REPORTS = [
    (r"WARNING: .* at ", "WARN"),
    (r"WARNING: CPU: \d+ PID: \d+", "WARN"),
    (r"------------\[ cut here \]------------", "WARN/BUG"),
    (r"\bBUG: ", "BUG"),
    (r"kernel BUG at ", "BUG"),
    (r"Oops: ", "Oops"),
    (r"general protection fault", "GPF"),
    (r"Kernel panic", "panic"),
    (r"KASAN: ", "KASAN"),
    (r"UBSAN: ", "UBSAN"),
    (r"possible circular locking dependency", "lockdep"),
    (r"possible recursive locking", "lockdep"),
    (r"inconsistent lock state", "lockdep"),
    (r"suspicious RCU usage", "lockdep/RCU"),
    (r"lock held when returning to user space", "lockdep"),
    (r"INFO: task .* blocked for more than", "hung task"),
    (r"unreferenced object 0x", "kmemleak"),
    (r"kmemleak: \d+ new suspected memory leaks", "kmemleak"),
    (r"kmemleak: .*(disabled|failed)", "kmemleak disabled"),
    (r"DEBUG_LOCKS_WARN_ON", "lockdep"),
    (r"WARNING: bad unlock balance", "lockdep"),
]
PATTERN = re.compile("|".join("(%s)" % r for r, _ in REPORTS))


def main(paths):
    found = []
    for path in paths:
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            continue
        for n, line in enumerate(lines, 1):
            m = PATTERN.search(line)
            if m:
                kind = REPORTS[m.lastindex - 1][1]
                found.append("%s:%d: [%s] %s" % (path, n, kind, line.strip()))
    for f in found[:40]:
        print("kernel log report: " + f, file=sys.stderr)
    if len(found) > 40:
        print("kernel log report: ... %d more" % (len(found) - 40), file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
