"""The store: the FIFO of parts and uploads and all state. The only module that runs SQL.

``Store`` holds the logic once for both engines (``orchestrator.store.sqlite``, the default,
and ``orchestrator.store.postgresql``); it runs the engine's named queries (``queries.sql``
or ``queries.postgresql.sql``) through a ``database.Database``. Every write that must be
atomic is one engine transaction. Every status change is one guarded ``UPDATE ... WHERE id=?
AND status IN (...)``; zero rows raises ``InvalidTransition``. A trigger refuses transitions
not in ``allowed_transitions`` and another writes ``status_history`` (on both engines).
Times are epoch seconds from the injected ``clock``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

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
from orchestrator.settings import Settings
from orchestrator.store.database import Database, Row, TransitionRefused, Tx
from orchestrator.store.postgresql import PostgresDatabase, redact_url
from orchestrator.store.queries import load_queries
from orchestrator.store.sqlite import SqliteDatabase
from orchestrator.timing import Clock

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

#: The named queries of each engine (same names in both files).
QUERIES = {
    dialect: load_queries(UPLOAD_COLUMNS, PART_COLUMNS, dialect)
    for dialect in ("sqlite", "postgresql")
}

#: URL schemes that select the PostgreSQL engine.
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(target: Path | str) -> bool:
    """True when ``target`` is a PostgreSQL URL rather than a SQLite file path."""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def store_target(settings: Settings) -> Path | str:
    """What ``Store.open`` opens for these settings: ``store.url`` or ``paths.database``."""
    return settings.store.url or settings.paths.database


def describe_target(target: Path | str) -> str:
    """The target for messages: the file, or the URL without its password."""
    return redact_url(str(target)) if is_postgres_url(target) else str(target)


#: The name of the one Marketo instance of a simple setup (``[marketo] name``'s default); rows
#: written before schema version 7 belong to it.
DEFAULT_INSTANCE = "default"

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

    Every method is a coroutine; writes are engine transactions (``BEGIN IMMEDIATE`` on
    SQLite, ``READ COMMITTED`` with row locks on PostgreSQL).
    """

    def __init__(
        self, db: Database, clock: Clock = time.time, instance: str = DEFAULT_INSTANCE
    ) -> None:
        self._db = db
        self._q = db.queries
        self._clock = clock
        self._instance = instance
        self._mine = {"instance": instance}

    @property
    def instance(self) -> str:
        """The Marketo instance this view of the store works for (see ``for_instance``)."""
        return self._instance

    def for_instance(self, name: str) -> Store:
        """This store, seen by the parts that work for one Marketo instance.

        The same database and clock; the FIFO, the uploads at Marketo, the files to report
        and the API call accounting (20-s window, daily usage) are those of ``name`` only.
        Files, parts and uploads of other instances are not seen by the per-instance
        queries; global ones (counts, history, ``get_file``, errors) see everything.
        """
        return Store(self._db, self._clock, name)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        target: Path | str,
        *,
        clock: Clock = time.time,
        migrate_schema: bool = True,
    ) -> AsyncIterator[Store]:
        """Open (and migrate) the database at ``target``.

        Args:
            target: a SQLite file (its folder is created) or a ``postgresql://`` URL.
            clock: returns epoch seconds; injected by tests.
            migrate_schema: apply pending migrations.

        Raises:
            SchemaTooNew: the database is newer than this code.
            StoreUnavailable: the PostgreSQL server cannot be reached.
            StoreError: the file is not a database, or cannot be opened.
        """
        if is_postgres_url(target):
            async with PostgresDatabase.open(
                str(target), QUERIES["postgresql"], migrate_schema=migrate_schema
            ) as pg:
                yield cls(pg, clock)
            return
        async with SqliteDatabase.open(
            Path(target), QUERIES["sqlite"], migrate_schema=migrate_schema
        ) as lite:
            yield cls(lite, clock)

    @property
    def clock(self) -> Clock:
        """The clock the store stamps rows with."""
        return self._clock

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._db.dialect

    @property
    def database(self) -> Database:
        """The engine under the store (for cluster coordination in the same database)."""
        return self._db

    async def _fetchall(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Row]:
        async with self._db.reading() as tx:
            return await tx.fetchall(sql, params)

    async def _fetchone(
        self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> Row | None:
        async with self._db.reading() as tx:
            return await tx.fetchone(sql, params)

    # --- files ---------------------------------------------------------------------------

    async def add_file(
        self,
        *,
        name: str,
        inbox_path: str,
        work_path: str,
        route: str | None,
        size_bytes: int | None,
        instance: str | None = None,
        node_id: str | None = None,
    ) -> FileRecord:
        """Record a newly found file in status ``received``; returns it with its id.

        A ``{id}`` (``places.PENDING_ID``) in ``work_path`` is replaced by the new id in the
        same transaction (intake's ``work/{id}/source/<name>``).

        Args:
            instance: the Marketo instance the file goes to (default: this store's).
            node_id: the cluster node that claimed it (None without a cluster).
        """
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                self._q["insert_file"],
                {
                    "name": name,
                    "inbox_path": inbox_path,
                    "work_path": work_path,
                    "route": route,
                    "size_bytes": size_bytes,
                    "now": self._clock(),
                    "instance": instance or self._instance,
                    "node_id": node_id,
                },
            )
            assert row is not None
            if PENDING_ID in work_path:
                filled = work_path.replace(PENDING_ID, str(row["id"]), 1)
                row = await tx.fetchone(self._q["set_file_work_path"], (filled, row["id"]))
                assert row is not None
        return FileRecord.from_row(row)

    async def get_file(self, file_id: int) -> FileRecord | None:
        """Return one file, or None."""
        row = await self._fetchone(self._q["select_file"], (file_id,))
        return FileRecord.from_row(row) if row else None

    async def file_by_work_path(self, work_path: str) -> FileRecord | None:
        """Return the file claimed to ``work_path``, or None."""
        row = await self._fetchone(self._q["select_file_by_work_path"], (work_path,))
        return FileRecord.from_row(row) if row else None

    async def files_in(self, status: FileStatus) -> list[FileRecord]:
        """Return files in ``status`` in id order."""
        return [FileRecord.from_row(r) for r in await self._fetchall(self._q["select_files_by_status"],
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
            self._q["select_imported_twin"], {"sha256": sha256, "import_key": import_key}
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
            self._q["select_imported_twins"], {"keys": json.dumps([list(k) for k in wanted])}
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
        async with self._db.transaction() as tx:
            row = await _guarded_update(
                tx, "files", "*", FILE_MUTABLE, file_id, expected, new, changes, self._clock(),
                self._q,
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
        async with self._db.transaction() as tx:
            ids = await _reserve_ids(tx, self._q, "files", len(files))
            await tx.executemany(
                self._q["insert_files_with_ids"],
                [
                    {
                        "id": new_id,
                        "name": f.name,
                        "inbox_path": f.inbox_path,
                        "work_path": f.work_path.replace(PENDING_ID, str(new_id), 1),
                        "route": f.route,
                        "size_bytes": f.size_bytes,
                        "now": now,
                        "instance": f.instance or self._instance,
                        "node_id": f.node_id,
                    }
                    for new_id, f in zip(ids, files, strict=True)
                ],
            )
            rows = await tx.fetchall(
                self._q["select_files_from"], {"first": ids[0], "last": ids[-1]}
            )
        mine = set(ids)
        return [FileRecord.from_row(r) for r in rows if r["id"] in mine]

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
        async with self._db.transaction() as tx:
            for file_id, expected, new, changes in items:
                values = dict(changes)
                if "info" in values and not isinstance(values["info"], str):
                    values["info"] = json.dumps(values["info"], ensure_ascii=False)
                row = await _guarded_update(
                    tx, "files", "*", FILE_MUTABLE, file_id, expected, new, values, now,
                    self._q,
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
        async with self._db.transaction() as tx:
            await _guarded_update(
                tx,
                "files",
                "id",
                FILE_MUTABLE,
                file_id,
                FileStatus.RECEIVED,
                new_status,
                changes,
                now,
                self._q,
            )
            ids = await _reserve_ids(tx, self._q, "parts", len(parts))
            instance = (await _file_instances(tx, self._q, [file_id]))[file_id]
            await tx.executemany(
                self._q["insert_part"],
                [
                    _part_params(part_id, file_id, seq, part, now, now + wait_s, instance)
                    for part_id, (seq, part) in zip(ids, enumerate(parts, start=1), strict=True)
                ],
            )
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
        async with self._db.transaction() as tx:
            changed = await tx.executemany(
                self._q["enqueue_file"],
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
            if changed != len(files):
                raise InvalidTransition("files", files[0].file_id, ("received",), None)
            reserved = iter(
                await _reserve_ids(tx, self._q, "parts", sum(len(f.parts) for f in files))
            )
            params: list[tuple[Any, ...]] = []
            ids: list[list[int]] = []
            instances = await _file_instances(tx, self._q, [f.file_id for f in files])
            for f in files:
                mine = []
                for seq, part in enumerate(f.parts, start=1):
                    part_id = next(reserved)
                    params.append(_part_params(part_id, f.file_id, seq, part, now,
                                               now + f.wait_s, instances[f.file_id]))
                    mine.append(part_id)
                ids.append(mine)
            if params:
                await tx.executemany(self._q["insert_part"], params)
        return ids

    async def files_ready_for_report(self) -> list[FileRecord]:
        """Return ``queued`` files whose every upload is terminal (oldest first)."""
        return [FileRecord.from_row(r) for r in await self._fetchall(self._q["select_files_ready"],
                                                                     self._mine)]

    async def start_reporting(self, file_ids: Sequence[int]) -> list[FileRecord]:
        """Move ``queued`` files to ``reporting`` in one transaction; return those moved.

        Files no longer ``queued`` are left as they are (and not returned).
        """
        if not file_ids:
            return []
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(
                self._q["start_reporting"],
                {"ids": json.dumps(list(file_ids)), "now": self._clock()},
            )
        return sorted((FileRecord.from_row(r) for r in rows), key=lambda f: f.id)

    async def files_to_report(self) -> list[FileRecord]:
        """Return files whose results must be written (oldest first).

        These are files in ``reporting`` or a terminal status with no ``reported_at`` yet.
        """
        return [FileRecord.from_row(r) for r in await self._fetchall(self._q["select_files_to_report"],
                                                                     self._mine)]

    # --- uploads -------------------------------------------------------------------------

    async def claim_next(self, now: float | None = None) -> UploadRecord | None:
        """Atomically claim the oldest ``queued`` upload whose ``not_before`` has passed.

        The claimed upload is ``submitting``; two concurrent claimers never get the same one.
        Returns None when nothing is ready.
        """
        params = {"now": self._clock() if now is None else now, "instance": self._instance}
        async with self._db.transaction() as tx:
            row = await tx.fetchone(self._q["claim_next_upload"], params)
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
        async with self._db.transaction() as tx:
            row = await _guarded_update(
                tx,
                "uploads",
                UPLOAD_COLUMNS,
                UPLOAD_MUTABLE,
                upload_id,
                expected,
                new,
                changes,
                self._clock(),
                self._q,
            )
        return UploadRecord.from_row(row)

    async def get_upload(self, upload_id: int) -> UploadRecord | None:
        """Return one upload, or None."""
        row = await self._fetchone(self._q["select_upload"], (upload_id,))
        return UploadRecord.from_row(row) if row else None

    async def submissions_of_file(self, file_id: int) -> dict[int, list[dict[str, Any]]]:
        """Return every create call of the uploads a file's parts ride in, by upload id.

        Each is ``{"batch_id": int | None, "outcome": "accepted" | "uncertain",
        "marketo_status": str | None, "at": epoch seconds}`` (rows written by triggers,
        ``migrations/0005_submissions_retention.sql``).
        """
        found: dict[int, list[dict[str, Any]]] = {}
        for row in await self._fetchall(self._q["select_submissions_of_file"], (file_id,)):
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
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                self._q["insert_upload"],
                {
                    "path": path,
                    "size_bytes": size_bytes,
                    "rows": rows,
                    "kind": kind,
                    "options": json.dumps(options),
                    "status": status.value,
                    "instance": self._instance,
                    "claimed_at": now if status is UploadStatus.SUBMITTING else None,
                    "now": now,
                },
            )
            assert row is not None
            linked = await tx.executemany(
                self._q["link_part"], [(row["id"], first, part_id) for part_id, first in parts]
            )
            if linked != len(parts):
                raise StoreError(f"a part of upload {row['id']} was no longer waiting")
        return UploadRecord.from_row(row)

    async def part_source_rows(self, part_id: int) -> list[int]:
        """Return the source line number of each row of a part, in order."""
        row = await self._fetchone(self._q["select_part_source_rows"], (part_id,))
        return unpack_rows(row[0]) if row else []

    async def parts_of_upload(self, upload_id: int) -> list[PartRecord]:
        """Return the parts riding in an upload, in the upload's row order."""
        rows = await self._fetchall(self._q["select_parts_of_upload"], (upload_id,))
        return [PartRecord.from_row(r) for r in rows]

    async def parts_of_file(self, file_id: int) -> list[PartRecord]:
        """Return a file's parts by ``seq``."""
        rows = await self._fetchall(self._q["select_parts_of_file"], (file_id,))
        return [PartRecord.from_row(r) for r in rows]

    async def uploads_of_file(self, file_id: int) -> list[UploadRecord]:
        """Return the uploads a file's parts ride in (each once), in the order of its parts.

        An upload may carry other files' parts too; a part still waiting for a pack has no
        upload yet (``parts_of_file`` lists every part).
        """
        rows = await self._fetchall(self._q["select_uploads_of_file"], (file_id,))
        return [UploadRecord.from_row(r) for r in rows]

    async def parts_of_files(self, file_ids: Sequence[int]) -> dict[int, list[PartRecord]]:
        """Return the parts of several files (one query), by file id, each by ``seq``."""
        if not file_ids:
            return {}
        rows = await self._fetchall(
            self._q["select_parts_of_files"], {"ids": json.dumps(list(file_ids))}
        )
        found: dict[int, list[PartRecord]] = {}
        for row in rows:
            part = PartRecord.from_row(row)
            found.setdefault(part.file_id, []).append(part)
        return found

    async def files_of_upload(self, upload_id: int) -> list[tuple[int, str, int, int]]:
        """Return ``(file id, file name, part seq, part rows)`` of an upload, in row order."""
        rows = await self._fetchall(self._q["select_files_of_upload"], (upload_id,))
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def count_files_in_upload(self, upload_id: int) -> int:
        """Return how many files ride in an upload."""
        row = await self._fetchone(self._q["count_files_in_upload"], (upload_id,))
        return int(row[0]) if row else 0

    async def source_rows_of_upload(self, upload_id: int) -> dict[int, list[int]]:
        """Return the source line numbers of every part of an upload, by part id."""
        rows = await self._fetchall(self._q["select_source_rows_of_upload"], (upload_id,))
        return {r[0]: unpack_rows(r[1]) for r in rows}

    async def waiting_head(self) -> PartRecord | None:
        """Return the oldest part waiting for a pack (the FIFO head), or None."""
        row = await self._fetchone(self._q["select_waiting_head"], self._mine)
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
        rows = await self._fetchall(self._q["select_waiting_group"], {"key": pack_key, "budget": budget, "instance": self._instance})
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def waiting_upto(self, pack_key: str, last_id: int) -> list[PartRecord]:
        """Return the waiting parts of a key in FIFO order, up to and including ``last_id``."""
        rows = await self._fetchall(
            self._q["select_waiting_upto"],
            {"key": pack_key, "last": last_id, "instance": self._instance},
        )
        return [PartRecord.from_row(r) for r in rows]

    async def waiting_group_totals(self, pack_key: str) -> tuple[int, int, float | None]:
        """Return ``(parts, rows, earliest send_by)`` waiting with this pack key."""
        row = await self._fetchone(
            self._q["select_waiting_group_totals"], {"key": pack_key, "instance": self._instance}
        )
        if row is None:
            return 0, 0, None
        return int(row[0]), int(row[1]), row[2]

    async def waiting_summary(self) -> dict[str, Any]:
        """Return what waits for a pack: ``files``, ``parts``, ``rows``, ``oldest_queued_at``."""
        row = await self._fetchone(self._q["select_waiting_summary"], self._mine)
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
        async with self._db.transaction() as tx:
            if file is not None:
                file_id, expected, changes = file
                values = dict(changes)
                if "info" in values and not isinstance(values["info"], str):
                    values["info"] = json.dumps(values["info"], ensure_ascii=False)
                await _guarded_update(
                    tx, "files", "id", FILE_MUTABLE, file_id, expected, FileStatus.QUEUED,
                    values, now, self._q,
                )
            for part_id, upload_id, key in parts:
                changed = await tx.execute(
                    self._q["detach_part"],
                    {"id": part_id, "upload_id": upload_id, "options": text, "pack_key": key,
                     "now": now},
                )
                if changed != 1:
                    raise StoreError(f"part {part_id} is no longer in upload {upload_id}")

    async def uploads_to_split(self) -> list[UploadRecord]:
        """Return complete uploads whose results were not split into their parts yet."""
        rows = await self._fetchall(self._q["select_uploads_to_split"], self._mine)
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
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                self._q["set_upload_split"], {"id": upload_id, "now": self._clock()}
            )
            if changed != 1:
                return False
            await tx.executemany(
                self._q["set_part_counts"],
                [(done, failed, warned, part_id, upload_id)
                 for part_id, done, failed, warned in counts],
            )
        return True

    async def unreported_in_upload(self, upload_id: int) -> int:
        """Return how many parts of the upload belong to files not reported yet."""
        row = await self._fetchone(self._q["count_unreported_in_upload"], (upload_id,))
        return int(row[0]) if row else 0

    async def upload_paths(self) -> set[str]:
        """Return the path of every upload ever recorded (to find orphan pack files)."""
        return {r[0] for r in await self._fetchall(self._q["select_upload_paths"])}

    async def upload_by_path(self, path: str) -> UploadRecord | None:
        """Return the (newest) upload that sends the file at ``path``, or None."""
        row = await self._fetchone(self._q["select_upload_by_path"], (path,))
        return UploadRecord.from_row(row) if row else None

    async def uploads_in(self, status: UploadStatus) -> list[UploadRecord]:
        """Return uploads in ``status`` in FIFO order."""
        rows = await self._fetchall(
            self._q["select_uploads_by_status"], {"status": status.value, "instance": self._instance}
        )
        return [UploadRecord.from_row(r) for r in rows]

    async def at_marketo(self) -> list[UploadRecord]:
        """Return uploads Marketo holds (``submitted``/``importing``), in submission order."""
        return [UploadRecord.from_row(r) for r in await self._fetchall(self._q["select_at_marketo"],
                                                                       self._mine)]

    async def due_for_poll(self, now: float, limit: int = 100) -> list[UploadRecord]:
        """Return uploads at Marketo whose ``next_poll_at`` has come, soonest first."""
        rows = await self._fetchall(
            self._q["select_due_for_poll"], {"now": now, "limit": limit, "instance": self._instance}
        )
        return [UploadRecord.from_row(r) for r in rows]

    async def next_poll_at(self) -> float | None:
        """Return the earliest ``next_poll_at`` of uploads at Marketo, or None."""
        row = await self._fetchone(self._q["select_next_poll_at"], self._mine)
        return float(row[0]) if row and row[0] is not None else None

    async def next_queued_at(self) -> float | None:
        """Return the earliest time a ``queued`` upload may be claimed (0 = now), or None."""
        row = await self._fetchone(self._q["select_next_queued_at"], self._mine)
        return float(row[0]) if row and row[0] is not None else None

    async def count_in_flight(self) -> int:
        """Return how many uploads are ``submitting``, ``submitted`` or ``importing``."""
        row = await self._fetchone(self._q["count_uploads_in"], self._mine)
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
        for row in await self._fetchall(self._q["count_files_by_status"]):
            files[row[0]] = row[1]
        for row in await self._fetchall(self._q["count_uploads_by_status"]):
            uploads[row[0]] = row[1]
        return {"files": files, "uploads": uploads}

    async def history(self, entity: str, entity_id: int) -> list[tuple[str | None, str, float]]:
        """Return ``(from_status, to_status, at)`` of a file or upload, oldest first."""
        rows = await self._fetchall(self._q["select_history"], (entity, entity_id))
        return [(r[0], r[1], r[2]) for r in rows]

    async def count_calls(
        self, day: str, endpoint: str, calls: int = 1, errors: int = 0
    ) -> None:
        """Add ``calls`` (and ``errors``) to the day's usage of ``endpoint``.

        Args:
            day: ``YYYY-MM-DD`` in America/Chicago (Marketo's quota day).
        """
        async with self._db.transaction() as tx:
            await tx.execute(self._q["upsert_usage"], (self._instance, day, endpoint, calls, errors))

    async def calls_on(self, day: str) -> int:
        """Return the calls counted on ``day`` over all endpoints."""
        row = await self._fetchone(self._q["select_calls_on_day"], (self._instance, day))
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
        async with self._db.transaction() as tx:
            await tx.execute(self._q["upsert_usage"], (self._instance, day, endpoint, 1, 0))
            row = await tx.fetchone(
                self._q["insert_api_call"], (self._instance, endpoint, day, sent_at)
            )
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
        async with self._db.transaction() as tx:
            await tx.execute(self._q["answer_api_call"], (answered_at, call_id))
            if refund is not None:
                await tx.execute(self._q["upsert_usage"], (self._instance, refund[0], refund[1], -1, 0))
            if forget_before is not None:
                await tx.execute(self._q["forget_api_calls"], (self._instance, forget_before))

    async def restore_window(self, now: float, window_s: float) -> list[float]:
        """Return when the calls of earlier processes that are still in the window were over.

        In one transaction: calls left in flight (their process died) are stamped ``now``
        (they count as made and answered now), calls over before ``now - window_s`` are
        deleted, and the ``answered_at`` of the others is returned, oldest first.

        Args:
            now: epoch seconds.
            window_s: the rate window, seconds.
        """
        async with self._db.transaction() as tx:
            await tx.execute(self._q["settle_api_calls"], (now, self._instance))
            await tx.execute(self._q["forget_api_calls"], (self._instance, now - window_s))
            rows = await tx.fetchall(self._q["select_api_calls_answered"], (self._instance,))
        return [float(r[0]) for r in rows]

    async def usage_on(self, day: str) -> dict[str, dict[str, int]]:
        """Return ``{endpoint: {"calls": n, "errors": n}}`` for ``day``."""
        rows = await self._fetchall(self._q["select_usage_on_day"], (self._instance, day))
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
        async with self._db.transaction() as tx:
            await tx.execute(
                self._q["insert_error"], (self._clock(), file_id, upload_id, code, message)
            )

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
        rows = await self._fetchall(self._q["select_files_for_status"], (open_limit, recent))
        return [dict(r) for r in rows]

    async def record_daemon_routes(self, routes: Sequence[Mapping[str, Any]], pid: int) -> None:
        """Record the routes the running daemon works with (replacing what was recorded).

        Args:
            routes: each route's settings as a JSON-ready dict, in the daemon's order.
            pid: the daemon's process id (readers compare it with the lock holder's).
        """
        payload = json.dumps([dict(r) for r in routes], ensure_ascii=False)
        async with self._db.transaction() as tx:
            await tx.execute(self._q["upsert_daemon_routes"], (pid, payload, self._clock()))

    async def daemon_routes(self) -> tuple[int, list[dict[str, Any]]] | None:
        """Return ``(pid, routes)`` as the last daemon recorded them, or None if none did."""
        row = await self._fetchone(self._q["select_daemon_routes"])
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
        return [FileRecord.from_row(r) for r in await self._fetchall(self._q["select_files_to_expire"],
                                                                     params)]

    async def record_expiry(
        self, file_id: int, what: str, path: str, *, deleted: bool, at: float
    ) -> None:
        """Record that retention dealt with a file's ``what`` (``deleted``: False if gone)."""
        async with self._db.transaction() as tx:
            await tx.execute(self._q["upsert_retention_deletion"],
                             (file_id, what, path, 1 if deleted else 0, at))

    async def expiry_counts(self, since: float) -> dict[str, int]:
        """Return how many leftovers retention deleted since ``since``, by kind."""
        return {r[0]: r[1] for r in await self._fetchall(self._q["select_retention_counts"], (since,))}
    # --- cluster: nodes and leases ------------------------------------------------------

    async def heartbeat(self, node_id: str, host: str, pid: int) -> None:
        """Say that node ``node_id`` is alive now (its first beat records when it started)."""
        async with self._db.transaction() as tx:
            await tx.execute(
                self._q["upsert_node"],
                {"node_id": node_id, "host": host, "pid": pid, "now": self._clock()},
            )

    async def forget_node(self, node_id: str) -> None:
        """Remove a node that stopped cleanly from ``nodes``."""
        async with self._db.transaction() as tx:
            await tx.execute(self._q["delete_node"], (node_id,))

    async def nodes(self) -> list[dict[str, Any]]:
        """Return every node: ``node_id``, ``host``, ``pid``, ``started_at``, ``heartbeat_at``."""
        return [dict(r) for r in await self._fetchall(self._q["select_nodes"])]

    async def acquire_lease(self, instance: str, node_id: str, lease_s: float) -> int | None:
        """Take (or renew) the lease of a Marketo instance for ``lease_s`` seconds.

        Returns:
            The lease's epoch (a fencing token: it changes whenever the holder changes), or
            None when another node holds an unexpired lease.
        """
        async with self._db.transaction() as tx:
            await tx.execute(self._q["insert_lease"], (instance,))
            row = await tx.fetchone(
                self._q["acquire_lease"],
                {"instance": instance, "node_id": node_id, "now": self._clock(),
                 "lease_s": lease_s},
            )
        return int(row[0]) if row else None

    async def renew_lease(self, instance: str, node_id: str, epoch: int, lease_s: float) -> bool:
        """Extend a lease we hold (this ``epoch``) by ``lease_s`` from now.

        Returns:
            False when the lease expired or another node took it (stop talking to Marketo).
        """
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                self._q["renew_lease"],
                {"instance": instance, "node_id": node_id, "epoch": epoch,
                 "now": self._clock(), "lease_s": lease_s},
            )
        return changed == 1

    async def release_lease(self, instance: str, node_id: str, epoch: int) -> None:
        """Give a lease up at once (clean shutdown), so another node takes over now."""
        async with self._db.transaction() as tx:
            await tx.execute(
                self._q["release_lease"],
                {"instance": instance, "node_id": node_id, "epoch": epoch},
            )

    async def adopt_received(
        self, node_id: str, stale_before: float, *, own: bool = False
    ) -> list[FileRecord]:
        """Make ``received`` files this node's to prepare, when no live node prepares them.

        Those recorded without a node (one daemon, or before schema 7), those of a node
        whose last heartbeat is at or before ``stale_before`` (epoch seconds) or that is gone
        from ``nodes``, and with ``own`` (at start) those of this node's earlier run. One
        statement: two nodes never adopt the same file.

        Returns:
            The adopted files, oldest first.
        """
        async with self._db.transaction() as tx:
            rows = await tx.fetchall(
                self._q["adopt_received"],
                {"me": node_id, "stale_before": stale_before, "own": int(own)},
            )
        return sorted((FileRecord.from_row(r) for r in rows), key=lambda f: f.id)

    async def claim_inbox_entries(
        self, entries: Sequence[tuple[str, int, int]], node_id: str, stale_s: float = 60.0
    ) -> set[tuple[str, int, int]]:
        """Claim dropped files for this node: each ``(path, size, mtime_ns)`` goes to one node.

        Args:
            entries: the dropped files, as ``(inbox path, size in bytes, mtime in ns)``.
            node_id: this node.
            stale_s: a claim older than this (seconds) whose file is still offered again is
                taken over: the node that made it died before moving the file into work.
                Claims older than a day are forgotten on the way.

        Returns:
            The entries this node won (the others were claimed by another node before).
        """
        won: set[tuple[str, int, int]] = set()
        now = self._clock()
        async with self._db.transaction() as tx:
            await tx.execute(self._q["forget_inbox_claims"], (now - 86_400.0,))
            for path, size, mtime_ns in entries:
                changed = await tx.execute(
                    self._q["claim_inbox_entry"],
                    {"path": path, "size": size, "mtime_ns": mtime_ns, "node_id": node_id,
                     "now": now, "stale_s": stale_s},
                )
                if changed == 1:
                    won.add((path, size, mtime_ns))
        return won

    async def save_catalogue(
        self, instance: str, fields: Any, name: str = "lead"
    ) -> None:
        """Publish a describe of an instance (the lead fields, or one custom object's).

        The lease holder publishes what it fetched; the other nodes prepare files with it
        instead of calling Marketo themselves.

        Args:
            instance: the Marketo instance.
            fields: JSON-ready, as intake's catalogue caches it.
            name: ``lead``, or a custom object's ``apiName``.
        """
        async with self._db.transaction() as tx:
            await tx.execute(self._q["upsert_catalogue"],
                             (instance, name, json.dumps(fields), self._clock()))

    async def catalogue(self, instance: str, name: str = "lead") -> tuple[Any, float] | None:
        """Return ``(fields, fetched_at)`` as last published (``save_catalogue``), or None."""
        row = await self._fetchone(self._q["select_catalogue"], (instance, name))
        return (json.loads(row[0]), float(row[1])) if row else None

    async def leases(self) -> list[dict[str, Any]]:
        """Return every lease: ``instance``, ``holder``, ``epoch``, ``acquired_at``, ``expires_at``."""
        return [dict(r) for r in await self._fetchall(self._q["select_leases"])]

    async def recent_errors(self, limit: int = 10) -> list[dict[str, Any]]:
        """Return the newest errors first: ``at``, ``file_id``, ``upload_id``, ``code``, ``message``."""
        rows = await self._fetchall(self._q["select_recent_errors"], (limit,))
        return [dict(r) for r in rows]


async def _reserve_ids(tx: Tx, queries: Mapping[str, str], table: str, n: int) -> list[int]:
    """``n`` new ids of ``table`` inside the caller's transaction (query ``reserve_ids``)."""
    if n <= 0:
        return []
    rows = await tx.fetchall(queries["reserve_ids"], {"tbl": table, "n": n})
    ids = [int(r[0]) for r in rows]
    if len(ids) != n:
        raise StoreError(f"could not reserve {n} ids of {table}")
    return ids


async def _file_instances(
    tx: Tx, queries: Mapping[str, str], file_ids: Sequence[int]
) -> dict[int, str]:
    """The Marketo instance of each file (its parts go to the same one)."""
    rows = await tx.fetchall(queries["select_file_instances"], {"ids": json.dumps(list(file_ids))})
    return {int(r[0]): str(r[1]) for r in rows}


def _part_params(
    part_id: int,
    file_id: int,
    seq: int,
    part: NewPart,
    now: float,
    send_by: float,
    instance: str,
) -> tuple[Any, ...]:
    """The ``insert_part`` parameters of one part."""
    return (
        part_id,
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
        instance,
    )


async def _guarded_update(
    tx: Tx,
    table: str,
    returning: str,
    mutable: frozenset[str],
    row_id: int,
    expected: Any,
    new: Any,
    changes: dict[str, Any],
    now: float,
    queries: Mapping[str, str],
) -> Row:
    """Run one compare-and-set UPDATE inside the caller's transaction; return the new row.

    Raises:
        InvalidTransition: the row was not in an expected status, or the guard trigger
            refused the pair.
        ValueError: a column not in ``mutable``.
    """
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
    status_of = queries[f"select_status_of_{table}"]
    try:
        async with tx.savepoint():
            row = await tx.fetchone(sql, params)
    except TransitionRefused as exc:
        found = await tx.fetchone(status_of, (row_id,))
        raise InvalidTransition(
            table, row_id, tuple(str(s) for s in wanted), found[0] if found else None
        ) from exc
    if row is None:
        found = await tx.fetchone(status_of, (row_id,))
        raise InvalidTransition(
            table, row_id, tuple(str(s) for s in wanted), found[0] if found else None
        )
    return row
