"""Validation of an upload before a job exists, and row outcomes computed in advance.

See docs/reference/marketo-api.md §8.4 and §8.5.

`check_params` validates the parameters (cheap, before the queue check); `prepare_rows` decodes
and parses the file, checks its header and classifies every row (docs/reference/marketo-api.md
§8.5), so that a job only has to apply the outcomes as the clock moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.simulator import errors
from orchestrator.simulator.config import (
    STANDARD_LOOKUP_FIELDS,
    FieldSpec,
    FieldType,
    SimulatorConfig,
)
from orchestrator.simulator.csvparse import DELIMITERS, decode_strict, iter_records
from orchestrator.simulator.errors import ApiError
from orchestrator.simulator.jobs import ImportTarget, JobKind
from orchestrator.simulator.rows import MISSING_DEDUPE, OK, Column, RowRules, lookup_not_found

_LOOKUP_TYPES = frozenset({FieldType.STRING, FieldType.EMAIL, FieldType.INTEGER})


@dataclass
class PreparedRows:
    """A parsed, classified upload."""

    header: list[str]
    text: str
    rules: RowRules
    outcomes: bytearray = field(default_factory=bytearray)
    reported: dict[int, tuple[list[str], str]] = field(default_factory=dict)


def _delimiter(params: dict[str, str]) -> str:
    fmt = params.get("format", "").lower()
    if fmt not in DELIMITERS:
        raise ApiError.of(errors.INVALID_FORMAT)
    return DELIMITERS[fmt]


def check_params(
    config: SimulatorConfig,
    kind: JobKind,
    params: dict[str, str],
    *,
    program_id: str | None = None,
    object_api_name: str | None = None,
) -> tuple[ImportTarget, str]:
    """Validate an upload's parameters (query string merged with form fields).

    Returns:
        The import target and the delimiter of ``format``.

    Raises:
        ApiError: 1003 bad format / missing ``programMemberStatus`` / unknown partition,
            1011 unsupported ``lookupField``, 1013 unknown list, program or object type,
            1025 unknown program member status.
    """
    delimiter = _delimiter(params)
    if kind is JobKind.CUSTOM_OBJECT:
        if object_api_name not in config.custom_objects:
            raise ApiError.of(errors.OBJECT_NOT_FOUND)
        return ImportTarget(object_api_name=object_api_name), delimiter
    lookup = "email"
    if kind is JobKind.LEAD:
        lookup = params.get("lookupField") or "email"
        spec = {f.name: f for f in config.lead_fields}.get(lookup)
        allowed = spec is not None and (
            spec.name in STANDARD_LOOKUP_FIELDS
            or (spec.custom and spec.data_type in _LOOKUP_TYPES)
        )
        if not allowed:
            raise errors.field_not_supported(lookup)
    list_id: int | None = None
    raw_list = params.get("listId")
    if raw_list:
        try:
            list_id = int(raw_list)
        except ValueError:
            raise ApiError.of(errors.OBJECT_NOT_FOUND) from None
        if list_id not in config.lists:
            raise ApiError.of(errors.OBJECT_NOT_FOUND)
    partition = params.get("partitionName") or config.partitions[0]
    if partition not in config.partitions:
        raise errors.partition_not_found(partition)
    if kind is JobKind.LEAD:
        return ImportTarget(lookup, partition, list_id), delimiter
    try:
        pid = int(program_id or "")
    except ValueError:
        raise ApiError.of(errors.OBJECT_NOT_FOUND) from None
    if pid not in config.programs:
        raise ApiError.of(errors.OBJECT_NOT_FOUND)
    status = params.get("programMemberStatus")
    if not status:
        raise errors.missing_parameter("programMemberStatus")
    if status not in config.program_member_statuses:
        raise ApiError.of(errors.PROGRAM_STATUS_NOT_FOUND)
    return ImportTarget("email", partition, list_id, pid, status), delimiter


def _columns(
    config: SimulatorConfig, kind: JobKind, target: ImportTarget, header: list[str]
) -> tuple[list[Column], tuple[str, ...], str]:
    if kind is JobKind.CUSTOM_OBJECT:
        assert target.object_api_name is not None
        obj = config.custom_objects[target.object_api_name]
        specs = {f.name: f for f in obj.fields}
        cols = [Column(i, specs[h], "object") for i, h in enumerate(header) if h in specs]
        return cols, obj.dedupe_fields, MISSING_DEDUPE
    lead_specs: dict[str, FieldSpec] = {f.name: f for f in config.lead_fields}
    member_specs: dict[str, FieldSpec] = (
        {f.name: f for f in config.program_member_fields}
        if kind is JobKind.PROGRAM_MEMBER
        else {}
    )
    cols = []
    for i, name in enumerate(header):
        if name in lead_specs:
            cols.append(Column(i, lead_specs[name], "lead"))
        elif name in member_specs:
            cols.append(Column(i, member_specs[name], "member"))
        else:
            raise errors.field_not_found(name)
    return cols, (target.lookup_field,), lookup_not_found(target.lookup_field)


def prepare_rows(
    config: SimulatorConfig,
    kind: JobKind,
    target: ImportTarget,
    delimiter: str,
    data: bytes,
) -> PreparedRows:
    """Decode, parse and classify an uploaded file.

    Args:
        config: Supplies the field catalogue and custom object types.
        kind: Import kind (custom objects ignore unknown columns).
        target: From `check_params`.
        delimiter: From `check_params`.
        data: The raw ``file`` part.

    Raises:
        ApiError: 1003 ``Invalid file encoding``, 1003 ``Empty File`` (nothing, or a header
            without data rows), 1006 ``Field 'NAME' not found``.
    """
    text = decode_strict(data)
    records = iter_records(text, delimiter)
    header = next(records, None)
    if header is None:
        raise ApiError.of(errors.EMPTY_FILE)
    columns, keys, missing_reason = _columns(config, kind, target, header)
    rules = RowRules(header, columns, keys, missing_reason)
    prepared = PreparedRows(header, text, rules)
    outcomes = prepared.outcomes
    reported = prepared.reported
    classify = rules.classify
    for index, row in enumerate(records):
        outcome, reason = classify(row)
        outcomes.append(outcome)
        if outcome != OK:
            assert reason is not None
            reported[index] = (row, reason)
    if not outcomes:
        raise ApiError.of(errors.EMPTY_FILE)
    return prepared
