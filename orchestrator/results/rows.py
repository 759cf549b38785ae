"""Building one file's failures.csv and warnings.csv from its parts and local rejections.

Runs in a worker thread (blocking file I/O). Each source of rows is a spill file sorted by
source row (memory stays bounded by one part, under 10 MB, however large the file was); the
spills are merged by source row number:

- intake's ``rejections.csv`` (rows never sent);
- for each part in a complete upload, the split files the reporter wrote when it split the
  batch's failures and warnings between the files that rode in it (``results/split.py``):
  only this file's rows, with its source row numbers;
- for each part whose upload failed or was rejected at Marketo, every one of its rows (read
  from the part's own prepared file), with the upload's error as the reason.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from orchestrator.models import FileRecord
from orchestrator.results.report import Ride, upload_reason
from orchestrator.results.source_rows import MappedRow, read_upload
from orchestrator.results.split import part_folder, read_split_meta, split_name
from orchestrator.results.write import (
    OutRow,
    merge_csv,
    read_rejections,
    read_spill,
    to_columns,
    write_spill,
)

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class PartRows:
    """Where one part's reported rows come from.

    Attributes:
        ride: the part and its upload (complete, failed or rejected).
        source_rows: its source line numbers (needed for a part of a dead upload).
    """

    ride: Ride
    source_rows: list[int] = field(default_factory=list)


@dataclass(slots=True)
class Written:
    """What ``write_rows`` wrote: row counts and sentences for the report's ``error``."""

    failures: int = 0
    warnings: int = 0
    notes: list[str] = field(default_factory=list)


def output_columns(file: FileRecord, plans: Sequence[PartRows]) -> tuple[list[str], list[str]]:
    """Return ``(columns, labels)``: REST names in source order and the source's header names.

    ``columns`` come from intake's ``info["header"]`` (else the first readable part);
    ``labels`` are ``info["source_header"]`` when it has one name per column, else ``columns``.
    """
    columns = [str(c) for c in file.info.get("header") or []]
    if not columns:
        for plan in plans:
            try:
                columns = read_upload(Path(plan.ride.part.path))[0]
            except (OSError, csv.Error):
                continue
            break
    source = [str(c) for c in file.info.get("source_header") or []]
    labels = source if len(source) == len(columns) else columns
    return columns, labels


def write_rows(
    file: FileRecord, plans: Sequence[PartRows], tmp: Path, rejections: Path
) -> Written:
    """Write ``failures.csv`` and ``warnings.csv`` into the fresh folder ``tmp``.

    Each is written only when it has rows. ``tmp`` is emptied first (a crash may have left it).

    Args:
        file: the file (its ``info`` gives the header, the delimiter and the lookup field).
        plans: one entry per part of the file.
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
        if plan.ride.dead:
            _spill_dead(plan, columns, tmp, failures, written)
        else:
            _from_split(plan, columns, tmp, failures, warnings, written)
    written.failures = merge_csv(tmp / "failures.csv", labels, failures)
    written.warnings = merge_csv(tmp / "warnings.csv", labels, warnings)
    for spill in tmp.glob(".spill-*"):
        spill.unlink()
    return written


def _positions(header: Sequence[str], columns: Sequence[str]) -> list[int | None]:
    return [header.index(c) if c in header else None for c in columns]


def _spill(tmp: Path, name: str, rows: list[OutRow]) -> Iterable[OutRow]:
    path = tmp / f".spill-{name}.csv"
    write_spill(path, sorted(rows, key=lambda r: (r[0] is None, r[0] or 0)))
    return read_spill(path)


def _spill_dead(
    plan: PartRows,
    columns: list[str],
    tmp: Path,
    failures: list[Iterable[OutRow]],
    written: Written,
) -> None:
    """Every row of a part whose upload failed or was rejected, from the part's own file."""
    part, upload = plan.ride.part, plan.ride.upload
    try:
        header, rows = read_upload(Path(part.path))
    except (OSError, csv.Error) as exc:
        log.warning("upload_file_unreadable", part_id=part.id, seq=part.seq, error=str(exc))
        written.notes.append(
            f"The {part.rows} rows of upload {part.seq} cannot be listed: its file is gone."
        )
        return
    positions = _positions(header, columns)
    reason = upload_reason(upload, part.seq)
    lines = plan.source_rows
    out = [
        to_columns(MappedRow(lines[i] if i < len(lines) else None, row, reason), positions,
                   len(columns))
        for i, row in enumerate(rows)
    ]
    failures.append(_spill(tmp, f"dead-{part.seq}", out))


def _from_split(
    plan: PartRows,
    columns: list[str],
    tmp: Path,
    failures: list[Iterable[OutRow]],
    warnings: list[Iterable[OutRow]],
    written: Written,
) -> None:
    """This file's rows of a complete batch, as the split left them in its work folder."""
    part = plan.ride.part
    meta = read_split_meta(part)
    if meta is None:
        return
    written.notes.extend(str(n) for n in meta.get("notes") or [])
    positions = _positions([str(c) for c in meta.get("header") or []], columns)
    assert part.upload_id is not None
    folder = part_folder(part)
    for what, streams in (("failures", failures), ("warnings", warnings)):
        if not meta.get(what):
            continue
        path = folder / split_name(part.upload_id, what)
        out = [
            to_columns(MappedRow(line, values, reason), positions, len(columns))
            for line, values, reason in read_spill(path)
        ]
        streams.append(_spill(tmp, f"{what}-{part.seq}", out))
