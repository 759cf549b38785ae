"""The scheduler: which upload goes to Marketo next, and when.

An upload already formed and ``queued`` again (a batch that ended ``Failed``, an uncertain
submit, a transient error, ``1016``) goes first (``Store.claim_next``, FIFO by id). Otherwise
the packer forms the next upload from the parts waiting in the FIFO when the packing plan
says it should leave (``scheduling/packing.py``: full, a slot of ours free, or due). It keeps
Marketo's import queue busy, so the 2 importing slots never idle while we have a backlog, and
never holds more than ``limits.import_slots`` of our jobs queued-or-importing
(``Store.count_in_flight``). How many slots other integrations leave us is learned from
``1016`` answers (pure rules in ``pacing.py``). One create call is in flight at a time, so
the count it acts on is exact.

See docs/reference/marketo-api.md: §2.4 (2 importing, 10 in all, ``1016``), §5 (error classes), §9.3
(``1016`` is back-pressure, never a spent attempt), §9.7 (record the batchId before acting on
it; upload again when an answer was lost, and say so).
"""

from __future__ import annotations

import asyncio
import errno
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import structlog

from orchestrator.errors import (
    ApiError,
    ApiPermanentError,
    ApiTransientError,
    AuthError,
    InvalidTransition,
    QueueFull,
    QuotaExhausted,
    UncertainSubmit,
)
from orchestrator.models import UploadRecord, UploadStatus
from orchestrator.scheduling import pacing
from orchestrator.scheduling.packer import Packer
from orchestrator.scheduling.packing import COVERED
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.timing import Clock, environment_retry_delay, wait_any

log = structlog.get_logger(__name__)


#: ``uploads.error_code`` of an upload whose last create call may or may not have landed.
UNCERTAIN_CODE = "uncertain_submit"
#: ``uploads.error_code`` of an upload whose prepared file could not be read (held).
ENVIRONMENT_CODE = "environment"
#: The client's error code for an upload file it cannot open (``MarketoClient.create_import``).
FILE_CODE = "file"
#: Seconds between two packing plans while parts wait for our jobs at Marketo to move (new
#: parts wake the scheduler often during a burst; planning reads the whole waiting group).
REPLAN_S = 0.5
#: File names listed in one ``import_submitted`` line (every id is listed).
NAMES_LOGGED = 20

_U = UploadStatus
#: Marketo's status right after creation -> our upload status.
_STATUS_AFTER_CREATE = {"Queued": _U.SUBMITTED, "Importing": _U.IMPORTING}


def _why_unreadable(path: Path) -> OSError:
    """Return the ``OSError`` that opening ``path`` gives now (a generic one if none)."""
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return exc
    return OSError(errno.EIO, "the upload file could not be read", str(path))


class Submitter(Protocol):
    """The part of ``MarketoClient`` the scheduler uses."""

    def create_import(
        self, path: Path, *, kind: str, options: dict[str, Any]
    ) -> Awaitable[Any]:
        """Upload one file; returns an object with ``batch_id`` (int) and ``status`` (str)."""
        ...


class Riders:
    """Remembers which files ride in an upload, for log lines and recorded errors.

    ``of(upload_id)`` is ``[(file id, file name, part seq, part rows)]`` in row order.
    """

    #: Uploads remembered at once (the oldest are forgotten).
    KEEP = 64

    def __init__(self, store: Store) -> None:
        self._store = store
        self._riders: dict[int, list[tuple[int, str, int, int]]] = {}

    async def of(self, upload_id: int) -> list[tuple[int, str, int, int]]:
        """Return who rides in the upload (read once, then remembered)."""
        if upload_id not in self._riders:
            if len(self._riders) >= self.KEEP:
                del self._riders[next(iter(self._riders))]
            self._riders[upload_id] = await self._store.files_of_upload(upload_id)
        return self._riders[upload_id]

    async def context(self, upload: UploadRecord) -> dict[str, Any]:
        """Return the log context of an upload.

        ``upload_id`` and ``files`` (how many ride in it); ``file_id``, ``file`` and ``seq``
        too when it carries one file.
        """
        riders = await self.of(upload.id)
        context: dict[str, Any] = {"upload_id": upload.id, "files": len(riders)}
        if len(riders) == 1:
            file_id, name, seq, _ = riders[0]
            context.update(file_id=file_id, file=name, seq=seq)
        return context

    async def file_ids(self, upload_id: int) -> list[int]:
        """Return the ids of the files riding in the upload, in row order (no repeats)."""
        return list(dict.fromkeys(r[0] for r in await self.of(upload_id)))

    async def only_file(self, upload_id: int) -> int | None:
        """Return the file id when the upload carries exactly one file, else None."""
        ids = await self.file_ids(upload_id)
        return ids[0] if len(ids) == 1 else None


