"""`leadflow demo --small` as a subprocess: every figure it prints is checked against the
report files it points to and against the simulator's lead store (read by the demo through the
admin API before the simulator stopped, into ``summary.json``)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import cli
from orchestrator.demo.files import ROUTE_LIST_ID

ROWS = ("imported", "failed", "warned", "rejected")


def _run_demo(demo_dir: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LEADFLOW_")}
    env["LEADFLOW_HTTP__LISTEN"] = ""  # parallel tests must not share port 9464
    env["COLUMNS"] = "220"  # one table row per line
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "demo", "--small", "--dir", str(demo_dir)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=55, check=False,
    )


@pytest.mark.e2e
def test_demo_small_every_figure_matches_reports_and_lead_store(tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    started = time.monotonic()
    done = _run_demo(demo_dir, tmp_path)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    assert elapsed < 50

    summary: dict[str, Any] = json.loads((demo_dir / "summary.json").read_text())
    assert summary["ok"] is True and summary["problems"] == []
    files = summary["files"]
    assert len(files) == 8

    sim = summary["simulator"]
    sim_batches = {b["batchId"]: b for b in sim["batch_list"]}
    imported = batches = 0
    for entry in files:
        report = json.loads(Path(entry["report"]).read_text())
        # The summary's figures are the report's figures...
        assert entry["status"] == report["status"] == entry["expected"]["status"], entry["file"]
        assert entry["rows"] == {k: report["rows"][k] for k in entry["rows"]}
        assert entry["rows"] == entry["expected"]["rows"], entry["file"]
        assert entry["batch_ids"] == [u["batchId"] for u in report["uploads"]]
        rows = report["rows"]
        assert rows["total"] == rows["imported"] + rows["failed"] + rows["rejected"]
        assert len(report["uploads"]) >= entry["expected"]["min_uploads"]
        imported += rows["imported"]
        batches += len(report["uploads"])
        # Each upload's figures are those of its batch in the simulator.
        for upload in report["uploads"]:
            batch = sim_batches[upload["batchId"]]
            assert batch["status"] == "Complete"
            assert (batch["imported"], batch["failed"], batch["warned"]) == (
                upload["numOfLeadsProcessed"], upload["numOfRowsFailed"],
                upload["numOfRowsWithWarning"],
            )
        assert sum(u["numOfLeadsProcessed"] for u in report["uploads"]) == rows["imported"]
        assert sum(u["numOfRowsWithWarning"] for u in report["uploads"]) == rows["warned"]
        # ...and the printed line shows the same numbers.
        line = next(ln for ln in done.stdout.splitlines() if f" {entry['file']} " in ln)
        numbers = [int(n.replace(",", "")) for n in re.findall(r"(?<=\s)[\d,]+(?=\s)", line)]
        assert numbers[:5] == [*(rows[k] for k in ROWS), len(report["uploads"])], line
        # The first lead of every file reached Marketo with its name intact.
        if entry["spot"]:
            assert entry["spot"]["found"]["firstName"] == entry["spot"]["sent"]["firstName"]
            assert entry["spot"]["found"]["lastName"] == entry["spot"]["sent"]["lastName"]

    by_name = {e["file"]: e for e in files}
    assert len(by_name["crm-export-2026-q1.csv"]["batch_ids"]) >= 3  # split into uploads
    assert by_name["newsletter-signups.csv"]["rows"]["rejected"] > 0
    assert by_name["newsletter-signups.csv"]["rows"]["warned"] > 0
    assert by_name["empty-export.csv"]["batch_ids"] == []
    route = by_name["webinar/webinar-attendees-2026-03.csv"]
    assert ROUTE_LIST_ID in route["spot"]["found"]["listIds"]
    assert by_name["messe-muenchen-leads.csv"]["encoding"] not in (None, "utf-8")

    # The simulator's lead store holds exactly the imported rows, from exactly our batches.
    assert sim["list_members"] == {str(ROUTE_LIST_ID): route["rows"]["imported"]}
    assert sim["leads"] == imported == summary["totals"]["imported"]
    assert sim["batches"] == batches
    assert sim["rows_imported_by_batches"] == imported
    assert sim["peak_queued_or_importing"] <= 10
    assert f"{sim['leads']:,} leads" in done.stdout
    assert "Every file reached its expected result" in done.stdout

    # Files on disk: sources archived or rejected, logs as JSON lines, nothing left behind.
    assert not [p for p in (demo_dir / "inbox").rglob("*") if p.is_file()]
    assert (demo_dir / "archive").is_dir() and (demo_dir / "rejected").is_dir()
    events = [json.loads(line)["event"] for line in
              (demo_dir / "leadflow.log").read_text().splitlines()]
    assert "daemon_started" in events and "daemon_stopped" in events
    assert events.count("file_finished") >= 8 or events.count("results_written") >= 8

    # The suggested status command, typed in another folder, shows the demo's folders.
    suggested = next(ln for ln in done.stdout.splitlines() if ln.strip().startswith("status:"))
    argv = suggested.split("status:", 1)[1].split()
    assert argv[:2] == ["leadflow", "status"], suggested
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LEADFLOW_")}
    shown = subprocess.run([sys.executable, "-m", "orchestrator", *argv[1:]], cwd=elsewhere,
                           env=env, capture_output=True, text=True, timeout=30, check=False)
    assert shown.returncode == 0, shown.stderr
    assert f"database: {demo_dir / 'leadflow.db'}" in shown.stdout
    assert str(demo_dir / "results" / "crm-export-2026-q1.csv.") in shown.stdout
    assert "var/results" not in shown.stdout


async def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    assert await cli(["demo", "--small", "--dir", str(tmp_path)]) == 2
    assert precious.read_text() == "keep me"
