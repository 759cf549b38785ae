"""Status enums, their groups and allowed transitions, and the frozen records the store returns.

The status groups (terminal, open, at Marketo, dead letters, archived) live only here; so do
Marketo's file formats and their delimiters.

The enums are mirrored by ``CHECK`` constraints and by the ``allowed_transitions`` table of
``migrations/`` (0001, kept by 0002); a trigger refuses any other transition, and a unit test keeps
the two in step.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FileStatus(StrEnum):
    """Where one input file is in its life: inbox -> work -> uploads -> report."""

    #: Claimed into ``paths.work`` and recorded; not prepared yet.
    RECEIVED = "received"
    #: Prepared; its uploads are enqueued and being imported.
    QUEUED = "queued"
    #: Every upload is terminal; results are being fetched and written.
    REPORTING = "reporting"
    #: Every row was imported or reported (some may have warnings).
    COMPLETE = "complete"
    #: Some uploads failed or were rejected by Marketo, or rows were rejected locally.
    PARTIAL = "partial"
    #: Could not be imported at all (undecodable, unknown fields, no lookup column, ...).
    REJECTED = "rejected"
    #: No data rows (header only, or blank).
    EMPTY = "empty"
    #: Same SHA-256 as a file already imported; not sent again.
    DUPLICATE = "duplicate"


#: File statuses after which nothing more happens unless an operator retries.
FILE_TERMINAL: frozenset[FileStatus] = frozenset(
    {
        FileStatus.COMPLETE,
        FileStatus.PARTIAL,
        FileStatus.REJECTED,
        FileStatus.EMPTY,
        FileStatus.DUPLICATE,
    }
)
#: File statuses whose source file goes to ``paths.archive`` when reported; the other
#: terminal ones go to ``paths.rejected``.
FILE_ARCHIVED: frozenset[FileStatus] = frozenset({FileStatus.COMPLETE, FileStatus.PARTIAL})
#: File statuses that still have work ahead of them (received, queued, reporting), in order.
FILE_OPEN: tuple[FileStatus, ...] = tuple(s for s in FileStatus if s not in FILE_TERMINAL)


class UploadStatus(StrEnum):
    """Where one upload (a chunk of a file under the size limit) is, ours and Marketo's."""

    #: In our FIFO, waiting for an import slot (``not_before`` may delay it).
    QUEUED = "queued"
    #: Claimed by the scheduler; the create call is under way.
    SUBMITTING = "submitting"
    #: Marketo accepted it (``batchId`` known); Marketo says ``Queued``.
    SUBMITTED = "submitted"
    #: Marketo says ``Importing``.
    IMPORTING = "importing"
    #: Marketo says ``Complete`` (rows may still have failed or warned).
    COMPLETE = "complete"
    #: Marketo said ``Failed`` more often than ``daemon.max_batch_attempts`` (dead letter).
    FAILED = "failed"
    #: Marketo refused it permanently at upload (1003, 1006, 1011, 1013, 413...) (dead letter).
    REJECTED = "rejected"


#: Upload statuses that hold one of Marketo's import queue slots (queued-or-importing there).
UPLOAD_AT_MARKETO: frozenset[UploadStatus] = frozenset(
    {UploadStatus.SUBMITTED, UploadStatus.IMPORTING}
)
#: Upload statuses after which nothing more happens unless an operator retries.
UPLOAD_TERMINAL: frozenset[UploadStatus] = frozenset(
    {UploadStatus.COMPLETE, UploadStatus.FAILED, UploadStatus.REJECTED}
)
#: Upload statuses whose rows never reached Marketo's lead database (dead letters);
#: ``leadflow retry`` re-queues them.
UPLOAD_DEAD: frozenset[UploadStatus] = frozenset({UploadStatus.FAILED, UploadStatus.REJECTED})
#: Upload statuses that still have work ahead of them (queued, submitting, submitted,
#: importing), in order.
UPLOAD_OPEN: tuple[UploadStatus, ...] = tuple(s for s in UploadStatus if s not in UPLOAD_TERMINAL)

