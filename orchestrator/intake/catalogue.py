"""The describes, cached: fetched once, refreshed every ``intake.describe_refresh_s``.

docs/reference/marketo-api.md §8.7: ``GET /rest/v1/leads/describe.json`` counts as an API call, so
it is not asked for every file. A failed refresh keeps the stale catalogue; with none at all, files
wait. Custom objects are described one by one (``ObjectCache``), the same way; an object
Marketo refuses to describe (unknown, ``1013``) makes its files rejected, not waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import structlog

from orchestrator.errors import ApiPermanentError
from orchestrator.intake.fields import Catalogue, CustomObjectLike, LeadFieldLike
from orchestrator.intake.reasons import Unimportable
from orchestrator.timing import Clock

log = structlog.get_logger(__name__)

#: ``MarketoClient.describe_leads``: a coroutine function returning the lead fields.
Describe = Callable[[], Awaitable[Sequence[LeadFieldLike]]]
#: ``MarketoClient.describe_custom_object``: the describe of one custom object by API name.
DescribeObject = Callable[[str], Awaitable[CustomObjectLike]]


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


class ObjectCache:
    """Holds each custom object's describe and refreshes it when it is old.

    Args:
        describe: fetches one object's describe by API name; None when there is no client
            (then every custom object is unavailable).
        refresh_s: seconds a describe is used before it is fetched again.
        retry_s: seconds after a failed fetch before the next try.
        clock: epoch seconds.
    """

    def __init__(
        self,
        describe: DescribeObject | None,
        *,
        refresh_s: float,
        retry_s: float,
        clock: Clock,
    ) -> None:
        self.describe = describe
        self.refresh_s = refresh_s
        self.retry_s = retry_s
        self.clock = clock
        self._known: dict[str, tuple[CustomObjectLike, float]] = {}
        self._failed: dict[str, float] = {}
        self._lock = asyncio.Lock()

    async def get(self, api_name: str) -> CustomObjectLike:
        """Return the describe of ``api_name``, fetching it when missing or old.

        Raises:
            CatalogueUnavailable: no describe yet and the fetch failed transiently (files
                wait), or there is no describe function.
            Unimportable: Marketo refused the describe permanently (an unknown object,
                ``1013``; no permission, ``603``): the file cannot be imported as configured.
        """
        async with self._lock:
            now = self.clock()
            known = self._known.get(api_name)
            if known is not None and now - known[1] < self.refresh_s:
                return known[0]
            if self.describe is None:
                raise CatalogueUnavailable("no custom object describe available")
            if now - self._failed.get(api_name, float("-inf")) < self.retry_s:
                if known is not None:
                    return known[0]
                raise CatalogueUnavailable(f"describe of {api_name} failed moments ago")
            try:
                described = await self.describe(api_name)
            except ApiPermanentError as exc:
                raise Unimportable(
                    f"Marketo refused to describe the custom object '{api_name}' "
                    f"({exc.code} {exc.message}): check the route's object_api_name and the API "
                    "user's Read-Write Custom Object permission."
                ) from exc
            except Exception as exc:
                self._failed[api_name] = now
                log.warning("describe_failed", object=api_name,
                            error=f"{type(exc).__name__}: {exc}")
                if known is not None:
                    return known[0]
                raise CatalogueUnavailable(str(exc)) from exc
            self._known[api_name] = (described, now)
            log.info("object_describe_refreshed", object=api_name,
                     dedupe_fields=list(described.dedupe_fields))
            return described
