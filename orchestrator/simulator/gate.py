"""The gate every call passes: identity and tokens, call limits, injected faults.

See docs/reference/marketo-api.md: §8.2 (tokens read only from ``Authorization: Bearer``), §8.3 (rate
window, concurrency, daily quota; refused calls count), §8.9 (faults). `CallGate` is mixed into
`Simulator`, which provides the configuration, the clock and the random generators.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from orchestrator.simulator import errors
from orchestrator.simulator.clock import Clock
from orchestrator.simulator.config import SimulatorConfig
from orchestrator.simulator.errors import ApiError
from orchestrator.simulator.instance import Instance, next_chicago_midnight


class CallGate:
    """Token, limit and fault rules; needs ``config``, ``clock``, ``rng`` and ``id_rng``."""

    config: SimulatorConfig
    clock: Clock
    rng: random.Random
    id_rng: random.Random

    def now(self) -> float:
        """Simulated epoch seconds."""
        return self.clock.now()

    def request_id(self) -> str:
        """A Marketo-style ``requestId``: ``<hex>#<hex>`` (random, then time in ms)."""
        return f"{self.id_rng.getrandbits(16):x}#{int(self.now() * 1000):x}"

    # ----- identity and tokens (§8.2) ----------------------------------------------------

    def identity(
        self, inst: Instance, grant_type: str | None, client_id: str | None, secret: str | None
    ) -> tuple[int, dict[str, Any]]:
        """Answer ``/identity/oauth/token``: the current token or a new one.

        Returns:
            ``(http_status, body)``: 200 with the token, 401 ``invalid_client`` on bad
            credentials, 400 ``unsupported_grant_type`` on a grant type other than
            ``client_credentials``.
        """
        cfg = self.config
        if client_id != cfg.client_id or secret != cfg.client_secret:
            return 401, {"error": "invalid_client", "error_description": "Bad client credentials"}
        if grant_type != "client_credentials":
            return 400, {
                "error": "unsupported_grant_type",
                "error_description": f"Unsupported grant type: {grant_type}",
            }
        now = self.now()
        if inst.token is None or now >= inst.token_dies_at:
            if inst.token is not None:
                inst.expired_tokens.add(inst.token)
            token_uuid = uuid.UUID(int=self.id_rng.getrandbits(128), version=4)
            inst.token = f"{token_uuid}:sim"
            inst.token_expires_at = now + cfg.token_lifetime_s
            inst.token_dies_at = inst.token_expires_at - cfg.faults.token_early_expiry_s
            inst.tokens_minted += 1
            inst.recent_tokens.append(inst.token)
        body = {
            "access_token": inst.token,
            "token_type": "bearer",
            "expires_in": max(0, int(inst.token_expires_at - now)),
            "scope": cfg.scope,
        }
        return 200, body

    def check_token(self, inst: Instance, authorization: str | None) -> None:
        """Check the ``Authorization: Bearer`` header; the only place a token is read.

        Raises:
            ApiError: 600 no header (a query or form ``access_token`` is ignored), 601 unknown
                token, 602 expired token.
        """
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError.of(errors.TOKEN_EMPTY)
        if token == inst.token:
            if self.now() < inst.token_dies_at:
                return
            raise ApiError.of(errors.TOKEN_EXPIRED)
        if token in inst.expired_tokens:
            raise ApiError.of(errors.TOKEN_EXPIRED)
        raise ApiError.of(errors.TOKEN_INVALID)

    # ----- call limits (§8.3) ------------------------------------------------------------

    def _count(self, inst: Instance, now: float) -> None:
        inst.rate_calls.append(now)
        inst.peak_rate = max(inst.peak_rate, len(inst.rate_calls))
        inst.quota_used += 1

    def admit(self, inst: Instance) -> None:
        """Admit an authenticated call: concurrency, rate window and daily quota.

        An admitted call is counted and held in flight until `release`. A refused call does
        not run but counts toward the rate window and the quota.

        Raises:
            ApiError: 615 (too many in flight), 606 (rate window full), 607 (quota spent).
        """
        cfg = self.config
        now = self.now()
        window = inst.rate_calls
        while window and window[0] <= now - cfg.rate_window_s:
            window.popleft()
        if now >= inst.quota_resets_at:
            inst.quota_used = 0
            inst.quota_resets_at = next_chicago_midnight(now)
        if inst.inflight >= cfg.max_concurrent_calls:
            self._count(inst, now)
            raise errors.concurrency_limited(cfg.max_concurrent_calls)
        if len(window) >= cfg.rate_limit_calls:
            self._count(inst, now)
            raise errors.rate_limited(cfg.rate_limit_calls, cfg.rate_window_s)
        if inst.quota_used >= cfg.daily_quota:
            self._count(inst, now)
            raise ApiError.of(errors.DAILY_QUOTA)
        self._count(inst, now)
        inst.inflight += 1
        inst.peak_concurrent = max(inst.peak_concurrent, inst.inflight)

    def release(self, inst: Instance) -> None:
        """A call admitted by `admit` has returned."""
        inst.inflight -= 1

    # ----- faults (§8.9) -----------------------------------------------------------------

    def roll_http_fault(self) -> int | None:
        """Maybe pick an HTTP 500/502/503 gateway failure for this call."""
        f = self.config.faults
        for status, p in ((500, f.http_500_probability), (502, f.http_502_probability),
                          (503, f.http_503_probability)):
            if p and self.rng.random() < p:
                return status
        return None

    def roll_identity_fault(self) -> bool:
        """Maybe fail this identity call with an HTTP 502 (``identity_502_probability``)."""
        p = self.config.faults.identity_502_probability
        return bool(p) and self.rng.random() < p

    def roll_api_fault(self) -> tuple[ApiError, bool] | None:
        """Maybe pick an injected 604/608/611/713; the flag says whether it counts as a call."""
        f = self.config.faults
        for pair, p, counted in (
            (errors.REQUEST_TIMEOUT, f.error_604_probability, False),
            (errors.TEMPORARILY_UNAVAILABLE, f.error_608_probability, False),
            (errors.SYSTEM_ERROR, f.error_611_probability, False),
            (errors.TRANSIENT, f.error_713_probability, True),
        ):
            if p and self.rng.random() < p:
                return ApiError.of(pair), counted
        return None

    def latency(self) -> float:
        """Injected latency for this call, in real seconds."""
        f = self.config.faults
        jitter = self.rng.uniform(0, f.latency_jitter_s) if f.latency_jitter_s else 0.0
        return f.latency_s + jitter

    def take_dropped_response(self, inst: Instance) -> bool:
        """Whether to drop this accepted upload's response (consumes ``drop_next``)."""
        if inst.drop_next > 0:
            inst.drop_next -= 1
            return True
        p = self.config.faults.drop_upload_response_probability
        return bool(p) and self.rng.random() < p