#: Field delimiter of each Marketo file ``format`` (docs/reference/marketo-api.md §2.1).
DELIMITER_OF_FORMAT: dict[str, str] = {"csv": ",", "tsv": "\t", "ssv": ";"}
#: Marketo's ``format`` name of each delimiter leadflow reads (the inverse of
#: ``DELIMITER_OF_FORMAT``; also the sniffer's candidates, in this order).
FORMAT_OF_DELIMITER: dict[str, str] = {d: f for f, d in DELIMITER_OF_FORMAT.items()}

_F = FileStatus
_U = UploadStatus

#: Allowed file transitions; the migration holds the same pairs and a trigger enforces them.
FILE_TRANSITIONS: dict[FileStatus, frozenset[FileStatus]] = {
    _F.RECEIVED: frozenset({_F.QUEUED, _F.REPORTING, _F.REJECTED, _F.EMPTY, _F.DUPLICATE}),
    _F.QUEUED: frozenset({_F.REPORTING}),
    _F.REPORTING: frozenset({_F.COMPLETE, _F.PARTIAL, _F.REJECTED}),
    _F.COMPLETE: frozenset(),
    _F.PARTIAL: frozenset({_F.QUEUED}),
    _F.REJECTED: frozenset({_F.RECEIVED, _F.QUEUED}),
    _F.EMPTY: frozenset({_F.RECEIVED}),
    _F.DUPLICATE: frozenset({_F.RECEIVED}),
}

#: Allowed upload transitions; the migration holds the same pairs and a trigger enforces them.
UPLOAD_TRANSITIONS: dict[UploadStatus, frozenset[UploadStatus]] = {
    _U.QUEUED: frozenset({_U.SUBMITTING}),
    _U.SUBMITTING: frozenset(
        {_U.QUEUED, _U.SUBMITTED, _U.IMPORTING, _U.COMPLETE, _U.FAILED, _U.REJECTED}
    ),
    _U.SUBMITTED: frozenset({_U.IMPORTING, _U.COMPLETE, _U.FAILED, _U.QUEUED}),
    _U.IMPORTING: frozenset({_U.COMPLETE, _U.FAILED, _U.QUEUED}),
    _U.COMPLETE: frozenset(),
    _U.FAILED: frozenset({_U.QUEUED}),
    _U.REJECTED: frozenset({_U.QUEUED}),
}


def can_transition_file(old: FileStatus, new: FileStatus) -> bool:
    """Return whether a file may go from ``old`` to ``new`` (a no-op is not a transition)."""
    return new in FILE_TRANSITIONS[old]


def can_transition_upload(old: UploadStatus, new: UploadStatus) -> bool:
    """Return whether an upload may go from ``old`` to ``new``."""
    return new in UPLOAD_TRANSITIONS[old]


def pack_rows(rows: list[int] | array[int]) -> bytes:
    """Pack source row numbers (1-based line numbers) into the ``parts.source_rows`` blob."""
    packed = array("I", rows)
    if packed.itemsize != 4:  # pragma: no cover - every platform we run on has 4-byte "I"
        packed = array("L", rows)
    return packed.tobytes()


def unpack_rows(blob: bytes) -> list[int]:
    """Unpack ``parts.source_rows``: one source line number per row of the part, in order."""
    out: array[int] = array("I")
    out.frombytes(blob)
    return out.tolist()


