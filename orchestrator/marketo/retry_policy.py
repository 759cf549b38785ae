"""Retry decisions: what to do after one answer, as pure functions of values.

`decide` takes an `Outcome` (from `errors_table.classify`), the counters of the call so far and
the retry settings, and returns a frozen `Decision`: done, retry after a delay (spending one of
the caller's retries or not), refresh the token and replay, pause for the daily quota, or fail
with a given exception. It never sleeps and never reads a clock; randomness comes in as a
number in ``[0, 1)`` so tests can pin it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from orchestrator.errors import (
    ApiError,
    ApiPermanentError,
    ApiTransientError,
    QueueFull,
)
from orchestrator.logging import redact_text
from orchestrator.marketo.errors_table import Category, Outcome
from orchestrator.settings import MarketoSettings
from orchestrator.timing import equal_jitter_backoff

#: Marketo's rate window, seconds (contract 6).
RATE_WINDOW_S = 20.0
#: Attempts for an answer with a code not in the table before it is treated as permanent.
UNKNOWN_ATTEMPTS = 3
#: Throttle answers (606/615) tolerated in a row before one call gives up (never in practice).
MAX_THROTTLES = 200
#: Longest wait after ``615`` (a call in flight elsewhere returns soon), seconds.
CONCURRENCY_WAIT_CAP_S = 5.0
#: Token refreshes per call that do not spend a retry (contract 1.3: refresh once, replay).
FREE_TOKEN_REFRESHES = 1


class Action(StrEnum):
    """What the client does next with a call."""

    #: The answer is good: return it.
    DONE = "done"
    #: Wait ``delay`` seconds and send the request again.
    RETRY = "retry"
    #: Get a new token (forced), wait ``delay``, and send the request again.
    REFRESH = "refresh"
    #: Pause every call until the quota resets, then send again.
    PAUSE_QUOTA = "pause_quota"
    #: Raise ``error``.
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """Retry settings of the client (from ``marketo.*`` settings).

    Attributes:
        attempts: attempts of a call that fails transiently, the first one included.
        base_s: first backoff, seconds; doubles each attempt.
        cap_s: longest backoff, seconds.
        window_s: the rate window; a ``606`` wait never exceeds it.
    """

    attempts: int = 6
    base_s: float = 1.0
    cap_s: float = 60.0
    window_s: float = RATE_WINDOW_S

    @classmethod
    def from_settings(cls, marketo: MarketoSettings) -> RetryConfig:
        """Build the config from the ``marketo`` settings section."""
        return cls(marketo.retry_attempts, marketo.retry_base_s, marketo.retry_max_s)


@dataclass(frozen=True, slots=True)
class CallState:
    """Counters of one logical call across its attempts.

    Attributes:
        spent: failed attempts that count against ``RetryConfig.attempts``.
        throttles: ``606``/``615`` answers so far (free).
        refreshes: token refreshes so far.
        unknowns: answers with an unknown code so far.
    """

    spent: int = 0
    throttles: int = 0
    refreshes: int = 0
    unknowns: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do next.

    Attributes:
        action: the `Action`.
        state: the counters to carry into the next attempt.
        delay: seconds to wait before the next attempt.
        hold_all: the wait applies to every call of the instance (``606``), not just this one.
        error: the exception to raise when ``action`` is ``FAIL``.
    """

    action: Action
    state: CallState
    delay: float = 0.0
    hold_all: bool = False
    error: ApiError | None = None


def throttle_delay(code: str | None, throttles: int, cfg: RetryConfig, rand: float) -> float:
    """Return the wait after a throttle answer, seconds.

    ``606`` (rate): backoff capped at the 20-s window, since the window has cleared by then.
    ``615`` (concurrency) and others: a short backoff capped at `CONCURRENCY_WAIT_CAP_S`.

    Args:
        code: ``"606"``, ``"615"`` or ``"429"``.
        throttles: throttle answers so far in this call, this one included (>= 1).
        cfg: retry settings.
        rand: a number in ``[0, 1)``.
    """
    cap = cfg.window_s if code == "606" else min(cfg.cap_s, CONCURRENCY_WAIT_CAP_S)
    return equal_jitter_backoff(throttles, cfg.base_s, cap, rand)


