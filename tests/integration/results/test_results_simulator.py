"""The reporter against the simulator over loopback, through the real Marketo client.

Uploads are sent and polled by hand (no scheduler), so what is tested is the part that
matters here: Marketo's real failures/warnings files mapped back to source rows, and report
counts that agree with the simulator's lead store and counters.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from results_helpers import Prepared, prepare_file, read_csv
from store_helpers import uploads_of_file

from orchestrator.marketo import MarketoClient
from orchestrator.models import FileStatus, UploadStatus
from orchestrator.results import Reporter
from orchestrator.settings import Settings
from orchestrator.simulator import ScaledClock, SimulatorConfig, create_app
from orchestrator.store import Store

SCALE = 200.0


class Env:
    def __init__(self, settings: Settings, clock: ScaledClock, client: MarketoClient,
                 admin: aiohttp.ClientSession, server: TestServer) -> None:
        self.settings, self.clock, self.client = settings, clock, client
        self.admin, self.server = admin, server

    async def get(self, path: str) -> Any:
        async with self.admin.get(str(self.server.make_url(path))) as resp:
            assert resp.status == 200
            return await resp.json()


@pytest.fixture
async def env(make_settings: Callable[..., Settings]) -> AsyncIterator[Env]:
    clock = ScaledClock(time_scale=SCALE)
    server = TestServer(create_app(SimulatorConfig(), clock=clock))
    await server.start_server()
    settings = make_settings(
        marketo={"base_url": str(server.make_url("")).rstrip("/"), "retry_base_s": 0.2},
    )

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0) / SCALE)

    async with Store.open(settings.paths.database, clock=clock.now) as store:
        client = MarketoClient(settings, store=store, clock=clock.now, sleep=sleep)
        await client.__aenter__()
        admin = aiohttp.ClientSession()
        try:
            yield Env(settings, clock, client, admin, server)
        finally:
            await client.close()
            await admin.close()
            await server.close()


async def run_uploads(env: Env, store: Store, prep: Prepared) -> None:
    """Send each upload, poll it to the end, record it as the poller would."""
    for upload in prep.uploads:
        claimed = await store.claim_next()
        assert claimed is not None and claimed.id == upload.id
        job = await env.client.create_import(Path(upload.path), upload.kind, upload.options)
        await store.transition_upload(upload.id, UploadStatus.SUBMITTING,
                                      UploadStatus.SUBMITTED, batch_id=job.batch_id, attempts=1)
        for _ in range(500):
            status = await env.client.get_status(job.batch_id, upload.kind, upload.options)
            if status.status in ("Complete", "Failed"):
                break
            await asyncio.sleep(0.01)
        assert status.status == "Complete"
        await store.transition_upload(
            upload.id, UploadStatus.SUBMITTED, UploadStatus.COMPLETE,
            marketo_status="Complete", num_leads_processed=status.num_leads_processed,
            num_rows_failed=status.num_rows_failed,
            num_rows_with_warning=status.num_rows_with_warning, message=status.message,
        )


async def test_report_matches_the_simulators_lead_store_and_failure_files(env: Env) -> None:
    header = ["email", "firstName", "lastName", "numberOfEmployees", "title"]
    source_header = ["Email", "First Name", "Last Name", "Employees", "Title"]
    bad_type = ["t@example.com", "Tess", "Type", "lots", ""]
    rows = [
        ["a@example.com", "Ann", "Able", "10", "CEO"],
        ["not-an-email", "Wes", "Warn", "3", ""],  # imported with a warning
        bad_type,                                  # fails: identical twin below
        ["q@example.com", 'Quinn "Q"', "O'Neil, Jr", "5", "Line one\nline two"],
        ["", "Nora", "NoMail", "1", ""],           # fails: empty lookup value
        bad_type,
        ["b@example.com", "Ben", "Bell", "20", "CTO"],
        ["also bad", "Val", "Warn", "", ""],       # imported with a warning
    ]
    # the quoted record spans source lines 5-6; line 8 was rejected locally by intake
    lines = [2, 3, 4, 5, 7, 9, 10, 11]
    reason = "Invalid data type in field Num Employees"
    rejections = [(8, ["x@example.com", "X", "Y", "many", "Z"], reason)]
    async with Store.open(env.settings.paths.database, clock=env.clock.now) as store:
        prep = await prepare_file(
            store, env.settings, "mixed leads.csv", header, rows, lines=lines, chunks=[4, 4],
            source_header=source_header, rejections=rejections,
        )
        await run_uploads(env, store, prep)
        reporter = Reporter(env.settings, store, env.client, env.clock.now)
        assert await reporter.report_ready() == 1
        final = await store.get_file(prep.file.id)
        uploads = await uploads_of_file(store, prep.file.id)

    assert final is not None and final.status is FileStatus.PARTIAL
    folder = env.settings.paths.results / f"mixed leads.csv.{prep.file.id}"
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    leads = await env.get("/_sim/leads")
    assert report["rows"] == {"total": 9, "imported": 5, "failed": 3, "warned": 2, "rejected": 1}
    assert report["rows"]["imported"] == len(leads)
    assert sorted(lead["email"] for lead in leads) == sorted(
        ["a@example.com", "not-an-email", "q@example.com", "b@example.com", "also bad"]
    )
    quinn = next(lead for lead in leads if lead["email"] == "q@example.com")
    assert quinn["firstName"] == 'Quinn "Q"' and quinn["title"] == "Line one\nline two"
    sim_failed = sum(u.num_rows_failed or 0 for u in uploads)
    sim_warned = sum(u.num_rows_with_warning or 0 for u in uploads)
    assert (sim_failed, sim_warned) == (report["rows"]["failed"], report["rows"]["warned"])

    failures = read_csv(folder / "failures.csv")
    assert failures[0] == ["sourceRow", *source_header, "reason"]
    by_line = {r[0]: r for r in failures[1:]}
    # every failed or rejected row exactly once, with its source line and all its columns
    assert [r[0] for r in failures[1:]] == ["4", "7", "8", "9"]
    assert by_line["4"][1:-1] == bad_type and by_line["9"][1:-1] == bad_type
    assert by_line["4"][-1] == by_line["9"][-1] == reason
    assert by_line["7"][1:-1] == ["", "Nora", "NoMail", "1", ""]
    assert by_line["7"][-1] == "Value for lookup field 'email' not found"
    assert by_line["8"] == ["8", "x@example.com", "X", "Y", "many", "Z", reason]
    warnings = read_csv(folder / "warnings.csv")
    assert [(r[0], r[-1]) for r in warnings[1:]] == [
        ("3", "Invalid email address"), ("11", "Invalid email address"),
    ]
    assert len(failures) - 1 == report["rows"]["failed"] + report["rows"]["rejected"]


async def test_empty_lookup_in_last_column_against_the_simulator(
    env: Env, shared_inputs: Path
) -> None:
    source = (shared_inputs / "empty-lookup-in-last-column.csv").read_bytes().decode("utf-8")
    header, *rows = list(csv.reader(io.StringIO(source)))
    async with Store.open(env.settings.paths.database, clock=env.clock.now) as store:
        prep = await prepare_file(store, env.settings, "empty-lookup-in-last-column.csv",
                                  header, rows, source_text=source)
        await run_uploads(env, store, prep)
        batch_id = (await uploads_of_file(store, prep.file.id))[0].batch_id
        assert await Reporter(env.settings, store, env.client, env.clock.now).report_ready() == 1

    # what Marketo (the simulator) sent back really lacks the empty last column
    raw = (await env.client.download_failures(batch_id or 0, "leads", {}, Path(
        env.settings.paths.work / "check.csv")))
    assert raw
    sent = (env.settings.paths.work / "check.csv").read_text(encoding="utf-8")
    assert sent.splitlines()[0] == "firstName,lastName,phone,Import Failure Reason"
    folder = env.settings.paths.results / f"empty-lookup-in-last-column.csv.{prep.file.id}"
    assert read_csv(folder / "failures.csv") == [
        ["sourceRow", "firstName", "lastName", "phone", "email", "reason"],
        ["3", "Bo", "Kim", "555-0102", "", "Value for lookup field 'email' not found"],
    ]
    report = json.loads((folder / "report.json").read_text())
    assert report["status"] == "partial"
    assert report["rows"] == {"total": 3, "imported": 2, "failed": 1, "warned": 0, "rejected": 0}
    assert len(await env.get("/_sim/leads")) == 2
