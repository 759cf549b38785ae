"""One limits governor per Marketo instance: rate window, calls in flight, daily budget.

Every call except identity goes through `Governor.slot` (docs/reference/marketo-api.md §6 and §9.2):

- at most ``limits.max_concurrent_calls`` calls in flight (a semaphore);
- at most ``limits.calls_per_20s`` calls in any sliding window of ``limits.rate_window_s``
  (Marketo's 20 s). A call occupies the window from the moment it is sent until a window after
  it is over (or for as long as it is in flight), so that however long the request took to
  reach Marketo, no window at Marketo's end can hold more than the limit;
- at most ``limits.daily_call_budget`` calls per quota day (midnight to midnight
  America/Chicago), counted in the database's ``api_usage`` table (or in memory without a
  store); when it is used up, or when Marketo answers ``607``, every call waits until the
  reset (``quota_paused`` is logged once per pause) or, with ``wait_for_quota=False``, raises
  `QuotaExhausted`;
- after a ``606`` every call holds off for a while (`Governor.hold`).

The window is the instance's, not the process's (contract 9.2a): with a store, every call is
written to the database (``api_calls``) before it is sent and stamped when it is over, and a
new process reads the calls of its predecessors still in the window before its first call
(`Store.restore_window`); a call its predecessor had in flight when it died counts as made,
answered when the new process started. A crash loop therefore never starts from an empty
window.

The daily budget counts what Marketo counts: calls that got an HTTP answer. A call is counted
when it is admitted (so concurrent callers cannot overshoot, and a process dying mid-call
leaves it counted) and taken back when it got no answer at all (connection refused, timeout,
reset: the client calls `CallTicket.no_answer`). Such a call still occupies the rate window.

Time comes from an injected ``clock`` and waiting from an injected ``sleep``, so tests cross
the window and midnight without real waiting.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

import structlog

from orchestrator.errors import QuotaExhausted
from orchestrator.marketo.retry_policy import RATE_WINDOW_S
from orchestrator.settings import LimitSettings
from orchestrator.timing import Clock, next_quota_reset, quota_day

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class UsageStore(Protocol):
    """The part of `orchestrator.store.Store` the governor uses."""

    async def count_calls(
        self, day: str, endpoint: str, calls: int = 1, errors: int = 0
    ) -> None:
        """Add calls (and errors) to the day's usage of ``endpoint``."""
        ...

    async def calls_on(self, day: str) -> int:
        """Return the calls counted on ``day``."""
        ...

    async def begin_call(self, day: str, endpoint: str, sent_at: float) -> int:
        """Count a call on ``day`` and record it as sent; return its id."""
        ...

    async def end_call(
        self,
        call_id: int,
        answered_at: float,
        *,
        refund: tuple[str, str] | None = None,
        forget_before: float | None = None,
    ) -> None:
        """Mark a call over; ``refund`` takes it back off ``(day, endpoint)``'s usage."""
        ...

    async def restore_window(self, now: float, window_s: float) -> list[float]:
        """Return when the calls still in the window were over (settling dead processes')."""
        ...


@dataclass(slots=True)
class CallTicket:
    """One call admitted by `Governor.slot`; the caller says whether Marketo answered it.

    Attributes:
        endpoint: the usage key.
        day: the quota day it was counted on.
        call_id: its ``api_calls`` row (None without a store).
        answered: False once `no_answer` was called.
    """

    endpoint: str
    day: str
    call_id: int | None = None
    answered: bool = True

    def no_answer(self) -> None:
        """The call got no HTTP answer (refused, timed out, reset): it leaves the day's count."""
        self.answered = False


def window_wait(
    now: float, sent: list[float], in_flight: int, limit: int, window_s: float
) -> float:
    """Return how long a new call must wait for room in the sliding window, seconds.

    Args:
        now: epoch seconds.
        sent: for each finished call still in the window, the time it stops counting
            (its answer's arrival + ``window_s``), oldest first.
        in_flight: calls sent and not answered (they count until answered, then some more).
        limit: calls allowed in a window.
        window_s: the window length.

    Returns:
        0 if a call may be sent now; else the wait until the oldest finished call leaves the
        window, or ``window_s`` if only calls in flight fill it (they must answer first).
    """
    live = [t for t in sent if t > now]
    if len(live) + in_flight < limit:
        return 0.0
    if live:
        return max(live[0] - now, 0.0) or 1e-3
    return window_s


@dataclass(frozen=True, slots=True)
class QuotaState:
    """The daily quota as the governor sees it: paused until ``resume_at`` (epoch s), or not."""

    resume_at: float = 0.0
    reason: str = ""


