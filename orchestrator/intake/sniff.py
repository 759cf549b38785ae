"""The delimiter, sniffed from the header line's content (never from the file name).

A header of REST API or display names holds none of the candidates, so the candidates that
occur outside double quotes in the header line decide: one -> it; none -> a one-column file
(comma); several -> the one whose split maps every column to a known field, else the file is
rejected as ambiguous.
"""

from __future__ import annotations

import csv
from collections.abc import Callable

from orchestrator.intake.reasons import Unimportable
from orchestrator.models import FORMAT_OF_DELIMITER

_NAMES = {",": "comma", "\t": "tab", ";": "semicolon"}


def _outside_quotes(line: str) -> dict[str, int]:
    counts = dict.fromkeys(FORMAT_OF_DELIMITER, 0)
    quoted = False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    return counts


def split_header(line: str, delimiter: str) -> list[str]:
    """Split one header line with RFC 4180 quoting; returns the raw (untrimmed) columns."""
    rows = list(csv.reader([line], delimiter=delimiter))
    return rows[0] if rows else []


def sniff_delimiter(header_line: str, all_known: Callable[[list[str]], bool]) -> str:
    """Return the delimiter of a file from its header line.

    Args:
        header_line: the first non-blank line, decoded, without its line break.
        all_known: tells whether every (trimmed) column of a split header is a known field;
            used only to break a tie between several candidates.

    Raises:
        Unimportable: several candidates occur and not exactly one of them gives known fields.
    """
    counts = _outside_quotes(header_line)
    present = [d for d, n in counts.items() if n > 0]
    if not present:
        return ","
    if len(present) == 1:
        return present[0]
    fitting = [
        d for d in present if all_known([c.strip() for c in split_header(header_line, d)])
    ]
    if len(fitting) == 1:
        return fitting[0]
    names = " and ".join(_NAMES[d] for d in present)
    raise Unimportable(
        f"The delimiter is ambiguous: the header line holds both {names}; "
        "use one delimiter (comma, tab or semicolon)."
    )
