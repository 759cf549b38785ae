"""Helpers for the reporter's integration tests: prepared files in a real store, a fake client."""

from __future__ import annotations

import csv
import hashlib
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from store_helpers import enqueue_uploads, uploads_of_file

from orchestrator.models import FileRecord, FileStatus, NewPart, UploadRecord, UploadStatus
from orchestrator.settings import Settings
from orchestrator.store import Store


def render_csv(rows: Sequence[Sequence[str]], delimiter: str = ",") -> str:
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


def marketo_report(
    header: Sequence[str],
    rows: Sequence[tuple[Sequence[str], str]],
    reason_column: str,
    *,
    shuffle: bool = True,
    seed: int = 1,
) -> str:
    """A failures/warnings file as Marketo writes it (docs/reference/marketo-api.md §3.2, §8.6).

    Unordered; an empty last column (empty in every reported row) is dropped from header and rows.
    """
    cols = list(header)
    body = [list(values) for values, _ in rows]
    reasons = [reason for _, reason in rows]
    if body and all(r[-1] == "" for r in body):
        cols = cols[:-1]
        body = [r[:-1] for r in body]
    lines = [[*r, reason] for r, reason in zip(body, reasons, strict=True)]
    if shuffle:
        random.Random(seed).shuffle(lines)
    return render_csv([[*cols, reason_column], *lines])


@dataclass
class FakeClient:
    """Implements ``download_failures``/``download_warnings`` from canned texts per batchId."""

    failures: dict[int, str] = field(default_factory=dict)
    warnings: dict[int, str] = field(default_factory=dict)
    calls: list[tuple[str, int]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)

    async def _get(self, what: str, batch_id: int, dest: Path) -> bool:
        self.calls.append((what, batch_id))
        if self.errors:
            raise self.errors.pop(0)
        text = (self.failures if what == "failures" else self.warnings).get(batch_id)
        if text is None:
            return False
        dest.write_bytes(text.encode("utf-8"))
        return True

    async def download_failures(
        self, batch_id: int, kind: str, options: dict[str, Any], dest: Path
    ) -> bool:
        return await self._get("failures", batch_id, dest)

    async def download_warnings(
        self, batch_id: int, kind: str, options: dict[str, Any], dest: Path
    ) -> bool:
        return await self._get("warnings", batch_id, dest)


@dataclass
class Prepared:
    """A file as intake leaves it: source and uploads in work, uploads enqueued."""

    file: FileRecord
    uploads: list[UploadRecord]
    header: list[str]
    rows: list[list[str]]
    lines: list[int]
    work_dir: Path
    source: Path
    source_bytes: bytes


async def prepare_file(
    store: Store,
    settings: Settings,
    name: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    lines: Sequence[int] | None = None,
    chunks: Sequence[int] | None = None,
    rejections: Sequence[tuple[int, Sequence[str], str]] = (),
    source_header: Sequence[str] | None = None,
    source_text: str | None = None,
    route: str | None = None,
    lookup: str = "email",
) -> Prepared:
    """Record a file and enqueue its uploads the way intake does (design.md "Intake").

    ``rows`` are the rows sent (rejected rows excluded); ``lines`` their source line numbers
    (default: consecutive from 2); ``chunks`` rows per upload (default: one upload).
    """
    lines = list(lines) if lines is not None else list(range(2, len(rows) + 2))
    chunks = list(chunks) if chunks is not None else ([len(rows)] if rows else [])
    assert sum(chunks) == len(rows) == len(lines)
    pending = settings.paths.work / f"claim-{name}"
    file = await store.add_file(
        name=name,
        inbox_path=str(settings.paths.inbox / name),
        work_path=str(pending),
        route=route,
        size_bytes=None,
    )
    work_dir = settings.paths.work / str(file.id)
    source = work_dir / "source" / name
    source.parent.mkdir(parents=True)
    text = source_text if source_text is not None else render_csv(
        [list(source_header or header), *rows]
    )
    source.write_bytes(text.encode("utf-8"))
    new_uploads: list[NewPart] = []
    at = 0
    for seq, size in enumerate(chunks, start=1):
        path = work_dir / f"upload-{seq:04d}.csv"
        path.write_bytes(render_csv([list(header), *rows[at : at + size]]).encode("utf-8"))
        new_uploads.append(
            NewPart(
                path=str(path),
                size_bytes=path.stat().st_size,
                source_rows=lines[at : at + size],
                options={"format": "csv", "lookupField": lookup},
            )
        )
        at += size
    rejections_path = work_dir / "rejections.csv"
    if rejections:
        rejections_path.write_bytes(
            render_csv(
                [["sourceRow", *header, "Import Failure Reason"]]
                + [[str(line), *fields, reason] for line, fields, reason in rejections]
            ).encode("utf-8")
        )
    info = {
        "work_dir": str(work_dir),
        "source_path": str(source),
        "header": list(header),
        "source_header": list(source_header or header),
        "delimiter": ",",
        "format": "csv",
        "lookup_field": lookup,
        "duplicates": [],
        "rejections_path": str(rejections_path),
    }
    await enqueue_uploads(store, 
        file.id,
        new_uploads,
        new_status=FileStatus.QUEUED if new_uploads else FileStatus.REPORTING,
        work_path=str(source),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        rows_total=len(rows) + len(rejections),
        rows_rejected=len(rejections),
        encoding="utf-8",
        format="csv",
        info=info,
    )
    record = await store.get_file(file.id)
    assert record is not None
    return Prepared(
        record, await uploads_of_file(store, file.id), list(header), [list(r) for r in rows],
        lines, work_dir, source, text.encode("utf-8"),
    )


async def end_upload(
    store: Store,
    upload: UploadRecord,
    status: UploadStatus = UploadStatus.COMPLETE,
    *,
    batch_id: int | None = None,
    failed: int = 0,
    warned: int = 0,
    processed: int | None = None,
    message: str | None = None,
    error_code: str | None = None,
    error: str | None = None,
) -> UploadRecord:
    """Claim an upload and end it as Marketo would have (submitting -> terminal)."""
    claimed = await store.claim_next()
    assert claimed is not None and claimed.id == upload.id, "claim uploads in FIFO order"
    if processed is None:
        processed = upload.rows - failed
    changes: dict[str, Any] = {"attempts": 1}
    if status is UploadStatus.COMPLETE:
        changes.update(
            batch_id=batch_id or 1000 + upload.id,
            marketo_status="Complete",
            num_leads_processed=processed,
            num_rows_failed=failed,
            num_rows_with_warning=warned,
            message=message or f"Import completed, {processed} records imported",
        )
    elif status is UploadStatus.FAILED:
        changes.update(
            batch_id=batch_id or 1000 + upload.id,
            marketo_status="Failed",
            num_leads_processed=0,
            num_rows_failed=0,
            num_rows_with_warning=0,
            message=message or "Import failed: simulated failure",
            batch_failures=3,
        )
    else:
        changes.update(error_code=error_code or "1006", error=error or "Field 'x' not found")
    return await store.transition_upload(upload.id, UploadStatus.SUBMITTING, status, **changes)


def read_csv(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))

