from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import aiosqlite
import pytest

from orchestrator.errors import SchemaTooNew, StoreError
from orchestrator.store import Store
from orchestrator.store.migrate import load_migrations, migrate, migrations_dir, schema_version

ROOT = Path(__file__).resolve().parents[3]


def test_file_names_are_well_formed_and_contiguous() -> None:
    names = sorted(p.name for p in (ROOT / "migrations").glob("*.sql"))
    assert names, "no migrations"
    for number, name in enumerate(names, start=1):
        assert re.fullmatch(rf"{number:04d}_[a-z0-9_]+\.sql", name), name
    assert [m.version for m in load_migrations()] == list(range(1, len(names) + 1))


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
    for table in ("files", "uploads", "status_history", "allowed_transitions", "api_usage"):
        assert ("table", table) in objects
    assert ("index", "files_sha256_imported") in objects
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
    assert migrations_dir().is_dir()
