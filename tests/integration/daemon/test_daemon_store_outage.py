"""The database goes away under a running scheduler: what it left in flight is reaped.

Found by ``tests/e2e/test_cluster_nodes.py::test_postgresql_restarting_under_the_nodes_loses_
nothing`` (issue 17): PostgreSQL restarted right after a create call was answered; the batchId
could not be recorded, the scheduler started again after the outage, but under a lease nothing
reaped the upload left ``submitting``, and its file never finished.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from daemon_sim import MakeSim, SplitIntake, write_lead_files
from store_helpers import enqueue_uploads
from structlog.testing import capture_logs as _capture_logs

from orchestrator.daemon import Daemon
from orchestrator.errors import StoreUnavailable
from orchestrator.models import FileStatus, NewPart, UploadStatus
from orchestrator.results import Reporter
from orchestrator.settings import Settings

SIM = {"rate_limit_calls": 100_000, "max_body_bytes": 4096, "rows_per_second": 200.0}


def capture_logs() -> Any:
    return _capture_logs(processors=[structlog.contextvars.merge_contextvars])


def lose_the_database_after_one_create(store: Any) -> None:
    """The first time the scheduler records a create call's answer, the database is gone."""
    real = store.transition_upload
    state = {"failed": False}

    async def transition_upload(upload_id: int, expected: Any, new: Any, **changes: Any) -> Any:
        if expected is UploadStatus.SUBMITTING and "batch_id" in changes and not state["failed"]:
            state["failed"] = True
            raise StoreUnavailable("lost the PostgreSQL connection: server closed the connection")
        return await real(upload_id, expected, new, **changes)

    store.transition_upload = transition_upload


async def _until(check: Callable[[], Any], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_under_a_lease_an_upload_caught_by_the_outage_is_sent_again(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings], pg_url: str
) -> None:
    sim = await make_sim(**SIM)
    settings = daemon_settings(sim.url, store={"url": pg_url},
                               daemon={"node_id": "n1", "lease_s": 5.0})
    made = write_lead_files(settings.paths.inbox, 1, lambda n: 5)
    with capture_logs() as logs:
        async with Daemon(
            settings, handle_signals=False,
            intake_factory=lambda store, c: SplitIntake(settings, store),
            reporter_factory=lambda store, c: Reporter(settings, store, c),
        ) as daemon:
            (runner,) = daemon.instances
            assert runner.lease is not None
            lose_the_database_after_one_create(runner.store)
            task = asyncio.create_task(daemon.run())
            try:
                async def reported() -> bool:
                    assert not task.done(), task
                    files = await daemon.store.files_in(FileStatus.COMPLETE)
                    return len(files) == len(made)

                await _until(reported)
            finally:
                daemon.stop()
                await asyncio.wait_for(task, 10)
    events = [e["event"] for e in logs]
    assert "store_unavailable" in events
    reaped = [e for e in logs if e["event"] == "upload_reaped"]
    assert len(reaped) == 1 and reaped[0]["instance"] == "default"
    assert "resubmitted_after_uncertain_submit" in events
    # The create call whose answer was lost, then the one sent again.
    creates = [r for r in await sim.requests() if r["endpoint"] == "import_lead"]
    assert len(creates) == 2
    assert "daemon_crashed" not in events


async def test_a_scheduler_outage_reaps_only_its_own_instance(
    make_sim: MakeSim, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """With several instances, the sandbox scheduler starting again after an outage must not
    reap the upload prod's scheduler is sending at that moment (it would be sent twice)."""
    prod, sandbox = await make_sim(**SIM), await make_sim(**SIM)
    creds = {"client_id": "leadflow-sim", "client_secret": "leadflow-sim-secret"}
    settings = make_settings(
        instances=[{"name": "prod", "base_url": prod.url, **creds},
                   {"name": "sandbox", "base_url": sandbox.url, **creds}],
        routes=[{"name": "a", "instance": "prod"}, {"name": "b", "instance": "sandbox"}],
    )
    async with Daemon(settings, handle_signals=False) as daemon:
        uploads: dict[str, int] = {}
        for runner in daemon.instances:
            store = runner.store
            record = await store.add_file(name=f"{runner.name}.csv", inbox_path="-",
                                          work_path="-", route=None, size_bytes=10)
            part = NewPart(str(tmp_path / f"{runner.name}.csv"), 10, [2], "leads",
                           {"format": "csv"})
            (upload_id,) = await enqueue_uploads(store, record.id, [part])
            claimed = await store.claim_next()
            assert claimed is not None and claimed.id == upload_id
            uploads[runner.name] = upload_id  # both ``submitting``, as mid-send
        prod_runner, sandbox_runner = daemon.instances
        calls = {"n": 0}

        async def scheduler_losing_the_database_once() -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise StoreUnavailable("lost the PostgreSQL connection")

        with capture_logs() as logs:
            await asyncio.wait_for(daemon._through_outages(
                "scheduler-sandbox", scheduler_losing_the_database_once, sandbox_runner), 10)
        assert calls["n"] == 2
        prod_upload = await prod_runner.store.get_upload(uploads["prod"])
        sandbox_upload = await sandbox_runner.store.get_upload(uploads["sandbox"])
        assert prod_upload is not None and prod_upload.status is UploadStatus.SUBMITTING
        assert sandbox_upload is not None and sandbox_upload.status is UploadStatus.QUEUED
        assert [e["upload_id"] for e in logs if e["event"] == "upload_reaped"] == [
            uploads["sandbox"]]
