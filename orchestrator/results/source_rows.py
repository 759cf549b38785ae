"""Mapping Marketo's failures and warnings files back to source row numbers.

Marketo's files (docs/reference/marketo-api.md §3.2, §3.3, §8.6) hold the upload's columns (REST
names) plus one appended reason column, no row numbers, in no guaranteed order, and may drop an
empty last column from the header and the rows. So rows are parsed by header name with the csv
module,
missing columns become ``""``, and each reported row is matched to the upload's rows by content:
first by all its values (identical rows are matched to consecutive source rows, in file
order), then, if that fails, by the value of the lookup column alone. Everything here is pure
apart from reading the files it is given.
"""

from __future__ import annotations

import csv
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.models import DELIMITER_OF_FORMAT

#: The column Marketo appends to a failures file (docs/reference/marketo-api.md §3.2).
FAILURE_REASON = "Import Failure Reason"
#: The column Marketo appends to a warnings file (docs/reference/marketo-api.md §3.3).
WARNING_REASON = "Import Warning Reason"

#: Longest field the CSV readers here accept, in characters (an upload is under 10 MB).
MAX_FIELD_CHARS = 1 << 26


def allow_long_fields() -> None:
    """Raise the csv module's field limit (128 KiB by default) to ``MAX_FIELD_CHARS``.

    The limit is process-wide; it is only ever raised, at the moment a file is read, so it
    never lowers a limit another module set.
    """
    if csv.field_size_limit() < MAX_FIELD_CHARS:
        csv.field_size_limit(MAX_FIELD_CHARS)


def delimiter_for(fmt: str | None) -> str:
    """Return the field delimiter of a Marketo ``format`` (``csv`` when unknown)."""
    return DELIMITER_OF_FORMAT.get((fmt or "csv").lower(), ",")


def fit(values: Sequence[str], width: int) -> tuple[str, ...]:
    """Return ``values`` padded with ``""`` or cut to exactly ``width`` fields."""
    if len(values) >= width:
        return tuple(values[:width])
    return (*values, *([""] * (width - len(values))))


@dataclass(frozen=True, slots=True)
class ReportedRow:
    """One row of Marketo's failures or warnings file.

    Attributes:
        values: the row's values in the upload's column order; columns Marketo left out
            (the dropped empty last column) are ``""``.
        reason: the ``Import Failure Reason`` / ``Import Warning Reason`` value.
    """

    values: tuple[str, ...]
    reason: str


def read_reported_rows(
    path: Path, columns: Sequence[str], reason_column: str, delimiter: str = ","
) -> Iterator[ReportedRow]:
    """Parse a failures or warnings file by header name (docs/reference/marketo-api.md §3.2, §8.6).

    Args:
        path: the downloaded file (UTF-8; a BOM is tolerated, bad bytes are replaced).
        columns: the upload's header (REST names), the order of ``ReportedRow.values``.
        reason_column: ``FAILURE_REASON`` or ``WARNING_REASON``; when the header lacks it the
            last column is taken as the reason.
        delimiter: the upload's delimiter.

    Yields:
        One ``ReportedRow`` per non-blank record, in file order.

    Raises:
        OSError: the file cannot be read.
        csv.Error: the file is not parseable CSV.
    """
    allow_long_fields()
    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None)
        if not header:
            return
        reason_at = header.index(reason_column) if reason_column in header else len(header) - 1
        positions = {name: i for i, name in enumerate(header) if i != reason_at}
        for row in reader:
            if not row or row == [""]:
                continue
            values = tuple(
                row[positions[name]] if name in positions and positions[name] < len(row) else ""
                for name in columns
            )
            reason = row[reason_at] if reason_at < len(row) else ""
            yield ReportedRow(values, reason)


