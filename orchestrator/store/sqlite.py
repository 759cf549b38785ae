"""The SQLite engine (aiosqlite): one connection, the default, embedded store.

One connection in autocommit mode (``isolation_level=None``); every write transaction runs
inside ``BEGIN IMMEDIATE`` so the write lock is taken up front, and an ``asyncio.Lock``
serialises transactions inside the process. ``SingleDaemonLock`` keeps a second daemon off
the same file.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from orchestrator.errors import DuplicateContent, StoreError
from orchestrator.store.database import Dialect, Params, Row, TransitionRefused
from orchestrator.store.migrate import migrate

#: Seconds a writer waits for SQLite's lock before giving up.
BUSY_TIMEOUT_S = 30.0


def _mapped(exc: sqlite3.IntegrityError) -> Exception:
    """Our own exception for an integrity error the store knows, else the error itself."""
    text = str(exc)
    if "transition not allowed" in text:
        return TransitionRefused(text)
    if "files_import_imported" in text or "files.sha256" in text:
        return DuplicateContent(f"a file with these bytes is already imported ({text})")
    return exc


class _SqliteTx:
    """``database.Tx`` on the one aiosqlite connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        try:
            async with self._conn.execute(sql, params) as cursor:
                row = await cursor.fetchone()
        except sqlite3.IntegrityError as exc:
            raise _mapped(exc) from exc
        return row  # type: ignore[return-value]  # the connection's row_factory makes Rows

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            async with self._conn.execute(sql, params) as cursor:
                return list(await cursor.fetchall())  # type: ignore[arg-type]
        except sqlite3.IntegrityError as exc:
            raise _mapped(exc) from exc

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            async with self._conn.execute(sql, params) as cursor:
                return cursor.rowcount
        except sqlite3.IntegrityError as exc:
            raise _mapped(exc) from exc

    async def executemany(self, sql: str, params: Sequence[Params]) -> int:
        try:
            cursor = await self._conn.executemany(sql, params)
        except sqlite3.IntegrityError as exc:
            raise _mapped(exc) from exc
        count = cursor.rowcount
        await cursor.close()
        return count

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """Nothing to do: SQLite undoes only the failed statement."""
        yield


class SqliteDatabase:
    """``database.Database`` on one SQLite file. Build it with ``SqliteDatabase.open``."""

    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, queries: Mapping[str, str]) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self.queries = queries

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: Path,
        queries: Mapping[str, str],
        *,
        migrate_schema: bool = True,
    ) -> AsyncIterator[SqliteDatabase]:
        """Open (and migrate) the database file at ``path``; its folder is created.

        Raises:
            SchemaTooNew: the database is newer than this code.
            StoreError: the file is not a database, or cannot be opened.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        try:
            # sqlite3.Row (C) reads by position and by name, like database.Row.
            conn.row_factory = aiosqlite.Row
            try:
                await conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                await conn.execute("PRAGMA journal_mode = WAL")
                await conn.execute("PRAGMA synchronous = NORMAL")
                await conn.execute("PRAGMA foreign_keys = ON")
                if migrate_schema:
                    await migrate(conn)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"database {path} cannot be used: {exc}") from exc
            yield cls(conn, queries)
        finally:
            await conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_SqliteTx]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(self._conn)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[_SqliteTx]:
        """Statements in autocommit mode, serialised with the transactions of this process."""
        async with self._lock:
            yield _SqliteTx(self._conn)

    async def close(self) -> None:
        """Nothing to do: ``open`` closes the connection."""