def decide(outcome: Outcome, state: CallState, cfg: RetryConfig, rand: float) -> Decision:
    """Decide what to do after one answer (contract sections 1.3, 5, 6 and 9).

    Args:
        outcome: the classified answer.
        state: counters before this answer.
        cfg: retry settings.
        rand: a number in ``[0, 1)`` for jitter.

    Returns:
        A `Decision`:
        ok -> DONE; ``1016`` -> FAIL with `QueueFull`; permanent -> FAIL with
        `ApiPermanentError`; ``607`` -> PAUSE_QUOTA (free); ``606``/``615`` -> RETRY without
        spending a retry (``606`` holds every call); ``601``/``602`` -> REFRESH, the first one
        free and later ones spending retries; transient -> RETRY with backoff until
        ``cfg.attempts`` attempts are spent, then FAIL with `ApiTransientError`; unknown code ->
        like transient but at most `UNKNOWN_ATTEMPTS` attempts, then FAIL with
        `ApiPermanentError`.
    """
    cat = outcome.category
    if cat is Category.OK:
        return Decision(Action.DONE, state)
    if cat is Category.QUEUE_FULL:
        return Decision(Action.FAIL, state, error=QueueFull(outcome.code, outcome.message))
    if cat is Category.PERMANENT:
        return Decision(Action.FAIL, state, error=_permanent(outcome))
    if cat is Category.QUOTA:
        return Decision(Action.PAUSE_QUOTA, state)
    if cat is Category.THROTTLE:
        throttles = state.throttles + 1
        new = replace(state, throttles=throttles)
        if throttles > MAX_THROTTLES:
            return Decision(Action.FAIL, new, error=_transient(outcome))
        delay = max(throttle_delay(outcome.code, throttles, cfg, rand), outcome.retry_after or 0)
        return Decision(Action.RETRY, new, delay, hold_all=outcome.code == "606")
    if cat is Category.AUTH:
        refreshes = state.refreshes + 1
        if refreshes <= FREE_TOKEN_REFRESHES:
            return Decision(Action.REFRESH, replace(state, refreshes=refreshes))
        return _spend(outcome, replace(state, refreshes=refreshes), cfg, rand, Action.REFRESH)
    if cat is Category.UNKNOWN:
        new = replace(state, unknowns=state.unknowns + 1)
        if new.unknowns >= min(UNKNOWN_ATTEMPTS, cfg.attempts):
            return Decision(Action.FAIL, new, error=_permanent(outcome))
        return _spend(outcome, new, cfg, rand, Action.RETRY)
    return _spend(outcome, state, cfg, rand, Action.RETRY)


def _spend(
    outcome: Outcome, state: CallState, cfg: RetryConfig, rand: float, action: Action
) -> Decision:
    spent = state.spent + 1
    new = replace(state, spent=spent)
    if spent >= cfg.attempts:
        return Decision(Action.FAIL, new, error=_transient(outcome))
    delay = equal_jitter_backoff(spent, cfg.base_s, cfg.cap_s, rand)
    if outcome.retry_after is not None:
        delay = max(delay, min(outcome.retry_after, cfg.cap_s))
    return Decision(action, new, delay)


def _transient(outcome: Outcome) -> ApiTransientError:
    return ApiTransientError(
        outcome.code, outcome.message or "retries exhausted", retry_after=outcome.retry_after
    )


def _permanent(outcome: Outcome) -> ApiPermanentError:
    return ApiPermanentError(
        outcome.code, outcome.message, status=outcome.http_status,
        body_excerpt=redact_text(outcome.body_excerpt),
    )
