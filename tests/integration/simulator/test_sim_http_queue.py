"""The import queue: 1016, FIFO, expiry, faults.

See docs/reference/marketo-api.md §2.4, §8.3, §8.5, §8.6, §8.8 and §8.9.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from sim_helpers import MakeSim, Sim, error_of

from orchestrator.simulator import ManualClock


def _rows(n: int) -> str:
    return "email\n" + "".join(f"u{i}@example.com\n" for i in range(n))


async def _upload(sim: Sim, n: int = 1) -> int:
    body = await sim.upload(_rows(n))
    assert body["success"] is True, body
    assert body["result"][0]["status"] == "Queued"
    batch_id: int = body["result"][0]["batchId"]
    return batch_id


async def test_11th_upload_gets_1016_and_is_not_stored(sim: Sim) -> None:
    ids = [await _upload(sim, 1000) for _ in range(10)]
    assert ids == list(range(ids[0], ids[0] + 10))
    body = await sim.upload(_rows(1))
    assert error_of(body) == ("1016", "Too many imports")
    stats = await sim.stats()
    assert len(stats["batches"]) == 10
    assert stats["peak_queued_or_importing"] == 10
    assert (stats["queued"], stats["importing"]) == (8, 2)
    sim.clock.advance(2.0)  # 1000 rows at 500/s: the first two finish, two slots free up
    assert await _upload(sim) == ids[-1] + 1


async def test_foreign_jobs_take_queue_slots(sim: Sim, clock: ManualClock) -> None:
    added = await sim.admin("POST", "/_sim/foreign-jobs", json={"count": 8, "duration_s": 60})
    assert added["added"] == 8 and len(added["batchIds"]) == 8
    mine = [await _upload(sim), await _upload(sim)]
    assert error_of(await sim.upload(_rows(1))) == ("1016", "Too many imports")
    # foreign batches are invisible to the API
    body = await sim.get_json(f"/bulk/v1/leads/batch/{added['batchIds'][0]}.json")
    assert error_of(body) == ("1013", "Object not found")
    # mine are last in the FIFO: 8 foreign jobs of 60 s on 2 slots = 240 s before they start
    clock.advance(239)
    assert (await sim.status(mine[0]))["status"] == "Queued"
    clock.advance(1)
    assert (await sim.status(mine[0]))["status"] == "Importing"
    clock.advance(1)
    assert (await sim.status(mine[1]))["status"] == "Complete"


async def test_standing_foreign_jobs_setting(make_sim: MakeSim) -> None:
    sim: Sim = await make_sim(
        faults={"foreign_standing_jobs": 9, "foreign_job_duration_s": 30}
    )
    await _upload(sim)
    assert error_of(await sim.upload(_rows(1))) == ("1016", "Too many imports")
    sim.clock.advance(3600)
    stats = await sim.stats()
    assert stats["queued_or_importing"] == 9  # replaced as they finish
    assert await _upload(sim)


async def test_fifo_order_exact_start_times_and_slot_busy_time(
    make_sim: MakeSim, clock: ManualClock
) -> None:
    sim: Sim = await make_sim(rate_limit_calls=10_000)
    sizes = [1000, 250, 500, 100, 50]  # 2 s, 0.5 s, 1 s, 0.2 s, 0.1 s at 500 rows/s
    ids = [await _upload(sim, n) for n in sizes]
    t0 = clock.now()
    seen_importing: list[int] = []
    for _ in range(40):
        for batch_id in ids:
            if (await sim.status(batch_id))["status"] != "Queued" and batch_id not in seen_importing:
                seen_importing.append(batch_id)
        clock.advance(0.1)
    assert seen_importing == ids  # nobody skips ahead
    batches = {b["batchId"]: b for b in (await sim.stats())["batches"]}
    starts = [batches[i]["importing_at"] - t0 for i in ids]
    ends = [batches[i]["finished_at"] - t0 for i in ids]
    # slot 0: job1 0-2; slot 1: job2 0-0.5, job3 0.5-1.5, job4 1.5-1.7, job5 1.7-1.8
    assert starts == pytest.approx([0, 0, 0.5, 1.5, 1.7])
    assert ends == pytest.approx([2, 0.5, 1.5, 1.7, 1.8])
    assert [batches[i]["slot"] for i in ids] == [0, 1, 1, 1, 1]
    stats = await sim.stats()
    assert stats["slot_busy_s"] == pytest.approx([2.0, 1.8])


async def test_a_queued_job_never_starts_before_earlier_ones(
    sim: Sim, clock: ManualClock
) -> None:
    t0 = clock.now()
    big = [await _upload(sim, 5000) for _ in range(2)]  # 10 s each
    small = await _upload(sim, 1)
    clock.advance(9.99)
    assert (await sim.status(small))["status"] == "Queued"
    assert [(await sim.status(b))["status"] for b in big] == ["Importing", "Importing"]
    clock.set(t0 + 10)
    assert (await sim.status(small))["status"] == "Importing"  # starts when a slot frees
    clock.advance(0.002)
    assert (await sim.status(small))["status"] == "Complete"
    timeline = {b["batchId"]: b for b in (await sim.stats())["batches"]}
    assert timeline[small]["importing_at"] == t0 + 10


async def test_unknown_batch_gets_1013(sim: Sim) -> None:
    for batch in ("424242", "abc"):
        body = await sim.get_json(f"/bulk/v1/leads/batch/{batch}.json")
        assert error_of(body) == ("1013", "Object not found")


async def test_batch_expires_after_seven_days(sim: Sim, clock: ManualClock) -> None:
    batch_id = await _upload(sim)
    clock.advance(7 * 86400 - 1)
    assert (await sim.status(batch_id))["status"] == "Complete"
    clock.advance(1)
    body = await sim.get_json(f"/bulk/v1/leads/batch/{batch_id}.json")
    assert error_of(body) == ("1013", "Object not found")
    assert (await sim.stats())["expired_batches"] == 1


async def test_program_member_and_custom_object_imports_share_the_queue(sim: Sim) -> None:
    for _ in range(8):
        await _upload(sim, 1000)
    pm = await sim.upload(
        "email,firstName\na@example.com,Ann\n",
        path="/bulk/v1/program/2001/members/import.json",
        fmt="CSV",
        query={"programMemberStatus": "On List"},
    )
    assert pm["result"][0]["status"] == "Queued"
    co = await sim.upload("vin,make\nV1,Volvo\n", path="/bulk/v1/customobjects/car_c/import.json")
    assert co["result"][0]["status"] == "Queued"
    body = await sim.upload(
        "email\nb@example.com\n",
        path="/bulk/v1/program/2001/members/import.json",
        query={"programMemberStatus": "On List"},
    )
    assert error_of(body) == ("1016", "Too many imports")
    kinds = [b["kind"] for b in (await sim.stats())["batches"]]
    assert kinds == ["lead"] * 8 + ["program_member", "custom_object"]


async def test_fail_next_job_ends_failed_with_partial_counters(make_sim: MakeSim) -> None:
    sim: Sim = await make_sim(faults={"fail_next_jobs": 1})
    failing = await _upload(sim, 100)
    fine = await _upload(sim, 100)
    sim.clock.advance(60)
    status = await sim.status(failing)
    assert status["status"] == "Failed"
    assert status["message"] == "Import failed: Internal server error"
    assert status["numOfLeadsProcessed"] == 50
    assert (await sim.status(fine))["status"] == "Complete"
    await sim.admin("PATCH", "/_sim/settings", json={"faults": {"job_failure_probability": 1.0,
                                                               "job_failure_reason": "Disk"}})
    again = await _upload(sim, 10)
    sim.clock.advance(60)
    assert (await sim.status(again))["message"] == "Import failed: Disk"


async def test_dropped_upload_response_queues_the_job_but_client_gets_no_answer(
    make_sim: MakeSim,
) -> None:
    sim: Sim = await make_sim(faults={"drop_next_upload_responses": 1})
    fd = aiohttp.FormData()
    fd.add_field("file", b"email\na@example.com\n", filename="l.csv")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await sim.client.post(
            "/bulk/v1/leads.json?format=csv", data=fd, headers=await sim.headers()
        )
    stats = await sim.stats()
    assert len(stats["batches"]) == 1
    assert stats["errors"] == {"dropped": 1}
    assert stats["drop_next_upload_responses_remaining"] == 0
    log = await sim.admin("GET", "/_sim/requests")
    assert [e["code"] for e in log if e["endpoint"] == "import_lead"] == ["dropped"]
    assert await _upload(sim)  # the next one is answered


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_http_gateway_failures_have_html_bodies(make_sim: MakeSim, status: int) -> None:
    sim: Sim = await make_sim(
        faults={f"http_{status}_probability": 1.0}
    )
    resp = await sim.get("/bulk/v1/leads/batch/1001.json")
    assert resp.status == status
    assert resp.headers["Content-Type"].startswith("text/html")
    assert str(status) in await resp.text()
    assert (await sim.stats())["errors"] == {str(status): 1}


@pytest.mark.parametrize(
    ("code", "message", "counted"),
    [
        ("604", "Request time-out", False),
        ("608", "API Temporarily Unavailable", False),
        ("611", "System error", False),
        ("713", "Transient Error", True),
    ],
)
async def test_injected_api_errors(
    make_sim: MakeSim, code: str, message: str, counted: bool
) -> None:
    sim: Sim = await make_sim(
        faults={f"error_{code}_probability": 1.0}
    )
    body = await sim.get_json("/rest/v1/leads/describe.json")
    assert error_of(body) == (code, message)
    assert (await sim.stats())["quota_used_today"] == (1 if counted else 0)


async def test_room_is_checked_again_after_a_big_file_is_parsed(make_sim: MakeSim) -> None:
    sim = await make_sim(max_queued=1)
    big = _rows(20_000)  # > 256 KB: parsed in a worker thread while other calls go on
    bodies = await asyncio.gather(sim.upload(big), sim.upload(big))
    outcomes = sorted(b["success"] for b in bodies)
    assert outcomes == [False, True]
    refused = next(b for b in bodies if not b["success"])
    assert error_of(refused) == ("1016", "Too many imports")
    assert len((await sim.stats())["batches"]) == 1
