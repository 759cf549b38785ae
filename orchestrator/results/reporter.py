"""The reporter: splits batches between their files, writes reports, moves sources out of work.

First, each complete upload is split once (``results/split.py``): Marketo's failures file is
fetched only when ``numOfRowsFailed > 0`` and the warnings file only when
``numOfRowsWithWarning > 0`` (docs/reference/marketo-api.md §9.6), once per batch however many files rode in it,
into ``paths.work/packs``; their rows are mapped back to the parts (files) and source line
numbers, written into each file's work folder, and each part's own counts are stored with the
batch's ``results_split_at`` in one transaction.

A file whose parts all ride in terminal uploads, split when complete, goes ``queued ->
reporting``. For a ``reporting`` file the reporter merges its split rows with intake's local
rejections (and every row of a part whose upload failed or was rejected), and writes
``paths.results/<file name>.<file id>/`` (``report.json``, ``failures.csv``, ``warnings.csv``)
under a temporary name that is then swapped into place. It then moves the source to
``paths.archive`` or ``paths.rejected`` as ``<file id>-<name>`` and finishes the file in one
guarded transition that sets ``reported_at``. Files that intake already ended (rejected, empty,
duplicate) get the same treatment without any download. A pack file, and Marketo's files of its
batch, are deleted once every file that rode in it is reported.

Every step is idempotent, so a crash anywhere is repaired by the next pass: a half-written
``.tmp`` folder is rebuilt, an already-moved source is found at its destination, downloaded
files are reused. A results folder that cannot be written (``OSError``: read-only, disk full)
or a Marketo call that fails transiently leaves the file as it is and it is tried again after
``daemon.results_retry_s``; nothing is lost.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog
from structlog.contextvars import bound_contextvars

from orchestrator.errors import ApiError, ApiPermanentError, InvalidTransition, OrchestratorError
from orchestrator.models import (
    FILE_TERMINAL,
    UPLOAD_TERMINAL,
    FileRecord,
    FileStatus,
    PartRecord,
    UploadRecord,
)
from orchestrator.places import (
    final_source,
    move,
    packs_dir,
    rejections_path,
    remove_work_dir,
    results_dir,
    source_path,
    work_dir,
    work_dirs,
)
from orchestrator.results.report import Ride, build_report, count_rows, decide_status
from orchestrator.results.rows import PartRows, Written, write_rows
from orchestrator.results.split import split_batch, write_splits
from orchestrator.results.write import replace_dir, write_json
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.timing import Clock

log = structlog.get_logger(__name__)

#: Files whose results are written at once in a pass (their file I/O and fsyncs overlap in
#: worker threads; the database serialises their transactions).
REPORT_CONCURRENCY = 8
#: Files finished in one transaction (their results are written first, then committed).
COMMIT_FILES = 256
#: Level of ``file_finished`` by final status: ``error`` when nothing was imported (a person
#: must fix the file or the settings), ``warning`` when not every row got in or nothing was
#: sent (empty, duplicate), ``info`` when everything did.
FINISHED_LEVEL = {
    FileStatus.COMPLETE: logging.INFO,
    FileStatus.PARTIAL: logging.WARNING,
    FileStatus.EMPTY: logging.WARNING,
    FileStatus.DUPLICATE: logging.WARNING,
    FileStatus.REJECTED: logging.ERROR,
}


@dataclass(frozen=True, slots=True)
class _Written:
    """A file whose results folder is written and source moved, to finish (commit)."""

    file: FileRecord
    rides: list[Ride]
    rows: dict[str, int]
    status: FileStatus
    error: str | None
    finished_at: float
    info: dict[str, Any]
    final: Path
    archived: Path | None


class ResultsClient(Protocol):
    """What the reporter needs from the Marketo client.

    See docs/reference/marketo-api.md §3.2, §3.3.
    """

    async def download_failures(
        self, batch_id: int, kind: str, options: dict[str, Any], dest: Path, /
    ) -> bool:
        """Write the batch's failures file to ``dest``; False when Marketo has none (404)."""

    async def download_warnings(
        self, batch_id: int, kind: str, options: dict[str, Any], dest: Path, /
    ) -> bool:
        """Write the batch's warnings file to ``dest``; False when Marketo has none (404)."""


