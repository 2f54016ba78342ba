#!/usr/bin/env python3
"""Host tests of the harness's judges, tests/vm/ktap.py and check_log.py, on
synthetic inputs: KTAP on stdout (scripts/test.sh counts it with ktap.py),
exit 1 if any case failed.  Checks are explicit (no bare assert), so they
hold under python -O too.
"""
import ast
import contextlib
import io
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cargo_results  # noqa: E402
import check_log  # noqa: E402
import ktap  # noqa: E402


def count(text, name="doc"):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, name + ".ktap")
        with open(path, "w") as f:
            f.write(text)
        return ktap.count_file(path)


def statuses(results):
    c = {"pass": 0, "fail": 0, "skip": 0}
    for _, s, _ in results:
        c[s] += 1
    return c["pass"], c["fail"], c["skip"]


KUNIT = """\
KTAP version 1
1..1
    KTAP version 1
    # Subtest: dma-buf-pfn
    # module: st_dma_buf_pfn
    1..3
    ok 1 get_pfn_orders
    # get_pfn_bad: EXPECTATION FAILED at drivers/dma-buf/st-dma-buf-pfn.c:42
    Expected ret == -22, but
        ret == 0
    not ok 2 get_pfn_bad
        KTAP version 1
        # Subtest: walk
        1..2
        ok 1 whole
        ok 2 slice # SKIP no 1 GiB pages
    # walk: pass:1 fail:0 skip:1 total:2
    ok 3 walk
# dma-buf-pfn: pass:1 fail:1 skip:0 total:3
# Totals: pass:2 fail:1 skip:1 total:4
not ok 1 dma-buf-pfn
"""


