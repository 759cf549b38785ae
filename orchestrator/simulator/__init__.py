"""A faithful Marketo Bulk Import simulator (contract sections 1 to 8).

Public API: `create_app` builds the aiohttp application in-process (tests inject a
`ManualClock` or a ``time_scale``); `serve` runs it as a server; `SimulatorConfig` holds every
setting. The simulator shares no code with the daemon.
"""

from __future__ import annotations

from orchestrator.simulator.app import SIMULATOR_KEY, create_app
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
from orchestrator.simulator.server import DEFAULT_PORT, serve

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
