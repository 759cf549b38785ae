"""Turn the flat results of benchmarks written to another shape into figures.

``bench_simulator.run`` returns a flat ``{name: number}`` dict; the mapping below pairs each
speed with its same-run baseline. A result that already has ``figures`` is taken as it is
(`bench.common.normalise`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.common import figure, normalise


def _simulator(result: dict[str, Any]) -> dict[str, Any]:
    mb = result.get("upload_mb")
    figures = [
        figure("upload parse+validate speed", result.get("upload_mb_per_s"), "MB/s",
               baseline=result.get("baseline_csv_reader_mb_per_s"),
               baseline_name="csv.reader",
               note=f"one {mb:.1f} MB upload through the HTTP app" if mb else ""),
        figure("status calls per second", result.get("status_calls_per_s"), "calls/s",
               baseline=result.get("baseline_trivial_handler_calls_per_s"),
               baseline_name="trivial aiohttp handler",
               note="Marketo allows 5 calls/s (100 / 20 s); we use at most 2.5"),
        figure("rows applied per second at completion", result.get("apply_rows_per_s"),
               "rows/s", note="upserts into the simulated lead store"),
    ]
    return {"figures": figures, "details": result}


def _prepare(result: dict[str, Any]) -> dict[str, Any]:
    return normalise(result)


#: Benchmark name -> adapter of its ``run`` result.
ADAPTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "simulator": _simulator,
    "prepare": _prepare,
}


def adapt(name: str, result: Any) -> dict[str, Any]:
    """Return ``{"figures", "details"}`` for a benchmark's raw result."""
    if isinstance(result, dict) and "figures" not in result and name in ADAPTERS:
        return ADAPTERS[name](result)
    return normalise(result)
