"""``leadflow status`` shows when each outstanding batch is polled next."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator.commands.status import collect_status, render_status
from orchestrator.models import UploadStatus
from orchestrator.settings import Settings
from orchestrator.store import Store

AddFile = Callable[..., Awaitable[list[int]]]


async def test_status_shows_the_next_poll_of_each_batch(
    store: Store, add_file: AddFile, clock: Any, fast_settings: Callable[..., Settings]
) -> None:
    first, second = await add_file(n=2)
    for n, upload_id in enumerate((first, second)):
        claimed = await store.claim_next()
        assert claimed is not None and claimed.id == upload_id
        await store.transition_upload(
            upload_id, UploadStatus.SUBMITTING, UploadStatus.SUBMITTED, batch_id=500 + n,
            marketo_status="Queued", submitted_at=clock.now,
            next_poll_at=clock.now + (5.0 if n == 0 else 120.0),
        )
    data = await collect_status(store, fast_settings(), clock.now + 2)
    assert [b["next_poll_in_s"] for b in data["batches"]] == [3.0, 118.0]
    text = render_status(data)
    assert "batchId 500" in text and "next poll in 3s" in text and "next poll in 118s" in text
