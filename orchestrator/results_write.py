"""What a file's results say, and writing them: row counts, final status, report, CSV files.

The decisions (row counts, final status, the report's content) are pure functions of the file
and upload records. The writers put RFC 4180 CSV (UTF-8, no BOM, CRLF) and JSON into a folder
that the caller builds under a temporary name and then swaps into place (``replace_dir``), so
a reader never sees a half-written results folder.
"""

from __future__ import annotations

import csv
import errno
import heapq
import json
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.models import FileRecord, FileStatus, UploadRecord, UploadStatus
from orchestrator.results_map import MappedRow, allow_long_fields

#: Longest file-name part (bytes, UTF-8) kept in results folder and archive names.
MAX_NAME_BYTES = 180
#: Statuses whose source file goes to ``paths.archive``; the others go to ``paths.rejected``.
ARCHIVED = frozenset({FileStatus.COMPLETE, FileStatus.PARTIAL})
#: Upload statuses whose rows never reached Marketo's lead database (dead letters).
DEAD_UPLOADS = frozenset({UploadStatus.FAILED, UploadStatus.REJECTED})
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

    A complete upload contributes ``numOfLeadsProcessed`` imported (contract 3.1: imported
    rows, warned rows included) and ``numOfRowsFailed`` failed; a failed or rejected upload
    contributes all its rows as failed. A file that intake ended as rejected, empty or
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
    dead = [u for u in uploads if u.status in DEAD_UPLOADS]
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
    dead = upload.status in DEAD_UPLOADS
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
        "rows": rows.as_dict(),
        "duplicates": file.duplicates,
        "duplicate_values": list(file.info.get("duplicates") or []),
        "uploads": [upload_view(u, calls.get(u.id, ())) for u in uploads],
        "received_at": iso_utc(file.received_at),
        "finished_at": iso_utc(finished_at),
    }


def _cut(name: str) -> str:
    safe = name.replace("/", "_").replace("\x00", "_") or "file"
    while len(safe.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        safe = safe[:-1]
    return safe


def results_dir_name(name: str, file_id: int) -> str:
    """Return the results folder name ``<file name>.<file id>`` (long names are cut)."""
    return f"{_cut(name)}.{file_id}"


def archive_name(name: str, file_id: int) -> str:
    """Return the collision-free name of a source in archive/rejected: ``<id>-<name>``."""
    return f"{file_id}-{_cut(name)}"


# --- CSV rows: (source row or None, values in output column order, reason) ----------------

OutRow = tuple[int | None, tuple[str, ...], str]


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented UTF-8 JSON and fsync it.

    Raises:
        OSError: the folder is not writable, the disk is full, ...
    """
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    with path.open("wb") as handle:
        handle.write(text.encode("utf-8", "replace"))
        handle.flush()
        os.fsync(handle.fileno())


def write_spill(path: Path, rows: Iterable[OutRow]) -> int:
    """Write rows (already sorted by source row) to a spill file; return how many.

    Raises:
        OSError: the folder is not writable, the disk is full, ...
    """
    count = 0
    with path.open("w", encoding="utf-8", errors="replace", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        for line, values, reason in rows:
            writer.writerow(["" if line is None else line, reason, *values])
            count += 1
    return count


def read_spill(path: Path) -> Iterator[OutRow]:
    """Read back a spill file written by ``write_spill``."""
    allow_long_fields()
    with path.open("r", encoding="utf-8", newline="") as handle:
        for record in csv.reader(handle):
            if not record:
                continue
            yield (int(record[0]) if record[0] else None, tuple(record[2:]), record[1])


def _order(row: OutRow) -> tuple[bool, int]:
    return (row[0] is None, row[0] or 0)


def merge_csv(
    path: Path, labels: Sequence[str], streams: Sequence[Iterable[OutRow]]
) -> int:
    """Merge sorted row streams into one RFC 4180 CSV ordered by source row; return rows written.

    The header is ``sourceRow``, ``labels`` (the source's column names), ``reason``. Rows
    without a source row come last. Nothing is written (and 0 returned) when there are no rows.

    Raises:
        OSError: the folder is not writable, the disk is full, ...
    """
    merged = heapq.merge(*streams, key=_order)
    first = next(merged, None)
    if first is None:
        return 0
    count = 0
    with path.open("w", encoding="utf-8", errors="replace", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(["sourceRow", *labels, "reason"])
        for line, values, reason in _chain(first, merged):
            writer.writerow(["" if line is None else line, *values, reason])
            count += 1
        handle.flush()
        os.fsync(handle.fileno())
    return count


def _chain(first: OutRow, rest: Iterator[OutRow]) -> Iterator[OutRow]:
    yield first
    yield from rest


def to_columns(
    row: MappedRow, positions: Sequence[int | None], width: int
) -> OutRow:
    """Re-order a mapped row's values (upload order) into the output columns.

    Args:
        positions: for each output column, its position in the upload's header, or None.
        width: the number of output columns.
    """
    values = tuple(
        row.values[p] if p is not None and p < len(row.values) else "" for p in positions
    )
    return (row.source_row, values[:width], row.reason)


def read_rejections(path: Path, width: int, delimiter: str) -> list[OutRow]:
    """Read intake's ``rejections.csv`` (``sourceRow``, the columns, ``Import Failure Reason``).

    A row with more fields than the header keeps its surplus fields joined to its last column
    with the source delimiter, so nothing is lost; a shorter one is padded with ``""``.

    Returns:
        The rows sorted by source row; an empty list when the file does not exist.

    Raises:
        OSError: the file exists but cannot be read.
    """
    if not path.is_file():
        return []
    out: list[OutRow] = []
    allow_long_fields()
    with path.open("r", encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        for record in reader:
            if not record or record == [""]:
                continue
            try:
                line: int | None = int(record[0])
            except ValueError:
                line = None
            fields = record[1:-1] if len(record) > 1 else []
            reason = record[-1] if len(record) > 1 else ""
            if width and len(fields) > width:
                fields = [*fields[: width - 1], delimiter.join(fields[width - 1 :])]
            padded = tuple(fields) + ("",) * (width - len(fields))
            out.append((line, padded, reason))
    out.sort(key=_order)
    return out


def replace_dir(tmp: Path, final: Path) -> None:
    """Swap a fully written ``tmp`` folder into place as ``final``, replacing an old one.

    An old ``final`` is renamed to ``<final>.old`` first and deleted after the swap; a crash
    in between leaves ``final`` missing and both siblings present, which the next write
    repairs (it rebuilds ``tmp`` and deletes a stale ``.old``).

    Raises:
        OSError: a rename failed (nothing was lost: ``tmp`` or ``final`` is still there).
    """
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def move_file(source: Path, dest: Path) -> None:
    """Move ``source`` to ``dest``, creating ``dest``'s folder; a copy across file systems.

    Raises:
        OSError: the move failed (``source`` is still there unless the cross-device copy
            failed after copying).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(source, dest)
