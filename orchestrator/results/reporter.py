"""The reporter: writes each finished file's results and moves its source out of work.

A file whose uploads are all terminal goes ``queued -> reporting``. For a ``reporting`` file the
reporter fetches Marketo's failures file only when ``numOfRowsFailed > 0`` and the warnings file
only when ``numOfRowsWithWarning > 0`` (docs/reference/marketo-api.md §9.6), maps their rows back to
source line numbers (``source_rows``), merges them with intake's local rejections, and writes
``paths.results/<file name>.<file id>/`` (``report.json``, ``failures.csv``, ``warnings.csv``)
under a temporary name that is then swapped into place. It then moves the source to
``paths.archive`` or ``paths.rejected`` as ``<file id>-<name>`` and finishes the file in one
guarded transition that sets ``reported_at``. Files that intake already ended (rejected, empty,
duplicate) get the same treatment without any download.

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
import shutil
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog
from structlog.contextvars import bound_contextvars

from orchestrator.errors import ApiError, ApiPermanentError, InvalidTransition, OrchestratorError
from orchestrator.models import (
    FILE_TERMINAL,
    UPLOAD_DEAD,
    FileRecord,
    FileStatus,
    UploadRecord,
    UploadStatus,
)
from orchestrator.places import (
    final_source,
    move,
    rejections_path,
    remove_work_dir,
    results_dir,
    source_path,
    work_dir,
    work_dirs,
)
from orchestrator.results.report import build_report, count_rows, decide_status
from orchestrator.results.rows import UploadRows, write_rows
from orchestrator.results.write import replace_dir, write_json
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.timing import Clock

log = structlog.get_logger(__name__)

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

    def next_attempt_at(self) -> float | None:
        """Return the earliest time a postponed report is tried again, or None."""
        return min(self._retry_at.values(), default=None)

    async def report_ready(self) -> int:
        """Run one pass: start reporting ready files, then finish every file due.

        Returns:
            How many files were finished (results written, source moved, ``reported_at``
            set) in this pass. A file whose results could not be written is logged
            (``results_write_failed`` / ``results_fetch_failed``) and tried again on a pass
            at least ``daemon.results_retry_s`` later; it is not counted.
        """
        for ready in await self._store.files_ready_for_report():
            try:
                await self._store.transition_file(
                    ready.id, FileStatus.QUEUED, FileStatus.REPORTING
                )
            except InvalidTransition:
                continue
            log.info("file_reporting", file_id=ready.id, file=ready.name)
        finished = 0
        for file in await self._store.files_to_report():
            if self._retry_at.get(file.id, 0.0) > self._clock():
                continue
            with bound_contextvars(file_id=file.id, file=file.name):
                if await self._try_finish(file):
                    finished += 1
        return finished

    async def _try_finish(self, file: FileRecord) -> bool:
        try:
            await self.finish_file(file)
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
        else:
            self._retry_at.pop(file.id, None)
            return True
        return False

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
            ApiError: Marketo could not be asked for a failures/warnings file right now.
            InvalidTransition: the file changed status meanwhile.
        """
        started = self._clock()
        uploads = await self._store.uploads_of_file(file.id)
        rows = count_rows(file, uploads)
        if file.status is FileStatus.REPORTING:
            status, error = decide_status(file, uploads, rows)
            finished_at = started
        else:
            status, error = file.status, file.error
            finished_at = file.finished_at or started
        plans = await self._fetch(file, uploads)
        final = results_dir(self._settings.paths, file.name, file.id)
        tmp = final.with_name(final.name + ".tmp")
        try:
            rejections = rejections_path(self._settings.paths, file)
            written = await asyncio.to_thread(write_rows, file, plans, tmp, rejections)
            notes = " ".join(written.notes)
            if notes:
                error = f"{error}. {notes}" if error else notes
            calls = await self._store.submissions_of_file(file.id)
            report = build_report(file, uploads, rows, status, error, finished_at, calls)
            await asyncio.to_thread(self._publish, tmp, final, report)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info(
            "results_written",
            file_id=file.id,
            file=file.name,
            path=str(final),
            failures=written.failures,
            warnings=written.warnings,
            status=status.value,
        )
        archived = await asyncio.to_thread(self._move_source, file, status)
        info = dict(file.info)
        if archived is not None:
            info["archived_path"] = str(archived)
        reported_at = self._clock()
        done = await self._store.transition_file(
            file.id,
            file.status,
            status,
            error=error,
            finished_at=finished_at,
            reported_at=reported_at,
            info=info,
        )
        if not any(u.status in UPLOAD_DEAD for u in uploads):
            await asyncio.to_thread(self._remove_work_dir, file)
        log.log(
            FINISHED_LEVEL.get(status, logging.WARNING),
            "file_finished",
            file_id=file.id,
            file=file.name,
            status=status.value,
            rows=rows.as_dict(),
            uploads=len(uploads),
            duration_s=round(finished_at - file.received_at, 3),
            error=error,
            results=str(final),
            source=str(archived) if archived else None,
        )
        return done

    # --- fetching ------------------------------------------------------------------------

    async def _fetch(self, file: FileRecord, uploads: Sequence[UploadRecord]) -> list[UploadRows]:
        plans: list[UploadRows] = []
        for upload in uploads:
            if upload.status in UPLOAD_DEAD:
                plans.append(UploadRows(upload, await self._store.upload_source_rows(upload.id)))
                continue
            if upload.status is not UploadStatus.COMPLETE or upload.batch_id is None:
                continue
            plan = UploadRows(upload, [])
            if (upload.num_rows_failed or 0) > 0:
                plan.failures = await self._download(file, upload, "failures")
            if (upload.num_rows_with_warning or 0) > 0:
                plan.warnings = await self._download(file, upload, "warnings")
            if plan.failures or plan.warnings:
                plan.source_rows = await self._store.upload_source_rows(upload.id)
            plans.append(plan)
        return plans

    async def _download(self, file: FileRecord, upload: UploadRecord, what: str) -> Path | None:
        assert upload.batch_id is not None
        folder = work_dir(self._settings.paths, file)
        dest = folder / f"marketo-{what}-{upload.seq:04d}-{upload.batch_id}.csv"
        if dest.is_file():
            return dest
        folder.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        fetch = (
            self._client.download_failures if what == "failures"
            else self._client.download_warnings
        )
        try:
            found = await fetch(upload.batch_id, upload.kind, dict(upload.options), part)
        except ApiPermanentError as exc:
            log.warning(
                "results_file_unavailable", file_id=file.id, what=what, upload_id=upload.id,
                seq=upload.seq,
                batch_id=upload.batch_id, error=str(exc),
            )
            found = False
        if not found:
            part.unlink(missing_ok=True)
            log.warning(
                "results_file_missing", file_id=file.id, what=what, upload_id=upload.id,
                seq=upload.seq, batch_id=upload.batch_id,
            )
            return None
        part.rename(dest)
        return dest

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
        files with an upload that failed or was refused at Marketo stay (``leadflow retry``).

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
            uploads = await self._store.uploads_of_file(file.id)
            if any(u.status in UPLOAD_DEAD for u in uploads):
                continue
            await asyncio.to_thread(remove_work_dir, root, folder)
            log.info("work_dir_removed", file_id=file.id, file=file.name, path=str(folder))
            removed += 1
        return removed

    def _remove_work_dir(self, file: FileRecord) -> None:
        remove_work_dir(self._settings.paths.work, work_dir(self._settings.paths, file))
