"""The row every bench script reports with `--json`, and how it is printed, so bench/run_all.py can collect them.

A row is one figure: ours, the anchor measured in the same run (or None when there is none), their ratio, the unit,
the target in words and whether it was met. A bench prints the list of its rows as JSON on the last line of stdout.
"""

from __future__ import annotations

import json
from typing import Any


def row(
    figure: str,
    ours: float,
    *,
    unit: str,
    target: str,
    anchor: float | None = None,
    ratio: float | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """One figure as bench/run_all.py reads it; the ratio is ours/anchor unless given."""
    if ratio is None and anchor:
        ratio = ours / anchor
    return {
        "figure": figure,
        "ours": ours,
        "anchor": anchor,
        "ratio": ratio,
        "unit": unit,
        "target": target,
        "met": met,
    }


def emit(rows: list[dict[str, Any]]) -> None:
    """Prints the rows as the last line of stdout."""
    print(json.dumps(rows), flush=True)
