"""What a file's results say: row counts, final status and the report's content.

Pure functions of the file, its parts and the uploads they rode in (no I/O); ``reporter``
writes what they decide with ``write``. An upload may carry the parts of several files (a
shared Marketo job): a file's counts are its parts' own counts in each batch, set when the
batch was split between its files (``split``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.models import (
    UPLOAD_DEAD,
    FileRecord,
    FileStatus,
    PartRecord,
    UploadRecord,
    UploadStatus,
)


@dataclass(frozen=True, slots=True)
class Ride:
    """One part of a file and the upload (Marketo job) it rode in.

    Attributes:
        part: the file's part (its own counts in the batch once the batch was split).
        upload: the upload; it may carry other files' parts too.
        batch_files: how many files rode in the upload (1 when it was the file's alone).
    """

    part: PartRecord
    upload: UploadRecord
    batch_files: int = 1

    @property
    def dead(self) -> bool:
        """Whether the part's rows never reached Marketo's lead database (dead letter)."""
        return self.upload.status in UPLOAD_DEAD



#: Version of report.json's format. 2 (issue 12.5): each upload has ``state`` (leadflow's),
#: ``marketoStatus`` and ``message`` verbatim from Marketo, ``error`` (leadflow's reason),
#: ``attempts`` counting lost answers, ``uncertain`` and ``submissions``; ``status`` is kept
#: as a deprecated alias of ``state``. 3 (issue 15, packing): each entry of ``uploads`` is one
#: part of the file (its rows in one upload, which other files' rows may share): new keys
#: ``upload_id``, ``rows`` and ``batch`` (the whole job, Marketo's counters verbatim); the
#: ``numOf*`` counters are the file's own rows in the batch.
REPORT_VERSION = 3


@dataclass(frozen=True, slots=True)
class RowCounts:
    """A file's rows: ``total = imported + failed + rejected``; ``warned`` is inside ``imported``.

    Attributes:
        total: data rows in the source file, as accounted for below.
        imported: rows Marketo imported (the file's own ``numOfLeadsProcessed`` in each
            complete batch it rode in).
        failed: rows Marketo did not import: its failed rows plus every row of a part whose
            upload failed or was rejected at Marketo.
        warned: imported rows with a Marketo warning.
        rejected: rows intake rejected locally (never sent); all rows of a file rejected as a
            whole, empty or duplicate.
    """

    total: int
    imported: int
    failed: int
    warned: int
    rejected: int

    def as_dict(self) -> dict[str, int]:
        """Return the counts as report.json's ``rows`` object."""
        return asdict(self)


def count_rows(file: FileRecord, rides: Sequence[Ride]) -> RowCounts:
    """Count a file's rows from its own counts in each batch and intake's figures.

    A part in a complete upload contributes its own ``numOfLeadsProcessed`` imported
    (docs/reference/marketo-api.md §3.1: imported rows, warned rows included) and ``numOfRowsFailed`` failed (set
    when the batch was split between its files); a part in a failed or rejected upload
    contributes all its rows as failed. A file that intake ended as rejected, empty or
    duplicate has every row rejected.
    """
    imported = failed = warned = 0
    for ride in rides:
        part = ride.part
        if ride.upload.status is UploadStatus.COMPLETE:
            row_failures = part.num_rows_failed or 0
            processed = part.num_leads_processed
            imported += processed if processed is not None else max(part.rows - row_failures, 0)
            failed += row_failures
            warned += part.num_rows_with_warning or 0
        else:
            failed += part.rows
    rejected = file.rows_rejected
    if not rides and file.status in (FileStatus.REJECTED, FileStatus.EMPTY, FileStatus.DUPLICATE):
        rejected = max(file.rows_total, file.rows_rejected)
    return RowCounts(imported + failed + rejected, imported, failed, warned, rejected)


def upload_reason(upload: UploadRecord, seq: int) -> str:
    """The reason given for each row of part ``seq`` whose upload failed or was rejected."""
    detail = upload.message if upload.status is UploadStatus.FAILED and upload.message else None
    if detail is None:
        code = f"{upload.error_code} " if upload.error_code else ""
        detail = f"{code}{upload.error or upload.message or 'no reason given'}".strip()
    verb = "failed at Marketo" if upload.status is UploadStatus.FAILED else "rejected by Marketo"
    return f"upload {seq} {verb}: {detail}"


def decide_status(
    file: FileRecord, rides: Sequence[Ride], rows: RowCounts
) -> tuple[FileStatus, str | None]:
    """Return the final status of a ``reporting`` file and its one-sentence error.

    - ``complete``: every row was imported (some may carry a warning: see warnings.csv).
    - ``partial``: some rows were imported and some were not: rows failed at Marketo, rows
      rejected locally, or a part whose upload failed or was rejected at Marketo (``leadflow
      retry`` sends such parts again). Every row that did not get in is in failures.csv.
    - ``rejected``: no row was imported; the source goes to ``paths.rejected``.
    """
    dead = [r for r in rides if r.dead]
    hint = f"; `leadflow retry {file.id}` sends the failed uploads again" if dead else ""
    if rows.imported == 0:
        if rows.total == 0:
            return FileStatus.REJECTED, file.error or "the file has no data rows"
        if dead:
            first = dead[0]
            return FileStatus.REJECTED, (
                f"no row was imported: {upload_reason(first.upload, first.part.seq)}{hint}"
            )
        return FileStatus.REJECTED, (
            f"no row was imported: {rows.failed} failed at Marketo and {rows.rejected} were "
            "rejected before upload; see failures.csv"
        )
    if dead:
        first = dead[0]
        return FileStatus.PARTIAL, (
            f"{len(dead)} of {len(rides)} uploads were not imported "
            f"({upload_reason(first.upload, first.part.seq)}){hint}"
        )
    if rows.failed or rows.rejected:
        parts = [f"{rows.failed} failed at Marketo"] if rows.failed else []
        parts += [f"{rows.rejected} rejected before upload"] if rows.rejected else []
        return FileStatus.PARTIAL, (
            f"{rows.failed + rows.rejected} of {rows.total} rows were not imported "
            f"({', '.join(parts)}); see failures.csv"
        )
    return FileStatus.COMPLETE, None


def iso_utc(ts: float | None) -> str | None:
    """Return epoch seconds as ISO 8601 UTC (``2026-11-30T03:05:46Z``), or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def part_view(ride: Ride, submissions: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """Return one entry of report.json's ``uploads``: a part of the file and its upload.

    ``seq`` is the part's number in the file, ``upload_id`` the upload (Marketo job) it rode
    in, ``rows`` the file's rows in it. ``numOfLeadsProcessed``, ``numOfRowsFailed`` and
    ``numOfRowsWithWarning`` are the file's own rows in the batch (set when a complete batch
    was split between its files; None otherwise); ``batch`` holds the whole job: how many
    files rode in it, its rows and Marketo's counters verbatim. ``batchId``,
    ``marketoStatus`` and ``message`` are Marketo's, verbatim; leadflow's own are ``state``
    (lower case), ``error``, ``attempts`` (create calls sent, lost answers included),
    ``uncertain`` (of those, answers lost) and ``submissions`` (each call: ``batchId`` or None
    when no answer came, ``outcome`` ``accepted``/``uncertain``, Marketo's last
    ``marketoStatus`` for it, ``at``). ``status`` is a deprecated alias of ``state``.

    Args:
        ride: the part and its upload.
        submissions: the upload's create calls, oldest first (``Store.submissions_of_file``).
    """
    part, upload = ride.part, ride.upload
    complete = upload.status is UploadStatus.COMPLETE
    return {
        "seq": part.seq,
        "upload_id": upload.id,
        "batchId": upload.batch_id,
        "state": upload.status.value,
        "marketoStatus": upload.marketo_status,
        "status": upload.status.value,
        "rows": part.rows,
        "numOfLeadsProcessed": part.num_leads_processed if complete else None,
        "numOfRowsFailed": part.num_rows_failed if complete else None,
        "numOfRowsWithWarning": part.num_rows_with_warning if complete else None,
        "message": upload.message,
        "error": upload_reason(upload, part.seq) if ride.dead else None,
        "attempts": upload.attempts + upload.uncertain,
        "uncertain": upload.uncertain,
        "submissions": [
            {
                "batchId": s["batch_id"],
                "outcome": s["outcome"],
                "marketoStatus": s["marketo_status"],
                "at": iso_utc(s["at"]),
            }
            for s in submissions
        ],
        "batch": {
            "files": ride.batch_files,
            "rows": upload.rows,
            "numOfLeadsProcessed": upload.num_leads_processed,
            "numOfRowsFailed": upload.num_rows_failed,
            "numOfRowsWithWarning": upload.num_rows_with_warning,
        },
    }


def build_report(
    file: FileRecord,
    rides: Sequence[Ride],
    rows: RowCounts,
    status: FileStatus,
    error: str | None,
    finished_at: float,
    submissions: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Return report.json's content (keys in the documented order).

    ``uploads`` has one entry per part of the file (``part_view``): the job it rode in
    (``batchId``, shared by every file in the job), the file's own rows and counts in that
    job, and ``batch``: the whole job as Marketo reported it.

    Args:
        submissions: each upload's create calls by upload id (``Store.submissions_of_file``).
    """
    calls = submissions or {}
    return {
        "report_version": REPORT_VERSION,
        "file": file.name,
        "file_id": file.id,
        "sha256": file.sha256,
        "status": status.value,
        "error": error,
        "encoding": file.encoding,
        "format": file.format,
        "route": file.route,
        "instance": file.instance,
        "forced": file.info.get("forced") if file.forced else None,
        "rows": rows.as_dict(),
        "duplicates": file.duplicates,
        "duplicate_values": list(file.info.get("duplicates") or []),
        "uploads": [part_view(ride, calls.get(ride.upload.id, ())) for ride in rides],
        "received_at": iso_utc(file.received_at),
        "finished_at": iso_utc(finished_at),
    }
