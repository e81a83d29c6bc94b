#!/usr/bin/env python3
"""Summary tables of bench/store.sh: python3 bench/summary.py bench/results"""
import json, os, sys
out = sys.argv[1]

def md(text):
    return text.replace('|', '\\|')

titles = {
    "add-20k": "1. 20,000-file tree (~166 MiB) into an empty store (cold cache)",
    "add-1g": "2. 1 GiB file into an empty store (cold cache)",
    "readd-20k-cold": "3a. Re-adding the unchanged tree (cold cache)",
    "readd-20k-warm": "3b. Re-adding the unchanged tree (warm cache)",
    "checkout-20k": "4. Checkout of the tree into an empty directory (cold cache)",
    "verify-20k": "5a. Verify: store holding the tree (cold cache)",
    "verify-1g": "5b. Verify: store holding the 1 GiB file (cold cache)",
}
load = {}
if os.path.exists(f"{out}/load.txt"):
    for line in open(f"{out}/load.txt"):
        name, rest = line.split(":", 1)
        load.setdefault(name, []).append(rest.split(":", 1)[1].strip())
med = {}
for name, title in titles.items():
    path = f"{out}/{name}.json"
    if not os.path.exists(path):
        continue
    results = json.load(open(path))["results"]
    cairn = [r for r in results if r["command"].startswith("cairn")]
    anchors = [r for r in results if not r["command"].startswith("cairn")]
    print(f"### {title}\n")
    if name in load:
        print(f"load average (1/5/15 min) before → after: {' → '.join(load[name])}\n")
    hdr = "| command | median (s) | min–max (s) | " + " | ".join(f"cairn ÷ {md(r['command'])}" for r in anchors) + " |"
    print(hdr)
    print("|" + "---|" * (3 + len(anchors)))
    for r in results:
        med[(name, r["command"])] = r["median"]
        ratios = ""
        if r in cairn:
            ratios = " | ".join(f"{r['median'] / a['median']:.2f}×" for a in anchors)
        else:
            ratios = " | ".join("" for _ in anchors)
        print(f"| `{md(r['command'])}` | {r['median']:.3f} | {r['min']:.3f}–{r['max']:.3f} | {ratios} |")
    print()

def m(n, c):
    return med.get((n, c))
print("### Targets\n")
print("| target | figures | met? |")
print("|---|---|---|")
def row(desc, ok, figures):
    print(f"| {desc} | {figures} | {'**met**' if ok else '**not met**'} |")
c, n, g = m("add-20k", "cairn store add"), m("add-20k", "nix-store --add"), m("add-20k", "git add -A")
if c and n:
    row("20k add faster than `nix-store --add` (required)", c < n, f"{c:.2f} s vs {n:.2f} s ({n / c:.2f}× faster)")
    row("20k add ≥2× faster than `nix-store --add` (stretch)", n / c >= 2, f"{n / c:.2f}×")
if c and g:
    row("20k add ≥3× faster than `git add -A`", g / c >= 3, f"{c:.2f} s vs {g:.2f} s ({g / c:.2f}× faster)")
c, o = m("add-1g", "cairn store add"), m("add-1g", "openssl sha256")
if c and o:
    row("1 GiB add ≤1.2× `openssl dgst -sha256`", c / o <= 1.2, f"{c:.2f} s vs {o:.2f} s ({c / o:.2f}×)")
c, a = m("add-1g", "cairn store add"), m("add-1g", "openssl sha256 & cp && sync")
if c and a:
    row("1 GiB add ≤1.1× `openssl dgst -sha256 F & cp F G && sync; wait` (issue 9)", c / a <= 1.1, f"{c:.2f} s vs {a:.2f} s ({c / a:.2f}×)")
if os.path.exists(f"{out}/rss.txt"):
    rss = [int(l.split()[-2]) for l in open(f"{out}/rss.txt") if l.startswith("add-1g")]
    if rss:
        row("1 GiB add peak RSS < 64 MiB", max(rss) < 64 * 1024, f"max {max(rss) / 1024:.1f} MiB over {len(rss)} runs")
for kind in ("cold", "warm"):
    c, s = m(f"readd-20k-{kind}", "cairn store add"), m(f"readd-20k-{kind}", "git status")
    if c and s:
        row(f"re-add unchanged tree ≤2× `git status` ({kind})", c / s <= 2, f"{c:.3f} s vs {s:.3f} s ({c / s:.2f}×)")
