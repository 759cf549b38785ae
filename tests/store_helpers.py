"""Helpers for tests that want uploads formed at once, one per part, as before packing.

``tests/`` is on ``sys.path`` (its ``conftest.py`` is the root one), so any test imports it as
``from store_helpers import enqueue_uploads``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrator.models import FileStatus, NewPart, UploadRecord, UploadStatus
from orchestrator.store import Store


async def enqueue_uploads(
    store: Store,
    file_id: int,
    parts: Sequence[NewPart],
    *,
    new_status: FileStatus = FileStatus.QUEUED,
    **changes: Any,
) -> list[int]:
    """Enqueue a ``received`` file's parts and form each into a ``queued`` upload of its own.

    Returns:
        The upload ids, in FIFO order.
    """
    part_ids = await store.enqueue_parts(file_id, parts, new_status=new_status, **changes)
    ids: list[int] = []
    for part_id, part in zip(part_ids, parts, strict=True):
        upload = await store.form_upload(
            [(part_id, 0)], path=part.path, size_bytes=part.size_bytes,
            rows=len(part.source_rows), kind=part.kind, options=part.options,
            status=UploadStatus.QUEUED,
        )
        ids.append(upload.id)
    return ids


async def uploads_of_file(store: Store, file_id: int) -> list[UploadRecord]:
    """The uploads a file's parts ride in (distinct, in the order of its parts)."""
    found: dict[int, UploadRecord] = {}
    for part in await store.parts_of_file(file_id):
        if part.upload_id is not None and part.upload_id not in found:
            upload = await store.get_upload(part.upload_id)
            assert upload is not None
            found[part.upload_id] = upload
    return list(found.values())


async def form_waiting(store: Store, file_id: int) -> list[UploadRecord]:
    """Form each waiting part of a file into a ``queued`` upload of its own (as the packer
    would for parts that travel alone); return the uploads."""
    formed: list[UploadRecord] = []
    for part in await store.parts_of_file(file_id):
        if part.upload_id is None:
            formed.append(await store.form_upload(
                [(part.id, 0)], path=part.path, size_bytes=part.size_bytes, rows=part.rows,
                kind=part.kind, options=part.options, status=UploadStatus.QUEUED,
            ))
    return formed