class Ktap(unittest.TestCase):
    def test_kunit_debugfs_document(self):
        """ktap: a KUnit debugfs document counts its cases and parameters"""
        r = count(KUNIT)
        self.assertEqual(statuses(r), (2, 1, 1), r)
        names = [n for n, _, _ in r]
        self.assertEqual(names, ["dma-buf-pfn/get_pfn_orders", "dma-buf-pfn/get_pfn_bad",
                                 "dma-buf-pfn/walk/whole", "dma-buf-pfn/walk/slice"])
        self.assertIn(("dma-buf-pfn/walk/slice", "skip", "no 1 GiB pages"), r)

    def test_missing_nested_result(self):
        """ktap: a case missing from a suite's plan is a failure named by its number"""
        text = KUNIT.replace("        ok 2 slice # SKIP no 1 GiB pages\n", "")
        r = count(text)
        self.assertEqual(statuses(r), (2, 2, 0), r)
        self.assertIn("dma-buf-pfn/walk/#2", [n for n, s, _ in r if s == "fail"], r)

    def test_subtest_without_result_line(self):
        """ktap: a subtest that ends without its result line fails"""
        r = count(KUNIT.replace("    ok 3 walk\n", ""))
        self.assertEqual(statuses(r), (2, 2, 1), r)
        self.assertTrue(any("without its result line" in why for _, s, why in r if s == "fail"), r)

    def test_missing_top_level_results(self):
        """ktap: a program that stops after 2 of 7 planned results fails 5 times"""
        r = count("TAP version 13\n1..7\nok 1 one\nok 2 two\n", "udmabuf")
        self.assertEqual(statuses(r), (2, 5, 0), r)
        self.assertIn("udmabuf/#7", [n for n, _, _ in r])

    def test_no_plan(self):
        """ktap: a document without a plan fails"""
        r = count("KTAP version 1\nok 1 a\n")
        self.assertEqual(statuses(r), (1, 1, 0), r)

    def test_empty(self):
        """ktap: an empty file fails"""
        self.assertEqual(statuses(count("")), (0, 1, 0))
        self.assertEqual(statuses(count("some console noise\n")), (0, 1, 0))

    def test_outside_plan_and_twice(self):
        """ktap: a result outside the plan and a number given twice fail"""
        r = count("KTAP version 1\n1..2\nok 1 a\nok 1 a\nok 2 b\nok 3 c\n")
        why = " ".join(w for _, s, w in r if s == "fail")
        self.assertIn("given twice", why)
        self.assertIn("outside the plan", why)

    def test_suite_failed_without_failing_case(self):
        """ktap: a failed suite whose cases all passed counts one failure"""
        text = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..1\n    ok 1 a\nnot ok 1 s\n"
        self.assertEqual(statuses(count(text)), (1, 1, 0))

    def test_skips(self):
        """ktap: skips keep their reasons, whole-document skips included"""
        r = count("KTAP version 1\n1..0 # SKIP no udmabuf\n", "x")
        self.assertEqual(r, [("x", "skip", "no udmabuf")])
        r = count("KTAP version 1\n1..1\nok 1 s # SKIP suite skipped: no device\n")
        self.assertEqual(r, [("s", "skip", "suite skipped: no device")])

    def test_kselftest_directives(self):
        """ktap: kselftest's XFAIL passes, its error and Bail out! fail"""
        text = ("TAP version 13\n1..4\nok 1 a\nok 2 # XFAIL known\nnot ok 3 # error broke\n"
                "ok 4 # SKIP Could not open vgem -1\nBail out! open /dev/dma_heap failed\n"
                "# Totals: pass:1 fail:0 xfail:1 xpass:0 skip:1 error:1\n")
        r = count(text, "heap")
        self.assertEqual(statuses(r), (2, 2, 1), r)
        self.assertIn(("heap/#4", "skip", "Could not open vgem -1"), r)

    def test_wrapped_program(self):
        """ktap: a wrapped program's exit status counts only when its results do not explain it"""
        inner = "    TAP version 13\n    1..2\n    ok 1 a\n    ok 2 b\n"
        ok = count("KTAP version 1\n1..1\n    # Subtest: p\n" + inner + "ok 1 p\n")
        self.assertEqual(statuses(ok), (2, 0, 0))
        crash = count("KTAP version 1\n1..1\n    # Subtest: p\n" + inner + "not ok 1 p # killed by SIGSEGV\n")
        self.assertEqual(statuses(crash), (2, 1, 0), crash)
        short = count("KTAP version 1\n1..1\n    # Subtest: p\n    TAP version 13\n    1..2\n    ok 1 a\n"
                      "not ok 1 p # exit 1\n")
        self.assertEqual(statuses(short), (1, 1, 0), short)

    def test_two_documents(self):
        """ktap: two documents in one file are both counted and both checked"""
        r = count("KTAP version 1\n1..1\nok 1 a\nKTAP version 1\n1..2\nok 1 b\n")
        self.assertEqual(statuses(r), (2, 1, 0), r)

    def test_main_expect_and_summary(self):
        """ktap: main() fails a missing expected document and ends on the summary line"""
        with tempfile.TemporaryDirectory() as d:
            doc = os.path.join(d, "tool.ktap")
            with open(doc, "w") as f:
                f.write("KTAP version 1\n1..1\nok 1 - x # SKIP why not\n")
            lst = os.path.join(d, "expected")
            with open(lst, "w") as f:
                f.write("# documents\ntool\npeer\n")
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                rc = ktap.main(["--summary", "guest", "--expect", lst, doc])
            lines = buf.getvalue().splitlines()
        self.assertEqual(rc, 1)
        self.assertEqual(lines[-1], "guest: 0 passed, 1 failed, 1 skipped")
        self.assertIn("skip x: why not", lines)
        self.assertTrue(any(line.startswith("FAIL peer") for line in lines), lines)


CLEAN_DMESG = """\
[    0.000000] Linux version 7.3.4 (root@host) #1 SMP PREEMPT_DYNAMIC
[    0.000000] Command line: root=/dev/root
[    5.100000] vfio_dmabuf: loading out-of-tree module taints kernel.
[    6.200000] st_dma_buf_pfn: loading test module taints kernel.
[    7.300000] vfio-pci 0000:02:00.0: Adding kernel taint for vfio-noiommu group on device
[    8.000000] FAULT_INJECTION: forcing a failure.
"""
U, O, N, W = 1 << 6, 1 << 12, 1 << 18, 1 << 9


class Run:
    """A synthetic $VM_OUT."""

    def __init__(self, dmesg=CLEAN_DMESG, taint=U | O | N, before=0, locks=(1, 1), kmemleak="",
                 console="", allow=None, omit=()):
        self.dir = tempfile.TemporaryDirectory()
        files = {
            "console.log": console or dmesg,
            "dmesg.txt": dmesg,
            "kmemleak.txt": kmemleak,
            "tainted.before": "%d\n" % before,
            "tainted.after": "%d\n" % taint,
            "debug_locks.before": "%s\n" % locks[0],
            "debug_locks.after": "%s\n" % locks[1],
        }
        if allow is not None:
            files["log-allow"] = allow
        for name, text in files.items():
            if name not in omit:
                with open(os.path.join(self.dir.name, name), "w") as f:
                    f.write(text)

    def check(self, kconfig=None):
        with contextlib.redirect_stderr(io.StringIO()):
            reports, problems = check_log.check(self.dir.name, kconfig)
        self.dir.cleanup()
        return reports, problems


