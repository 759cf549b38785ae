"""The bench runner: ``--only`` results merged into the results file, skipped benchmarks."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import postgres_support
import pytest

import bench.__main__ as runner
from bench import bench_cluster
from bench.common import Skipped, figure
from bench.harness import run_scenario
from bench.workload import Upload


def _entry(value: float) -> dict[str, Any]:
    return {"status": "ok", "figures": [figure("x", value, "s")], "details": {}, "seconds": 1.0}


def _results(generated_at: str, benchmarks: dict[str, Any]) -> dict[str, Any]:
    return {"generated_at": generated_at, "mode": "full", "command": "python -m bench",
            "host": {"cpus": 2}, "benchmarks": benchmarks, "seconds": 10.0}


def test_an_only_run_replaces_its_entries_and_keeps_the_others() -> None:
    previous = _results("2026-01-01T00:00:00Z", {"store": _entry(1.0), "slots": _entry(2.0),
                                                  "scale": _entry(3.0)})
    fresh = _results("2026-02-02T00:00:00Z", {"cluster": _entry(4.0), "slots": _entry(5.0)})
    fresh["command"] = "python -m bench --only cluster --only slots"

    merged = runner.merge_results(previous, fresh)

    # The run order of BENCHMARKS: cluster sits before scale.
    assert list(merged["benchmarks"]) == ["store", "slots", "cluster", "scale"]
    assert merged["benchmarks"]["store"] == previous["benchmarks"]["store"]
    assert merged["benchmarks"]["scale"] == previous["benchmarks"]["scale"]
    assert merged["benchmarks"]["slots"]["figures"][0]["value"] == 5.0
    assert merged["benchmarks"]["cluster"]["run"] == {
        "generated_at": "2026-02-02T00:00:00Z", "host": {"cpus": 2},
        "command": "python -m bench --only cluster --only slots"}
    # The file's own provenance is the full run's.
    assert merged["generated_at"] == "2026-01-01T00:00:00Z"
    assert "run" not in merged["benchmarks"]["store"]


def test_a_benchmark_that_cannot_run_here_is_reported_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bench_fake_skip.py").write_text(
        "from bench.common import Skipped\n"
        "def run(quick):\n"
        "    raise Skipped('no PostgreSQL found')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(runner.BENCHMARKS, "cluster", "bench_fake_skip")
    out = tmp_path / "result.json"

    assert runner._child("cluster", True, out) == 0

    body = json.loads(out.read_text())
    assert (body["status"], body["error"], body["figures"]) == (
        "skipped", "no PostgreSQL found", [])
    assert "skipped" in runner.PASSING
    table = runner.render_table({"benchmarks": {"cluster": body}})
    assert "[skipped] no PostgreSQL found" in table


def test_the_cluster_benchmark_skips_without_postgresql(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postgres_support, "EXTERNAL_URL", None)
    monkeypatch.setattr(postgres_support, "server_bin", lambda: None)
    assert sys.modules["postgres_support"] is postgres_support

    with pytest.raises(Skipped, match="no PostgreSQL found"):
        bench_cluster.run(quick=True)


def test_the_cluster_benchmark_is_left_out_of_quick_runs_only() -> None:
    assert "cluster" in runner.BENCHMARKS
    assert "cluster" in runner.NOT_QUICK


def test_several_nodes_need_postgresql(tmp_path: Path) -> None:
    uploads = [Upload(tmp_path / "u.csv", 10, 100, 0)]
    with pytest.raises(ValueError, match="PostgreSQL"):
        asyncio.run(run_scenario("leadflow", uploads, {"rows_per_second": 1.0}, 1.0, tmp_path,
                                 nodes=3))
