"""The store: one interface (``Store``), two engines (SQLite, the default; PostgreSQL).

``Store`` lives in ``orchestrator.store.core``; the engines in ``orchestrator.store.sqlite``
and ``orchestrator.store.postgresql``. ``store_target`` picks the engine from the settings.
"""

from __future__ import annotations

from orchestrator.store.core import Store, is_postgres_url, store_target

__all__ = ["Store", "is_postgres_url", "store_target"]
