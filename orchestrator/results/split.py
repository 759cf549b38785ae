"""Splitting one batch's failures and warnings between the files that rode in it.

An upload (one Marketo job) carries one or more parts: ranges of rows of different files, in
row order (``parts.first_row``). Marketo's failures and warnings files of the batch (contract
3.2, 3.3) are fetched once by the reporter; here each reported row is matched to a row of the
upload (``source_rows.map_rows``: by all values, then by lookup value), hence to the part whose
range holds that row and to its source line. Blocking file I/O: run it in a worker thread.

For each part with rows it writes, into its file's work folder (the folder of the part's own
prepared file), under temporary names then renamed:

- ``split-<upload id>-failures.csv`` / ``-warnings.csv``: spill files (``results.write``
  format: source row, reason, values in the upload's column order), sorted by source row;
- ``split-<upload id>.json``: ``header`` (the upload's columns), ``failures``, ``warnings``
  and ``notes`` (sentences for the file's report).

Counts: a one-part upload keeps Marketo's counters as they are. In a shared batch each part
gets its own: ``failed`` = its failure rows, ``warned`` = its warning rows, ``processed`` =
``rows - failed``. A reported row that matches no row of the upload cannot be placed: it is
given to the first part (listed last, without a source row) with a note. When Marketo's file
is missing or unreadable, the batch's counters are given to the first part and every file of
the batch gets a note.
"""

from __future__ import annotations

import bisect
import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from orchestrator.models import PartRecord, UploadRecord
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
from orchestrator.results.write import OutRow, write_spill

log = structlog.get_logger(__name__)

#: What Marketo reports, and the reason column of its file.
KINDS = (("failures", FAILURE_REASON), ("warnings", WARNING_REASON))


def split_name(upload_id: int, what: str) -> str:
    """Return the name of a part's split file: ``split-<id>-<what>.csv`` or ``split-<id>.json``."""
    return f"split-{upload_id}.json" if what == "json" else f"split-{upload_id}-{what}.csv"


def part_folder(part: PartRecord) -> Path:
    """Return the work folder of a part's file (where its prepared file is)."""
    return Path(part.path).parent


