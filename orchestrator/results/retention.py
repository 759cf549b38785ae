"""Retention: what finished files leave behind is deleted once it is old enough.

``retention.<what>_days`` (fractions allowed; 0, the default, keeps forever) says how long,
counted from the file's report (``files.reported_at``), each leftover stays:

- ``archive``: the source of a ``complete`` or ``partial`` file in ``paths.archive``;
- ``rejected``: the source of a ``rejected``, ``empty`` or ``duplicate`` file in
  ``paths.rejected``;
- ``results``: the file's results folder in ``paths.results``;
- ``work``: the file's folder in ``paths.work`` (only files with an upload that failed or was
  refused at Marketo keep one, for ``leadflow retry``, which cannot work without it).

Only files in a final status whose report is written are looked at (``Store.files_to_expire``):
never an open file, never one whose report is not written yet. Only a path inside its
configured folder is deleted. Each deletion is logged (``retention_deleted``) and recorded
(``retention_deletions``), so a sweep never looks at the same leftover twice (until the file
is reported again, after ``leadflow retry``) and ``leadflow status`` can count them. The daemon
sweeps at start and every ``retention.sweep_interval_s``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import structlog

from orchestrator.models import FileRecord
from orchestrator.places import archive_name, results_dir, work_dir
from orchestrator.results.report import iso_utc
from orchestrator.settings import Settings
from orchestrator.store import Store

log = structlog.get_logger(__name__)

#: Seconds in a day (retention settings are in days).
DAY_S = 86_400.0
#: The kinds of leftovers, in the order a sweep deals with them.
KINDS = ("archive", "rejected", "results", "work")
#: Files fetched from the database at once by a sweep.
BATCH = 200


@dataclass(frozen=True, slots=True)
class Expired:
    """One leftover a sweep dealt with.

    Attributes:
        file_id: the file.
        what: ``archive``, ``rejected``, ``results`` or ``work``.
        path: the file or folder.
        deleted: True when it was deleted, False when it was already gone.
    """

    file_id: int
    what: str
    path: str
    deleted: bool


def days_of(settings: Settings) -> dict[str, float]:
    """Return ``{what: days}`` from ``retention`` (0 keeps forever)."""
    keep = settings.retention
    return {
        "archive": keep.archive_days,
        "rejected": keep.rejected_days,
        "results": keep.results_days,
        "work": keep.work_days,
    }


def leftover(settings: Settings, file: FileRecord, what: str) -> tuple[Path, Path]:
    """Return ``(path, folder)``: where a file's leftover ``what`` is and the folder it must be in.

    Raises:
        ValueError: ``what`` is not one of ``KINDS``.
    """
    paths = settings.paths
    if what in ("archive", "rejected"):
        folder = paths.archive if what == "archive" else paths.rejected
        moved = file.info.get("archived_path")
        return Path(moved or folder / archive_name(file.name, file.id)), folder
    if what == "results":
        return results_dir(paths, file.name, file.id), paths.results
    if what == "work":
        return work_dir(paths, file), paths.work
    raise ValueError(f"unknown leftover {what!r}")


def remove(path: Path, folder: Path) -> bool:
    """Delete ``path`` (a file or a folder tree) if it lies inside ``folder``.

    Returns:
        True when something was deleted; False when it was not there, or not inside
        ``folder`` (then it is left alone).

    Raises:
        OSError: the deletion failed (permissions, a busy mount, ...).
    """
    inside = Path(os.path.realpath(folder))
    parent = Path(os.path.realpath(path.parent))
    if not path.name or (parent != inside and inside not in parent.parents):
        return False
    if path.is_symlink() or path.is_file():
        path.unlink()
        return True
    if path.is_dir():
        shutil.rmtree(path)
        return True
    return False


async def sweep(settings: Settings, store: Store, now: float) -> list[Expired]:
    """Delete every leftover older than its retention; record and log each one.

    Args:
        settings: ``retention`` and ``paths``.
        store: the database.
        now: epoch seconds.

    Returns:
        What was dealt with (deleted, or found already gone), in order.

    Raises:
        StoreError, sqlite3.Error: the database failed (the daemon logs it and sweeps again
            later). A leftover that cannot be deleted is logged
            (``retention_delete_failed``) and tried again at the next sweep.
    """
    done: list[Expired] = []
    for what, days in days_of(settings).items():
        if days <= 0:
            continue
        cutoff = now - days * DAY_S
        while True:
            files = await store.files_to_expire(what, cutoff, BATCH)
            progress = 0
            for file in files:
                item = await _expire(settings, store, file, what, days, now)
                if item is not None:
                    done.append(item)
                    progress += 1
            if len(files) < BATCH or progress == 0:
                break
    return done


async def _expire(
    settings: Settings, store: Store, file: FileRecord, what: str, days: float, now: float
) -> Expired | None:
    """Deal with one leftover; None when it must wait (changed meanwhile, or not deletable)."""
    fresh = await store.get_file(file.id)
    if fresh is None or (fresh.status, fresh.reported_at) != (file.status, file.reported_at):
        return None  # retried or re-reported meanwhile: its next report starts over
    path, folder = leftover(settings, fresh, what)
    try:
        deleted = await asyncio.to_thread(remove, path, folder)
    except OSError as exc:
        log.warning("retention_delete_failed", file_id=file.id, file=file.name, what=what,
                    path=str(path), error=f"{exc.strerror or exc}")
        return None
    await store.record_expiry(file.id, what, str(path), deleted=deleted, at=now)
    if deleted:
        log.info(
            "retention_deleted", file_id=file.id, file=file.name, what=what, path=str(path),
            status=fresh.status.value, reported_at=iso_utc(fresh.reported_at), kept_days=days,
        )
    return Expired(file.id, what, str(path), deleted)
