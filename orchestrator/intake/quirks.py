"""Spreadsheet quirks of the header: ``sep=``, empty trailing columns, leadflow's reports.

Excel's ``sep=`` line, empty trailing columns, and leadflow's own ``failures.csv`` /
``warnings.csv`` dropped back into the inbox:

- ``sep=;`` as the first line is Excel's delimiter hint: the line is skipped (it still counts
  as a physical line for row numbers) and its delimiter is used.
- Columns at the end of the header without a name (``email,firstName,``) are dropped when
  every row's value there is empty; a value in such a column rejects the file, naming the
  column and the row.
- A header whose first column is exactly ``sourceRow`` and whose last is exactly ``reason``
  is leadflow's failures/warnings format: both columns are dropped and the rest imported.

``trim_header`` decides from the header alone (pure); ``TrimmedReader`` applies the decision
to every record while ``csv`` reads them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from orchestrator.intake.reasons import Unimportable
from orchestrator.models import FORMAT_OF_DELIMITER

log = structlog.get_logger(__name__)

#: ``sep=;``, ``sep=,``, ``sep=<tab>`` (optionally quoted, any case).
_SEP = re.compile(r'^\ufeff?"?sep=(.)"?\s*$', re.IGNORECASE)
#: First and last header columns of leadflow's ``failures.csv`` and ``warnings.csv``.
REPORT_FIRST, REPORT_LAST = "sourceRow", "reason"


def sep_hint(line: str) -> str | None:
    """Return the delimiter named by an Excel ``sep=X`` line, or None if it is not one.

    Args:
        line: the first non-blank line, decoded, without its line break.

    Raises:
        Unimportable: the hint names a delimiter other than comma, tab or semicolon.
    """
    found = _SEP.match(line)
    if found is None:
        return None
    delimiter = found.group(1)
    if delimiter not in FORMAT_OF_DELIMITER:
        raise Unimportable(
            f"The first line '{line.strip()}' asks for the delimiter {delimiter!r}; leadflow "
            "reads comma, tab or semicolon."
        )
    return delimiter


def _name(column: str) -> str:
    return column.strip().lstrip("\ufeff").strip()


@dataclass(frozen=True, slots=True)
class HeaderTrim:
    """Columns dropped from a header (and from every record under it).

    Attributes:
        named: columns before the trailing nameless ones (report columns included).
        nameless: trailing columns without a name that were dropped.
        report: whether ``sourceRow`` (first) and ``reason`` (last named) were dropped.
    """

    named: int
    nameless: int
    report: bool

    @property
    def width(self) -> int:
        """Columns kept (the width of the uploads)."""
        return self.named - 2 * self.report


def trim_header(columns: list[str]) -> tuple[list[str], HeaderTrim | None]:
    """Drop trailing nameless columns and leadflow's report columns from a header (pure).

    Args:
        columns: the header as split (untrimmed).

    Returns:
        ``(kept columns, trim)``; ``trim`` is None when nothing was dropped. A header whose
        every column is nameless is left as it is (``map_header`` rejects it).
    """
    named = len(columns)
    while named > 0 and not _name(columns[named - 1]):
        named -= 1
    if named == 0:
        return columns, None
    kept = columns[:named]
    report = len(kept) >= 3 and _name(kept[0]) == REPORT_FIRST and _name(kept[-1]) == REPORT_LAST
    if report:
        kept = kept[1:-1]
    if named == len(columns) and not report:
        return columns, None
    return kept, HeaderTrim(named, len(columns) - named, report)


def header_for_upload(columns: list[str]) -> tuple[list[str], HeaderTrim | None]:
    """``trim_header``, logging what it dropped.

    Log events: ``leadflow_report_columns_dropped`` (``columns``: the two names),
    ``header_nameless_columns_dropped`` (``count``, ``first``: 1-based position).
    """
    kept, trim = trim_header(columns)
    if trim is not None and trim.nameless:
        log.info("header_nameless_columns_dropped", count=trim.nameless, first=trim.named + 1)
    if trim is not None and trim.report:
        log.info("leadflow_report_columns_dropped", columns=[REPORT_FIRST, REPORT_LAST])
    return kept, trim


class TrimmedReader:
    """Wraps a ``csv.reader``: yields each record without the columns ``trim`` dropped.

    Args:
        reader: the ``csv.reader`` over the data lines.
        trim: what ``trim_header`` dropped.
        header_end: the line on which the header ends (1-based).

    A record longer than the kept header keeps its surplus (so the row rules still reject it
    for its field count). ``line_num`` is the wrapped reader's.

    Raises:
        Unimportable: from the iteration, when a record has a value in a nameless column.
    """

    def __init__(self, reader: Any, trim: HeaderTrim, header_end: int) -> None:
        self._reader = reader
        self._trim = trim
        self._offset = header_end + 1
        self._start = header_end + 1

    @property
    def line_num(self) -> int:
        """Lines the wrapped reader has read."""
        return int(self._reader.line_num)

    def __iter__(self) -> Iterator[list[str]]:
        return self

    def __next__(self) -> list[str]:
        row: list[str] = next(self._reader)
        start, self._start = self._start, self._reader.line_num + self._offset
        trim = self._trim
        if trim.nameless and len(row) > trim.named:
            tail = row[trim.named : trim.named + trim.nameless]
            for position, value in enumerate(tail, start=trim.named + 1):
                if value.strip():
                    raise Unimportable(
                        f"Column {position} of the header has no name, but the record on "
                        f"line {start} has a value in it ({value.strip()[:40]!r}); name the "
                        "column or delete it."
                    )
            del row[trim.named : trim.named + trim.nameless]
        if trim.report:
            del row[0]
            if len(row) > trim.width:  # the reason, written last (a row without one is kept)
                del row[-1]
        return row
