#!/usr/bin/env python3
"""Turns the guest's walk benchmarks (DIR/vm/bench/*.json, written by
`vfio-dmabuf --json bench`) into DIR/bench.json and DIR/bench.md, and prints
the table.

    bench_report.py DIR
"""
import json
import os
import platform
import subprocess
import sys


def human(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:g} {unit}"
        n /= 1024


PAGE = 4096


def greedy_blocks(ranges, bar_start):
    """The fewest calls a walk can make (SPEC 2): the greedy decomposition of
    each range into blocks aligned to their size both in the buffer and in
    the page frames. Independent of the kernel's and the tool's code."""
    blocks = 0
    buffer_page = 0
    for r in ranges:
        frame = (bar_start + r["offset"]) // PAGE
        end = buffer_page + r["length"] // PAGE
        p = buffer_page
        while p < end:
            k = 0
            while True:
                size = 1 << (k + 1)
                if p % size or (frame + p - buffer_page) % size or p + size > end:
                    break
                k += 1
            p += 1 << k
            blocks += 1
        buffer_page = end
    return blocks


def plot(directory, runs):
    """walk time against buffer size for whole-buffer walks, both ways, log scale."""
    points = sorted((r["size"], r["max_order"]["median_ns"],
                     r["page_by_page"]["median_ns"] if r.get("page_by_page") else None)
                    for name, r in runs.items() if len(r.get("ranges", [])) == 1)
    data = os.path.join(directory, "walks.dat")
    with open(data, "w") as f:
        for size, ours, pages in points:
            f.write(f"{size} {ours} {pages if pages is not None else 'NaN'}\n")
    png = os.path.join(directory, "walks.png")
    script = f"""
set terminal png size 900,560 noenhanced
set output '{png}'
set logscale xy
set xlabel 'buffer size (bytes)'
set ylabel 'one whole walk (ns, median)'
set title 'Importer walk of a BAR: get_pfn by max_order vs page by page (TCG, perf kernel)'
set key top left
set grid
plot '{data}' using 1:2 with linespoints title 'get_pfn, step 2^max_order', \\
     '{data}' using 1:3 with linespoints title 'get_pfn, page by page (the RFC order-0 walk)'
"""
    try:
        subprocess.run(["gnuplot"], input=script, text=True, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as e:
        return f"no plot: gnuplot failed ({e})"
    return png


def ms(ns):
    return f"{ns / 1e6:.3f}"


def main(directory):
    vm = os.path.join(directory, "vm")
    runs = {}
    bench_dir = os.path.join(vm, "bench")
    for name in sorted(os.listdir(bench_dir)):
        if name.endswith(".json"):
            with open(os.path.join(bench_dir, name)) as f:
                runs[name[:-5]] = json.load(f)
    qemu = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                          text=True).stdout.splitlines()[0]
    with open(os.path.join(vm, "accel")) as f:
        accel = f.read().strip()
    kernel = None
    for log in ("dmesg.txt", "console.log"):
        path = os.path.join(vm, log)
        if kernel or not os.path.exists(path):
            continue
        with open(path, errors="replace") as f:
            for line in f:
                if "Linux version" in line:
                    kernel = line.split("Linux version", 1)[1].split()[0]
                    break
    report = {
        "kernel": kernel,
        "qemu": qemu,
        "accelerator": accel,
        "kvm": accel == "kvm",
        "host": platform.node(),
        "walks": runs,
    }
    rows = [
        "| buffer | size | pages | max_order: calls | greedy minimum | ratio | median ms (min-max) | page by page: calls | median ms (min-max) | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in runs.items():
        m = r["max_order"]
        p = r.get("page_by_page")
        page_cols = (f"{p['calls']} | {ms(p['median_ns'])} ({ms(p['min_ns'])}-{ms(p['max_ns'])})"
                     if p else "skipped | -")
        ratio = f"{r['ratio']:.0f}x" if r.get("ratio") else "-"
        greedy = greedy_blocks(r["ranges"], r["bar_start"]) if r.get("bar_start") is not None else None
        r["greedy_blocks"] = greedy
        calls_ratio = f"{m['calls'] / greedy:.2f}" if greedy else "-"
        rows.append(f"| {name} | {human(r['size'])} | {r['pages']} | {m['calls']} | "
                    f"{greedy if greedy is not None else '-'} | {calls_ratio} | "
                    f"{ms(m['median_ns'])} ({ms(m['min_ns'])}-{ms(m['max_ns'])}) | "
                    f"{page_cols} | {ratio} |")
    rows += ["", "| buffer | one get_pfn call ns | one resv lock/unlock ns (floor) | get_pfn / floor |",
             "|---|---:|---:|---:|"]
    for name, r in runs.items():
        if "get_pfn_ns" in r:
            rows.append(f"| {name} | {r['get_pfn_ns']:.0f} | {r['lock_floor_ns']:.0f} | "
                        f"{r['get_pfn_ns'] / r['lock_floor_ns']:.2f} |")
    revoke_path = os.path.join(vm, "bench-revoke.json")
    if os.path.exists(revoke_path):
        with open(revoke_path) as f:
            report["revoke"] = json.load(f)
        rows += ["", "| attachments | REVOKE median us (min) | per attachment ns |", "|---:|---:|---:|"]
        for r in report["revoke"]:
            rows.append(f"| {r['attachments']} | {r['revoke']['median_ns'] / 1e3:.1f} "
                        f"({r['revoke']['min_ns'] / 1e3:.1f}) | {r['per_attachment_ns']} |")
    exports = {}
    for kind in ("1range", "3ranges"):
        path = os.path.join(vm, f"bench-export-{kind}.json")
        if os.path.exists(path):
            with open(path) as f:
                exports[kind] = json.load(f)
    if exports:
        report["export"] = exports
        rows += ["", "| EXPORT | median us (min) | close median us |", "|---|---:|---:|"]
        for kind, r in exports.items():
            rows.append(f"| {r['ranges']} range(s) | {r['export']['median_ns'] / 1e3:.1f} "
                        f"({r['export']['min_ns'] / 1e3:.1f}) | {r['close']['median_ns'] / 1e3:.1f} |")
    table = "\n".join(rows)
    header = (f"Walk benchmarks: kernel {kernel} (perf config), {qemu}, "
              f"{'KVM' if accel == 'kvm' else 'TCG (no KVM)'}; times are the importer's own, "
              "in the kernel, for one whole walk.\n")
    report["plot"] = plot(directory, runs)
    with open(os.path.join(directory, "bench.json"), "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    with open(os.path.join(directory, "bench.md"), "w") as f:
        f.write(header + "\n" + table + "\n")
    print(header)
    print(table)
    print(f"\nbench: {len(runs)} walks; {directory}/bench.json, {directory}/bench.md; plot: {report['plot']}")
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
