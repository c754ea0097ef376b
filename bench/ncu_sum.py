#!/usr/bin/env python3
"""bench/ncu_sum.py CSV [TOP] - sums Nsight Compute's per-kernel durations by kernel name.

Input: `ncu --metrics gpu__time_duration.sum --csv --graph-profiling node PROGRAM ... > CSV`
(every kernel launch, CUDA-graph nodes included, timed alone). Prints the total and the TOP
kernels by time with calls and time per call: where a decoding step's time goes without
KILN_PROFILE's per-layer synchronization. Not a benchmark: ncu serializes kernels."""
import collections
import csv
import sys


def main():
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    hdr, agg = None, collections.defaultdict(lambda: [0, 0.0])
    for r in csv.reader(open(sys.argv[1])):
        if "Kernel Name" in r and "Metric Value" in r:
            hdr = r
            continue
        if not hdr or len(r) != len(hdr):
            continue
        d = dict(zip(hdr, r))
        if d.get("Metric Name") != "gpu__time_duration.sum":
            continue
        v = float(d["Metric Value"].replace(",", ""))
        unit = d.get("Metric Unit", "nsecond")
        v *= 1e3 if unit.startswith("us") else 1e6 if unit.startswith("ms") else 1.0
        a = agg[d["Kernel Name"][:100]]
        a[0] += 1
        a[1] += v
    total = sum(a[1] for a in agg.values())
    print(f"total {total / 1e3:.1f} us over {sum(a[0] for a in agg.values())} kernels")
    for k, a in sorted(agg.items(), key=lambda kv: -kv[1][1])[:top]:
        print(f"{a[1] / 1e3:10.1f} us {a[0]:6d} calls {a[1] / a[0] / 1e3:8.2f} us/call  {k}")


if __name__ == "__main__":
    main()
