"""``leadflow run --once``: take what is in the inbox, then tell when everything is done.

The daemon runs these while its loops run: ``drain_inbox`` scans the inbox until the files
present at start have left it (or a late scan takes nothing), and ``drained`` answers, from
the store's counts, whether every upload is terminal and every file has its report
(``reported_at`` set). Stopping is the daemon's part (``Daemon._until_drained``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog

from orchestrator.models import FILE_OPEN, UPLOAD_OPEN
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.timing import Clock, wait_any

log = structlog.get_logger(__name__)

#: Tries ``--once`` gives a file held back by an environment failure before it leaves it
#: for the next run (it stays ``received``, where it is; ``run --once`` then exits 1).
ONCE_HELD_ATTEMPTS = 3


class InboxScanner(Protocol):
    """The part of ``orchestrator.intake.Intake`` the drain uses."""

    async def scan_once(self) -> Any:
        """Claim and prepare every stable file in the inbox once; returns what was taken."""

    def held(self) -> dict[int, int]:
        """Return ``{file id: failures}`` of files held back after environment failures."""
        ...


async def drain_inbox(
    settings: Settings,
    intake: InboxScanner,
    clock: Clock,
    stop: asyncio.Event,
    on_enqueued: Callable[[], None],
) -> None:
    """Take every file in the inbox, waiting for it to be stable.

    Files are taken once stable (unchanged for ``intake.stable_s`` seconds), as in the watch
    loop, since one may still be being copied in. Scans until the files present at start
    have left the inbox, or until a scan made well after ``intake.stable_s`` takes
    nothing (whatever is left, e.g. an ignored file, is not for us), or until ``stop``;
    never while a file intake holds back after an environment failure (``intake.held()``)
    has had fewer than ``ONCE_HELD_ATTEMPTS`` tries: these scans retry it.

    Args:
        settings: every setting (``paths.inbox``, ``intake.stable_s``,
            ``intake.rescan_interval_s``).
        intake: has ``async scan_once()`` returning what it took (falsy for nothing), and
            ``held()``: ``{file id: failures}`` of the files waiting for a retry.
        clock: epoch seconds.
        stop: set to stop early.
        on_enqueued: called after every scan (wakes the scheduler and the reporter).
    """
    present = inbox_files(settings.paths.inbox)
    rescan = min(settings.intake.rescan_interval_s, max(settings.intake.stable_s / 4, 0.05))
    seen_at: float | None = None
    while not stop.is_set():
        began = clock()
        taken = await intake.scan_once()
        if seen_at is None:
            # Every file present has been seen once: it is stable stable_s after this.
            seen_at = clock()
        on_enqueued()
        held = intake.held()
        retrying = any(n < ONCE_HELD_ATTEMPTS for n in held.values())
        if not retrying and not any(path.exists() for path in present):
            break
        # This scan began after every file present could be stable (however long the
        # scans take: a scan of thousands of files may take longer than stable_s).
        settled = began - seen_at > settings.intake.stable_s + rescan
        if settled and not taken and not retrying:
            left = [str(p) for p in present if p.exists()]
            log.warning("inbox_files_left", files=left[:20], count=len(left))
            break
        await wait_any((stop,), rescan)
    log.info("inbox_drained", files=len(present))


async def drained(stores: Sequence[Store], held: Collection[int] = ()) -> bool:
    """Return whether every upload is terminal and every file has its report.

    Args:
        stores: the store seen for each Marketo instance (``Store.for_instance``; counts
            are global, files to report are each instance's).
        held: ids of files intake holds back after environment failures (``received``);
            they do not count (``--once`` leaves them for the next run).
    """
    counts = await stores[0].counts_by_status()
    if sum(counts["files"][s.value] for s in FILE_OPEN) > len(held):
        return False
    if any(counts["uploads"][s.value] for s in UPLOAD_OPEN):
        return False
    for store in stores:
        if await store.files_to_report():
            return False
    return True


def inbox_files(inbox: Path) -> list[Path]:
    """Every regular, non-hidden file under ``inbox`` (recursively), sorted; [] if no inbox."""
    if not inbox.is_dir():
        return []
    return sorted(p for p in inbox.rglob("*") if p.is_file() and not p.name.startswith("."))
