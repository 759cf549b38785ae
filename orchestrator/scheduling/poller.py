"""The poller: asks Marketo for the status of our jobs and records what it says.

Each pass takes the uploads whose ``next_poll_at`` has come (``Store.due_for_poll``), asks
for their status concurrently, writes the counters with ``Store.transition_upload`` and plans
the next poll with ``pacing.next_poll_delay``. Polling policy (docs/reference/marketo-api.md §2.4,
§9.5), between
``polling.min_interval_s`` and ``polling.max_interval_s``:

- an ``Importing`` job is polled at its expected remaining time, estimated from the observed
  processing rate (growth of ``numOfLeadsProcessed + numOfRowsFailed`` between polls), and at
  ``min_interval_s`` while no rate is known;
- the first 2 ``Queued`` jobs in our submission order are polled at ``min_interval_s``: they
  start as soon as an importing slot frees;
- a ``Queued`` job further back cannot even start while two of our jobs ahead of it are
  unfinished (Marketo's queue is FIFO with 2 importing), so it is polled rarely: when the
  rows ahead of it should be done on 2 slots at the observed rate, or, without a rate, at an
  interval growing linearly with its position; up to ``pacing.DEEP_QUEUE_FACTOR`` (10) times
  ``max_interval_s``. When it moves up to the first 2 (a job ahead finished), its next poll
  is brought forward;
- a job found ``Queued`` poll after poll waits behind jobs we cannot see (other
  integrations'): its interval grows 1.5 times per such poll.

A batch that ends ``Failed`` is uploaded again (``queued``, ``batch_failures + 1``) until
``daemon.max_batch_attempts`` batches failed, then the upload is ``failed`` (dead letter; the
file ends ``partial``). A batchId Marketo no longer knows (``1013`` on status) is uploaded
again once, then ``failed``. Whenever one of our jobs leaves Marketo's queue the scheduler is
woken (``slot_freed``) and so is the reporter (``finished``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, Protocol

import structlog

from orchestrator.errors import (
    ApiError,
    ApiPermanentError,
    AuthError,
    InvalidTransition,
    QuotaExhausted,
)
from orchestrator.models import UPLOAD_AT_MARKETO, UploadRecord, UploadStatus
from orchestrator.scheduling import pacing
from orchestrator.scheduling.scheduler import Riders
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.timing import Clock, wait_any

log = structlog.get_logger(__name__)


#: ``uploads.error_code`` of an upload whose batchId Marketo forgot and that went again.
LOST_BATCH_CODE = "1013"
#: Marketo's import statuses (docs/reference/marketo-api.md §2.3).
MARKETO_STATUSES = frozenset({"Queued", "Importing", "Complete", "Failed"})
#: Most status calls started in one pass (the client also limits calls in flight).
MAX_POLLS_PER_PASS = 20

_U = UploadStatus
#: ``UPLOAD_AT_MARKETO`` in enum order (so an ``InvalidTransition`` message reads the same).
_AT_MARKETO = tuple(s for s in _U if s in UPLOAD_AT_MARKETO)


class StatusSource(Protocol):
    """The part of ``MarketoClient`` the poller uses."""

    def get_status(
        self, batch_id: int, *, kind: str, options: dict[str, Any]
    ) -> Awaitable[Any]:
        """Return the batch's status.

        Returns:
            An object with ``status``, ``num_leads_processed``, ``num_rows_failed``,
            ``num_rows_with_warning`` and ``message`` (a ``BatchStatus``).
        """
        ...


class Poller:
    """Polls our jobs at Marketo until each is terminal.

    Args:
        settings: ``polling.*``, ``daemon.max_batch_attempts``, ``daemon.idle_tick_s``.
        store: the database.
        client: anything with ``get_status`` (the ``MarketoClient``).
        clock: epoch seconds.
        slot_freed: set when one of our jobs leaves Marketo's queue (wakes the scheduler).
        requeued: set when an upload went back to our FIFO (wakes the scheduler).
        finished: set when an upload became terminal (wakes the reporter).

    Attributes:
        poke: set it to make the poller look again at once (a new job was submitted).
        rate: the observed rows per second of one importing slot, or None.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        client: StatusSource,
        *,
        clock: Clock = time.time,
        slot_freed: asyncio.Event | None = None,
        requeued: asyncio.Event | None = None,
        finished: asyncio.Event | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._client = client
        self._clock = clock
        self.slot_freed = slot_freed or asyncio.Event()
        self.requeued = requeued or asyncio.Event()
        self.finished = finished or asyncio.Event()
        self.poke = asyncio.Event()
        self.rate: float | None = None
        self._last_seen: dict[int, tuple[int, float]] = {}
        self.riders = Riders(store)

    def use_settings(self, settings: Settings) -> None:
        """Take reloaded settings (``Daemon.reload``); the next poll time uses them."""
        self._settings = settings
        self.poke.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set.

        Raises:
            AuthError: the identity endpoint refused our credentials (fatal).
        """
        tick = self._settings.daemon.idle_tick_s
        while not stop.is_set():
            await self.poll_due()
            if stop.is_set():
                break
            next_at = await self._store.next_poll_at()
            timeout = tick if next_at is None else min(max(next_at - self._clock(), 0), tick)
            if timeout > 0:
                await wait_any((stop, self.poke), timeout)
            self.poke.clear()

    async def poll_due(self) -> int:
        """Poll every upload whose time has come, concurrently.

        Returns:
            How many status calls were made.

        Raises:
            ExceptionGroup: of the polls that failed; identity refusing our credentials during
                the pass is an `AuthError` in it (the credentials gate pauses on it).
        """
        now = self._clock()
        queue = await self._store.at_marketo()
        await self._promote(queue, now)
        due = await self._store.due_for_poll(now, MAX_POLLS_PER_PASS)
        if not due:
            return 0
        views = _queue_views(await self._store.at_marketo())
        async with asyncio.TaskGroup() as group:
            for upload in due:
                group.create_task(self._poll_one(upload, views.get(upload.id, (0, 0))))
        return len(due)

    async def _promote(self, queue: list[UploadRecord], now: float) -> None:
        """Bring forward the next poll of jobs that moved up to the front of our queue."""
        polling = self._settings.polling
        for position, upload in enumerate(queue[: pacing.MARKETO_IMPORTING_SLOTS]):
            at = pacing.promoted_poll_at(
                upload.next_poll_at, position, now, polling.min_interval_s,
                polling.max_interval_s,
            )
            if at is not None:
                try:
                    await self._store.transition_upload(
                        upload.id, upload.status, upload.status, next_poll_at=at
                    )
                except InvalidTransition:
                    continue

    async def _poll_one(self, upload: UploadRecord, place: tuple[int, int]) -> None:
        assert upload.batch_id is not None
        context = await self.riders.context(upload)
        context["batch_id"] = upload.batch_id
        with structlog.contextvars.bound_contextvars(**context):
            try:
                await self._poll_and_record(upload, place)
            except InvalidTransition as exc:
                # Someone else moved it (e.g. ``leadflow retry``); nothing to record.
                log.warning("poll_result_dropped", actual=exc.actual)

    async def _poll_and_record(self, upload: UploadRecord, place: tuple[int, int]) -> None:
        assert upload.batch_id is not None
        try:
            status = await self._client.get_status(
                upload.batch_id, kind=upload.kind, options=dict(upload.options)
            )
        except AuthError:
            raise
        except QuotaExhausted as exc:
            await self._later(upload, exc.resume_at)
            log.warning("quota_paused", resume_at=exc.resume_at, code=exc.code)
            return
        except ApiPermanentError as exc:
            if exc.code == LOST_BATCH_CODE:
                await self._lost(upload, exc)
            else:
                await self._poll_error(upload, exc)
            return
        except ApiError as exc:
            await self._poll_error(upload, exc)
            return
        await self._record(upload, status, place)

    async def _record(self, upload: UploadRecord, st: Any, place: tuple[int, int]) -> None:
        now = self._clock()
        if st.status not in MARKETO_STATUSES:
            # Not one of Marketo's four (docs/reference/marketo-api.md §2.3): keep the job and ask
            # again later.
            await self._later(upload, now + self._settings.polling.max_interval_s)
            log.warning("poll_unexpected_status", marketo_status=str(st.status)[:40])
            return
        counters = {
            "marketo_status": st.status,
            "num_leads_processed": st.num_leads_processed,
            "num_rows_failed": st.num_rows_failed,
            "num_rows_with_warning": st.num_rows_with_warning,
            "message": st.message,
            "polls": upload.polls + 1,
        }
        log.debug(
            "import_status",
            marketo_status=st.status,
            processed=st.num_leads_processed,
            failed=st.num_rows_failed,
            warned=st.num_rows_with_warning,
            polls=upload.polls + 1,
        )
        if st.status == "Complete":
            await self._store.transition_upload(
                upload.id, _AT_MARKETO, _U.COMPLETE, finished_at=now, next_poll_at=None,
                **counters,
            )
            await self._finished(upload, st, "complete")
            return
        if st.status == "Failed":
            await self._batch_failed(upload, st, counters)
            return
        done = (st.num_leads_processed or 0) + (st.num_rows_failed or 0)
        if st.status == "Importing":
            previous = self._last_seen.get(upload.id)
            self.rate = pacing.observed_rate(
                previous[0] if previous else None,
                previous[1] if previous else None,
                done,
                now,
                self.rate,
            )
            self._last_seen[upload.id] = (done, now)
        view = pacing.PollView(
            status=st.status,
            position=place[0],
            rows=upload.rows,
            done=done,
            rows_ahead=place[1],
            rate=self.rate,
            queued_polls=upload.polls if st.status == "Queued" else 0,
        )
        delay = pacing.next_poll_delay(
            view, self._settings.polling.min_interval_s, self._settings.polling.max_interval_s
        )
        new = _U.IMPORTING if st.status == "Importing" else upload.status
        await self._store.transition_upload(
            upload.id, _AT_MARKETO, new, next_poll_at=now + delay, **counters
        )

    async def _batch_failed(
        self, upload: UploadRecord, st: Any, counters: dict[str, Any]
    ) -> None:
        outcome = pacing.after_batch_failed(
            upload.batch_failures, self._settings.daemon.max_batch_attempts
        )
        message = st.message or "Import failed"
        file_ids = await self.riders.file_ids(upload.id)
        await self._store.record_error(
            f"batch {upload.batch_id} ended Failed: {message}"
            + (f" ({len(file_ids)} files ride in it)" if len(file_ids) > 1 else ""),
            code="batch_failed",
            file_id=file_ids[0] if len(file_ids) == 1 else None,
            upload_id=upload.id,
        )
        if outcome.requeue:
            await self._store.transition_upload(
                upload.id, _AT_MARKETO, _U.QUEUED, batch_failures=outcome.batch_failures,
                next_poll_at=None, not_before=None, error=f"batch ended Failed: {message}",
                **counters,
            )
            log.warning("batch_failed_requeued", batch_failures=outcome.batch_failures,
                        message=message, file_ids=file_ids)
            self._left_queue(upload)
            self.requeued.set()
            return
        await self._store.transition_upload(
            upload.id, _AT_MARKETO, _U.FAILED, batch_failures=outcome.batch_failures,
            finished_at=self._clock(), next_poll_at=None, error_code="batch_failed",
            error=f"batch ended Failed {outcome.batch_failures} times: {message}", **counters,
        )
        await self._finished(upload, st, "failed", batch_failures=outcome.batch_failures)

    async def _lost(self, upload: UploadRecord, exc: ApiPermanentError) -> None:
        outcome = pacing.after_batch_unknown(
            upload.batch_failures, upload.error_code == LOST_BATCH_CODE
        )
        text = f"Marketo no longer knows batch {upload.batch_id}: {exc.message}"
        await self._store.record_error(
            text, code=exc.code, file_id=await self.riders.only_file(upload.id),
            upload_id=upload.id,
        )
        new = _U.QUEUED if outcome.requeue else _U.FAILED
        await self._store.transition_upload(
            upload.id, _AT_MARKETO, new, batch_failures=outcome.batch_failures,
            error_code=LOST_BATCH_CODE, error=text, next_poll_at=None, not_before=None,
            finished_at=None if outcome.requeue else self._clock(),
        )
        # Sent again: leadflow copes (warning). Given up: its rows did not get in (error).
        (log.warning if outcome.requeue else log.error)(
            "batch_lost", requeued=outcome.requeue, code=exc.code
        )
        self._left_queue(upload)
        if outcome.requeue:
            self.requeued.set()
        else:
            log.error("import_finished", status="failed", attempts=upload.attempts,
                      polls=upload.polls)
            self.finished.set()

    async def _poll_error(self, upload: UploadRecord, exc: ApiError) -> None:
        """A status call failed after the client's retries: try again at the longest interval."""
        await self._later(upload, self._clock() + self._settings.polling.max_interval_s)
        log.warning("poll_failed", code=exc.code, error=exc.message)

    async def _later(self, upload: UploadRecord, at: float) -> None:
        try:
            await self._store.transition_upload(
                upload.id, _AT_MARKETO, upload.status, next_poll_at=at
            )
        except InvalidTransition as exc:
            log.warning("poll_result_dropped", actual=exc.actual)

    async def _finished(
        self, upload: UploadRecord, st: Any, status: str, *, batch_failures: int | None = None
    ) -> None:
        """Log ``import_finished``; ``batch_failures`` is the count just stored, if it changed.

        ``info`` for a complete batch (failed rows are the file's report's business), ``error``
        for an upload given up (a dead letter: a person must look, ``leadflow retry``).
        """
        duration = self._clock() - (upload.submitted_at or upload.created_at)
        (log.info if status == "complete" else log.error)(
            "import_finished",
            status=status,
            marketo_status=st.status,
            rows=upload.rows,
            processed=st.num_leads_processed,
            failed=st.num_rows_failed,
            warned=st.num_rows_with_warning,
            message=st.message,
            attempts=upload.attempts,
            batch_failures=upload.batch_failures if batch_failures is None else batch_failures,
            polls=upload.polls + 1,
            duration_s=round(duration, 3),
            file_ids=await self.riders.file_ids(upload.id),
        )
        self._left_queue(upload)
        self.finished.set()

    def _left_queue(self, upload: UploadRecord) -> None:
        self._last_seen.pop(upload.id, None)
        self.slot_freed.set()


def _queue_views(queue: list[UploadRecord]) -> dict[int, tuple[int, int]]:
    """Map upload id -> (position among ours at Marketo, rows not yet handled ahead of it)."""
    views: dict[int, tuple[int, int]] = {}
    ahead = 0
    for position, upload in enumerate(queue):
        views[upload.id] = (position, ahead)
        handled = (upload.num_leads_processed or 0) + (upload.num_rows_failed or 0)
        ahead += max(upload.rows - handled, 0)
    return views
