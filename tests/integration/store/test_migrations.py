from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import aiosqlite
import psycopg
import pytest
from postgres_support import PgServer

from orchestrator.errors import SchemaTooNew, StoreError
from orchestrator.intake.uploads import import_key
from orchestrator.store import Store
from orchestrator.store.migrate import (
    load_migrations,
    migrate,
    migrate_postgresql,
    migrations_dir,
    pg_schema_version,
    schema_version,
)

ROOT = Path(__file__).resolve().parents[3]


def test_file_names_are_well_formed_and_contiguous() -> None:
    names = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    assert names, "no migrations"
    for number, name in enumerate(names, start=1):
        assert re.fullmatch(rf"{number:04d}_[a-z0-9_]+\.sql", name), name
    assert [m.version for m in load_migrations()] == list(range(1, len(names) + 1))


def test_both_engines_have_the_same_migrations() -> None:
    """PostgreSQL starts at a baseline; from there on, version N has the same name on both."""
    sqlite = {m.version: m.name for m in load_migrations()}
    pg = load_migrations(dialect="postgresql")
    assert pg[0].name.endswith("_baseline.sql") and pg[0].version in sqlite
    assert pg[-1].version == max(sqlite)
    assert [m.name for m in pg[1:]] == [sqlite[m.version] for m in pg[1:]]


async def test_both_engines_build_the_same_tables_and_columns(
    tmp_path: Path, pg_server: PgServer
) -> None:
    """Version N means the same schema on SQLite and on PostgreSQL: every table and column."""
    async with Store.open(tmp_path / "q.db"):
        pass
    lite = sqlite3.connect(tmp_path / "q.db")
    try:
        tables = [r[0] for r in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        on_sqlite = {(t, r[1]) for t in tables for r in lite.execute(f"PRAGMA table_info({t})")}
    finally:
        lite.close()
    url = pg_server.new_database(migrated=False)
    try:
        async with Store.open(url):
            pass
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cursor = await conn.execute(
                "SELECT table_name, column_name FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name <> 'schema_migrations'"
            )
            on_pg = {(str(t), str(c)) for t, c in await cursor.fetchall()}
    finally:
        pg_server.drop_database(url)
    assert on_pg == on_sqlite


async def test_postgresql_migrates_once_and_refuses_a_newer_schema(pg_server: PgServer) -> None:
    url = pg_server.new_database(migrated=False)
    try:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            first = await migrate_postgresql(conn)
            assert first == [m.name for m in load_migrations(dialect="postgresql")]
            assert await migrate_postgresql(conn) == []
            assert await pg_schema_version(conn) == load_migrations()[-1].version
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'x')")
        with pytest.raises(SchemaTooNew, match="newer than this leadflow"):
            async with Store.open(url):
                pass
    finally:
        pg_server.drop_database(url)


async def test_nodes_starting_together_migrate_once(pg_server: PgServer) -> None:
    url = pg_server.new_database(migrated=False)
    try:
        async def start() -> None:
            async with Store.open(url) as store:
                await store.count_calls("2026-01-01", "x")

        await asyncio.gather(*(start() for _ in range(4)))
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cursor = await conn.execute("SELECT COUNT(*), MAX(version) FROM schema_migrations")
            pg = load_migrations(dialect="postgresql")
            assert await cursor.fetchone() == (len(pg), pg[-1].version)
            cursor = await conn.execute("SELECT calls FROM api_usage")
            assert await cursor.fetchone() == (4,)
    finally:
        pg_server.drop_database(url)


def test_gap_in_numbering_is_refused(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("CREATE TABLE a (x);")
    (tmp_path / "0003_c.sql").write_text("CREATE TABLE c (x);")
    with pytest.raises(StoreError, match="expected number 0002"):
        load_migrations(tmp_path)


async def test_fresh_database_gets_tables_indexes_triggers(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "q.db"):
        pass
    conn = sqlite3.connect(tmp_path / "q.db")
    objects = {(t, n) for t, n in conn.execute("SELECT type, name FROM sqlite_master")}
    for table in ("files", "uploads", "status_history", "allowed_transitions", "api_usage",
                  "daemon_routes"):
        assert ("table", table) in objects
    assert ("index", "files_import_imported") in objects
    assert ("trigger", "uploads_history_update") in objects
    assert ("trigger", "uploads_transition_guard") in objects
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(load_migrations())
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_migrating_twice_is_a_no_op(tmp_path: Path) -> None:
    async with aiosqlite.connect(tmp_path / "q.db", isolation_level=None) as conn:
        first = await migrate(conn)
        second = await migrate(conn)
        assert first == [m.name for m in load_migrations()]
        assert second == []
        assert await schema_version(conn) == len(first)


async def test_database_newer_than_code_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "q.db")
    conn.execute("PRAGMA user_version = 999")
    conn.close()
    with pytest.raises(SchemaTooNew, match="newer than this leadflow"):
        async with Store.open(tmp_path / "q.db"):
            pass


async def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "q.db").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="cannot be used"):
        async with Store.open(tmp_path / "q.db"):
            pass


def test_migrations_ship_inside_the_wheel(tmp_path: Path) -> None:
    """Migrations must work from an installed wheel, not only from a checkout."""
    pytest.importorskip("hatchling")
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("leadflow-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "orchestrator/migrations/0001_initial.sql" in names
    assert "orchestrator/store/queries.sql" in names
    for migration in load_migrations(dialect="postgresql"):
        assert f"orchestrator/migrations/postgresql/{migration.name}" in names
    assert "orchestrator/store/queries.postgresql.sql" in names
    assert migrations_dir().is_dir()


async def test_import_keys_of_existing_files_are_filled_in_as_intake_writes_them(
    tmp_path: Path,
) -> None:
    """Files imported before import keys existed get the key intake computes today, so the
    same bytes with the same options stay a duplicate across the upgrade."""
    first = tmp_path / "first"
    first.mkdir()
    (first / load_migrations()[0].name).write_text(load_migrations()[0].sql)
    options = {"format": "csv", "lookupField": "email", "listId": 1001,
               "partitionName": "Europe \u00e9 \"q\""}
    info = json.dumps({"route": {"name": "webinar", "kind": "leads", **options}})
    async with aiosqlite.connect(tmp_path / "q.db", isolation_level=None) as conn:
        await migrate(conn, first)
        for sha, status in (("s1", "complete"), ("s2", "rejected")):
            await conn.execute(
                "INSERT INTO files (name, inbox_path, work_path, status, sha256, info,"
                " received_at, updated_at) VALUES ('a', 'i', 'w', ?, ?, ?, 0, 0)",
                (status, sha, info),
            )
        await conn.execute(
            "INSERT INTO files (name, inbox_path, work_path, status, sha256, received_at,"
            " updated_at) VALUES ('b', 'i', 'w', 'complete', 's3', 0, 0)"
        )
        await migrate(conn)
        rows = await (await conn.execute(
            "SELECT sha256, import_key, forced FROM files ORDER BY id")).fetchall()
    assert [tuple(r) for r in rows] == [
        ("s1", import_key("leads", options), 0),
        ("s2", import_key("leads", options), 0),
        ("s3", None, 0),
    ]
