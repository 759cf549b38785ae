"""The header: trimmed columns mapped to REST API names, or a clear rejection.

docs/reference/marketo-api.md §7: Marketo matches header columns to REST API names exactly and
rejects the whole upload on an unknown one (``1006``). Intake maps each trimmed column by exact REST
name, then case-insensitive REST name, then display name, and rejects unknown or repeated columns
itself, naming close matches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.intake.fields import Catalogue, LeadFieldLike
from orchestrator.intake.reasons import Unimportable
from orchestrator.intake.validate import is_datetime, is_float

#: Most unknown columns named in one rejection sentence.
MAX_NAMED = 5
#: A value that is an email address (never a column name).
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")


@dataclass(frozen=True, slots=True)
class HeaderMap:
    """The mapped header of one file.

    Attributes:
        names: REST API names in source order (the header of every upload).
        source: the columns as they are in the file (untrimmed).
        fields: the field of each column, or None where there is no catalogue (custom objects).
        lookup_index: position of the lookup column.
    """

    names: list[str]
    source: list[str]
    fields: list[LeadFieldLike | None]
    lookup_index: int


def _quote(names: list[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def map_header(source: list[str], catalogue: Catalogue | None, lookup_field: str) -> HeaderMap:
    """Map the header columns to REST API names.

    Args:
        source: the header as parsed (one string per column).
        catalogue: the describe catalogue; None keeps trimmed names as they are (custom
            objects, whose fields the lead describe does not know).
        lookup_field: the REST name that must be present (route or ``import.lookup_field``).

    Raises:
        Unimportable: a column without a name, unknown columns (with suggestions), two columns
            mapping to one field, or no lookup column.
    """
    trimmed = [c.strip().lstrip("\ufeff").strip() for c in source]
    for position, column in enumerate(trimmed, start=1):
        if not column:
            raise Unimportable(f"Column {position} of the header has no name.")
    names: list[str] = []
    fields: list[LeadFieldLike | None] = []
    unknown: list[str] = []
    for column in trimmed:
        field = catalogue.resolve(column) if catalogue is not None else None
        if catalogue is not None and field is None:
            unknown.append(column)
            continue
        names.append(field.name if field is not None else column)
        fields.append(field)
    if unknown and catalogue is not None:
        parts = []
        for column in unknown[:MAX_NAMED]:
            if column == "sourceRow":  # never "did you mean 'leadSource'?"
                hint = " (leadflow's row numbers: delete the column, or keep 'reason' last)"
            else:
                close = catalogue.suggest(column)
                hint = f" (did you mean {_quote(close)}?)" if close else ""
            parts.append(f"'{column}'{hint}")
        more = f" and {len(unknown) - MAX_NAMED} more" if len(unknown) > MAX_NAMED else ""
        noun = "column" if len(unknown) == 1 else "columns"
        raise Unimportable(
            f"Unknown {noun} {', '.join(parts)}{more}: not a field of the lead describe."
        )
    seen: dict[str, str] = {}
    for column, name in zip(trimmed, names, strict=True):
        if name in seen:
            raise Unimportable(
                f"Columns '{seen[name]}' and '{column}' both map to the field '{name}'."
            )
        seen[name] = column
    if lookup_field not in seen:
        raise Unimportable(f"The lookup column '{lookup_field}' is missing from the header.")
    return HeaderMap(names, list(source), fields, names.index(lookup_field))


def check_dedupe_columns(source: list[str], dedupe_fields: Sequence[str], object_name: str) -> None:
    """Check that the header holds every dedupe field of a custom object (ADOC-co).

    Marketo identifies custom object records by the fields its describe lists as
    ``dedupeFields`` and fails every row without them (``missing.dedupe.fields``); header
    names must be the object's API names exactly.

    Args:
        source: the header as parsed.
        dedupe_fields: the object's ``dedupeFields`` (several: a compound key).
        object_name: the object's API name (for the sentence).

    Raises:
        Unimportable: naming the fields the object needs, those missing, and a column that
            differs from a missing one only in case or spaces.
    """
    trimmed = [c.strip().lstrip("\ufeff").strip() for c in source]
    missing = [f for f in dedupe_fields if f not in trimmed]
    if not missing:
        return
    needs = "field" if len(dedupe_fields) == 1 else "fields (a compound key)"
    hints = [
        f"'{column}' must be written '{field}'"
        for field in missing
        for column in trimmed
        if _fold_name(column) == _fold_name(field)
    ]
    hint = f" ({'; '.join(hints)})" if hints else ""
    raise Unimportable(
        f"The custom object '{object_name}' needs its dedupe {needs} "
        f"{_and(dedupe_fields)} in the header (Marketo's describe of '{object_name}' lists "
        f"them as dedupeFields; without them every row fails 'missing.dedupe.fields'); "
        f"missing: {_and(missing)}{hint}."
    )


def _fold_name(name: str) -> str:
    return re.sub(r"[\s_]+", "", name).casefold()


def _and(names: Sequence[str]) -> str:
    quoted = [f"'{n}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def data_like_cells(columns: list[str]) -> list[str]:
    """Return the header cells that look like data, when the header as a whole does.

    A header looks like data when one of its cells is an email address, or when most of its
    cells are numbers or dates: what the first line of a file looks like when the file is the
    rest of a copy whose first part was taken while it was still being written.

    Returns:
        The data-like cells (trimmed), or ``[]`` when the header looks like a header.
    """
    cells = [c.strip().lstrip("\ufeff").strip() for c in columns]
    cells = [c for c in cells if c]
    if not cells:
        return []
    emails = [c for c in cells if _EMAIL.fullmatch(c)]
    values = [c for c in cells if _EMAIL.fullmatch(c) or is_float(c) or is_datetime(c)]
    if emails or 2 * len(values) > len(cells):
        return values
    return []


def taken_while_written(cells: list[str], stable_s: float | None, reason: str) -> str:
    """The rejection reason of a file whose header looks like data (see ``data_like_cells``).

    Args:
        cells: the data-like cells (the first ``MAX_NAMED`` are quoted).
        stable_s: ``intake.stable_s``, or None if unknown.
        reason: the reason the header was refused (kept at the end).
    """
    setting = "intake.stable_s" if stable_s is None else f"intake.stable_s = {stable_s:g} s"
    return (
        f"The header looks like data ({', '.join(repr(c) for c in cells[:MAX_NAMED])}): the "
        "file was probably taken while it was still being written (a copy that paused for "
        f"longer than {setting}), and this is the rest of it. To avoid it, write it under a "
        "temporary name (ending in .part or .tmp, or starting with '.') or outside the inbox "
        "and rename it into the inbox once complete, or raise intake.stable_s. The header "
        f"was refused because: {reason}"
    )
