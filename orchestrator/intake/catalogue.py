"""The lead describe, cached: fetched once, refreshed every ``intake.describe_refresh_s``.

Contract 8.7: ``GET /rest/v1/leads/describe.json`` counts as an API call, so it is not asked
for every file. A failed refresh keeps the stale catalogue; with none at all, files wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog

from orchestrator.intake.fields import Catalogue, LeadFieldLike
from orchestrator.timing import Clock

log = structlog.get_logger(__name__)

#: ``MarketoClient.describe_leads``: a coroutine function returning the lead fields.
Describe = Callable[[], Awaitable[Sequence[LeadFieldLike]]]


class CatalogueUnavailable(Exception):
    """The describe call failed and no catalogue is cached: files wait in ``received``."""


class CatalogueCache:
    """Holds the field catalogue and refreshes it when it is old.

    Args:
        describe: fetches the fields.
        refresh_s: seconds a catalogue is used before it is fetched again.
        retry_s: seconds after a failed fetch before the next try.
        clock: epoch seconds.
    """

    def __init__(
        self, describe: Describe, *, refresh_s: float, retry_s: float, clock: Clock
    ) -> None:
        self.describe = describe
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self.clock = clock
        self._catalogue: Catalogue | None = None
        self._fetched_at = 0.0
        self._failed_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self) -> Catalogue:
        """Return the catalogue, fetching it when missing or older than ``refresh_s``.

        Concurrent callers share one fetch (a lock), so preparing several files at once costs
        one describe call. A failed fetch is not retried before ``retry_s`` has passed; a
        stale catalogue is returned meanwhile.

        Raises:
            CatalogueUnavailable: no catalogue yet and the fetch failed (now or moments ago).
        """
        async with self._lock:
            return await self._get()

    async def _get(self) -> Catalogue:
        now = self.clock()
        if self._catalogue is not None and now - self._fetched_at < self.refresh_s:
            return self._catalogue
        if now - self._failed_at < self.retry_s:
            if self._catalogue is not None:
                return self._catalogue
            raise CatalogueUnavailable("describe failed moments ago")
        try:
            fields = await self.describe()
        except Exception as exc:
            self._failed_at = now
            log.warning("describe_failed", error=f"{type(exc).__name__}: {exc}")
            if self._catalogue is not None:
                return self._catalogue
            raise CatalogueUnavailable(str(exc)) from exc
        self._catalogue = Catalogue(fields)
        self._fetched_at = now
        log.info("describe_refreshed", fields=len(self._catalogue))
        return self._catalogue