# One line of each report form the checker must catch, as the kernel prints it.
REPORT_LINES = [
    "WARNING: possible circular locking dependency detected",
    "WARNING: HARDIRQ-safe -> HARDIRQ-unsafe lock order detected",
    "WARNING: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected",
    "WARNING: possible irq lock inversion dependency detected",
    "WARNING: possible recursive locking detected",
    "WARNING: inconsistent lock state",
    "WARNING: held lock freed!",
    "WARNING: bad unlock balance detected!",
    "WARNING: lock held when returning to user space!",
    "WARNING: guest-tests/123 still has locks held!",
    "WARNING: suspicious RCU usage",
    "WARNING: Nested lock was not taken",
    "[ BUG: Invalid wait context ]",
    "INFO: trying to register non-static key.",
    "BUG: MAX_LOCKDEP_CHAINS too low!",
    "turning off the locking correctness validator.",
    "DEBUG_LOCKS_WARN_ON(1)",
    "rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
    "rcu: INFO: rcu_sched self-detected stall on CPU",
    "rcu: INFO: rcu_preempt detected expedited stalls on CPUs/tasks: {",
    "INFO: rcu_tasks detected stalls on tasks:",
    "BUG: KFENCE: out-of-bounds read in dma_buf_get_pfn+0x12/0x40",
    "BUG: KASAN: slab-use-after-free in vfio_dmabuf_revoke+0x1/0x2",
    "UBSAN: shift-out-of-bounds in drivers/vfio_dmabuf/range.rs:10:5",
    "INFO: task guest-tests:321 blocked for more than 120 seconds.",
    "watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [guest-tests:99]",
    "Kernel panic - not syncing: Fatal exception",
    "Oops: general protection fault, probably for non-canonical address 0xdead: 0000 [#1]",
    "kernel BUG at mm/slub.c:123!",
    "------------[ cut here ]------------",
    "WARNING: CPU: 1 PID: 77 at drivers/dma-buf/dma-buf.c:100 dma_buf_get_pfn+0x1/0x2",
    "WARNING: drivers/dma-buf/dma-buf.c:100 at dma_buf_get_pfn+0x1/0x2, CPU#0: guest-tests/77",
    "unreferenced object 0xffff888012345678 (size 64):",
    "kmemleak: 3 new suspected memory leaks (see /sys/kernel/debug/kmemleak)",
    "kmemleak: Kernel memory leak detector disabled",
    "refcount_t: underflow; use-after-free.",
    "pci 0000:00:03.0: guest-tests: Unexpected write to kernel-exclusive config offset 4",
    "DMAR: [DMA Read NO_PASID] Request device [00:03.0] fault addr 0x1000 [fault reason 0x06] PTE Read access is not set",
]