class Governor:
    """Paces every call of one Marketo instance (see the module docstring).

    Args:
        limits: the ``limits`` settings section.
        store: where calls are counted per quota day; None counts in memory only.
        clock: returns epoch seconds.
        sleep: awaits a number of seconds.
        wait_for_quota: wait for the quota reset (default) or raise `QuotaExhausted`.
        window_s: the rate window, seconds (Marketo: 20).
    """

    def __init__(
        self,
        limits: LimitSettings,
        *,
        store: UsageStore | None,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        wait_for_quota: bool = True,
        window_s: float = RATE_WINDOW_S,
    ) -> None:
        self._limits = limits
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._wait_for_quota = wait_for_quota
        self._window_s = window_s
        self._semaphore = asyncio.Semaphore(limits.max_concurrent_calls)
        self._budget_lock = asyncio.Lock()
        self._done: collections.deque[float] = collections.deque()
        self._in_flight = 0
        self._hold_until = 0.0
        self._quota = QuotaState()
        self._logged_pause = 0.0
        self._memory_day = ""
        self._memory_calls = 0
        self._restored = store is None
        self._restore_lock = asyncio.Lock()
        #: Places of the semaphore to take away for good (a reload lowered the limit).
        self._surplus = 0
        #: Most calls ever in flight at once (statistics and tests).
        self.peak_in_flight = 0

    @property
    def in_flight(self) -> int:
        """Calls sent and not yet answered."""
        return self._in_flight

    @property
    def quota(self) -> QuotaState:
        """The current quota pause (``resume_at`` in the past: not paused)."""
        return self._quota

    @property
    def limits(self) -> LimitSettings:
        """The limits in force."""
        return self._limits

    def calls_in_window(self) -> int:
        """Calls that occupy the sliding window now: in flight, or answered within it."""
        now = self._clock()
        return self._in_flight + sum(1 for t in self._done if t > now)

    def set_limits(self, limits: LimitSettings) -> None:
        """Apply new limits (a settings reload); calls in flight keep their places.

        A lower ``max_concurrent_calls`` takes effect as calls in flight finish (the
        difference is taken from the semaphore as it is released), a higher one at once.
        """
        change = limits.max_concurrent_calls - self._limits.max_concurrent_calls
        self._limits = limits
        if change < 0:
            self._surplus -= change
            return
        repaid = min(change, self._surplus)
        self._surplus -= repaid
        for _ in range(change - repaid):
            self._semaphore.release()

    async def _take_place(self) -> None:
        """Acquire a place among the calls in flight, swallowing places a lower limit took."""
        while True:
            await self._semaphore.acquire()
            if self._surplus == 0:
                return
            self._surplus -= 1  # a place the lower limit takes away for good

    def _leave_place(self) -> None:
        if self._surplus > 0:
            self._surplus -= 1  # a place the lower limit takes away for good
        else:
            self._semaphore.release()

    def hold(self, seconds: float) -> None:
        """Keep every call from being sent for ``seconds`` (after a ``606``)."""
        self._hold_until = max(self._hold_until, self._clock() + seconds)

    def pause_for_quota(self, reason: str) -> float:
        """Pause every call until the next midnight America/Chicago; return that time.

        Args:
            reason: ``"607"`` (Marketo said so) or ``"budget"`` (our own budget is used up).
        """
        resume_at = next_quota_reset(self._clock())
        if resume_at > self._quota.resume_at:
            self._quota = QuotaState(resume_at, reason)
        return self._quota.resume_at

    async def _wait_quota(self) -> None:
        """Return once no quota pause is in force; sleep through one or raise."""
        while True:
            now = self._clock()
            state = self._quota
            if now >= state.resume_at:
                return
            if not self._wait_for_quota:
                raise QuotaExhausted(
                    "607" if state.reason == "607" else "budget",
                    f"daily quota used up ({state.reason}); calls resume at the reset",
                    state.resume_at,
                )
            if self._logged_pause != state.resume_at:
                self._logged_pause = state.resume_at
                log.warning(
                    "quota_paused", reason=state.reason, resume_at=state.resume_at,
                    wait_s=round(state.resume_at - now, 3),
                    day=quota_day(now), budget=self._limits.daily_call_budget,
                )
            await self._sleep(state.resume_at - now)

    async def restore(self) -> None:
        """Load the calls earlier processes made in the current window (once; idempotent).

        `slot` calls it before the first call; calling it earlier (at start-up) is allowed.
        Calls a dead process left in flight count as made and answered now.
        """
        if self._restored:
            return
        async with self._restore_lock:
            if self._restored or self._store is None:
                return
            now = self._clock()
            answered = await self._store.restore_window(now, self._window_s)
            ends = [t + self._window_s for t in answered]
            self._done = collections.deque(sorted([*ends, *self._done]))
            self._restored = True
            if answered:
                log.info(
                    "rate_window_restored", calls=len(answered),
                    in_flight_at_exit=sum(1 for t in answered if t == now),
                    window_s=self._window_s, limit=self._limits.calls_per_20s,
                )

    async def resync(self) -> None:
        """Take the window from the store again, replacing what this process remembers.

        For a node that takes an instance's lease (again): another node may have called the
        instance meanwhile, and its calls are in the store (as are this process's own).
        Calls in flight are none then (the loops were cancelled when the lease was lost).
        """
        if self._store is None:
            return
        async with self._restore_lock:
            now = self._clock()
            answered = await self._store.restore_window(now, self._window_s)
            self._done = collections.deque(sorted(t + self._window_s for t in answered))
            self._restored = True
            log.info("rate_window_restored", calls=len(answered), window_s=self._window_s,
                     limit=self._limits.calls_per_20s, reason="lease_taken")

    async def _admit(self, endpoint: str) -> CallTicket | None:
        """Count the call if the day's budget allows it; else pause until the reset.

        Check and count happen under one lock, so concurrent callers cannot overshoot.
        """
        async with self._budget_lock:
            now = self._clock()
            if now < self._quota.resume_at:
                return None
            if await self._used_today(now) >= self._limits.daily_call_budget:
                self.pause_for_quota("budget")
                return None
            day = quota_day(now)
            if self._store is not None:
                call_id = await self._store.begin_call(day, endpoint, now)
                return CallTicket(endpoint, day, call_id)
            self._count_memory(day, 1)
            return CallTicket(endpoint, day)

    async def _finish(self, ticket: CallTicket, over_at: float) -> None:
        """Record that the call is over; take it off the day's count if it got no answer."""
        refund = None if ticket.answered else (ticket.day, ticket.endpoint)
        if self._store is None:
            if refund is not None:
                self._count_memory(ticket.day, -1)
            return
        assert ticket.call_id is not None
        try:
            await self._store.end_call(
                ticket.call_id, over_at, refund=refund,
                forget_before=over_at - self._window_s,
            )
        except Exception as exc:  # noqa: BLE001 - the call happened; only the record failed
            # Left in flight in the database: the next process counts it as made (safe side).
            log.warning("api_call_not_recorded", endpoint=ticket.endpoint,
                        error=f"{type(exc).__name__}: {exc}")

    def _count_memory(self, day: str, calls: int) -> None:
        if day != self._memory_day:
            if calls < 0:
                return  # counted on a day that is over
            self._memory_day, self._memory_calls = day, 0
        self._memory_calls += calls

    async def _used_today(self, now: float) -> int:
        day = quota_day(now)
        if self._store is not None:
            return await self._store.calls_on(day)
        if day != self._memory_day:
            self._memory_day, self._memory_calls = day, 0
        return self._memory_calls

    async def count_error(self, endpoint: str) -> None:
        """Record that a call of ``endpoint`` ended in an error (for ``leadflow status``)."""
        if self._store is not None:
            await self._store.count_calls(quota_day(self._clock()), endpoint, 0, 1)

    async def _wait_window(self) -> None:
        while True:
            now = self._clock()
            if now < self._hold_until:
                await self._sleep(self._hold_until - now)
                continue
            while self._done and self._done[0] <= now:
                self._done.popleft()
            wait = window_wait(
                now, list(self._done), self._in_flight,
                self._limits.calls_per_20s, self._window_s,
            )
            if wait <= 0:
                return
            await self._sleep(wait)

    @asynccontextmanager
    async def slot(self, endpoint: str) -> AsyncIterator[CallTicket]:
        """Wait until a call of ``endpoint`` may be sent, count it, and hold its place.

        The body of the ``async with`` sends the request and reads the answer; leaving it
        marks the call over. The body calls ``ticket.no_answer()`` when no HTTP answer came
        (the call then leaves the day's count, but not the rate window).

        Args:
            endpoint: the usage key, e.g. ``import_create``, ``import_status``, ``failures``,
                ``warnings``, ``describe``.

        Yields:
            The call's `CallTicket`.

        Raises:
            QuotaExhausted: the daily quota is used up and the governor must not wait.
            sqlite3.Error: the store could not record the call (it was not sent).
        """
        await self.restore()
        await self._wait_quota()
        await self._take_place()
        try:
            while True:
                await self._wait_window()
                # Reserve the place in the window before the budget check awaits the database.
                self._in_flight += 1
                try:
                    ticket = await self._admit(endpoint)
                except BaseException:
                    self._in_flight -= 1
                    raise
                if ticket is not None:
                    break
                self._in_flight -= 1
                await self._wait_quota()
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            try:
                yield ticket
            finally:
                self._in_flight -= 1
                over_at = self._clock()
                self._done.append(over_at + self._window_s)
                await self._finish(ticket, over_at)
        finally:
            self._leave_place()
