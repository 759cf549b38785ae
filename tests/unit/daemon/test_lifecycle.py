"""The daemon's lifecycle with fake intake, reporter and Marketo: drain, recovery, crash, stop."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from store_helpers import enqueue_uploads
from structlog.testing import capture_logs as _capture_logs

from orchestrator.daemon import Daemon, DaemonCrashed
from orchestrator.daemon.credentials import CredentialsRefused
from orchestrator.daemon.recovery import recover_uploads
from orchestrator.errors import AuthError
from orchestrator.models import FileStatus, NewPart, UploadStatus
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.store.lock import SingleDaemonLock


def capture_logs() -> Any:
    return _capture_logs(processors=[structlog.contextvars.merge_contextvars])


class FakeIntake:
    """Takes every file of the inbox: one upload per line after the header."""

    def __init__(self, settings: Settings, store: Store, fail_run: bool = False) -> None:
        self.settings = settings
        self.store = store
        self.recovered = 0
        self.fail_run = fail_run
        self.observer: Any = None

    async def recover(self) -> None:
        self.recovered += 1

    async def scan_once(self) -> int:
        taken = 0
        for path in sorted(self.settings.paths.inbox.glob("*.csv")):
            dest = self.settings.paths.work / path.name
            path.rename(dest)
            lines = dest.read_text().splitlines()[1:]
            record = await self.store.add_file(
                name=path.name, inbox_path=str(path), work_path=str(dest), route=None,
                size_bytes=dest.stat().st_size,
            )
            uploads = [NewPart(str(dest), 10, [i + 2]) for i, _ in enumerate(lines)]
            await self.store.enqueue_parts(record.id, uploads, sha256=path.name,
                                           rows_total=len(lines))
            taken += 1
        return taken

    async def run(self, stop: asyncio.Event, on_enqueued: Callable[..., Any]) -> None:
        if self.fail_run:
            raise RuntimeError("watcher exploded")
        while not stop.is_set():
            if await self.scan_once():
                on_enqueued()
            try:
                await asyncio.wait_for(stop.wait(), 0.05)
            except TimeoutError:
                pass

    def held(self) -> dict[int, int]:
        return {}


class FakeReporter:
    """Marks finished files complete and counts reports per file."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reports: dict[int, int] = {}

    async def report_ready(self) -> int:
        for upload in await self.store.uploads_to_split():
            parts = await self.store.parts_of_upload(upload.id)
            await self.store.record_split(upload.id, [(p.id, p.rows, 0, 0) for p in parts])
        for ready in await self.store.files_ready_for_report():
            await self.store.transition_file(ready.id, FileStatus.QUEUED, FileStatus.REPORTING)
        done = 0
        for record in await self.store.files_to_report():
            await self.store.transition_file(
                record.id, FileStatus.REPORTING, FileStatus.COMPLETE, reported_at=time.time()
            )
            self.reports[record.id] = self.reports.get(record.id, 0) + 1
            done += 1
        return done

    async def remove_finished_work_dirs(self) -> int:
        return 0

    async def remove_finished_packs(self) -> int:
        return 0


def write_inbox(settings: Settings, files: int, rows: int) -> None:
    for n in range(files):
        body = "email\n" + "".join(f"p{n}.{i}@example.com\n" for i in range(rows))
        (settings.paths.inbox / f"leads{n}.csv").write_text(body)


@pytest.fixture
def settings(fast_settings: Callable[..., Settings]) -> Settings:
    return fast_settings(polling={"min_interval_s": 0.01, "max_interval_s": 0.05})


async def open_daemon(
    settings: Settings, marketo: Any, *, handle_signals: bool = False, **kw: Any
) -> Daemon:
    """Enter a Daemon with the fakes (built on the daemon's own store)."""
    daemon = Daemon(
        settings,
        client=marketo,
        intake_factory=lambda store, client: FakeIntake(settings, store, **kw),
        reporter_factory=lambda store, client: FakeReporter(store),
        handle_signals=handle_signals,
    )
    return await daemon.__aenter__()


