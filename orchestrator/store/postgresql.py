"""The PostgreSQL engine: psycopg 3 with its asyncio connection pool.

Chosen by ``[store] url = "postgresql://..."``. Every write transaction takes a pooled
connection for its length (``READ COMMITTED``; the queries that claim rows use
``FOR UPDATE SKIP LOCKED``); reads take one per statement group. Queries are written with
SQLite's placeholders and translated (``database.translate_placeholders``). A lost connection
surfaces as ``StoreUnavailable``; the pool replaces broken connections, so the next
transaction reconnects when the server is back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import RowMaker
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from orchestrator.errors import DatabaseLocked, DuplicateContent, StoreError, StoreUnavailable
from orchestrator.store.database import (
    Dialect,
    Params,
    Row,
    TransitionRefused,
    translate_placeholders,
)
from orchestrator.store.migrate import migrate_postgresql

#: Seconds a caller waits for a pooled connection (or a first connection) before giving up.
CONNECT_TIMEOUT_S = 10.0
#: Key of the session advisory lock a daemon holds on its database (``exclusive``).
DAEMON_LOCK = 0x1EADF11
#: Connections in the pool of one process.
POOL_MAX = 4


def _row_factory(cursor: psycopg.AsyncCursor[Any]) -> RowMaker[Row]:
    names = [c.name for c in cursor.description or ()]

    def make(values: Sequence[Any]) -> Row:
        return Row(names, values)

    return make


def redact_url(url: str) -> str:
    """``url`` without its password, for messages (``postgresql://user:***@host:port/db``).

    A unix-socket host is shown as ``?host=/the/folder``.
    """
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable store.url>"
    user = str(info.get("user") or "")
    secret = ":***" if info.get("password") else ""
    host = str(info.get("host") or "")
    port = f":{info['port']}" if info.get("port") else ""
    db = str(info.get("dbname") or "")
    if host.startswith("/"):
        return f"postgresql://{user}{secret}@{port}/{db}?host={host}"
    return f"postgresql://{user}{secret}@{host or 'localhost'}{port}/{db}"


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an error, without libpq's ``connection failed:`` prefix."""
    for line in str(exc).splitlines():
        if line.strip():
            text = line.strip()
            for prefix in ("connection failed: ", "connection is bad: "):
                text = text.removeprefix(prefix)
            return text
    return type(exc).__name__


def _mapped(exc: psycopg.Error) -> Exception:
    """Our own exception for an error the store knows, else the error itself."""
    if isinstance(exc, pg_errors.RaiseException) and "transition not allowed" in str(exc):
        return TransitionRefused(str(exc))
    if isinstance(exc, pg_errors.UniqueViolation) and "files_import_imported" in str(exc):
        return DuplicateContent(f"a file with these bytes is already imported ({exc})")
    if isinstance(exc, psycopg.OperationalError):
        return StoreUnavailable(f"lost the PostgreSQL connection: {exc}".strip())
    return exc


class _PgTx:
    """``database.Tx`` on one pooled connection."""

    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        self._conn = conn

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        try:
            cursor = await self._conn.execute(translate_placeholders(sql), params)
            return await cursor.fetchone()
        except psycopg.Error as exc:
            raise _mapped(exc) from exc

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            cursor = await self._conn.execute(translate_placeholders(sql), params)
            return await cursor.fetchall()
        except psycopg.Error as exc:
            raise _mapped(exc) from exc

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            cursor = await self._conn.execute(translate_placeholders(sql), params)
            return cursor.rowcount
        except psycopg.Error as exc:
            raise _mapped(exc) from exc

    async def executemany(self, sql: str, params: Sequence[Params]) -> int:
        if not params:
            return 0
        try:
            async with self._conn.cursor() as cursor:
                await cursor.executemany(translate_placeholders(sql), params)
                return cursor.rowcount
        except psycopg.Error as exc:
            raise _mapped(exc) from exc

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A ``SAVEPOINT`` (a nested psycopg transaction)."""
        async with self._conn.transaction():
            yield


class PostgresDatabase:
    """``database.Database`` on a PostgreSQL server. Build it with ``PostgresDatabase.open``."""

    dialect: Dialect = "postgresql"

    def __init__(self, pool: AsyncConnectionPool[Any], queries: Mapping[str, str]) -> None:
        self.pool = pool
        self.queries = queries

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str,
        queries: Mapping[str, str],
        *,
        migrate_schema: bool = True,
        exclusive: bool = False,
        pool_max: int = POOL_MAX,
    ) -> AsyncIterator[PostgresDatabase]:
        """Connect a pool to ``url`` (and migrate the schema).

        Args:
            exclusive: hold a session advisory lock (``DAEMON_LOCK``) for as long as the
                database is open: one daemon per database.

        Raises:
            DatabaseLocked: ``exclusive`` and another daemon holds the lock.
            StoreUnavailable: the server cannot be reached or refused us (one line that says
                where, without the password).
            SchemaTooNew: the database is newer than this code.
        """
        where = redact_url(url)
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise StoreError(f"store.url is not a PostgreSQL URL: {exc}") from None
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_max,
            open=False,
            timeout=CONNECT_TIMEOUT_S,
            kwargs={"autocommit": True, "row_factory": _row_factory,
                    "connect_timeout": int(CONNECT_TIMEOUT_S)},
            check=AsyncConnectionPool.check_connection,
            reconnect_timeout=CONNECT_TIMEOUT_S * 30,
        )
        try:
            # A first connection proves the URL before anything else runs.
            first = await psycopg.AsyncConnection.connect(
                url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_S)
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(
                f"cannot reach PostgreSQL at {where} (store.url): {_first_line(exc)}"
            ) from None
        try:
            if migrate_schema:
                await migrate_postgresql(first)
            if exclusive:
                cursor = await first.execute("SELECT pg_try_advisory_lock(%s)", (DAEMON_LOCK,))
                got = await cursor.fetchone()
                if not got or not got[0]:
                    raise DatabaseLocked(
                        f"another leadflow daemon is using the PostgreSQL database {where}; "
                        "stop it first or point store.url elsewhere"
                    )
            else:
                await first.close()
            await pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            try:
                yield cls(pool, queries)
            finally:
                await pool.close()
        finally:
            await first.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_PgTx]:
        """One pooled connection inside ``BEGIN`` ... ``COMMIT``."""
        async with self._connection() as conn, conn.transaction():
            yield _PgTx(conn)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[_PgTx]:
        """One pooled connection in autocommit mode."""
        async with self._connection() as conn:
            yield _PgTx(conn)

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Row]]:
        try:
            async with self.pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StoreUnavailable(f"no PostgreSQL connection within {exc}") from exc
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"lost the PostgreSQL connection: {exc}".strip()) from exc

    async def close(self) -> None:
        """Close the pool (idempotent)."""
        await self.pool.close()
