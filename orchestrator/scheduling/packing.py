"""Packing: which waiting parts share the next Marketo job, and whether it leaves now.

Pure decisions: values and ``now`` in, a frozen plan out; the scheduler's packer
(``scheduling/packer.py``) reads the store, writes the pack file and records it.

Marketo's scarce resources are jobs (10 queued-or-importing per instance, 2 importing) and API
calls, not rows (contract 2.4, 6). Parts of files that would make the same job (same
``pack_key``: endpoint, options and columns) ride together in one upload of at most
``limits.max_upload_bytes``.

Which parts: the oldest waiting part (the FIFO head) and the parts of its key after it, in
FIFO order, while they fit, and until the pack holds half of the rows waiting under the key
(but at least ``MIN_SPLIT_ROWS``). Never skipping a part of the key keeps FIFO order inside a
key, so a later file's row for a lead still wins. Half, because Marketo imports 2 jobs at
once: a pack that took the whole backlog would keep one slot busy while the other idled;
packs that halve what waits shrink as the backlog drains, so the two slots end together. A
small backlog is not split: what a second slot would gain on a few hundred rows is less than
what one more job costs (a place in Marketo's queue, a create call, status calls, and at
least one polling interval before we learn it finished).

When it leaves (contract 2.4: jobs import in Marketo's FIFO order, 2 at a time):

- ``full``: the next part of the key does not fit; waiting cannot make the pack bigger;
- ``slot_free``: fewer than ``COVERED`` (3) of our jobs are at Marketo: the 2 importing slots
  and the next in line are not all covered, so a slot would idle while work waits;
- ``due``: the key's oldest part reached its ``send_by`` (``import.pack_wait_s`` after it was
  queued; 0 makes every part due at once);
- ``alone``: the part never shares a job (packing off for its route, or no known header);
- otherwise it waits: a job that would only wait in Marketo's queue behind ours gains nothing
  by leaving early, and meanwhile small files keep filling the pack. It is planned again when
  one of our jobs leaves Marketo's queue, when new parts are queued, or at ``wait_until``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.scheduling.pacing import MARKETO_IMPORTING_SLOTS

#: Our jobs at Marketo that cover its importing slots and the next place in line.
COVERED = MARKETO_IMPORTING_SLOTS + 1
#: A pack is cut at half the rows waiting under its key only when that half holds at least
#: this many rows; a smaller backlog goes as one pack (up to the size limit).
MIN_SPLIT_ROWS = 1000


@dataclass(frozen=True, slots=True)
class Waiting:
    """One part waiting for a pack, as the planner sees it.

    Attributes:
        id: the part's id (FIFO order).
        rows: its data rows.
        size_bytes: its prepared file's size, header included.
        header_bytes: its header line's size (0: unknown; it cannot share a job).
        send_by: epoch seconds by which it leaves at the latest, or None (no bound).
    """

    id: int
    rows: int
    size_bytes: int
    header_bytes: int
    send_by: float | None = None

    @property
    def body_bytes(self) -> int:
        """Bytes of its rows alone (what it adds to a pack after the first part)."""
        return self.size_bytes - self.header_bytes


@dataclass(frozen=True, slots=True)
class PackPlan:
    """The planner's answer.

    Attributes:
        parts: ids of the parts of the next pack, in FIFO (row) order.
        rows: data rows in the pack.
        size_bytes: size of the pack file (one header, then every part's rows).
        send: whether the pack leaves now.
        reason: ``full``, ``slot_free``, ``due`` or ``alone`` when it leaves; ``wait`` when not.
        wait_until: when not sent, the epoch seconds at which the key's oldest part is due
            (None: no bound; only an event makes it leave).
    """

    parts: tuple[int, ...]
    rows: int
    size_bytes: int
    send: bool
    reason: str
    wait_until: float | None = None


def choose_parts(
    group: Sequence[Waiting], group_rows: int, budget: int
) -> tuple[list[Waiting], bool]:
    """Return the parts of the next pack and whether it is full.

    Args:
        group: the waiting parts of one key in FIFO order (at least the head); parts past
            the first that does not fit are never looked at.
        group_rows: rows waiting under the key in all (``group`` may be cut short).
        budget: the largest pack file in bytes (``limits.max_file_bytes``).

    Returns:
        ``(parts, full)``: the head and the parts after it that fit, until the pack holds
        half of ``group_rows`` (at least ``MIN_SPLIT_ROWS``); ``full`` when the next part of
        the group did not fit.
    """
    head = group[0]
    chosen = [head]
    size, rows = head.size_bytes, head.rows
    half = max((max(group_rows, rows) + 1) // 2, MIN_SPLIT_ROWS)
    for part in group[1:]:
        if rows >= half:
            return chosen, False
        if size + part.body_bytes > budget:
            return chosen, True
        chosen.append(part)
        size += part.body_bytes
        rows += part.rows
    return chosen, False


def plan_pack(
    group: Sequence[Waiting],
    group_rows: int,
    *,
    packable: bool,
    at_marketo: int,
    budget: int,
    now: float,
    group_due: float | None = None,
) -> PackPlan:
    """Decide the next pack and whether it leaves now (see the module docstring).

    Args:
        group: the FIFO head and the waiting parts of its key after it, in FIFO order (from
            ``Store.waiting_group``: those that could fit, plus the first that would not).
        group_rows: rows waiting under the key in all.
        packable: False when the head travels alone (no pack key, or no known header).
        at_marketo: our jobs queued or importing at Marketo (or being submitted).
        budget: the largest pack file in bytes (``limits.max_file_bytes``).
        now: epoch seconds.
        group_due: the earliest ``send_by`` under the key (default: the earliest in ``group``).

    Returns:
        The plan.

    Raises:
        ValueError: ``group`` is empty.
    """
    if not group:
        raise ValueError("plan_pack needs at least the FIFO head")
    if not packable or group[0].header_bytes <= 0:
        head = group[0]
        return PackPlan((head.id,), head.rows, head.size_bytes, True, "alone")
    chosen, full = choose_parts(group, group_rows, budget)
    ids = tuple(p.id for p in chosen)
    rows = sum(p.rows for p in chosen)
    size = chosen[0].size_bytes + sum(p.body_bytes for p in chosen[1:])
    due_times = [p.send_by for p in group if p.send_by is not None]
    due = group_due if group_due is not None else min(due_times, default=None)
    if full:
        return PackPlan(ids, rows, size, True, "full")
    if at_marketo < COVERED:
        return PackPlan(ids, rows, size, True, "slot_free")
    if due is not None and due <= now:
        return PackPlan(ids, rows, size, True, "due")
    return PackPlan(ids, rows, size, False, "wait", due)
