"""``python -m bench --quick`` runs every benchmark and writes every figure (so they cannot rot)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Benchmark -> figure names (prefixes) it must report in quick mode.
EXPECTED = {
    "store": ["store enqueue ops/s", "store claim ops/s", "store transition ops/s",
              "collect_status", "`leadflow status --json`"],
    "slots": ["small (12 uploads): busy fraction", "small (12 uploads): makespan / ideal",
              "small (12 uploads): status calls per upload",
              "small (12 uploads): total calls per upload",
              "big (2 uploads): busy fraction", "big (2 uploads): makespan / ideal",
              "big (2 uploads): status calls per upload",
              "big (2 uploads): total calls per upload"],
    "pressure": ["makespan / ideal", "1016 answers per upload", "606 answers",
                 "602 answers", "total calls per upload", "uploads complete"],
    "scale": ["time until", "files queued per second", "daemon peak RSS"],
    "prepare": [],
    "packing": ["Marketo jobs", "API calls per file", "time until the last report",
                "busy fraction of the 2 slots", "files complete"],
    "simulator": ["upload parse+validate speed", "status calls per second"],
}
FIGURE_KEYS = {"name", "value", "unit", "baseline", "baseline_name", "ratio", "target", "met",
               "note"}


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_bench_quick_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env["LEADFLOW_HTTP__LISTEN"] = ""  # parallel tests must not share port 9464
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert data["mode"] == "quick"
    assert set(data["benchmarks"]) == set(EXPECTED)
    for name, wanted in EXPECTED.items():
        bench = data["benchmarks"][name]
        assert bench["status"] == "ok", (name, bench.get("error"), bench.get("stderr_tail"))
        assert bench["figures"], name
        names = [f["name"] for f in bench["figures"]]
        for prefix in wanted:
            assert any(n.startswith(prefix) for n in names), (name, prefix, names)
        for fig in bench["figures"]:
            assert set(fig) == FIGURE_KEYS, fig
            assert isinstance(fig["value"], int | float), (name, fig)
    # The full results are not overwritten by a quick run.
    assert "benchmark" in proc.stdout and str(out) in proc.stdout
