"""Schema migrations: numbered SQL files applied in order, one series per engine.

SQLite's files are ``migrations/NNNN_name.sql`` (version in ``PRAGMA user_version``);
PostgreSQL's are ``migrations/postgresql/NNNN_name.sql`` (version in the table
``schema_migrations``). PostgreSQL support starts at version 6: its first file,
``0006_baseline.sql``, creates what SQLite's 0001-0006 build; from 0007 on both folders hold a
file with the same number and meaning, so a version means the same schema on both engines. The folder lives at the top of a checkout and
is packaged into ``orchestrator/migrations`` in the wheel; both places are looked up.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite
import psycopg

from orchestrator.errors import SchemaTooNew, StoreError

#: Key of the advisory lock nodes take while migrating a PostgreSQL database (one at a time).
PG_MIGRATE_LOCK = 0x1EADF10

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

#: A line in a migration that rebuilds a table (copy, drop, rename): it runs with foreign keys
#: off and every reference is checked before it commits.
REBUILDS_TABLES = "-- leadflow: rebuilds tables"


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its number (1-based), name and SQL text."""

    version: int
    name: str
    sql: str


def migrations_dir(dialect: str = "sqlite") -> Path:
    """Return the folder holding the migration files of ``dialect`` (wheel or checkout).

    Args:
        dialect: ``sqlite`` (the top folder) or ``postgresql`` (its ``postgresql/`` folder).

    Raises:
        StoreError: no folder with migrations was found.
    """
    sub = "" if dialect == "sqlite" else dialect
    packaged = resources.files("orchestrator").joinpath("migrations")
    if packaged.is_dir():
        return Path(str(packaged)) / sub
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if checkout.is_dir():
        return checkout / sub
    raise StoreError("no migrations folder found next to the orchestrator package")


def load_migrations(folder: Path | None = None, dialect: str = "sqlite") -> list[Migration]:
    """Read every ``NNNN_name.sql`` file, checking names are well formed and contiguous.

    Args:
        folder: where to look; default ``migrations_dir(dialect)``.
        dialect: ``sqlite`` or ``postgresql``.

    Raises:
        StoreError: a badly named file or a gap in the numbering.
    """
    folder = folder or migrations_dir(dialect)
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise StoreError(f"migration file {path.name} is not named NNNN_lowercase_name.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text(encoding="utf-8")))
    # SQLite's series starts at 1; PostgreSQL's at its baseline (the first version it has,
    # created in one file). Numbers are contiguous from there.
    start = 1 if dialect == "sqlite" or not found else found[0].version
    for expected, migration in enumerate(found, start=start):
        if migration.version != expected:
            raise StoreError(f"migration {migration.name}: expected number {expected:04d}")
    return found


async def schema_version(conn: aiosqlite.Connection) -> int:
    """Return ``PRAGMA user_version`` of the open database."""
    async with conn.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: aiosqlite.Connection, folder: Path | None = None) -> list[str]:
    """Apply every migration above the database's version, each in its own transaction.

    The connection must be in autocommit mode (``isolation_level=None``).

    Returns:
        Names of the migrations applied (empty when the database was current).

    Raises:
        SchemaTooNew: the database was written by a newer leadflow.
        StoreError: a migration file is malformed.
    """
    available = load_migrations(folder)
    newest = available[-1].version if available else 0
    current = await schema_version(conn)
    if current > newest:
        raise SchemaTooNew(
            f"database schema version {current} is newer than this leadflow knows ({newest}); "
            "upgrade leadflow or use another database"
        )
    applied: list[str] = []
    for migration in available[current:]:
        rebuild = REBUILDS_TABLES in migration.sql
        keys_were_on = await _foreign_keys(conn)
        if rebuild and keys_were_on:
            # SQLite's table rebuild: a dropped table's rows must not be checked (or their
            # references cascade) while its copy takes its name; foreign keys can only be
            # switched outside a transaction, and every reference is checked before commit.
            await conn.execute("PRAGMA foreign_keys = OFF")
        try:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(migration.sql):
                    await conn.execute(statement)
                if rebuild:
                    await _check_references(conn, migration.name)
                # PRAGMA does not take parameters; the version is an int from a file name.
                await conn.execute(f"PRAGMA user_version = {int(migration.version)}")
            except Exception:
                await conn.execute("ROLLBACK")
                raise
            await conn.execute("COMMIT")
        finally:
            if rebuild and keys_were_on:
                await conn.execute("PRAGMA foreign_keys = ON")
        applied.append(migration.name)
    return applied


async def _foreign_keys(conn: aiosqlite.Connection) -> bool:
    async with conn.execute("PRAGMA foreign_keys") as cursor:
        row = await cursor.fetchone()
    return bool(row and row[0])


async def _check_references(conn: aiosqlite.Connection, name: str) -> None:
    """Raise when a row refers to a row that is not there (``PRAGMA foreign_key_check``)."""
    async with conn.execute("PRAGMA foreign_key_check") as cursor:
        broken = list(await cursor.fetchall())
    if broken:
        raise StoreError(
            f"migration {name}: {len(broken)} rows would refer to missing rows "
            f"(first: table {broken[0][0]}, row {broken[0][1]}); nothing was changed"
        )
async def pg_schema_version(conn: psycopg.AsyncConnection[Any]) -> int:
    """Return the newest migration applied to a PostgreSQL database (0: none)."""
    cursor = await conn.execute(
        "SELECT CASE WHEN to_regclass('schema_migrations') IS NULL THEN 0"
        " ELSE (SELECT COALESCE(MAX(version), 0) FROM schema_migrations) END"
    )
    row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def migrate_postgresql(
    conn: psycopg.AsyncConnection[Any], folder: Path | None = None
) -> list[str]:
    """Apply PostgreSQL migrations above the database's version, each in its own transaction.

    Nodes starting together take turns (a transaction-level advisory lock), so each
    migration runs once. The connection must be in autocommit mode.

    Returns:
        Names of the migrations applied (empty when the database was current).

    Raises:
        SchemaTooNew: the database was written by a newer leadflow.
        StoreError: a migration file is malformed or failed (the message names it).
    """
    available = load_migrations(folder, "postgresql")
    newest = available[-1].version if available else 0
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PG_MIGRATE_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        current = await pg_schema_version(conn)
        if current > newest:
            raise SchemaTooNew(
                f"database schema version {current} is newer than this leadflow knows "
                f"({newest}); upgrade leadflow or use another database"
            )
        for migration in [m for m in available if m.version > current]:
            try:
                async with conn.transaction():
                    await conn.execute(migration.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
            except psycopg.Error as exc:
                raise StoreError(f"migration {migration.name} failed: {exc}") from exc
            applied.append(migration.name)
    return applied


def _statements(sql: str) -> list[str]:
    """Split a migration into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    buffer = ""
    for line in sql.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip() and not all(
        part.strip().startswith("--") for part in buffer.strip().splitlines()
    ):
        statements.append(buffer.strip())
    return statements
