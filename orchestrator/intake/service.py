"""Intake: claims stable files from the inbox, prepares them and enqueues their parts.

One task owns the loop; each file is claimed (``store.add_file`` then ``places.move`` into
``paths.work/<file_id>/source/<name>``), prepared in a worker thread, and either enqueued in one
transaction (its parts wait in the FIFO for a pack) or ended ``rejected``/``empty``/``duplicate``
with one sentence. Reports and moving the source out of ``work`` belong to the Reporter
(``orchestrator/results/reporter.py``). Nothing that goes wrong with one file stops the loop.

Small files (up to ``claim.EAGER_PREPARE_BYTES``) are taken in batches of
``intake.batch_files``: one transaction records the batch, one worker-thread call claims and
prepares every file of it, one query finds files whose bytes were already imported with the
same options, one transaction enqueues the batch. Bigger files are taken one by one, up to
``CONCURRENT_FILES`` at a time.

``rejected`` is only for a file's own faults. When the machine is at fault (the work folder
cannot be created or written, the inbox file cannot be moved or read: an ``OSError`` while the
file itself is still there) the file is *held*: it stays ``received`` (in the inbox, or in
work), the failure is logged at ``error`` (``file_claim_failed`` / ``file_prepare_failed``)
and the step is tried again after ``intake.rescan_interval_s``, doubling up to
``intake.environment_retry_max_s`` (``timing.environment_retry_delay``).
"""

from __future__ import annotations

import asyncio
import errno
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from orchestrator.errors import DuplicateContent, StoreError
from orchestrator.intake.catalogue import (
    CatalogueCache,
    CatalogueUnavailable,
    Describe,
    DescribeObject,
    ObjectCache,
)
from orchestrator.intake.claim import (
    EAGER_PREPARE_BYTES,
    BatchItem,
    BatchOutcome,
    claim,
    claim_and_prepare,
    scan_and_prepare_small,
)
from orchestrator.intake.encoding import SourceScan
from orchestrator.intake.loop import watch_loop
from orchestrator.intake.prepare import (
    Prepared,
    PrepareSpec,
    clean_work_dir,
    prepare_file,
)
from orchestrator.intake.reasons import Unimportable
from orchestrator.intake.uploads import (
    LazyParts,
    file_info,
    import_key,
    pack_key,
    upload_options,
)
from orchestrator.intake.watcher import (
    Candidate,
    StabilityTracker,
    scan_inbox,
    unknown_folder_reason,
)
from orchestrator.models import EnqueuedFile, FileRecord, FileStatus, NewFile
from orchestrator.places import (
    PENDING_ID,
    forced_name,
    is_forced_name,
    work_dir_of_source,
    work_source,
)
from orchestrator.settings import ImportKind, Route, Settings
from orchestrator.store import Store
from orchestrator.timing import Clock, environment_retry_delay

log = structlog.get_logger(__name__)

#: Files prepared at once in one scan (their I/O and database waits overlap).
CONCURRENT_FILES = 4
#: Batches of small files taken at once in one scan (one prepares while one is enqueued).
BATCHES_IN_FLIGHT = 2
#: Pack keys remembered (kind, options and columns seen lately).
PACK_KEYS_KEPT = 1024
#: A held file still in the inbox: its claim (the move into work) is tried again.
CLAIM = "claim"
#: A held file already in work: its preparation is tried again.
PREPARE = "prepare"


