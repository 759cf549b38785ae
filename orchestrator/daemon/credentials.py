"""The daemon's credential gate: check the token at start, pause work while identity refuses.

``leadflow run --once`` asks for a token before anything else (``check_credentials``): a
refusal (HTTP 401 from identity) or an identity endpoint still unreachable after the client's
retries ends the run with exit 1 and one line on stderr (``CredentialsRefused``,
``MarketoUnreachable``).

In daemon mode a refusal, at start or later, closes the ``AuthGate``: work pauses (every loop
waits for the gate), ``auth_failed`` is logged once by the token manager and recorded for
``leadflow status`` (recent errors, and ``<database>.paused`` while the daemon runs), and the
identity call is retried every ``retry_s`` seconds (``polling.max_interval_s * 10`` by
default), never in a tight loop. When a token is granted the gate opens and work resumes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from orchestrator.errors import ApiError, ApiTransientError, AuthError, OrchestratorError
from orchestrator.marketo.tokens import refused_message, unreachable_message
from orchestrator.places import pause_file
from orchestrator.store import Store
from orchestrator.timing import wait_any

log = structlog.get_logger(__name__)

T = TypeVar("T")

#: Multiplier of ``polling.max_interval_s`` giving the default identity retry interval.
AUTH_RETRY_FACTOR = 10.0


class TokenSource(Protocol):
    """The part of ``marketo.TokenManager`` the gate uses."""

    @property
    def url(self) -> str:
        """The identity endpoint's URL (for messages)."""
        ...

    async def get(self) -> str:
        """Return a valid access token, asking identity when needed.

        Raises:
            AuthError: identity refused the client id/secret.
            ApiTransientError: identity could not be reached after the retries.
        """
        ...


class HasTokens(Protocol):
    """A Marketo client with a token manager (``MarketoClient``)."""

    @property
    def tokens(self) -> TokenSource:
        """The client's token manager."""
        ...


class CredentialsRefused(OrchestratorError):
    """Marketo's identity endpoint refused the client id/secret (the CLI exits 1)."""


class MarketoUnreachable(OrchestratorError):
    """Marketo's identity endpoint could not be reached after the client's retries (exit 1)."""


async def check_credentials(client: HasTokens) -> None:
    """Get a token now (``run --once`` does this before any work).

    Args:
        client: a ``MarketoClient`` (uses ``client.tokens``).

    Raises:
        CredentialsRefused: identity answered 401 (or another refusal).
        MarketoUnreachable: identity could not be reached after the client's retries.
    """
    tokens = client.tokens
    try:
        await tokens.get()
    except AuthError as exc:
        raise CredentialsRefused(refused_message(exc, tokens.url)) from None
    except ApiTransientError as exc:
        raise MarketoUnreachable(unreachable_message(exc, tokens.url)) from None


