"""The header: trimmed columns mapped to REST API names, or a clear rejection.

docs/reference/marketo-api.md §7: Marketo matches header columns to REST API names exactly and
rejects the whole upload on an unknown one (``1006``). Intake maps each trimmed column by exact REST
name, then case-insensitive REST name, then display name, and rejects unknown or repeated columns
itself, naming close matches.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.intake.fields import Catalogue, LeadFieldLike
from orchestrator.intake.reasons import Unimportable

#: Most unknown columns named in one rejection sentence.
MAX_NAMED = 5


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
