"""Runs every benchmark, one after another, and prints one table: figure, ours, anchor, ratio, target, met?

Each bench script prints its figures as JSON rows on the last line of stdout when given `--json` (bench/rows.py).
With `--runs N` every bench runs N times and each cell shows the range over the runs (min–max); "met" is yes only
when every run met the target. A bench that cannot run here (a missing binary) is listed with its reason.

Run: python bench/run_all.py [--runs 3] [--only ack_latency,startup] [--skip backup_stream] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Each bench and the arguments for a run of a few minutes at most on a 2-core machine.
BENCHES: dict[str, list[str]] = {
    "alert_ingest": [],
    "ack_latency": [],
    "startup": [],
    "history": [],
    "memory": [],
    "status_page": ["--seconds", "5"],
    "backup_stream": ["--gb", "0.25"],
}


@dataclass
class Figure:
    """One figure gathered over runs."""

    unit: str
    target: str
    ours: list[float] = field(default_factory=list)
    anchors: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    met: list[bool | None] = field(default_factory=list)


def run_bench(name: str, extra: list[str]) -> tuple[list[dict[str, Any]], str]:
    """Runs one bench with --json; returns its rows, or no rows and why."""
    script = ROOT / "bench" / f"{name}.py"
    if not script.exists():
        return [], "no such bench script"
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script), *extra, "--json"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    took = time.monotonic() - started
    lines = result.stdout.strip().splitlines()
    try:
        rows = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        rows = None
    if result.returncode != 0 or not isinstance(rows, list):
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        return [], f"exit {result.returncode}: " + " | ".join(tail)
    print(f"  {name}: {len(rows)} figures in {took:.0f} s", file=sys.stderr, flush=True)
    return rows, ""


def span(values: list[float], digits: int = 2) -> str:
    """A value or a min–max range, written compactly."""
    if not values:
        return "–"
    low, high = min(values), max(values)

    def fmt(value: float) -> str:
        if abs(value) >= 100:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"

    return fmt(low) if fmt(low) == fmt(high) else f"{fmt(low)}–{fmt(high)}"


def verdict(met: list[bool | None]) -> str:
    """yes when every run met the target, no when any missed, – when the figure has no target."""
    judged = [m for m in met if m is not None]
    if not judged:
        return "–"
    return "yes" if all(judged) else ("no" if not any(judged) else f"{sum(judged)}/{len(judged)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated bench names")
    parser.add_argument("--skip", default="", help="comma-separated bench names")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    skip = {n for n in args.skip.split(",") if n}
    unknown = (only | skip) - BENCHES.keys()
    if unknown:
        parser.error(f"unknown bench {', '.join(sorted(unknown))}; known: {', '.join(BENCHES)}")
    names = [n for n in BENCHES if (not only or n in only) and n not in skip]
    figures: dict[str, Figure] = {}
    failures: dict[str, str] = {}
    for run in range(1, args.runs + 1):
        print(f"run {run} of {args.runs}", file=sys.stderr, flush=True)
        for name in names:
            rows, why = run_bench(name, BENCHES[name])
            if why:
                failures[name] = why
                print(f"  {name}: {why}", file=sys.stderr, flush=True)
            for r in rows:
                figure = figures.setdefault(r["figure"], Figure(unit=r.get("unit", ""), target=r.get("target", "")))
                figure.ours.append(float(r["ours"]))
                if r.get("anchor") is not None:
                    figure.anchors.append(float(r["anchor"]))
                if r.get("ratio") is not None:
                    figure.ratios.append(float(r["ratio"]))
                figure.met.append(r.get("met"))
    header = ["figure", "ours", "anchor", "ratio", "unit", "target", "met?"]
    table = [
        [name, span(f.ours), span(f.anchors), span(f.ratios), f.unit, f.target, verdict(f.met)]
        for name, f in figures.items()
    ]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in table:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(str(c)) for c in column) for column in zip(header, *table, strict=False)]
        for line in [header, *table]:
            print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))
    for name, why in failures.items():
        print(f"{name}: not measured ({why})")
    print(f"{args.runs} run(s) on this machine; ranges are min–max over the runs.")


if __name__ == "__main__":
    main()
