"""What the window answers: health, readiness, status, a file's progress and its reports.

Pure reads of the daemon's state and of the store; the HTTP plumbing (routes, limits, the
token) is in ``server.py``. Report files are served only from ``paths.results``: a file's
folder is derived from its id and name in the database, the file name is one of
`REPORT_FILES`, and the resolved path must still lie inside the results folder (a symlink
pointing out is refused like a missing file).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator.marketo.tokens import refused_message
from orchestrator.models import UPLOAD_TERMINAL, FileRecord, PartRecord, UploadRecord
from orchestrator.places import results_dir_name
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.timing import quota_day
from orchestrator.window.metrics import DaemonMetrics, Live

#: The files of a results folder that can be downloaded, with their content types.
REPORT_FILES = {
    "report.json": "application/json",
    "failures.csv": "text/csv",
    "warnings.csv": "text/csv",
}
#: Seconds the store gets to answer ``/readyz``'s query before it counts as not answering.
STORE_TIMEOUT_S = 2.0


class DaemonView(Protocol):
    """The part of ``orchestrator.daemon.Daemon`` the window reads (never changes)."""

    settings: Settings
    store: Store
    metrics: DaemonMetrics
    #: ``starting`` (recovering), ``running`` (loops run) or ``stopping``.
    phase: str
    @property
    def gate(self) -> Any:
        """The first instance's ``AuthGate`` (``open``, ``refusal``, ``url``)."""

    @property
    def client(self) -> Any:
        """The first instance's ``MarketoClient`` (``governor``), or a test double."""

    def clock(self) -> float:
        """Epoch seconds."""
        ...

    def dead_loops(self) -> list[str]:
        """Names of the daemon's loops that ended while the daemon runs."""
        ...


def live_of(daemon: DaemonView) -> Live:
    """Read the daemon's live state: the window, quota pause, credentials, reachability."""
    governor = getattr(daemon.client, "governor", None)
    now = daemon.clock()
    quota = getattr(governor, "quota", None)
    return Live(
        calls_in_window=governor.calls_in_window() if governor is not None else 0,
        calls_per_20s=daemon.settings.limits.calls_per_20s,
        quota_paused=quota is not None and quota.resume_at > now,
        credentials_refused=not daemon.gate.open.is_set(),
        marketo_reachable=daemon.metrics.marketo_reachable,
    )


def liveness(daemon: DaemonView) -> tuple[bool, dict[str, Any]]:
    """``/livez``: alive while every loop runs (needs nothing outside the process)."""
    dead = daemon.dead_loops()
    if dead:
        return False, {"alive": False, "phase": daemon.phase, "dead_loops": dead}
    return True, {"alive": True, "phase": daemon.phase}


