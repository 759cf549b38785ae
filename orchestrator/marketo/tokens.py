"""One access token per Marketo instance, shared by every caller (docs/reference/marketo-api.md §1).

`TokenManager.get` returns a token that is good for a while yet; `TokenManager.refresh` is
called after a ``601``/``602`` and replaces the token that failed. A lock makes concurrent
callers share one identity call (single flight). Identity calls are not governed: they count
toward none of Marketo's limits.

When to ask identity again is `plan_token` (a pure function): a token is used while it lives.
The refresh margin (``marketo.token_refresh_margin_s``) is capped at a quarter of the lifetime
the token came with, so a short-lived token (an identity proxy, a gateway, a test double) is
used for three quarters of its life instead of being treated as expiring from the start.
Marketo hands out the same token until it expires (docs/reference/marketo-api.md §1.4), so a refresh inside the
margin usually brings back the same token with its remaining ``expires_in``: it is then used
until it expires, and the next one is asked for then. A token with ``expires_in: 0`` (end of
life) is waited out for `WAIT_PAD_S` and asked for again; an identity that keeps saying 0 is
believed no longer (after `ZERO_WAITS` answers its tokens are used for `WAIT_PAD_S` each and
refused ones replaced on ``601``/``602``). Nothing here gives up while identity answers with
tokens; only refusals (``401``, `AuthError`) and identity failing every attempt
(`ApiTransientError`) end a call.

The client secret is read from its source (``marketo.client_secret`` or the file named by
``marketo.client_secret_file``) on every identity call, so a secret file fixed or rotated
while the daemon runs is used at the next identity try, without a restart.

The token is sent only in ``Authorization: Bearer`` by the client, is registered with the log
redaction, and is never logged; ``token_refreshed`` carries only ``expires_in``.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from orchestrator.errors import ApiError, ApiTransientError, AuthError, ConfigError
from orchestrator.logging import redact_text, register_secret
from orchestrator.marketo.errors_table import excerpt
from orchestrator.marketo.retry_policy import RetryConfig
from orchestrator.settings import MarketoSettings
from orchestrator.timing import Clock, equal_jitter_backoff

log = structlog.get_logger(__name__)

#: Largest share of the lifetime a token came with that the refresh margin may take.
MARGIN_SHARE = 0.25
#: Seconds waited before asking again after an answer with no lifetime left (``expires_in``
#: 0: Marketo mints the next token only once the current one has expired).
WAIT_PAD_S = 0.5
#: Answers in a row with no lifetime left that are waited out; after that, the identity is
#: taken not to tell lifetimes and its token is used for `WAIT_PAD_S` at a time.
ZERO_WAITS = 3

Sleep = Callable[[float], Awaitable[None]]
SecretSource = Callable[[], str]


@dataclass(frozen=True, slots=True)
class IdentityAnswer:
    """What one identity answer means.

    Attributes:
        kind: ``token`` (usable), ``auth`` (credentials refused: configuration error) or
            ``transient`` (ask again later).
        token: the access token when ``kind`` is ``token``.
        expires_in: its remaining lifetime, seconds.
        message: a description for errors and logs (never the token).
        code: the `AuthError` code of an ``auth`` answer: ``401`` (identity refused) or
            ``secret`` (the secret could not be read).
    """

    kind: str
    token: str = ""
    expires_in: float = 0.0
    message: str = ""
    code: str = "401"


def parse_identity(http_status: int, body: bytes | str) -> IdentityAnswer:
    """Classify an answer of ``/identity/oauth/token`` (docs/reference/marketo-api.md §1.1, §1.4).

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


@dataclass(frozen=True, slots=True)
class TokenPlan:
    """What to do with a token identity just gave.

    Attributes:
        use_until: epoch seconds until which the token is used (then identity is asked
            again); 0 when it must not be used at all.
        wait_s: when not used: seconds to wait before asking identity again.
    """

    use_until: float
    wait_s: float = 0.0


def plan_token(
    now: float, expires_in: float, *, lifetime_s: float, margin_s: float, zeros: int = 0
) -> TokenPlan:
    """Decide how long to use a token and when to ask identity again (see the module doc).

    Args:
        now: epoch seconds when the answer arrived.
        expires_in: the remaining lifetime identity gave, seconds.
        lifetime_s: the lifetime the token came with: its ``expires_in`` the first time
            identity gave it (equal to ``expires_in`` for a new token).
        margin_s: ``marketo.token_refresh_margin_s``.
        zeros: answers in a row before this one that gave no lifetime (``expires_in`` 0).

    Returns:
        For ``expires_in > 0``: use it until ``now + expires_in - lead`` with
        ``lead = min(margin_s, lifetime_s * MARGIN_SHARE)``, or until it expires when less
        than the lead is left (the same token came back: it cannot be replaced before it
        expires). For ``expires_in <= 0``: wait `WAIT_PAD_S` and ask again, or, after
        `ZERO_WAITS` such answers in a row, use it for `WAIT_PAD_S`.
    """
    if expires_in <= 0:
        if zeros < ZERO_WAITS:
            return TokenPlan(0.0, WAIT_PAD_S)
        return TokenPlan(now + WAIT_PAD_S)
    lead = min(margin_s, max(lifetime_s, expires_in) * MARGIN_SHARE)
    if expires_in > lead:
        return TokenPlan(now + expires_in - lead)
    return TokenPlan(now + expires_in)


