"""The watch loop: ``watchfiles`` events plus full rescans, until the stop event is set.

Events only make a scan happen sooner (and mark files moved in complete); the full rescan
every ``intake.rescan_interval_s`` is what finds files on network shares, which send no
events. If the watcher cannot run (no inotify, permissions), the loop goes on with rescans.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any, Protocol

import structlog
from watchfiles import Change, awatch

from orchestrator.intake.watcher import StabilityTracker, moved_in_paths
from orchestrator.settings import Settings
from orchestrator.timing import Clock

log = structlog.get_logger(__name__)


class Watched(Protocol):
    """What the loop drives: ``service.Intake``."""

    @property
    def settings(self) -> Settings:
        """``paths.inbox``, ``intake.stable_s``, ``intake.rescan_interval_s``."""
        ...

    @property
    def clock(self) -> Clock:
        """Epoch seconds."""
        ...

    @property
    def tracker(self) -> StabilityTracker:
        """When each inbox file is stable."""
        ...

    async def scan_once(self) -> Any:
        """List the inbox once; claim and prepare every stable file."""
        ...

    def next_due(self) -> float | None:
        """When the next scan is worth it: a file becomes stable or a held file is due."""
        ...

Batch = set[tuple[Change, str]]
#: Milliseconds watchfiles waits for a burst of events to settle before yielding it.
DEBOUNCE_MS = 300


async def _watch(intake: Watched, stop: asyncio.Event, queue: asyncio.Queue[Batch]) -> None:
    inbox = intake.settings.paths.inbox
    try:
        async for changes in awatch(
            inbox,
            stop_event=stop,
            watch_filter=None,
            debounce=DEBOUNCE_MS,
            step=50,
            recursive=True,
            ignore_permission_denied=True,
        ):
            queue.put_nowait(changes)
    except Exception as exc:  # noqa: BLE001 - rescans still find every file
        log.warning("watch_failed", path=str(inbox), error=f"{type(exc).__name__}: {exc}")


def _mtimes(paths: set[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for path in paths:
        try:
            out[path] = os.stat(path, follow_symlinks=False).st_mtime
        except OSError:
            continue
    return out


async def watch_loop(intake: Watched, stop: asyncio.Event) -> None:
    """Scan at start, then on events, on the rescan interval and when files become stable."""
    settings = intake.settings.intake
    await asyncio.to_thread(intake.settings.paths.inbox.mkdir, parents=True, exist_ok=True)
    inner_stop = asyncio.Event()
    queue: asyncio.Queue[Batch] = asyncio.Queue()
    watcher = asyncio.create_task(_watch(intake, inner_stop, queue))
    next_rescan = intake.clock()
    log.info("intake_started", inbox=str(intake.settings.paths.inbox))
    try:
        while not stop.is_set():
            now = intake.clock()
            if now >= next_rescan:
                await _safe_scan(intake)
                next_rescan = intake.clock() + settings.rescan_interval_s
            due = intake.next_due()
            wake = min(next_rescan, due) if due is not None else next_rescan
            timeout = max(0.0, wake - intake.clock())
            batch = await _next_batch(queue, stop, timeout)
            if batch:
                added = {p for c, p in batch if c == Change.added}
                mtimes = await asyncio.to_thread(_mtimes, added)
                moved, modified = moved_in_paths(
                    batch, mtimes, intake.clock(), settings.stable_s
                )
                for path in modified:
                    intake.tracker.modified(path)
                for path in moved:
                    intake.tracker.moved_in(path)
                await _safe_scan(intake)
            elif due is not None and intake.clock() >= due:
                await _safe_scan(intake)
    finally:
        inner_stop.set()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        log.info("intake_stopped")


async def _next_batch(queue: asyncio.Queue[Batch], stop: asyncio.Event, timeout: float) -> Batch:
    """Return the next event batch (merged with any queued after it), or empty on timeout/stop."""
    getter = asyncio.ensure_future(queue.get())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({getter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not getter.done():
            getter.cancel()
    batch: Batch = set()
    if getter.done() and not getter.cancelled():
        batch |= getter.result()
    while not queue.empty():
        batch |= queue.get_nowait()
    return batch


async def _safe_scan(intake: Watched) -> None:
    try:
        await intake.scan_once()
    except Exception:  # the loop must survive a bad scan
        log.exception("intake_scan_failed")
