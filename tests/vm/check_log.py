#!/usr/bin/env python3
"""Judge one guest run's kernel: its logs, its taint and lockdep's state.

    check_log.py [--kconfig FILE] DIR

DIR is the run's $VM_OUT (tests/vm/run.sh --out), where tests/vm/guest/wrap.sh
leaves:

    console.log        the console, captured on the host (run.sh)
    dmesg.txt          the whole kernel log after the command
    kmemleak.txt       kmemleak's report after two scans
    tainted.before     /proc/sys/kernel/tainted before the command
    tainted.after      the same after it (and after the kmemleak scan)
    debug_locks.before lockdep's debug_locks (/proc/lockdep_stats) before,
    debug_locks.after  and after; 'absent' when the kernel has no lockdep
    log-allow          optional: the reports a test provoked on purpose

--kconfig is the kernel's .config: with it, kmemleak.txt is required only if
CONFIG_DEBUG_KMEMLEAK=y and debug_locks only if CONFIG_LOCKDEP=y (the perf
kernel has neither); without it, both are required.

The run fails (exit 1, each reason printed) on:

- any report in console.log, dmesg.txt or kmemleak.txt (REPORTS below: WARN,
  BUG, Oops, panic, KASAN, KFENCE, UBSAN, every lockdep report form, RCU
  stalls, hung tasks, soft and hard lockups, kmemleak, IOMMU faults), unless
  a test declared it (see ALLOWANCES);
- a missing console.log, dmesg.txt or taint record, a missing kmemleak.txt
  or debug_locks record when the kernel has them, and a dmesg.txt that does
  not reach back to the kernel's first line (the log buffer overflowed);
- any taint bit not in TAINT_ALLOWED, or in it but without the kernel's own
  log line saying why it was set;
- debug_locks 0 before or after the command (lockdep turned itself off, so
  nothing after that point was checked).

ALLOWANCES.  A test that provokes a report on purpose (a DMAR fault, say)
declares it just before, in two steps:

1. it appends one line to $VM_OUT/log-allow:

       ID MAX REGEX

   ID names the allowance ([A-Za-z0-9_.:-]+, unique in the run), MAX is the
   most lines it may excuse (>= 1), and REGEX (Python syntax, the rest of
   the line) must match each excused line;
2. it writes 'vfio-dmabuf-allow: begin ID' to /dev/kmsg (at KERN_ERR, '<3>',
   so that the console shows it too), provokes the report, checks it, and
   writes 'vfio-dmabuf-allow: end ID'.

A report line is excused only when it lies between ID's two markers (in the
same log file), matches REGEX, and ID has excused fewer than MAX lines in
that file.  Everything else is still a report: a line of another kind, one
beyond MAX, one outside the window.  A window never closed, a marker for an
undeclared ID, a malformed log-allow line and a second window with the same
ID are failures.  tests/vm/guest/log-allow.sh does both steps from shell.
"""
import os
import re
import sys

