from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import psycopg
import pytest

from orchestrator.store import core as store
from orchestrator.store.database import translate_placeholders
from orchestrator.store.migrate import load_migrations
from orchestrator.store.queries import load_queries, parse_queries


def migrated() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    for migration in load_migrations():
        conn.executescript(migration.sql)
    return conn


def test_every_query_is_valid_sql_on_the_schema() -> None:
    conn = migrated()
    queries = load_queries(store.UPLOAD_COLUMNS, store.PART_COLUMNS)
    assert len(queries) >= 25
    for name, sql in queries.items():
        params = re.findall(r":([a-z_0-9]+)", sql)
        args: object = dict.fromkeys(params) if params else [None] * sql.count("?")
        conn.execute("EXPLAIN " + sql, args)  # raises on a syntax or schema error
        assert "{" not in sql, name


def test_every_query_is_used_by_the_store() -> None:
    source = Path(store.__file__).read_text()
    for name in load_queries(store.UPLOAD_COLUMNS, store.PART_COLUMNS):
        assert f'"{name}"' in source or f'"{name.rsplit("_", 1)[0]}_' in source, name


def test_the_postgresql_twin_has_the_same_names() -> None:
    assert set(store.QUERIES["postgresql"]) == set(store.QUERIES["sqlite"])


def test_every_postgresql_query_is_valid_on_the_schema(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        for name, sql in store.QUERIES["postgresql"].items():
            params = re.findall(r"(?<![:\w]):([a-z_0-9]+)", sql)
            args: object = dict.fromkeys(params) if params else [None] * sql.count("?")
            # raises on a syntax or schema error
            conn.execute("EXPLAIN " + translate_placeholders(sql), args)  # type: ignore[arg-type]
            assert "{" not in sql, name


def test_placeholders_are_translated_for_psycopg() -> None:
    sql = "SELECT ?, :a, CAST(:b AS json), x::text, '5%' FROM t WHERE y = :a"
    assert translate_placeholders(sql) == (
        "SELECT %s, %(a)s, CAST(%(b)s AS json), x::text, '5%%' FROM t WHERE y = %(a)s"
    )


def test_repeated_name_is_refused() -> None:
    with pytest.raises(ValueError, match="repeated"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n", "")
