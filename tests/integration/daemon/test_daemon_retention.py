"""Retention (issue 13, should work): the daemon deletes old leftovers of finished files, logs
each deletion, shows them in ``leadflow status``, and never deletes what is not yet reported.

The real daemon against the simulator over HTTP, real folders, a real SQLite file; days pass
through an injected clock (real time plus an offset), never by sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_sim import MakeSim
from structlog.testing import capture_logs

from orchestrator.commands.status import collect_status, render_status
from orchestrator.daemon import Daemon
from orchestrator.models import FileStatus
from orchestrator.results import retention
from orchestrator.settings import Settings
from orchestrator.store import Store

DAY = 86_400.0
def leads(tag: str) -> str:
    return "email,firstName\r\n" + "".join(f"{tag}{i}@example.com,R{i}\r\n" for i in range(5))


class Clock:
    """Real time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def drain(settings: Settings, clock: Clock) -> list[dict[str, Any]]:
    with capture_logs() as logs:
        async with Daemon(settings, clock=clock, handle_signals=False) as daemon:
            await asyncio.wait_for(daemon.run(once=True), 30)
    return logs


def deleted(logs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((e["file"], e["what"]) for e in logs if e["event"] == "retention_deleted")


async def test_leftovers_are_deleted_after_their_days_and_logged_and_shown(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(rate_limit_calls=100_000, rows_per_second=50.0)
    clock = Clock()
    keep = {"work_days": 0.5, "rejected_days": 1.0, "archive_days": 2.0, "results_days": 3.25}
    settings = daemon_settings(sim.url, daemon={"max_batch_attempts": 1}, retention=keep)
    paths = settings.paths
    # A file whose only batch fails for good: reported rejected, its work folder is kept for
    # `leadflow retry` and its source goes to paths.rejected.
    await sim.patch({"faults": {"fail_next_jobs": 1}})
    (paths.inbox / "failed.csv").write_text(leads("f"))
    await drain(settings, clock)
    # 0.4 days later: a clean file, and one intake rejects.
    clock.offset = 0.4 * DAY
    (paths.inbox / "clean.csv").write_text(leads("c"))
    (paths.inbox / "no-email.csv").write_text("firstName\r\nAda\r\n")
    await drain(settings, clock)
    assert (paths.work / "1").is_dir()
    assert sorted(p.name for p in paths.rejected.iterdir()) == ["1-failed.csv", "3-no-email.csv"]
    assert [p.name for p in paths.archive.iterdir()] == ["2-clean.csv"]
    assert len(list(paths.results.iterdir())) == 3

    async def later(days: float) -> list[tuple[str, str]]:
        clock.offset = days * DAY
        return deleted(await drain(settings, clock))

    # Each sweep (at the daemon's start) deletes what became old enough, and nothing else.
    assert await later(0.6) == [("failed.csv", "work")]
    assert not (paths.work / "1").exists()
    assert await later(1.05) == [("failed.csv", "rejected")]
    assert sorted(p.name for p in paths.rejected.iterdir()) == ["3-no-email.csv"]
    assert await later(1.45) == [("no-email.csv", "rejected")]
    assert await later(2.2) == []  # clean.csv was reported at day 0.4: archive at 2.4
    assert await later(2.45) == [("clean.csv", "archive")]
    assert await later(3.3) == [("failed.csv", "results")]
    assert sorted(p.name for p in paths.results.iterdir()) == ["clean.csv.2", "no-email.csv.3"]
    assert await later(3.3) == []  # a second sweep finds nothing new

    async with Store.open(paths.database) as store:
        data = await collect_status(store, settings, clock())
    assert data["retention"]["deleted_total"] == {
        "archive": 1, "rejected": 2, "results": 1, "work": 1
    }
    assert data["retention"]["deleted_last_24h"] == {"archive": 1, "results": 1}
    line = next(x for x in render_status(data).splitlines() if x.startswith("retention:"))
    assert "archive 2 d, rejected 1 d, results 3.25 d, work 0.5 d" in line
    assert "deleted in the last 24 h: archive 1, results 1 (5 in all)" in line


async def test_nothing_of_a_file_not_yet_reported_is_deleted(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(retention={"archive_days": 0.01, "rejected_days": 0.01,
                                        "results_days": 0.01, "work_days": 0.01})
    paths = settings.paths
    async with Store.open(paths.database, clock=lambda: 1_000.0) as store:
        waiting = await store.add_file(name="w.csv", inbox_path="/in/w.csv",
                                       work_path=str(paths.work / "1" / "source" / "w.csv"),
                                       route=None, size_bytes=1)
        # Reporting for ever (say, the results folder cannot be written): never reported.
        await store.enqueue_parts(waiting.id, [], new_status=FileStatus.REPORTING,
                                  sha256="w", rows_total=0)
        done = await store.add_file(name="d.csv", inbox_path="/in/d.csv",
                                    work_path=str(paths.work / "2" / "source" / "d.csv"),
                                    route=None, size_bytes=1)
        await store.transition_file(done.id, FileStatus.RECEIVED, FileStatus.REJECTED,
                                    error="bad", reported_at=1_000.0)
        for file_id, name in ((1, "w.csv"), (2, "d.csv")):
            (paths.work / str(file_id)).mkdir()
            (paths.results / f"{name}.{file_id}").mkdir()
            (paths.rejected / f"{file_id}-{name}").write_text("x")
            (paths.archive / f"{file_id}-{name}").write_text("x")
        outside = tmp_path / "outside.csv"
        outside.write_text("not leadflow's")
        await store.transition_file(done.id, FileStatus.REJECTED, FileStatus.REJECTED,
                                    info={"archived_path": str(outside)})
        swept = await retention.sweep(settings, store, 1_000.0 + 10 * DAY)
    assert {(e.file_id, e.what, e.deleted) for e in swept} == {
        (2, "rejected", False),  # its recorded path lies outside paths.rejected: left alone
        (2, "results", True), (2, "work", True),
    }
    assert outside.exists()
    assert (paths.work / "1").is_dir() and (paths.results / "w.csv.1").is_dir()
    assert (paths.rejected / "1-w.csv").exists() and (paths.archive / "1-w.csv").exists()
    assert not (paths.results / "d.csv.2").exists() and not (paths.work / "2").exists()