@dataclass(slots=True)
class PartSplit:
    """What one part got of a batch's reported rows.

    Attributes:
        part: the part.
        processed, failed, warned: its own counts in the batch.
        failures, warnings: its rows (source row, reason, values in the upload's order).
        notes: sentences for its file's report.
    """

    part: PartRecord
    processed: int = 0
    failed: int = 0
    warned: int = 0
    failures: list[OutRow] = field(default_factory=list)
    warnings: list[OutRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def split_batch(
    upload: UploadRecord,
    parts: Sequence[PartRecord],
    source_rows: dict[int, list[int]],
    downloads: dict[str, Path | None],
) -> tuple[list[str], list[PartSplit]]:
    """Assign a complete batch's reported rows and counts to its parts (blocking).

    Args:
        upload: the complete upload (Marketo's counters of the whole batch).
        parts: its parts, in row order (``first_row``).
        source_rows: source line numbers per part id (needed only when rows were reported).
        downloads: ``{"failures": path or None, "warnings": path or None}``: Marketo's files
            fetched for the batch; None when there was none to fetch or it was missing.

    Returns:
        ``(header, splits)``: the upload's columns and one ``PartSplit`` per part.

    Raises:
        OSError: the upload file cannot be read (the caller retries later).
    """
    splits = [PartSplit(p) for p in parts]
    batch_failed = upload.num_rows_failed or 0
    batch_warned = upload.num_rows_with_warning or 0
    wanted = {"failures": batch_failed > 0, "warnings": batch_warned > 0}
    header: list[str] = []
    index: RowIndex | None = None
    delimiter = delimiter_for(upload.options.get("format"))
    if any(downloads.get(what) for what in wanted):
        header, upload_rows = read_upload(Path(upload.path), delimiter)
        lookup = str(upload.options.get("lookupField") or "")
        index = RowIndex(upload_rows, header.index(lookup) if lookup in header else None)
    starts = [p.first_row or 0 for p in parts]
    counted = {"failures": [0] * len(parts), "warnings": [0] * len(parts)}
    shared = len(parts) > 1
    for what, reason_column in KINDS:
        path = downloads.get(what)
        if not wanted[what]:
            continue
        if path is None or index is None:
            _missing(splits, what, upload, batch_failed if what == "failures" else batch_warned)
            continue
        try:
            mapped = map_rows(read_reported_rows(path, header, reason_column, delimiter), index,
                              _positions_source(len(index.rows), parts, source_rows))
        except csv.Error as exc:
            log.warning("results_file_unreadable", what=what, upload_id=upload.id,
                        error=str(exc))
            note = f"The {what} file of batch {upload.batch_id} is unreadable."
            for split in splits:
                split.notes.append(note)
            continue
        _assign(splits, starts, mapped, what, counted[what], upload)
    for i, split in enumerate(splits):
        size = split.part.rows
        if not shared:
            split.failed = batch_failed
            split.warned = batch_warned
            processed = upload.num_leads_processed
            split.processed = processed if processed is not None else max(size - batch_failed, 0)
            continue
        split.failed = min(counted["failures"][i] + split.failed, size)
        split.warned = min(counted["warnings"][i] + split.warned, size)
        split.processed = size - split.failed
    return header, splits


def _positions_source(
    total: int, parts: Sequence[PartRecord], source_rows: dict[int, list[int]]
) -> list[int]:
    """Source line per upload row (0 where a part's numbers are missing)."""
    lines = [0] * total
    for part in parts:
        start = part.first_row or 0
        numbers = source_rows.get(part.id, [])
        for offset, line in enumerate(numbers[: part.rows]):
            if start + offset < total:
                lines[start + offset] = line
    return lines


def _assign(
    splits: list[PartSplit],
    starts: list[int],
    mapped: list[MappedRow],
    what: str,
    counts: list[int],
    upload: UploadRecord,
) -> None:
    """Give each mapped row to the part whose range holds it (unmatched: the first part)."""
    unmatched = 0
    for row in mapped:
        if row.position is None:
            part_index = 0
            unmatched += 1
        else:
            part_index = max(bisect.bisect_right(starts, row.position) - 1, 0)
        out: OutRow = (row.source_row, row.values, row.reason)
        (splits[part_index].failures if what == "failures"
         else splits[part_index].warnings).append(out)
        counts[part_index] += 1
    if unmatched:
        log.warning("report_rows_unmatched", what=what, upload_id=upload.id,
                    batch_id=upload.batch_id, rows=unmatched)
        splits[0].notes.append(
            f"{unmatched} {what} rows of batch {upload.batch_id} matched no source row "
            "(listed last, without sourceRow)."
        )


def _missing(splits: list[PartSplit], what: str, upload: UploadRecord, count: int) -> None:
    """Marketo no longer has the batch's file: counts to the first part, a note to every file."""
    if what == "failures":
        splits[0].failed += count
    else:
        splits[0].warned += count
    shared = len(splits) > 1
    note = (
        f"Marketo's {what} file of batch {upload.batch_id} was not available: its "
        f"{count} {what} rows cannot be listed"
        + ("; they are counted in the first file of the batch." if shared else ".")
    )
    for split in splits:
        split.notes.append(note)


def write_splits(upload: UploadRecord, header: list[str], splits: Sequence[PartSplit]) -> int:
    """Write each part's split files into its file's work folder (blocking; idempotent).

    Only parts with rows or notes get files. Each file is written under a temporary name and
    renamed, so a crash leaves either the old or the new one.

    Returns:
        How many parts got files.

    Raises:
        OSError: a work folder is not writable.
    """
    written = 0
    for split in splits:
        if not (split.failures or split.warnings or split.notes):
            continue
        folder = part_folder(split.part)
        folder.mkdir(parents=True, exist_ok=True)
        for what, rows in (("failures", split.failures), ("warnings", split.warnings)):
            if rows:
                rows.sort(key=lambda r: (r[0] is None, r[0] or 0))
                _replace(folder / split_name(upload.id, what),
                         lambda tmp, rows=rows: write_spill(tmp, rows))
        meta: dict[str, Any] = {
            "header": header,
            "failures": len(split.failures),
            "warnings": len(split.warnings),
            "notes": split.notes,
        }
        _replace(folder / split_name(upload.id, "json"),
                 lambda tmp, meta=meta: tmp.write_text(json.dumps(meta), encoding="utf-8"))
        written += 1
    return written


def _replace(dest: Path, write: Any) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    write(tmp)
    os.replace(tmp, dest)


def read_split_meta(part: PartRecord) -> dict[str, Any] | None:
    """Return a part's ``split-<upload id>.json`` (header, counts, notes), or None."""
    if part.upload_id is None:
        return None
    path = part_folder(part) / split_name(part.upload_id, "json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return data if isinstance(data, dict) else None
