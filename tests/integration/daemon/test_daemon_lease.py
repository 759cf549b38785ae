"""The lease keeper: one node per Marketo instance, takeover, a node cut off stops in time.

On both engines (``store_target``): the lease lives in the store. Clocks are injected: the
store's (epoch seconds, when leases expire) and the keeper's monotonic one (how long a
renewal is trusted locally).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path

import pytest

from orchestrator.daemon.instance import FencedSubmitter
from orchestrator.daemon.lease import SAFETY, LeaseKeeper
from orchestrator.daemon.lifecycle import check_node_id
from orchestrator.errors import ConfigError, StoreUnavailable
from orchestrator.store import Store


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_one_holder_then_takeover_within_lease_s(store_target: Path | str) -> None:
    clock = Clock()
    async with Store.open(store_target, clock=clock) as sa, Store.open(store_target,
                                                                       clock=clock) as sb:
        a = LeaseKeeper(sa, "default", "node-a", 10.0, monotonic=clock)
        b = LeaseKeeper(sb, "default", "node-b", 10.0, monotonic=clock)
        assert await a.tick() and a.epoch == 1 and a.held.is_set()
        assert not await b.tick() and not b.held.is_set()
        clock.now += 3
        assert await a.tick()  # renewed until 1,013
        # node-a is SIGKILLed here: it never renews again.
        clock.now += 7.5  # 1,010.5: node-a's renewal (1,003) is no longer trusted locally...
        assert not a.valid()
        assert not await b.tick()  # ...but the database still says node-a until 1,013
        clock.now = 1_013.0
        assert await b.tick() and b.epoch == 2  # taken over within lease_s of the last renewal
        nodes = {n["node_id"] for n in await sa.nodes()}
        assert nodes == {"node-a", "node-b"}
        # node-a comes back: it finds the lease taken, drops it and follows.
        assert not await a.tick()
        assert a.epoch is None and not a.held.is_set()


async def test_a_node_cut_off_from_the_store_stops_before_its_lease_expires(
    store_target: Path | str,
) -> None:
    clock = Clock()
    async with Store.open(store_target, clock=clock) as store:
        a = LeaseKeeper(store, "default", "node-a", 10.0, monotonic=clock)
        assert await a.tick()
        renewed_at = clock.now

        async def unreachable(*args: object, **kwargs: object) -> None:
            raise StoreUnavailable("lost the PostgreSQL connection")

        store.heartbeat = unreachable  # type: ignore[method-assign]
        clock.now += 4
        assert await a.tick()  # still trusted: the last renewal holds for SAFETY x lease_s
        assert a.valid() and not a.lost.is_set()
        clock.now = renewed_at + 10 * SAFETY
        assert not await a.tick()
        assert a.lost.is_set() and not a.held.is_set() and not a.valid()
        # It stopped before the database lets anyone else take over.
        lease = (await store.leases())[0]
        assert clock.now < lease["expires_at"]


async def test_clean_stop_releases_the_lease_at_once(store_target: Path | str) -> None:
    async with Store.open(store_target) as sa, Store.open(store_target) as sb:
        a = LeaseKeeper(sa, "default", "node-a", 30.0)
        stop = asyncio.Event()
        task = asyncio.create_task(a.run(stop))
        await asyncio.wait_for(a.held.wait(), 5)
        b = LeaseKeeper(sb, "default", "node-b", 30.0)
        assert not await b.tick()
        stop.set()
        await asyncio.wait_for(task, 5)
        assert await b.tick() and b.epoch == 2  # no need to wait 30 s
        assert [n["node_id"] for n in await sb.nodes()] == ["node-b"]
        # A follower that stops cleanly leaves the nodes too.
        c = LeaseKeeper(sa, "default", "node-c", 30.0)
        assert not await c.tick()  # it beats, and follows
        assert {n["node_id"] for n in await sb.nodes()} == {"node-b", "node-c"}
        stopped = asyncio.Event()
        stopped.set()
        await c.run(stopped)
        assert [n["node_id"] for n in await sb.nodes()] == ["node-b"]


async def test_a_create_call_never_leaves_without_a_trusted_lease(
    store_target: Path | str, tmp_path: Path
) -> None:
    """The fence in front of the create call: no two nodes ever submit for one instance."""
    clock = Clock()
    sent: list[Path] = []

    class Client:
        async def create_import(self, path: Path, *, kind: str, options: dict[str, object]
                                ) -> str:
            sent.append(path)
            return "job"

    async with Store.open(store_target, clock=clock) as store:
        lease = LeaseKeeper(store, "prod", "node-a", 10.0, monotonic=clock)
        assert await lease.tick()
        fenced = FencedSubmitter(Client(), lease)
        assert await fenced.create_import(tmp_path / "a.csv", kind="leads", options={}) == "job"
        clock.now += 10 * SAFETY  # the renewal is no longer trusted (not yet renewed)
        call = asyncio.ensure_future(
            fenced.create_import(tmp_path / "b.csv", kind="leads", options={})
        )
        await asyncio.wait_for(lease.lost.wait(), 5)  # dropped: the loops get cancelled
        assert not call.done() and not lease.held.is_set()
        call.cancel()
        assert sent == [tmp_path / "a.csv"]


async def test_a_node_name_a_live_node_uses_is_refused(store_target: Path | str) -> None:
    """Two nodes with one daemon.node_id would both hold a lease: the second one stops."""
    clock = Clock()
    async with Store.open(store_target, clock=clock) as store:
        await store.heartbeat("n1", "other-host", 4242)
        with pytest.raises(ConfigError, match=r"node 'n1' already runs \(host other-host"):
            await check_node_id(store, "n1", 2.0, clock.now + 5.0)
        await check_node_id(store, "n2", 2.0, clock.now)  # another name: fine
        await check_node_id(store, "n1", 2.0, clock.now + 6.5)  # it stopped beating: fine
        # A predecessor killed on this host (its pid is gone) is no conflict either.
        dead = subprocess.Popen(["true"])
        dead.wait()
        await store.heartbeat("n3", socket.gethostname(), dead.pid)
        await check_node_id(store, "n3", 2.0, clock.now)
        await store.heartbeat("n4", socket.gethostname(), os.getppid())  # alive here
        with pytest.raises(ConfigError):
            await check_node_id(store, "n4", 2.0, clock.now)
