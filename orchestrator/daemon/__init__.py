"""The daemon: lifecycle, credential gate, drain mode, recovery at start-up, one-daemon lock.

``Daemon`` and ``run_daemon`` live in ``orchestrator.daemon.lifecycle``; they are re-exported here.
"""

from __future__ import annotations

from orchestrator.daemon.lifecycle import Daemon, DaemonCrashed, FilesHeld, run_daemon

__all__ = ["Daemon", "DaemonCrashed", "FilesHeld", "run_daemon"]