class TokenManager:
    """Holds the one access token of an instance and renews it.

    Args:
        marketo: the ``marketo`` settings (identity URL, client id, timeouts, retries).
        secret: the client secret, or a callable returning it that is called on every
            identity call (``MarketoSettings.secret``; it may raise `ConfigError`, which is
            treated like a refusal). Each value is registered with the log redaction.
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
        secret: str | SecretSource,
        session: aiohttp.ClientSession,
        *,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        observer: Any = None,
    ) -> None:
        self._settings = marketo
        self._observer = observer
        if isinstance(secret, str):
            register_secret(secret)
            fixed = secret
            self._secret: SecretSource = lambda: fixed
        else:
            self._secret = secret
        self._session = session
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._retry = RetryConfig.from_settings(marketo)
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lifetime = 0.0
        self._zeros = 0
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
            AuthError: the identity endpoint refused the credentials, or the secret could
                not be read (logged once).
            ApiTransientError: identity failed on every one of the configured attempts.
        """
        token = self._token
        if token is not None and self._clock() < self._refresh_at:
            return token
        async with self._lock:
            token = self._token
            if token is not None and self._clock() < self._refresh_at:
                return token
            return await self._fetch(stale=None)

    async def refresh(self, stale: str) -> str:
        """Replace ``stale`` after Marketo answered ``601``/``602`` with it (single flight).

        If another caller already replaced it, the newer token is returned without a call.
        If identity hands back ``stale`` itself, it is treated as having no lifetime left.

        Raises:
            AuthError: the identity endpoint refused the credentials (logged once).
            ApiTransientError: identity failed on every one of the configured attempts.
        """
        async with self._lock:
            token = self._token
            if token is not None and token != stale and self._clock() < self._refresh_at:
                return token
            self._refresh_at = 0.0
            return await self._fetch(stale=stale)

    async def _fetch(self, stale: str | None) -> str:
        attempts = 0
        while True:
            answer = await self._ask()
            if answer.kind == "auth":
                if not self._auth_logged:
                    self._auth_logged = True
                    log.error("auth_failed", url=self.url, reason=redact_text(answer.message))
                if answer.code == "secret":
                    raise AuthError("secret", f"cannot read the client secret: {answer.message}")
                raise AuthError(answer.code, f"identity refused the credentials: {answer.message}")
            if answer.kind == "transient":
                attempts += 1
                if attempts >= self._retry.attempts:
                    raise ApiTransientError("identity", answer.message)
                delay = equal_jitter_backoff(
                    attempts, self._retry.base_s, self._retry.cap_s, self._rand()
                )
                log.warning("token_retry", reason=answer.message, attempt=attempts, delay_s=delay)
                await self._sleep(delay)
                continue
            attempts = 0
            register_secret(answer.token)
            self._auth_logged = False  # a later refusal is logged again
            now = self._clock()
            same = answer.token == self._token
            expires_in = 0.0 if answer.token == stale else answer.expires_in
            if not same or self._lifetime <= 0:
                self._lifetime = expires_in
            plan = plan_token(
                now, expires_in, lifetime_s=self._lifetime,
                margin_s=self._settings.token_refresh_margin_s, zeros=self._zeros,
            )
            self._token = answer.token
            if expires_in <= 0:
                self._zeros += 1
            else:
                self._zeros = 0
            if plan.use_until <= 0:
                log.info("token_expiring", expires_in=answer.expires_in, wait_s=plan.wait_s,
                         refused=answer.token == stale)
                self._refresh_at = 0.0
                await self._sleep(plan.wait_s)
                continue
            self._refresh_at = plan.use_until
            log.info("token_refreshed", expires_in=answer.expires_in, same_token=same,
                     use_s=round(plan.use_until - now, 3))
            if self._observer is not None:
                self._observer.token_refreshed()
            return answer.token

    async def _ask(self) -> IdentityAnswer:
        """POST the credentials as a form body (never in the URL), classify the answer.

        The secret is read from its source now, so a fixed secret file is picked up.
        """
        try:
            secret = self._secret()
        except ConfigError as exc:
            log.warning("secret_unreadable", key=exc.key, reason=exc.reason)
            return IdentityAnswer("auth", message=str(exc), code="secret")
        register_secret(secret)
        self.identity_calls += 1
        form = {
            "grant_type": "client_credentials",
            "client_id": self._settings.client_id,
            "client_secret": secret,
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


def refused_message(exc: AuthError, url: str) -> str:
    """The one stderr line for a refusal (the HTTP status is taken from the error's text)."""
    if exc.code == "secret":  # the secret file could not be read: nothing was sent
        return f"{exc.message}: fix marketo.client_secret_file (it is read again at every try)"
    found = re.search(r"HTTP (\d{3})", exc.message)
    status = found.group(1) if found else "401"
    return (
        f"Marketo refused the client id/secret (HTTP {status} from {url}): "
        "check marketo.client_id and the secret"
    )


def unreachable_message(exc: ApiError, url: str) -> str:
    """The one stderr line when identity could not be reached after the retries."""
    return (
        f"cannot reach Marketo's identity endpoint {url} after the configured retries "
        f"({exc.message}): check marketo.base_url / marketo.identity_url and the network"
    )
