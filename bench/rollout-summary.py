#!/usr/bin/env python3
"""Combines bench/rollout.sh's results (bench/results/rollout-*.json) into
one table and one small JSON for bench/raw/. Chunks of the 10,000-agent
sweep are merged: runs and failures add up, maxima are the largest, and a
median is the median of the chunks' medians (each chunk's is exact)."""
import glob, json, os, statistics, sys

here = os.path.dirname(os.path.abspath(__file__))
results = os.path.join(here, "results")
keys = ["requests_per_agent", "rollout_reads_per_agent", "rollout_writes_per_agent",
        "member_reads_per_agent", "member_writes_per_agent", "bytes_read_per_agent",
        "duration_seconds"]
by_size = {}
for path in sorted(glob.glob(os.path.join(results, "rollout-*.json"))):
    doc = json.load(open(path))
    if doc.get("kind") != "rolling":
        continue
    for s in doc["sizes"]:
        by_size.setdefault(s["agents"], []).append(s)

rows = []
for agents in sorted(by_size):
    parts = by_size[agents]
    row = {"agents": agents, "runs": sum(p["runs"] for p in parts),
           "failed": sum(p["failed"] for p in parts),
           "max_unavailable": max(p["max_unavailable"] for p in parts),
           "allowed_unavailable": parts[0]["allowed_unavailable"]}
    for k in keys:
        row[k] = {"median": round(statistics.median(p[k]["median"] for p in parts), 2),
                  "max": max(p[k]["max"] for p in parts)}
    rows.append(row)

print("| agents | runs | violations | requests / agent, median (max) | rollout reads | rollout writes "
      "| member reads | member writes | KB read / agent | simulated s, median (max) | most unavailable / allowed |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    m = lambda k: r[k]["median"]
    print(f"| {r['agents']:,} | {r['runs']} | {r['failed']} | {m('requests_per_agent')} "
          f"({r['requests_per_agent']['max']}) | {m('rollout_reads_per_agent')} | "
          f"{m('rollout_writes_per_agent')} | {m('member_reads_per_agent')} | "
          f"{m('member_writes_per_agent')} | {m('bytes_read_per_agent') / 1000:.1f} | "
          f"{m('duration_seconds'):.0f} ({r['duration_seconds']['max']:.0f}) | "
          f"{r['max_unavailable']} / {r['allowed_unavailable']} |")
if len(sys.argv) > 1:
    json.dump({"kind": "rolling", "max_unavailable": "10%", "sizes": rows},
              open(sys.argv[1], "w"), indent=1)