@dataclass(slots=True)
class _Held:
    """A file held back by an environment failure (its folders, not its content).

    Attributes:
        record: the file (``received``).
        stage: ``CLAIM`` (still in the inbox) or ``PREPARE`` (in work).
        failures: consecutive environment failures so far.
        due: epoch seconds when the step is tried again.
    """

    record: FileRecord
    stage: str
    failures: int
    due: float


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one file is imported: endpoint, key columns, Marketo options, duplicate key."""

    kind: ImportKind
    lookup: str
    dedupe: tuple[str, ...]
    options: dict[str, Any]
    key: str
    forced: bool


#: A prepared small file of a batch, to enqueue: record, plan, scan, preparation.
_Ready = tuple[FileRecord, _Plan, SourceScan, Prepared]


def _clean_work_dirs(folders: list[Path]) -> None:
    """Delete prepared outputs of several work folders (duplicates found after preparing)."""
    for folder in folders:
        clean_work_dir(folder)


class Intake:
    """The inbox watcher and file preparation (see ``docs/design.md``, "Intake").

    Args:
        settings: the frozen settings (``paths``, ``intake``, ``limits``, ``import``, ``routes``).
        store: the open store.
        describe: coroutine function returning the lead fields (``MarketoClient.describe_leads``).
        clock: epoch seconds; drives stability and the describe cache.
        describe_object: coroutine function returning one custom object's describe by API
            name (``MarketoClient.describe_custom_object``); custom object routes without
            their own ``lookup_field`` need it for the object's dedupe fields (without it
            their files wait).
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        describe: Describe,
        clock: Clock = time.time,
        describe_object: DescribeObject | None = None,
        describes: Mapping[str, tuple[Describe, DescribeObject | None]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.describe = describe
        self.clock = clock
        self.tracker = StabilityTracker(settings.intake.stable_s)
        self.catalogue = self._catalogue_cache(describe)
        self.objects = self._object_cache(describe_object)
        #: Each Marketo instance's describe caches, by name (``describes``); files of the
        #: first instance (or of a simple setup) use ``catalogue`` and ``objects``.
        self._caches: dict[str, tuple[CatalogueCache, ObjectCache]] = {
            name: (self._catalogue_cache(leads), self._object_cache(objects))
            for name, (leads, objects) in (describes or {}).items()
        }
        self._waiting: dict[int, FileRecord] = {}
        self._logged: set[tuple[str, str]] = set()
        self._on_enqueued: Callable[[], None] | None = None
        #: Inbox files that could not be moved out, by path: (size, mtime_ns) when it failed.
        #: They are not taken again until they change, so one file makes one rejection.
        self._unclaimable: dict[str, tuple[int, int]] = {}
        #: Told how long files took (the daemon's metrics): an object with
        #: ``file_prepared(seconds)`` (validating, normalising, splitting: wall seconds) and
        #: ``file_queued(seconds, size_bytes)`` (received to enqueued, clock seconds); or None.
        self.observer: Any = None
        #: Files held back by an environment failure, by file id (see the module docstring).
        self._held: dict[int, _Held] = {}
        self._pack_keys: dict[tuple[Any, ...], str] = {}
        #: Set by the daemon of a cluster node: dropped files are claimed in the store first,
        #: so that a shared inbox gives each file to one node.
        self.node_id: str | None = None

    def _catalogue_cache(self, describe: Describe) -> CatalogueCache:
        intake = self.settings.intake
        return CatalogueCache(describe, refresh_s=intake.describe_refresh_s,
                              retry_s=intake.rescan_interval_s, clock=self.clock)

    def _object_cache(self, describe_object: DescribeObject | None) -> ObjectCache:
        intake = self.settings.intake
        return ObjectCache(describe_object, refresh_s=intake.describe_refresh_s,
                           retry_s=intake.rescan_interval_s, clock=self.clock)

    def _instance(self, route: str | None) -> str:
        """The Marketo instance a file of ``route`` goes to (``Settings.instance_of_route``)."""
        return self.settings.instance_of_route(route)

    def _caches_of(self, route: Route | None) -> tuple[CatalogueCache, ObjectCache]:
        """The describe caches of the instance a route imports into."""
        return self._caches.get(
            self._instance(route.name if route else None), (self.catalogue, self.objects)
        )

    # --- public API ------------------------------------------------------------------------

    async def recover(self) -> int:
        """Resume files left ``received`` by a previous run; call once at start-up.

        A file whose work copy exists is prepared again from scratch; one still only in the
        inbox is claimed again; one in neither place is rejected as vanished.

        On a node of a cluster (``node_id`` set) only files no live node prepares are
        resumed (``Store.adopt_received``: its own from before a restart, those of no node,
        those of a node that stopped beating): a ``received`` file of a live node is being
        prepared by that node right now, and must not be prepared twice (its work folder
        cleaned under it). ``scan_once`` adopts such files again while the daemon runs, so
        the files a dead node left half-prepared are finished by another.

        Returns:
            How many files were resumed (whatever their outcome).
        """
        if self.node_id is None:
            files = await self.store.files_in(FileStatus.RECEIVED)
        else:
            files = await self._adopt(own=True)
        return await self._resume(files)

    async def _adopt(self, own: bool = False) -> list[FileRecord]:
        """Adopt the ``received`` files of nodes that stopped beating (3 x ``daemon.lease_s``).

        ``own``: at start, this node's earlier run's files too.
        """
        assert self.node_id is not None
        stale_before = self.clock() - 3 * self.settings.daemon.lease_s
        files = await self.store.adopt_received(self.node_id, stale_before, own=own)
        mine = [f for f in files if f.id not in self._waiting and f.id not in self._held]
        for record in mine:
            log.info("file_adopted", file_id=record.id, file=record.name, node=self.node_id)
        return mine

    async def _resume(self, files: list[FileRecord]) -> int:
        """Prepare again (or claim again, or end) files left ``received``."""
        inbox = self.settings.paths.inbox
        for record in files:
            log.info("file_recovered", file_id=record.id, file=record.name)
            work = Path(record.work_path) if record.work_path else None
            folder = Path(record.inbox_path).parent
            if record.route is None and folder != inbox:  # it came from a folder with no route
                await self._end(record, Unimportable(unknown_folder_reason(folder.name)))
            elif work is not None and await asyncio.to_thread(os.path.isfile, work):
                await asyncio.to_thread(clean_work_dir, work_dir_of_source(work))
                await self._process(record)
            elif await asyncio.to_thread(os.path.isfile, record.inbox_path):
                claimed = await self._move_in(record, Path(record.inbox_path))
                if claimed is not None:
                    await self._process(claimed)
            else:
                await self._end(
                    record,
                    Unimportable(
                        "The file vanished before it was prepared: it is neither in the "
                        "inbox nor in the work folder."
                    ),
                )
        return len(files)

    async def scan_once(self) -> int:
        """List the inbox once; claim and prepare every stable file.

        Files are claimed in name order and prepared up to ``CONCURRENT_FILES`` at a time,
        so their uploads are enqueued as they finish. Files waiting for the field catalogue
        are retried first.

        Returns:
            How many files were claimed.
        """
        inbox = self.settings.paths.inbox
        if self.node_id is not None:
            # Files a dead node left half-prepared: this node finishes them.
            await self._resume(await self._adopt())
        await asyncio.to_thread(inbox.mkdir, parents=True, exist_ok=True)
        listing = await asyncio.to_thread(scan_inbox, inbox, self.settings)
        for path, why in listing.ignored:
            self._log_once("inbox_entry_ignored", str(path), reason=why)
        for folder in listing.foreign_folders:
            self._log_once(
                "inbox_folder_ignored",
                str(folder),
                folder=folder.name,
                routes=[route.name for route in self.settings.routes],
                route_folders=[route.subfolder for route in self.settings.routes],
                reason="not a route folder: its files are left where they are; add a "
                "[[routes]] entry with this folder (then restart or reload the daemon) or "
                "move them to the inbox root or a route folder",
            )
        present = {str(c.path) for c in listing.candidates}
        self.tracker.retain(present)
        # Before the retries: a held file claimed now is still in this (older) listing.
        held_in_inbox = {
            h.record.inbox_path for h in self._held.values() if h.stage == CLAIM
        }
        await self._retry_held()
        waiting = list(self._waiting.values())
        self._waiting.clear()
        for record in waiting:
            await self._process(record)
        now = self.clock()
        ready: list[Candidate] = []
        for candidate in listing.candidates:
            key = str(candidate.path)
            if key in held_in_inbox:  # already recorded; its claim is retried above
                continue
            if self.tracker.observe(key, candidate.size, candidate.mtime_ns, now):
                self.tracker.forget(key)
                ready.append(candidate)
        if ready and self.node_id is not None:
            # Several nodes share the inbox: each file goes to the node that claims it first.
            won = await self.store.claim_inbox_entries(
                [(str(c.path), c.size, c.mtime_ns) for c in ready], self.node_id
            )
            ready = [c for c in ready if (str(c.path), c.size, c.mtime_ns) in won]
        if not ready:
            return 0
        small = [c for c in ready if c.size <= EAGER_PREPARE_BYTES]
        large = [c for c in ready if c.size > EAGER_PREPARE_BYTES]
        step = self.settings.intake.batch_files
        batches = [small[start : start + step] for start in range(0, len(small), step)]
        # Two batches in flight: one prepares in its worker thread while the other writes to
        # the database; each enqueues only after the one before it, so FIFO order holds.
        turns = [asyncio.Event() for _ in batches]
        in_flight = asyncio.Semaphore(BATCHES_IN_FLIGHT)

        async def take_batch(index: int) -> int:
            async with in_flight:
                try:
                    return await self._take_batch_guarded(
                        batches[index], turns[index - 1] if index else None
                    )
                finally:
                    turns[index].set()

        limit = asyncio.Semaphore(CONCURRENT_FILES)
        async with asyncio.TaskGroup() as group:
            batch_tasks = [group.create_task(take_batch(i)) for i in range(len(batches))]
            tasks = [group.create_task(self._take_guarded(c, limit)) for c in large]
        taken = sum(task.result() for task in batch_tasks)
        return taken + sum(1 for task in tasks if task.result())

    def holding(self) -> int:
        """Return how many files are held back by an environment failure (retried later)."""
        return len(self._held)

    def held(self) -> dict[int, int]:
        """Return ``{file id: consecutive environment failures}`` of the files held back."""
        return {file_id: h.failures for file_id, h in self._held.items()}

    def next_due(self) -> float | None:
        """Return when the next scan is worth it: a file becomes stable or a held file is due."""
        times = [h.due for h in self._held.values()]
        tracked = self.tracker.next_due()
        if tracked is not None:
            times.append(tracked)
        return min(times, default=None)

    async def run(
        self, stop: asyncio.Event, on_enqueued: Callable[[], None] | None = None
    ) -> None:
        """Watch the inbox until ``stop`` is set.

        A full scan runs at start, after each batch of watch events, every
        ``intake.rescan_interval_s`` and when a tracked file is due to become stable.
        ``on_enqueued`` is called after each file's uploads are enqueued.
        """
        self._on_enqueued = on_enqueued
        await watch_loop(self, stop)

    # --- steps -----------------------------------------------------------------------------

    def _log_once(self, event: str, key: str, **data: Any) -> None:
        if (event, key) not in self._logged:
            self._logged.add((event, key))
            log.warning(event, path=key, **data)

    def _environment_failed(
        self, record: FileRecord, stage: str, exc: OSError, path: Path
    ) -> None:
        """Hold ``record`` after an environment failure; log it at ``error`` with the retry."""
        held = self._held.get(record.id)
        failures = (held.failures if held is not None else 0) + 1
        delay = environment_retry_delay(
            failures,
            self.settings.intake.rescan_interval_s,
            self.settings.intake.environment_retry_max_s,
        )
        self._held[record.id] = _Held(record, stage, failures, self.clock() + delay)
        log.error(
            "file_claim_failed" if stage == CLAIM else "file_prepare_failed",
            file_id=record.id,
            file=record.name,
            path=str(path),
            error=f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""),
            errno=errno.errorcode.get(exc.errno or 0),
            failures=failures,
            retry_in_s=round(delay, 3),
            cause="environment",
        )

    async def _retry_held(self) -> None:
        """Try again the step of every held file that is due (a claim, or a preparation)."""
        now = self.clock()
        for file_id, held in list(self._held.items()):
            if held.due > now:
                continue
            record = await self.store.get_file(file_id)
            if record is None or record.status is not FileStatus.RECEIVED:
                del self._held[file_id]
                continue
            if held.stage == CLAIM:
                claimed = await self._move_in(record, Path(record.inbox_path))
                if self._held.get(file_id) is held:
                    del self._held[file_id]
                if claimed is not None:
                    log.info("file_received", file_id=claimed.id, file=claimed.name,
                             route=claimed.route, size_bytes=claimed.size_bytes,
                             failures_before=held.failures)
                    await self._process(claimed)
                continue
            work = work_dir_of_source(Path(record.work_path))
            try:
                await asyncio.to_thread(clean_work_dir, work)
            except OSError as exc:
                self._environment_failed(record, PREPARE, exc, work)
                continue
            await self._process(record)
            if self._held.get(file_id) is held:
                del self._held[file_id]

    async def _take_guarded(self, candidate: Candidate, limit: asyncio.Semaphore) -> bool:
        async with limit:
            try:
                return await self._take(candidate)
            except Exception:  # never let one file cancel the others
                log.exception("file_take_failed", file=candidate.path.name)
                return False

    async def _take_batch_guarded(
        self, batch: list[Candidate], previous: asyncio.Event | None = None
    ) -> int:
        try:
            return await self._take_batch(batch, previous)
        except Exception:  # never let one batch stop the loop; its files are recovered
            log.exception("file_batch_failed", files=len(batch))
            return 0

    async def _take_batch(
        self, batch: list[Candidate], previous: asyncio.Event | None = None
    ) -> int:
        """Claim and prepare small files together; return how many were recorded.

        A file whose claim or preparation fails is ended (or held) on its own, exactly as on
        the one-file path; the others are enqueued in one transaction, after the batch before
        (``previous`` set) was enqueued.
        """
        # work/{id}/source/<name>, built once per batch (thousands of pathlib joins add up)
        folder = str(work_source(self.settings.paths.work, PENDING_ID, "-").parent)
        try:
            records = await self.store.add_files(
                [
                    NewFile(
                        name=c.path.name,
                        inbox_path=str(c.path),
                        work_path=f"{folder}{os.sep}{c.path.name}",
                        route=c.route.name if c.route else None,
                        size_bytes=c.size,
                        instance=self._instance(c.route.name if c.route else None),
                        node_id=self.node_id,
                    )
                    for c in batch
                ]
            )
        except StoreError as exc:
            log.error("file_claim_failed", files=len(batch), error=str(exc))
            return 0
        # One plan per route: None while describe is unavailable (the file waits), or why
        # the route cannot import (each of its files is rejected).
        plans: dict[str | None, tuple[_Plan, PrepareSpec] | Unimportable | None] = {}
        items: list[BatchItem] = []
        for record in records:
            if record.route not in plans:
                try:
                    plans[record.route] = await self._route_plan(self._route(record))
                except CatalogueUnavailable:
                    plans[record.route] = None
                except Unimportable as exc:
                    plans[record.route] = exc
            planned = plans[record.route]
            spec = planned[1] if isinstance(planned, tuple) else None
            items.append(BatchItem(Path(record.inbox_path), Path(record.work_path), record.id,
                                   spec))
        outcomes = await asyncio.to_thread(claim_and_prepare, items)
        ready: list[_Ready] = []
        for record, candidate, item, outcome in zip(records, batch, items, outcomes,
                                                     strict=True):
            with structlog.contextvars.bound_contextvars(file_id=record.id, file=record.name):
                done = await self._batch_outcome(
                    record, candidate, item, outcome, plans[record.route]
                )
            if done is not None:
                ready.append(done)
        if previous is not None:
            await previous.wait()
        await self._enqueue_batch(ready)
        return len(records)

    async def _batch_outcome(
        self,
        record: FileRecord,
        candidate: Candidate,
        item: BatchItem,
        outcome: BatchOutcome,
        planned: tuple[_Plan, PrepareSpec] | Unimportable | None,
    ) -> _Ready | None:
        """Carry out one file's outcome; return it when it is to be enqueued."""
        if not outcome.claimed:
            error = outcome.error or OSError("unknown error")
            if isinstance(error, FileNotFoundError) or not await asyncio.to_thread(
                os.path.lexists, item.source
            ):
                await self._end(record, Unimportable(
                    "The file vanished from the inbox before it could be claimed."))
            else:
                self._environment_failed(record, CLAIM, error, item.source)
            return None
        log.info("file_received", file_id=record.id, file=record.name, route=record.route,
                 size_bytes=candidate.size)
        if isinstance(planned, Unimportable):
            await self._end(record, planned)
            return None
        if planned is None:
            self._waiting[record.id] = record
            log.warning("file_waiting_for_describe", file_id=record.id, file=record.name)
            return None
        scan = outcome.scan
        if outcome.refused is not None:
            await self._end(record, outcome.refused, sha256=scan.sha256 if scan else None)
            return None
        if outcome.error is not None:
            if await asyncio.to_thread(os.path.isfile, item.target):
                # The file is there: its folder, the disk or a permission failed, not the file.
                self._environment_failed(record, PREPARE, outcome.error, item.target)
                return None
            await self._end(record, Unimportable(
                f"The file vanished while it was prepared: "
                f"{outcome.error.strerror or outcome.error}."))
            return None
        if outcome.crash is not None:
            exc = outcome.crash
            await self._end(record, Unimportable(
                f"Preparation failed: {type(exc).__name__}: {exc}."))
            return None
        if scan is None or outcome.prepared is None:  # grew past the eager size meanwhile
            await self._process(record)
            return None
        if self.observer is not None:
            self.observer.file_prepared(outcome.seconds)
        plan = replace(planned[0], forced=is_forced_name(record.name))
        return record, plan, scan, outcome.prepared

    async def _enqueue_batch(self, ready: list[_Ready]) -> None:
        """Enqueue prepared files in one transaction (duplicates ended first).

        Falls back to one transaction per file when the batch is refused (a twin imported
        meanwhile by another process, say), so that one file cannot hold the others back.
        """
        if not ready:
            return
        twins = await self.store.imported_twins(
            (scan.sha256, plan.key) for _, plan, scan, _ in ready
        )
        first_of: dict[tuple[str, str], FileRecord] = {}
        items: list[tuple[_Ready, EnqueuedFile]] = []
        duplicates: list[tuple[FileRecord, SourceScan, FileRecord]] = []
        for one in ready:
            record, plan, scan, prepared = one
            same = (scan.sha256, plan.key)
            twin = twins.get(same) or first_of.get(same)
            if twin is not None and not plan.forced:
                duplicates.append((record, scan, twin))
                continue
            first_of.setdefault(same, record)
            route = self._route(record)
            items.append((one, self._enqueued(record, route, plan, prepared, scan.sha256, twin)))
        if duplicates:
            await asyncio.to_thread(
                _clean_work_dirs, [work_dir_of_source(Path(r.work_path)) for r, _, _ in duplicates]
            )
            for record, scan, twin in duplicates:
                await self._duplicate(record, scan.sha256, scan.size_bytes, twin)
        try:
            ids = await self.store.enqueue_files([item for _, item in items])
        except StoreError as exc:
            log.warning("file_batch_enqueue_refused", files=len(items), error=str(exc))
            for (record, plan, scan, prepared), _item in items:
                await self._enqueue(record, self._route(record), plan, prepared, scan.sha256,
                                    twins.get((scan.sha256, plan.key)))
            return
        for ((record, _, _, prepared), item), part_ids in zip(items, ids, strict=True):
            self._enqueued_log(record, prepared, item.status, part_ids)
            if self.observer is not None:
                self.observer.file_queued(self.clock() - record.received_at, record.size_bytes or 0)
        if self._on_enqueued is not None:
            self._on_enqueued()

    def _enqueued(
        self,
        record: FileRecord,
        route: Route | None,
        plan: _Plan,
        prepared: Prepared,
        sha256: str,
        repeats: FileRecord | None,
    ) -> EnqueuedFile:
        """The ``EnqueuedFile`` of a prepared file (its parts, figures and pack key).

        ``repeats``: the file a forced one repeats.
        """
        options = plan.options
        info = file_info(record.work_path, prepared, plan.lookup, route, plan.kind, options)
        if plan.dedupe:
            info["dedupe_fields"] = list(plan.dedupe)
        if plan.forced:
            info["forced"] = {
                "repeats": {"file_id": repeats.id, "file": repeats.name} if repeats else None,
                "reason": (
                    "its name has '.force.' (as `leadflow submit --force` names copies): "
                    + (f"imported again although file {repeats.id} '{repeats.name}' had the "
                       "same bytes and import options" if repeats else
                       "no earlier file had the same bytes and import options")
                ),
            }
            log.info("file_forced", file_id=record.id, file=record.name,
                     repeats=repeats.id if repeats else None)
        source = route or self.settings.import_
        key = (
            self._pack_key(plan.kind.value, options, prepared.header.names)
            if source.pack else None
        )
        return EnqueuedFile(
            file_id=record.id,
            parts=LazyParts(prepared.uploads, plan.kind.value, options, key),
            status=FileStatus.QUEUED if prepared.uploads else FileStatus.REPORTING,
            sha256=sha256,
            encoding=prepared.encoding,
            format=prepared.format,
            rows_total=prepared.rows_total,
            rows_rejected=prepared.rows_rejected,
            duplicates=prepared.duplicates,
            info=info,
            import_key=plan.key,
            forced=plan.forced,
            wait_s=self.settings.import_.pack_wait_s,
        )

    def _pack_key(self, kind: str, options: dict[str, Any], columns: list[str]) -> str:
        """``pack_key``, remembered: thousands of small files share a handful of keys."""
        memo = (kind, tuple(sorted(options.items())), tuple(columns))
        key = self._pack_keys.get(memo)
        if key is None:
            if len(self._pack_keys) >= PACK_KEYS_KEPT:
                self._pack_keys.clear()
            key = self._pack_keys[memo] = pack_key(kind, options, columns)
        return key

    def _enqueued_log(
        self, record: FileRecord, prepared: Prepared, status: FileStatus, part_ids: list[int]
    ) -> None:
        for seq, (part_id, upload) in enumerate(zip(part_ids, prepared.uploads, strict=True), 1):
            log.info(
                "part_queued",
                file_id=record.id,
                file=record.name,
                part_id=part_id,
                seq=seq,
                rows=upload.rows,
                bytes=upload.size_bytes,
            )
            upload.forget_rows_file()
        log.info(
            "file_prepared",
            file_id=record.id,
            file=record.name,
            status=status.value,
            encoding=prepared.encoding,
            format=prepared.format,
            rows_total=prepared.rows_total,
            rows_rejected=prepared.rows_rejected,
            duplicates=prepared.duplicates,
            parts=len(part_ids),
        )

    async def _take(self, candidate: Candidate) -> bool:
        """Claim one candidate and prepare it; return whether it was claimed."""
        path = candidate.path
        try:
            record = await self.store.add_file(
                name=path.name,
                inbox_path=str(path),
                work_path=str(work_source(self.settings.paths.work, PENDING_ID, path.name)),
                route=candidate.route.name if candidate.route else None,
                size_bytes=candidate.size,
                instance=self._instance(candidate.route.name if candidate.route else None),
                node_id=self.node_id,
            )
        except StoreError as exc:
            log.error("file_claim_failed", file=path.name, error=str(exc))
            return False
        claimed = await self._move_in(record, path)
        if claimed is None:
            return True
        log.info(
            "file_received",
            file_id=claimed.id,
            file=claimed.name,
            route=claimed.route,
            size_bytes=candidate.size,
        )
        await self._process(claimed)
        return True

    async def _move_in(self, record: FileRecord, path: Path) -> FileRecord | None:
        """Record the work path, then rename the inbox file there.

        Returns:
            The record, or None when the file vanished (it is then ended ``rejected``) or
            could not be moved while it is still there (an environment failure: it is held
            in the inbox, ``received``, and the claim is tried again later).
        """
        target = work_source(self.settings.paths.work, record.id, path.name)
        try:
            if record.work_path != str(target):
                record = await self.store.transition_file(
                    record.id, FileStatus.RECEIVED, FileStatus.RECEIVED, work_path=str(target)
                )
            await asyncio.to_thread(claim, path, target)
        except OSError as exc:
            if not await asyncio.to_thread(os.path.lexists, path):
                await self._end(
                    record,
                    Unimportable("The file vanished from the inbox before it could be claimed."),
                )
            else:
                self._environment_failed(record, CLAIM, exc, path)
            return None
        return record

    def _route(self, record: FileRecord) -> Route | None:
        if record.route is None:
            return None
        return next((r for r in self.settings.routes if r.name == record.route), None)

    async def _process(self, record: FileRecord) -> None:
        """Prepare a claimed file and enqueue it, or end it with a reason. Never raises.

        Log lines of the preparation (worker thread included) carry ``file_id`` and ``file``.
        """
        with structlog.contextvars.bound_contextvars(file_id=record.id, file=record.name):
            await self._process_bound(record)

    async def _keys(self, route: Route | None) -> tuple[str, tuple[str, ...]]:
        """Return ``(lookup field, dedupe fields)`` of a file's route.

        Leads and program members: the route's (or ``import``'s) ``lookup_field``, no dedupe
        fields. A custom object route with its own ``lookup_field``: that field. Without one
        (``[import] lookup_field`` is a lead field and is never inherited): the object's
        ``dedupeFields`` from Marketo's describe of it, the first being the lookup field.

        Raises:
            CatalogueUnavailable: the object's describe failed transiently.
            Unimportable: Marketo refused to describe the object.
        """
        if route is None or route.kind is not ImportKind.CUSTOM_OBJECTS:
            return (route or self.settings.import_).lookup_field, ()
        if "lookup_field" in route.model_fields_set:
            return route.lookup_field, ()
        assert route.object_api_name is not None  # Route's validator
        described = await self._caches_of(route)[1].get(route.object_api_name)
        return described.dedupe_fields[0], tuple(described.dedupe_fields)

    async def _route_plan(self, route: Route | None) -> tuple[_Plan, PrepareSpec]:
        """Decide the endpoint, key columns and options of a route's files (may call describe).

        The plan's ``forced`` is False: it is a file's own (its name).

        Raises:
            CatalogueUnavailable: the field catalogue or the object's describe is unavailable.
            Unimportable: Marketo refused to describe the object.
        """
        kind = route.kind if route is not None else ImportKind.LEADS
        lookup, dedupe = await self._keys(route)
        options = upload_options(route or self.settings.import_, kind, lookup)
        instance = self._instance(route.name if route else None)
        plan = _Plan(kind, lookup, dedupe, options, import_key(kind.value, options, instance),
                     False)
        catalogue = (
            None if kind is ImportKind.CUSTOM_OBJECTS else await self._caches_of(route)[0].get()
        )
        spec = PrepareSpec(
            catalogue=catalogue,
            lookup_field=lookup,
            dedupe_fields=dedupe,
            object_name=route.object_api_name if route is not None else None,
            max_upload_bytes=self.settings.limits.max_upload_bytes,
            null_tokens=self.settings.intake.null_tokens,
            allow_encoding_guess=self.settings.intake.allow_encoding_guess,
            encoding=self.settings.intake.encoding,
            stable_s=self.settings.intake.stable_s,
        )
        return plan, spec

    async def _process_bound(self, record: FileRecord) -> None:
        route = self._route(record)
        source = Path(record.work_path)
        work_dir = work_dir_of_source(source)
        scan: SourceScan | None = None
        try:
            route_plan, spec = await self._route_plan(route)
            plan = replace(route_plan, forced=is_forced_name(record.name))
            began = time.perf_counter()
            scanned, early = await asyncio.to_thread(scan_and_prepare_small, source, spec)
            scan = scanned
            twin = await self.store.imported_twin(scanned.sha256, plan.key)
            if twin is not None and not plan.forced:
                if early is not None:
                    await asyncio.to_thread(clean_work_dir, work_dir)
                await self._duplicate(record, scanned.sha256, scanned.size_bytes, twin)
                return
            prepared = early or await asyncio.to_thread(
                prepare_file, source, work_dir, scanned, spec
            )
            if self.observer is not None:
                self.observer.file_prepared(time.perf_counter() - began)
        except CatalogueUnavailable:
            self._waiting[record.id] = record
            log.warning("file_waiting_for_describe", file_id=record.id, file=record.name)
            return
        except Unimportable as exc:
            known = scan or getattr(exc, "scan", None)
            await self._end(record, exc, sha256=known.sha256 if known else None)
            return
        except OSError as exc:
            if await asyncio.to_thread(os.path.isfile, source):
                # The file is there: its folder, the disk or a permission failed, not the file.
                self._environment_failed(record, PREPARE, exc, source)
                return
            await self._end(
                record,
                Unimportable(
                    f"The file vanished while it was prepared: {exc.strerror or exc}."
                ),
            )
            return
        except Exception as exc:  # one bad file must not stop the loop
            log.exception("prepare_crashed", file_id=record.id, file=record.name)
            await self._end(
                record, Unimportable(f"Preparation failed: {type(exc).__name__}: {exc}.")
            )
            return
        assert scan is not None and prepared is not None
        await self._enqueue(record, route, plan, prepared, scan.sha256, twin)

    async def _enqueue(
        self,
        record: FileRecord,
        route: Route | None,
        plan: _Plan,
        prepared: Prepared,
        sha256: str,
        repeats: FileRecord | None,
    ) -> None:
        """Enqueue a prepared file's parts; ``repeats``: the file a forced one repeats."""
        item = self._enqueued(record, route, plan, prepared, sha256, repeats)
        try:
            ids = await self.store.enqueue_parts(
                record.id,
                item.parts,
                new_status=item.status,
                sha256=sha256,
                encoding=prepared.encoding,
                format=prepared.format,
                rows_total=prepared.rows_total,
                rows_rejected=prepared.rows_rejected,
                duplicates=prepared.duplicates,
                info=item.info,
                import_key=plan.key,
                forced=int(plan.forced),
                wait_s=item.wait_s,
            )
        except DuplicateContent:
            twin = await self.store.imported_twin(sha256, plan.key)
            if twin is not None:
                await self._duplicate(record, sha256, None, twin)
                return
            raise
        self._enqueued_log(record, prepared, item.status, ids)
        if self.observer is not None:
            self.observer.file_queued(self.clock() - record.received_at, record.size_bytes or 0)
        if self._on_enqueued is not None:
            self._on_enqueued()

    async def _duplicate(
        self, record: FileRecord, sha256: str, size: int | None, twin: FileRecord
    ) -> None:
        route = f" --route {record.route}" if record.route else ""
        reason = (
            f"Same content (SHA-256) and import options as file {twin.id} '{twin.name}', which "
            "is already imported or being imported; not sent again. To import it again on "
            f"purpose, drop it as '{forced_name(record.name)}' or use "
            f"`leadflow submit --force{route}`."
        )
        await self._end(record, Unimportable(reason, FileStatus.DUPLICATE), sha256=sha256)

    async def _end(self, record: FileRecord, outcome: Unimportable, sha256: str | None = None) -> None:
        """Move a ``received`` file to ``outcome.status`` with its reason (logged)."""
        changes: dict[str, Any] = {"error": outcome.reason, "finished_at": self.clock()}
        if sha256 is not None:
            changes["sha256"] = sha256
        try:
            await self.store.transition_file(
                record.id, FileStatus.RECEIVED, outcome.status, **changes
            )
        except StoreError as exc:
            log.error("file_end_failed", file_id=record.id, error=str(exc))
            return
        log.warning(
            "file_rejected",
            file_id=record.id,
            file=record.name,
            status=outcome.status.value,
            reason=outcome.reason,
        )
