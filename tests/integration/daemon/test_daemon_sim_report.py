"""report.json against the simulator over HTTP: Marketo's own status next to leadflow's state
(issue 12.5), and every create call of an upload, lost answers included (issue 13, "the
uncertain repeat is visible in the report")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from daemon_sim import MakeSim, SplitIntake, ours, write_lead_files

from orchestrator.daemon import Daemon
from orchestrator.marketo import MarketoClient
from orchestrator.results import Reporter
from orchestrator.settings import Settings

SIM = {"rate_limit_calls": 100_000, "max_body_bytes": 4096, "rows_per_second": 50.0}


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


async def test_each_upload_has_marketos_status_verbatim_beside_leadflows_state(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(**SIM)
    # Two uploads; the first job ends Failed and, with one attempt allowed, stays failed.
    await sim.patch({"faults": {"fail_next_jobs": 1}})
    settings = daemon_settings(sim.url, daemon={"max_batch_attempts": 1})
    write_lead_files(settings.paths.inbox, 1, lambda n: 90)
    async with running(settings) as daemon:
        await asyncio.wait_for(daemon.run(once=True), 30)
    (report,) = reports(settings).values()
    batches = {b["batchId"]: b["status"] for b in ours(await sim.stats())}
    uploads = report["uploads"]
    assert len(uploads) >= 2
    for upload in uploads:
        # Marketo's field, under Marketo's name, with Marketo's value for that batchId.
        assert upload["marketoStatus"] == batches[upload["batchId"]]
        assert upload["marketoStatus"] in ("Queued", "Importing", "Complete", "Failed")
        # leadflow's own lower-case state, and `status` kept for one release as its alias.
        assert upload["state"] == upload["status"]
        assert upload["state"] == upload["marketoStatus"].lower()
    assert sorted(u["marketoStatus"] for u in uploads).count("Failed") == 1
    assert report["report_version"] == 3


async def test_an_upload_sent_again_after_a_lost_answer_says_so_in_the_report(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(**SIM)
    # The answer to the upload is lost (Marketo created the job); it is sent again.
    await sim.patch({"faults": {"drop_next_upload_responses": 1}})
    settings = daemon_settings(sim.url, marketo={"retry_attempts": 1},
                               daemon={"max_batch_attempts": 2})
    write_lead_files(settings.paths.inbox, 1, lambda n: 20)
    async with running(settings) as daemon:
        await asyncio.wait_for(daemon.run(once=True), 30)
    (report,) = reports(settings).values()
    (upload,) = report["uploads"]
    assert report["status"] == "complete"
    assert upload["attempts"] == 2  # create calls sent, the lost one included
    assert upload["uncertain"] == 1
    first, second = upload["submissions"]
    # The lost answer's batchId cannot be known: Marketo has no way to list import jobs.
    assert (first["batchId"], first["outcome"]) == (None, "uncertain")
    assert (second["batchId"], second["outcome"], second["marketoStatus"]) == (
        upload["batchId"], "accepted", "Complete"
    )
    assert first["at"] <= second["at"]
    # At Marketo there are two jobs for this upload: the one leadflow never heard of, and its.
    batches = ours(await sim.stats())
    assert len(batches) == 2 and upload["batchId"] in {b["batchId"] for b in batches}


async def test_a_batch_that_failed_and_went_again_shows_both_batch_ids(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(**SIM)
    await sim.patch({"faults": {"fail_next_jobs": 1}})
    settings = daemon_settings(sim.url, daemon={"max_batch_attempts": 2})
    write_lead_files(settings.paths.inbox, 1, lambda n: 20)
    async with running(settings) as daemon:
        await asyncio.wait_for(daemon.run(once=True), 30)
    (report,) = reports(settings).values()
    (upload,) = report["uploads"]
    batches = {b["batchId"]: b["status"] for b in ours(await sim.stats())}
    assert [(s["batchId"], s["outcome"], s["marketoStatus"]) for s in upload["submissions"]] == [
        (bid, "accepted", status) for bid, status in sorted(batches.items())
    ]
    assert [s["marketoStatus"] for s in upload["submissions"]] == ["Failed", "Complete"]
    assert upload["attempts"] == 2 and upload["uncertain"] == 0
    assert (upload["state"], upload["marketoStatus"]) == ("complete", "Complete")
