"""The SQLite store: the FIFO of uploads and all state. The only module that runs SQL.

One aiosqlite connection in autocommit mode (``isolation_level=None``); every write that must
be atomic runs inside ``BEGIN IMMEDIATE`` so the write lock is taken up front. Every status
change is one guarded ``UPDATE ... WHERE id=? AND status IN (...)``; zero rows raises
``InvalidTransition``. A trigger refuses transitions not in ``allowed_transitions`` and another
writes ``status_history``. Times are epoch seconds from the injected ``clock``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from orchestrator.errors import InvalidTransition, StoreError
from orchestrator.models import (
    EnqueuedFile,
    FileRecord,
    FileStatus,
    NewFile,
    NewPart,
    PartRecord,
    UploadRecord,
    UploadStatus,
    pack_rows,
    unpack_rows,
)
from orchestrator.places import PENDING_ID
from orchestrator.store.migrate import migrate
from orchestrator.store.queries import load_queries

#: Seconds a writer waits for SQLite's lock before giving up.
BUSY_TIMEOUT_S = 30.0

# --- named queries (the SQL is in orchestrator/queries.sql) ---------------------------------

UPLOAD_COLUMNS = (
    "id, path, size_bytes, rows, kind, options, status, batch_id, marketo_status,"
    " num_leads_processed, num_rows_failed, num_rows_with_warning, message, attempts,"
    " batch_failures, uncertain, not_before, next_poll_at, polls, error_code, error,"
    " created_at, updated_at, claimed_at, submitted_at, finished_at, results_split_at"
)
PART_COLUMNS = (
    "id, file_id, seq, path, size_bytes, header_bytes, rows, kind, options, pack_key,"
    " queued_at, send_by, upload_id, first_row, num_leads_processed, num_rows_failed,"
    " num_rows_with_warning"
)
from orchestrator.timing import Clock

_Q = load_queries(UPLOAD_COLUMNS, PART_COLUMNS)

INSERT_FILE = _Q["insert_file"]
SELECT_FILE = _Q["select_file"]
SET_FILE_WORK_PATH = _Q["set_file_work_path"]
SELECT_FILES_BY_STATUS = _Q["select_files_by_status"]
SELECT_FILE_BY_WORK_PATH = _Q["select_file_by_work_path"]
SELECT_IMPORTED_TWIN = _Q["select_imported_twin"]
SELECT_IMPORTED_TWINS = _Q["select_imported_twins"]
INSERT_FILES_WITH_IDS = _Q["insert_files_with_ids"]
SELECT_SEQUENCE = _Q["select_sequence"]
SELECT_FILES_FROM = _Q["select_files_from"]
ENQUEUE_FILE = _Q["enqueue_file"]
INSERT_PART = _Q["insert_part"]
INSERT_UPLOAD = _Q["insert_upload"]
LINK_PART = _Q["link_part"]
SELECT_PART_SOURCE_ROWS = _Q["select_part_source_rows"]
SELECT_PARTS_OF_UPLOAD = _Q["select_parts_of_upload"]
SELECT_PARTS_OF_FILE = _Q["select_parts_of_file"]
SELECT_UPLOADS_OF_FILE = _Q["select_uploads_of_file"]
SELECT_PARTS_OF_FILES = _Q["select_parts_of_files"]
SELECT_FILES_OF_UPLOAD = _Q["select_files_of_upload"]
COUNT_FILES_IN_UPLOAD = _Q["count_files_in_upload"]
SELECT_SOURCE_ROWS_OF_UPLOAD = _Q["select_source_rows_of_upload"]
SELECT_WAITING_HEAD = _Q["select_waiting_head"]
SELECT_WAITING_GROUP = _Q["select_waiting_group"]
SELECT_WAITING_GROUP_TOTALS = _Q["select_waiting_group_totals"]
SELECT_WAITING_UPTO = _Q["select_waiting_upto"]
SELECT_WAITING_SUMMARY = _Q["select_waiting_summary"]
DETACH_PART = _Q["detach_part"]
SELECT_UPLOADS_TO_SPLIT = _Q["select_uploads_to_split"]
SET_PART_COUNTS = _Q["set_part_counts"]
SET_UPLOAD_SPLIT = _Q["set_upload_split"]
COUNT_UNREPORTED_IN_UPLOAD = _Q["count_unreported_in_upload"]
SELECT_UPLOAD_PATHS = _Q["select_upload_paths"]
CLAIM_NEXT_UPLOAD = _Q["claim_next_upload"]
SELECT_UPLOAD = _Q["select_upload"]
SELECT_UPLOADS_BY_STATUS = _Q["select_uploads_by_status"]
SELECT_AT_MARKETO = _Q["select_at_marketo"]
SELECT_DUE_FOR_POLL = _Q["select_due_for_poll"]
SELECT_NEXT_POLL_AT = _Q["select_next_poll_at"]
SELECT_NEXT_QUEUED_AT = _Q["select_next_queued_at"]
COUNT_UPLOADS_IN = _Q["count_uploads_in"]
SELECT_FILES_TO_REPORT = _Q["select_files_to_report"]
SELECT_FILES_READY = _Q["select_files_ready"]
START_REPORTING = _Q["start_reporting"]
COUNT_FILES_BY_STATUS = _Q["count_files_by_status"]
COUNT_UPLOADS_BY_STATUS = _Q["count_uploads_by_status"]
SELECT_STATUS_OF = {
    "files": _Q["select_status_of_files"],
    "uploads": _Q["select_status_of_uploads"],
}
SELECT_HISTORY = _Q["select_history"]
UPSERT_USAGE = _Q["upsert_usage"]
SELECT_CALLS_ON_DAY = _Q["select_calls_on_day"]
SELECT_USAGE_ON_DAY = _Q["select_usage_on_day"]
INSERT_API_CALL = _Q["insert_api_call"]
ANSWER_API_CALL = _Q["answer_api_call"]
SETTLE_API_CALLS = _Q["settle_api_calls"]
FORGET_API_CALLS = _Q["forget_api_calls"]
SELECT_API_CALLS_ANSWERED = _Q["select_api_calls_answered"]
INSERT_ERROR = _Q["insert_error"]
SELECT_RECENT_ERRORS = _Q["select_recent_errors"]
SELECT_FILES_FOR_STATUS = _Q["select_files_for_status"]
UPSERT_DAEMON_ROUTES = _Q["upsert_daemon_routes"]
SELECT_DAEMON_ROUTES = _Q["select_daemon_routes"]
SELECT_SUBMISSIONS_OF_FILE = _Q["select_submissions_of_file"]
SELECT_FILES_TO_EXPIRE = _Q["select_files_to_expire"]
UPSERT_RETENTION_DELETION = _Q["upsert_retention_deletion"]
SELECT_RETENTION_COUNTS = _Q["select_retention_counts"]

#: Columns a transition may change besides ``status`` and ``updated_at``. Names come from
#: this constant only, never from data, so the statement built from them is safe.
FILE_MUTABLE = frozenset(
    {
        "sha256",
        "size_bytes",
        "error",
        "encoding",
        "format",
        "rows_total",
        "rows_rejected",
        "duplicates",
        "info",
        "finished_at",
        "work_path",
        "route",
        "reported_at",
        "import_key",
        "forced",
    }
)
UPLOAD_MUTABLE = frozenset(
    {
        "batch_id",
        "marketo_status",
        "num_leads_processed",
        "num_rows_failed",
        "num_rows_with_warning",
        "message",
        "attempts",
        "batch_failures",
        "uncertain",
        "not_before",
        "next_poll_at",
        "polls",
        "error_code",
        "error",
        "claimed_at",
        "submitted_at",
        "finished_at",
        "options",
    }
)


class Store:
    """The database behind leadflow. Build it with ``Store.open`` (an async context manager).

    Every method is a coroutine on one connection; a lock serialises transactions inside the
    process, and ``BEGIN IMMEDIATE`` serialises them against other processes.
    """

    def __init__(self, conn: aiosqlite.Connection, clock: Clock = time.time) -> None:
        self._conn = conn
        self._clock = clock
        self._tx = asyncio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: Path,
        *,
        clock: Clock = time.time,
        migrate_schema: bool = True,
    ) -> AsyncIterator[Store]:
        """Open (and migrate) the database at ``path``.

        Args:
            path: the SQLite file; its folder is created.
            clock: returns epoch seconds; injected by tests.
            migrate_schema: apply pending migrations.

        Raises:
            SchemaTooNew: the database is newer than this code.
            StoreError: the file is not a database, or cannot be opened.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {path}: {exc}") from exc
        try:
            conn.row_factory = aiosqlite.Row
            try:
                await conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
                await conn.execute("PRAGMA journal_mode = WAL")
                await conn.execute("PRAGMA synchronous = NORMAL")
                await conn.execute("PRAGMA foreign_keys = ON")
                if migrate_schema:
                    await migrate(conn)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"database {path} cannot be used: {exc}") from exc
            yield cls(conn, clock)
        finally:
            await conn.close()

    @property
    def clock(self) -> Clock:
        """The clock the store stamps rows with."""
        return self._clock

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._tx:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def _fetchall(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[aiosqlite.Row]:
        async with self._tx, self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def _fetchone(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> aiosqlite.Row | None:
        async with self._tx, self._conn.execute(sql, params) as cursor:
            return await cursor.fetchone()

    # --- files ---------------------------------------------------------------------------

    async def add_file(
        self,
        *,
        name: str,
        inbox_path: str,
        work_path: str,
        route: str | None,
        size_bytes: int | None,
    ) -> FileRecord:
        """Record a newly found file in status ``received``; returns it with its id.

        A ``{id}`` (``places.PENDING_ID``) in ``work_path`` is replaced by the new id in the
        same transaction (intake's ``work/{id}/source/<name>``).
        """
        async with self._transaction() as conn:
            async with conn.execute(
                INSERT_FILE,
                {
                    "name": name,
                    "inbox_path": inbox_path,
                    "work_path": work_path,
                    "route": route,
                    "size_bytes": size_bytes,
                    "now": self._clock(),
                },
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None
            if PENDING_ID in work_path:
                filled = work_path.replace(PENDING_ID, str(row["id"]), 1)
                async with conn.execute(SET_FILE_WORK_PATH, (filled, row["id"])) as cursor:
                    row = await cursor.fetchone()
                assert row is not None
        return FileRecord.from_row(row)

    async def get_file(self, file_id: int) -> FileRecord | None:
        """Return one file, or None."""
        row = await self._fetchone(SELECT_FILE, (file_id,))
        return FileRecord.from_row(row) if row else None

    async def file_by_work_path(self, work_path: str) -> FileRecord | None:
        """Return the file claimed to ``work_path``, or None."""
        row = await self._fetchone(SELECT_FILE_BY_WORK_PATH, (work_path,))
        return FileRecord.from_row(row) if row else None

    async def files_in(self, status: FileStatus) -> list[FileRecord]:
        """Return files in ``status`` in id order."""
        return [FileRecord.from_row(r) for r in await self._fetchall(SELECT_FILES_BY_STATUS,
                                                                     (status.value,))]

    async def imported_twin(self, sha256: str, import_key: str | None) -> FileRecord | None:
        """Return the first file imported or being imported with these bytes and options.

        Args:
            sha256: of the source bytes.
            import_key: the import options (``intake.uploads.import_key``); None matches
                files recorded without one.

        Returns:
            The earliest such file (a forced repeat included), or None.
        """
        row = await self._fetchone(
            SELECT_IMPORTED_TWIN, {"sha256": sha256, "import_key": import_key}
        )
        return FileRecord.from_row(row) if row else None

    async def imported_twins(
        self, keys: Iterable[tuple[str, str | None]]
    ) -> dict[tuple[str, str], FileRecord]:
        """Return ``imported_twin`` for many ``(sha256, import_key)`` at once (one query).

        Returns:
            The twins found, by ``(sha256, import_key or "")``.
        """
        wanted = sorted({(sha, key or "") for sha, key in keys})
        if not wanted:
            return {}
        rows = await self._fetchall(
            SELECT_IMPORTED_TWINS, {"keys": json.dumps([list(k) for k in wanted])}
        )
        found = [FileRecord.from_row(r) for r in rows]
        return {(f.sha256, f.import_key or ""): f for f in found if f.sha256 is not None}

    async def transition_file(
        self,
        file_id: int,
        expected: FileStatus | Iterable[FileStatus],
        new: FileStatus,
        **changes: Any,
    ) -> FileRecord:
        """Move a file from one of ``expected`` to ``new``, setting ``changes`` atomically.

        Args:
            changes: columns from ``FILE_MUTABLE``; ``info`` may be a dict (stored as JSON).

        Raises:
            InvalidTransition: the file was not in an expected status.
            ValueError: a column not in ``FILE_MUTABLE``.
        """
        if "info" in changes and not isinstance(changes["info"], str):
            changes["info"] = json.dumps(changes["info"], ensure_ascii=False)
        async with self._transaction() as conn:
            row = await _guarded_update(
                conn, "files", "*", FILE_MUTABLE, file_id, expected, new, changes, self._clock()
            )
        return FileRecord.from_row(row)

    async def add_files(self, files: Sequence[NewFile]) -> list[FileRecord]:
        """Record a batch of newly found files in status ``received``, in one transaction.

        A ``{id}`` (``places.PENDING_ID``) in a ``work_path`` is replaced by that file's new
        id; ids follow the order of ``files``.

        Returns:
            The records, in the order of ``files``.
        """
        if not files:
            return []
        now = self._clock()
        async with self._transaction() as conn:
            async with conn.execute(SELECT_SEQUENCE, ("files",)) as cursor:
                row = await cursor.fetchone()
            first = int(row[0] if row else 0) + 1
            await conn.executemany(
                INSERT_FILES_WITH_IDS,
                [
                    {
                        "id": first + i,
                        "name": f.name,
                        "inbox_path": f.inbox_path,
                        "work_path": f.work_path.replace(PENDING_ID, str(first + i), 1),
                        "route": f.route,
                        "size_bytes": f.size_bytes,
                        "now": now,
                    }
                    for i, f in enumerate(files)
                ],
            )
            async with conn.execute(SELECT_FILES_FROM, (first, first + len(files) - 1)) as cur:
                rows = list(await cur.fetchall())
        return [FileRecord.from_row(r) for r in rows]

    async def finish_files(
        self, items: Sequence[tuple[int, FileStatus, FileStatus, dict[str, Any]]]
    ) -> list[FileRecord]:
        """Move several files to their final status in one transaction (all or none).

        Args:
            items: ``(file id, expected status, new status, changes)``; changes are columns
                from ``FILE_MUTABLE`` (``info`` may be a dict).

        Raises:
            InvalidTransition: a file was not in its expected status (nothing changed).
        """
        now = self._clock()
        done: list[FileRecord] = []
        async with self._transaction() as conn:
            for file_id, expected, new, changes in items:
                values = dict(changes)
                if "info" in values and not isinstance(values["info"], str):
                    values["info"] = json.dumps(values["info"], ensure_ascii=False)
                row = await _guarded_update(
                    conn, "files", "*", FILE_MUTABLE, file_id, expected, new, values, now
                )
                done.append(FileRecord.from_row(row))
        return done

    async def enqueue_parts(
        self,
        file_id: int,
        parts: Sequence[NewPart],
        *,
        new_status: FileStatus = FileStatus.QUEUED,
        **changes: Any,
    ) -> list[int]:
        """Enqueue a prepared file's parts and move the file ``received`` -> ``new_status``.

        One transaction: either every part waits in the FIFO (for a pack) and the file is
        ``queued`` (or ``reporting`` when there are no parts), or nothing changed. Each part
        may leave at the latest ``send_by`` (``NewPart`` carries no time: the caller passes
        ``wait_s``, default 0).

        Args:
            changes: file columns from ``FILE_MUTABLE``; ``wait_s`` (seconds a part may wait
                for others to share its upload) is taken out of them.

        Returns:
            The part ids, in FIFO order.

        Raises:
            InvalidTransition: the file was not ``received``.
            sqlite3.IntegrityError: another file with the same sha256 and import_key is
                imported and this one is not forced (callers check ``imported_twin`` first;
                the index is the last guard).
        """
        wait_s = float(changes.pop("wait_s", 0.0))
        now = self._clock()
        if "info" in changes and not isinstance(changes["info"], str):
            changes["info"] = json.dumps(changes["info"], ensure_ascii=False)
        ids: list[int] = []
        async with self._transaction() as conn:
            await _guarded_update(
                conn,
                "files",
                "id",
                FILE_MUTABLE,
                file_id,
                FileStatus.RECEIVED,
                new_status,
                changes,
                now,
            )
            for seq, part in enumerate(parts, start=1):
                cursor = await conn.execute(
                    INSERT_PART, _part_params(file_id, seq, part, now, now + wait_s)
                )
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
                await cursor.close()
        return ids

    async def enqueue_files(self, files: Sequence[EnqueuedFile]) -> list[list[int]]:
        """Enqueue several prepared files at once: one transaction for the whole batch.

        Each file goes ``received`` -> its ``status`` with its figures, and its parts join
        the FIFO in the order of ``files``. Either all of it happens or nothing.

        Returns:
            Each file's part ids, in the order of ``files``.

        Raises:
            InvalidTransition: a file was not ``received`` (nothing was enqueued).
            sqlite3.IntegrityError: a file's sha256 is already imported with its import_key
                and it is not forced (nothing was enqueued; the caller checks first and falls
                back to one file at a time).
        """
        if not files:
            return []
        now = self._clock()
        async with self._transaction() as conn:
            cursor = await conn.executemany(
                ENQUEUE_FILE,
                [
                    {
                        "id": f.file_id,
                        "status": f.status.value,
                        "now": now,
                        "sha256": f.sha256,
                        "encoding": f.encoding,
                        "format": f.format,
                        "rows_total": f.rows_total,
                        "rows_rejected": f.rows_rejected,
                        "duplicates": f.duplicates,
                        "info": json.dumps(f.info, ensure_ascii=False),
                        "import_key": f.import_key,
                        "forced": int(f.forced),
                    }
                    for f in files
                ],
            )
            if cursor.rowcount != len(files):
                raise InvalidTransition("files", files[0].file_id, ("received",), None)
            async with conn.execute(SELECT_SEQUENCE, ("parts",)) as seq_cursor:
                row = await seq_cursor.fetchone()
            next_id = int(row[0] if row else 0) + 1
            params: list[tuple[Any, ...]] = []
            ids: list[list[int]] = []
            for f in files:
                mine = []
                for seq, part in enumerate(f.parts, start=1):
                    params.append(_part_params(f.file_id, seq, part, now, now + f.wait_s))
                    mine.append(next_id)
                    next_id += 1
                ids.append(mine)
            if params:
                await conn.executemany(INSERT_PART, params)
        return ids

    async def files_ready_for_report(self) -> list[FileRecord]:
        """Return ``queued`` files whose every upload is terminal (oldest first)."""
        return [FileRecord.from_row(r) for r in await self._fetchall(SELECT_FILES_READY)]

    async def start_reporting(self, file_ids: Sequence[int]) -> list[FileRecord]:
        """Move ``queued`` files to ``reporting`` in one transaction; return those moved.

        Files no longer ``queued`` are left as they are (and not returned).
        """
        if not file_ids:
            return []
        async with self._transaction() as conn, conn.execute(
            START_REPORTING, {"ids": json.dumps(list(file_ids)), "now": self._clock()}
        ) as cursor:
            rows = list(await cursor.fetchall())
        return sorted((FileRecord.from_row(r) for r in rows), key=lambda f: f.id)

    async def files_to_report(self) -> list[FileRecord]:
        """Return files whose results must be written (oldest first).

        These are files in ``reporting`` or a terminal status with no ``reported_at`` yet.
        """
        return [FileRecord.from_row(r) for r in await self._fetchall(SELECT_FILES_TO_REPORT)]

    # --- uploads -------------------------------------------------------------------------

    async def claim_next(self, now: float | None = None) -> UploadRecord | None:
        """Atomically claim the oldest ``queued`` upload whose ``not_before`` has passed.

        The claimed upload is ``submitting``; two concurrent claimers never get the same one.
        Returns None when nothing is ready.
        """
        params = {"now": self._clock() if now is None else now}
        async with self._transaction() as conn, conn.execute(CLAIM_NEXT_UPLOAD, params) as cur:
            row = await cur.fetchone()
        return UploadRecord.from_row(row) if row else None

    async def transition_upload(
        self,
        upload_id: int,
        expected: UploadStatus | Iterable[UploadStatus],
        new: UploadStatus,
        **changes: Any,
    ) -> UploadRecord:
        """Move an upload from one of ``expected`` to ``new``, setting ``changes`` atomically.

        ``new`` may equal the current status to only update columns (e.g. poll counters).

        Raises:
            InvalidTransition: the upload was not in an expected status.
            ValueError: a column not in ``UPLOAD_MUTABLE``.
        """
        if "options" in changes and not isinstance(changes["options"], str):
            changes["options"] = json.dumps(changes["options"], ensure_ascii=False)
        async with self._transaction() as conn:
            row = await _guarded_update(
                conn,
                "uploads",
                UPLOAD_COLUMNS,
                UPLOAD_MUTABLE,
                upload_id,
                expected,
                new,
                changes,
                self._clock(),
            )
        return UploadRecord.from_row(row)

    async def get_upload(self, upload_id: int) -> UploadRecord | None:
        """Return one upload, or None."""
        row = await self._fetchone(SELECT_UPLOAD, (upload_id,))
        return UploadRecord.from_row(row) if row else None

    async def submissions_of_file(self, file_id: int) -> dict[int, list[dict[str, Any]]]:
        """Return every create call of the uploads a file's parts ride in, by upload id.

        Each is ``{"batch_id": int | None, "outcome": "accepted" | "uncertain",
        "marketo_status": str | None, "at": epoch seconds}`` (rows written by triggers,
        ``migrations/0005_submissions_retention.sql``).
        """
        found: dict[int, list[dict[str, Any]]] = {}
        for row in await self._fetchall(SELECT_SUBMISSIONS_OF_FILE, (file_id,)):
            found.setdefault(row["upload_id"], []).append(
                {"batch_id": row["batch_id"], "outcome": row["outcome"],
                 "marketo_status": row["marketo_status"], "at": row["at"]}
            )
        return found

    async def form_upload(
        self,
        parts: Sequence[tuple[int, int]],
        *,
        path: str,
        size_bytes: int,
        rows: int,
        kind: str,
        options: dict[str, Any],
        status: UploadStatus = UploadStatus.SUBMITTING,
    ) -> UploadRecord:
        """Record a pack: a new upload carrying waiting parts, in one transaction.

        Args:
            parts: ``(part id, first row)`` in the upload's row order; each must be waiting.
            path: the file to send (a part's own file or a pack file).
            size_bytes: its size in bytes.
            rows: data rows in it.
            kind: the import endpoint of every part.
            options: the Marketo parameters of every part.
            status: ``submitting`` (claimed: the scheduler sends it now) or ``queued``.

        Raises:
            StoreError: a part was not waiting (nothing was recorded).
        """
        now = self._clock()
        async with self._transaction() as conn:
            async with conn.execute(
                INSERT_UPLOAD,
                {
                    "path": path,
                    "size_bytes": size_bytes,
                    "rows": rows,
                    "kind": kind,
                    "options": json.dumps(options),
                    "status": status.value,
                    "claimed_at": now if status is UploadStatus.SUBMITTING else None,
                    "now": now,
                },
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None
            linked = await conn.executemany(
                LINK_PART, [(row["id"], first, part_id) for part_id, first in parts]
            )
            if linked.rowcount != len(parts):
                raise StoreError(f"a part of upload {row['id']} was no longer waiting")
        return UploadRecord.from_row(row)

    async def part_source_rows(self, part_id: int) -> list[int]:
        """Return the source line number of each row of a part, in order."""
        row = await self._fetchone(SELECT_PART_SOURCE_ROWS, (part_id,))
        return unpack_rows(row[0]) if row else []

    async def parts_of_upload(self, upload_id: int) -> list[PartRecord]:
        """Return the parts riding in an upload, in the upload's row order."""
        rows = await self._fetchall(SELECT_PARTS_OF_UPLOAD, (upload_id,))
        return [PartRecord.from_row(r) for r in rows]

    async def parts_of_file(self, file_id: int) -> list[PartRecord]:
        """Return a file's parts by ``seq``."""
        rows = await self._fetchall(SELECT_PARTS_OF_FILE, (file_id,))
        return [PartRecord.from_row(r) for r in rows]

    async def uploads_of_file(self, file_id: int) -> list[UploadRecord]:
        """Return the uploads a file's parts ride in (each once), in the order of its parts.

        An upload may carry other files' parts too; a part still waiting for a pack has no
        upload yet (``parts_of_file`` lists every part).
        """
        rows = await self._fetchall(SELECT_UPLOADS_OF_FILE, (file_id,))
        return [UploadRecord.from_row(r) for r in rows]

    async def parts_of_files(self, file_ids: Sequence[int]) -> dict[int, list[PartRecord]]:
        """Return the parts of several files (one query), by file id, each by ``seq``."""
        if not file_ids:
            return {}
        rows = await self._fetchall(SELECT_PARTS_OF_FILES, {"ids": json.dumps(list(file_ids))})
        found: dict[int, list[PartRecord]] = {}
        for row in rows:
            part = PartRecord.from_row(row)
            found.setdefault(part.file_id, []).append(part)
        return found

    async def files_of_upload(self, upload_id: int) -> list[tuple[int, str, int, int]]:
        """Return ``(file id, file name, part seq, part rows)`` of an upload, in row order."""
        rows = await self._fetchall(SELECT_FILES_OF_UPLOAD, (upload_id,))
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def count_files_in_upload(self, upload_id: int) -> int:
        """Return how many files ride in an upload."""
        row = await self._fetchone(COUNT_FILES_IN_UPLOAD, (upload_id,))
        return int(row[0]) if row else 0

    async def source_rows_of_upload(self, upload_id: int) -> dict[int, list[int]]:
        """Return the source line numbers of every part of an upload, by part id."""
        rows = await self._fetchall(SELECT_SOURCE_ROWS_OF_UPLOAD, (upload_id,))
        return {r[0]: unpack_rows(r[1]) for r in rows}

    async def waiting_head(self) -> PartRecord | None:
        """Return the oldest part waiting for a pack (the FIFO head), or None."""
        row = await self._fetchone(SELECT_WAITING_HEAD)
        return PartRecord.from_row(row) if row else None

    async def waiting_group(
        self, pack_key: str, budget: int
    ) -> list[tuple[int, int, int, int, float | None]]:
        """Return the waiting parts of one pack key in FIFO order, as far as they could fit.

        Args:
            pack_key: the key.
            budget: bytes of rows (headers left out) one upload can hold.

        Returns:
            ``(id, rows, size_bytes, header_bytes, send_by)`` of every part whose rows start
            within ``budget`` bytes of the group's first, i.e. the parts that could fit plus
            the first that would not.
        """
        rows = await self._fetchall(SELECT_WAITING_GROUP, {"key": pack_key, "budget": budget})
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def waiting_upto(self, pack_key: str, last_id: int) -> list[PartRecord]:
        """Return the waiting parts of a key in FIFO order, up to and including ``last_id``."""
        rows = await self._fetchall(SELECT_WAITING_UPTO, (pack_key, last_id))
        return [PartRecord.from_row(r) for r in rows]

    async def waiting_group_totals(self, pack_key: str) -> tuple[int, int, float | None]:
        """Return ``(parts, rows, earliest send_by)`` waiting with this pack key."""
        row = await self._fetchone(SELECT_WAITING_GROUP_TOTALS, (pack_key,))
        if row is None:
            return 0, 0, None
        return int(row[0]), int(row[1]), row[2]

    async def waiting_summary(self) -> dict[str, Any]:
        """Return what waits for a pack: ``files``, ``parts``, ``rows``, ``oldest_queued_at``."""
        row = await self._fetchone(SELECT_WAITING_SUMMARY)
        if row is None:
            return {"files": 0, "parts": 0, "rows": 0, "oldest_queued_at": None}
        return {"files": row[0], "parts": row[1], "rows": row[2], "oldest_queued_at": row[3]}

    async def detach_parts(
        self,
        parts: Sequence[tuple[int, int, str | None]],
        options: dict[str, Any],
        file: tuple[int, FileStatus, dict[str, Any]] | None = None,
    ) -> None:
        """Take parts out of their (dead) upload so that they wait for a new pack.

        One transaction; the parts are due at once (``send_by`` now).

        Args:
            parts: ``(part id, its current upload id, new pack key)``.
            options: the Marketo parameters the parts are sent with from now on.
            file: ``(file id, expected status, changes)``: the file goes back to ``queued``
                in the same transaction (changes are ``FILE_MUTABLE`` columns; ``info`` may
                be a dict).

        Raises:
            StoreError: a part was no longer in that upload (nothing changed).
            InvalidTransition: the file was not in its expected status (nothing changed).
            sqlite3.IntegrityError: the file's bytes are imported as another file with the
                same import key (nothing changed).
        """
        now = self._clock()
        text = json.dumps(options)
        async with self._transaction() as conn:
            if file is not None:
                file_id, expected, changes = file
                values = dict(changes)
                if "info" in values and not isinstance(values["info"], str):
                    values["info"] = json.dumps(values["info"], ensure_ascii=False)
                await _guarded_update(
                    conn, "files", "id", FILE_MUTABLE, file_id, expected, FileStatus.QUEUED,
                    values, now,
                )
            for part_id, upload_id, key in parts:
                cursor = await conn.execute(
                    DETACH_PART,
                    {"id": part_id, "upload_id": upload_id, "options": text, "pack_key": key,
                     "now": now},
                )
                if cursor.rowcount != 1:
                    raise StoreError(f"part {part_id} is no longer in upload {upload_id}")
                await cursor.close()

    async def uploads_to_split(self) -> list[UploadRecord]:
        """Return complete uploads whose results were not split into their parts yet."""
        rows = await self._fetchall(SELECT_UPLOADS_TO_SPLIT)
        return [UploadRecord.from_row(r) for r in rows]

    async def record_split(
        self, upload_id: int, counts: Sequence[tuple[int, int, int, int]]
    ) -> bool:
        """Store each part's own counts in a batch and mark the batch split, atomically.

        Args:
            counts: ``(part id, processed, failed, warned)`` for every part of the upload.

        Returns:
            False when the upload was already split or is not complete (nothing changed).
        """
        async with self._transaction() as conn:
            cursor = await conn.execute(
                SET_UPLOAD_SPLIT, {"id": upload_id, "now": self._clock()}
            )
            if cursor.rowcount != 1:
                return False
            await conn.executemany(
                SET_PART_COUNTS,
                [(done, failed, warned, part_id, upload_id)
                 for part_id, done, failed, warned in counts],
            )
        return True

    async def unreported_in_upload(self, upload_id: int) -> int:
        """Return how many parts of the upload belong to files not reported yet."""
        row = await self._fetchone(COUNT_UNREPORTED_IN_UPLOAD, (upload_id,))
        return int(row[0]) if row else 0

    async def upload_paths(self) -> set[str]:
        """Return the path of every upload ever recorded (to find orphan pack files)."""
        return {r[0] for r in await self._fetchall(SELECT_UPLOAD_PATHS)}

    async def uploads_in(self, status: UploadStatus) -> list[UploadRecord]:
        """Return uploads in ``status`` in FIFO order."""
        rows = await self._fetchall(SELECT_UPLOADS_BY_STATUS, (status.value,))
        return [UploadRecord.from_row(r) for r in rows]

    async def at_marketo(self) -> list[UploadRecord]:
        """Return uploads Marketo holds (``submitted``/``importing``), in submission order."""
        return [UploadRecord.from_row(r) for r in await self._fetchall(SELECT_AT_MARKETO)]

    async def due_for_poll(self, now: float, limit: int = 100) -> list[UploadRecord]:
        """Return uploads at Marketo whose ``next_poll_at`` has come, soonest first."""
        rows = await self._fetchall(SELECT_DUE_FOR_POLL, (now, limit))
        return [UploadRecord.from_row(r) for r in rows]

    async def next_poll_at(self) -> float | None:
        """Return the earliest ``next_poll_at`` of uploads at Marketo, or None."""
        row = await self._fetchone(SELECT_NEXT_POLL_AT)
        return float(row[0]) if row and row[0] is not None else None

    async def next_queued_at(self) -> float | None:
        """Return the earliest time a ``queued`` upload may be claimed (0 = now), or None."""
        row = await self._fetchone(SELECT_NEXT_QUEUED_AT)
        return float(row[0]) if row and row[0] is not None else None

    async def count_in_flight(self) -> int:
        """Return how many uploads are ``submitting``, ``submitted`` or ``importing``."""
        row = await self._fetchone(COUNT_UPLOADS_IN)
        return int(row[0]) if row else 0

    async def reap_in_flight(self) -> list[UploadRecord]:
        """Requeue every ``submitting`` upload (crash mid-submit); call once at start-up.

        Marketo has no idempotency key, so such an upload may or may not have created a job;
        it is marked ``uncertain`` and sent again (the import is an upsert). Uploads with a
        ``batchId`` are left to resume polling.

        Returns:
            The uploads that were requeued.
        """
        reaped: list[UploadRecord] = []
        for upload in await self.uploads_in(UploadStatus.SUBMITTING):
            reaped.append(
                await self.transition_upload(
                    upload.id,
                    UploadStatus.SUBMITTING,
                    UploadStatus.QUEUED,
                    uncertain=upload.uncertain + 1,
                    not_before=None,
                )
            )
        return reaped

    # --- accounting and reporting --------------------------------------------------------

    async def counts_by_status(self) -> dict[str, dict[str, int]]:
        """Return ``{"files": {status: n}, "uploads": {status: n}}`` with every status present."""
        files = {s.value: 0 for s in FileStatus}
        uploads = {s.value: 0 for s in UploadStatus}
        for row in await self._fetchall(COUNT_FILES_BY_STATUS):
            files[row[0]] = row[1]
        for row in await self._fetchall(COUNT_UPLOADS_BY_STATUS):
            uploads[row[0]] = row[1]
        return {"files": files, "uploads": uploads}

    async def history(self, entity: str, entity_id: int) -> list[tuple[str | None, str, float]]:
        """Return ``(from_status, to_status, at)`` of a file or upload, oldest first."""
        rows = await self._fetchall(SELECT_HISTORY, (entity, entity_id))
        return [(r[0], r[1], r[2]) for r in rows]

    async def count_calls(
        self, day: str, endpoint: str, calls: int = 1, errors: int = 0
    ) -> None:
        """Add ``calls`` (and ``errors``) to the day's usage of ``endpoint``.

        Args:
            day: ``YYYY-MM-DD`` in America/Chicago (Marketo's quota day).
        """
        async with self._transaction() as conn:
            await conn.execute(UPSERT_USAGE, (day, endpoint, calls, errors))

    async def calls_on(self, day: str) -> int:
        """Return the calls counted on ``day`` over all endpoints."""
        row = await self._fetchone(SELECT_CALLS_ON_DAY, (day,))
        return int(row[0]) if row else 0

    async def begin_call(self, day: str, endpoint: str, sent_at: float) -> int:
        """Count one call of ``endpoint`` on ``day`` and record it as sent; return its id.

        Both happen in one transaction, before the request leaves: a process that dies
        during the call leaves it counted and in flight (see `restore_window`).

        Args:
            day: ``YYYY-MM-DD`` in America/Chicago (Marketo's quota day).
            endpoint: the usage key, e.g. ``import_status``.
            sent_at: epoch seconds.
        """
        async with self._transaction() as conn:
            await conn.execute(UPSERT_USAGE, (day, endpoint, 1, 0))
            async with conn.execute(INSERT_API_CALL, (endpoint, day, sent_at)) as cursor:
                row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def end_call(
        self,
        call_id: int,
        answered_at: float,
        *,
        refund: tuple[str, str] | None = None,
        forget_before: float | None = None,
    ) -> None:
        """Mark a call from `begin_call` as over, in one transaction.

        Args:
            call_id: the id `begin_call` returned.
            answered_at: epoch seconds when the call was over.
            refund: ``(day, endpoint)`` the call was counted on, when it got no HTTP answer
                (connection refused, timeout, reset): Marketo did not count it, so it is taken
                back off that day's usage.
            forget_before: also delete calls answered at or before this time (epoch seconds;
                they have left the rate window).
        """
        async with self._transaction() as conn:
            await conn.execute(ANSWER_API_CALL, (answered_at, call_id))
            if refund is not None:
                await conn.execute(UPSERT_USAGE, (refund[0], refund[1], -1, 0))
            if forget_before is not None:
                await conn.execute(FORGET_API_CALLS, (forget_before,))

    async def restore_window(self, now: float, window_s: float) -> list[float]:
        """Return when the calls of earlier processes that are still in the window were over.

        In one transaction: calls left in flight (their process died) are stamped ``now``
        (they count as made and answered now), calls over before ``now - window_s`` are
        deleted, and the ``answered_at`` of the others is returned, oldest first.

        Args:
            now: epoch seconds.
            window_s: the rate window, seconds.
        """
        async with self._transaction() as conn:
            await conn.execute(SETTLE_API_CALLS, (now,))
            await conn.execute(FORGET_API_CALLS, (now - window_s,))
            async with conn.execute(SELECT_API_CALLS_ANSWERED) as cursor:
                rows = await cursor.fetchall()
        return [float(r[0]) for r in rows]

    async def usage_on(self, day: str) -> dict[str, dict[str, int]]:
        """Return ``{endpoint: {"calls": n, "errors": n}}`` for ``day``."""
        rows = await self._fetchall(SELECT_USAGE_ON_DAY, (day,))
        return {r[0]: {"calls": r[1], "errors": r[2]} for r in rows}

    async def record_error(
        self,
        message: str,
        *,
        code: str | None = None,
        file_id: int | None = None,
        upload_id: int | None = None,
    ) -> None:
        """Append an error for ``leadflow status`` (message must already be redacted)."""
        async with self._transaction() as conn:
            await conn.execute(INSERT_ERROR, (self._clock(), file_id, upload_id, code, message))

    async def files_for_status(
        self, recent: int = 10, open_limit: int = 500
    ) -> list[dict[str, Any]]:
        """Return files for ``leadflow status``, oldest first, as dicts.

        Every file not finished (``received``/``queued``/``reporting``, at most
        ``open_limit``) and the ``recent`` newest finished ones. Keys: the ``files`` columns
        ``id, name, status, route, rows_total, rows_rejected, error, received_at,
        finished_at, reported_at`` and ``rows_imported``/``rows_failed`` summed over the
        file's uploads (None without uploads).
        """
        rows = await self._fetchall(SELECT_FILES_FOR_STATUS, (open_limit, recent))
        return [dict(r) for r in rows]

    async def record_daemon_routes(self, routes: Sequence[Mapping[str, Any]], pid: int) -> None:
        """Record the routes the running daemon works with (replacing what was recorded).

        Args:
            routes: each route's settings as a JSON-ready dict, in the daemon's order.
            pid: the daemon's process id (readers compare it with the lock holder's).
        """
        payload = json.dumps([dict(r) for r in routes], ensure_ascii=False)
        async with self._transaction() as conn:
            await conn.execute(UPSERT_DAEMON_ROUTES, (pid, payload, self._clock()))

    async def daemon_routes(self) -> tuple[int, list[dict[str, Any]]] | None:
        """Return ``(pid, routes)`` as the last daemon recorded them, or None if none did."""
        row = await self._fetchone(SELECT_DAEMON_ROUTES)
        if row is None:
            return None
        return int(row["pid"]), list(json.loads(row["routes"]))

    async def files_to_expire(self, what: str, cutoff: float, limit: int) -> list[FileRecord]:
        """Return finished files whose leftover ``what`` retention may delete now.

        Args:
            what: ``archive``, ``rejected``, ``results`` or ``work``.
            cutoff: epoch seconds; only files reported at or before it.
            limit: at most this many, oldest report first.

        Returns:
            Files in a terminal status with ``reported_at`` set (never an open file, never
            one not yet reported) whose ``what`` was not recorded since their last report.
        """
        params = {"what": what, "cutoff": cutoff, "limit": limit}
        return [FileRecord.from_row(r) for r in await self._fetchall(SELECT_FILES_TO_EXPIRE,
                                                                     params)]

    async def record_expiry(
        self, file_id: int, what: str, path: str, *, deleted: bool, at: float
    ) -> None:
        """Record that retention dealt with a file's ``what`` (``deleted``: False if gone)."""
        async with self._transaction() as conn:
            await conn.execute(UPSERT_RETENTION_DELETION,
                               (file_id, what, path, 1 if deleted else 0, at))

    async def expiry_counts(self, since: float) -> dict[str, int]:
        """Return how many leftovers retention deleted since ``since``, by kind."""
        return {r[0]: r[1] for r in await self._fetchall(SELECT_RETENTION_COUNTS, (since,))}

    async def recent_errors(self, limit: int = 10) -> list[dict[str, Any]]:
        """Return the newest errors first: ``at``, ``file_id``, ``upload_id``, ``code``, ``message``."""
        rows = await self._fetchall(SELECT_RECENT_ERRORS, (limit,))
        return [dict(r) for r in rows]


def _part_params(
    file_id: int, seq: int, part: NewPart, now: float, send_by: float
) -> tuple[Any, ...]:
    """The ``insert_part`` parameters of one part."""
    return (
        file_id,
        seq,
        part.path,
        part.size_bytes,
        part.header_bytes,
        len(part.source_rows),
        pack_rows(part.source_rows),
        part.kind,
        json.dumps(part.options),
        part.pack_key,
        now,
        send_by,
    )


async def _guarded_update(
    conn: aiosqlite.Connection,
    table: str,
    returning: str,
    mutable: frozenset[str],
    row_id: int,
    expected: Any,
    new: Any,
    changes: dict[str, Any],
    now: float,
) -> aiosqlite.Row:
    """Run one compare-and-set UPDATE inside the caller's transaction; return the new row."""
    unknown = set(changes) - mutable
    if unknown:
        raise ValueError(f"{table}: cannot set {sorted(unknown)}")
    wanted = (expected,) if isinstance(expected, str) else tuple(expected)
    columns = sorted(changes)
    assignments = "".join(f", {name} = :{name}" for name in columns)
    marks = ", ".join(f":s{i}" for i in range(len(wanted)))
    sql = (
        f"UPDATE {table} SET status = :new, updated_at = :now{assignments}"
        f" WHERE id = :id AND status IN ({marks}) RETURNING {returning}"
    )
    params: dict[str, Any] = {"new": str(new), "now": now, "id": row_id, **changes}
    params.update({f"s{i}": str(s) for i, s in enumerate(wanted)})
    try:
        async with conn.execute(sql, params) as cursor:
            row = await cursor.fetchone()
    except sqlite3.IntegrityError as exc:
        if "transition not allowed" not in str(exc):
            raise
        async with conn.execute(SELECT_STATUS_OF[table], (row_id,)) as cursor:
            found = await cursor.fetchone()
        raise InvalidTransition(
            table, row_id, tuple(str(s) for s in wanted), found[0] if found else None
        ) from exc
    if row is None:
        async with conn.execute(SELECT_STATUS_OF[table], (row_id,)) as cursor:
            found = await cursor.fetchone()
        raise InvalidTransition(
            table, row_id, tuple(str(s) for s in wanted), found[0] if found else None
        )
    return row
