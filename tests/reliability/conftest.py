"""Fixtures of the reliability tests: simulators and daemons as subprocesses, torn down after."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    Leadflow,
    SimulatorProcess,
    daemon_settings,
)


@pytest.fixture
def simulator_factory(tmp_path: Path) -> Iterator[Any]:
    """Start simulators as subprocesses: ``simulator_factory(config, time_scale=...)``."""
    started: list[SimulatorProcess] = []

    def factory(config: dict[str, Any] | None = None, *, time_scale: float = 1.0,
                name: str = "sim") -> SimulatorProcess:
        base: dict[str, Any] = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                                "seed": 9}
        base.update(config or {})
        sim = SimulatorProcess(tmp_path / name, base, time_scale)
        started.append(sim)
        return sim.start()

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def leadflow_factory(tmp_path: Path) -> Iterator[Any]:
    """Daemon configurations: ``leadflow_factory(base_url, name=..., **sections)``."""
    made: list[Leadflow] = []

    def factory(base_url: str, *, name: str = "lf", clock_offset_s: float | None = None,
                **sections: dict[str, Any]) -> Leadflow:
        root = tmp_path / name
        lf = Leadflow(root, daemon_settings(root, base_url, **sections), clock_offset_s)
        made.append(lf)
        return lf

    yield factory
    for lf in made:
        lf.stop_all()