class CheckLog(unittest.TestCase):
    def test_clean(self):
        """check_log: a clean run with U, O and N explained passes"""
        self.assertEqual(Run().check(), ([], []))

    def test_every_report_form(self):
        """check_log: each lockdep, RCU, KFENCE, UBSAN, hung-task, lockup, crash and kmemleak form is a report"""
        for line in REPORT_LINES:
            for prefix in ("", "[   12.345678] "):
                reports, _ = Run(dmesg=CLEAN_DMESG + prefix + line + "\n").check()
                # once in console.log, once in dmesg.txt
                self.assertEqual(len(reports), 2, "not caught: %r" % line)

    def test_report_in_kmemleak_file(self):
        """check_log: kmemleak.txt's own report fails the run"""
        reports, _ = Run(kmemleak="unreferenced object 0xffff8880 (size 8):\n").check()
        self.assertEqual(len(reports), 1)

    def test_unexpected_taint(self):
        """check_log: W, D, L, B and E taints fail, each named"""
        for bit, letter in ((9, "W"), (7, "D"), (14, "L"), (5, "B"), (13, "E")):
            _, problems = Run(taint=U | O | N | 1 << bit).check()
            self.assertEqual(len(problems), 1, problems)
            self.assertIn("taint %s (bit %d)" % (letter, bit), problems[0])

    def test_taint_needs_its_reason(self):
        """check_log: U, O and N without the kernel's reason in the log fail"""
        bare = "[    0.000000] Linux version 7.3.4 #1\n"
        _, problems = Run(dmesg=bare).check()
        self.assertEqual(len(problems), 3, problems)
        other = bare + "[ 1.0] nvidia: loading out-of-tree module taints kernel.\n"
        _, problems = Run(dmesg=other, taint=O).check()
        self.assertEqual(len(problems), 1, problems)

    def test_taint_kunit_header(self):
        """check_log: N is explained by KUnit's suite header as well"""
        dmesg = CLEAN_DMESG.replace("st_dma_buf_pfn: loading test module taints kernel.",
                                    "    # Subtest: dma-buf-fence")
        self.assertEqual(Run(dmesg=dmesg).check(), ([], []))
        dmesg = CLEAN_DMESG.replace("st_dma_buf_pfn: loading test module taints kernel.",
                                    "# Subtest: not indented like KUnit's")
        self.assertEqual(len(Run(dmesg=dmesg).check()[1]), 1)

    def test_taint_at_boot(self):
        """check_log: a bit set before the command is still judged"""
        _, problems = Run(taint=U | O | N | W, before=W).check()
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("already set before", problems[0])

    def test_debug_locks(self):
        """check_log: debug_locks 0, missing, or absent on a lockdep kernel fails"""
        self.assertEqual(len(Run(locks=(1, 0)).check()[1]), 1)
        self.assertEqual(len(Run(locks=(0, 0)).check()[1]), 2)
        self.assertEqual(len(Run(omit=("debug_locks.after",)).check()[1]), 1)
        self.assertEqual(len(Run(locks=("absent", "absent")).check()[1]), 2)
        perf = ["CONFIG_MODULES=y"]
        self.assertEqual(Run(locks=("absent", "absent"), omit=("kmemleak.txt",)).check(perf), ([], []))
        debug = ["CONFIG_LOCKDEP=y", "CONFIG_DEBUG_KMEMLEAK=y"]
        self.assertEqual(len(Run(locks=("absent", "absent")).check(debug)[1]), 2)

    def test_missing_records(self):
        """check_log: a missing dmesg.txt, console.log, kmemleak.txt or taint record fails"""
        for name in ("dmesg.txt", "console.log", "kmemleak.txt", "tainted.before", "tainted.after"):
            _, problems = Run(omit=(name,)).check()
            self.assertTrue(any(name in p for p in problems), (name, problems))

    def test_overflowed_log(self):
        """check_log: a dmesg.txt that lost the kernel's first line fails"""
        lines = CLEAN_DMESG.splitlines(True)
        _, problems = Run(dmesg="".join(lines[1:])).check()
        self.assertTrue(any("overflowed" in p for p in problems), problems)

    def window(self, inner, allow="dmar1 2 DMAR: \\[DMA Read NO_PASID\\] Request device \\[00:03\\.0\\]\n"):
        return Run(dmesg=CLEAN_DMESG + "[ 9.0] vfio-dmabuf-allow: begin dmar1\n" + inner +
                   "[ 9.9] vfio-dmabuf-allow: end dmar1\n", allow=allow).check()

    FAULT = "[ 9.5] DMAR: [DMA Read NO_PASID] Request device [00:03.0] fault addr 0x1000 [fault reason 0x06]\n"

    def test_allowance_within_window(self):
        """check_log: a declared report inside its window, up to its count, is excused"""
        self.assertEqual(self.window(self.FAULT * 2), ([], []))

    def test_allowance_beyond_count(self):
        """check_log: a declared report beyond its maximum count is a report"""
        reports, _ = self.window(self.FAULT * 3)
        self.assertEqual(len(reports), 2)  # the third, in console.log and dmesg.txt

    def test_allowance_outside_window(self):
        """check_log: a declared report outside its window is a report"""
        run = Run(dmesg=CLEAN_DMESG + self.FAULT + "[ 9.6] vfio-dmabuf-allow: begin dmar1\n"
                  "[ 9.7] vfio-dmabuf-allow: end dmar1\n", allow="dmar1 1 DMAR: \\[DMA Read\n")
        reports, problems = run.check()
        self.assertEqual((len(reports), problems), (2, []))

    def test_allowance_other_report(self):
        """check_log: another kind of report inside a window is still a report"""
        reports, _ = self.window(self.FAULT + "[ 9.6] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x1/0x2\n")
        self.assertEqual(len(reports), 2)

    def test_allowance_mistakes(self):
        """check_log: an unclosed window, an undeclared or malformed allowance fail"""
        unclosed = Run(dmesg=CLEAN_DMESG + "[ 9.0] vfio-dmabuf-allow: begin a\n" + self.FAULT,
                       allow="a 1 DMAR\n").check()
        self.assertTrue(unclosed[1] and not unclosed[0], unclosed)
        undeclared = Run(dmesg=CLEAN_DMESG + "[ 9.0] vfio-dmabuf-allow: begin b\n"
                         "[ 9.1] vfio-dmabuf-allow: end b\n", allow="").check()
        self.assertTrue(undeclared[1], undeclared)
        for bad in ("a DMAR\n", "a 0 DMAR\n", "a 1 DMAR(\n", "a 1 x\na 2 y\n"):
            self.assertTrue(self.window(self.FAULT, allow=bad)[1], bad)

