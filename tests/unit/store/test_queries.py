from __future__ import annotations

import re
import sqlite3

import pytest

from orchestrator.store import core as store
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
    named = [v for k, v in vars(store).items() if k.isupper()]
    constants = {v for v in named if isinstance(v, str)}
    constants |= {q for d in named if isinstance(d, dict) for q in d.values()}
    for name, sql in load_queries(store.UPLOAD_COLUMNS, store.PART_COLUMNS).items():
        assert sql in constants, f"query {name} is not bound in store.py"


def test_repeated_name_is_refused() -> None:
    with pytest.raises(ValueError, match="repeated"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n", "")
