#!/usr/bin/env python3
"""Summarises the hyperfine JSON exports in bench/results (usage: summary.py RESULTS_DIR)."""
import json
import os
import sys

res = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "results")
targets = {"init-RSA-2048": 0.400, "init-ECDSA-P256": 0.030, "check-expiration": 0.010}


def ms(s):
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


# CPU time (user+sys) is printed too: unlike wall time it hardly moves when another process
# competes for the 2 cores, so it tells noise from a real change.
print("| benchmark | command | mean ± σ | median | min | max | CPU user+sys | vs first row | target (first row) |")
print("|---|---|---|---|---|---|---|---|---|")
for name in ["init-RSA-2048", "init-ECDSA-P256", "init-kubeadm-phases", "check-expiration", "keygen-openssl"]:
    p = os.path.join(res, name + ".json")
    if not os.path.exists(p):
        continue
    rs = json.load(open(p))["results"]
    base = rs[0]["mean"]
    for i, r in enumerate(rs):
        tgt = ""
        if i == 0 and name in targets:
            t = targets[name]
            tgt = f"{ms(t)}: {'met' if r['mean'] <= t else 'NOT met'}"
        if name in ("init-kubeadm-phases", "keygen-openssl"):
            rel = ""
        elif i == 0:
            rel = "1"
        elif r["mean"] > base:
            rel = f"{r['mean'] / base:.1f}x slower"
        else:
            rel = f"{base / r['mean']:.1f}x faster"
        print(f"| {name} | {r['command']} | {ms(r['mean'])} ± {ms(r['stddev'])} | {ms(r['median'])} "
              f"| {ms(r['min'])} | {ms(r['max'])} | {ms(r['user'] + r['system'])} | {rel} | {tgt} |")
