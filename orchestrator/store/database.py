"""What the store needs from a database engine: transactions that run named queries.

``Store`` (``orchestrator.store.core``) holds the logic and speaks only to a ``Database``;
``orchestrator.store.sqlite`` and ``orchestrator.store.postgresql`` are the two engines.
Queries are written with SQLite's placeholders (``?`` and ``:name``); the PostgreSQL engine
translates them (``translate_placeholders``). Engines map their own errors onto
``TransitionRefused`` (the guard trigger said no) and ``errors.DuplicateContent`` (the unique
index on imported files' ``sha256``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from functools import lru_cache
from typing import Any, Literal, Protocol

Params = Sequence[Any] | Mapping[str, Any]
Dialect = Literal["sqlite", "postgresql"]


class TransitionRefused(Exception):
    """The database's transition guard refused a status change (internal to the store)."""


class Row(Mapping[str, Any]):
    """One result row, read by position (``row[0]``) or by column name (``row["id"]``)."""

    __slots__ = ("_index", "_values")

    def __init__(self, names: Sequence[str], values: Sequence[Any]) -> None:
        self._index = {name: i for i, name in enumerate(names)}
        self._values = tuple(values)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            return self._values[key]
        return self._values[self._index[key]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._values)


class Tx(Protocol):
    """One open transaction (or one read) on a database connection."""

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        """Run ``sql``; return its first row or None."""

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        """Run ``sql``; return every row."""

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run ``sql``; return the number of rows it changed."""

    async def executemany(self, sql: str, params: Sequence[Params]) -> int:
        """Run ``sql`` once per parameter set; return the rows changed in total."""

    def savepoint(self) -> AbstractAsyncContextManager[None]:
        """A statement group whose failure leaves the transaction usable.

        PostgreSQL aborts the whole transaction on an error otherwise; SQLite only the
        statement.
        """


class Database(Protocol):
    """A connection (SQLite) or a pool of them (PostgreSQL) with the store's named queries."""

    dialect: Dialect
    #: The named queries of this engine (``queries.sql`` or ``queries.postgresql.sql``).
    queries: Mapping[str, str]

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction: committed on exit, rolled back on an exception."""

    def reading(self) -> AbstractAsyncContextManager[Tx]:
        """A read outside any explicit transaction (each statement sees committed data)."""

    async def close(self) -> None:
        """Close every connection (idempotent)."""


_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


@lru_cache(maxsize=512)
def translate_placeholders(sql: str) -> str:
    """Rewrite SQLite placeholders (``?``, ``:name``) as psycopg's (``%s``, ``%(name)s``).

    ``%`` is doubled first; ``::`` casts are left alone. Queries never hold ``?`` or ``:``
    inside string literals (the queries files are ours).
    """
    out = sql.replace("%", "%%")
    out = _NAMED.sub(lambda m: f"%({m.group(1)})s", out)
    return out.replace("?", "%s")
