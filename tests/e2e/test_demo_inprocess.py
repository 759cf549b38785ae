"""`leadflow demo` in-process: when the daemon fails, the demo still summarises and exits 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import cli
from orchestrator.daemon import lifecycle as daemon_module


async def test_demo_reports_a_crashed_daemon_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def crash(self: Any, once: bool = False) -> None:
        raise daemon_module.DaemonCrashed("daemon crashed: OSError: disk full") from OSError(
            "disk full"
        )

    monkeypatch.setattr(daemon_module.Daemon, "run", crash)
    demo_dir = tmp_path / "demo"
    assert await cli(["demo", "--small", "--dir", str(demo_dir)]) == 1

    summary = json.loads((demo_dir / "summary.json").read_text())
    assert summary["ok"] is False
    assert summary["problems"][0].startswith("the daemon stopped: daemon crashed")
    assert "disk full" in summary["problems"][0]
    # Nothing was imported, and the summary says so for every file rather than hiding it.
    assert summary["simulator"]["leads"] == 0
    assert all("no report.json was written" in " ".join(e["problems"])
               for e in summary["files"])
    out = capsys.readouterr().out
    assert "Problems:" in out and "disk full" in out


async def test_demo_interrupted_before_draining_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT during the drain: the daemon stops cleanly; the demo says it did not finish."""

    async def interrupted(self: Any, once: bool = False) -> None:
        self.stop("SIGINT")

    monkeypatch.setattr(daemon_module.Daemon, "run", interrupted)
    demo_dir = tmp_path / "demo"
    assert await cli(["demo", "--small", "--dir", str(demo_dir)]) == 1
    summary = json.loads((demo_dir / "summary.json").read_text())
    assert summary["problems"][0] == (
        "the daemon stopped before every file was done (SIGINT)"
    )


async def test_demo_small_files_shows_the_jobs_and_calls_packing_saves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo_dir = tmp_path / "demo"
    assert await cli(["demo", "--small-files", "120", "--time-scale", "200",
                      "--dir", str(demo_dir)]) == 0
    summary = json.loads((demo_dir / "summary.json").read_text())
    assert summary["ok"] is True and summary["problems"] == []
    assert (summary["files"], summary["rows"]) == (120, 360)
    assert 1 <= summary["jobs"] <= 2  # 120 files: one or two shared jobs, not 120
    assert summary["api_calls"] <= 0.05 * 120
    assert sum(summary["batches"].values()) == 120  # every file rode in a listed batch
    reports = list((demo_dir / "results").glob("*/report.json"))
    assert len(reports) == 120
    out = capsys.readouterr().out
    assert "with packing" in out and "one job per file" in out and "120 of 120" in out
