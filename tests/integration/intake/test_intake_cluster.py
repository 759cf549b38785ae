"""Intake on a node of a cluster: a shared inbox, and files a dead node left half-prepared.

Runs on both engines (``store_target``): SQLite stands in for a deployment's one database
in the same way PostgreSQL does for several nodes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from intake_support import Clock, FakeDescribe

from orchestrator import places
from orchestrator.intake import Intake
from orchestrator.models import FileStatus, NewFile
from orchestrator.settings import Settings
from orchestrator.store import Store

GOOD = b"email,firstName\r\na@example.com,Ana\r\nb@example.com,Bo\r\n"


async def test_a_file_a_dead_node_left_received_is_finished_by_one_live_node(
    make_settings: Callable[..., Settings], store_target: Path | str
) -> None:
    settings = make_settings(daemon={"lease_s": 2.0})
    clock = Clock(1_000.0)
    async with Store.open(store_target, clock=clock) as store:
        await store.heartbeat("ghost", "h0", 1)  # then it died: no beat after 1,000
        await store.heartbeat("busy", "h3", 3)
        # The ghost claimed a.csv into work; "busy" (alive) is preparing b.csv.
        lost = await store.add_file(
            name="a.csv", inbox_path=str(settings.paths.inbox / "a.csv"),
            work_path=str(places.work_source(settings.paths.work, places.PENDING_ID, "a.csv")),
            route=None, size_bytes=len(GOOD), node_id="ghost",
        )
        Path(lost.work_path).parent.mkdir(parents=True)
        Path(lost.work_path).write_bytes(GOOD)
        (busy,) = await store.add_files([NewFile("b.csv", "/in/b.csv", "/w/{id}/b.csv", None, 1,
                                                 node_id="busy")])
        nodes = []
        for name in ("n1", "n2"):
            intake = Intake(settings, store, describe=FakeDescribe(), clock=clock)
            intake.node_id = name
            nodes.append(intake)
        clock.now = 1_005.5  # within 3 x lease_s of the ghost's last beat: still its file
        await nodes[0].scan_once()
        waiting = await store.get_file(lost.id)
        assert waiting is not None and waiting.node_id == "ghost"
        clock.now = 1_006.5  # more than 3 x lease_s after the ghost's last beat
        for name in ("busy", "n1", "n2"):
            await store.heartbeat(name, "h", 1)
        for intake in nodes:
            await intake.scan_once()
        done = await store.get_file(lost.id)
        assert done is not None and done.status is FileStatus.QUEUED
        assert done.node_id in ("n1", "n2")
        assert len(await store.parts_of_file(lost.id)) == 1  # prepared once
        still = await store.get_file(busy.id)
        assert still is not None and still.status is FileStatus.RECEIVED
        assert still.node_id == "busy"