# (regular expression, kind).  The first that matches a line names it.
LINE_START = r"^(?:\[\s*\d+\.\d+\]\s*)?"
REPORTS = [
    # lockdep (kernel/locking/lockdep.c)
    (r"WARNING: possible circular locking dependency detected", "lockdep: circular dependency"),
    (r"WARNING: \w+-safe -> \w+-unsafe lock order detected", "lockdep: irq-safe -> irq-unsafe"),
    (r"WARNING: possible irq lock inversion dependency detected", "lockdep: irq lock inversion"),
    (r"WARNING: possible recursive locking detected", "lockdep: recursive locking"),
    (r"WARNING: inconsistent lock state", "lockdep: inconsistent lock state"),
    (r"WARNING: chain_key collision", "lockdep: chain_key collision"),
    (r"WARNING: Nested lock was not taken", "lockdep: nested lock not taken"),
    (r"WARNING: bad unlock balance detected", "lockdep: bad unlock balance"),
    (r"WARNING: bad contention detected", "lockdep: bad contention"),
    (r"WARNING: held lock freed", "lockdep: held lock freed"),
    (r"WARNING: \S+ still has locks held", "lockdep: locks held at exit"),
    (r"WARNING: lock held when returning to user space", "lockdep: lock held returning to user space"),
    (r"WARNING: suspicious RCU usage", "lockdep: suspicious RCU usage"),
    (r"\[ BUG: Invalid wait context \]", "lockdep: invalid wait context"),
    (r"INFO: trying to register non-static key", "lockdep: non-static key"),
    (r"BUG: MAX_\w+ too low", "lockdep: table overflow"),
    (r"BUG: looking up invalid subclass", "lockdep: invalid subclass"),
    (r"BUG: key \S+ has not been registered", "lockdep: unregistered key"),
    (r"turning off the locking correctness validator", "lockdep: turned off"),
    (r"INFO: lockdep is turned off", "lockdep: turned off"),
    (r"DEBUG_LOCKS_WARN_ON", "lockdep"),
    # memory error detectors
    (r"BUG: KASAN: ", "KASAN"),
    (r"KASAN: ", "KASAN"),
    (r"BUG: KFENCE: ", "KFENCE"),
    (r"UBSAN: ", "UBSAN"),
    (r"unreferenced object 0x", "kmemleak"),
    (r"kmemleak: \d+ new suspected memory leaks", "kmemleak"),
    (r"kmemleak: .*(disabled|failed|Cannot allocate|Memory pool empty)", "kmemleak disabled"),
    (r"Kernel memory leak detector disabled", "kmemleak disabled"),
    # stalls and lockups
    (r"INFO: .*detected (expedited )?stalls?", "RCU stall"),
    (r"INFO: .*self-detected stall", "RCU stall"),
    (r"INFO: .*[Ss]tall ended", "RCU stall"),
    (r"INFO: task \S+ blocked", "hung task"),
    (r"INFO: task \S+ (<\S+> )?(is )?blocked on", "hung task"),
    (r"BUG: soft lockup", "soft lockup"),
    (r"Watchdog detected hard LOCKUP", "hard lockup"),
    (r"BUG: workqueue lockup", "workqueue lockup"),
    # crashes and warnings
    (r"------------\[ cut here \]------------", "WARN/BUG"),
    (LINE_START + r"WARNING: ", "WARN"),
    (r"WARNING: .* at ", "WARN"),
    (r"kernel BUG at ", "BUG"),
    (r"\bBUG: ", "BUG"),
    (r"Oops: ", "Oops"),
    (r"general protection fault", "GPF"),
    (r"Kernel panic", "panic"),
    (r"refcount_t: ", "refcount"),
    (r"list_(add|del) corruption", "list corruption"),
    # user space writing what a driver claimed (taints U)
    (r"Unexpected write to kernel-exclusive config offset", "config write"),
    # IOMMU faults: only ever on purpose, declared in log-allow
    (r"DMAR: \[(DMA (Read|Write)|INTR-REMAP)", "DMAR fault"),
    (r"DMAR: DRHD: handling fault status", "DMAR fault"),
    (r"AMD-Vi: Event logged \[", "AMD-Vi fault"),
]
PATTERN = re.compile("|".join("(?P<r%d>%s)" % (i, r) for i, (r, _) in enumerate(REPORTS)))