@dataclass(frozen=True, slots=True)
class FileRecord:
    """One input file (a row of ``files``). Times are epoch seconds."""

    id: int
    name: str
    inbox_path: str
    work_path: str
    route: str | None
    status: FileStatus
    sha256: str | None
    size_bytes: int | None
    error: str | None
    encoding: str | None
    format: str | None
    rows_total: int
    rows_rejected: int
    duplicates: int
    info: dict[str, Any]
    received_at: float
    updated_at: float
    finished_at: float | None
    reported_at: float | None
    #: The import options its uploads are sent with (``intake.uploads.import_key``).
    import_key: str | None = None
    #: Imported on purpose although the same bytes and options were imported before.
    forced: bool = False
    #: The Marketo instance it is imported into (``[[instances]]`` name; ``routes[].instance``).
    instance: str = "default"
    #: The cluster node that claimed it (None: one daemon, no cluster).
    node_id: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> FileRecord:
        """Build from an ``aiosqlite.Row`` of ``SELECT * FROM files``."""
        return cls(
            id=row["id"],
            name=row["name"],
            inbox_path=row["inbox_path"],
            work_path=row["work_path"],
            route=row["route"],
            status=FileStatus(row["status"]),
            sha256=row["sha256"],
            size_bytes=row["size_bytes"],
            error=row["error"],
            encoding=row["encoding"],
            format=row["format"],
            rows_total=row["rows_total"],
            rows_rejected=row["rows_rejected"],
            duplicates=row["duplicates"],
            info=json.loads(row["info"] or "{}"),
            received_at=row["received_at"],
            updated_at=row["updated_at"],
            finished_at=row["finished_at"],
            reported_at=row["reported_at"],
            import_key=row["import_key"],
            forced=bool(row["forced"]),
            instance=row["instance"],
            node_id=row["node_id"],
        )


@dataclass(frozen=True, slots=True)
class NewFile:
    """A file found in the inbox, to record as ``received`` (``Store.add_files``).

    Attributes:
        name: the file's name as dropped.
        inbox_path: where it was found.
        work_path: where it is claimed to; a ``{id}`` is replaced by the new file id.
        route: the route's name, None at the inbox root.
        size_bytes: its size when it was found.
        instance: the Marketo instance it goes to; None: the store's.
    """

    name: str
    inbox_path: str
    work_path: str
    route: str | None
    size_bytes: int | None
    #: The Marketo instance it goes to; None: the store's (``Store.for_instance``).
    instance: str | None = None
    #: The cluster node that claimed it (None: one daemon, no cluster).
    node_id: str | None = None


@dataclass(frozen=True, slots=True)
class EnqueuedFile:
    """A prepared file to enqueue with others in one transaction (``Store.enqueue_files``).

    Attributes:
        file_id: the ``received`` file.
        parts: its parts in order (none when every row was rejected locally).
        status: ``queued`` (parts to import) or ``reporting`` (nothing to send).
        sha256, encoding, format, rows_total, rows_rejected, duplicates, info: the file's
            figures (``files`` columns; ``info`` as a dict).
        import_key: its import options (``files.import_key``; duplicates are the same bytes
            with the same key).
        forced: imported again on purpose although a twin was imported.
        wait_s: seconds its parts may wait for others to share their upload
            (``import.pack_wait_s``).
    """

    file_id: int
    parts: Sequence[NewPart]
    status: FileStatus
    sha256: str
    encoding: str
    format: str
    rows_total: int
    rows_rejected: int
    duplicates: int
    info: dict[str, Any]
    import_key: str | None = None
    forced: bool = False
    wait_s: float = 0.0


@dataclass(frozen=True, slots=True)
class NewPart:
    """A part prepared by intake (one file's chunk of rows under the upload limit), to enqueue.

    Attributes:
        path: the prepared UTF-8 CSV file (header + rows) on disk.
        size_bytes: size of that file in bytes.
        source_rows: one source line number per data row, in file order.
        kind: ``leads``, ``program_members`` or ``custom_objects``.
        options: Marketo parameters: ``format``, ``lookupField``, ``listId``,
            ``partitionName``, ``programId``, ``programMemberStatus``, ``objectApiName``.
        header_bytes: bytes of the header line at the top of ``path`` (CRLF included); 0 when
            unknown, and then the part never shares an upload.
        pack_key: parts with equal keys may share an upload (``intake.uploads.pack_key``);
            None: the part travels alone.
    """

    path: str
    size_bytes: int
    source_rows: list[int] | array[int]
    kind: str = "leads"
    options: dict[str, Any] = field(default_factory=dict)
    header_bytes: int = 0
    pack_key: str | None = None


