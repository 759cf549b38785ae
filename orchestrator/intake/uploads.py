"""From written uploads to ``NewPart`` records, each route's Marketo options, and pack keys.

docs/reference/marketo-api.md §2.1 (leads: ``format``, ``lookupField``, ``listId``,
``partitionName``), §4.1 (program members: ``programId``, ``programMemberStatus``) and §4.2 (custom
objects: ``apiName``). Uploads are always written comma-separated, so ``format`` is always ``csv``.

Packing (issue 15): parts of different files may share one Marketo job when the job would be
the same for each: same endpoint kind, same options (``lookupField``, ``listId``,
``partitionName``, program and status, custom object) and the same columns after header
mapping, in the same order. ``pack_key`` hashes exactly these.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from orchestrator.intake.prepare import Prepared
from orchestrator.intake.split import WrittenUpload
from orchestrator.models import NewPart
from orchestrator.places import work_dir_of_source
from orchestrator.settings import ImportKind, ImportOptions, Route


def upload_options(source: ImportOptions, kind: ImportKind, lookup_field: str) -> dict[str, Any]:
    """Return the Marketo parameters of every upload of a file (``None`` values left out).

    Args:
        source: the route, or the ``import`` defaults for the inbox root.
        kind: the import endpoint.
        lookup_field: the lookup field in force.
    """
    options: dict[str, Any] = {"format": "csv"}
    if kind is ImportKind.LEADS:
        options["lookupField"] = lookup_field
        options["listId"] = source.list_id
        options["partitionName"] = source.partition_name
    elif isinstance(source, Route) and kind is ImportKind.PROGRAM_MEMBERS:
        options["programId"] = source.program_id
        options["programMemberStatus"] = source.program_member_status
    elif isinstance(source, Route) and kind is ImportKind.CUSTOM_OBJECTS:
        options["objectApiName"] = source.object_api_name
    return {k: v for k, v in options.items() if v is not None}


#: The options of ``import_key``, in its order (``migrations/0002`` builds the same array).
IMPORT_KEY_OPTIONS = (
    "lookupField", "listId", "partitionName", "programId", "programMemberStatus", "objectApiName",
)


def import_key(kind: str, options: Mapping[str, Any], instance: str = "default") -> str:
    """Return what makes two imports of the same bytes the same import (``files.import_key``).

    A JSON array ``[kind, lookupField, listId, partitionName, programId,
    programMemberStatus, objectApiName]`` (absent options are ``null``; ``format`` is left
    out: uploads are always CSV; a route's name is left out: two routes with the same
    options make the same import). The same bytes with another key are another import.
    For a Marketo instance other than ``default`` the instance's name is appended: the same
    bytes imported into two instances are two imports (keys of ``default`` are those
    recorded before instances existed).
    """
    values = [kind, *(options.get(name) for name in IMPORT_KEY_OPTIONS)]
    if instance != "default":
        values.append(f"instance:{instance}")
    return json.dumps(values, ensure_ascii=False, separators=(",", ":"))


def file_info(
    source_path: str,
    prepared: Prepared,
    lookup_field: str,
    route: Route | None,
    kind: ImportKind,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Return ``files.info`` of a prepared file (keys listed in ``docs/design.md``, Intake)."""
    return {
        "work_dir": str(work_dir_of_source(Path(source_path))),
        "source_path": source_path,
        "header": prepared.header.names,
        "source_header": prepared.header.source,
        "delimiter": prepared.delimiter,
        "format": prepared.format,
        "encoding": prepared.encoding,
        "lookup_field": lookup_field,
        "duplicates": prepared.duplicate_list,
        "rejections_path": str(prepared.rejections_path) if prepared.rejections_path else None,
        "route": {"name": route.name if route else None, "kind": kind.value, **options},
    }


def pack_key(kind: str, options: dict[str, Any], columns: Sequence[str]) -> str:
    """Return the key under which parts may share an upload (hex SHA-256, 64 characters).

    Args:
        kind: the import endpoint (``leads``, ...).
        options: the Marketo parameters (order of keys does not matter).
        columns: the upload's header (REST names), in order.
    """
    text = json.dumps([kind, options, list(columns)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class LazyParts(Sequence[NewPart]):
    """The parts of one file as ``NewPart``s, each built when it is read.

    Source row numbers are read from disk one part at a time (unless the splitter kept them
    in memory, as it does for small files), so enqueuing a file of any size holds one part's
    row numbers in memory, not the whole file's.

    Args:
        written: the uploads the splitter wrote.
        kind: the import endpoint.
        options: the Marketo parameters.
        key: the pack key, or None when the file's parts travel alone.
    """

    def __init__(
        self,
        written: list[WrittenUpload],
        kind: str,
        options: dict[str, Any],
        key: str | None = None,
    ) -> None:
        self._written = written
        self._kind = kind
        self._options = options
        self._key = key

    def __len__(self) -> int:
        return len(self._written)

    @overload
    def __getitem__(self, index: int) -> NewPart: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[NewPart]: ...

    def __getitem__(self, index: int | slice) -> NewPart | Sequence[NewPart]:
        if isinstance(index, slice):
            return LazyParts(self._written[index], self._kind, self._options, self._key)
        upload = self._written[index]
        return NewPart(
            path=str(upload.path),
            size_bytes=upload.size_bytes,
            source_rows=upload.source_rows(),
            kind=self._kind,
            options=dict(self._options),
            header_bytes=upload.header_bytes,
            pack_key=self._key,
        )
