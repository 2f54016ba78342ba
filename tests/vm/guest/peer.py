#!/usr/bin/env python3
"""The benchmarks' peer path in the guest, on the debug kernel: KTAP on stdout.

Runs after tool.py (which unloads our modules): binds ivshmem to upstream
vfio-pci in no-IOMMU mode, loads the scatterlist importer (tests/peer), and
runs `vfio-dmabuf-bench peer` with the function itself as the client (the
kernel maps a function's own BAR by bus address). `make bench` uses the same
code with a client behind a PCIe switch; here it runs under lockdep, KASAN
and kmemleak, and its results are checked rather than timed.
"""
import json
import os
import subprocess
import sys

from tool import TOOL, check, function, run_cases

BENCH = TOOL + "-bench"

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bench_report import greedy_blocks  # noqa: E402  (tests/vm)

CASES = []
ivshmem = None


def case(name):
    def register(fn):
        CASES.append((name, fn))
        return fn
    return register


def bench_peer(*args):
    p = subprocess.run([BENCH, "--json", "peer", ivshmem, "--bar", "2", "--client", ivshmem,
                        "--repeat", "3", "--latency-loops", "100", *args], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise AssertionError(f"vfio-dmabuf-bench peer {' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return json.loads(p.stdout)


def bar_start(address, bar):
    line = open(f"/sys/bus/pci/devices/{address}/resource").read().split("\n")[bar]
    return int(line.split()[0], 16)


@case("peer: ivshmem is bound to vfio-pci in no-IOMMU mode")
def bound():
    driver = os.path.basename(os.readlink(f"/sys/bus/pci/devices/{ivshmem}/driver"))
    check(driver == "vfio-pci", driver)
    group = os.path.basename(os.readlink(f"/sys/bus/pci/devices/{ivshmem}/iommu_group"))
    check(os.path.exists(f"/dev/vfio/noiommu-{group}"), f"no /dev/vfio/noiommu-{group}")


@case("peer: a whole-BAR vfio-pci dma-buf maps to one segment at the BAR's bus address")
def whole():
    r = bench_peer("whole")
    check(r["size"] == 1 << 30, r["size"])
    w = r["walk"]
    check((w["segments"], w["length"]) == (1, 1 << 30), w)
    check(w["first_addr"] == bar_start(ivshmem, 2), (hex(w["first_addr"]), hex(bar_start(ivshmem, 2))))
    check(r["blocks"]["segments"] == greedy_blocks(r["ranges"], bar_start(ivshmem, 2)), r["blocks"])


@case("peer: a 3-range slice is 3 segments, split into the greedy minimum of aligned blocks")
def slice_():
    r = bench_peer("0x5000:0x1ff000", "0x201000:0x3ff000", "0x3ffff000:4K")
    check(r["walk"]["segments"] == 3, r["walk"])
    check(r["walk"]["length"] == 0x1ff000 + 0x3ff000 + 0x1000, r["walk"])
    check(r["walk"]["first_addr"] == bar_start(ivshmem, 2) + 0x5000, r["walk"])
    want = greedy_blocks(r["ranges"], bar_start(ivshmem, 2))
    check(r["blocks"]["segments"] == want, (r["blocks"]["segments"], want))


@case("peer: memory decoding off invalidates and unmaps 1, 16 and 256 mapped attachments")
def revoke():
    # The tool fails unless every attachment is invalidated once per revoke
    # and REMAP maps all of them again afterwards.
    r = bench_peer("--attachments", "0,1,16,256", "0:4K")
    rows = {row["attachments"]: row for row in r["revoke"]}
    check(sorted(rows) == [0, 1, 16, 256], sorted(rows))
    check(rows[0]["invalidation"] is None, f"no attachment, yet an invalidation: {rows[0]}")
    for n in (1, 16, 256):
        check(rows[n]["invalidation"]["median_ns"] > 0, rows[n])


@case("peer: the scatterlist importer's module unloads once its files are closed")
def unload():
    subprocess.run(["rmmod", "vfio_dmabuf_peer"], check=True)
    check(not os.path.exists("/dev/vfio-dmabuf-peer"), "/dev/vfio-dmabuf-peer is still there after rmmod")


def setup():
    global ivshmem
    ivshmem = function("0x1af4", "0x1110")
    subprocess.run(["insmod", "tests/peer/vfio_dmabuf_peer.ko"], check=True)
    with open("/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "w") as f:
        f.write("1")
    d = f"/sys/bus/pci/devices/{ivshmem}"
    if os.path.exists(f"{d}/driver"):
        with open(f"{d}/driver/unbind", "w") as f:
            f.write(ivshmem)
    with open(f"{d}/driver_override", "w") as f:
        f.write("vfio-pci")
    with open("/sys/bus/pci/drivers_probe", "w") as f:
        f.write(ivshmem)


def main():
    try:
        setup()
    except Exception as e:
        print(f"KTAP version 1\n1..1\nnot ok 1 - peer: set-up: {e}")
        return 1
    passed = run_cases(CASES)
    # Leave ivshmem unbound, as the other suites leave it.
    d = f"/sys/bus/pci/devices/{ivshmem}"
    if os.path.exists(f"{d}/driver"):
        with open(f"{d}/driver/unbind", "w") as f:
            f.write(ivshmem)
    subprocess.run(["rmmod", "vfio_dmabuf_peer"], check=False, capture_output=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
