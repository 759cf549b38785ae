"""What ``leadflow run`` does first: resolve the uploads the previous process left in flight.

The daemon runs ``recover_uploads`` once, before any loop (then intake's own recovery and a
report pass). Uploads caught mid-submit (``submitting``) go back to ``queued`` with
``error_code`` ``UNCERTAIN_CODE``: the create call may or may not have landed, so they are
sent again (an upsert) and the scheduler says so when they go
(``resubmitted_after_uncertain_submit``). Uploads with a batchId at Marketo are polled again,
paced: their first polls are spread ``spacing_s`` apart (the daemon uses the rate window divided
by ``limits.calls_per_20s``), and every poll goes through the client's governor, which knows the
calls the previous process made in the current window.
An upload carries the rows of every file packed into it, so both lines name those files
(``file_ids``). A pack file that no upload refers to (the daemon stopped after writing it and
before recording its upload) is deleted; its parts still wait in the FIFO.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from orchestrator.models import UploadStatus
from orchestrator.scheduling.packer import remove_orphan_packs
from orchestrator.scheduling.scheduler import UNCERTAIN_CODE
from orchestrator.store import Store

log = structlog.get_logger(__name__)


async def recover_uploads(
    store: Store, now: float, spacing_s: float = 0.0, packs: Path | None = None
) -> None:
    """Re-queue uploads caught mid-submit and make uploads at Marketo due for a poll.

    Args:
        store: the open store.
        now: epoch seconds; the ``next_poll_at`` of the first upload at Marketo.
        spacing_s: seconds between the first polls of two uploads at Marketo (in
            submission order), so recovery never polls every batch at once.
        packs: the folder of pack files (``paths.work/packs``), cleared of orphans.

    Raises:
        InvalidTransition, sqlite3.Error: the store refused (the daemon reports a crash).
    """
    for upload in await store.reap_in_flight():
        await store.transition_upload(
            upload.id, UploadStatus.QUEUED, UploadStatus.QUEUED,
            error_code=UNCERTAIN_CODE,
            error="the daemon stopped during the upload; it is sent again",
        )
        riders = await store.files_of_upload(upload.id)
        log.warning(
            "upload_reaped", upload_id=upload.id, uncertain=upload.uncertain,
            file_ids=list(dict.fromkeys(r[0] for r in riders)),
            **({"file_id": riders[0][0], "seq": riders[0][2]} if len(riders) == 1 else {}),
        )
    resumed = 0
    for upload in await store.at_marketo():
        at = now + resumed * spacing_s
        await store.transition_upload(upload.id, upload.status, upload.status, next_poll_at=at)
        resumed += 1
    if resumed:
        log.info("polling_resumed", uploads=resumed, spacing_s=round(spacing_s, 3))
    if packs is not None:
        known = await store.upload_paths()
        for path in await asyncio.to_thread(remove_orphan_packs, packs, known):
            log.info("pack_file_orphan_removed", path=str(path))
