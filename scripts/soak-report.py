#!/usr/bin/env python3
"""Tables for a soak (scripts/soak.sh): RSS (and anonymous RSS) per process and data-directory size per node
at each 10-minute mark, and RSS growth from minute 10 to the end.

Usage: scripts/soak-report.py <results.json> <disk.csv> [minutes between marks, default 10]
"""
import csv
import json
import sys
from collections import defaultdict


def at(series, t):
    """Median of the samples within 30 s before t (smooths sampling noise)."""
    window = sorted(v for (s, v) in series if t - 30 <= s <= t)
    if not window:
        return None
    return window[len(window) // 2]


def rss_table(point, marks, key, title):
    print(f"{title}\n")
    print("| process | " + " | ".join(f"{m // 60} min" for m in marks) + f" | {marks[0] // 60} → {marks[-1] // 60} min |")
    print("|---|" + "---:|" * (len(marks) + 1))
    for ps in sorted(point["process_series"], key=lambda p: p["name"]):
        vals = [at(ps.get(key, []), m) for m in marks]
        cells = ["" if v is None else f"{v / 2**20:,.0f}" for v in vals]
        growth = ""
        if vals[0] and vals[-1]:
            growth = f"{(vals[-1] / vals[0] - 1) * 100:+.1f}%"
        print(f"| {ps['name']} | " + " | ".join(cells) + f" | {growth} |")
    print()


def main():
    results, disk_csv = sys.argv[1], sys.argv[2]
    step = int(sys.argv[3]) if len(sys.argv) > 3 else 10
    r = json.load(open(results))
    point = r["configurations"][0]["points"][0]
    dur = point["duration_s"]
    marks = [m * 60 for m in range(step, int(dur // 60) + 1, step)]
    print(f"offered {point['offered_tps']:.0f} tx/s, executed {point['executed_tps']:.0f} tx/s, "
          f"e2e p50 {point['e2e']['p50_ms']:.0f} ms / p99 {point['e2e']['p99_ms']:.0f} ms, "
          f"rejected after accept {point['exec']['rejected']}, revision {r['git']['revision'][:7]}\n")
    rss_table(point, marks, "rss", "RSS (MiB)")
    if any(ps.get("rss_anon") for ps in point["process_series"]):
        rss_table(point, marks, "rss_anon",
                  "Anonymous RSS (MiB): heap and other allocated memory, without mapped files")
    # disk.csv: t_s counts from the script's start (load starts after preparation);
    # report by the last samples per node at marks measured from the load's start.
    rows = list(csv.DictReader(open(disk_csv)))
    series = defaultdict(list)
    for row in rows:
        series[row["node"]].append((int(row["t_s"]), int(row["bytes"])))
    end = max(t for s in series.values() for (t, _) in s)
    load_start = end - dur  # the devnet stops shortly after the load ends
    print("\nData directory (MiB; times from the load's start, approximate)\n")
    print("| node | " + " | ".join(f"{m // 60} min" for m in marks) + " |")
    print("|---|" + "---:|" * len(marks))
    for node in sorted(series):
        vals = [at(series[node], load_start + m) for m in marks]
        print(f"| {node} | " + " | ".join("" if v is None else f"{v / 2**20:,.0f}" for v in vals) + " |")


if __name__ == "__main__":
    main()