def read_upload(path: Path, delimiter: str = ",") -> tuple[list[str], list[tuple[str, ...]]]:
    """Read a prepared upload: its header and its rows, each fitted to the header's width.

    Returns:
        ``(header, rows)``; blank records are skipped (intake writes none).

    Raises:
        OSError: the file cannot be read.
        csv.Error: the file is not parseable CSV.
    """
    allow_long_fields()
    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader, None) or []
        width = len(header)
        rows = [fit(row, width) for row in reader if row and row != [""]]
    return header, rows


class RowIndex:
    """An upload's rows indexed by their values and by their lookup value.

    Args:
        rows: the upload's rows (see ``read_upload``), in file order.
        lookup_at: position of the lookup column in the header, or None.
    """

    def __init__(self, rows: Sequence[tuple[str, ...]], lookup_at: int | None = None) -> None:
        self.rows = rows
        self._by_values: dict[tuple[str, ...], list[int]] = {}
        self._by_lookup: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            self._by_values.setdefault(row, []).append(i)
            if lookup_at is not None and lookup_at < len(row):
                self._by_lookup.setdefault(row[lookup_at].strip().lower(), []).append(i)
        self._lookup_at = lookup_at

    def matcher(self) -> RowMatcher:
        """Return a fresh matcher (one per reported file: failures and warnings apart)."""
        return RowMatcher(self)


class RowMatcher:
    """Matches reported rows to an upload's rows; each upload row is matched at most once."""

    def __init__(self, index: RowIndex) -> None:
        self._index = index
        self._used: set[int] = set()
        self._next_by_values: dict[tuple[str, ...], int] = {}
        self._next_by_lookup: dict[str, int] = {}

    def _take(self, candidates: list[int], cursors: dict[Any, int], key: Hashable) -> int | None:
        at = cursors.get(key, 0)
        while at < len(candidates) and candidates[at] in self._used:
            at += 1
        cursors[key] = at
        if at == len(candidates):
            return None
        found = candidates[at]
        cursors[key] = at + 1
        self._used.add(found)
        return found

    def match(self, values: tuple[str, ...]) -> int | None:
        """Return the position in the upload of the row with these values, or None.

        Identical rows are handed out in file order, so ``n`` identical reported rows get the
        first ``n`` identical upload rows. When no unused row has exactly these values the
        lookup value alone decides (Marketo may have changed a value, e.g. truncated it).
        """
        index = self._index
        exact = index._by_values.get(values)
        if exact:
            found = self._take(exact, self._next_by_values, values)
            if found is not None:
                return found
        if index._lookup_at is None or index._lookup_at >= len(values):
            return None
        key = values[index._lookup_at].strip().lower()
        loose = index._by_lookup.get(key)
        if not loose:
            return None
        return self._take(loose, self._next_by_lookup, key)


@dataclass(frozen=True, slots=True)
class MappedRow:
    """A reported row joined back to its source.

    Attributes:
        source_row: the 1-based source line number, or None when no upload row matched.
        values: the upload row's values (all columns, as sent) when matched, else the
            reported values.
        reason: Marketo's reason.
        position: the 0-based row of the upload it matched, or None.
    """

    source_row: int | None
    values: tuple[str, ...]
    reason: str
    position: int | None = None


def map_rows(
    reported: Iterator[ReportedRow],
    index: RowIndex,
    source_rows: Sequence[int],
) -> list[MappedRow]:
    """Join reported rows to source rows; return them ordered by source row (unmatched last).

    Args:
        reported: rows from ``read_reported_rows``.
        index: the upload's ``RowIndex``.
        source_rows: one source line number per upload row (its parts' ``source_rows``, in order).
    """
    matcher = index.matcher()
    mapped: list[MappedRow] = []
    for row in reported:
        at = matcher.match(row.values)
        if at is None:
            mapped.append(MappedRow(None, row.values, row.reason))
            continue
        line = source_rows[at] if at < len(source_rows) else None
        mapped.append(MappedRow(line, index.rows[at], row.reason, at))
    mapped.sort(key=lambda m: (m.source_row is None, m.source_row or 0))
    return mapped
