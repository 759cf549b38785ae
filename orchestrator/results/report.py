"""What a file's results say: row counts, final status and the report's content.

Pure functions of the file and upload records (no I/O); ``reporter`` writes what they decide
with ``write``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.models import UPLOAD_DEAD, FileRecord, FileStatus, UploadRecord, UploadStatus

#: Version of report.json's format. 2 (issue 12.5): each upload has ``state`` (leadflow's),
#: ``marketoStatus`` and ``message`` verbatim from Marketo, ``error`` (leadflow's reason),
#: ``attempts`` counting lost answers, ``uncertain`` and ``submissions``; ``status`` is kept
#: as a deprecated alias of ``state`` for this version only.
REPORT_VERSION = 2


@dataclass(frozen=True, slots=True)
class RowCounts:
    """A file's rows: ``total = imported + failed + rejected``; ``warned`` is inside ``imported``.

    Attributes:
        total: data rows in the source file, as accounted for below.
        imported: rows Marketo imported (``numOfLeadsProcessed`` of complete uploads).
        failed: rows Marketo did not import: its failed rows plus every row of an upload that
            failed or was rejected at Marketo.
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


def count_rows(file: FileRecord, uploads: Sequence[UploadRecord]) -> RowCounts:
    """Count a file's rows from Marketo's counters and intake's figures.

    A complete upload contributes ``numOfLeadsProcessed`` imported (docs/reference/marketo-api.md
    §3.1: imported rows, warned rows included) and ``numOfRowsFailed`` failed; a failed or rejected
    upload contributes all its rows as failed. A file that intake ended as rejected, empty or
    duplicate has every row rejected.
    """
    imported = failed = warned = 0
    for upload in uploads:
        if upload.status is UploadStatus.COMPLETE:
            row_failures = upload.num_rows_failed or 0
            processed = upload.num_leads_processed
            imported += processed if processed is not None else max(upload.rows - row_failures, 0)
            failed += row_failures
            warned += upload.num_rows_with_warning or 0
        else:
            failed += upload.rows
    rejected = file.rows_rejected
    if not uploads and file.status in (FileStatus.REJECTED, FileStatus.EMPTY, FileStatus.DUPLICATE):
        rejected = max(file.rows_total, file.rows_rejected)
    return RowCounts(imported + failed + rejected, imported, failed, warned, rejected)


def upload_reason(upload: UploadRecord) -> str:
    """The reason given for each row of an upload that failed or was rejected at Marketo."""
    detail = upload.message if upload.status is UploadStatus.FAILED and upload.message else None
    if detail is None:
        code = f"{upload.error_code} " if upload.error_code else ""
        detail = f"{code}{upload.error or upload.message or 'no reason given'}".strip()
    verb = "failed at Marketo" if upload.status is UploadStatus.FAILED else "rejected by Marketo"
    return f"upload {upload.seq} {verb}: {detail}"


def decide_status(
    file: FileRecord, uploads: Sequence[UploadRecord], rows: RowCounts
) -> tuple[FileStatus, str | None]:
    """Return the final status of a ``reporting`` file and its one-sentence error.

    - ``complete``: every row was imported (some may carry a warning: see warnings.csv).
    - ``partial``: some rows were imported and some were not: rows failed at Marketo, rows
      rejected locally, or an upload that failed or was rejected at Marketo (``leadflow retry``
      sends such uploads again). Every row that did not get in is in failures.csv.
    - ``rejected``: no row was imported; the source goes to ``paths.rejected``.
    """
    dead = [u for u in uploads if u.status in UPLOAD_DEAD]
    hint = f"; `leadflow retry {file.id}` sends the failed uploads again" if dead else ""
    if rows.imported == 0:
        if rows.total == 0:
            return FileStatus.REJECTED, file.error or "the file has no data rows"
        if dead:
            return FileStatus.REJECTED, f"no row was imported: {upload_reason(dead[0])}{hint}"
        return FileStatus.REJECTED, (
            f"no row was imported: {rows.failed} failed at Marketo and {rows.rejected} were "
            "rejected before upload; see failures.csv"
        )
    if dead:
        return FileStatus.PARTIAL, (
            f"{len(dead)} of {len(uploads)} uploads were not imported "
            f"({upload_reason(dead[0])}){hint}"
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


def upload_view(
    upload: UploadRecord, submissions: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """Return one upload's entry of report.json (keys in the documented order).

    Marketo's fields keep Marketo's names and values verbatim (``batchId``,
    ``marketoStatus``, ``numOfLeadsProcessed``, ``numOfRowsFailed``, ``numOfRowsWithWarning``,
    ``message``); leadflow's own are ``state`` (lower case), ``error``, ``attempts`` (create
    calls sent, lost answers included), ``uncertain`` (of those, answers lost) and
    ``submissions`` (each call: ``batchId`` or None when no answer came, ``outcome``
    ``accepted``/``uncertain``, Marketo's last ``marketoStatus`` for it, ``at``). ``status``
    is a deprecated alias of ``state`` (``REPORT_VERSION`` 2 only).

    Args:
        upload: the upload.
        submissions: its create calls, oldest first (``Store.submissions_of_file``).
    """
    dead = upload.status in UPLOAD_DEAD
    return {
        "seq": upload.seq,
        "batchId": upload.batch_id,
        "state": upload.status.value,
        "marketoStatus": upload.marketo_status,
        "status": upload.status.value,
        "numOfLeadsProcessed": upload.num_leads_processed,
        "numOfRowsFailed": upload.num_rows_failed,
        "numOfRowsWithWarning": upload.num_rows_with_warning,
        "message": upload.message,
        "error": upload_reason(upload) if dead else None,
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
    }


def build_report(
    file: FileRecord,
    uploads: Sequence[UploadRecord],
    rows: RowCounts,
    status: FileStatus,
    error: str | None,
    finished_at: float,
    submissions: Mapping[int, Sequence[Mapping[str, Any]]] | None = None,
) -> dict[str, Any]:
    """Return report.json's content (keys in the documented order).

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
        "forced": file.info.get("forced") if file.forced else None,
        "rows": rows.as_dict(),
        "duplicates": file.duplicates,
        "duplicate_values": list(file.info.get("duplicates") or []),
        "uploads": [upload_view(u, calls.get(u.id, ())) for u in uploads],
        "received_at": iso_utc(file.received_at),
        "finished_at": iso_utc(finished_at),
    }
