"""The store: SQLite (aiosqlite) with named queries and numbered migrations.

``Store`` lives in ``orchestrator.store.core``; it is re-exported here.
"""

from __future__ import annotations

from orchestrator.store.core import Store

__all__ = ["Store"]
