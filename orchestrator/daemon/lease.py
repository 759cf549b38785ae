"""Several nodes on one PostgreSQL: who talks to a Marketo instance, held by a lease.

Each node runs a ``LeaseKeeper`` per Marketo instance. Every ``lease_s / 3`` seconds (a
follower: every ``lease_s / 10``) it beats (``nodes.heartbeat_at``) and takes or renews the
instance's lease (``leases``: holder, epoch,
``expires_at``). While the keeper holds the lease, ``held`` is set and the daemon runs its
Marketo loops (scheduler, poller, reporter); when the lease is lost, ``held`` is cleared at
once and the daemon cancels them.

A node cut off from the database stops before anyone else can take over: the keeper trusts
a renewal only until ``SAFETY`` x ``lease_s`` after the renewal *started* (by the local
monotonic clock), while the database counts ``lease_s`` from when it wrote the renewal. A
renewal that does not answer in time counts as lost.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable

import structlog

from orchestrator.errors import StoreError
from orchestrator.store import Store
from orchestrator.timing import wait_any

log = structlog.get_logger("leadflow.daemon.lease")

#: Fraction of ``lease_s`` a renewal is trusted for, locally (the rest absorbs clock skew
#: between nodes and the time the renewal took to be written).
SAFETY = 0.75
#: A follower checks the lease this many times per ``lease_s``.
FOLLOWER_LOOKS = 10
#: The name of the one instance of a ``[marketo]`` setup.
DEFAULT_INSTANCE = "default"


def default_node_id() -> str:
    """``<host>:<pid>``: a name for this node that no other live node has."""
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaseKeeper:
    """Hold the lease of one Marketo instance for this node, or wait for it.

    Args:
        store: the shared store.
        instance: the Marketo instance's name.
        node_id: this node's name (``default_node_id()``).
        lease_s: seconds a lease lasts without renewal (``daemon.lease_s``).
        monotonic: the local clock that bounds how long a renewal is trusted (injected).
    """

    def __init__(
        self,
        store: Store,
        instance: str,
        node_id: str,
        lease_s: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.instance = instance
        self.node_id = node_id
        self.lease_s = lease_s
        self._monotonic = monotonic
        #: Set while this node holds the lease (run the Marketo loops), cleared when lost.
        self.held = asyncio.Event()
        #: Set when a held lease is lost (cleared when it is held again).
        self.lost = asyncio.Event()
        #: The lease's epoch while held (the fencing token), else None.
        self.epoch: int | None = None
        self._trusted_until = 0.0
        self.takeovers = 0

    def valid(self) -> bool:
        """True while the last renewal is still trusted (check before talking to Marketo)."""
        return self.epoch is not None and self._monotonic() < self._trusted_until

    async def tick(self) -> bool:
        """Beat and take or renew the lease once; return whether it is held afterwards."""
        started = self._monotonic()
        budget = (self._trusted_until - started) if self.valid() else self.lease_s * SAFETY
        try:
            async with asyncio.timeout(max(budget, 0.01)):
                await self.store.heartbeat(self.node_id, socket.gethostname(), os.getpid())
                if self.epoch is not None and await self.store.renew_lease(
                    self.instance, self.node_id, self.epoch, self.lease_s
                ):
                    epoch: int | None = self.epoch
                else:
                    epoch = await self.store.acquire_lease(
                        self.instance, self.node_id, self.lease_s
                    )
        except (StoreError, OSError, TimeoutError) as exc:
            log.warning("lease_renewal_failed", instance=self.instance, node=self.node_id,
                        error=f"{type(exc).__name__}: {exc}")
            if not self.valid():
                self.drop("store unreachable")
            return self.held.is_set()
        if epoch is None:
            self.drop("held by another node")
            return False
        if epoch != self.epoch:
            if self.epoch is not None:
                self.drop("lease expired before it was renewed")
            self.epoch = epoch
            #: Times the lease was taken (again): the daemon recovers after each.
            self.takeovers += 1
            log.info("lease_acquired", instance=self.instance, node=self.node_id, epoch=epoch)
        self._trusted_until = started + self.lease_s * SAFETY
        self.lost.clear()
        self.held.set()
        return True

    def drop(self, why: str) -> None:
        """Give up the lease now (``lease_lost`` is logged if it was held): loops stop."""
        if self.epoch is not None:
            log.warning("lease_lost", instance=self.instance, node=self.node_id,
                        epoch=self.epoch, reason=why)
            self.lost.set()
        self.epoch = None
        self.held.clear()

    async def run(self, stop: asyncio.Event) -> None:
        """Keep the lease until ``stop``; release it on the way out so a peer takes over now."""
        try:
            while not stop.is_set():
                await self.tick()
                # A holder renews every third of the lease; a follower looks more often, so
                # that it takes over soon after the lease expires.
                wait = self.lease_s / 3 if self.held.is_set() else self.lease_s / FOLLOWER_LOOKS
                if self.held.is_set():
                    # Wake in time to drop a lease whose renewal is no longer trusted.
                    wait = min(wait, max(self._trusted_until - self._monotonic(), 0.0))
                await wait_any((stop,), wait)
                if self.held.is_set() and not self.valid():
                    self.drop("renewal not confirmed in time")
        finally:
            epoch, self.epoch = self.epoch, None
            self.held.clear()
            try:
                if epoch is not None:
                    await self.store.release_lease(self.instance, self.node_id, epoch)
                # A node that stops cleanly (holder or follower) leaves ``nodes``.
                await self.store.forget_node(self.node_id)
            except (StoreError, OSError) as exc:
                log.warning("lease_release_failed", instance=self.instance,
                            error=f"{type(exc).__name__}: {exc}")
