"""Live progress of the demo, read from the daemon's database.

`read_progress` takes one snapshot from the `Store` (files by status, uploads done/total, rows
imported); `ProgressView` shows snapshots: a live table on a terminal, or one plain line per
change (at most every few seconds) when the output is a pipe or a file.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.models import UPLOAD_AT_MARKETO, UPLOAD_TERMINAL, FileStatus, UploadRecord
from orchestrator.store import Store

#: Seconds between two plain progress lines when the output is not a terminal.
PLAIN_EVERY_S = 2.0

_STYLE = {
    "complete": "green", "partial": "yellow", "rejected": "red", "empty": "dim",
    "duplicate": "dim", "queued": "cyan", "reporting": "magenta", "received": "blue",
}


@dataclass(frozen=True, slots=True)
class FileProgress:
    """One file as the database sees it."""

    file_id: int
    name: str
    status: str
    #: Results written and the source moved (the file is finished).
    reported: bool
    uploads_done: int
    uploads_total: int
    #: Uploads Marketo holds right now (queued or importing there).
    at_marketo: int
    #: Data rows in the file (known once prepared).
    rows_total: int
    #: Rows Marketo has processed so far (imported, including warned, plus failed).
    rows_processed: int
    rows_imported: int
    rows_rejected: int


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of every file.

    Attributes:
        files: each file (its ``uploads_*`` count its parts: its rows in one job each).
        jobs: ``(terminal, formed, at Marketo)`` over the distinct uploads (Marketo jobs),
            or None to sum the files' figures (a job shared by several files then counts once
            per file).
    """

    files: tuple[FileProgress, ...]
    jobs: tuple[int, int, int] | None = None

    @property
    def finished(self) -> int:
        """Files whose results are written."""
        return sum(f.reported for f in self.files)

    @property
    def uploads(self) -> tuple[int, int]:
        """(terminal uploads, all uploads): Marketo jobs, each counted once."""
        if self.jobs is not None:
            return self.jobs[0], self.jobs[1]
        return (sum(f.uploads_done for f in self.files), sum(f.uploads_total for f in self.files))

    @property
    def at_marketo(self) -> int:
        """Our jobs queued-or-importing at Marketo."""
        if self.jobs is not None:
            return self.jobs[2]
        return sum(f.at_marketo for f in self.files)

    @property
    def rows_imported(self) -> int:
        """Rows imported so far over all files."""
        return sum(f.rows_imported for f in self.files)

    def by_status(self) -> dict[str, int]:
        """Number of files in each status."""
        return dict(Counter(f.status for f in self.files))


async def read_progress(store: Store) -> Progress:
    """Take one snapshot of every file and its uploads from ``store``."""
    files: list[FileProgress] = []
    uploads: dict[int, UploadRecord | None] = {}
    for status in FileStatus:
        for rec in await store.files_in(status):
            parts = await store.parts_of_file(rec.id)
            statuses = []
            imported = failed = 0
            for part in parts:
                if part.upload_id is not None and part.upload_id not in uploads:
                    uploads[part.upload_id] = await store.get_upload(part.upload_id)
                upload = uploads.get(part.upload_id) if part.upload_id is not None else None
                statuses.append(upload.status if upload is not None else None)
                if part.num_leads_processed is not None or upload is None:
                    imported += part.num_leads_processed or 0
                    failed += part.num_rows_failed or 0
                elif upload.rows == part.rows:  # its upload carries it alone: live counters
                    imported += upload.num_leads_processed or 0
                    failed += upload.num_rows_failed or 0
            files.append(FileProgress(
                file_id=rec.id,
                name=_display_name(rec.name, rec.route),
                status=rec.status.value,
                reported=rec.reported_at is not None,
                uploads_done=sum(s in UPLOAD_TERMINAL for s in statuses),
                uploads_total=len(parts),
                at_marketo=sum(s in UPLOAD_AT_MARKETO for s in statuses),
                rows_total=rec.rows_total,
                rows_processed=imported + failed,
                rows_imported=imported,
                rows_rejected=rec.rows_rejected,
            ))
    files.sort(key=lambda f: f.file_id)
    formed = [u for u in uploads.values() if u is not None]
    jobs = (
        sum(u.status in UPLOAD_TERMINAL for u in formed),
        len(formed),
        sum(u.status in UPLOAD_AT_MARKETO for u in formed),
    )
    return Progress(tuple(files), jobs)


def _display_name(name: str, route: str | None) -> str:
    return f"{route}/{name}" if route and "/" not in name else name


def progress_line(progress: Progress, elapsed_s: float, expected: int) -> str:
    """One plain line: files finished, statuses, uploads, Marketo's queue, rows imported."""
    done, total = progress.uploads
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(progress.by_status().items()))
    return (
        f"[{elapsed_s:5.1f}s] files {progress.finished}/{expected} finished"
        f" ({statuses or 'none yet'}); uploads {done}/{total} done, {progress.at_marketo} at"
        f" Marketo; rows imported {progress.rows_imported:,}"
    )


def render_progress(progress: Progress, elapsed_s: float, expected: int) -> RenderableType:
    """A table with one line and a bar per file, under a headline of the totals."""
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("file", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("uploads", justify="right")
    table.add_column("rows", justify="right")
    table.add_column("", width=30)
    for f in progress.files:
        total = max(f.rows_total - f.rows_rejected, 0)
        done = f.rows_total if f.reported else min(f.rows_processed, total)
        bar = ProgressBar(total=max(f.rows_total if f.reported else total, 1),
                          completed=done if total else (1 if f.reported else 0), width=30)
        table.add_row(
            f.name,
            Text(f.status, style=_STYLE.get(f.status, "")),
            f"{f.uploads_done}/{f.uploads_total}",
            f"{f.rows_processed:,}/{f.rows_total:,}",
            bar,
        )
    return Group(Text(progress_line(progress, elapsed_s, expected), style="bold"), table)


class ProgressView:
    """Shows progress snapshots: a live table on a terminal, plain lines otherwise.

    Args:
        console: where to draw.
        expected: number of files the demo dropped (for "3/8 finished").
    """

    def __init__(self, console: Console, expected: int) -> None:
        self.console = console
        self.expected = expected
        self.started = time.monotonic()
        self._live: Live | None = None
        self._last_line = ""
        self._last_at = 0.0

    def __enter__(self) -> Self:
        if self.console.is_terminal:
            self._live = Live(
                Text("starting the daemon..."), console=self.console, refresh_per_second=4,
                transient=False,
            )
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def update(self, progress: Progress, *, final: bool = False) -> None:
        """Show a snapshot (a plain line only when it changed and a few seconds passed)."""
        elapsed = time.monotonic() - self.started
        if self._live is not None:
            self._live.update(render_progress(progress, elapsed, self.expected), refresh=final)
            return
        line = progress_line(progress, elapsed, self.expected)
        key = line.split("]", 1)[1]
        now = time.monotonic()
        if key != self._last_line and (final or now - self._last_at >= PLAIN_EVERY_S):
            self.console.print(line, highlight=False, soft_wrap=True)
            self._last_line, self._last_at = key, now
