"""Per-instance call limits: 606, 615, 607 with their windows.

See docs/reference/marketo-api.md §6, §8.3.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from sim_helpers import MakeSim, Sim, error_of

from orchestrator.simulator import ManualClock
from orchestrator.simulator.clock import CHICAGO

DESCRIBE = "/rest/v1/leads/describe.json"


async def _describe(sim: Sim) -> dict[str, object]:
    resp = await sim.get(DESCRIBE)
    assert resp.status == 200
    body: dict[str, object] = await resp.json()
    return body


async def test_101st_call_in_20_s_gets_606_and_window_slides(
    sim: Sim, clock: ManualClock
) -> None:
    for _ in range(100):
        assert (await _describe(sim))["success"] is True
        clock.advance(0.1)  # 100 calls spread over 10 s
    body = await _describe(sim)
    assert error_of(body) == ("606", "Max rate limit '100' exceeded with in '20' secs")
    stats = await sim.stats()
    assert stats["peak_calls_per_window"] == 101  # the refused call counts too
    assert stats["errors"]["606"] == 1
    clock.advance(10.0)  # t=20: only the call made at t=0 has left the window
    assert error_of(await _describe(sim))[0] == "606"
    clock.advance(0.5)  # t=20.5: calls made at t<=0.5 have left; 95 remain
    assert (await _describe(sim))["success"] is True


async def test_11th_concurrent_call_gets_615(make_sim: MakeSim) -> None:
    sim: Sim = await make_sim(faults={"latency_s": 0.5})
    await sim.token()
    bodies = await asyncio.gather(*(_describe(sim) for _ in range(11)))
    errors = [b for b in bodies if b["success"] is False]
    assert len(errors) == 1
    assert error_of(errors[0]) == ("615", "Concurrent access limit '10' reached")
    stats = await sim.stats()
    assert stats["peak_concurrent_calls"] == 10
    assert stats["inflight"] == 0
    assert stats["quota_used_today"] == 11  # the refused call still counts


async def test_daily_quota_gives_607_until_chicago_midnight(
    make_sim: MakeSim, clock: ManualClock
) -> None:
    sim: Sim = await make_sim(daily_quota=3)
    clock.set(datetime(2026, 3, 2, 23, 0, tzinfo=CHICAGO))
    for _ in range(3):
        assert (await _describe(sim))["success"] is True
    assert error_of(await _describe(sim)) == ("607", "Daily quota reached")
    clock.set(datetime(2026, 3, 2, 23, 59, 59, tzinfo=CHICAGO))
    assert error_of(await _describe(sim)) == ("607", "Daily quota reached")
    clock.set(datetime(2026, 3, 3, 0, 0, 0, tzinfo=CHICAGO))
    assert (await _describe(sim))["success"] is True
    stats = await sim.stats()
    assert stats["errors"]["607"] == 2
    assert stats["quota_used_today"] == 1
    nxt = datetime(2026, 3, 4, tzinfo=CHICAGO).timestamp()
    assert stats["quota_resets_at"] == nxt


async def test_quota_resets_at_chicago_midnight_not_utc(
    make_sim: MakeSim, clock: ManualClock
) -> None:
    sim: Sim = await make_sim(daily_quota=1)
    clock.set(datetime(2026, 3, 2, 17, 0, tzinfo=CHICAGO))
    assert (await _describe(sim))["success"] is True
    # UTC midnight passes (18:00 Chicago, CST = UTC-6): still refused.
    clock.advance(timedelta(hours=1, minutes=30).total_seconds())
    assert error_of(await _describe(sim)) == ("607", "Daily quota reached")
