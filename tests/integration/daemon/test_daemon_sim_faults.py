"""The daemon in-process against the simulator with faults: lost answers, failed batches,
forgotten batchIds (bad credentials: test_daemon_auth_pause.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import structlog
from daemon_sim import MakeSim, SplitIntake, ours, write_lead_files
from store_helpers import uploads_of_file
from structlog.testing import capture_logs as _capture_logs

from orchestrator.daemon import Daemon
from orchestrator.marketo import MarketoClient
from orchestrator.models import UploadStatus
from orchestrator.results import Reporter
from orchestrator.settings import Settings

SIM = {"rate_limit_calls": 100_000, "max_body_bytes": 4096, "rows_per_second": 50.0}


def capture_logs() -> Any:
    return _capture_logs(processors=[structlog.contextvars.merge_contextvars])


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Daemon]:
    async with MarketoClient(settings, window_s=1.0) as client:
        daemon = Daemon(
            settings,
            client=client,
            intake_factory=lambda store, c: SplitIntake(settings, store),
            reporter_factory=lambda store, c: Reporter(settings, store, c),
            handle_signals=False,
        )
        async with daemon:
            yield daemon


def reports(settings: Settings) -> dict[str, dict[str, Any]]:
    found = {}
    for path in settings.paths.results.glob("*/report.json"):
        report = json.loads(path.read_text())
        found[report["file"]] = report
    return found


async def test_lost_upload_answers_are_sent_again_and_logged(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(**SIM)
    await sim.patch({"faults": {"drop_next_upload_responses": 2}})
    settings = daemon_settings(sim.url, marketo={"retry_attempts": 1})
    made = write_lead_files(settings.paths.inbox, 3, lambda n: 30)
    with capture_logs() as logs:
        async with running(settings) as daemon:
            await asyncio.wait_for(daemon.run(once=True), 30)
            uploads = [u for f in range(1, 4) for u in await uploads_of_file(daemon.store, f)]
    assert all(u.status is UploadStatus.COMPLETE for u in uploads)
    assert sum(u.uncertain for u in uploads) == 2
    resent = [e for e in logs if e["event"] == "resubmitted_after_uncertain_submit"]
    assert len(resent) == 2 and all("upload_id" in e and "file_id" in e for e in resent)
    # Marketo got the lost ones twice (an upsert: no harm), and every lead is there once.
    assert len(ours(await sim.stats())) == len(uploads) + 2
    assert len(await sim.leads()) == sum(made.values())
    assert {r["status"] for r in reports(settings).values()} == {"complete"}


async def test_failed_batches_are_uploaded_again_then_the_file_is_partial(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(**SIM)
    # One file of three uploads; the next four jobs end Failed: all three first batches and
    # the first retry (of upload 1, which failed first). With max_batch_attempts = 2,
    # upload 1 becomes a dead letter and the other two succeed on their second batch.
    await sim.patch({"faults": {"fail_next_jobs": 4}})
    settings = daemon_settings(sim.url, daemon={"max_batch_attempts": 2})
    write_lead_files(settings.paths.inbox, 1, lambda n: 200)
    with capture_logs() as logs:
        async with running(settings) as daemon:
            await asyncio.wait_for(daemon.run(once=True), 30)
            uploads = await uploads_of_file(daemon.store, 1)
    assert len(uploads) == 3
    assert [u.status for u in uploads] == [UploadStatus.FAILED] + [UploadStatus.COMPLETE] * 2
    assert [u.batch_failures for u in uploads] == [2, 1, 1]
    assert uploads[0].error_code == "batch_failed" and uploads[0].attempts == 2
    assert len([e for e in logs if e["event"] == "batch_failed_requeued"]) == 3
    (report,) = reports(settings).values()
    assert report["status"] == "partial"
    assert report["rows"]["imported"] == uploads[1].rows + uploads[2].rows
    failed = [e for e in logs if e["event"] == "import_finished" and e["status"] == "failed"]
    assert [e["upload_id"] for e in failed] == [uploads[0].id]


async def test_forgotten_batch_ids_are_uploaded_again_once(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    # A finished batch vanishes 0.5 simulated seconds after creation, long before our first
    # poll (0.1 s real = 2 simulated seconds): Marketo answers 1013 for it.
    sim = await make_sim(**{**SIM, "batch_retention_s": 0.5})
    settings = daemon_settings(sim.url, polling={"min_interval_s": 0.1,
                                                 "max_interval_s": 0.2})
    write_lead_files(settings.paths.inbox, 1, lambda n: 10)
    with capture_logs() as logs:
        async with running(settings) as daemon:
            await asyncio.wait_for(daemon.run(once=True), 30)
            (upload,) = await uploads_of_file(daemon.store, 1)
    lost = [e["requeued"] for e in logs if e["event"] == "batch_lost"]
    assert lost == [True, False]
    assert upload.status is UploadStatus.FAILED
    assert upload.error_code == "1013" and upload.attempts == 2 and upload.batch_failures == 2
    assert len(ours(await sim.stats())) == 0  # both batches expired at Marketo
    assert len(reports(settings)) == 1
