"""Pure scheduling and polling decisions: values and ``now`` in, a decision out, no I/O.

The scheduler and the poller (``scheduler.py``, ``poller.py``) carry these decisions out.
Every function here is deterministic; randomness (jitter) comes in as a ``rand`` argument
in ``[0, 1)``, so tests pin it.

Contract: Marketo holds at most 10 import jobs queued-or-importing per instance, 2 of them
importing, in one FIFO shared with every other integration (2.4, 4.3). ``1016`` means the
queue is full: back-pressure, never a spent attempt (9.3). Status should be polled every
5 to 30 s, and a queued job cannot finish before the jobs ahead of it start (9.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

#: Jobs Marketo imports at once per instance (contract 2.4).
MARKETO_IMPORTING_SLOTS = 2


def jittered(delay_s: float, rand: float) -> float:
    """Return ``delay_s`` with "equal jitter": uniformly in ``[delay_s / 2, delay_s)``.

    Args:
        delay_s: the nominal delay, seconds (>= 0).
        rand: a number in ``[0, 1)``.
    """
    return delay_s * (0.5 + 0.5 * min(max(rand, 0.0), 1.0))


def exponential_backoff(streak: int, base_s: float, max_s: float, rand: float) -> float:
    """Return the jittered wait after ``streak`` consecutive refusals, seconds.

    The nominal wait is ``base_s * 2 ** (streak - 1)`` capped at ``max_s``; jitter then
    spreads it over its upper half (see ``jittered``).

    Args:
        streak: consecutive refusals so far, counting this one (>= 1).
        base_s: the first wait, seconds.
        max_s: the longest nominal wait, seconds.
        rand: a number in ``[0, 1)``.
    """
    exponent = min(max(streak - 1, 0), 30)
    return jittered(min(base_s * (2.0**exponent), max_s), rand)


def environment_retry_delay(failures: int, first_s: float, max_s: float) -> float:
    """Seconds before a step that failed because of the machine is tried again.

    An environment failure (a folder that cannot be written, a file that cannot be read
    while it is there) is no fault of the file nor of Marketo; intake and the scheduler hold
    the file or upload and try again after this long, without jitter (no other client
    competes for the retry).

    Args:
        failures: consecutive environment failures, counting this one (>= 1).
        first_s: the first wait (``intake.rescan_interval_s``).
        max_s: the longest wait (``intake.environment_retry_max_s``).

    Returns:
        ``first_s * 2 ** (failures - 1)``, capped at ``max_s`` (never below ``first_s``).
    """
    exponent = min(max(failures - 1, 0), 30)
    return float(min(first_s * 2.0**exponent, max(max_s, first_s)))


# --- how many of our jobs may be at Marketo --------------------------------------------


@dataclass(frozen=True, slots=True)
class SlotState:
    """What the scheduler has learned about free room in Marketo's import queue.

    Attributes:
        learned: our outstanding job count when Marketo last said ``1016``, i.e. how many
            slots other integrations leave us; None when no ``1016`` limits us (the
            configured ``limits.import_slots`` applies).
        streak: consecutive ``1016`` answers to probes (submissions above ``learned``).
        retry_at: epoch seconds after which one probe above ``learned`` is allowed; the
            learned limit creeps up by one slot each time a probe succeeds.
    """

    learned: int | None = None
    streak: int = 0
    retry_at: float = 0.0


def allowed_outstanding(state: SlotState, configured: int, now: float) -> int:
    """Return how many of our jobs may be queued-or-importing at Marketo right now.

    Before any ``1016`` it is ``configured``. After one it is the learned count, plus one
    (a probe) once the jittered backoff has expired, never above ``configured``. A job of
    ours leaving Marketo's queue lowers our count below the learned limit, which is how the
    scheduler "waits until one of our jobs leaves the queue" without extra state.

    Args:
        state: the current ``SlotState``.
        configured: ``limits.import_slots`` (1 to 10).
        now: epoch seconds.
    """
    if state.learned is None:
        return configured
    allowed = state.learned + (1 if now >= state.retry_at else 0)
    return max(0, min(configured, allowed))


def on_queue_full(
    state: SlotState,
    outstanding: int,
    now: float,
    *,
    base_s: float,
    max_s: float,
    rand: float,
) -> SlotState:
    """Learn from a ``1016`` Too many imports answer.

    Args:
        state: the state before the answer.
        outstanding: our jobs at Marketo when it said ``1016`` (not counting the refused one).
        now: epoch seconds of the answer.
        base_s: ``daemon.queue_full_backoff_s``.
        max_s: ``daemon.queue_full_backoff_max_s``.
        rand: a number in ``[0, 1)`` for the jitter.

    Returns:
        The new state: ``learned = outstanding``, the streak one longer, and ``retry_at``
        a doubling, jittered, capped backoff from ``now``.
    """
    streak = state.streak + 1
    return SlotState(
        learned=max(0, outstanding),
        streak=streak,
        retry_at=now + exponential_backoff(streak, base_s, max_s, rand),
    )


def on_submitted(state: SlotState, outstanding_after: int, configured: int) -> SlotState:
    """Learn from an accepted upload.

    A submission that raised our count above the learned limit was a successful probe: the
    learned limit grows to the new count and the streak resets (so the next probe may follow
    at once, and the limit climbs back quickly once other integrations leave). Reaching the
    configured limit forgets the learned one.

    Args:
        state: the state before the answer.
        outstanding_after: our jobs at Marketo including the one just accepted.
        configured: ``limits.import_slots``.
    """
    if state.learned is None or outstanding_after <= state.learned:
        return state
    if outstanding_after >= configured:
        return SlotState()
    return replace(state, learned=outstanding_after, streak=0)


# --- transient failures of a submission ----------------------------------------------------


def transient_not_before(
    streak: int, now: float, *, base_s: float, max_s: float, rand: float
) -> float:
    """Return when an upload whose create call failed transiently may be tried again.

    Args:
        streak: consecutive transient failures of this upload, counting this one (>= 1).
        now: epoch seconds.
        base_s: ``marketo.retry_base_s`` (the client already spent its own retries).
        max_s: ``marketo.retry_max_s``.
        rand: a number in ``[0, 1)``.

    Returns:
        Epoch seconds.
    """
    return now + exponential_backoff(streak, max(base_s, 0.001), max(max_s, 0.001), rand)


# --- polling -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PollView:
    """What the poller knows about one of our jobs at Marketo when it plans the next poll.

    Attributes:
        status: Marketo's status: ``Queued`` or ``Importing`` (terminal jobs are not polled).
        position: 0-based index among our jobs at Marketo in submission order (Marketo's
            FIFO order; other integrations' jobs may also be ahead, so it is a lower bound).
        rows: data rows in the upload.
        done: rows Marketo has handled so far (``numOfLeadsProcessed + numOfRowsFailed``).
        rows_ahead: rows not yet handled of our jobs ahead of this one.
        rate: observed processing rate of one importing slot, rows per second; None until
            two polls of an importing job have shown progress.
        queued_polls: polls so far that found this job still ``Queued``.
    """

    status: str
    position: int
    rows: int
    done: int = 0
    rows_ahead: int = 0
    rate: float | None = None
    queued_polls: int = 0


#: A job deep in our queue (position 2 or more) may be left unpolled this many times
#: ``polling.max_interval_s``: its status cannot change before the jobs ahead of it finish.
DEEP_QUEUE_FACTOR = 10.0
#: Growth of the interval for a job found ``Queued`` again (other integrations' jobs we
#: cannot see may be ahead of it).
QUEUED_GROWTH = 1.5


def next_poll_delay(view: PollView, min_s: float, max_s: float) -> float:
    """Return seconds until the next status call for one job.

    Policy (contract 9.5: spend calls where a status can change):

    - ``Importing``: the job finishes in about ``(rows - done) / rate`` seconds. Poll at
      that estimate, within ``[min_s, max_s]``; without a rate estimate poll at ``min_s``.
    - ``Queued`` among the first ``MARKETO_IMPORTING_SLOTS`` (2) of ours: it can start as
      soon as a slot frees, so ``min_s``. A job found ``Queued`` again and again is behind
      jobs we cannot see (other integrations'): its interval grows by ``QUEUED_GROWTH`` per
      such poll (``min_s * 1.5 ** queued_polls``), up to ``max_s``.
    - ``Queued`` further back: its status cannot change while two of our jobs ahead of it
      are unfinished (FIFO, 2 importing), and we poll those. It is polled when it should
      start: with a rate, after ``rows_ahead / (2 * rate)`` (two slots work in parallel);
      without one, at an interval growing linearly with the position from ``min_s`` at
      position 1 to ``max_s`` at position 9. Here the cap is ``DEEP_QUEUE_FACTOR * max_s``,
      not ``max_s``: when it moves up to the first 2 (a job ahead finished) the poller pulls
      its next poll forward (``promoted_poll_at``).

    Args:
        view: the job (see ``PollView``).
        min_s: ``polling.min_interval_s``.
        max_s: ``polling.max_interval_s``.
    """
    if view.status == "Importing":
        if view.rate and view.rate > 0:
            return _clamp((view.rows - view.done) / view.rate, min_s, max_s)
        return min_s
    stuck = min_s * QUEUED_GROWTH ** min(max(view.queued_polls, 0), 60)
    if view.position < MARKETO_IMPORTING_SLOTS:
        return _clamp(stuck, min_s, max_s)
    if view.rate and view.rate > 0:
        wait = view.rows_ahead / (MARKETO_IMPORTING_SLOTS * view.rate)
    else:
        steps = min(view.position - 1, 8)
        wait = min_s + (max_s - min_s) * steps / 8
    return _clamp(max(wait, stuck), min_s, max(max_s * DEEP_QUEUE_FACTOR, min_s))


def promoted_poll_at(
    next_poll_at: float | None, position: int, now: float, min_s: float, max_s: float
) -> float | None:
    """Return an earlier poll time for a job that moved up to the front of our queue.

    A job planned while deep in the queue may wait up to ``DEEP_QUEUE_FACTOR * max_s``.
    Once it is among the first ``MARKETO_IMPORTING_SLOTS`` of ours (a job ahead finished)
    its status can change at any moment, so a poll planned later than ``now + max_s`` is
    brought forward to ``now + min_s``.

    Args:
        next_poll_at: the planned poll, epoch seconds (None: due now anyway).
        position: 0-based index among our jobs at Marketo in submission order.
        now: epoch seconds.
        min_s: ``polling.min_interval_s``.
        max_s: ``polling.max_interval_s``.

    Returns:
        The new poll time, or None when the plan stands.
    """
    if position >= MARKETO_IMPORTING_SLOTS or next_poll_at is None:
        return None
    if next_poll_at > now + max_s:
        return now + min_s
    return None


def observed_rate(
    previous_done: int | None,
    previous_at: float | None,
    done: int,
    now: float,
    prior: float | None,
    *,
    weight: float = 0.5,
) -> float | None:
    """Update the rows-per-second estimate of an importing slot from two polls.

    Args:
        previous_done: rows handled at the previous poll (None if unknown).
        previous_at: epoch seconds of the previous poll.
        done: rows handled now.
        now: epoch seconds.
        prior: the estimate so far, or None.
        weight: share of the new observation in the moving average (0 to 1).

    Returns:
        The new estimate, or ``prior`` when the polls show no usable progress.
    """
    if previous_done is None or previous_at is None or now <= previous_at:
        return prior
    progress = done - previous_done
    if progress <= 0:
        return prior
    sample = progress / (now - previous_at)
    if prior is None or not math.isfinite(prior):
        return sample
    return prior + weight * (sample - prior)


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


# --- what a finished or lost batch means -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What to do with an upload whose batch ended ``Failed`` or was forgotten by Marketo.

    Attributes:
        requeue: True to upload it again; False to make it a dead letter (``failed``).
        batch_failures: the new value of ``uploads.batch_failures``.
    """

    requeue: bool
    batch_failures: int


def after_batch_failed(batch_failures: int, max_batch_attempts: int) -> BatchOutcome:
    """Decide after Marketo said ``Failed``: upload again, up to a limit.

    Gives up (dead letter; the file becomes ``partial``) once ``max_batch_attempts``
    batches of this upload have failed.

    Args:
        batch_failures: batches of this upload that failed or were lost before this one.
        max_batch_attempts: ``daemon.max_batch_attempts``.
    """
    failures = batch_failures + 1
    return BatchOutcome(requeue=failures < max_batch_attempts, batch_failures=failures)


def after_batch_unknown(batch_failures: int, already_lost_once: bool) -> BatchOutcome:
    """Decide after Marketo no longer knows a batchId: upload again once, then give up.

    Marketo answers ``1013`` for a batchId it does not know, e.g. one older than seven days
    (contract 2.4, simulator rule 8.6).

    Args:
        batch_failures: batches of this upload that failed or were lost before this one.
        already_lost_once: a batch of this upload was already lost and uploaded again.
    """
    return BatchOutcome(requeue=not already_lost_once, batch_failures=batch_failures + 1)
