"""The daemon: lifecycle, credential gate, drain mode and recovery at start-up.

``Daemon`` and ``run_daemon`` live in ``orchestrator.daemon.lifecycle``; they are re-exported here.
"""

from __future__ import annotations

from orchestrator.daemon.lifecycle import Daemon, DaemonCrashed, run_daemon

__all__ = ["Daemon", "DaemonCrashed", "run_daemon"]
