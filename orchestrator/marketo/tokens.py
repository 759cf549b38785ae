"""One access token per Marketo instance, shared by every caller (contract section 1).

`TokenManager.get` returns a token that is good for a while yet, asking the identity endpoint
``marketo.token_refresh_margin_s`` before it expires; `TokenManager.refresh` is called after a
``601``/``602`` and replaces the token that failed. A lock makes concurrent callers share one
identity call. Identity calls are not governed: they count toward none of Marketo's limits.

The token is sent only in ``Authorization: Bearer`` by the client, is registered with the log
redaction, and is never logged; ``token_refreshed`` carries only ``expires_in``.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from orchestrator.errors import ApiTransientError, AuthError
from orchestrator.logging import redact_text, register_secret
from orchestrator.marketo.errors_table import excerpt
from orchestrator.marketo.retry_policy import RetryConfig
from orchestrator.settings import MarketoSettings
from orchestrator.timing import Clock, equal_jitter_backoff

log = structlog.get_logger(__name__)

#: A token with no more than this many seconds left is waited out, then asked for again
#: (contract 1.4: ``expires_in: 0`` happens at the end of a token's life).
MIN_LIFETIME_S = 5.0
#: Extra seconds slept after waiting out a token, so that Marketo has minted the next one.
WAIT_PAD_S = 0.5
#: Times in a row a too-short token is waited out before giving up with a transient error.
MAX_LIFETIME_WAITS = 5

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class IdentityAnswer:
    """What one identity answer means.

    Attributes:
        kind: ``token`` (usable), ``auth`` (credentials refused: configuration error) or
            ``transient`` (ask again later).
        token: the access token when ``kind`` is ``token``.
        expires_in: its remaining lifetime, seconds.
        message: a description for errors and logs (never the token).
    """

    kind: str
    token: str = ""
    expires_in: float = 0.0
    message: str = ""


def parse_identity(http_status: int, body: bytes | str) -> IdentityAnswer:
    """Classify an answer of ``/identity/oauth/token`` (contract 1.1, 1.4).

    Args:
        http_status: the HTTP status.
        body: the raw body.

    Returns:
        ``auth`` for 401 and other 4xx except 408/429 (bad client id/secret or identity URL);
        ``transient`` for 5xx, 408, 429, a body that is not a JSON object (gateway HTML), or a
        JSON body without a non-empty string ``access_token``; otherwise ``token`` with
        ``expires_in`` (a missing or malformed ``expires_in`` counts as 0: wait and ask again).
    """
    payload: Any
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        payload = None
    if 400 <= http_status < 500 and http_status not in (408, 429):
        detail = ""
        if isinstance(payload, dict):
            detail = str(payload.get("error_description") or payload.get("error") or "")
        return IdentityAnswer("auth", message=f"HTTP {http_status} {detail}".strip())
    if http_status != 200:
        return IdentityAnswer("transient", message=f"HTTP {http_status}")
    if not isinstance(payload, dict):
        return IdentityAnswer("transient", message="identity answer is not JSON")
    token = payload.get("access_token")
    if not isinstance(token, str) or not token.strip():
        return IdentityAnswer("transient", message="identity answer has no access_token")
    try:
        expires_in = max(float(payload.get("expires_in", 0)), 0.0)
    except (TypeError, ValueError):
        expires_in = 0.0
    return IdentityAnswer("token", token=token.strip(), expires_in=expires_in)


def refresh_deadline(now: float, expires_in: float, margin_s: float, same_token: bool) -> float:
    """Return when to ask the identity endpoint again, epoch seconds.

    A new token is refreshed ``margin_s`` before it expires. Asking early returns the same
    token (contract 1.4), so when a refresh brought back the token we already had, ask again
    only `MIN_LIFETIME_S` before its end (the answer will then be too short and be waited out).
    The lead never exceeds half the remaining lifetime.

    Args:
        now: epoch seconds when the answer arrived.
        expires_in: remaining lifetime the identity endpoint gave, seconds.
        margin_s: ``marketo.token_refresh_margin_s``.
        same_token: the answer carried the token we already held.
    """
    lead = MIN_LIFETIME_S if same_token else margin_s
    return now + expires_in - min(lead, expires_in / 2)


class TokenManager:
    """Holds the one access token of an instance and renews it.

    Args:
        marketo: the ``marketo`` settings (identity URL, client id, timeouts, retries).
        secret: the client secret (registered with the log redaction here).
        session: the HTTP session to use.
        clock: returns epoch seconds.
        sleep: awaits a number of seconds (injected so tests need not wait).
        rand: returns a number in ``[0, 1)`` for jitter.
        observer: told about every identity answer and granted token (metrics), or None;
            an object with ``answered(endpoint, code, http_status)`` and ``token_refreshed()``.
    """

    def __init__(
        self,
        marketo: MarketoSettings,
        secret: str,
        session: aiohttp.ClientSession,
        *,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        observer: Any = None,
    ) -> None:
        self._settings = marketo
        self._observer = observer
        self._secret = secret
        register_secret(secret)
        self._session = session
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._retry = RetryConfig.from_settings(marketo)
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._auth_logged = False
        #: Identity calls made so far (for tests and statistics).
        self.identity_calls = 0

    @property
    def url(self) -> str:
        """The identity token URL (``<identity>/oauth/token``)."""
        return f"{self._settings.identity}/oauth/token"

    async def get(self) -> str:
        """Return a token that is not due for refresh, asking for one if needed.

        Raises:
            AuthError: the identity endpoint refused the credentials (logged once).
            ApiTransientError: no usable token after the configured attempts.
        """
        token = self._token
        if token is not None and self._clock() < self._refresh_at:
            return token
        async with self._lock:
            token = self._token
            if token is not None and self._clock() < self._refresh_at:
                return token
            return await self._fetch()

    async def refresh(self, stale: str) -> str:
        """Replace ``stale`` after Marketo answered ``601``/``602`` with it.

        If another caller already replaced it, the newer token is returned without a call.

        Raises:
            AuthError: the identity endpoint refused the credentials (logged once).
            ApiTransientError: no usable token after the configured attempts.
        """
        async with self._lock:
            token = self._token
            if token is not None and token != stale and self._clock() < self._refresh_at:
                return token
            self._refresh_at = 0.0
            return await self._fetch()

    async def _fetch(self) -> str:
        attempts = 0
        waits = 0
        while True:
            answer = await self._ask()
            if answer.kind == "auth":
                if not self._auth_logged:
                    self._auth_logged = True
                    log.error("auth_failed", url=self.url, reason=redact_text(answer.message))
                raise AuthError("401", f"identity refused the credentials: {answer.message}")
            if answer.kind == "transient":
                attempts += 1
                if attempts >= self._retry.attempts:
                    raise ApiTransientError("identity", answer.message)
                delay = equal_jitter_backoff(attempts, self._retry.base_s, self._retry.cap_s, self._rand())
                log.warning("token_retry", reason=answer.message, attempt=attempts, delay_s=delay)
                await self._sleep(delay)
                continue
            register_secret(answer.token)
            if answer.expires_in <= MIN_LIFETIME_S:
                waits += 1
                if waits > MAX_LIFETIME_WAITS:
                    raise ApiTransientError("identity", "token lifetime stays too short")
                log.info("token_expiring", expires_in=answer.expires_in)
                await self._sleep(answer.expires_in + WAIT_PAD_S)
                continue
            self._auth_logged = False  # a later refusal is logged again
            now = self._clock()
            same = answer.token == self._token
            self._token = answer.token
            self._refresh_at = refresh_deadline(
                now, answer.expires_in, self._settings.token_refresh_margin_s, same
            )
            log.info("token_refreshed", expires_in=answer.expires_in, same_token=same)
            if self._observer is not None:
                self._observer.token_refreshed()
            return answer.token

    async def _ask(self) -> IdentityAnswer:
        """POST the credentials as a form body (never in the URL), classify the answer."""
        self.identity_calls += 1
        form = {
            "grant_type": "client_credentials",
            "client_id": self._settings.client_id,
            "client_secret": self._secret,
        }
        timeout = aiohttp.ClientTimeout(
            total=self._settings.request_timeout_s,
            connect=self._settings.connect_timeout_s,
        )
        try:
            async with self._session.post(self.url, data=form, timeout=timeout) as resp:
                body = await resp.read()
                status = resp.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            if self._observer is not None:
                code = "timeout" if isinstance(exc, TimeoutError) else "connection"
                self._observer.answered("identity", code, 0)
            return IdentityAnswer("transient", message=redact_text(f"{type(exc).__name__}: {exc}"))
        answer = parse_identity(status, body)
        if self._observer is not None:
            self._observer.answered(
                "identity", "ok" if answer.kind == "token" else str(status), status
            )
        if answer.kind != "token":
            log.warning(
                "identity_error", status=status, reason=answer.message,
                body_excerpt=redact_text(excerpt(body)[:200]),
            )
        return answer
