"""The pack builder's pure decisions: which parts share the next job, and when it leaves."""

from __future__ import annotations

import pytest

from orchestrator.scheduling.packing import (
    COVERED,
    MIN_SPLIT_ROWS,
    Waiting,
    choose_parts,
    plan_pack,
)

HEADER = 30
NOW = 1_000.0


def parts(*rows: int, body: int = 100, send_by: float | None = NOW + 60) -> list[Waiting]:
    """Waiting parts with ids 1.., each ``body`` bytes of rows after a 30-byte header."""
    return [Waiting(i + 1, r, HEADER + body, HEADER, send_by) for i, r in enumerate(rows)]


def test_parts_are_taken_in_fifo_order_until_half_the_rows_wait_in_the_pack() -> None:
    group = parts(*[500] * 10)
    chosen, full = choose_parts(group, group_rows=5000, budget=10_000)
    assert [p.id for p in chosen] == [1, 2, 3, 4, 5] and not full


def test_a_small_backlog_is_not_split() -> None:
    group = parts(*[3] * 300)
    chosen, full = choose_parts(group, group_rows=900, budget=10**6)
    assert len(chosen) == 300 and not full
    assert MIN_SPLIT_ROWS > 900


def test_the_next_part_not_fitting_makes_the_pack_full() -> None:
    group = parts(3, 3, 3, 3, body=400)
    chosen, full = choose_parts(group, group_rows=100, budget=HEADER + 1000)
    assert [p.id for p in chosen] == [1, 2] and full


def test_the_head_goes_even_when_it_holds_more_than_half() -> None:
    chosen, full = choose_parts(parts(5000, 10, 10), group_rows=5020, budget=10_000)
    assert [p.id for p in chosen] == [1] and not full


def test_halving_drains_a_backlog_so_two_slots_end_together() -> None:
    """100 equal parts packed as the slots free: 50, 25, 13, 6, 3, 2, 1 -> both slots ~50."""
    left = 100
    sizes = []
    while left:
        chosen, _ = choose_parts(parts(*[600] * left), group_rows=600 * left, budget=10**9)
        sizes.append(len(chosen))
        left -= len(chosen)
    assert sizes == [50, 25, 13, 6, 3, 2, 1]  # the last two: 1,200 rows is not split
    slot_a, slot_b = sizes[0], sum(sizes[1:])
    assert abs(slot_a - slot_b) <= 1


@pytest.mark.parametrize(
    ("at_marketo", "send_by", "budget", "send", "reason"),
    [
        (0, NOW + 60, 10_000, True, "slot_free"),  # a slot would idle
        (COVERED - 1, NOW + 60, 10_000, True, "slot_free"),  # the next in line is missing
        (COVERED, NOW + 60, 10_000, False, "wait"),  # importing slots and next in line held
        (9, NOW + 60, 10_000, False, "wait"),
        (COVERED, NOW, 10_000, True, "due"),  # pack_wait_s reached (0 makes this at once)
        (COVERED, NOW - 5, 10_000, True, "due"),
        (COVERED, NOW + 60, HEADER + 250, True, "full"),  # nothing more fits
        (COVERED, None, 10_000, False, "wait"),  # no bound: only an event makes it leave
    ],
)
def test_when_a_pack_leaves(
    at_marketo: int, send_by: float | None, budget: int, send: bool, reason: str
) -> None:
    group = parts(*[3] * 8, send_by=send_by)
    plan = plan_pack(group, 24, packable=True, at_marketo=at_marketo, budget=budget, now=NOW)
    assert (plan.send, plan.reason) == (send, reason)
    if not send:
        assert plan.wait_until == send_by
    assert plan.parts[0] == 1 and plan.rows == 3 * len(plan.parts)
    assert plan.size_bytes == HEADER + 100 * len(plan.parts)


def test_the_group_due_time_counts_parts_past_the_budget() -> None:
    group = parts(3, 3, send_by=NOW + 60)
    plan = plan_pack(group, 6, packable=True, at_marketo=COVERED, budget=10_000, now=NOW,
                     group_due=NOW - 1)
    assert plan.send and plan.reason == "due"


@pytest.mark.parametrize(
    ("packable", "header"),
    [(False, HEADER), (True, 0)],  # packing off for its route; a v1 part (header unknown)
)
def test_a_part_that_cannot_share_goes_alone_at_once(packable: bool, header: int) -> None:
    group = [Waiting(7, 5, 500, header, NOW + 60), Waiting(8, 5, 500, header, NOW + 60)]
    plan = plan_pack(group, 10, packable=packable, at_marketo=9, budget=10_000, now=NOW)
    assert (plan.parts, plan.send, plan.reason, plan.size_bytes) == ((7,), True, "alone", 500)


def test_an_empty_group_is_a_bug() -> None:
    with pytest.raises(ValueError, match="FIFO head"):
        plan_pack([], 0, packable=True, at_marketo=0, budget=1, now=NOW)
