"""The watch loop with real watchfiles events and real time (bounded waits, no fixed sleeps)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import structlog
from intake_support import FakeDescribe

from orchestrator.intake import Intake
from orchestrator.models import FileStatus
from orchestrator.settings import Settings
from orchestrator.store import Store

DEADLINE_S = 8.0


async def until(check: Callable[[], object], deadline_s: float = DEADLINE_S) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_rescans_take_files_and_stop_ends_the_loop(
    make_settings: Callable[..., Settings], store: Store, describe: FakeDescribe
) -> None:
    settings = make_settings(intake={"stable_s": 0.0, "rescan_interval_s": 0.05})
    intake = Intake(settings, store, describe=describe, clock=time.time)
    real_scan = intake.scan_once
    calls = 0

    async def flaky_scan() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("inbox on fire")
        return await real_scan()

    intake.scan_once = flaky_scan  # type: ignore[method-assign]
    enqueued: list[int] = []
    stop = asyncio.Event()
    (settings.paths.inbox / "a.csv").write_bytes(b"email\r\na@x.com\r\n")
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(intake.run(stop, on_enqueued=lambda: enqueued.append(1)))
        await until(lambda: len(enqueued) == 1)
        stop.set()
        await asyncio.wait_for(task, timeout=5.0)
    assert [f.name for f in await store.files_in(FileStatus.QUEUED)] == ["a.csv"]
    assert "intake_scan_failed" in [e["event"] for e in logs]
    assert logs[-1]["event"] == "intake_stopped"


async def test_a_file_moved_in_is_taken_on_its_event_one_written_in_place_waits(
    make_settings: Callable[..., Settings], store: Store, describe: FakeDescribe, tmp_path: Path
) -> None:
    settings = make_settings(intake={"stable_s": 60.0, "rescan_interval_s": 60.0})
    intake = Intake(settings, store, describe=describe, clock=time.time)
    inbox = settings.paths.inbox
    outside = tmp_path / "outside"
    outside.mkdir()
    stop = asyncio.Event()
    task = asyncio.create_task(intake.run(stop))
    try:
        # written in place just now: must wait stable_s (60 s), so it stays
        (inbox / "fresh.csv").write_bytes(b"email\r\nfresh@x.com\r\n")
        # moved in complete (written a minute ago): taken at its event; probe until the
        # watcher is up, since a rename before that sends no event
        taken: list[str] = []
        for i in range(int(DEADLINE_S / 0.25)):
            staged = outside / f"moved-{i}.csv"
            staged.write_bytes(f"email\r\nm{i}@x.com\r\n".encode())
            old = time.time() - 120
            os.utime(staged, (old, old))
            os.rename(staged, inbox / staged.name)
            await asyncio.sleep(0.25)
            taken = [f.name for f in await store.files_in(FileStatus.QUEUED)]
            if taken:
                break
        assert taken and all(name.startswith("moved-") for name in taken)
        assert (inbox / "fresh.csv").exists()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5.0)
