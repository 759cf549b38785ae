"""``python -m bench --quick --only cluster`` runs (it is left out of the plain quick run).

With PostgreSQL here: three real nodes, a SIGKILL of the lease holder, every file reported
once, and the slots workload through three nodes on PostgreSQL beside one on SQLite. Without
it: the benchmark says it is skipped, and why, and the run does not fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from postgres_support import unavailable_reason

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
@pytest.mark.timeout(150)
def test_bench_cluster_quick(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env["LEADFLOW_HTTP__LISTEN"] = ""
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "cluster", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=130, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    bench = json.loads(out.read_text())["benchmarks"]["cluster"]
    reason = unavailable_reason()
    if reason is not None:
        assert (bench["status"], bench["error"]) == ("skipped", reason)
        return
    assert bench["status"] == "ok", (bench.get("error"), bench.get("stderr_tail"))
    figures = {f["name"]: f for f in bench["figures"]}
    takeover = bench["details"]["takeover"]
    # The holder was killed and another node took the lease and worked on.
    assert takeover["new_holder"] != takeover["killed"]
    assert takeover["lease_takeovers"][takeover["new_holder"]] == 1
    first = figures["takeover: first poll or submit by the new holder"]
    assert first["value"] > 0
    assert first["value"] >= figures["takeover: another node holds the lease"]["value"]
    # Every file ended with exactly one complete report despite the kill.
    done = figures["takeover: files with exactly one complete report"]
    assert done["met"] is True, takeover["reports"]
    # The slots workload went through both engines completely.
    slots = bench["details"]["slots"]["small"]
    for run in (slots["sqlite_1_node"], slots["postgresql_3_nodes"]):
        assert run["complete"] == run["uploads"] == 12
    assert slots["postgresql_3_nodes"]["run"]["lease_takeovers"] == 1
    for name in ("small (12 uploads): busy fraction, 3 nodes on PostgreSQL",
                 "small (12 uploads): makespan, 3 nodes on PostgreSQL"):
        assert isinstance(figures[name]["value"], float), figures[name]
