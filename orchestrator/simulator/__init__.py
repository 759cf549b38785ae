"""A faithful Marketo Bulk Import simulator (docs/reference/marketo-api.md §1 to §8).

Public API: `create_app` builds the aiohttp application in-process; `serve` runs it as a
server (``leadflow simulator``); `SimulatorConfig` holds every setting. The simulator shares
no code with the daemon.

In tests, inject a `ManualClock` and move time explicitly::

    clock = ManualClock()
    app = create_app(SimulatorConfig(max_queued=3), clock=clock)
    ...  # upload through aiohttp.test_utils.TestClient(TestServer(app))
    clock.advance(60)  # jobs progress at rows_per_second (500) of simulated time

or run faster than real time with ``create_app(time_scale=60)``. Defaults: one instance
``123-ABC-456`` at the URL root (and under ``/123-ABC-456/``), client id ``leadflow-sim``,
secret ``leadflow-sim-secret``. The admin API lives under ``/_sim/`` (see `admin`).
"""

from __future__ import annotations

from orchestrator.simulator.app import SIMULATOR_KEY
from orchestrator.simulator.clock import Clock, ManualClock, ScaledClock
from orchestrator.simulator.config import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_MUNCHKIN_ID,
    FaultConfig,
    FieldSpec,
    FieldType,
    SimulatorConfig,
)
from orchestrator.simulator.engine import Simulator
from orchestrator.simulator.server import DEFAULT_PORT, create_app, serve

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_MUNCHKIN_ID",
    "DEFAULT_PORT",
    "SIMULATOR_KEY",
    "Clock",
    "FaultConfig",
    "FieldSpec",
    "FieldType",
    "ManualClock",
    "ScaledClock",
    "Simulator",
    "SimulatorConfig",
    "create_app",
    "serve",
]