# Taint bits (include/linux/panic.h) a test run sets on purpose.  Each is
# allowed only when the kernel's own message for that reason is in the log;
# every other bit fails the run: W (9, a WARN), D (7, an oops), L (14, a
# soft lockup), B (5, a bad page), S, M, R, F, P, C, K, X, T, J, A, I, and E
# (13: the test kernel has CONFIG_MODULE_SIG off, so no module can be
# unsigned; if it ever appears something changed and must be looked at).
TAINT_ALLOWED = {
    # TAINT_USER: peer.py and make bench bind a function to vfio-pci in
    # no-IOMMU mode (drivers/vfio/group.c, vfio_main.c).  The other source
    # of U, a config-space write to an offset a driver claimed, is a report
    # above.
    6: ("U", r"Adding kernel taint for vfio-noiommu (group on device|cdev)", None),
    # TAINT_OOT_MODULE: the project's modules are built out of tree
    # (kbuild M=); the kernel names the first one it loads.
    12: ("O", r"(?P<module>\S+): loading out-of-tree module taints kernel\.",
         {"vfio_dmabuf", "vfio_dmabuf_importer", "vfio_dmabuf_peer"}),
    # TAINT_TEST: suite.sh loads KUnit test modules.  KUnit taints, with no
    # message, each time it runs a suite, and prints the suite's header
    # ('    # Subtest: NAME'); a module marked MODULE_INFO(test) taints on
    # loading, and the kernel names the first such module.
    18: ("N", r"(: loading test module taints kernel\.$|^(\[[ \d.]+\] )?    # Subtest: \S)", None),
}
TAINT_LETTERS = "PFSRMBUDAWCIOELKXTNJ"

MARKER = re.compile(r"vfio-dmabuf-allow: (?P<what>begin|end) (?P<id>\S+)")
ALLOW_LINE = re.compile(r"^(?P<id>[A-Za-z0-9_.:-]+)\s+(?P<max>\d+)\s+(?P<regex>\S.*?)\s*$")
FIRST_LINE = re.compile(r"Linux version \d")


def read(path):
    with open(path, errors="replace") as f:
        return f.read().splitlines()


def kconfig_has(kconfig, option):
    if kconfig is None:
        return True
    return any(line.strip() == "%s=y" % option for line in kconfig)


def load_allowances(path, problems):
    allow = {}
    if not os.path.exists(path):
        return allow
    for n, line in enumerate(read(path), 1):
        if not line.strip() or line.startswith("#"):
            continue
        m = ALLOW_LINE.match(line)
        if not m or int(m.group("max")) < 1:
            problems.append("%s:%d: malformed allowance (want 'ID MAX REGEX', MAX >= 1): %s" % (path, n, line))
            continue
        try:
            regex = re.compile(m.group("regex"))
        except re.error as e:
            problems.append("%s:%d: bad regular expression: %s" % (path, n, e))
            continue
        if m.group("id") in allow:
            problems.append("%s:%d: allowance %s declared twice" % (path, n, m.group("id")))
            continue
        allow[m.group("id")] = (int(m.group("max")), regex)
    return allow


def scan(path, lines, allow, problems):
    """Return the report lines of one log file, allowances applied."""
    found = []
    open_windows = {}
    opened = set()
    used = {}
    for n, line in enumerate(lines, 1):
        m = MARKER.search(line)
        if m:
            ident = m.group("id")
            if ident not in allow:
                problems.append("%s:%d: allowance marker for undeclared %s" % (path, n, ident))
            elif m.group("what") == "begin":
                if ident in opened:
                    problems.append("%s:%d: a second window for allowance %s" % (path, n, ident))
                opened.add(ident)
                open_windows[ident] = n
            else:
                if ident not in open_windows:
                    problems.append("%s:%d: allowance %s ended without beginning" % (path, n, ident))
                open_windows.pop(ident, None)
            continue
        m = PATTERN.search(line)
        if not m:
            continue
        kind = REPORTS[int(m.lastgroup[1:])][1]
        for ident in open_windows:
            limit, regex = allow[ident]
            if regex.search(line) and used.get(ident, 0) < limit:
                used[ident] = used.get(ident, 0) + 1
                break
        else:
            found.append("%s:%d: [%s] %s" % (path, n, kind, line.strip()))
    for ident, n in open_windows.items():
        problems.append("%s:%d: allowance %s begun but never ended" % (path, n, ident))
    for ident, count in used.items():
        print("check_log: %s: allowance %s excused %d of at most %d lines" % (path, ident, count, allow[ident][0]),
              file=sys.stderr)
    return found


