"""The client's fixed real-time waits, divided for a simulator whose clock runs faster."""

from __future__ import annotations

from orchestrator.marketo import retry_policy, tokens


def scale_client_constants(scale: float) -> None:
    """Divide the client's fixed waits by ``scale`` (this benchmark process only).

    The token manager waits 0.5 real seconds when identity says a token has no lifetime
    left, and a ``615`` backoff is capped at 5 s: fixed real-time constants that would stall
    a run at 100x for minutes of simulated time. ``expires_in`` itself is in simulated
    seconds, so the client believes a token lives ``scale`` times longer than it does; it
    then meets ``602`` and refreshes reactively, which the benchmark counts.
    """
    tokens.WAIT_PAD_S = 0.5 / scale
    retry_policy.CONCURRENCY_WAIT_CAP_S = 5.0 / scale