async def test_once_drains_the_inbox_and_stops(settings: Settings, marketo: Any) -> None:
    marketo.complete_on_poll = True
    write_inbox(settings, files=4, rows=3)
    daemon = await open_daemon(settings, marketo)
    try:
        with capture_logs() as logs:
            await asyncio.wait_for(daemon.run(once=True), 20)
        counts = await daemon.store.counts_by_status()
        assert counts["files"]["complete"] == 4
        assert counts["uploads"]["complete"] == 12
        assert await daemon.store.files_to_report() == []
        assert set(daemon.reporter.reports.values()) == {1}
        assert not list(settings.paths.inbox.iterdir())
    finally:
        await daemon.__aexit__(None, None, None)
    names = [e["event"] for e in logs]
    assert names[0] == "daemon_started" and names[-1] == "daemon_stopped"
    stopped = logs[-1]
    assert stopped["reason"] == "drained" and stopped["uploads"] == {"complete": 12}
    started = logs[0]
    assert started["once"] is True and "client_secret" not in started
    assert "leadflow-sim-secret" not in repr(logs)
    assert len(marketo.create_calls) == 12


async def test_recovery_resubmits_mid_submit_and_resumes_polling(
    settings: Settings, marketo: Any, clock: Any
) -> None:
    # A previous process left one upload mid-submit and one at Marketo.
    async with Store.open(settings.paths.database) as store:
        intake = FakeIntake(settings, store)
        write_inbox(settings, files=1, rows=2)
        await intake.scan_once()
        one, two = await store.parts_of_file(1)
        first, second = [
            await store.form_upload([(p.id, 0)], path=p.path, size_bytes=p.size_bytes,
                                    rows=p.rows, kind=p.kind, options=p.options)
            for p in (one, two)
        ]
        job = await marketo.create_import(Path(second.path), kind="leads", options={})
        await store.transition_upload(second.id, UploadStatus.SUBMITTING,
                                      UploadStatus.SUBMITTED, batch_id=job.batch_id,
                                      next_poll_at=time.time() + 3600)
    marketo.create_calls.clear()
    marketo.complete_on_poll = True
    daemon = await open_daemon(settings, marketo)
    try:
        with capture_logs() as logs:
            await asyncio.wait_for(daemon.run(once=True), 20)
        uploads = [await daemon.store.get_upload(u.id) for u in (first, second)]
        assert all(u is not None for u in uploads)
        uploads = [u for u in uploads if u is not None]
        assert [u.status for u in uploads] == [UploadStatus.COMPLETE] * 2
        assert uploads[0].uncertain == 1 and uploads[0].attempts == 1
        assert uploads[1].batch_id == job.batch_id and uploads[1].attempts == 0
        assert len(marketo.create_calls) == 1  # only the uncertain one went again
        assert job.batch_id in marketo.status_calls  # polling resumed at once
        assert daemon.intake.recovered == 1
    finally:
        await daemon.__aexit__(None, None, None)
    reaped = [e for e in logs if e["event"] == "upload_reaped"]
    resent = [e for e in logs if e["event"] == "resubmitted_after_uncertain_submit"]
    assert [e["upload_id"] for e in reaped] == [first.id]
    assert [e["upload_id"] for e in resent] == [first.id]


async def test_recovery_paces_the_first_polls_of_batches_at_marketo(tmp_path: Path) -> None:
    """Issue 12.1: start-up recovery never polls every outstanding batch at once."""
    async with Store.open(tmp_path / "q.db") as store:
        record = await store.add_file(name="a.csv", inbox_path="/in/a.csv",
                                      work_path="/work/a", route=None, size_bytes=1)
        ids = await enqueue_uploads(store, record.id, [NewPart(f"/work/a.{i}", 10, [i + 2]) for i in range(4)], sha256="a",
        )
        for batch_id, _ in enumerate(ids, start=1001):
            claimed = await store.claim_next()
            assert claimed is not None
            await store.transition_upload(claimed.id, UploadStatus.SUBMITTING,
                                          UploadStatus.SUBMITTED, batch_id=batch_id)
        with capture_logs() as logs:
            await recover_uploads(store, 1000.0, spacing_s=0.4)
        due = {u.id: u.next_poll_at for u in await store.at_marketo()}
    assert [due[i] for i in ids] == pytest.approx([1000.0, 1000.4, 1000.8, 1001.2])
    (resumed,) = [e for e in logs if e["event"] == "polling_resumed"]
    assert resumed["uploads"] == 4 and resumed["spacing_s"] == 0.4


