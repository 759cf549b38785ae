"""What a file's results say: row counts, final status and the report's content.

Pure functions of the file and upload records (no I/O); ``reporter`` writes what they decide
with ``write``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.models import UPLOAD_DEAD, FileRecord, FileStatus, UploadRecord, UploadStatus


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


def build_report(
    file: FileRecord,
    uploads: Sequence[UploadRecord],
    rows: RowCounts,
    status: FileStatus,
    error: str | None,
    finished_at: float,
) -> dict[str, Any]:
    """Return report.json's content (keys in the documented order)."""
    return {
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
        "uploads": [
            {
                "seq": u.seq,
                "batchId": u.batch_id,
                "status": u.status.value,
                "numOfLeadsProcessed": u.num_leads_processed,
                "numOfRowsFailed": u.num_rows_failed,
                "numOfRowsWithWarning": u.num_rows_with_warning,
                "message": u.message if u.status is UploadStatus.COMPLETE else upload_reason(u),
                "attempts": u.attempts,
            }
            for u in uploads
        ],
        "received_at": iso_utc(file.received_at),
        "finished_at": iso_utc(finished_at),
    }
