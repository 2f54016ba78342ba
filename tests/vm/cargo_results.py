#!/usr/bin/env python3
"""Count `cargo test` results from its output, with every absence a failure.

    cargo_results.py STATUS LOG

STATUS is cargo's exit status, LOG its output (stdout and stderr).  Prints
each failed and ignored test (ignored ones are skips, with cargo's reason
when the test gives one), each failure of the run itself, and last
'cargo: N passed, N failed, N skipped'; exits 1 on any failure.

Failures of the run itself, each counted once:
- a test binary ('Running ...', 'Doc-tests ...') whose 'test result:' line
  never came (it crashed, or was killed), or whose counts do not add up to
  the 'running N tests' it announced;
- a non-zero STATUS that no failed test explains (a build error, a crash);
- no test at all.
"""
import re
import sys

UNIT = re.compile(r"^\s*(Running|Doc-tests)\s+(?P<what>.+?)\s*$")
RUNNING = re.compile(r"^running (?P<n>\d+) tests?$")
TEST = re.compile(r"^test (?P<name>.+?) \.\.\. (?P<verdict>ok|FAILED|ignored)(?:, (?P<reason>.*))?$")
RESULT = re.compile(r"^test result: \w+\. (?P<passed>\d+) passed; (?P<failed>\d+) failed; (?P<ignored>\d+) ignored;")


def count(status, lines):
    passed = failed = skipped = tests = 0
    out = []
    unit = None  # [what, announced count, closed]

    def close(u):
        nonlocal failed
        if u is not None and not u[2]:
            failed += 1
            out.append("FAIL cargo: %s: no 'test result' line (the test binary crashed or was killed)" % u[0])

    for line in lines:
        line = line.rstrip("\n")
        m = UNIT.match(line)
        if m:
            close(unit)
            unit = [m.group("what"), None, False]
            continue
        m = RUNNING.match(line)
        if m and unit is not None:
            unit[1] = int(m.group("n"))
            continue
        m = TEST.match(line)
        if m:
            if m.group("verdict") == "ignored":
                out.append("skip cargo: %s: %s" % (m.group("name"), m.group("reason") or "#[ignore] (no reason given)"))
            elif m.group("verdict") == "FAILED":
                out.append("FAIL cargo: %s" % m.group("name"))
            continue
        m = RESULT.match(line)
        if m:
            p, f, i = int(m.group("passed")), int(m.group("failed")), int(m.group("ignored"))
            passed, failed, skipped = passed + p, failed + f, skipped + i
            tests += p + f + i
            if unit is None:
                unit = ["(a test binary)", None, False]
            if unit[1] is not None and unit[1] != p + f + i:
                failed += 1
                out.append("FAIL cargo: %s: announced %d tests, reported %d" % (unit[0], unit[1], p + f + i))
            unit[2] = True
    close(unit)
    ran = tests
    if status != 0 and failed == 0:
        failed += 1
        out.append("FAIL cargo: exited with status %d, though no test failed (a build error or a crash: see the log)"
                   % status)
    if ran == 0:
        failed += 1
        out.append("FAIL cargo: ran no test")
    return passed, failed, skipped, out


def main(argv):
    if len(argv) != 2:
        print("usage: cargo_results.py STATUS LOG", file=sys.stderr)
        return 2
    with open(argv[1], errors="replace") as f:
        passed, failed, skipped, out = count(int(argv[0]), f)
    for line in out:
        print(line)
    print("cargo: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
