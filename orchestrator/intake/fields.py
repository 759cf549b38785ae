"""The field catalogues: lead fields from Marketo's describe, and custom objects' dedupe fields.

docs/reference/marketo-api.md §7: the header of an upload must hold REST API names (``firstName``,
not "First Name"); display names are not matched by Marketo, so intake maps them here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class LeadFieldLike(Protocol):
    """What intake needs of one field of the describe (``marketo.LeadField`` fits)."""

    @property
    def name(self) -> str:
        """REST API name, e.g. ``firstName``."""

    @property
    def display_name(self) -> str:
        """Display name, e.g. ``First Name``."""

    @property
    def data_type(self) -> str:
        """Marketo data type: string, email, integer, float, boolean, date, datetime, ..."""

    @property
    def length(self) -> int | None:
        """Longest value for string types, if known."""

    @property
    def read_only(self) -> bool:
        """Whether the REST API refuses writes to the field."""


class CustomObjectLike(Protocol):
    """What intake needs of a custom object's describe (``marketo.ObjectDescription`` fits)."""

    @property
    def name(self) -> str:
        """The object's API name, e.g. ``car_c``."""

    @property
    def dedupe_fields(self) -> tuple[str, ...]:
        """The fields that identify a record (several: a compound key)."""


@dataclass(frozen=True, slots=True)
class Field:
    """A plain field record (for tests and for catalogues built without a client)."""

    name: str
    display_name: str
    data_type: str = "string"
    length: int | None = 255
    read_only: bool = False


_SPACES = re.compile(r"\s+")


def _fold(text: str) -> str:
    """Case- and space-insensitive key: ``" First  Name "`` -> ``"first name"``."""
    return _SPACES.sub(" ", text.strip()).casefold()


class Catalogue:
    """Field lookups by REST name (exact, then case-insensitive) and by display name.

    Args:
        fields: the describe result; the first field wins when two share a folded name.
    """

    def __init__(self, fields: Iterable[LeadFieldLike]) -> None:
        self.fields: dict[str, LeadFieldLike] = {}
        self._lower: dict[str, LeadFieldLike] = {}
        self._display: dict[str, LeadFieldLike] = {}
        for field in fields:
            self.fields.setdefault(field.name, field)
            self._lower.setdefault(field.name.casefold(), field)
            if field.display_name:
                self._display.setdefault(_fold(field.display_name), field)

    def __len__(self) -> int:
        return len(self.fields)

    def get(self, name: str) -> LeadFieldLike | None:
        """Return the field with exactly this REST name, or None."""
        return self.fields.get(name)

    def resolve(self, column: str) -> LeadFieldLike | None:
        """Map a (trimmed) header column to a field, or None if nothing matches.

        Order: exact REST name, case-insensitive REST name, then display name (case- and
        space-insensitive).
        """
        found = self.fields.get(column)
        if found is None:
            found = self._lower.get(column.casefold())
        if found is None:
            found = self._display.get(_fold(column))
        return found

    def suggest(self, column: str, limit: int = 3) -> list[str]:
        """Return up to ``limit`` REST names close to ``column`` (by name or display name)."""
        key = _fold(column)
        candidates: dict[str, str] = {}
        for field in self.fields.values():
            candidates.setdefault(field.name.casefold(), field.name)
            if field.display_name:
                candidates.setdefault(_fold(field.display_name), field.name)
        out: list[str] = []
        for match in difflib.get_close_matches(key, list(candidates), n=limit * 2, cutoff=0.6):
            name = candidates[match]
            if name not in out:
                out.append(name)
        return out[:limit]
