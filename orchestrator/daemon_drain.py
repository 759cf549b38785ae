"""``leadflow run --once``: take what is in the inbox, then tell when everything is done.

The daemon runs these while its loops run: ``drain_inbox`` scans the inbox until the files
present at start have left it (or a late scan takes nothing), and ``drained`` answers, from
the store's counts, whether every upload is terminal and every file has its report
(``reported_at`` set). Stopping is the daemon's part (``Daemon._until_drained``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from orchestrator.models import FILE_TERMINAL, UPLOAD_TERMINAL, FileStatus, UploadStatus
from orchestrator.scheduler import wait_any
from orchestrator.settings import Settings
from orchestrator.store import Store

log = structlog.get_logger(__name__)

#: File statuses that still have work ahead of them (received, queued, reporting).
FILES_OPEN = tuple(s for s in FileStatus if s not in FILE_TERMINAL)
#: Upload statuses that still have work ahead of them (queued, submitting, submitted,
#: importing).
UPLOADS_OPEN = tuple(s for s in UploadStatus if s not in UPLOAD_TERMINAL)


async def drain_inbox(
    settings: Settings,
    intake: Any,
    clock: Callable[[], float],
    stop: asyncio.Event,
    on_enqueued: Callable[[], None],
) -> None:
    """Take every file in the inbox, waiting for it to be stable.

    Files are taken once stable (unchanged for ``intake.stable_s`` seconds), as in the watch
    loop, since one may still be being copied in. Scans until the files present at start
    have left the inbox, or until a scan made well after ``intake.stable_s`` takes
    nothing (whatever is left, e.g. an ignored file, is not for us), or until ``stop``;
    never while intake holds files back after an environment failure (``intake.holding()``,
    if it has one): they are retried by these scans.

    Args:
        settings: every setting (``paths.inbox``, ``intake.stable_s``,
            ``intake.rescan_interval_s``).
        intake: has ``async scan_once()`` returning what it took (falsy for nothing), and
            may have ``holding()``: how many files wait for a retry.
        clock: epoch seconds.
        stop: set to stop early.
        on_enqueued: called after every scan (wakes the scheduler and the reporter).
    """
    start = clock()
    present = inbox_files(settings.paths.inbox)
    rescan = min(settings.intake.rescan_interval_s, max(settings.intake.stable_s / 4, 0.05))
    holding = getattr(intake, "holding", None)
    while not stop.is_set():
        taken = await intake.scan_once()
        on_enqueued()
        held = holding() if holding is not None else 0
        if not held and not any(path.exists() for path in present):
            break
        settled = clock() - start > settings.intake.stable_s + 2 * rescan
        if settled and not taken and not held:
            left = [str(p) for p in present if p.exists()]
            log.warning("inbox_files_left", files=left[:20], count=len(left))
            break
        await wait_any((stop,), rescan)
    log.info("inbox_drained", files=len(present))


async def drained(store: Store) -> bool:
    """Return whether every upload is terminal and every file has its report."""
    counts = await store.counts_by_status()
    if any(counts["files"][s.value] for s in FILES_OPEN):
        return False
    if any(counts["uploads"][s.value] for s in UPLOADS_OPEN):
        return False
    return not await store.files_to_report()


def inbox_files(inbox: Path) -> list[Path]:
    """Every regular, non-hidden file under ``inbox`` (recursively), sorted; [] if no inbox."""
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.rglob("*") if p.is_file() and not p.name.startswith("."))