async def test_a_crashing_loop_cancels_the_others_and_releases_the_lock(
    settings: Settings, marketo: Any
) -> None:
    daemon = await open_daemon(settings, marketo, fail_run=True)
    try:
        with capture_logs() as logs, pytest.raises(DaemonCrashed) as raised:
            await asyncio.wait_for(daemon.run(), 10)
    finally:
        await daemon.__aexit__(None, None, None)
    assert isinstance(raised.value.__cause__, RuntimeError)
    crashed = [e for e in logs if e["event"] == "daemon_crashed"]
    assert len(crashed) == 1 and crashed[0]["loop"] == "intake"
    assert logs[-1]["event"] == "daemon_stopped" and logs[-1]["reason"] == "crashed"
    # The single-daemon lock is free again.
    with SingleDaemonLock(settings.paths.database):
        pass


async def test_stop_gives_a_hung_upload_the_grace_period_then_cancels_it(
    settings: Settings, marketo: Any
) -> None:
    marketo.block_create = asyncio.Event()  # never set: the create call hangs
    write_inbox(settings, files=1, rows=1)
    daemon = await open_daemon(settings, marketo)
    try:
        with capture_logs() as logs:
            task = asyncio.create_task(daemon.run())
            for _ in range(200):
                if marketo.create_calls:
                    break
                await asyncio.sleep(0.01)
            assert marketo.create_calls
            started = time.monotonic()
            daemon.stop("test")
            await asyncio.wait_for(task, 5)
            elapsed = time.monotonic() - started
        assert settings.daemon.shutdown_grace_s <= elapsed < 2
        # The claimed upload stays mid-submit; recovery sends it again next time.
        assert await daemon.store.count_in_flight() == 1
        assert len(await daemon.store.uploads_in(UploadStatus.SUBMITTING)) == 1
    finally:
        await daemon.__aexit__(None, None, None)
    cancelled = [e["loop"] for e in logs if e["event"] == "loop_cancelled_after_grace"]
    assert cancelled == ["leadflow-scheduler"]
    assert logs[-1]["reason"] == "test"


async def test_sigterm_stops_the_daemon_gracefully(settings: Settings, marketo: Any) -> None:
    before = signal.getsignal(signal.SIGTERM)
    daemon = await open_daemon(settings, marketo, handle_signals=True)
    try:
        task = asyncio.create_task(daemon.run())
        await asyncio.sleep(0.2)
        assert not task.done()
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(task, 5)
    finally:
        await daemon.__aexit__(None, None, None)
    assert daemon.stop_reason == "SIGTERM"
    # The handler was removed again.
    assert signal.getsignal(signal.SIGTERM) in (before, signal.SIG_DFL)


async def test_a_second_stop_cancels_at_once(
    fast_settings: Callable[..., Settings], marketo: Any
) -> None:
    settings = fast_settings(daemon={"shutdown_grace_s": 30.0})
    marketo.block_create = asyncio.Event()
    write_inbox(settings, files=1, rows=1)
    daemon = await open_daemon(settings, marketo)
    try:
        task = asyncio.create_task(daemon.run())
        for _ in range(200):
            if marketo.create_calls:
                break
            await asyncio.sleep(0.01)
        daemon.stop("SIGINT")
        await asyncio.sleep(0.1)
        assert not task.done()  # waiting out the grace period
        started = time.monotonic()
        daemon.stop("SIGINT")
        await asyncio.wait_for(task, 5)
        assert time.monotonic() - started < 1.0
    finally:
        await daemon.__aexit__(None, None, None)


