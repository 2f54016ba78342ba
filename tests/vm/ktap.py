#!/usr/bin/env python3
"""Count KTAP results.

    ktap.py FILE...   print each test case's result and the totals;
                      exit 1 if any failed or none ran.

Leaf results are counted: a test case, or each parameter of a
parameterised case.  '# SKIP' results are counted as skipped, never passed.
With --summary NAME, the last line is 'NAME: N passed, N failed, N skipped'.
"""
import re
import sys

RESULT = re.compile(r"^(?P<indent>\s*)(?P<ok>not ok|ok) (?P<num>\d+)\s*(?:-\s*)?(?P<name>[^#]*?)\s*(?:#\s*(?P<directive>\w+)(?P<reason>.*))?$")
SUBTEST = re.compile(r"^\s*#\s*Subtest:\s*(?P<name>.+)$")


def parse(lines):
    """Return [(path, status)] for every leaf result.

    A '# Subtest: NAME' line opens a scope at its indentation; the result
    line that carries NAME at the same or a shallower indentation closes
    it.  Results inside a scope are its children.  A closed scope counts
    only when it failed with no failing child (a crash in suite init, say).
    """
    scopes = []   # [indent, name, children, failed children]
    leaves = []
    for raw in lines:
        line = re.sub(r"^\[\s*\d+\.\d+\]\s?", "", raw.rstrip("\n").expandtabs(8))
        m = SUBTEST.match(line)
        if m:
            indent = len(line) - len(line.lstrip())
            scopes.append([indent, m.group("name").strip(), 0, 0])
            continue
        m = RESULT.match(line)
        if not m:
            continue
        indent = len(m.group("indent"))
        name = m.group("name").strip()
        directive = (m.group("directive") or "").upper()
        status = "skip" if directive == "SKIP" else ("pass" if m.group("ok") == "ok" else "fail")
        while scopes and scopes[-1][0] > indent and scopes[-1][1] != name:
            scopes.pop()
        if scopes and scopes[-1][1] == name and scopes[-1][0] >= indent:
            _, _, children, failed = scopes.pop()
            path = "/".join([s[1] for s in scopes] + [name])
            if status == "fail" and not failed or not children:
                leaves.append((path, status))
        else:
            leaves.append(("/".join([s[1] for s in scopes] + [name]), status))
        if scopes:
            scopes[-1][2] += 1
            scopes[-1][3] += status == "fail"
    return leaves


def main(argv):
    summary = None
    if argv[:1] == ["--summary"]:
        summary, argv = argv[1], argv[2:]
    counts = {"pass": 0, "fail": 0, "skip": 0}
    for path in argv:
        with open(path, errors="replace") as f:
            for name, status in parse(f):
                counts[status] += 1
                print("%-4s %s" % ({"pass": "ok", "fail": "FAIL", "skip": "skip"}[status], name))
    line = "%d passed, %d failed, %d skipped" % (counts["pass"], counts["fail"], counts["skip"])
    print(("%s: " % summary if summary else "") + line)
    return 1 if counts["fail"] or not counts["pass"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
