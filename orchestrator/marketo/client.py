"""The Marketo client: every call leadflow makes, with tokens, pacing, retries and logging.

``async with MarketoClient(settings, store=store) as client`` gives `create_import`,
`get_status`, `download_failures`, `download_warnings` and `describe_leads`. Each call goes
through the instance's one `Governor` (rate window, calls in flight, daily budget), carries the
token only in ``Authorization: Bearer``, and is retried according to `retry_policy.decide`; each
HTTP attempt logs one ``api_call`` line (method, path, ``requestId``, error code, duration,
attempt). Uploads are streamed from disk with a multipart body rebuilt on every attempt; failure
and warning files are streamed to disk in chunks.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

import aiohttp
import structlog

from orchestrator.errors import ApiPermanentError, UncertainSubmit
from orchestrator.logging import redact_text, register_secret
from orchestrator.marketo import calls
from orchestrator.marketo.calls import (
    BatchStatus,
    ImportJob,
    LeadField,
    MalformedAnswer,
    ObjectDescription,
)
from orchestrator.marketo.errors_table import Category, Outcome, classify
from orchestrator.marketo.governor import Governor, UsageStore
from orchestrator.marketo.retry_policy import Action, CallState, RetryConfig, decide
from orchestrator.marketo.tokens import TokenManager
from orchestrator.marketo.transfer import maybe_sent, open_form, stream_to
from orchestrator.settings import LimitSettings, Settings
from orchestrator.timing import Clock

log = structlog.get_logger(__name__)

#: Content types of a file (not a JSON error) in a failures/warnings answer.
_JSON_TYPES = ("application/json", "text/json")

Sleep = Callable[[float], Awaitable[None]]


class CallObserver(Protocol):
    """Told about every answer (the daemon's metrics, ``orchestrator/window/metrics.py``)."""

    def answered(self, endpoint: str, code: str, http_status: int) -> None:
        """One HTTP attempt ended.

        ``code`` is ``ok``, Marketo's code (``1016``), the HTTP status of an HTTP-level
        error, or ``timeout``/``connection`` (then ``http_status`` is 0).
        """

    def token_refreshed(self) -> None:
        """The identity endpoint granted a token."""


@dataclass
class _Request:
    """One logical call: what to send and how to read the answer."""

    method: str
    path: str
    endpoint: str
    params: Mapping[str, str] = field(default_factory=dict)
    upload: Path | None = None
    dest: Path | None = None
    timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class _Answer:
    outcome: Outcome
    #: The token the request carried (replaced after a 601/602).
    token: str
    #: For downloads: a file was written to ``dest``.
    found: bool = False


class MarketoClient:
    """The daemon's only door to one Marketo instance (docs/reference/marketo-api.md §1-§6, §9).

    Args:
        settings: all settings; uses ``marketo.*`` and ``limits.*``.
        store: counts calls per quota day (``api_usage``) for the daily budget; None counts
            in memory only.
        clock: returns epoch seconds (the governor's windows and the quota day).
        session: an aiohttp session to use; None creates (and closes) one.
        sleep: awaits seconds; every wait of the client goes through it.
        wait_for_quota: wait for the quota reset (default) or raise `QuotaExhausted`.
        rand: returns a number in ``[0, 1)`` for backoff jitter.
        window_s: the rate window, seconds; None takes ``limits.rate_window_s`` (20).
        observer: told about every answer and token (metrics); None tells no one.

    Raises:
        ConfigError: no client secret is configured.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        store: UsageStore | None = None,
        clock: Clock = time.time,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
        wait_for_quota: bool = True,
        rand: Callable[[], float] = random.random,
        window_s: float | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self._settings = settings
        self.observer = observer
        # Read once here so that a missing secret stops the start-up with a clear line; the
        # token manager reads the source again on every identity call (a rotated secret file
        # is picked up without a restart).
        register_secret(settings.marketo.secret())
        if window_s is None:
            window_s = settings.limits.rate_window_s
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._session = session
        self._own_session = session is None
        self._retry = RetryConfig(
            settings.marketo.retry_attempts,
            settings.marketo.retry_base_s,
            settings.marketo.retry_max_s,
            window_s,
        )
        self.governor = Governor(
            settings.limits, store=store, clock=clock, sleep=sleep,
            wait_for_quota=wait_for_quota, window_s=window_s,
        )
        self._tokens: TokenManager | None = None

    async def __aenter__(self) -> Self:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._tokens = TokenManager(
            self._settings.marketo, self._read_secret, self._session,
            clock=self._clock, sleep=self._sleep, rand=self._rand, observer=self.observer,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if the client created it."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _read_secret(self) -> str:
        """The client secret from the current settings' source (read at every identity call).

        Raises:
            ConfigError: it cannot be read (the token manager treats that as a refusal).
        """
        return self._settings.marketo.secret()

    @property
    def tokens(self) -> TokenManager:
        """The instance's token manager (after ``__aenter__``)."""
        if self._tokens is None:
            raise RuntimeError("use MarketoClient as an async context manager")
        return self._tokens

    # -- the calls --------------------------------------------------------------------------

    async def create_import(self, path: Path, kind: str, options: Mapping[str, Any]) -> ImportJob:
        """Upload ``path`` as a new import job (docs/reference/marketo-api.md §2.1, §4.1, §4.2).

        Args:
            path: the prepared upload file; streamed from disk, reopened on every attempt.
            kind: ``leads``, ``program_members`` or ``custom_objects``.
            options: ``format`` (default ``csv``), ``lookupField``, ``listId``,
                ``partitionName``, ``programId``, ``programMemberStatus``, ``objectApiName``;
                None values are left out.

        Returns:
            The created job (``batchId`` and status, normally ``Queued``).

        Raises:
            QueueFull: ``1016``: Marketo's import queue is full (not a spent attempt).
            UncertainSubmit: the upload was sent but its answer was lost (timeout, reset, or a
                success without a ``batchId``); a job may exist.
            ApiPermanentError: ``1003``, ``1006``, ``1011``, ``1013``, ``413``, ...; code
                ``config`` for a missing option, ``file`` for an unreadable file.
            ApiTransientError: transient errors outlasted ``marketo.retry_attempts``.
            QuotaExhausted: only with ``wait_for_quota=False``.
            AuthError: the identity endpoint refused the credentials.
        """
        if not await asyncio.to_thread(path.is_file):
            raise ApiPermanentError("file", f"upload file {path.name} does not exist")
        req = _Request(
            "POST", calls.create_path(kind, options), calls.ENDPOINT_CREATE,
            params=calls.create_params(kind, options), upload=path,
            timeout_s=self._settings.marketo.upload_timeout_s,
        )
        answer = await self._call(req)
        assert answer.outcome.payload is not None
        try:
            return calls.parse_import_job(answer.outcome.payload)
        except MalformedAnswer as exc:
            log.warning("upload_uncertain", path=req.path, reason=str(exc))
            raise UncertainSubmit("uncertain", f"upload answer without a batchId: {exc}") from exc

    async def get_status(
        self, batch_id: int, kind: str, options: Mapping[str, Any]
    ) -> BatchStatus:
        """Return the status of an import job (docs/reference/marketo-api.md §3.1, §4.1, §4.2).

        Raises:
            ApiPermanentError: code ``1013`` for a batchId Marketo does not know (any more).
            ApiTransientError, QuotaExhausted, AuthError: as for `create_import`.
        """
        req = _Request(
            "GET", calls.batch_path(kind, options, batch_id, "status"), calls.ENDPOINT_STATUS,
            timeout_s=self._settings.marketo.request_timeout_s,
        )
        answer = await self._call(req, parse=lambda p: calls.parse_batch_status(p, batch_id))
        assert answer.outcome.payload is not None
        return calls.parse_batch_status(answer.outcome.payload, batch_id)

    async def download_failures(
        self, batch_id: int, kind: str, options: Mapping[str, Any], dest: Path
    ) -> bool:
        """Stream the failures file of a job to ``dest`` (docs/reference/marketo-api.md §3.2).

        Returns:
            True if a file was written; False on HTTP 404 or an empty body (no failed rows).

        Raises:
            ApiPermanentError, ApiTransientError, QuotaExhausted, AuthError: as for
            `get_status`.
        """
        return await self._download(batch_id, kind, options, dest, "failures")

    async def download_warnings(
        self, batch_id: int, kind: str, options: Mapping[str, Any], dest: Path
    ) -> bool:
        """Stream the warnings file of a job to ``dest`` (docs/reference/marketo-api.md §3.3).

        Returns and raises as `download_failures`.
        """
        return await self._download(batch_id, kind, options, dest, "warnings")

    async def describe_leads(self) -> list[LeadField]:
        """Return the instance's lead fields (docs/reference/marketo-api.md §7, §8.7).

        Raises:
            ApiPermanentError, ApiTransientError, QuotaExhausted, AuthError: as for
            `get_status`.
        """
        req = _Request(
            "GET", calls.DESCRIBE_PATH, calls.ENDPOINT_DESCRIBE,
            timeout_s=self._settings.marketo.request_timeout_s,
        )
        answer = await self._call(req, parse=calls.parse_describe)
        assert answer.outcome.payload is not None
        return calls.parse_describe(answer.outcome.payload)

    def set_limits(self, limits: LimitSettings) -> None:
        """Use reloaded ``limits`` from the next call on (``Governor.set_limits``)."""
        self.governor.set_limits(limits)

    async def describe_custom_object(self, api_name: str) -> ObjectDescription:
        """Return a custom object's describe: its dedupe fields and fields (ADOC-co).

        Counted as a ``describe`` call.

        Raises:
            ApiPermanentError: code ``1013`` (or another permanent code) for an object type
                Marketo does not know.
            ApiTransientError, QuotaExhausted, AuthError: as for `get_status`.
        """
        req = _Request(
            "GET", calls.describe_object_path(api_name), calls.ENDPOINT_DESCRIBE,
            timeout_s=self._settings.marketo.request_timeout_s,
        )
        answer = await self._call(req, parse=calls.parse_object_describe)
        assert answer.outcome.payload is not None
        return calls.parse_object_describe(answer.outcome.payload)

    async def _download(
        self, batch_id: int, kind: str, options: Mapping[str, Any], dest: Path, what: str
    ) -> bool:
        req = _Request(
            "GET", calls.batch_path(kind, options, batch_id, what),
            calls.ENDPOINT_FAILURES if what == "failures" else calls.ENDPOINT_WARNINGS,
            dest=dest, timeout_s=self._settings.marketo.request_timeout_s,
        )
        return (await self._call(req)).found

    # -- the machinery ----------------------------------------------------------------------

    async def _call(
        self, req: _Request, parse: Callable[[Mapping[str, Any]], object] | None = None
    ) -> _Answer:
        """Send ``req`` until `retry_policy.decide` says done or fail."""
        state = CallState()
        attempt = 0
        while True:
            attempt += 1
            answer = await self._attempt(req, attempt)
            outcome = answer.outcome
            if outcome.category is Category.OK and parse is not None and outcome.payload:
                try:
                    parse(outcome.payload)
                except MalformedAnswer as exc:
                    outcome = Outcome(
                        Category.TRANSIENT, "malformed", str(exc), outcome.http_status,
                        outcome.request_id, outcome.payload,
                    )
            if self.observer is not None:
                self.observer.answered(req.endpoint, outcome.code or "ok", outcome.http_status)
            if outcome.category is not Category.OK:
                await self.governor.count_error(req.endpoint)
            if outcome.category is Category.UNKNOWN:
                log.warning(
                    "api_unknown_code", path=req.path, code=outcome.code,
                    body=redact_text(outcome.body_excerpt),
                )
            decision = decide(outcome, state, self._retry, self._rand())
            state = decision.state
            if req.upload is not None and outcome.http_status >= 500:
                # A gateway error may hide a job that was created (docs/reference/marketo-api.md §5,
                # idempotency note); resending is data-safe because the import is an upsert.
                log.warning(
                    "upload_ambiguous", path=req.path, status=outcome.http_status,
                    action=str(decision.action),
                )
            if decision.action is Action.DONE:
                return _Answer(outcome, answer.token, answer.found)
            if decision.action is Action.FAIL:
                assert decision.error is not None
                raise decision.error
            if decision.action is Action.PAUSE_QUOTA:
                self.governor.pause_for_quota("607")
                continue
            if decision.action is Action.REFRESH:
                await self.tokens.refresh(answer.token)
            elif outcome.category is Category.THROTTLE:
                log.warning(
                    "rate_limited", path=req.path, code=outcome.code,
                    wait_s=round(decision.delay, 3), throttles=state.throttles,
                )
                if decision.hold_all:
                    self.governor.hold(decision.delay)
                    continue
            if decision.delay > 0:
                await self._sleep(decision.delay)

    async def _attempt(self, req: _Request, attempt: int) -> _Answer:
        """Send one HTTP request through the governor and classify its answer."""
        session = self._session
        if session is None:
            raise RuntimeError("use MarketoClient as an async context manager")
        url = f"{self._settings.marketo.base_url}{req.path}"
        timeout = aiohttp.ClientTimeout(
            total=req.timeout_s, connect=self._settings.marketo.connect_timeout_s
        )
        # Identity calls are ungoverned: get a token before taking a place, and again inside
        # (normally instant), since waiting for the governor may have taken hours.
        await self.tokens.get()
        async with self.governor.slot(req.endpoint) as ticket:
            token = await self.tokens.get()
            headers = {"Authorization": f"Bearer {token}"}
            if req.dest is None:
                headers["Accept"] = "application/json"
            started = time.perf_counter()
            handle: IO[bytes] | None = None
            responded = False
            try:
                form: aiohttp.FormData | None = None
                if req.upload is not None:
                    try:
                        form, handle = open_form(req.upload)
                    except OSError as exc:
                        raise ApiPermanentError(
                            "file", f"cannot read upload {req.upload.name}: {exc.strerror}"
                        ) from exc
                async with session.request(
                    req.method, url, params=dict(req.params) or None, data=form,
                    headers=headers, timeout=timeout, allow_redirects=False,
                ) as resp:
                    responded = True
                    answer = await self._read(req, resp, token)
            except (TimeoutError, aiohttp.ClientError) as exc:
                if not responded:
                    # Marketo never answered (refused, timed out, reset): it did not count the
                    # call, so neither does the daily budget (issue 13.6).
                    ticket.no_answer()
                answer = self._transport_failure(req, exc, attempt, started, token)
            finally:
                if handle is not None:
                    handle.close()
        self._log_call(req, answer.outcome, attempt, time.perf_counter() - started)
        return answer

    def _transport_failure(
        self, req: _Request, exc: BaseException, attempt: int, started: float, token: str
    ) -> _Answer:
        reason = redact_text(f"{type(exc).__name__}: {exc}")
        code = "timeout" if isinstance(exc, TimeoutError) else "connection"
        outcome = Outcome(Category.TRANSIENT, code, reason, 0)
        if req.upload is not None and maybe_sent(exc):
            self._log_call(req, outcome, attempt, time.perf_counter() - started)
            log.warning("upload_uncertain", path=req.path, reason=reason, attempt=attempt)
            raise UncertainSubmit(code, f"upload sent but its answer was lost: {reason}") from exc
        return _Answer(outcome, token)

    async def _read(self, req: _Request, resp: aiohttp.ClientResponse, token: str) -> _Answer:
        content_type = resp.headers.get("Content-Type", "").lower()
        is_json = any(t in content_type for t in _JSON_TYPES)
        if req.dest is not None and resp.status == 404:
            return _Answer(Outcome(Category.OK, None, "no file", 404), token)
        if req.dest is not None and resp.status == 200 and not is_json:
            written = await stream_to(resp, req.dest)
            return _Answer(Outcome(Category.OK, None, "", 200), token, found=written > 0)
        body = await resp.read()
        return _Answer(classify(resp.status, body, resp.headers.get("Retry-After")), token)

    def _log_call(self, req: _Request, outcome: Outcome, attempt: int, duration: float) -> None:
        fields: dict[str, Any] = {
            "method": req.method, "path": req.path, "endpoint": req.endpoint,
            "status": outcome.http_status, "request_id": outcome.request_id,
            "code": outcome.code, "duration_s": round(duration, 4), "attempt": attempt,
        }
        if outcome.category is Category.OK:
            log.info("api_call", **fields)
        else:
            log.warning("api_call", category=str(outcome.category), **fields)
