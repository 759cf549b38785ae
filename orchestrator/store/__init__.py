"""The store: SQLite (aiosqlite) with named queries and numbered migrations.

``Store`` and ``SingleDaemonLock`` live in ``orchestrator.store.sqlite``; they are re-exported here.
"""

from __future__ import annotations

from orchestrator.store.sqlite import SingleDaemonLock, Store

__all__ = ["SingleDaemonLock", "Store"]
