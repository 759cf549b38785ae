"""What ``leadflow run`` does first: resolve the uploads the previous process left in flight.

The daemon runs ``recover_uploads`` once, before any loop (then intake's own recovery and a
report pass). Uploads caught mid-submit (``submitting``) go back to ``queued`` with
``error_code`` ``UNCERTAIN_CODE``: the create call may or may not have landed, so they are
sent again (an upsert) and the scheduler says so when they go
(``resubmitted_after_uncertain_submit``). Uploads with a batchId at Marketo are polled at once.
"""

from __future__ import annotations

import structlog

from orchestrator.models import UploadStatus
from orchestrator.scheduling.scheduler import UNCERTAIN_CODE
from orchestrator.store import Store

log = structlog.get_logger(__name__)


async def recover_uploads(store: Store, now: float) -> None:
    """Re-queue uploads caught mid-submit and make uploads at Marketo due for a poll.

    Args:
        store: the open store.
        now: epoch seconds; the ``next_poll_at`` given to uploads at Marketo.

    Raises:
        InvalidTransition, sqlite3.Error: the store refused (the daemon reports a crash).
    """
    for upload in await store.reap_in_flight():
        await store.transition_upload(
            upload.id, UploadStatus.QUEUED, UploadStatus.QUEUED,
            error_code=UNCERTAIN_CODE,
            error="the daemon stopped during the upload; it is sent again",
        )
        log.warning(
            "upload_reaped", file_id=upload.file_id, upload_id=upload.id, seq=upload.seq,
            uncertain=upload.uncertain,
        )
    resumed = 0
    for upload in await store.at_marketo():
        await store.transition_upload(upload.id, upload.status, upload.status, next_poll_at=now)
        resumed += 1
    if resumed:
        log.info("polling_resumed", uploads=resumed)
