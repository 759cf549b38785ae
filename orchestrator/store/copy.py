"""Moving a deployment from SQLite to PostgreSQL: one database copied into an empty other.

``copy_into_postgresql(source, url, ...)`` is ``leadflow migrate --copy-from PATH``. In order:

1. the source is checked without changing it: it must exist and be a leadflow SQLite database,
   and no daemon may hold its lock (``lock.daemon_running``); the lock is then held for the
   whole copy, so no daemon starts on it meanwhile;
2. the target (``store.url``) is migrated to the current schema and must be empty: no row in
   any copied table, no node with a recent heartbeat;
3. the source is migrated to the current schema too (so both have the same tables and
   columns), and files still open there must belong to a Marketo instance the settings name
   (else nothing would ever finish them);
4. every table that carries history and state (``COPIED_TABLES``) is copied with ``COPY``, in
   ONE PostgreSQL transaction, from one SQLite snapshot. Each copied table's user triggers
   (the transition guard, ``status_history``, ``upload_submissions``) are disabled inside that
   transaction and enabled again before it commits, so the history is copied as it was, not
   written anew; foreign keys (system triggers) stay checked. The identity sequences are set
   past the copied ids and past every id SQLite ever handed out (``sqlite_sequence``: its
   ids are never reused, and deleted rows' ids are not handed out again on PostgreSQL either).

What a cluster rebuilds by itself is left behind (``LEFT_BEHIND``: nodes, leases, inbox
claims, published field catalogues). Column lists are read from both catalogues and must
match; a mismatch means this leadflow's two migration series disagree (a bug), and nothing is
written. The source file is left as it was, migrated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from orchestrator.errors import CopyRefused, DatabaseLocked, StoreError
from orchestrator.models import FILE_OPEN
from orchestrator.places import moved_marker
from orchestrator.store.core import QUERIES, Store
from orchestrator.store.lock import SingleDaemonLock, daemon_running
from orchestrator.store.migrate import schema_version
from orchestrator.store.postgresql import PostgresDatabase, redact_url
from orchestrator.store.sqlite import BUSY_TIMEOUT_S, SqliteDatabase
from orchestrator.timing import Clock

#: Tables copied, in this order (a table after those it refers to).
COPIED_TABLES = (
    "files",
    "uploads",
    "parts",
    "status_history",
    "api_usage",
    "api_calls",
    "errors",
    "daemon_routes",
    "upload_submissions",
    "retention_deletions",
)
#: Tables of running nodes, rebuilt by the nodes of the new deployment: not copied.
LEFT_BEHIND = frozenset({"nodes", "leases", "inbox_claims", "field_catalogues"})
#: Tables that belong to the schema itself (filled by the migrations, or by SQLite).
SCHEMA_TABLES = frozenset({"allowed_transitions", "schema_migrations", "sqlite_sequence"})

#: Rows read from SQLite at a time (memory stays flat whatever the size of the database).
ROWS_PER_FETCH = 1000
#: Seconds the copy waits for a table lock on the target before it gives up (a node is busy).
LOCK_TIMEOUT_S = 10
#: The first 16 bytes of every SQLite database file.
SQLITE_MAGIC = b"SQLite format 3\x00"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")

#: Files with work ahead of them: open, or finished without a report yet (per instance).
OPEN_FILES_BY_INSTANCE = (
    "SELECT instance, COUNT(*) FROM files"
    f" WHERE status IN ({', '.join(repr(s.value) for s in FILE_OPEN)}) OR reported_at IS NULL"
    " GROUP BY instance ORDER BY instance"
)


@dataclass(frozen=True, slots=True)
class CopyResult:
    """What ``copy_into_postgresql`` copied.

    Attributes:
        source: the SQLite file (absolute).
        target: the PostgreSQL URL without its password.
        rows: rows copied, by table, in ``COPIED_TABLES`` order.
        next_ids: the next id each identity sequence hands out, by table.
        seconds: how long the copy took (wall clock).
    """

    source: Path
    target: str
    rows: dict[str, int] = field(default_factory=dict)
    next_ids: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


async def copy_into_postgresql(
    source: Path,
    url: str,
    *,
    instances: Sequence[str],
    node_alive_s: float,
    clock: Clock = time.time,
) -> CopyResult:
    """Copy the leadflow SQLite database at ``source`` into the empty PostgreSQL at ``url``.

    Both are migrated to the current schema first. See the module docstring for the steps.

    Args:
        source: the SQLite database file of the deployment being moved.
        url: ``store.url`` of the new deployment (a ``postgresql://`` URL).
        instances: the Marketo instance names of the new deployment's settings; files still
            open in the source must belong to one of them.
        node_alive_s: a node whose heartbeat is younger than this (seconds) counts as running
            on the target (refused).
        clock: epoch seconds (tests inject one).

    Returns:
        What was copied.

    Raises:
        CopyRefused: nothing was written. ``usage`` True (exit 2): the source is missing or
            not a leadflow database, or open files belong to an instance the settings do not
            name. ``usage`` False (exit 1): a daemon holds the source's lock (or it cannot be
            taken), nodes run on the target, the target already holds data, or its tables
            stayed locked for ``LOCK_TIMEOUT_S``.
        StoreUnavailable: the PostgreSQL server cannot be reached.
        SchemaTooNew: either database was written by a newer leadflow.
        StoreError: the copy failed (rolled back: the target holds nothing of it).
    """
    started = time.monotonic()
    source = await asyncio.to_thread(lambda: source.expanduser().absolute())
    await asyncio.to_thread(_check_source_file, source)
    pid = await asyncio.to_thread(daemon_running, source)
    if pid is not None:
        raise CopyRefused(_daemon_line(source, pid or None))
    await asyncio.to_thread(_check_leadflow_database, source)
    lock = SingleDaemonLock(source)
    try:
        lock.acquire()
    except DatabaseLocked:
        raise CopyRefused(_daemon_line(source, None)) from None
    except OSError as exc:
        raise CopyRefused(
            f"cannot take the lock {lock.path} of {source}: {exc.strerror or exc} (run the "
            "copy as the user the daemon ran as)"
        ) from None
    try:
        where = redact_url(url)
        async with PostgresDatabase.open(url, QUERIES["postgresql"], pool_max=1) as pg:
            await _refuse_running_nodes(Store(pg, clock), where, clock(), node_alive_s)
            async with pg.pool.connection() as conn:
                await _refuse_unless_empty(conn, where)
            # Migrate the source only once the target is known to be fit.
            async with SqliteDatabase.open(source, QUERIES["sqlite"]):
                pass
            result = CopyResult(source, where)
            async with _snapshot(source) as lite:
                await _refuse_unknown_instances(lite, source, instances)
                async with pg.pool.connection() as conn:
                    await _copy_all(lite, conn, where, result)
            # A daemon started again on the old file would import its open files twice.
            moved_marker(source).write_text(
                f"copied into {where} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} "
                "by leadflow migrate --copy-from\n", encoding="utf-8")
    finally:
        lock.release()
    return dataclasses.replace(result, seconds=time.monotonic() - started)


def _daemon_line(source: Path, pid: int | None) -> str:
    who = f" (pid {pid})" if pid else ""
    return (
        f"a leadflow daemon{who} is running on {source}: stop it first "
        "(systemctl stop leadflow), then copy"
    )


def _check_source_file(source: Path) -> None:
    """Refuse a missing source, or a file that is not an SQLite database (nothing is opened).

    Raises:
        CopyRefused: with ``usage`` True.
    """
    if not source.exists():
        raise CopyRefused(f"no database at {source} (--copy-from)", usage=True)
    if not source.is_file():
        raise CopyRefused(f"{source} is not a file (--copy-from wants the SQLite database "
                          "file, paths.database of the old deployment)", usage=True)
    try:
        with source.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise CopyRefused(f"cannot read {source}: {exc.strerror or exc}", usage=True) from None
    if head != SQLITE_MAGIC:
        raise CopyRefused(_not_leadflow(source, "not an SQLite database"), usage=True)


def _not_leadflow(source: Path, why: str) -> str:
    return (f"{source} is not a leadflow database ({why}); --copy-from wants paths.database "
            "of the old deployment")


def _check_leadflow_database(source: Path) -> None:
    """Refuse an SQLite database that leadflow did not make (read only; nothing changes).

    Raises:
        CopyRefused: with ``usage`` True: unreadable, no schema version, or no ``files``.
    """
    try:
        conn = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise CopyRefused(_not_leadflow(source, str(exc)), usage=True) from None
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        raise CopyRefused(_not_leadflow(source, str(exc)), usage=True) from None
    finally:
        conn.close()
    if version < 1 or "files" not in tables:
        raise CopyRefused(_not_leadflow(source, "no leadflow schema in it"), usage=True)


async def _refuse_running_nodes(store: Store, where: str, now: float, alive_s: float) -> None:
    """Refuse while nodes beat on the target (a node that stopped cleanly left the list)."""
    alive = [n for n in await store.nodes() if now - float(n["heartbeat_at"]) < alive_s]
    if alive:
        names = ", ".join(f"{n['node_id']} ({now - float(n['heartbeat_at']):.0f}s ago)"
                          for n in alive)
        raise CopyRefused(
            f"leadflow nodes are running on {where} (heartbeats: {names}): stop every node, "
            "then copy into an empty database"
        )


async def _refuse_unless_empty(conn: psycopg.AsyncConnection[Any], where: str) -> None:
    """Refuse a target that holds any row in a copied table (the message counts them)."""
    held: list[str] = []
    for table in COPIED_TABLES:
        cursor = await conn.execute(
            sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table))
        )
        row = await cursor.fetchone()
        count = int(row[0]) if row else 0
        if count:
            held.append(f"{table} {count}")
    if held:
        raise CopyRefused(
            f"{where} already holds leadflow data ({', '.join(held)}): --copy-from copies only "
            "into an empty database (create a new one, e.g. createdb, and point store.url at it)"
        )


@asynccontextmanager
async def _snapshot(source: Path) -> AsyncIterator[aiosqlite.Connection]:
    """An aiosqlite connection reading one consistent snapshot of ``source`` (``BEGIN``)."""
    conn = await aiosqlite.connect(source, isolation_level=None)
    try:
        await conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        await conn.execute("BEGIN")
        await conn.execute("SELECT 1 FROM files LIMIT 1")  # the snapshot starts here
        yield conn
        await conn.execute("ROLLBACK")
    finally:
        await conn.close()


async def _refuse_unknown_instances(
    lite: aiosqlite.Connection, source: Path, instances: Sequence[str]
) -> None:
    """Refuse when open files belong to a Marketo instance no node of the new deployment runs."""
    async with lite.execute(OPEN_FILES_BY_INSTANCE) as cursor:
        rows = list(await cursor.fetchall())
    strays = [(str(r[0]), int(r[1])) for r in rows if r[0] not in instances]
    if strays:
        name, count = strays[0]
        raise CopyRefused(
            f"{count} files in {source} are not finished and belong to Marketo instance "
            f"{name!r}, which the settings do not name (instances: {', '.join(instances)}): "
            f"name one instance {name!r} ([[instances]] name, or [marketo] name), or let the "
            "old daemon finish them first (`leadflow status` shows none waiting)",
            usage=True,
        )


async def _copy_all(
    lite: aiosqlite.Connection,
    conn: psycopg.AsyncConnection[Any],
    where: str,
    result: CopyResult,
) -> None:
    """Copy every table in one PostgreSQL transaction (triggers off inside it); fill ``result``.

    Raises:
        CopyRefused: a table stayed locked for ``LOCK_TIMEOUT_S``, or the target was written
            to since it was checked.
        StoreError: a column list differs, or a row was refused (nothing is kept).
    """
    version = await schema_version(lite)
    sequences = await _sqlite_sequences(lite)
    table = ""
    try:
        async with conn.transaction():
            await conn.execute(
                sql.SQL("SET LOCAL lock_timeout = {}").format(
                    sql.Literal(f"{LOCK_TIMEOUT_S}s"))
            )
            for table in COPIED_TABLES:
                await conn.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(
                    sql.Identifier(table)))
            table = ""
            # Under the tables' locks now: nobody wrote since the first look.
            await _refuse_unless_empty(conn, where)
            with_id: list[str] = []
            for table in COPIED_TABLES:
                columns = await _columns(lite, conn, table, version)
                result.rows[table] = await _copy_table(lite, conn, table, columns)
                if "id" in columns:
                    with_id.append(table)
            table = ""
            for name in with_id:
                next_id = await _set_sequence(conn, name, sequences.get(name, 0))
                if next_id is not None:
                    result.next_ids[name] = next_id
            for name in COPIED_TABLES:
                await conn.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(
                    sql.Identifier(name)))
    except pg_errors.LockNotAvailable:
        raise CopyRefused(
            f"the tables of {where} stayed locked for {LOCK_TIMEOUT_S}s (a leadflow node or "
            "another client is using them): stop every node, then copy"
        ) from None
    except psycopg.Error as exc:
        what = f"copying table {table}" if table else "copying"
        raise StoreError(
            f"{what} into {where} failed, nothing was kept: {str(exc).strip()}"
        ) from exc


async def _sqlite_sequences(lite: aiosqlite.Connection) -> dict[str, int]:
    """The highest id SQLite ever handed out, by table (``sqlite_sequence``)."""
    async with lite.execute("SELECT name, seq FROM sqlite_sequence") as cursor:
        return {str(r[0]): int(r[1]) for r in await cursor.fetchall()}


async def _columns(
    lite: aiosqlite.Connection, conn: psycopg.AsyncConnection[Any], table: str, version: int
) -> list[str]:
    """The columns of ``table``, which must be the same on both engines.

    Raises:
        StoreError: they differ (the two migration series disagree at ``version``).
    """
    async with lite.execute("SELECT name FROM pragma_table_info(?)", (table,)) as cursor:
        mine = [str(r[0]) for r in await cursor.fetchall()]
    cursor_pg = await conn.execute(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND table_name = %s",
        (table,),
    )
    theirs = {str(r[0]) for r in await cursor_pg.fetchall()}
    if set(mine) != theirs or not all(_IDENTIFIER.match(c) for c in mine):
        raise StoreError(
            f"table {table} has columns {sorted(mine)} in SQLite and {sorted(theirs)} in "
            f"PostgreSQL at schema version {version}: this leadflow cannot copy it"
        )
    return mine


async def _copy_table(
    lite: aiosqlite.Connection,
    conn: psycopg.AsyncConnection[Any],
    table: str,
    columns: list[str],
) -> int:
    """Stream one table's rows from SQLite into PostgreSQL's ``COPY``; return how many."""
    # Names come from COPIED_TABLES and both catalogues (checked identifiers), never from rows.
    listed = ", ".join(f'"{c}"' for c in columns)
    order = " ORDER BY id" if "id" in columns else ""
    select = f'SELECT {listed} FROM "{table}"{order}'
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    count = 0
    async with (
        conn.cursor() as cursor,
        cursor.copy(copy_sql) as copy,
        lite.execute(select) as rows,
    ):
        while batch := list(await rows.fetchmany(ROWS_PER_FETCH)):
            for row in batch:
                await copy.write_row(tuple(row))
            count += len(batch)
    return count


async def _set_sequence(
    conn: psycopg.AsyncConnection[Any], table: str, sqlite_seq: int
) -> int | None:
    """Set ``table``'s identity sequence past its ids and SQLite's; return the next id.

    Returns:
        The id the next insert gets, or None when the table has no identity sequence or
        never had a row (its sequence is left as it is).
    """
    cursor = await conn.execute(
        sql.SQL("SELECT pg_get_serial_sequence({name}, 'id'), (SELECT MAX(id) FROM {table})")
        .format(name=sql.Literal(table), table=sql.Identifier(table))
    )
    row = await cursor.fetchone()
    if row is None or row[0] is None:
        return None
    last = max(int(row[1] or 0), sqlite_seq)
    if last < 1:
        return None
    await conn.execute("SELECT setval(CAST(%s AS regclass), %s, true)", (row[0], last))
    return last + 1
