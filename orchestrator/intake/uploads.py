"""From written uploads to ``NewUpload`` records, and each route's Marketo options.

Contract 2.1 (leads: ``format``, ``lookupField``, ``listId``, ``partitionName``), 4.1 (program
members: ``programId``, ``programMemberStatus``) and 4.2 (custom objects: ``apiName``). Uploads
are always written comma-separated, so ``format`` is always ``csv``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

from orchestrator.intake.prepare import Prepared
from orchestrator.intake.split import WrittenUpload
from orchestrator.models import NewUpload
from orchestrator.places import work_dir_of_source
from orchestrator.settings import ImportKind, ImportSettings, Route


def upload_options(source: ImportSettings, kind: ImportKind, lookup_field: str) -> dict[str, Any]:
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


class LazyUploads(Sequence[NewUpload]):
    """The uploads of one file as ``NewUpload``s, each built when it is read.

    Source row numbers are read from disk one upload at a time, so enqueuing a file of
    any size holds one upload's row numbers in memory, not the whole file's.
    """

    def __init__(self, written: list[WrittenUpload], kind: str, options: dict[str, Any]) -> None:
        self._written = written
        self._kind = kind
        self._options = options

    def __len__(self) -> int:
        return len(self._written)

    @overload
    def __getitem__(self, index: int) -> NewUpload: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[NewUpload]: ...

    def __getitem__(self, index: int | slice) -> NewUpload | Sequence[NewUpload]:
        if isinstance(index, slice):
            return LazyUploads(self._written[index], self._kind, self._options)
        upload = self._written[index]
        return NewUpload(
            path=str(upload.path),
            size_bytes=upload.size_bytes,
            source_rows=upload.source_rows(),
            kind=self._kind,
            options=dict(self._options),
        )