@dataclass(frozen=True, slots=True)
class PartRecord:
    """One file's range of rows (a row of ``parts``); ``id`` order is the FIFO order.

    ``upload_id`` is None while the part waits for a pack; then ``first_row`` is the 0-based
    index of its first row in the upload. The counts are the file's own rows in the batch,
    set when the batch's results were split (None before). Times are epoch seconds.
    """

    id: int
    file_id: int
    seq: int
    path: str
    size_bytes: int
    header_bytes: int
    rows: int
    kind: str
    options: dict[str, Any]
    pack_key: str | None
    queued_at: float
    send_by: float | None
    upload_id: int | None
    first_row: int | None
    num_leads_processed: int | None
    num_rows_failed: int | None
    num_rows_with_warning: int | None

    @classmethod
    def from_row(cls, row: Any) -> PartRecord:
        """Build from an ``aiosqlite.Row`` of ``SELECT <PART_COLUMNS> FROM parts``."""
        return cls(
            id=row["id"],
            file_id=row["file_id"],
            seq=row["seq"],
            path=row["path"],
            size_bytes=row["size_bytes"],
            header_bytes=row["header_bytes"],
            rows=row["rows"],
            kind=row["kind"],
            options=json.loads(row["options"] or "{}"),
            pack_key=row["pack_key"],
            queued_at=row["queued_at"],
            send_by=row["send_by"],
            upload_id=row["upload_id"],
            first_row=row["first_row"],
            num_leads_processed=row["num_leads_processed"],
            num_rows_failed=row["num_rows_failed"],
            num_rows_with_warning=row["num_rows_with_warning"],
        )


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """One upload: one Marketo job carrying one or more parts (a row of ``uploads``).

    ``id`` order is the FIFO order of formed uploads; the counters are Marketo's for the whole
    batch (each part's own are on ``PartRecord``). Times are epoch seconds.
    """

    id: int
    path: str
    size_bytes: int
    rows: int
    kind: str
    options: dict[str, Any]
    status: UploadStatus
    batch_id: int | None
    marketo_status: str | None
    num_leads_processed: int | None
    num_rows_failed: int | None
    num_rows_with_warning: int | None
    message: str | None
    attempts: int
    batch_failures: int
    uncertain: int
    not_before: float | None
    next_poll_at: float | None
    polls: int
    error_code: str | None
    error: str | None
    created_at: float
    updated_at: float
    claimed_at: float | None
    submitted_at: float | None
    finished_at: float | None
    results_split_at: float | None = None

    @classmethod
    def from_row(cls, row: Any) -> UploadRecord:
        """Build from an ``aiosqlite.Row`` of ``SELECT <UPLOAD_COLUMNS> FROM uploads``."""
        return cls(
            id=row["id"],
            path=row["path"],
            size_bytes=row["size_bytes"],
            rows=row["rows"],
            kind=row["kind"],
            options=json.loads(row["options"] or "{}"),
            status=UploadStatus(row["status"]),
            batch_id=row["batch_id"],
            marketo_status=row["marketo_status"],
            num_leads_processed=row["num_leads_processed"],
            num_rows_failed=row["num_rows_failed"],
            num_rows_with_warning=row["num_rows_with_warning"],
            message=row["message"],
            attempts=row["attempts"],
            batch_failures=row["batch_failures"],
            uncertain=row["uncertain"],
            not_before=row["not_before"],
            next_poll_at=row["next_poll_at"],
            polls=row["polls"],
            error_code=row["error_code"],
            error=row["error"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            claimed_at=row["claimed_at"],
            submitted_at=row["submitted_at"],
            finished_at=row["finished_at"],
            results_split_at=row["results_split_at"],
        )
