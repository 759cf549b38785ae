"""The shapes of the calls: paths and query parameters per import kind, and parsed answers.

Pure functions only (docs/reference/marketo-api.md §2, §3, §4 and §7): the client builds
requests with them and turns successful JSON answers into the frozen records `ImportJob`,
`BatchStatus` and `LeadField`. A successful answer whose ``result`` is missing or malformed
raises `MalformedAnswer`, which the client treats as transient (docs/reference/marketo-api.md
§7: clients treat ``success: true`` with an empty ``result`` as transient).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from orchestrator.errors import ApiPermanentError

#: The import kinds (values of ``settings.ImportKind``).
KINDS = ("leads", "program_members", "custom_objects")
#: Options sent as query parameters of the create call, per kind, in this order.
CREATE_PARAMS: Mapping[str, tuple[str, ...]] = {
    "leads": ("format", "lookupField", "partitionName", "listId"),
    "program_members": ("format", "programMemberStatus"),
    "custom_objects": ("format",),
}
#: Usage keys (``api_usage.endpoint``) of the calls.
ENDPOINT_CREATE = "import_create"
ENDPOINT_STATUS = "import_status"
ENDPOINT_FAILURES = "failures"
ENDPOINT_WARNINGS = "warnings"
ENDPOINT_DESCRIBE = "describe"
#: Path of the lead describe call (docs/reference/marketo-api.md §7, §8.7).
DESCRIBE_PATH = "/rest/v1/leads/describe.json"
#: Path of a custom object's describe call (ADOC-co); ``{}`` is the object's API name.
DESCRIBE_OBJECT_PATH = "/rest/v1/customobjects/{}/describe.json"


class MalformedAnswer(Exception):
    """A ``success: true`` answer without the expected ``result``."""


@dataclass(frozen=True, slots=True)
class ImportJob:
    """A created import job (docs/reference/marketo-api.md §2.2).

    Attributes:
        batch_id: Marketo's ``batchId``.
        status: ``Queued``, ``Importing``, ``Complete`` or ``Failed``.
    """

    batch_id: int
    status: str


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """The status of an import job; counters are "so far".

    See docs/reference/marketo-api.md §3.1, §4.1, §4.2.

    Attributes:
        batch_id: Marketo's ``batchId``.
        status: ``Queued``, ``Importing``, ``Complete`` or ``Failed`` (passed through as sent).
        num_leads_processed: rows imported, warned rows included (``numOfObjectsProcessed``
            for custom objects).
        num_rows_failed: rows not imported.
        num_rows_with_warning: rows imported with a warning.
        message: Marketo's message (for people; never parsed).
    """

    batch_id: int
    status: str
    num_leads_processed: int
    num_rows_failed: int
    num_rows_with_warning: int
    message: str


@dataclass(frozen=True, slots=True)
class LeadField:
    """One lead field from the describe call (docs/reference/marketo-api.md §8.7).

    Attributes:
        name: the REST API name (used in upload headers).
        display_name: the name people see (used in Marketo's failure reasons).
        data_type: ``string``, ``email``, ``integer``, ...
        length: longest value for string types, or None.
        read_only: Marketo refuses writes to it.
    """

    name: str
    display_name: str
    data_type: str
    length: int | None
    read_only: bool


@dataclass(frozen=True, slots=True)
class ObjectDescription:
    """A custom object type from its describe call (ADOC-co).

    Attributes:
        name: the object's API name (``car_c``).
        display_name: the name people see.
        dedupe_fields: the fields whose values identify a record; several are a compound key.
            A bulk import row without them fails ``missing.dedupe.fields``.
        fields: the object's fields (``read_only`` when not ``updateable``).
    """

    name: str
    display_name: str
    dedupe_fields: tuple[str, ...]
    fields: tuple[LeadField, ...]


def _required(kind: str, options: Mapping[str, Any], key: str) -> str:
    value = options.get(key)
    if value is None or str(value) == "":
        raise ApiPermanentError("config", f"{kind} imports need the {key} option")
    return quote(str(value), safe="")


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ApiPermanentError("config", f"unknown import kind {kind!r}")


def create_path(kind: str, options: Mapping[str, Any]) -> str:
    """Return the path of the create call (docs/reference/marketo-api.md §2.1, §4.1, §4.2).

    Raises:
        ApiPermanentError: code ``config``: unknown kind, or ``programId``/``objectApiName``
            missing for its kind.
    """
    _check_kind(kind)
    if kind == "program_members":
        return f"/bulk/v1/program/{_required(kind, options, 'programId')}/members/import.json"
    if kind == "custom_objects":
        return f"/bulk/v1/customobjects/{_required(kind, options, 'objectApiName')}/import.json"
    return "/bulk/v1/leads.json"


def batch_path(kind: str, options: Mapping[str, Any], batch_id: int, what: str) -> str:
    """Return the path of a status, failures or warnings call.

    Args:
        kind: the import kind.
        options: import options (``objectApiName`` for custom objects).
        batch_id: Marketo's ``batchId``.
        what: ``status``, ``failures`` or ``warnings``.

    Raises:
        ApiPermanentError: code ``config``: unknown kind or ``what``, or a missing option.
    """
    _check_kind(kind)
    if what not in ("status", "failures", "warnings"):
        raise ApiPermanentError("config", f"unknown batch call {what!r}")
    bid = int(batch_id)
    if kind == "leads":
        return f"/bulk/v1/leads/batch/{bid}.json" if what == "status" else (
            f"/bulk/v1/leads/batch/{bid}/{what}.json"
        )
    if kind == "program_members":
        return f"/bulk/v1/program/members/import/{bid}/{what}.json"
    api_name = _required(kind, options, "objectApiName")
    return f"/bulk/v1/customobjects/{api_name}/import/{bid}/{what}.json"


def create_params(kind: str, options: Mapping[str, Any]) -> dict[str, str]:
    """Return the query parameters of the create call; None values are left out.

    ``format`` defaults to ``csv``; program member imports send it upper-case (the spec's
    enum for that endpoint is ``CSV``/``TSV``/``SSV``, docs/reference/marketo-api.md §4.1).
    """
    _check_kind(kind)
    params: dict[str, str] = {}
    for key in CREATE_PARAMS[kind]:
        value = options.get(key)
        if key == "format" and value is None:
            value = "csv"
        if value is None:
            continue
        text = str(value)
        if key == "format":
            text = text.upper() if kind == "program_members" else text.lower()
        params[key] = text
    return params


def _first_result(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    result = payload.get("result")
    if not isinstance(result, list) or not result or not isinstance(result[0], Mapping):
        raise MalformedAnswer("success without a result")
    first: Mapping[str, Any] = result[0]
    return first


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 0


def parse_import_job(payload: Mapping[str, Any]) -> ImportJob:
    """Return the job of a successful create answer.

    Raises:
        MalformedAnswer: no ``result`` entry, or no integer ``batchId`` in it.
    """
    first = _first_result(payload)
    batch_id = first.get("batchId")
    if isinstance(batch_id, bool) or not str(batch_id).strip().isdigit():
        raise MalformedAnswer("create answer without a batchId")
    return ImportJob(int(str(batch_id).strip()), str(first.get("status") or "Queued"))


def parse_batch_status(payload: Mapping[str, Any], batch_id: int) -> BatchStatus:
    """Return the status of a successful status answer; missing counters are 0.

    Raises:
        MalformedAnswer: no ``result`` entry, or no ``status`` in it.
    """
    first = _first_result(payload)
    status = first.get("status")
    if not isinstance(status, str) or not status:
        raise MalformedAnswer("status answer without a status")
    processed = first.get("numOfLeadsProcessed", first.get("numOfObjectsProcessed", 0))
    return BatchStatus(
        batch_id=_int(first.get("batchId", batch_id)) or batch_id,
        status=status,
        num_leads_processed=_int(processed),
        num_rows_failed=_int(first.get("numOfRowsFailed", 0)),
        num_rows_with_warning=_int(first.get("numOfRowsWithWarning", 0)),
        message=str(first.get("message") or ""),
    )


def parse_describe(payload: Mapping[str, Any]) -> list[LeadField]:
    """Return the lead fields of a successful describe answer.

    Entries without a REST name are skipped.

    Raises:
        MalformedAnswer: ``result`` is not a list.
    """
    result = payload.get("result")
    if not isinstance(result, list):
        raise MalformedAnswer("describe answer without a result list")
    fields: list[LeadField] = []
    for entry in result:
        if not isinstance(entry, Mapping):
            continue
        rest = entry.get("rest")
        name = rest.get("name") if isinstance(rest, Mapping) else None
        if not isinstance(name, str) or not name:
            continue
        length = entry.get("length")
        fields.append(
            LeadField(
                name=name,
                display_name=str(entry.get("displayName") or name),
                data_type=str(entry.get("dataType") or "string"),
                length=_int(length) if length is not None else None,
                read_only=bool(rest.get("readOnly", False)) if isinstance(rest, Mapping) else False,
            )
        )
    return fields


def describe_object_path(api_name: str) -> str:
    """Return the path of a custom object's describe call (the name URL-quoted)."""
    return DESCRIBE_OBJECT_PATH.format(quote(api_name, safe=""))


def parse_object_describe(payload: Mapping[str, Any]) -> ObjectDescription:
    """Return the custom object of a successful describe answer (``result[0]``).

    Raises:
        MalformedAnswer: no ``result`` entry, or no non-empty list of ``dedupeFields`` in it.
    """
    first = _first_result(payload)
    dedupe = first.get("dedupeFields")
    if not isinstance(dedupe, list) or not dedupe or not all(
        isinstance(name, str) and name for name in dedupe
    ):
        raise MalformedAnswer("custom object describe answer without dedupeFields")
    fields: list[LeadField] = []
    for entry in first.get("fields") or []:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        name = str(entry["name"])
        length = entry.get("length")
        fields.append(
            LeadField(
                name=name,
                display_name=str(entry.get("displayName") or name),
                data_type=str(entry.get("dataType") or "string"),
                length=_int(length) if length is not None else None,
                read_only=not bool(entry.get("updateable", True)),
            )
        )
    name = str(first.get("name") or "")
    return ObjectDescription(
        name=name,
        display_name=str(first.get("displayName") or name),
        dedupe_fields=tuple(dedupe),
        fields=tuple(fields),
    )