def read_number(path, problems, what):
    try:
        text = " ".join(read(path)).strip()
    except FileNotFoundError:
        problems.append("%s is missing: %s was not recorded" % (path, what))
        return None
    if text == "absent":
        return "absent"
    try:
        return int(text)
    except ValueError:
        problems.append("%s: %s is not a number: %r" % (path, what, text))
        return None


def check_taint(out, logs, problems):
    before = read_number(os.path.join(out, "tainted.before"), problems, "the taint before the command")
    after = read_number(os.path.join(out, "tainted.after"), problems, "the taint after the command")
    if before == "absent" or after == "absent":
        problems.append("the taint was not readable in the guest")
        return
    if after is None:
        return
    text = "\n".join(logs)
    for bit in range(max(after.bit_length(), 1)):
        if not after >> bit & 1:
            continue
        letter = TAINT_LETTERS[bit] if bit < len(TAINT_LETTERS) else "?"
        when = " (already set before the command)" if isinstance(before, int) and before >> bit & 1 else ""
        rule = TAINT_ALLOWED.get(bit)
        if rule is None:
            problems.append("kernel taint %s (bit %d) is set%s; no test sets it on purpose" % (letter, bit, when))
            continue
        _, evidence, modules = rule
        reasons = [m for m in re.finditer(evidence, text, re.M)
                   if modules is None or m.group("module") in modules]
        if not reasons:
            problems.append("kernel taint %s (bit %d) is set%s, but the log lacks the reason it is allowed for (%s)"
                            % (letter, bit, when, evidence))
    if isinstance(before, int) and before & ~after:
        problems.append("taint bits cleared during the run? before %#x, after %#x" % (before, after))


def check_debug_locks(out, lockdep, problems):
    for when in ("before", "after"):
        path = os.path.join(out, "debug_locks.%s" % when)
        value = read_number(path, problems, "lockdep's debug_locks %s the command" % when)
        if value is None:
            continue
        if value == "absent":
            if lockdep:
                problems.append("%s: the kernel has lockdep but /proc/lockdep_stats was not there" % path)
        elif value != 1:
            problems.append("debug_locks is %d %s the command: lockdep turned itself off" % (value, when))


def check(out, kconfig=None):
    """Return (reports, problems) for the run in out."""
    problems = []
    allow = load_allowances(os.path.join(out, "log-allow"), problems)
    kmemleak = kconfig_has(kconfig, "CONFIG_DEBUG_KMEMLEAK")
    lockdep = kconfig_has(kconfig, "CONFIG_LOCKDEP")
    reports = []
    logs = []
    for name, required in (("console.log", True), ("dmesg.txt", True), ("kmemleak.txt", kmemleak)):
        path = os.path.join(out, name)
        try:
            lines = read(path)
        except FileNotFoundError:
            if required:
                problems.append("%s is missing: the run's log was not recorded, so it is not clean" % path)
            continue
        if name == "dmesg.txt" and not any(FIRST_LINE.search(line) for line in lines[:50]):
            problems.append("%s does not begin with the kernel's first line: the log buffer overflowed" % path)
        if name != "kmemleak.txt":
            logs.extend(lines)
        reports.extend(scan(path, lines, allow, problems))
    check_taint(out, logs, problems)
    check_debug_locks(out, lockdep, problems)
    return reports, problems


def main(argv):
    kconfig = None
    if argv[:1] == ["--kconfig"]:
        kconfig = read(argv[1])
        argv = argv[2:]
    if len(argv) != 1:
        print("usage: check_log.py [--kconfig FILE] DIR", file=sys.stderr)
        return 2
    reports, problems = check(argv[0], kconfig)
    for r in reports[:40]:
        print("kernel log report: " + r, file=sys.stderr)
    if len(reports) > 40:
        print("kernel log report: ... %d more" % (len(reports) - 40), file=sys.stderr)
    for p in problems:
        print("kernel state: " + p, file=sys.stderr)
    return 1 if reports or problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
