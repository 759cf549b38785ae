"""The limits governor: sliding window, calls in flight, daily budget in the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mkto_helpers import FakeTime
from structlog.testing import capture_logs

from orchestrator.errors import QuotaExhausted
from orchestrator.marketo.governor import Governor, window_wait
from orchestrator.settings import LimitSettings
from orchestrator.store import Store
from orchestrator.timing import next_quota_reset, quota_day


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "q.db") as s:
        yield s


def test_window_wait_pure() -> None:
    assert window_wait(100.0, [], 0, 3, 20.0) == 0.0
    assert window_wait(100.0, [101.0, 102.0], 0, 3, 20.0) == 0.0
    assert window_wait(100.0, [101.0, 102.0, 103.0], 0, 3, 20.0) == 1.0
    # Expired entries do not count.
    assert window_wait(100.0, [99.0, 100.0, 103.0], 0, 3, 20.0) == 0.0
    # Calls in flight count, and if only they fill the window, wait a window.
    assert window_wait(100.0, [], 3, 3, 20.0) == 20.0
    assert window_wait(100.0, [105.0], 2, 3, 20.0) == 5.0


async def test_sliding_window_never_exceeds_the_limit(fake_time: FakeTime) -> None:
    gov = Governor(
        LimitSettings(calls_per_20s=5), store=None, clock=fake_time.clock, sleep=fake_time.sleep
    )
    sent: list[float] = []
    for _ in range(23):
        async with gov.slot("import_status"):
            sent.append(fake_time.now)
    # Every 20-second window (measured from answers) holds at most 5 sends.
    for i, t in enumerate(sent):
        assert sum(1 for u in sent[i:] if u < t + 20.0) <= 5
    assert sent[5] - sent[0] == pytest.approx(20.0)
    assert sent[-1] - sent[0] == pytest.approx(80.0)


async def test_at_most_max_concurrent_in_flight(fake_time: FakeTime) -> None:
    gov = Governor(
        LimitSettings(max_concurrent_calls=3, calls_per_20s=100),
        store=None, clock=fake_time.clock, sleep=fake_time.sleep,
    )
    current = 0
    peak = 0

    async def one() -> None:
        nonlocal current, peak
        async with gov.slot("import_status"):
            current += 1
            peak = max(peak, current)
            await asyncio.sleep(0.01)
            current -= 1

    await asyncio.gather(*(one() for _ in range(11)))
    assert peak == 3
    assert gov.peak_in_flight == 3
    assert gov.in_flight == 0


async def test_hold_delays_every_call(fake_time: FakeTime) -> None:
    gov = Governor(LimitSettings(), store=None, clock=fake_time.clock, sleep=fake_time.sleep)
    t0 = fake_time.now
    gov.hold(7.0)
    async with gov.slot("describe"):
        assert fake_time.now == pytest.approx(t0 + 7.0)


async def test_daily_budget_is_counted_in_the_database_and_resets_at_midnight(
    fake_time: FakeTime, store: Store
) -> None:
    gov = Governor(
        LimitSettings(daily_call_budget=3), store=store,
        clock=fake_time.clock, sleep=fake_time.sleep,
    )
    day = quota_day(fake_time.now)
    for endpoint in ("import_create", "import_status", "import_status"):
        async with gov.slot(endpoint):
            pass
    assert await store.usage_on(day) == {
        "import_create": {"calls": 1, "errors": 0},
        "import_status": {"calls": 2, "errors": 0},
    }
    reset = next_quota_reset(fake_time.now)
    with capture_logs() as logs:
        async with gov.slot("import_status"):
            assert fake_time.now == pytest.approx(reset)
    paused = [e for e in logs if e["event"] == "quota_paused"]
    assert len(paused) == 1
    assert paused[0]["reason"] == "budget"
    assert paused[0]["resume_at"] == reset
    assert await store.calls_on(quota_day(fake_time.now)) == 1
    assert quota_day(fake_time.now) != day


async def test_budget_already_used_by_an_earlier_run_is_respected(
    fake_time: FakeTime, store: Store
) -> None:
    await store.count_calls(quota_day(fake_time.now), "import_status", 5)
    gov = Governor(
        LimitSettings(daily_call_budget=5), store=store,
        clock=fake_time.clock, sleep=fake_time.sleep, wait_for_quota=False,
    )
    with pytest.raises(QuotaExhausted) as info:
        async with gov.slot("import_status"):
            pass
    assert info.value.resume_at == next_quota_reset(fake_time.now)
    assert info.value.code == "budget"
    assert fake_time.sleeps == []


async def test_memory_budget_without_a_store(fake_time: FakeTime) -> None:
    gov = Governor(
        LimitSettings(daily_call_budget=2), store=None,
        clock=fake_time.clock, sleep=fake_time.sleep, wait_for_quota=False,
    )
    for _ in range(2):
        async with gov.slot("import_status"):
            pass
    with pytest.raises(QuotaExhausted):
        async with gov.slot("import_status"):
            pass
    fake_time.now = next_quota_reset(fake_time.now) + 1
    async with gov.slot("import_status"):
        pass


async def test_607_pause_makes_every_caller_wait_and_is_logged_once(fake_time: FakeTime) -> None:
    gov = Governor(LimitSettings(), store=None, clock=fake_time.clock, sleep=fake_time.sleep)
    resume = gov.pause_for_quota("607")
    assert resume == next_quota_reset(fake_time.now)
    started: list[float] = []

    async def one() -> None:
        async with gov.slot("import_status"):
            started.append(fake_time.now)

    with capture_logs() as logs:
        await asyncio.gather(*(one() for _ in range(4)))
    assert all(t >= resume for t in started)
    assert [e["event"] for e in logs].count("quota_paused") == 1
    assert logs[0]["reason"] == "607"


async def test_607_without_waiting_raises(fake_time: FakeTime) -> None:
    gov = Governor(
        LimitSettings(), store=None, clock=fake_time.clock, sleep=fake_time.sleep,
        wait_for_quota=False,
    )
    gov.pause_for_quota("607")
    with pytest.raises(QuotaExhausted) as info:
        async with gov.slot("import_status"):
            pass
    assert info.value.code == "607"


async def test_concurrent_callers_cannot_overshoot_the_budget(
    fake_time: FakeTime, store: Store
) -> None:
    gov = Governor(
        LimitSettings(daily_call_budget=3, max_concurrent_calls=10), store=store,
        clock=fake_time.clock, sleep=fake_time.sleep, wait_for_quota=False,
    )

    async def one() -> str:
        try:
            async with gov.slot("import_status"):
                await asyncio.sleep(0.01)
        except QuotaExhausted:
            return "refused"
        return "sent"

    results = await asyncio.gather(*(one() for _ in range(10)))
    assert sorted(results) == ["refused"] * 7 + ["sent"] * 3
    assert await store.calls_on(quota_day(fake_time.now)) == 3
    assert gov.in_flight == 0


async def test_a_new_process_counts_the_calls_its_predecessor_made_in_the_window(
    fake_time: FakeTime, store: Store
) -> None:
    """Issue 12.1: the window lives in the database, not in one process."""
    limits = LimitSettings(calls_per_20s=5)
    first = Governor(limits, store=store, clock=fake_time.clock, sleep=fake_time.sleep)
    t0 = fake_time.now
    for _ in range(5):
        async with first.slot("import_status"):
            pass
    fake_time.now += 1.0  # the process dies; the next one starts a second later
    second = Governor(limits, store=store, clock=fake_time.clock, sleep=fake_time.sleep)
    with capture_logs() as logs:
        async with second.slot("import_status"):
            assert fake_time.now == pytest.approx(t0 + 20.0)
    (restored,) = [e for e in logs if e["event"] == "rate_window_restored"]
    assert restored["calls"] == 5 and restored["in_flight_at_exit"] == 0


async def test_a_call_in_flight_when_its_process_died_counts_as_made(
    fake_time: FakeTime, store: Store
) -> None:
    # What a process killed during a call leaves: the call counted, never marked over.
    await store.begin_call(quota_day(fake_time.now), "import_status", fake_time.now - 300)
    restart = fake_time.now
    gov = Governor(LimitSettings(calls_per_20s=1), store=store,
                   clock=fake_time.clock, sleep=fake_time.sleep)
    async with gov.slot("import_status"):
        # It may have reached Marketo just before the kill: it counts until restart + window.
        assert fake_time.now == pytest.approx(restart + 20.0)
    assert await store.calls_on(quota_day(fake_time.now)) == 2


async def test_calls_older_than_the_window_are_forgotten(
    fake_time: FakeTime, store: Store
) -> None:
    gov = Governor(LimitSettings(calls_per_20s=3), store=store,
                   clock=fake_time.clock, sleep=fake_time.sleep)
    for _ in range(3):
        async with gov.slot("import_status"):
            pass
    fake_time.now += 20.5
    assert await store.restore_window(fake_time.now, 20.0) == []
    again = Governor(LimitSettings(calls_per_20s=3), store=store,
                     clock=fake_time.clock, sleep=fake_time.sleep)
    t1 = fake_time.now
    async with again.slot("import_status"):
        assert fake_time.now == t1
    assert fake_time.sleeps == []


@pytest.mark.parametrize("with_store", [True, False])
async def test_a_call_without_an_answer_leaves_the_budget_but_not_the_window(
    fake_time: FakeTime, store: Store, with_store: bool
) -> None:
    """Issue 13.6: the daily budget counts what Marketo counts: calls it answered."""
    gov = Governor(LimitSettings(calls_per_20s=2, daily_call_budget=2),
                   store=store if with_store else None,
                   clock=fake_time.clock, sleep=fake_time.sleep, wait_for_quota=False)
    day = quota_day(fake_time.now)
    t0 = fake_time.now
    async with gov.slot("import_status") as ticket:
        ticket.no_answer()  # connection refused
    async with gov.slot("import_status"):
        pass
    if with_store:
        assert await store.usage_on(day) == {"import_status": {"calls": 1, "errors": 0}}
    # The refused call still held its place in the window (a third call waits) ...
    async with gov.slot("import_status"):
        assert fake_time.now == pytest.approx(t0 + 20.0)
    # ... and two answered calls spend the budget of two.
    with pytest.raises(QuotaExhausted):
        async with gov.slot("import_status"):
            pass


async def test_a_node_taking_the_lease_counts_the_calls_another_node_made(
    fake_time: FakeTime, tmp_path: Path
) -> None:
    """Issue 17: the 20-s window is the instance's, whichever node sent the calls."""
    async with Store.open(tmp_path / "q.db", clock=fake_time.clock) as db:
        limits = LimitSettings(calls_per_20s=5)
        a = Governor(limits, store=db.for_instance("prod"), clock=fake_time.clock,
                     sleep=fake_time.sleep)
        b = Governor(limits, store=db.for_instance("prod"), clock=fake_time.clock,
                     sleep=fake_time.sleep)
        other = Governor(limits, store=db.for_instance("sandbox"), clock=fake_time.clock,
                         sleep=fake_time.sleep)
        await b.restore()  # b ran before, as a follower it made no call
        for _ in range(4):  # node a holds the lease and calls
            async with a.slot("import_status"):
                pass
        async with other.slot("import_status"):  # another instance's calls do not count
            pass
        assert b.calls_in_window() == 0
        await b.resync()  # b takes the lease
        assert b.calls_in_window() == 4
        began = fake_time.now
        for _ in range(2):
            async with b.slot("import_status"):
                pass
        # One call was left in the window: the second waited until a's first left it.
        assert fake_time.now - began == pytest.approx(20.0, abs=0.5)