async def readiness(daemon: DaemonView) -> tuple[bool, dict[str, Any]]:
    """``/readyz``: ready when running, the store answers, credentials work, nothing paused.

    Returns:
        ``(ready, body)``; ``body["reason"]`` is one of ``starting``, ``stopping``,
        ``store_not_answering``, ``credentials_refused``, ``paused_quota``,
        ``marketo_unreachable`` when not ready, with a ``message`` for people.
    """
    if daemon.phase != "running":
        message = ("recovering what the previous run left" if daemon.phase == "starting"
                   else "the daemon is stopping")
        return False, {"ready": False, "reason": daemon.phase, "message": message}
    now = daemon.clock()
    try:
        await asyncio.wait_for(daemon.store.calls_on(quota_day(now)), STORE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any failure of the store means not ready
        return False, {"ready": False, "reason": "store_not_answering",
                       "message": f"the database did not answer: {type(exc).__name__}"}
    live = live_of(daemon)
    if live.credentials_refused:
        refusal = daemon.gate.refusal
        message = (refused_message(refusal, daemon.gate.url) if refusal is not None
                   else "Marketo refused the client id/secret")
        return False, {"ready": False, "reason": "credentials_refused", "message": message}
    if live.quota_paused:
        quota = daemon.client.governor.quota
        return False, {
            "ready": False, "reason": "paused_quota", "resume_at": quota.resume_at,
            "message": f"the daily call quota is used up ({quota.reason}); calls resume at "
                       "midnight America/Chicago",
        }
    if not live.marketo_reachable:
        return False, {"ready": False, "reason": "marketo_unreachable",
                       "message": f"the last {daemon.metrics.failures_in_a_row} calls to "
                                  "Marketo got no answer"}
    return True, {"ready": True}


@dataclass(frozen=True, slots=True)
class Progress:
    """How far one file got.

    A file's "uploads" are its parts: its rows in one upload each (an upload may carry other
    files' rows too); a part waiting for a pack has no upload yet.

    Attributes:
        uploads_done: parts whose upload is terminal (complete, failed, rejected).
        uploads_total: the file's parts.
        rows_imported: rows Marketo processed so far (warned rows included).
        rows_failed: rows Marketo failed so far.
        rows_warned: rows imported with a warning so far.
    """

    uploads_done: int
    uploads_total: int
    rows_imported: int
    rows_failed: int
    rows_warned: int


def progress_of(parts: list[PartRecord], uploads: list[UploadRecord]) -> Progress:
    """Sum a file's parts: done/total and its own row counters so far.

    A part's own counters are set once its batch was split between its files; before that,
    an upload that carries only this part gives Marketo's counters.

    Args:
        parts: the file's parts (``Store.parts_of_file``).
        uploads: the uploads they ride in (``Store.uploads_of_file``).
    """
    by_id = {u.id: u for u in uploads}
    done = imported = failed = warned = 0
    for part in parts:
        upload = by_id.get(part.upload_id) if part.upload_id is not None else None
        if upload is None:
            continue
        done += upload.status in UPLOAD_TERMINAL
        if part.num_leads_processed is not None:
            imported += part.num_leads_processed
            failed += part.num_rows_failed or 0
            warned += part.num_rows_with_warning or 0
        elif upload.rows == part.rows:  # alone in its upload: Marketo's counters are its own
            imported += upload.num_leads_processed or 0
            failed += upload.num_rows_failed or 0
            warned += upload.num_rows_with_warning or 0
    return Progress(done, len(parts), imported, failed, warned)


async def file_progress(store: Store, file_id: int) -> tuple[Progress, dict[str, int]]:
    """Return a file's ``progress_of`` and its parts by upload status (``waiting``: no upload)."""
    parts = await store.parts_of_file(file_id)
    uploads = await store.uploads_of_file(file_id)
    by_id = {u.id: u for u in uploads}
    by_status: dict[str, int] = {}
    for part in parts:
        upload = by_id.get(part.upload_id) if part.upload_id is not None else None
        status = upload.status.value if upload is not None else "waiting"
        by_status[status] = by_status.get(status, 0) + 1
    return progress_of(parts, uploads), by_status


def report_path(settings: Settings, file: FileRecord, name: str) -> Path | None:
    """Return the path of a report file of ``file`` inside ``paths.results``, or None.

    None when ``name`` is not one of `REPORT_FILES`, the file is not reported yet, or the
    resolved path is not a regular file inside the results folder. Blocking (file system).
    """
    if name not in REPORT_FILES or file.reported_at is None:
        return None
    root = settings.paths.results.resolve()
    path = (root / results_dir_name(file.name, file.id) / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def report_links(settings: Settings, file: FileRecord) -> dict[str, str]:
    """Return ``{name: url}`` for the report files ``file`` has (blocking: file system)."""
    return {
        name: f"/api/files/{file.id}/{name}"
        for name in REPORT_FILES
        if report_path(settings, file, name) is not None
    }


async def file_view(store: Store, settings: Settings, file_id: int) -> dict[str, Any] | None:
    """``/api/files/{file_id}``: the file, its progress, and its reports when finished.

    Returns:
        None for an unknown id; else ``{id, name, status, route, error, received_at,
        finished_at, reported_at, rows: {total, rejected, imported, failed, warned},
        uploads: {done, total, by_status}, reports: {name: url}}`` (``uploads`` counts the
        file's parts, ``by_status`` by their upload's status or ``waiting`` for a pack;
        ``reports`` is empty until the file is reported).
    """
    file = await store.get_file(file_id)
    if file is None:
        return None
    progress, by_status = await file_progress(store, file_id)
    links = await asyncio.to_thread(report_links, settings, file)
    return {
        "id": file.id,
        "name": file.name,
        "status": file.status.value,
        "route": file.route,
        "error": file.error,
        "received_at": file.received_at,
        "finished_at": file.finished_at,
        "reported_at": file.reported_at,
        "rows": {
            "total": file.rows_total,
            "rejected": file.rows_rejected,
            "imported": progress.rows_imported,
            "failed": progress.rows_failed,
            "warned": progress.rows_warned,
        },
        "uploads": {
            "done": progress.uploads_done,
            "total": progress.uploads_total,
            "by_status": by_status,
        },
        "reports": links,
    }
