#!/usr/bin/env python3
"""The vfio-dmabuf tool in the guest, as a user types it: KTAP on stdout.

Runs after the exporter's suite (which unloads both modules): loads them
again, binds ivshmem and pci-testdev (their driver_override is still set),
and checks each command's output against sysfs, the devices and the host's
ivshmem pattern. Every check runs the static binary in build/bin/.
"""
import glob
import json
import os
import subprocess
import sys

TOOL = "build/bin/vfio-dmabuf"
EDU_ID = 0x010000ED
CASES = []


def case(name):
    """Registers a case; main() runs them in order."""
    def register(fn):
        CASES.append((name, fn))
        return fn
    return register


class CheckFailed(Exception):
    """A case's check did not hold."""


def check(condition, what):
    """Fails the case unless condition holds: an explicit check, where a bare
    assert would vanish under python -O."""
    if not condition:
        raise CheckFailed(str(what))


def tool(*args, ok=True):
    """Runs the tool; returns (exit status, stdout, stderr)."""
    p = subprocess.run([TOOL, *args], capture_output=True, text=True, timeout=120)
    if ok and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.returncode, p.stdout, p.stderr


def function(vendor, device):
    for d in glob.glob("/sys/bus/pci/devices/*"):
        if open(f"{d}/vendor").read().strip() == vendor and open(f"{d}/device").read().strip() == device:
            return os.path.basename(d)
    raise AssertionError(f"no PCI function {vendor}:{device}")


def pattern(o):
    return (((o >> 12) * 0x9E3779B1) & 0xFFFFFFFF) ^ (o & 0xFFF)


def setup():
    for m in ("drivers/vfio_dmabuf/vfio_dmabuf.ko", "tests/importer/vfio_dmabuf_importer.ko"):
        subprocess.run(["insmod", m], check=True)
    for vendor, device in (("0x1af4", "0x1110"), ("0x1b36", "0x0005")):
        f = function(vendor, device)
        with open(f"/sys/bus/pci/devices/{f}/driver_override", "w") as o:
            o.write("vfio_dmabuf")
        if not os.path.exists(f"/sys/bus/pci/devices/{f}/driver"):
            with open("/sys/bus/pci/drivers_probe", "w") as o:
                o.write(f)


edu = ivshmem = testdev = None


@case("tool: the binary is statically linked")
def static():
    out = subprocess.run(["file", "-L", TOOL], capture_output=True, text=True).stdout
    check("static" in out and "dynamically" not in out, out.strip())


@case("tool: list --json matches sysfs for every bound function")
def list_json():
    _, out, _ = tool("--json", "list")
    functions = json.loads(out)
    seen = {f["address"] for f in functions}
    check({edu, ivshmem, testdev} <= seen, f"listed {sorted(seen)}")
    for f in functions:
        lines = open(f"/sys/bus/pci/devices/{f['address']}/resource").read().split("\n")[:6]
        for bar in f["bars"]:
            start, end, flags = (int(x, 16) for x in lines[bar["index"]].split())
            size = end - start + 1 if end else 0
            check(bar["size"] == size, f"{f['address']} BAR{bar['index']}: {bar['size']} != {size}")
            if size:
                kind = "io" if flags & 0x100 else "mem"
                check(bar["kind"] == kind, f"{f['address']} BAR{bar['index']} is {bar['kind']}")


@case("tool: peek reads edu's identification register")
def peek_id():
    _, out, _ = tool("--json", "peek", edu, "--bar", "0", "0")
    words = json.loads(out)
    check(words[0]["value"] == EDU_ID, f"{words[0]['value']:#x}")


@case("tool: poke then peek of edu's liveness register gives ~v")
def liveness():
    for v in (0x12345678, 0, 0xFFFFFFFF):
        tool("poke", edu, "--bar", "0", "4", hex(v))
        _, out, _ = tool("--json", "peek", edu, "--bar", "0", "4")
        got = json.loads(out)[0]["value"]
        check(got == v ^ 0xFFFFFFFF, f"wrote {v:#x}, read {got:#x}")


@case("tool: peek of ivshmem words reads the host's pattern")
def ivshmem_pattern():
    offsets = [0x3FFFF000 - 8, 0x3FFFF000 - 4, 0x3FFFF000, 0x3FFFF004]
    _, out, _ = tool("--json", "peek", ivshmem, "--bar", "2", hex(offsets[0]), "--count", "4")
    words = json.loads(out)
    got = [(w["offset"], w["value"]) for w in words]
    check(got == [(o, pattern(o)) for o in offsets], f"{got}")


@case("tool: map --do revoke: one invalidation, SIGBUS, then live again after restore")
def map_revoke():
    _, out, _ = tool("--json", "map", edu, "--bar", "0", "--do", "peek:0", "--do", "revoke",
                     "--do", "counters", "--do", "peek:0", "--do", "restore", "--do", "peek:0")
    steps = json.loads(out)["steps"]
    check(steps[0]["result"] == {"value": EDU_ID}, steps[0])
    check(steps[2]["invalidations"] == 1 and steps[2]["table_segments"] == 0, steps[2])
    check(steps[3]["result"] == "sigbus", steps[3])
    check(steps[5]["result"] == {"value": EDU_ID}, steps[5])


@case("tool: peek at a revoked BAR fails naming the device and ENODEV")
def peek_revoked():
    tool("revoke", edu, "--bar", "0")
    try:
        status, _, err = tool("peek", edu, "--bar", "0", "0", ok=False)
    finally:
        tool("restore", edu, "--bar", "0")
    check(status == 1 and edu in err and "ENODEV" in err and "revoked" in err,
          f"exit {status}: {err.strip()}")


@case("tool: peek of an I/O BAR fails naming the device and the BAR kind")
def peek_io():
    status, _, err = tool("peek", testdev, "--bar", "1", "0", ok=False)
    check(status == 1 and testdev in err and "I/O BAR" in err, f"exit {status}: {err.strip()}")


@case("tool: walk of the whole 16 GiB pci-testdev BAR is one segment")
def walk_testdev():
    _, out, _ = tool("--json", "walk", testdev, "--bar", "2", "whole")
    report = json.loads(out)
    walk = report["walks"][0] if "walks" in report else report["walk"]
    check(len(walk["table"]) == 1 and walk["calls"] == 1 and walk["mismatches"] == 0, walk)


def run_cases(cases):
    """Runs (name, function) cases in order and prints KTAP; True if all passed."""
    results = []
    for name, fn in cases:
        try:
            fn()
            results.append((True, name, None))
        except Exception as e:  # a failed check, or the tool misbehaving
            results.append((False, name, f"{type(e).__name__}: {e}"))
    print("KTAP version 1")
    print(f"1..{len(results)}")
    for i, (ok, name, why) in enumerate(results, 1):
        print(f"{'ok' if ok else 'not ok'} {i} - {name}")
        for line in (why or "").splitlines():
            print(f"# {line}")
    return all(ok for ok, _, _ in results)


def main():
    global edu, ivshmem, testdev
    try:
        setup()
        edu = function("0x1234", "0x11e8")
        ivshmem = function("0x1af4", "0x1110")
        testdev = function("0x1b36", "0x0005")
    except Exception as e:
        print(f"KTAP version 1\n1..1\nnot ok 1 - tool: set-up: {e}")
        return 1
    passed = run_cases(CASES)
    for m in ("vfio_dmabuf_importer", "vfio_dmabuf"):
        subprocess.run(["rmmod", m], check=False)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
