"""Summarize several runs: median, min and max of req/s and p99, and the median of the
per-run req/s ratio to the floor (each run's ratio uses that run's floor).

Usage: python summarize.py out/runs/*-run*/results.json
"""

import json
import statistics
import sys

rows: dict[tuple, list[dict]] = {}
for path in sys.argv[1:]:
    results = json.load(open(path))["results"]
    floor = {(r["model"], r["scenario"]): r["req_s"] for r in results if r["server"] == "floor"}
    for r in results:
        r["ratio"] = r["req_s"] / floor[(r["model"], r["scenario"])]
        rows.setdefault((r["server"], r["model"], r["scenario"]), []).append(r)

print(f"{len(sys.argv) - 1} runs\n")
print(
    "| server | model | scenario | req/s median (min-max) | rows/s median | p99 ms median (min-max) "
    "| req/s÷floor median (min-max) | all ok |"
)
print("|---|---|---|---|---|---|---|---|")
for (srv, model, scen), rs in sorted(
    rows.items(), key=lambda kv: (kv[0][1] != "logreg", kv[0][2] != "single")
):
    q = lambda k: [r[k] for r in rs]
    med = statistics.median
    print(
        f"| {srv} | {model} | {scen} | {med(q('req_s')):.0f} ({min(q('req_s')):.0f}-{max(q('req_s')):.0f}) "
        f"| {med(q('rows_s')):.0f} | {med(q('p99_ms')):.1f} ({min(q('p99_ms')):.1f}-{max(q('p99_ms')):.1f}) "
        f"| {med(q('ratio')):.2f} ({min(q('ratio')):.2f}-{max(q('ratio')):.2f}) "
        f"| {'yes' if all(q('valid')) else 'NO'} |"
    )
