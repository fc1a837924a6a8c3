#!/usr/bin/env python3
"""Candidates per minute of `nightshift run` journals (bench/scale/run.sh).

For each journal: the GPUs it ran on (the ordinals its evaluations name), its wall
minutes (first record to `run_finished`), the candidates decided (commit or revert:
the controller's own work) and measured (every candidate evaluation, those measured
ahead and never asked for included) per minute, and the decided rate over the first
journal's. Every figure is read from the journal; nothing is estimated.
"""
import json
import sys


def read(path):
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                return  # a cut last line


def summary(path):
    recs = list(read(path))
    if not recs:
        return None
    t0 = recs[0]["t_ms"]
    t1 = max(r["t_ms"] for r in recs)
    gpus, decided, measured, ahead = set(), 0, 0, 0
    listed = [0]
    for r in recs:
        e = r["event"]
        kind = e.get("kind")
        if kind == "evaluated":
            if e.get("gpu") is not None:
                gpus.add(e["gpu"])
            if e.get("pattern") is not None:
                measured += 1
                ahead += bool(e.get("ahead"))
        elif kind in ("commit", "revert"):
            decided += 1
        elif kind == "run_started":
            opts = e.get("options") or {}
            listed = opts.get("gpus") or [opts.get("gpu", 0)]
    minutes = (t1 - t0) / 60000.0
    return {
        "journal": path,
        "gpus": len(listed),
        "ordinals_seen": sorted(gpus),
        "wall_min": minutes,
        "decided": decided,
        "measured": measured,
        "measured_ahead": ahead,
        "decided_per_min": decided / minutes if minutes > 0 else float("nan"),
        "measured_per_min": measured / minutes if minutes > 0 else float("nan"),
    }


def main(paths):
    rows = [s for s in map(summary, paths) if s]
    if not rows:
        print("no journal read", file=sys.stderr)
        return 1
    base = rows[0]
    print("gpus  wall min  decided  measured (ahead)  decided/min  measured/min  x first  target 0.9xN")
    for s in rows:
        x = s["decided_per_min"] / base["decided_per_min"] if base["decided_per_min"] else float("nan")
        n = s["gpus"] / base["gpus"]
        print(f"{s['gpus']:>4}  {s['wall_min']:8.2f}  {s['decided']:7d}  {s['measured']:8d} ({s['measured_ahead']:4d})"
              f"  {s['decided_per_min']:11.1f}  {s['measured_per_min']:12.1f}  {x:7.2f}  {'met' if x >= 0.9 * n else 'missed'}")
    print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
