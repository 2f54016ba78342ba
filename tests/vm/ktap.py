#!/usr/bin/env python3
"""Count KTAP (and kselftest's TAP 13) results, with every absence a failure.

    ktap.py [--summary NAME] [--expect LIST] FILE...

Prints one line per counted result ('ok', 'FAIL' or 'skip', each failure and
skip with its reason) and the totals; exits 1 if any failed or none passed.
With --summary NAME the last line is 'NAME: N passed, N failed, N skipped'.
With --expect LIST (a file naming one document per line, '#' comments), each
name must be one of the FILEs (its base name without '.ktap'): a document
that is not there is a failure.

What is counted (Documentation/dev-tools/ktap.rst):

- Leaf results: a test case, or each parameter of a parameterised case.
  '# SKIP' results are skipped, never passed; '# XFAIL' and '# XPASS'
  (kselftest) are 'ok' results and pass; 'not ok ... # error' fails.
- A result line that closes a subtest counts only when it failed and nothing
  inside the subtest failed (a crash in suite init, a test program that
  exited non-zero after printing only passes), or when the subtest holds no
  result at all.
- Every plan '1..N', at each nesting level, is compared with the results
  that follow: each missing number is a failure named '<path>/#k', as are
  numbers outside the plan and numbers given twice.  '1..0 # SKIP reason'
  is one skip.
- A top-level document without a plan fails, and so does an empty file; a
  nested subtest may omit its plan (KUnit's generated parameters do).
- A subtest that ends without its closing result line fails, and a
  'Bail out!' line is a failure.
"""
import os
import re
import sys

TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
VERSION = re.compile(r"^(?:K?TAP) version \d+\s*$")
SUBTEST = re.compile(r"^#\s*Subtest:\s*(?P<name>.+?)\s*$")
PLAN = re.compile(r"^1\.\.(?P<n>\d+)\s*(?:#\s*(?P<directive>\w+)\s*(?P<reason>.*?))?\s*$")
RESULT = re.compile(r"^(?P<ok>not ok|ok)\b(?:\s+(?P<num>\d+))?\s*(?:-\s*)?(?P<name>[^#]*?)\s*"
                    r"(?:#\s*(?P<directive>\w+)\b\s*(?P<reason>.*?))?\s*$")
BAIL = re.compile(r"^Bail out!\s*(?P<why>.*)$")


class Node:
    """A (sub)document: its plan and the results at its indentation."""

    def __init__(self, indent, name=None, line=0):
        self.indent = indent
        self.name = name
        self.line = line
        self.version = False
        self.plan = None
        self.plan_skip = None
        self.plans = 0
        self.results = []
        self.bailout = []

    def empty(self):
        return not self.results and self.plan is None and not self.bailout


class Result:
    def __init__(self, number, name, status, reason, child=None, line=0):
        self.number = number
        self.name = name
        self.status = status
        self.reason = reason
        self.child = child
        self.line = line


def result_status(ok, directive):
    directive = (directive or "").upper()
    if directive == "SKIP":
        return "skip"
    if directive == "TODO":
        # A TODO result does not count as TAP's pass or fail; nothing here
        # uses it, so an unexplained one is a failure.
        return "fail"
    if directive == "ERROR":
        return "fail"
    return "pass" if ok == "ok" else "fail"


def parse(lines):
    """Return the top-level documents of one stream of lines."""
    roots = []
    stack = []

    def close_deeper(indent, lineno):
        """Pop nodes deeper than indent; return the shallowest popped one.

        Each popped node but the last is a subtest that ended without its
        result line: it becomes a failed result of its parent."""
        popped = []
        while stack and stack[-1].indent > indent:
            popped.append(stack.pop())
        for inner, outer in zip(popped, popped[1:]):
            unterminated(outer, inner, lineno)
        return popped[-1] if popped else None

    def unterminated(parent, node, lineno):
        numbers = [r.number for r in parent.results]
        parent.results.append(Result(max(numbers, default=0) + 1, node.name or "(unnamed subtest)",
                                     "fail", "the subtest ended without its result line", node, lineno))

    def push(node):
        if not stack:
            roots.append(node)
        stack.append(node)

    for lineno, raw in enumerate(lines, 1):
        line = TIMESTAMP.sub("", raw.rstrip("\n").expandtabs(8)).rstrip()
        text = line.strip()
        if not text:
            continue
        indent = len(line) - len(text)
        if VERSION.match(text):
            child = close_deeper(indent, lineno)
            if child is not None and stack:
                # A sibling starts where a subtest left off without a result.
                unterminated(stack[-1], child, lineno)
            if stack and stack[-1].indent == indent:
                top = stack[-1]
                if top.empty() and not top.version:
                    top.version = True
                    continue
                if len(stack) == 1:
                    stack.pop()  # the next top-level document
                else:
                    continue  # a stray version line inside a document
            node = Node(indent, line=lineno)
            node.version = True
            push(node)
            continue
        m = SUBTEST.match(text)
        if m:
            child = close_deeper(indent, lineno)
            if child is not None and stack:
                unterminated(stack[-1], child, lineno)
            if stack and stack[-1].indent == indent and stack[-1].name is None and stack[-1].empty():
                stack[-1].name = m.group("name")
            elif not stack or stack[-1].indent < indent:
                push(Node(indent, m.group("name"), lineno))
            continue
        m = PLAN.match(text)
        if m:
            child = close_deeper(indent, lineno)
            if child is not None and stack:
                unterminated(stack[-1], child, lineno)
            if not stack or stack[-1].indent < indent:
                push(Node(indent, line=lineno))
            top = stack[-1]
            top.plans += 1
            if top.plan is None:
                top.plan = int(m.group("n"))
                if (m.group("directive") or "").upper() == "SKIP":
                    top.plan_skip = m.group("reason") or "no reason given"
            continue
        m = RESULT.match(text)
        if m:
            child = close_deeper(indent, lineno)
            if child in roots:
                roots.remove(child)  # the document began indented: it is a subtest
            if not stack or stack[-1].indent < indent:
                push(Node(indent, line=lineno))
            top = stack[-1]
            if m.group("num") is not None:
                number = int(m.group("num"))
            else:
                number = max((r.number for r in top.results), default=0) + 1
            name = m.group("name").strip()
            if child is not None and child.name:
                name = name or child.name
            status = result_status(m.group("ok"), m.group("directive"))
            reason = (m.group("reason") or "").strip()
            if status != "skip" and m.group("directive"):
                reason = (m.group("directive") + " " + reason).strip()
            top.results.append(Result(number, name, status, reason, child, lineno))
            continue
        m = BAIL.match(text)
        if m and stack:
            stack[-1].bailout.append(m.group("why").strip() or "no reason given")
    # The end of the stream: every open subtest lacks its result line.
    close_deeper(-1, 0)
    return roots