class AuthGate:
    """Open while the credentials work; closed (work paused) while identity refuses them.

    Args:
        client: a ``MarketoClient`` (uses ``client.tokens``).
        store: records ``auth_failed`` for ``leadflow status`` (``record_error``).
        retry_s: seconds between identity calls while closed.
        database: the database path (``<database>.paused`` is written while closed).
        on_refused: called on closing (``--once`` uses it to stop the daemon).
        instance: the Marketo instance whose credentials these are; its name is on the
            gate's log lines (``work_paused``, ``work_resumed``, ``auth_check_failed``).
    """

    def __init__(
        self,
        client: HasTokens,
        store: Store,
        *,
        retry_s: float,
        database: Path | None = None,
        on_refused: Callable[[], None] | None = None,
        instance: str | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self.retry_s = retry_s
        self.instance = instance
        self._tags: dict[str, str] = {} if instance is None else {"instance": instance}
        self._database = database
        self._on_refused = on_refused
        self.open = asyncio.Event()
        self.open.set()
        self._closed = asyncio.Event()
        #: The latest refusal (None while the credentials work).
        self.refusal: AuthError | None = None
        #: Identity calls made by the gate while closed (tests and statistics).
        self.retries = 0

    @property
    def url(self) -> str:
        """The identity endpoint's URL."""
        return self._client.tokens.url

    async def refused(self, exc: AuthError) -> None:
        """Close the gate after a refusal (idempotent while closed)."""
        self.refusal = exc
        if not self.open.is_set():
            return
        self.open.clear()
        self._closed.set()
        message = refused_message(exc, self.url)
        # All work stops until someone fixes the credentials: an error, not a warning.
        log.error("work_paused", reason="auth", retry_every_s=self.retry_s, **self._tags)
        try:
            await self._store.record_error(message, code="auth_failed")
        except Exception as error:  # noqa: BLE001 - the pause must not crash the daemon
            log.warning("auth_error_not_recorded", error=f"{type(error).__name__}: {error}")
        self._write_pause(message)
        if self._on_refused is not None:
            self._on_refused()

    async def wait_open(self, stop: asyncio.Event) -> bool:
        """Wait until the gate is open (True) or ``stop`` is set (False)."""
        while not self.open.is_set():
            if stop.is_set():
                return False
            await wait_any((self.open, stop), None)
        return not stop.is_set()

    async def check_at_start(self, *, fatal: bool) -> None:
        """Get a token before any work.

        With ``fatal`` (``--once``) a refusal or an unreachable identity raises; otherwise a
        refusal closes the gate and an unreachable identity is only logged.

        Raises:
            CredentialsRefused, MarketoUnreachable: with ``fatal`` only.
        """
        if fatal:
            await check_credentials(self._client)
            return
        try:
            await self._client.tokens.get()
        except AuthError as exc:
            await self.refused(exc)
        except ApiError as exc:
            log.warning("auth_check_failed", error=exc.message, **self._tags)

    async def call_if_open(self, call: Callable[[], Awaitable[T]]) -> T:
        """Await ``call()`` now if the gate is open; never wait for it to open.

        For intake's describes: with several instances a file of a paused instance must
        wait on its own (it stays ``received``), not hold up the files of the others.

        Raises:
            AuthError: the gate is closed (a copy of its latest refusal; no call is made),
                or ``call()`` was refused (the gate closes).
        """
        if not self.open.is_set():
            refusal = self.refusal
            raise AuthError(refusal.code if refusal else "401",
                            refusal.message if refusal else "the credentials are refused")
        try:
            return await call()
        except AuthError as exc:
            await self.refused(exc)
            raise

    async def supervise(
        self, stop: asyncio.Event, make: Callable[[], Coroutine[Any, Any, Any]]
    ) -> None:
        """Run the loop ``make()`` while open; after a refusal wait for the gate and restart it.

        Returns when the loop returns or ``stop`` is set while the gate is closed.

        A refusal raised inside a task group of the loop (a token refused in the middle of a
        polling pass or an intake batch) pauses work the same way, when refusals are all the
        group holds; any other failure in it ends the loop as before.
        """
        while await self.wait_open(stop):
            try:
                await make()
                return
            except AuthError as exc:
                await self.refused(exc)
            except ExceptionGroup as group:
                refused, rest = group.split(AuthError)
                if refused is None or rest is not None:
                    raise
                await self.refused(_first_refusal(refused))

    async def run(self, stop: asyncio.Event) -> None:
        """While closed, ask identity for a token every ``retry_s`` seconds; open on success."""
        while not stop.is_set():
            if self.open.is_set():
                await wait_any((self._closed, stop), None)
                self._closed.clear()
                continue
            await wait_any((stop,), self.retry_s)
            if stop.is_set():
                break
            self.retries += 1
            try:
                await self._client.tokens.get()
            except AuthError as exc:
                self.refusal = exc
                continue
            except ApiError as exc:
                log.warning("auth_check_failed", error=exc.message, **self._tags)
                continue
            self.refusal = None
            self._remove_pause()
            log.info("work_resumed", reason="auth", identity_calls=self.retries, **self._tags)
            self.open.set()

    def close(self) -> None:
        """Remove ``<database>.paused`` (the daemon stops)."""
        self._remove_pause()

    def _write_pause(self, message: str) -> None:
        if self._database is None:
            return
        try:
            pause_file(self._database).write_text(
                json.dumps({"reason": "auth", "message": message}), encoding="utf-8"
            )
        except OSError as exc:
            # Work still pauses; only ``leadflow status`` cannot tell (auth_failed is logged).
            log.warning("pause_file_not_written", path=str(pause_file(self._database)),
                        error=f"{type(exc).__name__}: {exc}")

    def _remove_pause(self) -> None:
        if self._database is None:
            return
        try:
            pause_file(self._database).unlink(missing_ok=True)
        except OSError as exc:
            # Not worth stopping work or shutdown for; ``leadflow status`` may say paused.
            log.warning("pause_file_not_removed", path=str(pause_file(self._database)),
                        error=f"{type(exc).__name__}: {exc}")


def _first_refusal(group: BaseExceptionGroup[AuthError]) -> AuthError:
    """Return the first `AuthError` of a (nested) exception group."""
    first = group.exceptions[0]
    return _first_refusal(first) if isinstance(first, BaseExceptionGroup) else first
