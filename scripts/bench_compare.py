"""Medians of the runs bench_compare.sh wrote, per metric and side, and head/base."""

import re
import statistics
import sys
from pathlib import Path

runs, base_rev, records = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
values = {}  # (metric, side) -> [floats]


def add(metric, side, value):
    values.setdefault((metric, side), []).append(value)


def seconds(text):
    number, unit = re.fullmatch(r"([\d.]+)(ns|µs|us|ms|s)", text).groups()
    scale = {"ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]
    return float(number) * scale


for path in sorted(runs.glob("*.txt")):
    kind, side, _ = path.stem.split("-")
    for line in path.read_text().splitlines():
        if kind == "bench":
            match = re.fullmatch(r"@result (\S+) (\S+)", line)
            if match:
                add(match[1], side, float(match[2]))
        elif line.endswith(("PASS", "MISS")):
            name, rest = line[:28].strip(), line[28:].split()
            add(f"sync {name}: time s", side, seconds(rest[1]))
            add(f"sync {name}: wire bytes", side, float(rest[3]))

print(f"\nmedians of {len(list(runs.glob('sync-base-*')))} runs, {records} records; "
      f"base = {base_rev}, head = working tree\n")
print(f"{'metric':<52} {'base':>14} {'head':>14} {'head/base':>10}")
for metric in sorted({m for m, _ in values}):
    base, head = values.get((metric, "base")), values.get((metric, "head"))
    if not base or not head:
        continue
    b, h = statistics.median(base), statistics.median(head)
    ratio = f"{h / b:.3f}" if b else "-"
    print(f"{metric:<52} {b:>14.6g} {h:>14.6g} {ratio:>10}")
