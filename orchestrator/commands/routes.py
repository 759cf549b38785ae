"""The routes ``leadflow submit`` and ``leadflow retry`` send files to.

While a daemon holds the database lock and has recorded its routes (``daemon.publish_routes``
at start and after every reload), those are what it watches and imports with, whatever the
settings file says now; with no daemon running, the settings file is the truth. A route only
the settings file knows is refused with one line asking for a reload.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass

from orchestrator.errors import StoreError
from orchestrator.settings import Route, Settings
from orchestrator.store import Store
from orchestrator.store.lock import daemon_running


@dataclass(frozen=True, slots=True)
class RoutesInForce:
    """The routes files are sent to: the running daemon's, or the settings file's.

    Attributes:
        routes: the routes, in order.
        pid: the running daemon whose recorded routes these are; None when no daemon runs
            (or it recorded none: an older leadflow) and the settings file is the truth.
    """

    routes: tuple[Route, ...]
    pid: int | None = None

    def find(self, name: str) -> Route | None:
        """The route called ``name``, or None."""
        return next((r for r in self.routes if r.name == name), None)

    def for_folder(self, subfolder: str) -> Route | None:
        """The route watching inbox ``subfolder``, or None."""
        return next((r for r in self.routes if r.subfolder == subfolder.strip("/")), None)

    def whose(self) -> str:
        """Whose routes these are, for a message."""
        return "the running daemon's routes" if self.pid is not None else "known routes"

    def known(self) -> str:
        """The route names for a message (``none configured`` when there are none)."""
        return ", ".join(r.name for r in self.routes) or "none configured"

    def refuse(self, name: str, settings: Settings) -> str | None:
        """The refusal of a route the settings file has but the running daemon does not.

        Returns:
            One line for the operator (exit 2), or None when there is nothing to refuse.
        """
        if self.pid is None or self.find(name) is not None:
            return None
        if not any(r.name == name for r in settings.routes):
            return None
        return (
            f"leadflow: the running daemon does not know route {name!r} yet: reload it "
            f"(systemctl reload leadflow / kill -HUP {self.pid or '<its pid>'})"
        )


async def routes_in_force(settings: Settings, store: Store | None = None) -> RoutesInForce:
    """Return the routes of the running daemon (as it recorded them), or of the settings.

    Args:
        settings: the settings this command was started with.
        store: an open store to read from (one is opened without migrating otherwise).
    """
    pid = await asyncio.to_thread(daemon_running, settings.paths.database)
    if pid is None or not await asyncio.to_thread(settings.paths.database.exists):
        return RoutesInForce(settings.routes)
    try:
        if store is not None:
            recorded = await store.daemon_routes()
        else:
            async with Store.open(settings.paths.database, migrate_schema=False) as opened:
                recorded = await opened.daemon_routes()
    except (StoreError, sqlite3.Error):  # an older schema: that daemon records nothing
        return RoutesInForce(settings.routes)
    if recorded is None or (pid and recorded[0] != pid):
        return RoutesInForce(settings.routes)  # recorded by an earlier daemon, not this one
    return RoutesInForce(tuple(Route.model_validate(r) for r in recorded[1]), pid)
