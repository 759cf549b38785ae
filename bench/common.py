"""Shared pieces of the benchmarks: the figure record, comparisons, timing and memory.

A benchmark's ``run(quick)`` returns ``{"figures": [figure(...), ...], "details": {...}}``.
A figure is a plain dict (JSON-ready)::

    {"name": "claim ops/s", "value": 1234.5, "unit": "ops/s",
     "baseline": 2345.6, "baseline_name": "raw sqlite3", "ratio": 0.53,
     "target": ">= 0.98", "met": True, "note": "..."}

``ratio`` is ``value / baseline`` (both measured in the same run); ``target`` is compared with
``ratio`` when ``target_on="ratio"``, else with ``value``; ``met`` is None when there is no
target.
"""

from __future__ import annotations

import math
import operator
import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
}

class Skipped(Exception):
    """Raised by a benchmark's ``run`` that cannot run here; the message says why.

    The run reports it as ``status: "skipped"`` with the reason, and does not fail.
    """


#: Keys every figure carries (the e2e test checks them).
FIGURE_KEYS = ("name", "value", "unit", "baseline", "baseline_name", "ratio", "target", "met",
               "note")


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return round(value, 6)
    return value


def figure(
    name: str,
    value: float | None,
    unit: str,
    *,
    baseline: float | None = None,
    baseline_name: str | None = None,
    target: str | None = None,
    target_on: str = "value",
    note: str = "",
) -> dict[str, Any]:
    """Build one figure; ``target`` is ``"<op> <number>"`` such as ``">= 0.98"``.

    Args:
        name: what is measured, e.g. ``"busy fraction"``.
        value: the measurement (None when it could not be measured).
        unit: ``"ops/s"``, ``"s"``, ``"MB"``, ``"calls/upload"``, ``"x ideal"``, ...
        baseline: the same measurement of the baseline in the same run.
        baseline_name: what the baseline is (``"raw sqlite3"``, ``"naive poller"``).
        target: the goal, compared with the value or the ratio.
        target_on: ``"value"`` or ``"ratio"``.
        note: one sentence for the reader.

    Raises:
        ValueError: a malformed ``target``.
    """
    ratio = None
    if value is not None and baseline not in (None, 0):
        assert baseline is not None
        ratio = value / baseline
    met = None
    if target is not None:
        op, _, limit = target.partition(" ")
        if op not in _OPS:
            raise ValueError(f"bad target {target!r}")
        subject = ratio if target_on == "ratio" else value
        met = None if subject is None else bool(_OPS[op](float(subject), float(limit)))
        if target_on == "ratio":
            target = f"ratio {target}"
    return {
        "name": name,
        "value": _clean(float(value) if value is not None else None),
        "unit": unit,
        "baseline": _clean(float(baseline) if baseline is not None else None),
        "baseline_name": baseline_name,
        "ratio": _clean(ratio),
        "target": target,
        "met": met,
        "note": note,
    }


def normalise(result: Any) -> dict[str, Any]:
    """Accept a benchmark's return value and give it the ``{"figures", "details"}`` shape.

    A result without a ``figures`` list (a module written to another shape) is flattened:
    every numeric leaf becomes a figure with no target, named by its dotted path.
    """
    if not isinstance(result, dict):
        return {"figures": [], "details": {"raw": repr(result)}}
    figures = result.get("figures")
    if isinstance(figures, list) and all(isinstance(f, dict) and "name" in f for f in figures):
        out = []
        for f in figures:
            full = {key: f.get(key) for key in FIGURE_KEYS}
            full["unit"] = full["unit"] or ""
            full["note"] = full["note"] or ""
            out.append(full)
        details = {k: v for k, v in result.items() if k != "figures"}
        return {"figures": out, "details": details.get("details", details)}
    flat: list[dict[str, Any]] = []

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, bool):
            return
        if isinstance(node, int | float):
            flat.append(figure(prefix, node, "", note="reported by the module as a plain number"))
        elif isinstance(node, dict):
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)

    walk("", result)
    return {"figures": flat, "details": result}


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds`` (wall clock, perf_counter)."""

    def __enter__(self) -> Self:
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Run ``fn`` ``repeat`` times; return the median wall time in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def self_peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (10**6 bytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def proc_peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (``VmHWM``) of a running process, MB; None if unreadable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    return None


def cpu_count() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1