async def test_a_second_stop_logs_the_grace_actually_used(
    fast_settings: Callable[..., Settings], marketo: Any
) -> None:
    settings = fast_settings(daemon={"shutdown_grace_s": 30.0})
    marketo.block_create = asyncio.Event()
    write_inbox(settings, files=1, rows=1)
    daemon = await open_daemon(settings, marketo)
    try:
        with capture_logs() as logs:
            task = asyncio.create_task(daemon.run())
            for _ in range(200):
                if marketo.create_calls:
                    break
                await asyncio.sleep(0.01)
            daemon.stop("SIGINT")
            await asyncio.sleep(0.2)
            daemon.stop("SIGINT")
            await asyncio.wait_for(task, 5)
    finally:
        await daemon.__aexit__(None, None, None)
    [cancelled] = [e for e in logs if e["event"] == "loop_cancelled_after_grace"]
    assert 0.15 <= cancelled["grace_s"] < 2.0  # not the configured 30 s
    assert cancelled["configured_grace_s"] == 30.0 and cancelled["cut_short"] is True


async def test_once_stops_with_one_line_when_credentials_are_refused_mid_run(
    settings: Settings, marketo: Any
) -> None:
    marketo.create_errors = [AuthError("401", "identity refused the credentials: HTTP 401 x")]
    write_inbox(settings, files=1, rows=1)
    daemon = await open_daemon(settings, marketo)
    try:
        with pytest.raises(CredentialsRefused) as raised:
            await asyncio.wait_for(daemon.run(once=True), 5)
        queued = await daemon.store.uploads_in(UploadStatus.QUEUED)
    finally:
        await daemon.__aexit__(None, None, None)
    assert str(raised.value).startswith("Marketo refused the client id/secret (HTTP 401 from")
    assert daemon.stop_reason == "auth_failed"
    assert len(queued) == 1  # the refused upload is queued again, not lost


async def test_the_daemon_pauses_on_a_refusal_mid_run_and_resumes(
    settings: Settings, marketo: Any
) -> None:
    marketo.create_errors = [AuthError("401", "identity refused the credentials: HTTP 401 x")]
    marketo.complete_on_poll = True
    write_inbox(settings, files=1, rows=1)
    daemon = await open_daemon(settings, marketo)
    daemon.gate.retry_s = 0.2
    try:
        with capture_logs() as logs:
            task = asyncio.create_task(daemon.run())
            for _ in range(300):
                if (await daemon.store.counts_by_status())["files"]["complete"] == 1:
                    break
                await asyncio.sleep(0.01)
            daemon.stop("test")
            await asyncio.wait_for(task, 5)
    finally:
        await daemon.__aexit__(None, None, None)
    events = [e["event"] for e in logs]
    assert events.count("work_paused") == 1 and events.count("work_resumed") == 1
    assert "daemon_crashed" not in events
    assert len(marketo.create_calls) == 2  # refused once, then sent again after the pause
    assert daemon.gate.retries == 1


async def test_route_folders_are_created_at_start(
    fast_settings: Callable[..., Settings], marketo: Any
) -> None:
    settings = fast_settings(routes=[{"name": "events"}, {"name": "web", "folder": "a/web"}])
    assert not (settings.paths.inbox / "events").exists()
    daemon = await open_daemon(settings, marketo)
    try:
        assert (settings.paths.inbox / "events").is_dir()
        assert (settings.paths.inbox / "a" / "web").is_dir()
    finally:
        await daemon.__aexit__(None, None, None)


async def test_a_second_daemon_on_the_same_database_is_refused(
    settings: Settings, marketo: Any
) -> None:
    from orchestrator.daemon import run_daemon
    from orchestrator.errors import DatabaseLocked

    daemon = await open_daemon(settings, marketo)
    try:
        with pytest.raises(DatabaseLocked, match=f"pid {os.getpid()}"):
            await run_daemon(settings, once=True)
    finally:
        await daemon.__aexit__(None, None, None)
