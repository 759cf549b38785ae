"""The Marketo client against the simulator over loopback: tokens, limits, quota, faults."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from mkto_sim_env import MakeEnv
from structlog.testing import capture_logs

from orchestrator.errors import (
    ApiPermanentError,
    ApiTransientError,
    QuotaExhausted,
    UncertainSubmit,
)
from orchestrator.marketo import MarketoClient
from orchestrator.settings import Settings
from orchestrator.simulator import SimulatorConfig, create_app
from orchestrator.store import Store
from orchestrator.timing import quota_day

CHICAGO = ZoneInfo("America/Chicago")
OPTIONS = {"format": "csv", "lookupField": "email"}


def write_upload(tmp_path: Path, rows: int = 3, bad: int = 0) -> Path:
    path = tmp_path / "upload-0001.csv"
    lines = ["email,firstName,leadScore"]
    lines += [f"user{i}@example.com,User{i},{i}" for i in range(rows)]
    lines += [f"bad{i}@example.com,Bad{i},not-a-number" for i in range(bad)]
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


async def test_import_round_trip_with_failures_file(make_env: MakeEnv, tmp_path: Path) -> None:
    env = await make_env(scale=200.0)
    client = env.client
    job = await client.create_import(write_upload(tmp_path, rows=4, bad=2), "leads", OPTIONS)
    assert job.status == "Queued"
    status = await client.get_status(job.batch_id, "leads", {})
    while status.status not in ("Complete", "Failed"):
        await asyncio.sleep(0.01)
        status = await client.get_status(job.batch_id, "leads", {})
    assert (status.status, status.num_leads_processed, status.num_rows_failed) == ("Complete", 4, 2)
    dest = tmp_path / "results" / "failures.csv"
    assert await client.download_failures(job.batch_id, "leads", {}, dest)
    text = dest.read_text(encoding="utf-8")
    assert "Import Failure Reason" in text
    assert text.count("bad") == 2
    assert not await client.download_warnings(job.batch_id, "leads", {}, tmp_path / "w.csv")
    fields = await client.describe_leads()
    assert {"email", "firstName", "leadScore"} <= {f.name for f in fields}
    requests = await env.requests()
    api = [r for r in requests if r["endpoint"] != "identity"]
    assert api and all(r["auth_scheme"] == "Bearer" for r in api)
    assert not any(r["token_in_query"] for r in requests)
    assert (await env.stats())["leads"] == 4


async def test_unknown_batch_and_bad_header_are_permanent(
    make_env: MakeEnv, tmp_path: Path
) -> None:
    env = await make_env()
    with pytest.raises(ApiPermanentError) as info:
        await env.client.get_status(987654, "leads", {})
    assert info.value.code == "1013"
    bad = tmp_path / "bad.csv"
    bad.write_text("email,noSuchField\r\na@example.com,x\r\n", encoding="utf-8")
    with pytest.raises(ApiPermanentError) as info:
        await env.client.create_import(bad, "leads", OPTIONS)
    assert info.value.code == "1006"


async def test_token_expiring_mid_run_costs_no_failed_call(
    make_env: MakeEnv, tmp_path: Path
) -> None:
    env = await make_env(scale=100.0, token_lifetime_s=30, marketo={"token_refresh_margin_s": 10})
    job = await env.client.create_import(write_upload(tmp_path), "leads", OPTIONS)
    start = env.clock.now()
    polls = 0
    while env.clock.now() - start < 100:  # more than three token lifetimes
        await env.client.get_status(job.batch_id, "leads", {})
        polls += 1
        await asyncio.sleep(0.01)
    stats = await env.stats()
    assert stats["tokens_minted"] >= 4
    assert stats["calls_by_endpoint"]["lead_status"] == polls
    assert "602" not in stats["errors"]
    assert "601" not in stats["errors"]


async def test_token_dying_early_is_refreshed_and_replayed(
    make_env: MakeEnv, tmp_path: Path
) -> None:
    env = await make_env(
        scale=100.0, token_lifetime_s=40, faults={"token_early_expiry_s": 25},
        marketo={"token_refresh_margin_s": 10},
    )
    job = await env.client.create_import(write_upload(tmp_path), "leads", OPTIONS)
    start = env.clock.now()
    with capture_logs() as logs:
        while env.clock.now() - start < 90:
            status = await env.client.get_status(job.batch_id, "leads", {})
            assert status.batch_id == job.batch_id
            await asyncio.sleep(0.01)
    stats = await env.stats()
    assert stats["errors"].get("602", 0) >= 1  # Marketo refused the dead token ...
    replays = [e for e in logs if e["event"] == "api_call" and e["code"] == "602"]
    assert len(replays) == stats["errors"]["602"]  # ... and each refusal was replayed


async def test_burst_of_300_status_calls_respects_the_rate_window(
    make_env: MakeEnv, tmp_path: Path
) -> None:
    env = await make_env(scale=100.0, limits={"calls_per_20s": 50, "max_concurrent_calls": 5})
    job = await env.client.create_import(write_upload(tmp_path), "leads", OPTIONS)
    start = env.clock.now()
    results = await asyncio.gather(
        *(env.client.get_status(job.batch_id, "leads", {}) for _ in range(300))
    )
    elapsed = env.clock.now() - start
    assert len(results) == 300
    stats = await env.stats()
    assert stats["calls_by_endpoint"]["lead_status"] == 300
    assert stats["peak_calls_per_window"] <= 50
    assert stats["peak_calls_per_window"] >= 40  # it did push up to the limit
    assert "606" not in stats["errors"]
    # 301 calls at 50 per 20 s need at least six full windows of simulated time.
    assert elapsed >= 100


@pytest.mark.parametrize("limit", [3, 5])
async def test_11_concurrent_calls_are_capped(
    make_env: MakeEnv, tmp_path: Path, limit: int
) -> None:
    env = await make_env(
        scale=10.0, limits={"max_concurrent_calls": limit}, faults={"latency_s": 0.05}
    )
    job = await env.client.create_import(write_upload(tmp_path), "leads", OPTIONS)
    await asyncio.gather(*(env.client.get_status(job.batch_id, "leads", {}) for _ in range(11)))
    stats = await env.stats()
    assert stats["peak_concurrent_calls"] == limit
    assert env.client.governor.peak_in_flight == limit
    assert "615" not in stats["errors"]


def _midnight_minus(seconds: float) -> float:
    base = datetime(2026, 3, 3, 0, 0, tzinfo=CHICAGO).timestamp()
    return base - seconds


async def test_607_pauses_until_the_simulated_reset(make_env: MakeEnv, tmp_path: Path) -> None:
    reset = _midnight_minus(0)
    env = await make_env(scale=20.0, start=_midnight_minus(10), daily_quota=4)
    job = await env.client.create_import(write_upload(tmp_path), "leads", OPTIONS)
    with capture_logs() as logs:
        for _ in range(6):
            await env.client.get_status(job.batch_id, "leads", {})
    stats = await env.stats()
    assert stats["errors"]["607"] == 1
    assert stats["calls_by_endpoint"]["lead_status"] == 7  # six answered, one refused
    paused = [e for e in logs if e["event"] == "quota_paused"]
    assert len(paused) == 1
    assert paused[0]["resume_at"] == reset
    log = [r for r in await env.requests() if r["endpoint"] == "lead_status"]
    refused = next(i for i, r in enumerate(log) if r["code"] == "607")
    assert log[refused]["t"] < reset
    assert all(r["t"] >= reset for r in log[refused + 1 :])


async def test_607_without_waiting_raises(make_env: MakeEnv, tmp_path: Path) -> None:
    env = await make_env(
        scale=20.0, start=_midnight_minus(3600), daily_quota=1, wait_for_quota=False
    )
    await env.client.create_import(write_upload(tmp_path), "leads", OPTIONS)
    with pytest.raises(QuotaExhausted) as info:
        await env.client.get_status(1001, "leads", {})
    assert info.value.resume_at == _midnight_minus(0)


async def test_ten_percent_5xx_every_call_eventually_succeeds(
    make_env: MakeEnv, tmp_path: Path
) -> None:
    env = await make_env(
        scale=200.0, seed=7, marketo={"retry_attempts": 8, "retry_base_s": 0.1},
        faults={"http_500_probability": 0.05, "http_502_probability": 0.05},
    )
    upload = write_upload(tmp_path)
    jobs = [await env.client.create_import(upload, "leads", OPTIONS) for _ in range(5)]
    statuses = await asyncio.gather(
        *(env.client.get_status(jobs[i % 5].batch_id, "leads", {}) for i in range(100))
    )
    assert len(statuses) == 100
    stats = await env.stats()
    injected = stats["errors"].get("500", 0) + stats["errors"].get("502", 0)
    assert injected >= 3
    answered = sum(stats["calls_by_endpoint"][k] for k in ("import_lead", "lead_status"))
    assert answered == 105 + injected


async def test_dropped_upload_answer_is_uncertain(make_env: MakeEnv, tmp_path: Path) -> None:
    env = await make_env(faults={"drop_next_upload_responses": 1})
    with capture_logs() as logs, pytest.raises(UncertainSubmit):
        await env.client.create_import(write_upload(tmp_path), "leads", OPTIONS)
    stats = await env.stats()
    assert len(stats["batches"]) == 1  # the job exists at Marketo, we just never heard
    assert [e["event"] for e in logs].count("upload_uncertain") == 1
    job = await env.client.create_import(write_upload(tmp_path), "leads", OPTIONS)
    assert job.batch_id == stats["batches"][0]["batchId"] + 1


async def test_program_member_and_custom_object_imports(make_env: MakeEnv, tmp_path: Path) -> None:
    env = await make_env(scale=200.0)
    client = env.client
    members = tmp_path / "members.csv"
    members.write_text("email,firstName\r\nm1@example.com,M1\r\nm2@example.com,M2\r\n",
                       encoding="utf-8")
    pm_options = {"format": "csv", "programId": 2001, "programMemberStatus": "On List"}
    cars = tmp_path / "cars.csv"
    cars.write_text("vin,make,year\r\nV1,Volvo,2020\r\nV2,Saab,old\r\n", encoding="utf-8")
    co_options = {"format": "csv", "objectApiName": "car_c"}
    pm_job = await client.create_import(members, "program_members", pm_options)
    co_job = await client.create_import(cars, "custom_objects", co_options)
    for job, kind, options in ((pm_job, "program_members", pm_options),
                               (co_job, "custom_objects", co_options)):
        status = await client.get_status(job.batch_id, kind, options)
        while status.status not in ("Complete", "Failed"):
            await asyncio.sleep(0.01)
            status = await client.get_status(job.batch_id, kind, options)
        assert status.status == "Complete"
    pm_status = await client.get_status(pm_job.batch_id, "program_members", pm_options)
    co_status = await client.get_status(co_job.batch_id, "custom_objects", co_options)
    assert (pm_status.num_leads_processed, pm_status.num_rows_failed) == (2, 0)
    assert (co_status.num_leads_processed, co_status.num_rows_failed) == (1, 1)
    dest = tmp_path / "co-failures.csv"
    assert await client.download_failures(co_job.batch_id, "custom_objects", co_options, dest)
    assert "Saab" in dest.read_text(encoding="utf-8")
    assert not await client.download_failures(
        pm_job.batch_id, "program_members", pm_options, tmp_path / "pm-failures.csv"
    )
    async with env.admin.get(env.url("/_sim/program-members/2001")) as resp:
        members_at_marketo = await resp.json()
    assert len(members_at_marketo) == 2


async def test_calls_marketo_never_answered_do_not_spend_the_daily_budget(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Issue 13.6: the daily budget counts what Marketo counts, not connection failures.

    Marketo goes down (its port refuses connections) for a while and comes back: the calls
    counted in ``api_usage`` are exactly the calls in the simulator's request log.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    runner = web.AppRunner(create_app(SimulatorConfig()))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    settings = make_settings(marketo={
        "base_url": f"http://127.0.0.1:{port}", "retry_attempts": 3, "retry_base_s": 0.01,
        "retry_max_s": 0.02, "connect_timeout_s": 2.0,
    })
    # No keep-alive: a connection pooled before the outage would still reach the server.
    connector = aiohttp.TCPConnector(force_close=True)
    try:
        async with Store.open(tmp_path / "q.db") as store, aiohttp.ClientSession(
            connector=connector
        ) as session, MarketoClient(settings, store=store, session=session) as client:
            job = await client.create_import(write_upload(tmp_path), "leads", OPTIONS)
            await client.get_status(job.batch_id, "leads", {})
            await site.stop()  # Marketo is down: every connection is refused
            for _ in range(4):
                with pytest.raises(ApiTransientError):
                    await client.get_status(job.batch_id, "leads", {})
            site = web.TCPSite(runner, "127.0.0.1", port)
            await site.start()  # ... and back
            status = await client.get_status(job.batch_id, "leads", {})
            assert status.batch_id == job.batch_id
            day = quota_day(time.time())
            counted = await store.calls_on(day)
            usage = await store.usage_on(day)
        async with aiohttp.ClientSession() as admin, admin.get(
            f"http://127.0.0.1:{port}/_sim/requests"
        ) as resp:
            logged = [r for r in await resp.json() if r["endpoint"] != "identity"]
    finally:
        await runner.cleanup()
    assert len(logged) == 3  # create, status, status: the refused attempts never arrived
    assert counted == len(logged), usage
    # The 12 refused attempts are still visible as errors for ``leadflow status``.
    assert usage["import_status"] == {"calls": 2, "errors": 12}


async def test_describe_custom_object_over_http(make_env: MakeEnv) -> None:
    env = await make_env()
    car = await env.client.describe_custom_object("car_c")
    assert (car.name, car.display_name, car.dedupe_fields) == ("car_c", "Car", ("vin",))
    fields = {f.name: f for f in car.fields}
    assert {"vin", "make", "model", "year", "color", "email"} <= set(fields)
    assert fields["marketoGUID"].read_only and not fields["vin"].read_only
    with pytest.raises(ApiPermanentError) as info:
        await env.client.describe_custom_object("boat_c")
    assert info.value.code == "1013"
    assert [r["endpoint"] for r in await env.requests() if r["endpoint"] != "identity"] == [
        "describe_custom_object", "describe_custom_object"
    ]
