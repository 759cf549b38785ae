"""Issue 9.1 and 9.2: the crash soak and the fault soak, daemon and simulator as subprocesses.

Quick by default (each well under a minute); ``LEADFLOW_SOAK=1`` runs longer versions, and
``bench/soak.py`` runs them repeatedly with different seeds and prints the figures.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from reliability_harness import require_module
from reliability_scenarios import crash_loop, crash_soak, fault_soak

SOAK = os.environ.get("LEADFLOW_SOAK") == "1"


@pytest.mark.xdist_group("reliability-crash")
def test_crash_soak_fifteen_kills_lose_and_double_nothing(tmp_path: Path) -> None:
    require_module("orchestrator.intake")
    figures = crash_soak(tmp_path, seed=1130, files=30, kills=15)
    print(json.dumps(figures))
    assert figures["kills"] == 15
    assert figures["rows_checked"] > 0


@pytest.mark.xdist_group("reliability-crash-loop")
def test_crash_loop_never_breaks_the_rate_limit(tmp_path: Path) -> None:
    """Issue 12.1: ten SIGKILLs under load, then a drain: the simulator never saw more calls
    in one 20-s window than ``limits.calls_per_20s``, and never answered 606."""
    require_module("orchestrator.intake")
    figures = crash_loop(tmp_path, kills=10)
    print(json.dumps(figures))
    assert sum(figures["calls_before_kill"]) > 0  # the runs were killed under load
    assert figures["calls_per_window_peak"] <= figures["limit"], figures
    assert "606" not in figures["errors"], figures
    assert figures["restored"] >= 1, figures  # later runs did start from the stored window


@pytest.mark.xdist_group("reliability-faults")
def test_fault_soak_everything_completes_within_limits(tmp_path: Path) -> None:
    require_module("orchestrator.intake")
    figures = fault_soak(tmp_path, seed=2026, files=10)
    print(json.dumps(figures))
    assert figures["quota_pauses"] >= 1


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not SOAK, reason="long soak: set LEADFLOW_SOAK=1")
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_crash_soak_long(tmp_path: Path, seed: int) -> None:
    require_module("orchestrator.intake")
    figures = crash_soak(tmp_path, seed=seed, files=60, kills=40, run_s=(0.2, 2.5))
    print(json.dumps(figures))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.skipif(not SOAK, reason="long soak: set LEADFLOW_SOAK=1")
@pytest.mark.parametrize("seed", [11, 12])
def test_fault_soak_long(tmp_path: Path, seed: int) -> None:
    require_module("orchestrator.intake")
    figures = fault_soak(tmp_path, seed=seed, files=30, before_midnight_s=25.0,
                         daily_quota=30, timeout_s=600)
    print(json.dumps(figures))
