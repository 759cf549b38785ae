"""Named SQL queries: ``orchestrator/store/queries.sql`` parsed into a dict, procrastinate-style.

Each query in the file starts with a ``-- name: NAME`` line; comment lines right after it
document the query and are kept out of the SQL. ``queries.sql`` is SQLite's;
``queries.postgresql.sql`` is its PostgreSQL twin with the same names. Both ship inside the
package.
"""

from __future__ import annotations

import re
from importlib import resources

_HEADER = re.compile(r"^-- name: ([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_queries(text: str, upload_columns: str, part_columns: str = "") -> dict[str, str]:
    """Split the text of a queries file into ``{name: sql}``.

    Args:
        text: the file's text.
        upload_columns: what ``{upload_columns}`` in a query stands for (a constant list of
            column names, never data).
        part_columns: what ``{part_columns}`` stands for (likewise).

    Raises:
        ValueError: a name is repeated, or a query is empty.
    """
    parts = _HEADER.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        sql = "\n".join(lines).strip().replace("{upload_columns}", upload_columns)
        sql = sql.replace("{part_columns}", part_columns)
        if name in queries or not sql:
            raise ValueError(f"query {name!r} is repeated or empty")
        queries[name] = sql
    return queries


#: The queries file of each engine.
QUERY_FILES = {"sqlite": "queries.sql", "postgresql": "queries.postgresql.sql"}


def load_queries(
    upload_columns: str, part_columns: str = "", dialect: str = "sqlite"
) -> dict[str, str]:
    """Read the queries file of ``dialect`` from the installed package (see ``parse_queries``).

    Raises:
        KeyError: an unknown dialect.
    """
    name = QUERY_FILES[dialect]
    text = resources.files("orchestrator.store").joinpath(name).read_text(encoding="utf-8")
    return parse_queries(text, upload_columns, part_columns)
