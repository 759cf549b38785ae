"""``leadflow demo``: the simulator, the daemon and realistic lead files, in one command."""

from __future__ import annotations

from orchestrator.demo.runner import run_demo

__all__ = ["run_demo"]
