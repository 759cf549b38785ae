"""Writing a file's results: RFC 4180 CSV, JSON, and the folder swapped into place.

The writers put RFC 4180 CSV (UTF-8, no BOM, CRLF) and JSON into a folder that the caller
builds under a temporary name and then swaps into place (``replace_dir``), so a reader never
sees a half-written results folder. What the results say is decided in ``report``.
"""

from __future__ import annotations

import csv
import heapq
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from orchestrator.results.source_rows import MappedRow, allow_long_fields

#: A CSV row: (source row or None, values in output column order, reason).
OutRow = tuple[int | None, tuple[str, ...], str]


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented UTF-8 JSON and fsync it.

    Raises:
        OSError: the folder is not writable, the disk is full, ...
    """
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    with path.open("wb") as handle:
        handle.write(text.encode("utf-8", "replace"))
        handle.flush()
        os.fsync(handle.fileno())


def write_spill(path: Path, rows: Iterable[OutRow]) -> int:
    """Write rows (already sorted by source row) to a spill file; return how many.

    Raises:
        OSError: the folder is not writable, the disk is full, ...
    """
    count = 0
    with path.open("w", encoding="utf-8", errors="replace", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        for line, values, reason in rows:
            writer.writerow(["" if line is None else line, reason, *values])
            count += 1
    return count


def read_spill(path: Path) -> Iterator[OutRow]:
    """Read back a spill file written by ``write_spill``."""
    allow_long_fields()
    with path.open("r", encoding="utf-8", newline="") as handle:
        for record in csv.reader(handle):
            if not record:
                continue
            yield (int(record[0]) if record[0] else None, tuple(record[2:]), record[1])


def _order(row: OutRow) -> tuple[bool, int]:
    return (row[0] is None, row[0] or 0)


def merge_csv(
    path: Path, labels: Sequence[str], streams: Sequence[Iterable[OutRow]]
) -> int:
    """Merge sorted row streams into one RFC 4180 CSV ordered by source row; return rows written.

    The header is ``sourceRow``, ``labels`` (the source's column names), ``reason``. Rows
    without a source row come last. Nothing is written (and 0 returned) when there are no rows.

    Raises:
        OSError: the folder is not writable, the disk is full, ...
    """
    merged = heapq.merge(*streams, key=_order)
    first = next(merged, None)
    if first is None:
        return 0
    count = 0
    with path.open("w", encoding="utf-8", errors="replace", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["sourceRow", *labels, "reason"])
        for line, values, reason in _chain(first, merged):
            writer.writerow(["" if line is None else line, *values, reason])
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    return count


def _chain(first: OutRow, rest: Iterator[OutRow]) -> Iterator[OutRow]:
    yield first
    yield from rest


def to_columns(
    row: MappedRow, positions: Sequence[int | None], width: int
) -> OutRow:
    """Re-order a mapped row's values (upload order) into the output columns.

    Args:
        positions: for each output column, its position in the upload's header, or None.
        width: the number of output columns.
    """
    values = tuple(
        row.values[p] if p is not None and p < len(row.values) else "" for p in positions
    )
    return (row.source_row, values[:width], row.reason)


def read_rejections(path: Path, width: int, delimiter: str) -> list[OutRow]:
    """Read intake's ``rejections.csv`` (``sourceRow``, the columns, ``Import Failure Reason``).

    A row with more fields than the header keeps its surplus fields joined to its last column
    with the source delimiter, so nothing is lost; a shorter one is padded with ``""``.

    Returns:
        The rows sorted by source row; an empty list when the file does not exist.

    Raises:
        OSError: the file exists but cannot be read.
    """
    if not path.is_file():
        return []
    out: list[OutRow] = []
    allow_long_fields()
    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for record in reader:
            if not record or record == [""]:
                continue
            try:
                line: int | None = int(record[0])
            except ValueError:
                line = None
            fields = record[1:-1] if len(record) > 1 else []
            reason = record[-1] if len(record) > 1 else ""
            if width and len(fields) > width:
                fields = [*fields[: width - 1], delimiter.join(fields[width - 1 :])]
            padded = tuple(fields) + ("",) * (width - len(fields))
            out.append((line, padded, reason))
    out.sort(key=_order)
    return out


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written ``tmp`` folder into place as ``final``, replacing an old one.

    An old ``final`` is renamed to ``<final>.old`` first and deleted after the swap; a crash
    in between leaves ``final`` missing and both siblings present, which the next write
    repairs (it rebuilds ``tmp`` and deletes a stale ``.old``).

    Raises:
        OSError: a rename failed (nothing was lost: ``tmp`` or ``final`` is still there).
    """
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