class Reporter:
    """Writes results for finished files; call ``report_ready`` from the daemon's loop.

    Args:
        settings: paths (``results``, ``archive``, ``rejected``, ``work``) and
            ``daemon.results_retry_s``.
        store: the database.
        client: fetches failures and warnings files (``MarketoClient`` or a fake).
        clock: returns epoch seconds.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        client: ResultsClient,
        clock: Clock = time.time,
    ) -> None:
        self._settings = settings
        self._store = store
        self._client = client
        self._clock = clock
        self._retry_at: dict[int, float] = {}
        self._split_retry_at: dict[int, float] = {}
        self._uploads: dict[int, tuple[UploadRecord, int]] = {}

    def next_attempt_at(self) -> float | None:
        """Return the earliest time a postponed report or split is tried again, or None."""
        return min([*self._retry_at.values(), *self._split_retry_at.values()], default=None)

    async def report_ready(self) -> int:
        """Run one pass: start reporting ready files, then finish every file due.

        Returns:
            How many files were finished (results written, source moved, ``reported_at``
            set) in this pass. A file whose results could not be written is logged
            (``results_write_failed`` / ``results_fetch_failed``) and tried again on a pass
            at least ``daemon.results_retry_s`` later; it is not counted.
        """
        self._uploads.clear()
        await self.split_ready()
        ready = await self._store.files_ready_for_report()
        for started in await self._store.start_reporting([f.id for f in ready]):
            log.info("file_reporting", file_id=started.id, file=started.name)
        due = [
            file for file in await self._store.files_to_report()
            if self._retry_at.get(file.id, 0.0) <= self._clock()
        ]
        finished = 0
        for start in range(0, len(due), COMMIT_FILES):
            finished += await self._finish_batch(due[start : start + COMMIT_FILES])
        await self._clean_packs()
        return finished

    async def _finish_batch(self, files: list[FileRecord]) -> int:
        """Write the results of several files at once, then finish them in one transaction."""
        parts = await self._store.parts_of_files([f.id for f in files])
        limit = asyncio.Semaphore(REPORT_CONCURRENCY)

        async def write(file: FileRecord) -> _Written | None:
            async with limit:
                with bound_contextvars(file_id=file.id, file=file.name):
                    return await self._try_write(file, parts.get(file.id, []))

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(write(file)) for file in files]
        done = [w for w in (task.result() for task in tasks) if w is not None]
        return len(await self._commit(done))

    # --- splitting a batch between its files -------------------------------------------

    async def split_ready(self) -> int:
        """Split every complete batch not split yet between the files that rode in it.

        Returns:
            How many batches were split. A batch whose Marketo files cannot be fetched now
            or whose split files cannot be written is logged and tried again after
            ``daemon.results_retry_s``.
        """
        done = 0
        for upload in await self._store.uploads_to_split():
            if self._split_retry_at.get(upload.id, 0.0) > self._clock():
                continue
            with bound_contextvars(upload_id=upload.id, batch_id=upload.batch_id):
                try:
                    await self.split_upload(upload)
                except (OSError, ApiError) as exc:
                    delay = self._settings.daemon.results_retry_s
                    self._split_retry_at[upload.id] = self._clock() + delay
                    event = "results_fetch_failed" if isinstance(exc, ApiError) else (
                        "results_split_failed")
                    log.warning(event, upload_id=upload.id, batch_id=upload.batch_id,
                                error=f"{type(exc).__name__}: {exc}", retry_in_s=delay)
                    continue
            self._split_retry_at.pop(upload.id, None)
            done += 1
        return done

    async def split_upload(self, upload: UploadRecord) -> None:
        """Split one complete batch: fetch Marketo's files once, give each part its rows.

        Idempotent: a crash before the final transaction leaves ``results_split_at`` unset and
        the split is done again (fetched files are reused, split files rewritten).

        Raises:
            OSError: a file cannot be read or written (nothing recorded).
            ApiError: Marketo could not be asked for a file right now (nothing recorded).
        """
        parts = await self._store.parts_of_upload(upload.id)
        downloads: dict[str, Path | None] = {}
        if parts and (upload.num_rows_failed or 0) > 0:
            downloads["failures"] = await self._download(upload, "failures")
        if parts and (upload.num_rows_with_warning or 0) > 0:
            downloads["warnings"] = await self._download(upload, "warnings")
        lines: dict[int, list[int]] = {}
        if any(downloads.values()):
            lines = await self._store.source_rows_of_upload(upload.id)
        header, splits = await asyncio.to_thread(split_batch, upload, parts, lines, downloads)
        await asyncio.to_thread(write_splits, upload, header, splits)
        await self._store.record_split(
            upload.id, [(s.part.id, s.processed, s.failed, s.warned) for s in splits]
        )
        log.info(
            "results_split",
            upload_id=upload.id,
            batch_id=upload.batch_id,
            files=len({s.part.file_id for s in splits}),
            parts=len(splits),
            failures=sum(len(s.failures) for s in splits),
            warnings=sum(len(s.warnings) for s in splits),
        )

    async def _try_write(self, file: FileRecord, parts: list[PartRecord]) -> _Written | None:
        """Write one file's results; None when it must wait (logged, retried later)."""
        try:
            return await self.write_results(file, parts)
        except OSError as exc:
            await self._postpone(file, "results_write_failed", exc)
        except ApiError as exc:
            await self._postpone(file, "results_fetch_failed", exc)
        except InvalidTransition as exc:
            log.warning("results_skipped", file_id=file.id, file=file.name, reason=str(exc))
        except Exception as exc:  # a bug must not stop other files' reports
            log.exception(
                "results_failed", file_id=file.id, file=file.name,
                error=f"{type(exc).__name__}: {exc}",
            )
            await self._postpone(file, "results_write_failed", exc)
        return None

    async def _postpone(self, file: FileRecord, event: str, exc: BaseException) -> None:
        delay = self._settings.daemon.results_retry_s
        self._retry_at[file.id] = self._clock() + delay
        code = (
            errno.errorcode.get(exc.errno) if isinstance(exc, OSError) and exc.errno else None
        )
        message = f"{type(exc).__name__}: {exc}"
        # A folder that cannot be written needs a person (error); Marketo being unavailable
        # for a moment does not (warning): both are tried again.
        level = log.error if event == "results_write_failed" else log.warning
        level(event, file_id=file.id, file=file.name, error=message, errno=code,
              retry_in_s=delay)
        try:
            await self._store.record_error(
                f"results of {file.name} not written: {message}",
                code=code or "results",
                file_id=file.id,
            )
        except (OrchestratorError, sqlite3.Error, OSError) as exc2:
            # the database may be on the same full disk: the log line above is what counts
            log.debug("record_error_failed", error=str(exc2))

    async def finish_file(self, file: FileRecord) -> FileRecord:
        """Write one file's results, move its source and finish it (idempotent).

        Returns:
            The file record after its final transition.

        Raises:
            OSError: a folder is not writable or the disk is full (nothing was finished).
            InvalidTransition: the file changed status meanwhile.
        """
        written = await self.write_results(file, await self._store.parts_of_file(file.id))
        done = await self._commit([written])
        if not done:
            raise InvalidTransition("files", file.id, (file.status.value,), None)
        return done[0]

    async def write_results(self, file: FileRecord, parts: list[PartRecord]) -> _Written:
        """Write one file's results folder and move its source (idempotent); not committed.

        Args:
            file: a file to report.
            parts: its parts (``Store.parts_of_file``).

        Raises:
            OSError: a folder is not writable or the disk is full.
            InvalidTransition: a part of the file waits for a pack (it changed meanwhile).
        """
        started = self._clock()
        rides = await self._rides(file, parts)
        rows = count_rows(file, rides)
        if file.status is FileStatus.REPORTING:
            status, error = decide_status(file, rides, rows)
            finished_at = started
        else:
            status, error = file.status, file.error
            finished_at = file.finished_at or started
        plans = [
            PartRows(ride, await self._store.part_source_rows(ride.part.id) if ride.dead else [])
            for ride in rides
        ]
        calls = await self._store.submissions_of_file(file.id)
        final = results_dir(self._settings.paths, file.name, file.id)
        rejections = rejections_path(self._settings.paths, file)

        def write() -> tuple[Written, str | None, Path | None]:
            """Results folder and source move in one worker-thread call."""
            tmp = final.with_name(final.name + ".tmp")
            try:
                written = write_rows(file, plans, tmp, rejections)
                notes = " ".join(written.notes)
                sentence = (f"{error}. {notes}" if error else notes) if notes else error
                report = build_report(file, rides, rows, status, sentence, finished_at, calls)
                self._publish(tmp, final, report)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            return written, sentence, self._move_source(file, status)

        written, error, archived = await asyncio.to_thread(write)
        log.info(
            "results_written",
            file_id=file.id,
            file=file.name,
            path=str(final),
            failures=written.failures,
            warnings=written.warnings,
            status=status.value,
        )
        info = dict(file.info)
        if archived is not None:
            info["archived_path"] = str(archived)
        return _Written(file, rides, rows.as_dict(), status, error, finished_at, info, final,
                         archived)

    async def _commit(self, items: list[_Written]) -> list[FileRecord]:
        """Finish written files (``reported_at`` set) in one transaction; clean up; log.

        When the batch is refused (a file changed status meanwhile), each file is finished on
        its own and the one that changed is skipped (its results are written again later).
        """
        if not items:
            return []
        now = self._clock()
        changes = [
            (w.file.id, w.file.status, w.status,
             {"error": w.error, "finished_at": w.finished_at, "reported_at": now,
              "info": w.info})
            for w in items
        ]
        try:
            done = await self._store.finish_files(changes)
            kept = list(items)
        except InvalidTransition:
            done, kept = [], []
            for item, change in zip(items, changes, strict=True):
                try:
                    done += await self._store.finish_files([change])
                    kept.append(item)
                except InvalidTransition as exc:
                    log.warning("results_skipped", file_id=item.file.id, file=item.file.name,
                                reason=str(exc))
        await asyncio.to_thread(
            self._remove_work_dirs, [w.file for w in kept if not any(r.dead for r in w.rides)]
        )
        for w in kept:
            self._retry_at.pop(w.file.id, None)
            log.log(
                FINISHED_LEVEL.get(w.status, logging.WARNING),
                "file_finished",
                file_id=w.file.id,
                file=w.file.name,
                status=w.status.value,
                rows=w.rows,
                uploads=len(w.rides),
                batch_ids=sorted({r.upload.batch_id for r in w.rides if r.upload.batch_id}),
                duration_s=round(w.finished_at - w.file.received_at, 3),
                error=w.error,
                results=str(w.final),
                source=str(w.archived) if w.archived else None,
            )
        return done

    # --- fetching ------------------------------------------------------------------------

    async def _rides(self, file: FileRecord, parts: list[PartRecord]) -> list[Ride]:
        """The file's parts with the uploads they rode in (uploads read once per pass).

        Raises:
            InvalidTransition: a part waits for a pack (the file changed meanwhile).
        """
        rides: list[Ride] = []
        for part in parts:
            if part.upload_id is None:
                raise InvalidTransition("files", file.id, ("reporting",), "queued")
            if part.upload_id not in self._uploads:
                upload = await self._store.get_upload(part.upload_id)
                if upload is None:
                    raise InvalidTransition("uploads", part.upload_id, ("complete",), None)
                count = await self._store.count_files_in_upload(part.upload_id)
                self._uploads[part.upload_id] = (upload, count)
            upload, count = self._uploads[part.upload_id]
            rides.append(Ride(part, upload, count))
        return rides

    async def _download(self, upload: UploadRecord, what: str) -> Path | None:
        """Fetch Marketo's failures or warnings file of a batch once (reused if present)."""
        assert upload.batch_id is not None
        folder = packs_dir(self._settings.paths, self._store.instance)
        dest = folder / f"marketo-{what}-{upload.id}-{upload.batch_id}.csv"
        if await asyncio.to_thread(dest.is_file):
            return dest
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        fetch = (
            self._client.download_failures if what == "failures"
            else self._client.download_warnings
        )
        try:
            found = await fetch(upload.batch_id, upload.kind, dict(upload.options), part)
        except ApiPermanentError as exc:
            log.warning("results_file_unavailable", what=what, upload_id=upload.id,
                        batch_id=upload.batch_id, error=str(exc))
            found = False
        if not found:
            part.unlink(missing_ok=True)
            log.warning("results_file_missing", what=what, upload_id=upload.id,
                        batch_id=upload.batch_id)
            return None
        part.rename(dest)
        return dest

    async def _clean_packs(self) -> None:
        """Delete pack files and fetched Marketo files of batches whose files are all reported."""
        packs = packs_dir(self._settings.paths, self._store.instance)
        for upload_id, (upload, _) in list(self._uploads.items()):
            if upload.status not in UPLOAD_TERMINAL:
                continue
            if await self._store.unreported_in_upload(upload_id):
                continue
            await asyncio.to_thread(_remove_batch_files, packs, upload)

    @staticmethod
    def _publish(tmp: Path, final: Path, report: dict[str, Any]) -> None:
        write_json(tmp / "report.json", report)
        final.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(tmp, final)

    # --- the source and the work dir -----------------------------------------------------

    def _move_source(self, file: FileRecord, status: FileStatus) -> Path | None:
        dest = final_source(self._settings.paths, file.name, file.id, status)
        source = source_path(file)
        if not (source.is_file() or source.is_symlink()):
            if dest.exists():
                return dest
            log.warning("source_missing", file_id=file.id, file=file.name, source=str(source))
            return None
        move(source, dest)
        return dest

    async def remove_finished_work_dirs(self) -> int:
        """Remove the work folders of reported files that have nothing left to re-send.

        Call once at start: a crash between a file's final transition and the removal of its
        work folder leaves the folder behind, and nothing else would remove it. Folders of
        files with a part whose upload failed or was refused at Marketo stay
        (``leadflow retry``). ``work/packs`` is not a file's folder and is left alone.

        Returns:
            How many folders were removed.
        """
        root = self._settings.paths.work
        try:
            folders = await asyncio.to_thread(work_dirs, root)
        except OSError:
            return 0
        removed = 0
        for file_id, folder in folders:
            file = await self._store.get_file(file_id)
            if file is None or file.reported_at is None or file.status not in FILE_TERMINAL:
                continue
            try:
                rides = await self._rides(file, await self._store.parts_of_file(file.id))
            except InvalidTransition:  # a part waits again (retried meanwhile)
                continue
            if any(r.dead for r in rides):
                continue
            await asyncio.to_thread(remove_work_dir, root, folder)
            log.info("work_dir_removed", file_id=file.id, file=file.name, path=str(folder))
            removed += 1
        self._uploads.clear()
        return removed

    async def remove_finished_packs(self) -> int:
        """Remove pack files (and fetched Marketo files) of batches whose files are reported.

        Call once at start: a crash between the last report of a shared batch and the
        removal of its files leaves them behind, and nothing else would remove them. Packs of
        uploads still open, or with a file not reported yet, stay.

        Returns:
            How many uploads' files were removed.
        """
        packs = packs_dir(self._settings.paths, self._store.instance)
        try:
            names = await asyncio.to_thread(_pack_names, packs)
        except OSError:
            return 0
        removed = 0
        seen: set[int] = set()
        for name in names:
            if name.startswith("pack-"):
                upload = await self._store.upload_by_path(str(packs / name))
            else:  # marketo-<what>-<upload id>-<batchId>.csv
                upload = await self._store.get_upload(int(name.split("-")[2]))
            if upload is None or upload.id in seen or upload.status not in UPLOAD_TERMINAL:
                continue
            seen.add(upload.id)
            if await self._store.unreported_in_upload(upload.id):
                continue
            await asyncio.to_thread(_remove_batch_files, packs, upload)
            log.info("pack_files_removed", upload_id=upload.id, file=name)
            removed += 1
        return removed

    def _remove_work_dirs(self, files: list[FileRecord]) -> None:
        for file in files:
            self._remove_work_dir(file)

    def _remove_work_dir(self, file: FileRecord) -> None:
        remove_work_dir(self._settings.paths.work, work_dir(self._settings.paths, file))


def _pack_names(packs: Path) -> list[str]:
    """Names of the pack files and fetched Marketo files in ``packs`` (none if it is missing)."""
    if not packs.is_dir():
        return []
    return sorted(
        entry.name for entry in os.scandir(packs)
        if entry.is_file(follow_symlinks=False) and entry.name.endswith(".csv")
        and (entry.name.startswith("pack-")
             or (entry.name.startswith("marketo-") and entry.name.count("-") >= 3
                 and entry.name.split("-")[2].isdigit()))
    )


def _remove_batch_files(packs: Path, upload: UploadRecord) -> None:
    """Delete an upload's pack file (if it is one) and the Marketo files fetched for it."""
    path = Path(upload.path)
    if path.parent == packs:
        path.unlink(missing_ok=True)
    if packs.is_dir():
        for fetched in packs.glob(f"marketo-*-{upload.id}-*.csv"):
            fetched.unlink(missing_ok=True)
