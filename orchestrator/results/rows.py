"""Building one file's failures.csv and warnings.csv from its uploads and local rejections.

Runs in a worker thread (blocking file I/O). Each source of rows is written to a sorted spill
file inside the results folder being built, so memory stays bounded by one upload (under
10 MB) however large the file was; the spills are then merged by source row number:

- intake's ``rejections.csv`` (rows never sent);
- for each complete upload with ``numOfRowsFailed > 0`` / ``numOfRowsWithWarning > 0``, the rows
  of Marketo's failures / warnings file, joined back to the upload's rows (``results_map``);
- for each upload that failed or was rejected at Marketo, every one of its rows, with the
  upload's error as the reason.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from orchestrator.models import UPLOAD_DEAD, FileRecord, UploadRecord
from orchestrator.results.source_rows import (
    FAILURE_REASON,
    WARNING_REASON,
    MappedRow,
    RowIndex,
    delimiter_for,
    map_rows,
    read_reported_rows,
    read_upload,
)
from orchestrator.results.write import (
    OutRow,
    merge_csv,
    read_rejections,
    read_spill,
    to_columns,
    upload_reason,
    write_spill,
)

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class UploadRows:
    """Where one upload's reported rows come from.

    Attributes:
        upload: the upload (complete, failed or rejected).
        source_rows: its source line numbers (empty when nothing needs mapping).
        failures: the downloaded Marketo failures file, if any.
        warnings: the downloaded Marketo warnings file, if any.
    """

    upload: UploadRecord
    source_rows: list[int]
    failures: Path | None = None
    warnings: Path | None = None


@dataclass(slots=True)
class Written:
    """What ``write_rows`` wrote: row counts and sentences for the report's ``error``."""

    failures: int = 0
    warnings: int = 0
    notes: list[str] = field(default_factory=list)


def output_columns(file: FileRecord, plans: Sequence[UploadRows]) -> tuple[list[str], list[str]]:
    """Return ``(columns, labels)``: REST names in source order and the source's header names.

    ``columns`` come from intake's ``info["header"]`` (else the first readable upload);
    ``labels`` are ``info["source_header"]`` when it has one name per column, else ``columns``.
    """
    columns = [str(c) for c in file.info.get("header") or []]
    if not columns:
        for plan in plans:
            try:
                columns = read_upload(Path(plan.upload.path))[0]
            except (OSError, csv.Error):
                continue
            break
    source = [str(c) for c in file.info.get("source_header") or []]
    labels = source if len(source) == len(columns) else columns
    return columns, labels


def write_rows(
    file: FileRecord, plans: Sequence[UploadRows], tmp: Path, rejections: Path
) -> Written:
    """Write ``failures.csv`` and ``warnings.csv`` into the fresh folder ``tmp``.

    Each is written only when it has rows. ``tmp`` is emptied first (a crash may have left it).

    Args:
        file: the file (its ``info`` gives the header, the delimiter and the lookup field).
        plans: one entry per complete upload with reported rows and per dead upload.
        tmp: the results folder being built.
        rejections: intake's ``rejections.csv`` (may not exist).

    Raises:
        OSError: ``tmp`` cannot be written (read-only, disk full) or rejections unreadable.
    """
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    columns, labels = output_columns(file, plans)
    delimiter = str(file.info.get("delimiter") or ",")
    written = Written()
    failures: list[Iterable[OutRow]] = [read_rejections(rejections, len(columns), delimiter)]
    warnings: list[Iterable[OutRow]] = []
    for plan in plans:
        _spill_upload(file, plan, columns, tmp, failures, warnings, written)
    written.failures = merge_csv(tmp / "failures.csv", labels, failures)
    written.warnings = merge_csv(tmp / "warnings.csv", labels, warnings)
    for spill in tmp.glob(".spill-*"):
        spill.unlink()
    return written


def _order(row: OutRow) -> tuple[bool, int]:
    return (row[0] is None, row[0] or 0)


def _spill(tmp: Path, name: str, rows: list[OutRow]) -> Iterable[OutRow]:
    path = tmp / f".spill-{name}.csv"
    write_spill(path, sorted(rows, key=_order))
    return read_spill(path)


def _spill_upload(
    file: FileRecord,
    plan: UploadRows,
    columns: list[str],
    tmp: Path,
    failures: list[Iterable[OutRow]],
    warnings: list[Iterable[OutRow]],
    written: Written,
) -> None:
    upload = plan.upload
    dead = upload.status in UPLOAD_DEAD
    if not dead and not (plan.failures or plan.warnings):
        return
    delimiter = delimiter_for(upload.options.get("format"))
    try:
        header, rows = read_upload(Path(upload.path), delimiter)
    except (OSError, csv.Error) as exc:
        log.warning("upload_file_unreadable", upload_id=upload.id, seq=upload.seq, error=str(exc))
        if dead:
            written.notes.append(
                f"The {upload.rows} rows of upload {upload.seq} cannot be listed: its file is gone."
            )
            return
        header, rows = list(columns), []
    positions = [header.index(c) if c in header else None for c in columns]
    if dead:
        reason = upload_reason(upload)
        lines = plan.source_rows
        out = [
            to_columns(
                MappedRow(lines[i] if i < len(lines) else None, row, reason), positions,
                len(columns),
            )
            for i, row in enumerate(rows)
        ]
        failures.append(_spill(tmp, f"dead-{upload.seq}", out))
        return
    lookup = str(upload.options.get("lookupField") or file.info.get("lookup_field") or "")
    index = RowIndex(rows, header.index(lookup) if lookup in header else None)
    for path, reason_column, streams, what in (
        (plan.failures, FAILURE_REASON, failures, "failures"),
        (plan.warnings, WARNING_REASON, warnings, "warnings"),
    ):
        if path is None:
            continue
        try:
            mapped = map_rows(
                read_reported_rows(path, header, reason_column, delimiter),
                index,
                plan.source_rows,
            )
        except csv.Error as exc:
            log.warning("results_file_unreadable", what=what, seq=upload.seq, error=str(exc))
            written.notes.append(f"The {what} file of upload {upload.seq} is unreadable.")
            continue
        unmatched = sum(1 for m in mapped if m.source_row is None)
        if unmatched:
            log.warning(
                "report_rows_unmatched", what=what, upload_id=upload.id, seq=upload.seq,
                rows=unmatched,
            )
            written.notes.append(
                f"{unmatched} {what} rows of upload {upload.seq} matched no source row "
                "(listed last, without sourceRow)."
            )
        out = [to_columns(m, positions, len(columns)) for m in mapped]
        streams.append(_spill(tmp, f"{what}-{upload.seq}", out))
