#!/usr/bin/env python3
"""Summarizes runs of the 5-host rolling rollout (bench/fleet.sh).

Reads one JSON line per run on stdin (what the fleet_hosts scenario prints
after "hosts-rolling: timings "), writes the figures to the JSON file named
by the first argument, and prints a summary.
"""
import json
import os
import statistics
import subprocess
import sys


def stats(xs):
    return {
        "median": round(statistics.median(xs), 2),
        "min": round(min(xs), 2),
        "max": round(max(xs), 2),
    }


def waves(run):
    """Members in the order they first answered v2; each wave lasts from
    the previous one answering v2 (the promotion, for the first) to this."""
    at = sorted(m["answered_new_s"] for m in run["members"])
    return [round(b - a, 2) for a, b in zip([0.0] + at, at)]


def main():
    runs = [json.loads(line) for line in sys.stdin if line.strip()]
    total = [r["promote_to_all_healthy_s"] for r in runs]
    swaps = [s[1] for r in runs for m in r["members"] for s in m["swapping_s"]]
    per_run = [waves(r) for r in runs]
    per_wave = [stats([w[k] for w in per_run]) for k in range(len(per_run[0]))]
    swap = statistics.median(swaps)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    result = {
        "scenario": "rolling, max_unavailable = 1, 5 hosts, cairn server (SSE)",
        "commit": commit,
        "nproc": os.cpu_count(),
        "loadavg_after": open("/proc/loadavg").read().split()[:3],
        "runs": len(runs),
        "promote_to_all_healthy_s": stats(total),
        "swap_s": stats(swaps),
        "per_wave_s": per_wave,
        "target_s": round(1.5 * 5 * swap, 2),
        "ratio_to_target": round(statistics.median(total) / (1.5 * 5 * swap), 2),
        "raw": runs,
    }
    with open(sys.argv[1], "w") as f:
        json.dump(result, f, indent=1)
    t, s = result["promote_to_all_healthy_s"], result["swap_s"]
    print("promote -> all healthy: median %s s (min %s, max %s), %d runs"
          % (t["median"], t["min"], t["max"], len(runs)))
    print("one swap (status updating): median %s s (min %s, max %s)"
          % (s["median"], s["min"], s["max"]))
    print("target 1.5 x 5 x swap = %s s; median / target = %s"
          % (result["target_s"], result["ratio_to_target"]))
    for k, w in enumerate(per_wave, 1):
        print("wave %d: median %s s (min %s, max %s)" % (k, w["median"], w["min"], w["max"]))


main()