def join(path, name):
    return "%s/%s" % (path, name) if path else name


def entries(node, path, top):
    """Yield (path, status, reason) for everything counted in node."""
    if top and node.plan is None:
        yield (path, "fail", "no plan (1..N) in the document")
    if node.plans > 1:
        yield (path, "fail", "%d plans in one document" % node.plans)
    for why in node.bailout:
        yield (path, "fail", "Bail out! " + why)
    if node.plan_skip is not None and not node.results:
        yield (path, "skip", node.plan_skip)
        return
    seen = {}
    for r in node.results:
        name = r.name or "#%d" % r.number
        rpath = join(path, name)
        if r.number in seen:
            yield (rpath, "fail", "result %d given twice" % r.number)
        seen[r.number] = r
        if node.plan is not None and not 1 <= r.number <= node.plan:
            yield (rpath, "fail", "result %d outside the plan 1..%d" % (r.number, node.plan))
        if r.child is None:
            yield (rpath, r.status, r.reason)
            continue
        inner = list(entries(r.child, join(path, r.child.name or name), False))
        yield from inner
        if not inner:
            yield (rpath, r.status, r.reason or ("the subtest holds no result" if r.status == "fail" else ""))
        elif r.status == "fail" and not any(s == "fail" for _, s, _ in inner):
            yield (rpath, "fail", r.reason or "failed, though no case inside it did")
    if node.plan is not None:
        for k in range(1, node.plan + 1):
            if k not in seen:
                yield (join(path, "#%d" % k), "fail",
                       "missing: the plan is 1..%d and no result %d followed" % (node.plan, k))


def count_file(path, label=None):
    label = label or document_name(path)
    try:
        with open(path, errors="replace") as f:
            roots = parse(f)
    except OSError as e:
        return [(label, "fail", "cannot read: %s" % e)]
    if not roots:
        return [(label, "fail", "no KTAP document (empty output)")]
    out = []
    for root in roots:
        out.extend(entries(root, root.name or "", True))
    # Results with no name of their own are named by the file.
    return [(label if not p else join(label, p) if p.startswith("#") else p, s, r) for p, s, r in out]


def document_name(path):
    base = os.path.basename(path)
    return base[:-5] if base.endswith(".ktap") else base


def main(argv):
    summary = None
    expect = None
    while argv[:1] in (["--summary"], ["--expect"]):
        if argv[0] == "--summary":
            summary = argv[1]
        else:
            expect = argv[1]
        argv = argv[2:]
    results = []
    for path in argv:
        results.extend(count_file(path))
    if expect is not None:
        have = {document_name(p) for p in argv}
        try:
            with open(expect) as f:
                wanted = [line.split("#")[0].strip() for line in f]
        except OSError as e:
            wanted = []
            results.append((expect, "fail", "cannot read the list of expected documents: %s" % e))
        for name in filter(None, wanted):
            if name not in have:
                results.append((name, "fail", "expected KTAP document %s.ktap is missing" % name))
    counts = {"pass": 0, "fail": 0, "skip": 0}
    for name, status, reason in results:
        counts[status] += 1
        tag = {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}[status]
        if status == "pass" or not reason:
            print("%s %s" % (tag, name))
        else:
            print("%s %s: %s" % (tag, name, reason))
    line = "%d passed, %d failed, %d skipped" % (counts["pass"], counts["fail"], counts["skip"])
    print(("%s: " % summary if summary else "") + line)
    return 1 if counts["fail"] or not counts["pass"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