CARGO = """\
   Compiling vfio-dmabuf-range v0.1.0
     Running unittests src/lib.rs (target/release/deps/range-0123)

running 3 tests
test tests::layout ... ok
test tests::slow ... ignored, needs 16 GiB
test tests::other ... ignored

test result: ok. 1 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.01s

     Running tests/props.rs (target/release/deps/props-4567)

running 2 tests
test pfn ... ok
"""
CARGO_CRASH = CARGO + """error: test failed, to rerun pass `-p vfio-dmabuf-range --test props`

Caused by:
  process didn't exit successfully: `target/release/deps/props-4567` (signal: 11, SIGSEGV)
"""
CARGO_DONE = CARGO + """test walk ... ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s

   Doc-tests vfio_dmabuf_range

running 0 tests

test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s
"""


class Cargo(unittest.TestCase):
    def test_counts_and_skips(self):
        """cargo_results: passes, and ignored tests as skips with their reasons"""
        p, f, s, out = cargo_results.count(0, CARGO_DONE.splitlines(True))
        self.assertEqual((p, f, s), (3, 0, 2), out)
        self.assertIn("skip cargo: tests::slow: needs 16 GiB", out)

    def test_crashed_binary(self):
        """cargo_results: a test binary that never reported its result is a failure"""
        p, f, s, out = cargo_results.count(101, CARGO_CRASH.splitlines(True))
        self.assertEqual((p, f, s), (1, 1, 2), out)
        self.assertTrue(any("props.rs" in line and "crashed" in line for line in out), out)

    def test_status_unexplained(self):
        """cargo_results: a non-zero status with no failed test is a failure"""
        p, f, s, out = cargo_results.count(101, CARGO_DONE.splitlines(True))
        self.assertEqual(f, 1, out)
        p, f, s, out = cargo_results.count(101, ["error[E0308]: mismatched types\n"])
        self.assertEqual((p, f, s), (0, 2, 0), out)

    def test_miscount(self):
        """cargo_results: results that do not add up to the announced count fail"""
        text = CARGO_DONE.replace("running 2 tests", "running 4 tests")
        self.assertEqual(cargo_results.count(0, text.splitlines(True))[1], 1)


class PythonTests(unittest.TestCase):
    def test_no_bare_assert(self):
        """python tests: no bare assert statement (python -O strips them) in the repository's Python"""
        repo = os.path.dirname(os.path.dirname(HERE))
        found = []
        for top in ("tests", "tools", "scripts"):
            for d, dirs, files in os.walk(os.path.join(repo, top)):
                dirs[:] = [x for x in dirs if x not in ("target", "__pycache__")]
                for f in files:
                    if f.endswith(".py"):
                        path = os.path.join(d, f)
                        with open(path) as src:
                            tree = ast.parse(src.read(), path)
                        found += ["%s:%d" % (os.path.relpath(path, repo), n.lineno)
                                  for n in ast.walk(tree) if isinstance(n, ast.Assert)]
        self.assertEqual(found, [])


class KtapResult(unittest.TestResult):
    """Prints one KTAP result line per test as it ends."""

    def __init__(self):
        super().__init__()
        self.number = 0

    def _line(self, test, ok, why=None, directive=""):
        self.number += 1
        name = (test.shortDescription() or test.id()).replace("#", " ")
        for line in (why or "").splitlines():
            print("# " + line)
        print("%s %d - %s%s" % ("ok" if ok else "not ok", self.number, name, directive))

    def addSuccess(self, test):
        super().addSuccess(test)
        self._line(test, True)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._line(test, False, self._exc_info_to_string(err, test))

    def addError(self, test, err):
        super().addError(test, err)
        self._line(test, False, self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._line(test, True, directive=" # SKIP " + reason)


def main():
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    print("KTAP version 1")
    print("1..%d" % suite.countTestCases())
    result = KtapResult()
    suite.run(result)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
