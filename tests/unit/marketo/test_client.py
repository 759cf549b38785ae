"""The client's calls against aioresponses: request shapes, replays, every error category."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses
from mkto_helpers import (
    IDENTITY,
    FakeTime,
    auth_of,
    body_of,
    calls_to,
    err,
    ok,
    token_ok,
    url,
)
from structlog.testing import capture_logs

from orchestrator.errors import (
    ApiPermanentError,
    ApiTransientError,
    QueueFull,
    QuotaExhausted,
    UncertainSubmit,
)
from orchestrator.marketo import BatchStatus, ImportJob, LeadField, MarketoClient
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.timing import next_quota_reset, quota_day

LEADS = "/bulk/v1/leads.json"
STATUS = "/bulk/v1/leads/batch/77.json"
OPTIONS = {"format": "csv", "lookupField": "email", "listId": 1001, "partitionName": None}
QUEUED = ok([{"batchId": 77, "importId": "77", "status": "Queued"}])
COMPLETE = ok([{"batchId": 77, "status": "Complete", "numOfLeadsProcessed": 2,
                "numOfRowsFailed": 1, "numOfRowsWithWarning": 0, "message": "done"}])


async def test_create_import_request_shape(
    client: MarketoClient, mocked: aioresponses, upload_file: Path
) -> None:
    token_ok(mocked, "tok-1:sim")
    seen: list[bytes] = []

    async def capture(u: Any, **kwargs: Any) -> CallbackResult:
        seen.append(await body_of(kwargs["data"]))
        return CallbackResult(payload=QUEUED)

    mocked.post(url(LEADS), callback=capture)
    with capture_logs() as logs:
        job = await client.create_import(upload_file, "leads", OPTIONS)
    assert job == ImportJob(77, "Queued")
    (call,) = calls_to(mocked, "POST", LEADS)
    assert auth_of(call) == "Bearer tok-1:sim"
    assert call.kwargs["params"] == {"format": "csv", "lookupField": "email", "listId": "1001"}
    (key,) = [u for (m, u) in mocked.requests if u.path == LEADS]
    assert "access_token" not in str(key)
    body = seen[0]
    assert b'name="file"; filename="upload-0001.csv"' in body
    assert b"Content-Type: text/csv" in body
    assert upload_file.read_bytes() in body
    assert b"access_token" not in body
    (line,) = [e for e in logs if e["event"] == "api_call"]
    assert line["method"] == "POST"
    assert line["path"] == LEADS
    assert line["request_id"] == "a1#b2"
    assert line["code"] is None
    assert line["attempt"] == 1
    assert line["duration_s"] >= 0
    assert "tok-1:sim" not in repr(logs)


async def test_replay_after_602_carries_the_new_token_and_the_full_body(
    client: MarketoClient, mocked: aioresponses, upload_file: Path
) -> None:
    token_ok(mocked, "old:sim")
    token_ok(mocked, "new:sim")
    bodies: list[tuple[str, bytes]] = []
    answers = [err("602", "Access token expired"), QUEUED]

    async def capture(u: Any, **kwargs: Any) -> CallbackResult:
        bodies.append((kwargs["headers"]["Authorization"], await body_of(kwargs["data"])))
        return CallbackResult(payload=answers.pop(0))

    mocked.post(url(LEADS), callback=capture, repeat=True)
    with capture_logs() as logs:
        job = await client.create_import(upload_file, "leads", OPTIONS)
    assert job.batch_id == 77
    assert [auth for auth, _ in bodies] == ["Bearer old:sim", "Bearer new:sim"]
    content = upload_file.read_bytes()
    for _, body in bodies:
        assert content in body
        assert body.endswith(b"--\r\n")
    assert len(calls_to(mocked, "POST", "/identity/oauth/token")) == 2
    events = [e["event"] for e in logs]
    assert events.count("token_refreshed") == 2
    assert [e["code"] for e in logs if e["event"] == "api_call"] == ["602", None]


async def test_601_as_a_number_also_refreshes(client: MarketoClient, mocked: aioresponses) -> None:
    token_ok(mocked, "old:sim")
    token_ok(mocked, "new:sim")
    mocked.get(url(STATUS), payload=err(601, "Access token invalid"))
    mocked.get(url(STATUS), payload=COMPLETE)
    status = await client.get_status(77, "leads", {})
    assert status.status == "Complete"
    assert [auth_of(c) for c in calls_to(mocked, "GET", STATUS)] == [
        "Bearer old:sim", "Bearer new:sim",
    ]


async def test_1016_is_queue_full_at_once(
    client: MarketoClient, mocked: aioresponses, upload_file: Path, fake_time: FakeTime
) -> None:
    token_ok(mocked)
    mocked.post(url(LEADS), payload=err(1016, "Too many imports"))
    with pytest.raises(QueueFull) as info:
        await client.create_import(upload_file, "leads", OPTIONS)
    assert info.value.code == "1016"
    assert len(calls_to(mocked, "POST", LEADS)) == 1
    assert fake_time.sleeps == []


@pytest.mark.parametrize(
    "exc",
    [
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        aiohttp.SocketTimeoutError(),
        TimeoutError(),
        aiohttp.ClientPayloadError("truncated"),
    ],
)
async def test_upload_whose_answer_was_lost_is_uncertain(
    client: MarketoClient, mocked: aioresponses, upload_file: Path, exc: Exception
) -> None:
    token_ok(mocked)
    mocked.post(url(LEADS), exception=exc)
    mocked.post(url(LEADS), payload=QUEUED)
    with capture_logs() as logs, pytest.raises(UncertainSubmit):
        await client.create_import(upload_file, "leads", OPTIONS)
    assert len(calls_to(mocked, "POST", LEADS)) == 1  # not retried inside the client
    assert [e["event"] for e in logs].count("upload_uncertain") == 1


async def test_upload_that_never_connected_is_retried(
    client: MarketoClient, mocked: aioresponses, upload_file: Path
) -> None:
    token_ok(mocked)
    mocked.post(url(LEADS), exception=aiohttp.ConnectionTimeoutError())
    mocked.post(url(LEADS), payload=QUEUED)
    assert (await client.create_import(upload_file, "leads", OPTIONS)).batch_id == 77
    assert len(calls_to(mocked, "POST", LEADS)) == 2


async def test_upload_success_without_batch_id_is_uncertain(
    client: MarketoClient, mocked: aioresponses, upload_file: Path
) -> None:
    token_ok(mocked)
    mocked.post(url(LEADS), payload=ok([{"status": "Queued"}]))
    with pytest.raises(UncertainSubmit):
        await client.create_import(upload_file, "leads", OPTIONS)


async def test_502_gateway_page_is_retried(
    client: MarketoClient, mocked: aioresponses, fake_time: FakeTime
) -> None:
    token_ok(mocked)
    mocked.get(url(STATUS), status=502, body="<html><h1>502 Bad Gateway</h1></html>",
               content_type="text/html")
    mocked.get(url(STATUS), status=200, body="<html>maintenance</html>", content_type="text/html")
    mocked.get(url(STATUS), payload=COMPLETE)
    with capture_logs() as logs:
        status = await client.get_status(77, "leads", {})
    assert status == BatchStatus(77, "Complete", 2, 1, 0, "done")
    assert [e["code"] for e in logs if e["event"] == "api_call"] == ["502", "non_json", None]
    assert fake_time.sleeps == [0.375, 0.75]  # equal jitter at rand=0.5, base 0.5


async def test_transient_errors_exhaust_retries(
    client: MarketoClient, mocked: aioresponses, settings: Settings
) -> None:
    token_ok(mocked)
    mocked.get(url(STATUS), payload=err("604", "Request time-out"), repeat=True)
    with pytest.raises(ApiTransientError) as info:
        await client.get_status(77, "leads", {})
    assert info.value.code == "604"
    assert len(calls_to(mocked, "GET", STATUS)) == settings.marketo.retry_attempts


@pytest.mark.parametrize(
    "answer",
    [
        {"requestId": "x#y", "success": False},
        {"requestId": "x#y", "success": True, "result": []},
    ],
)
async def test_success_false_without_errors_or_empty_result_is_retried(
    client: MarketoClient, mocked: aioresponses, answer: dict[str, Any]
) -> None:
    token_ok(mocked)
    mocked.get(url(STATUS), payload=answer)
    mocked.get(url(STATUS), payload=COMPLETE)
    assert (await client.get_status(77, "leads", {})).status == "Complete"


@pytest.mark.parametrize("code", ["1003", "1006", "1011", "1013", "603", "612"])
async def test_permanent_codes_are_not_retried(
    client: MarketoClient, mocked: aioresponses, upload_file: Path, code: str
) -> None:
    token_ok(mocked)
    mocked.post(url(LEADS), payload=err(code, "nope"), repeat=True)
    with pytest.raises(ApiPermanentError) as info:
        await client.create_import(upload_file, "leads", OPTIONS)
    assert info.value.code == code
    assert len(calls_to(mocked, "POST", LEADS)) == 1


async def test_413_is_permanent(
    client: MarketoClient, mocked: aioresponses, upload_file: Path
) -> None:
    token_ok(mocked)
    mocked.post(url(LEADS), status=413, body="<html>413 Request Entity Too Large</html>",
                content_type="text/html")
    with pytest.raises(ApiPermanentError) as info:
        await client.create_import(upload_file, "leads", OPTIONS)
    assert (info.value.code, info.value.status) == ("413", 413)
    assert "Too Large" in info.value.body_excerpt


async def test_unknown_batch_id_is_permanent_1013(
    client: MarketoClient, mocked: aioresponses
) -> None:
    token_ok(mocked)
    mocked.get(url(STATUS), payload=err("1013", "Object not found"))
    with pytest.raises(ApiPermanentError) as info:
        await client.get_status(77, "leads", {})
    assert info.value.code == "1013"


async def test_throttles_wait_without_spending_retries(
    client: MarketoClient, mocked: aioresponses, settings: Settings, fake_time: FakeTime
) -> None:
    token_ok(mocked)
    for i in range(settings.marketo.retry_attempts + 3):
        code = "606" if i % 2 else "615"
        mocked.get(url(STATUS), payload=err(code, "limit"))
    mocked.get(url(STATUS), payload=err("604", "timeout"))
    mocked.get(url(STATUS), payload=COMPLETE)
    with capture_logs() as logs:
        assert (await client.get_status(77, "leads", {})).status == "Complete"
    limited = [e for e in logs if e["event"] == "rate_limited"]
    assert len(limited) == settings.marketo.retry_attempts + 3
    assert {e["code"] for e in limited} == {"606", "615"}
    assert all(s <= 20.0 for s in fake_time.sleeps)


async def test_607_pauses_until_midnight_chicago_then_continues(
    client: MarketoClient, mocked: aioresponses, fake_time: FakeTime
) -> None:
    token_ok(mocked, "day-1:sim")
    token_ok(mocked, "day-2:sim")  # the pause outlives the first token
    reset = next_quota_reset(fake_time.now)
    mocked.get(url(STATUS), payload=err("607", "Daily quota reached"))
    mocked.get(url(STATUS), payload=COMPLETE)
    with capture_logs() as logs:
        assert (await client.get_status(77, "leads", {})).status == "Complete"
    assert fake_time.now >= reset
    # The token is taken after the wait, so the call after midnight carries a live one.
    assert [auth_of(c) for c in calls_to(mocked, "GET", STATUS)] == [
        "Bearer day-1:sim", "Bearer day-2:sim",
    ]
    paused = [e for e in logs if e["event"] == "quota_paused"]
    assert len(paused) == 1
    assert paused[0]["resume_at"] == reset


async def test_607_without_waiting_raises_quota_exhausted(
    settings: Settings, fake_time: FakeTime, mocked: aioresponses
) -> None:
    token_ok(mocked)
    mocked.get(url(STATUS), payload=err("607", "Daily quota reached"))
    async with MarketoClient(
        settings, clock=fake_time.clock, sleep=fake_time.sleep, wait_for_quota=False
    ) as c:
        with pytest.raises(QuotaExhausted) as info:
            await c.get_status(77, "leads", {})
    assert info.value.resume_at == next_quota_reset(fake_time.now)
    assert info.value.code == "607"


async def test_unknown_code_is_bounded_then_permanent_with_raw_body_logged(
    client: MarketoClient, mocked: aioresponses
) -> None:
    token_ok(mocked)
    mocked.get(url(STATUS), payload=err("9999", "brand new failure"), repeat=True)
    with capture_logs() as logs, pytest.raises(ApiPermanentError) as info:
        await client.get_status(77, "leads", {})
    assert info.value.code == "9999"
    assert len(calls_to(mocked, "GET", STATUS)) == 3
    unknown = [e for e in logs if e["event"] == "api_unknown_code"]
    assert unknown
    assert "brand new failure" in unknown[0]["body"]


async def test_status_of_other_kinds(client: MarketoClient, mocked: aioresponses) -> None:
    token_ok(mocked)
    co = "/bulk/v1/customobjects/car_c/import/5/status.json"
    mocked.get(url(co), payload=ok([{"batchId": 5, "status": "Importing", "operation": "import",
                                      "numOfObjectsProcessed": 3, "numOfRowsFailed": 1,
                                      "numOfRowsWithWarning": 2}]))
    pm = "/bulk/v1/program/members/import/6/status.json"
    mocked.get(url(pm), payload=ok([{"batchId": 6, "status": "Queued"}]))
    assert await client.get_status(5, "custom_objects", {"objectApiName": "car_c"}) == (
        BatchStatus(5, "Importing", 3, 1, 2, "")
    )
    assert await client.get_status(6, "program_members", {"programId": 2001}) == (
        BatchStatus(6, "Queued", 0, 0, 0, "")
    )


async def test_program_member_and_custom_object_uploads(
    client: MarketoClient, mocked: aioresponses, upload_file: Path
) -> None:
    token_ok(mocked)
    pm = "/bulk/v1/program/2001/members/import.json"
    co = "/bulk/v1/customobjects/car_c/import.json"
    mocked.post(url(pm), payload=QUEUED)
    mocked.post(url(co), payload=ok([{"batchId": 9, "status": "Queued", "objectApiName": "car_c"}]))
    await client.create_import(upload_file, "program_members",
                               {"format": "csv", "programId": 2001,
                                "programMemberStatus": "On List"})
    job = await client.create_import(upload_file, "custom_objects",
                                     {"objectApiName": "car_c", "lookupField": None})
    assert job == ImportJob(9, "Queued")
    assert calls_to(mocked, "POST", pm)[0].kwargs["params"] == {
        "format": "CSV", "programMemberStatus": "On List",
    }
    assert calls_to(mocked, "POST", co)[0].kwargs["params"] == {"format": "csv"}


async def test_missing_options_or_file_are_permanent_without_a_call(
    client: MarketoClient, mocked: aioresponses, tmp_path: Path, upload_file: Path
) -> None:
    with pytest.raises(ApiPermanentError) as info:
        await client.create_import(upload_file, "program_members", {"format": "csv"})
    assert info.value.code == "config"
    with pytest.raises(ApiPermanentError) as info:
        await client.create_import(tmp_path / "gone.csv", "leads", OPTIONS)
    assert info.value.code == "file"
    with pytest.raises(ApiPermanentError):
        await client.get_status(1, "opportunities", {})
    assert not mocked.requests


async def test_downloads_stream_to_disk_and_404_means_none(
    client: MarketoClient, mocked: aioresponses, tmp_path: Path
) -> None:
    token_ok(mocked)
    failures = "/bulk/v1/leads/batch/77/failures.json"
    warnings = "/bulk/v1/leads/batch/77/warnings.json"
    csv = "email,Import Failure Reason\r\n,Value for lookup field 'email' not found\r\n" * 800
    mocked.get(url(failures), body=csv, content_type="text/csv", headers={
        "Content-Type": "text/csv;charset=UTF-8"})
    mocked.get(url(warnings), status=404, body="404 Not Found\n", content_type="text/plain")
    dest = tmp_path / "out" / "failures.csv"
    assert await client.download_failures(77, "leads", {}, dest) is True
    assert dest.read_bytes() == csv.encode()
    assert not dest.with_name("failures.csv.part").exists()
    wdest = tmp_path / "out" / "warnings.csv"
    assert await client.download_warnings(77, "leads", {}, wdest) is False
    assert not wdest.exists()


async def test_download_empty_body_means_none_and_json_errors_are_classified(
    client: MarketoClient, mocked: aioresponses, tmp_path: Path
) -> None:
    token_ok(mocked, "old:sim")
    token_ok(mocked, "new:sim")
    failures = "/bulk/v1/program/members/import/8/failures.json"
    mocked.get(url(failures), payload=err("602", "expired"))
    mocked.get(url(failures), body="", content_type="text/csv")
    dest = tmp_path / "f.csv"
    assert await client.download_failures(8, "program_members", {}, dest) is False
    assert not dest.exists()
    assert auth_of(calls_to(mocked, "GET", failures)[1]) == "Bearer new:sim"


async def test_describe_leads(client: MarketoClient, mocked: aioresponses) -> None:
    token_ok(mocked)
    mocked.get(url("/rest/v1/leads/describe.json"), payload=ok([
        {"id": 1, "displayName": "Email Address", "dataType": "email", "length": 255,
         "rest": {"name": "email", "readOnly": False}},
        {"id": 2, "displayName": "Lead Score", "dataType": "integer",
         "rest": {"name": "leadScore", "readOnly": False}},
        {"id": 3, "displayName": "Id", "dataType": "integer", "rest": {"name": "id",
                                                                       "readOnly": True}},
        {"id": 4, "displayName": "SOAP only", "dataType": "string"},
    ]))
    fields = await client.describe_leads()
    assert fields == [
        LeadField("email", "Email Address", "email", 255, False),
        LeadField("leadScore", "Lead Score", "integer", None, False),
        LeadField("id", "Id", "integer", None, True),
    ]


async def test_every_call_is_counted_in_the_database(
    settings: Settings, fake_time: FakeTime, mocked: aioresponses, tmp_path: Path,
    upload_file: Path,
) -> None:
    token_ok(mocked)
    mocked.post(url(LEADS), payload=QUEUED)
    mocked.get(url(STATUS), status=503, body="<html></html>", content_type="text/html")
    mocked.get(url(STATUS), payload=COMPLETE)
    async with Store.open(tmp_path / "usage.db") as store, MarketoClient(
        settings, store=store, clock=fake_time.clock, sleep=fake_time.sleep
    ) as c:
        await c.create_import(upload_file, "leads", OPTIONS)
        await c.get_status(77, "leads", {})
        usage = await store.usage_on(quota_day(fake_time.now))
    # Identity calls are not counted (they count toward no limit).
    assert usage == {
        "import_create": {"calls": 1, "errors": 0},
        "import_status": {"calls": 2, "errors": 1},
    }


async def test_identity_401_surfaces_as_auth_error_before_any_call(
    client: MarketoClient, mocked: aioresponses
) -> None:
    from orchestrator.errors import AuthError

    mocked.post(IDENTITY, status=401, payload={"error": "invalid_client"})
    with pytest.raises(AuthError):
        await client.get_status(77, "leads", {})
    assert not calls_to(mocked, "GET", STATUS)


async def test_upload_after_gateway_error_is_resent_and_the_ambiguity_logged(
    client: MarketoClient, mocked: aioresponses, upload_file: Path
) -> None:
    token_ok(mocked)
    mocked.post(url(LEADS), status=504, body="<html>Gateway Time-out</html>",
                content_type="text/html")
    mocked.post(url(LEADS), payload=QUEUED)
    with capture_logs() as logs:
        assert (await client.create_import(upload_file, "leads", OPTIONS)).batch_id == 77
    ambiguous = [e for e in logs if e["event"] == "upload_ambiguous"]
    assert len(ambiguous) == 1
    assert ambiguous[0]["status"] == 504


async def test_download_does_not_ask_for_json(
    client: MarketoClient, mocked: aioresponses, tmp_path: Path
) -> None:
    token_ok(mocked)
    failures = "/bulk/v1/leads/batch/77/failures.json"
    mocked.get(url(failures), body="a,Import Failure Reason\r\nx,y\r\n", content_type="text/csv")
    mocked.get(url(STATUS), payload=COMPLETE)
    await client.download_failures(77, "leads", {}, tmp_path / "f.csv")
    await client.get_status(77, "leads", {})
    assert "Accept" not in calls_to(mocked, "GET", failures)[0].kwargs["headers"]
    assert calls_to(mocked, "GET", STATUS)[0].kwargs["headers"]["Accept"] == "application/json"
