"""``--once``'s drain of the inbox: it waits for files to be stable, however slow the scans."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from orchestrator.daemon.drain import drain_inbox
from orchestrator.settings import Settings


class SlowIntake:
    """Takes the files once they were seen ``stable_s`` ago; each scan takes ``scan_s``."""

    def __init__(self, inbox: Path, clock: list[float], stable_s: float, scan_s: float) -> None:
        self.inbox, self.clock, self.stable_s, self.scan_s = inbox, clock, stable_s, scan_s
        self.first_seen: float | None = None
        self.scans = 0

    async def scan_once(self) -> int:
        self.scans += 1
        seen = self.clock[0]
        self.first_seen = seen if self.first_seen is None else self.first_seen
        self.clock[0] += self.scan_s  # listing thousands of files takes a while
        if seen - self.first_seen < self.stable_s:
            return 0
        taken = 0
        for path in self.inbox.iterdir():
            path.unlink()
            taken += 1
        return taken

    def held(self) -> dict[int, int]:
        return {}


async def test_slow_scans_do_not_end_the_drain_before_the_files_are_stable(
    make_settings: Callable[..., Settings],
) -> None:
    """Found with 300 tiny files: a first scan slower than stable_s made ``--once`` give up
    with every file still in the inbox (exit 0, no report)."""
    settings = make_settings(intake={"stable_s": 0.1, "rescan_interval_s": 0.2})
    inbox = settings.paths.inbox
    for n in range(3):
        (inbox / f"f{n}.csv").write_text("email\r\na@x.com\r\n")
    clock = [1_000.0]
    intake = SlowIntake(inbox, clock, stable_s=0.1, scan_s=0.3)
    await drain_inbox(settings, intake, lambda: clock[0], asyncio.Event(), lambda: None)
    assert list(inbox.iterdir()) == []  # taken, not given up on
    assert intake.scans == 2