class Scheduler:
    """Submits queued uploads while there is room at Marketo.

    Args:
        settings: ``limits.import_slots``, ``daemon.queue_full_backoff_s`` and
            ``..._max_s``, ``marketo.retry_base_s``/``retry_max_s`` (transient backoff),
            ``polling.min_interval_s`` (first poll), ``daemon.idle_tick_s``.
        store: the database.
        client: anything with ``create_import`` (the ``MarketoClient``).
        clock: epoch seconds.
        rand: a ``[0, 1)`` source for jitter (tests pin it).

    Attributes:
        work: set when new uploads may be claimable (intake enqueued, an upload requeued).
        slot_freed: set by the poller when one of our jobs left Marketo's queue.
        submitted: set after each accepted upload (the poller watches it).
        finished: set when an upload became terminal here (rejected; wakes the reporter).
        state: what was learned from ``1016`` answers (``pacing.SlotState``).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        client: Submitter,
        *,
        clock: Clock = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._store = store
        self._client = client
        self._clock = clock
        self._rand = rand
        self.work = asyncio.Event()
        self.slot_freed = asyncio.Event()
        self.submitted = asyncio.Event()
        self.finished = asyncio.Event()
        self.state = pacing.SlotState()
        self.queue_full_answers = 0
        self._paused_until = 0.0
        self._transient_streak: dict[int, int] = {}
        self._uncertain_streak: dict[int, int] = {}
        self._environment_streak: dict[int, int] = {}
        self._announced: set[int] = set()
        self.riders = Riders(store)
        self.packer = Packer(settings, store)
        self._plan_after = 0.0

    def use_settings(self, settings: Settings) -> None:
        """Take reloaded settings (``Daemon.reload``); the next claim uses them."""
        self._settings = settings
        self.packer.use_settings(settings)
        self.work.set()

    def allowed(self, now: float) -> int:
        """Return how many of our jobs may be at Marketo now (see ``pacing``)."""
        return pacing.allowed_outstanding(self.state, self._settings.limits.import_slots, now)

    async def run(self, stop: asyncio.Event) -> None:
        """Submit uploads until ``stop`` is set.

        A create call in flight is not interrupted here; the daemon gives it
        ``daemon.shutdown_grace_s``, then cancels it (recovery sends it again).

        Raises:
            AuthError: the identity endpoint refused our credentials (fatal).
        """
        while not stop.is_set():
            timeout = await self.step()
            if stop.is_set():
                break
            if timeout is None or timeout > 0:
                await wait_any((stop, self.work, self.slot_freed), timeout)
            if self.slot_freed.is_set():
                self._plan_after = 0.0
            self.work.clear()
            self.slot_freed.clear()

    async def step(self) -> float | None:
        """Submit at most one upload.

        Returns:
            0 when it should be called again at once; otherwise seconds to wait for an
            event (None: only an event), capped at ``daemon.idle_tick_s``.
        """
        tick = self._settings.daemon.idle_tick_s
        now = self._clock()
        if now < self._paused_until:
            return min(self._paused_until - now, tick)
        outstanding = await self._store.count_in_flight()
        allowed = self.allowed(now)
        if outstanding >= allowed:
            if self.state.learned is not None and now < self.state.retry_at:
                return min(self.state.retry_at - now, tick)
            return tick
        upload = await self._store.claim_next(now)
        if upload is None:
            # A formed upload waiting for its ``not_before`` (its prepared file unreadable,
            # say) does not hold the parts behind it: they may still form the next pack.
            ready_at = await self._store.next_queued_at()
            wait = tick if ready_at is None else min(max(ready_at - now, 0.001), tick)
            if outstanding >= COVERED and now < self._plan_after:
                return min(self._plan_after - now, wait)
            upload, wait_until = await self.packer.next_upload(outstanding, now)
            if upload is None:
                self._plan_after = now + min(REPLAN_S, tick)
                if wait_until is None:
                    return wait
                return min(max(wait_until - now, 0.001), wait)
        await self._submit(upload, outstanding)
        return 0.0

    async def _submit(self, upload: UploadRecord, outstanding: int) -> None:
        context = await self.riders.context(upload)
        with structlog.contextvars.bound_contextvars(**context):
            if upload.error_code == UNCERTAIN_CODE and upload.id not in self._announced:
                self._announced.add(upload.id)
                log.warning(
                    "resubmitted_after_uncertain_submit",
                    uncertain=upload.uncertain,
                    attempts=upload.attempts,
                    file_ids=await self.riders.file_ids(upload.id),
                )
            try:
                job = await self._client.create_import(
                    Path(upload.path), kind=upload.kind, options=dict(upload.options)
                )
            except QueueFull as exc:
                await self._queue_full(upload, outstanding, exc)
            except UncertainSubmit as exc:
                await self._uncertain(upload, exc)
            except QuotaExhausted as exc:
                await self._requeue(upload)
                self._paused_until = exc.resume_at
                log.warning("quota_paused", resume_at=exc.resume_at, code=exc.code)
            except ApiPermanentError as exc:
                if exc.code == FILE_CODE:  # our prepared file cannot be read: not Marketo
                    cause = exc.__cause__
                    if not isinstance(cause, OSError):
                        cause = await asyncio.to_thread(_why_unreadable, Path(upload.path))
                    await self._environment(upload, cause)
                else:
                    await self._reject(upload, exc.code, exc.message)
            except ApiTransientError as exc:
                await self._transient(upload, exc)
            except AuthError:
                await self._requeue(upload)
                raise
            except ApiError as exc:
                await self._transient(upload, exc)
            except OSError as exc:
                await self._environment(upload, exc)
            else:
                await self._accepted(upload, int(job.batch_id), str(job.status), outstanding)

    async def _accepted(
        self, upload: UploadRecord, batch_id: int, status: str, outstanding: int
    ) -> None:
        await self._release_reused(upload, batch_id)
        now = self._clock()
        new = _STATUS_AFTER_CREATE.get(status, _U.SUBMITTED)
        changes: dict[str, Any] = {
            "batch_id": batch_id,
            "marketo_status": status if status in ("Queued", "Importing", "Failed",
                                                   "Complete") else None,
            "submitted_at": now,
            "attempts": upload.attempts + 1,
            "num_leads_processed": None,
            "num_rows_failed": None,
            "num_rows_with_warning": None,
            "message": None,
            "not_before": None,
            "polls": 0,
            # A job that is already terminal is polled at once: the poller decides.
            "next_poll_at": now + (self._settings.polling.min_interval_s
                                   if status in _STATUS_AFTER_CREATE else 0.0),
        }
        if upload.error_code in (UNCERTAIN_CODE, ENVIRONMENT_CODE):
            changes.update(error_code=None, error=None)
        await self._store.transition_upload(upload.id, _U.SUBMITTING, new, **changes)
        self._transient_streak.pop(upload.id, None)
        self._uncertain_streak.pop(upload.id, None)
        self._environment_streak.pop(upload.id, None)
        self._announced.discard(upload.id)
        self.state = pacing.on_submitted(
            self.state, outstanding + 1, self._settings.limits.import_slots
        )
        riders = await self.riders.of(upload.id)
        with structlog.contextvars.bound_contextvars(batch_id=batch_id):
            log.info(
                "import_submitted",
                marketo_status=status,
                attempt=upload.attempts + 1,
                rows=upload.rows,
                size_bytes=upload.size_bytes,
                outstanding=outstanding + 1,
                parts=len(riders),
                file_ids=list(dict.fromkeys(r[0] for r in riders)),
                file_names=list(dict.fromkeys(r[1] for r in riders))[:NAMES_LOGGED],
            )
            if len(riders) > 1:
                for file_id, name, seq, rows in riders:
                    log.info("part_submitted", file_id=file_id, file=name, seq=seq, rows=rows,
                             upload_id=upload.id, batch_id=batch_id)
        self.submitted.set()

    async def _release_reused(self, upload: UploadRecord, batch_id: int) -> None:
        """A batchId we still poll for another upload was handed out again.

        Marketo's ids are unique; this happens when the Marketo side lost its state (e.g. a
        restarted simulator). The older upload's batch is gone: it is uploaded again (an
        upsert), so the two never share a status.
        """
        for other in await self._store.at_marketo():
            if other.batch_id != batch_id or other.id == upload.id:
                continue
            log.warning("batch_id_reused", other_upload_id=other.id, batch_id=batch_id)
            try:
                await self._store.transition_upload(
                    other.id, other.status, _U.QUEUED, batch_id=None, next_poll_at=None,
                    error=f"batchId {batch_id} was given to another upload; sent again",
                )
            except InvalidTransition:
                continue
            self.work.set()

    async def _queue_full(self, upload: UploadRecord, outstanding: int, exc: QueueFull) -> None:
        await self._requeue(upload)
        now = self._clock()
        settings = self._settings.daemon
        self.queue_full_answers += 1
        self.state = pacing.on_queue_full(
            self.state,
            outstanding,
            now,
            base_s=settings.queue_full_backoff_s,
            max_s=settings.queue_full_backoff_max_s,
            rand=self._rand(),
        )
        log.warning(
            "queue_full",
            code=exc.code,
            outstanding=outstanding,
            learned_limit=self.state.learned,
            retry_in_s=round(self.state.retry_at - now, 3),
        )

    async def _uncertain(self, upload: UploadRecord, exc: UncertainSubmit) -> None:
        """Send it again: at once the first time, then after a growing backoff.

        Each lost answer may have left a job we cannot see in Marketo's queue, so repeated
        losses slow down; nothing behind the upload goes meanwhile (FIFO holds).
        """
        streak = self._uncertain_streak.get(upload.id, 0) + 1
        self._uncertain_streak[upload.id] = streak
        now = self._clock()
        not_before: float | None = None
        if streak > 1:
            marketo = self._settings.marketo
            not_before = pacing.transient_not_before(
                streak - 1, now, base_s=marketo.retry_base_s, max_s=marketo.retry_max_s,
                rand=self._rand(),
            )
            self._paused_until = not_before
        await self._store.transition_upload(
            upload.id,
            _U.SUBMITTING,
            _U.QUEUED,
            uncertain=upload.uncertain + 1,
            error_code=UNCERTAIN_CODE,
            error=f"the answer to the upload was lost: {exc.message}",
            not_before=not_before,
        )
        self._announced.discard(upload.id)
        log.warning(
            "uncertain_submit", uncertain=upload.uncertain + 1, error=exc.message,
            retry_in_s=round(not_before - now, 3) if not_before is not None else 0.0,
        )
        self.work.set()

    async def _reject(self, upload: UploadRecord, code: str | None, message: str) -> None:
        now = self._clock()
        await self._store.transition_upload(
            upload.id,
            _U.SUBMITTING,
            _U.REJECTED,
            error_code=code,
            error=message,
            attempts=upload.attempts + 1,
            finished_at=now,
            not_before=None,
        )
        await self._store.record_error(
            message, code=code, file_id=await self.riders.only_file(upload.id),
            upload_id=upload.id,
        )
        self._transient_streak.pop(upload.id, None)
        log.error("import_rejected", code=code, error=message,
                  file_ids=await self.riders.file_ids(upload.id))
        self.finished.set()

    async def _transient(self, upload: UploadRecord, exc: ApiError) -> None:
        streak = self._transient_streak.get(upload.id, 0) + 1
        self._transient_streak[upload.id] = streak
        now = self._clock()
        marketo = self._settings.marketo
        retry_after = getattr(exc, "retry_after", None) or 0.0
        not_before = max(
            pacing.transient_not_before(
                streak, now, base_s=marketo.retry_base_s, max_s=marketo.retry_max_s,
                rand=self._rand(),
            ),
            now + retry_after,
        )
        await self._store.transition_upload(
            upload.id, _U.SUBMITTING, _U.QUEUED, not_before=not_before
        )
        # Keep strict FIFO: nothing else is claimed before this upload may go again.
        self._paused_until = not_before
        await self._store.record_error(
            exc.message, code=exc.code, file_id=await self.riders.only_file(upload.id),
            upload_id=upload.id,
        )
        log.warning(
            "submit_failed", code=exc.code, error=exc.message, streak=streak,
            retry_in_s=round(not_before - now, 3),
        )

    async def _environment(self, upload: UploadRecord, exc: OSError) -> None:
        """The prepared upload file cannot be read (a folder, a permission, a disk).

        Not the file's fault and not Marketo's: the upload goes back to ``queued`` with a
        ``not_before`` (``timing.environment_retry_delay``), is logged at ``error`` for a
        person, and no attempt is counted. Uploads behind it go on meanwhile (it is not a
        Marketo error, so FIFO is not held for it).
        """
        streak = self._environment_streak.get(upload.id, 0) + 1
        self._environment_streak[upload.id] = streak
        intake = self._settings.intake
        delay = environment_retry_delay(
            streak, intake.rescan_interval_s, intake.environment_retry_max_s
        )
        message = f"cannot read the prepared upload {upload.path}: {exc.strerror or exc}"
        await self._store.transition_upload(
            upload.id, _U.SUBMITTING, _U.QUEUED, not_before=self._clock() + delay,
            # an upload still to be re-sent after a lost answer keeps saying so
            error_code=UNCERTAIN_CODE if upload.error_code == UNCERTAIN_CODE
            else ENVIRONMENT_CODE,
            error=message if upload.error_code != UNCERTAIN_CODE else upload.error,
        )
        log.error("upload_unreadable", error=message, errno=errno.errorcode.get(exc.errno or 0),
                  failures=streak, retry_in_s=round(delay, 3), cause="environment")
        self.work.set()

    async def _requeue(self, upload: UploadRecord) -> None:
        """Put a claimed upload back at its place in the FIFO without counting an attempt."""
        try:
            await self._store.transition_upload(
                upload.id, _U.SUBMITTING, _U.QUEUED, not_before=None
            )
        except InvalidTransition:  # pragma: no cover - only the scheduler moves submitting
            log.error("requeue_failed", upload_id=upload.id)
