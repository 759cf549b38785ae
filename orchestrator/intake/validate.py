"""Value checks per Marketo data type: pure functions, as lenient as Marketo.

docs/reference/marketo-api.md §8.5: a value that does not parse as the field's type (integer,
float, boolean, date, datetime) fails the row with ``Invalid data type in field DISPLAY NAME``.
Intake rejects such rows itself, and must never refuse what Marketo would accept, so each check
is the lenient one: surrounding spaces are ignored, booleans take true/false/1/0/yes/no/t/f/y/n
in any case, dates take ISO 8601 (also with a time part) and ``M/D/YYYY``, datetimes take ISO
8601 with ``T`` or a space, optional seconds, fraction and offset or ``Z``. An empty value is
always allowed (it means "no value").
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime

from orchestrator.intake.fields import LeadFieldLike
from orchestrator.intake.reasons import invalid_type

Check = Callable[[str], bool]

_INT = re.compile(r"[+-]?\d+")
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_BOOLEANS = frozenset({"true", "false", "1", "0", "yes", "no", "t", "f", "y", "n"})


def is_integer(value: str) -> bool:
    """Return whether ``value`` is an integer (``-12``, ``+3``, `` 7 ``)."""
    return _INT.fullmatch(value.strip()) is not None


def is_float(value: str) -> bool:
    """Return whether ``value`` is a finite number (``1.5``, ``-2``, ``3e4``, ``.5``)."""
    try:
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and "_" not in value


def is_boolean(value: str) -> bool:
    """Return whether ``value`` is a boolean Marketo accepts."""
    return value.strip().lower() in _BOOLEANS


def _us_date(value: str) -> bool:
    match = _US_DATE.fullmatch(value)
    if match is None:
        return False
    month, day, year = (int(g) for g in match.groups())
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def is_datetime(value: str) -> bool:
    """Return whether ``value`` is an ISO 8601 date-time (or date), or ``M/D/YYYY``."""
    text = value.strip()
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return _us_date(text)
    return True


def is_date(value: str) -> bool:
    """Return whether ``value`` is a date: ISO 8601 (a time part is tolerated) or ``M/D/YYYY``."""
    return is_datetime(value)


#: The check for each Marketo data type that has one; other types accept any text.
CHECKS: dict[str, Check] = {
    "integer": is_integer,
    "float": is_float,
    "currency": is_float,
    "percent": is_float,
    "boolean": is_boolean,
    "date": is_date,
    "datetime": is_datetime,
}


#: Cheap C-level acceptance tried before the full check (speed only; never rejects).
FAST_ACCEPT: dict[str, Check] = {
    "integer": str.isdecimal,
    "boolean": frozenset({"true", "false", "1", "0", "TRUE", "FALSE"}).__contains__,
}


def _never(value: str) -> bool:
    return False


#: One typed column: ``(index, fast accept, full check, failure reason)``.
Typed = tuple[int, Check, Check, str]


def typed_columns(fields: Sequence[LeadFieldLike | None]) -> list[Typed]:
    """Return ``(column index, fast accept, check, failure reason)`` per typed column."""
    out: list[Typed] = []
    for index, field in enumerate(fields):
        if field is None:
            continue
        kind = field.data_type.lower()
        check = CHECKS.get(kind)
        if check is not None:
            fast = FAST_ACCEPT.get(kind, _never)
            out.append((index, fast, check, invalid_type(field.display_name or field.name)))
    return out


def first_bad_value(row: Sequence[str], typed: Sequence[Typed]) -> str | None:
    """Return the reason of the first typed value in ``row`` that fails its check, or None.

    An empty or all-space value is accepted (no value).
    """
    for index, fast, check, reason in typed:
        value = row[index]
        if value and not fast(value) and not value.isspace() and not check(value):
            return reason
    return None
