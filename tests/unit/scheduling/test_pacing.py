"""Pure scheduling and polling decisions (orchestrator/scheduling/pacing.py)."""

from __future__ import annotations

import pytest

from orchestrator.scheduling import pacing as policy
from orchestrator.scheduling.pacing import PollView, SlotState


def test_no_learned_limit_means_the_configured_one() -> None:
    assert policy.allowed_outstanding(SlotState(), 10, now=0) == 10
    assert policy.allowed_outstanding(SlotState(), 4, now=0) == 4


def test_queue_full_learns_the_outstanding_count_and_backs_off() -> None:
    state = policy.on_queue_full(SlotState(), 3, 100.0, base_s=5, max_s=120, rand=0.0)
    assert state == SlotState(learned=3, streak=1, retry_at=102.5)
    # Until the backoff expires only our 3 may be out; afterwards one probe more.
    assert policy.allowed_outstanding(state, 10, now=102.4) == 3
    assert policy.allowed_outstanding(state, 10, now=102.5) == 4
    # The configured limit always wins.
    assert policy.allowed_outstanding(state, 2, now=200) == 2
    again = policy.on_queue_full(state, 3, 103.0, base_s=5, max_s=120, rand=0.0)
    assert again.streak == 2 and again.retry_at == pytest.approx(108.0)


def test_queue_full_with_nothing_of_ours_out_waits_then_probes_with_one() -> None:
    state = policy.on_queue_full(SlotState(), 0, 0.0, base_s=1, max_s=8, rand=0.0)
    assert policy.allowed_outstanding(state, 10, now=0.1) == 0
    assert policy.allowed_outstanding(state, 10, now=0.5) == 1


def test_successful_probe_raises_the_learned_limit_and_resets_the_streak() -> None:
    state = SlotState(learned=3, streak=2, retry_at=50.0)
    within = policy.on_submitted(state, 3, 10)
    assert within == state  # a submission under the learned limit teaches nothing
    probe = policy.on_submitted(state, 4, 10)
    assert probe == SlotState(learned=4, streak=0, retry_at=50.0)
    assert policy.allowed_outstanding(probe, 10, now=60.0) == 5  # the next probe may follow
    assert policy.on_submitted(SlotState(learned=9), 10, 10) == SlotState()


def test_transient_not_before_grows() -> None:
    first = policy.transient_not_before(1, 10.0, base_s=1.0, max_s=60.0, rand=0.0)
    third = policy.transient_not_before(3, 10.0, base_s=1.0, max_s=60.0, rand=0.0)
    assert first == pytest.approx(10.5) and third == pytest.approx(12.0)


MIN, MAX = 5.0, 30.0


def test_importing_without_a_rate_is_polled_at_the_minimum() -> None:
    view = PollView(status="Importing", position=0, rows=1000, done=10)
    assert policy.next_poll_delay(view, MIN, MAX) == MIN


@pytest.mark.parametrize(("remaining", "expected"), [(10, 5.0), (400, 20.0), (10_000, 30.0)])
def test_importing_is_polled_at_its_expected_end(remaining: int, expected: float) -> None:
    view = PollView(status="Importing", position=0, rows=10_000, done=10_000 - remaining,
                    rate=20.0)
    assert policy.next_poll_delay(view, MIN, MAX) == pytest.approx(expected)


def test_first_two_queued_are_polled_at_the_minimum_and_later_ones_less_often() -> None:
    delays = [
        policy.next_poll_delay(PollView(status="Queued", position=p, rows=100), MIN, MAX)
        for p in range(10)
    ]
    assert delays[:2] == [MIN, MIN]
    assert delays == sorted(delays)  # never more often further back
    assert delays[2] > MIN and delays[9] == MAX


def test_queued_with_a_rate_waits_for_the_rows_ahead_on_two_slots() -> None:
    view = PollView(status="Queued", position=4, rows=100, rows_ahead=1000, rate=50.0)
    assert policy.next_poll_delay(view, MIN, MAX) == pytest.approx(10.0)
    # Deep in the queue the wait may exceed max_s (its status cannot change), up to 10x.
    deep = PollView(status="Queued", position=6, rows=100, rows_ahead=10_000, rate=50.0)
    assert policy.next_poll_delay(deep, MIN, MAX) == pytest.approx(100.0)
    far = PollView(status="Queued", position=9, rows=100, rows_ahead=10**6, rate=50.0)
    assert policy.next_poll_delay(far, MIN, MAX) == MAX * policy.DEEP_QUEUE_FACTOR
    near = PollView(status="Queued", position=2, rows=100, rows_ahead=10, rate=50.0)
    assert policy.next_poll_delay(near, MIN, MAX) == MIN
    # The first two never wait longer than max_s, however far off their start looks.
    front = PollView(status="Queued", position=1, rows=100, rows_ahead=10**6, rate=1.0)
    assert policy.next_poll_delay(front, MIN, MAX) == MIN


@pytest.mark.parametrize(
    ("planned", "position", "expected"),
    [(1000.0 + 31, 0, 1005.0), (1000.0 + 31, 1, 1005.0), (1000.0 + 30, 1, None),
     (1000.0 + 300, 2, None), (None, 0, None)],
)
def test_a_job_that_moved_up_to_the_front_is_polled_soon(
    planned: float | None, position: int, expected: float | None
) -> None:
    assert policy.promoted_poll_at(planned, position, 1000.0, MIN, MAX) == expected


def test_a_job_found_queued_again_and_again_is_polled_less_often() -> None:
    delays = [
        policy.next_poll_delay(PollView(status="Queued", position=0, rows=100, queued_polls=n),
                               MIN, MAX)
        for n in range(8)
    ]
    assert delays[0] == MIN and delays[1] == pytest.approx(7.5)
    assert delays == sorted(delays) and delays[-1] == MAX
    # Position and stuck-ness: the larger wait applies.
    back = PollView(status="Queued", position=9, rows=100, queued_polls=1)
    assert policy.next_poll_delay(back, MIN, MAX) == MAX
    # Importing jobs do not inherit the growth.
    running = PollView(status="Importing", position=0, rows=100, queued_polls=7)
    assert policy.next_poll_delay(running, MIN, MAX) == MIN


def test_observed_rate_averages_progress() -> None:
    assert policy.observed_rate(None, None, 10, 1.0, None) is None
    assert policy.observed_rate(0, 0.0, 100, 2.0, None) == pytest.approx(50.0)
    assert policy.observed_rate(100, 2.0, 100, 3.0, 50.0) == 50.0  # no progress: keep prior
    assert policy.observed_rate(100, 2.0, 200, 3.0, 50.0) == pytest.approx(75.0)
    assert policy.observed_rate(0, 5.0, 10, 5.0, 7.0) == 7.0  # no time passed


@pytest.mark.parametrize(
    ("before", "limit", "requeue", "after"),
    [(0, 3, True, 1), (1, 3, True, 2), (2, 3, False, 3), (0, 1, False, 1)],
)
def test_failed_batches_are_uploaded_again_up_to_the_limit(
    before: int, limit: int, requeue: bool, after: int
) -> None:
    assert policy.after_batch_failed(before, limit) == policy.BatchOutcome(requeue, after)


def test_a_forgotten_batch_is_uploaded_again_once() -> None:
    assert policy.after_batch_unknown(0, False) == policy.BatchOutcome(True, 1)
    assert policy.after_batch_unknown(1, True) == policy.BatchOutcome(False, 2)
