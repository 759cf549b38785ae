"""Row outcomes of an import: failure, warning or success, with Marketo's reason strings.

docs/reference/marketo-api.md §8.5: checks run in this order — field count, empty lookup value, data
type, implausible email (warning), over-long string (warning, value truncated). Custom objects
(docs/reference/marketo-api.md §4.2) ignore unknown columns and fail rows without their dedupe
fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

from orchestrator.simulator.config import STRING_TYPES, FieldSpec, FieldType

#: Row imported cleanly.
OK = 0
#: Row imported with a warning.
WARN = 1
#: Row not imported.
FAIL = 2

#: Failure reason of a row whose field count differs from the header's.
WRONG_FIELD_COUNT = "Invalid number of fields"
#: Failure reason of a custom-object row without its dedupe fields (ADOC-co).
MISSING_DEDUPE = "missing.dedupe.fields"
#: Warning reason of an implausible email value.
INVALID_EMAIL = "Invalid email address"
#: Failure reason when ``lookupField=id`` names a lead that does not exist (unconfirmed).
LEAD_NOT_FOUND = "Lead not found"

_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_BOOLEANS = frozenset({"true", "false", "1", "0", "yes", "no"})


def lookup_not_found(field: str) -> str:
    """Failure reason for an empty lookup value: ``Value for lookup field 'email' not found``."""
    return f"Value for lookup field '{field}' not found"


def invalid_type(display_name: str) -> str:
    """Failure reason for a value of the wrong type: ``Invalid data type in field Lead Score``."""
    return f"Invalid data type in field {display_name}"


def truncated(display_name: str) -> str:
    """Warning reason for an over-long value: ``Value for field Job Title was truncated``."""
    return f"Value for field {display_name} was truncated"


def _is_date(value: str) -> bool:
    if not _DATE_RE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


_TYPE_CHECKS: dict[FieldType, Callable[[str], bool]] = {
    FieldType.INTEGER: lambda v: _INT_RE.fullmatch(v) is not None,
    FieldType.FLOAT: lambda v: _FLOAT_RE.fullmatch(v) is not None,
    FieldType.BOOLEAN: lambda v: v.lower() in _BOOLEANS,
    FieldType.DATE: _is_date,
    FieldType.DATETIME: _is_datetime,
}


@dataclass(frozen=True, slots=True)
class Column:
    """A header column that maps onto a known field."""

    index: int
    spec: FieldSpec
    #: Whether the value is written into the record (lead or member or object field).
    target: str


class RowRules:
    """Classifies rows of one upload and turns them into records.

    Args:
        header: The upload's header.
        columns: Known columns (unknown ones, allowed only for custom objects, are absent).
        key_fields: The lookup field (leads, program members) or the dedupe fields (objects).
        missing_key_reason: Reason used when a key value is empty or its column absent.
    """

    def __init__(
        self,
        header: list[str],
        columns: list[Column],
        key_fields: tuple[str, ...],
        missing_key_reason: str,
    ) -> None:
        self.width = len(header)
        self.columns = columns
        by_name = {c.spec.name: c.index for c in columns}
        self.key_fields = key_fields
        self.key_indexes: list[int] | None = (
            [by_name[k] for k in key_fields] if all(k in by_name for k in key_fields) else None
        )
        self.missing_key_reason = missing_key_reason
        self.typed = [
            (c.index, _TYPE_CHECKS[c.spec.data_type], invalid_type(c.spec.display_name))
            for c in columns
            if c.spec.data_type in _TYPE_CHECKS
        ]
        self.emails = [c.index for c in columns if c.spec.data_type == FieldType.EMAIL]
        self.strings = [
            (c.index, c.spec.length, truncated(c.spec.display_name))
            for c in columns
            if c.spec.data_type in STRING_TYPES
        ]
        self.min_length = min((length for _, length, _ in self.strings), default=0)

    def classify(self, row: list[str]) -> tuple[int, str | None]:
        """Return ``(OK|WARN|FAIL, reason)`` for one data row.

        The checks run in the order of docs/reference/marketo-api.md §8.5.
        """
        if len(row) != self.width:
            return FAIL, WRONG_FIELD_COUNT
        if self.key_indexes is None:
            return FAIL, self.missing_key_reason
        for i in self.key_indexes:
            if not row[i]:
                return FAIL, self.missing_key_reason
        for i, check, reason in self.typed:
            value = row[i]
            if value and not check(value):
                return FAIL, reason
        for i in self.emails:
            value = row[i]
            if value and _EMAIL_RE.fullmatch(value) is None:
                return WARN, INVALID_EMAIL
        if self.strings and sum(map(len, row)) > self.min_length:
            for i, length, reason in self.strings:
                if len(row[i]) > length:
                    return WARN, reason
        return OK, None

    def records(self, row: list[str]) -> dict[str, dict[str, str]]:
        """Split a valid row into non-empty, truncated values per target (``lead``, ...).

        Empty values are left out: an empty cell does not overwrite a stored value.
        """
        out: dict[str, dict[str, str]] = {}
        for c in self.columns:
            value = row[c.index]
            if not value:
                continue
            if c.spec.data_type in STRING_TYPES and len(value) > c.spec.length:
                value = value[: c.spec.length]
            out.setdefault(c.target, {})[c.spec.name] = value
        return out

    def key(self, row: list[str]) -> tuple[str, ...]:
        """The key values of a valid row, in ``key_fields`` order."""
        assert self.key_indexes is not None
        return tuple(row[i] for i in self.key_indexes)
