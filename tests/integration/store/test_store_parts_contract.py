"""The store contract, part two: batches, parts and packs, polling, reporting, status.

Every test runs on SQLite and on PostgreSQL (the ``store_target`` fixture).
``test_every_store_operation_is_in_the_contract`` checks that each public coroutine of
``Store`` is called somewhere in the two contract files.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path

import pytest

from orchestrator.errors import InvalidTransition, StoreError
from orchestrator.models import (
    EnqueuedFile,
    FileStatus,
    NewFile,
    NewPart,
    PartRecord,
    UploadStatus,
)
from orchestrator.store import Store

HERE = Path(__file__).resolve().parent


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def new_file(name: str) -> NewFile:
    return NewFile(name=name, inbox_path=f"/in/{name}", work_path=f"/work/{{id}}/{name}",
                   route=None, size_bytes=10)


def enqueued(file_id: int, sha: str, parts: list[NewPart], wait_s: float = 0.0) -> EnqueuedFile:
    return EnqueuedFile(
        file_id=file_id, status=FileStatus.QUEUED, sha256=sha, encoding="utf-8",
        format="csv", rows_total=sum(len(p.source_rows) for p in parts), rows_rejected=0,
        duplicates=0, info={"k": "v"}, parts=parts, wait_s=wait_s,
    )


def part(path: str, rows: list[int], key: str | None = "k", size: int = 100) -> NewPart:
    return NewPart(path, size, rows, options={"format": "csv"}, pack_key=key, header_bytes=10)


async def part_of(store: Store, file_id: int, part_id: int) -> PartRecord | None:
    """One part of a file, by id (read through ``parts_of_file``)."""
    return next((p for p in await store.parts_of_file(file_id) if p.id == part_id), None)


async def test_batches_of_files_and_parts(store_target: Path | str) -> None:
    clock = Clock()
    async with Store.open(store_target, clock=clock) as store:
        added = await store.add_files([new_file("a.csv"), new_file("b.csv"), new_file("c.csv")])
        assert [f.name for f in added] == ["a.csv", "b.csv", "c.csv"]
        assert [f.work_path for f in added] == [f"/work/{f.id}/{f.name}" for f in added]
        assert await store.file_by_work_path(added[1].work_path) == added[1]
        assert [f.id for f in await store.files_in(FileStatus.RECEIVED)] == [f.id for f in added]
        ids = await store.enqueue_files([
            enqueued(added[0].id, "sa", [part("/p/a1", [2, 3]), part("/p/a2", [4])], wait_s=5),
            enqueued(added[1].id, "sb", [part("/p/b1", [2])]),
        ])
        assert len(ids[0]) == 2 and len(ids[1]) == 1 and ids[0][0] < ids[0][1] < ids[1][0]
        assert await store.part_source_rows(ids[0][0]) == [2, 3]
        first = await part_of(store, added[0].id, ids[0][1])
        assert first is not None and (first.file_id, first.seq, first.rows) == (added[0].id, 2, 1)
        assert first.send_by == 1_005.0 and first.upload_id is None
        shas = await store.imported_twins([("sa", None), ("sb", None), ("zz", None)])
        assert {k: v.id for k, v in shas.items()} == {
            ("sa", ""): added[0].id, ("sb", ""): added[1].id}
        again = await store.get_file(added[0].id)
        assert again is not None and again.status is FileStatus.QUEUED and again.info == {"k": "v"}
        # A batch with a file no longer received changes nothing.
        with pytest.raises(InvalidTransition):
            await store.enqueue_files([enqueued(added[0].id, "sx", [part("/p/x", [2])])])
        assert len(await store.parts_of_file(added[0].id)) == 2


async def test_waiting_parts_form_a_pack(store_target: Path | str) -> None:
    clock = Clock()
    async with Store.open(store_target, clock=clock) as store:
        files = await store.add_files([new_file("a.csv"), new_file("b.csv")])
        ids = await store.enqueue_files([
            enqueued(files[0].id, "sa", [part("/p/a1", [2, 3])], wait_s=30),
            enqueued(files[1].id, "sb", [part("/p/b1", [2]), part("/p/b2", [3], key=None)],
                     wait_s=10),
        ])
        head = await store.waiting_head()
        assert head is not None and head.id == ids[0][0]
        # 90 bytes of rows per part (size 100, header 10): a budget of 100 fits one.
        group = await store.waiting_group("k", 100)
        assert [g[0] for g in group] == [ids[0][0], ids[1][0]]
        assert group[0][1:4] == (2, 100, 10)
        assert await store.waiting_group_totals("k") == (2, 3, 1_010.0)
        summary = await store.waiting_summary()
        assert summary == {"files": 2, "parts": 3, "rows": 4, "oldest_queued_at": 1_000.0}
        upto = await store.waiting_upto("k", ids[1][0])
        assert [p.id for p in upto] == [ids[0][0], ids[1][0]]
        upload = await store.form_upload(
            [(ids[0][0], 0), (ids[1][0], 2)], path="/p/pack-1.csv", size_bytes=190, rows=3,
            kind="leads", options={"format": "csv"},
        )
        assert upload.status is UploadStatus.SUBMITTING and upload.claimed_at == 1_000.0
        assert [p.id for p in await store.parts_of_upload(upload.id)] == [ids[0][0], ids[1][0]]
        assert await store.count_files_in_upload(upload.id) == 2
        riders = await store.files_of_upload(upload.id)
        assert riders == [(files[0].id, "a.csv", 1, 2), (files[1].id, "b.csv", 1, 1)]
        assert await store.source_rows_of_upload(upload.id) == {ids[0][0]: [2, 3],
                                                                ids[1][0]: [2]}
        assert await store.upload_paths() == {"/p/pack-1.csv"}
        assert await store.count_in_flight() == 1
        # A part already in a pack cannot join another (nothing recorded).
        with pytest.raises(StoreError, match="no longer waiting"):
            await store.form_upload([(ids[0][0], 0)], path="/p/again", size_bytes=1, rows=2,
                                    kind="leads", options={})
        assert await store.upload_paths() == {"/p/pack-1.csv"}
        assert (await store.waiting_summary())["parts"] == 1


async def test_polling_results_split_and_reporting(store_target: Path | str) -> None:
    clock = Clock()
    async with Store.open(store_target, clock=clock) as store:
        files = await store.add_files([new_file("a.csv"), new_file("b.csv")])
        ids = await store.enqueue_files([
            enqueued(files[0].id, "sa", [part("/p/a1", [2, 3])]),
            enqueued(files[1].id, "sb", [part("/p/b1", [2])]),
        ])
        upload = await store.form_upload(
            [(ids[0][0], 0), (ids[1][0], 2)], path="/p/pack.csv", size_bytes=190, rows=3,
            kind="leads", options={},
        )
        await store.transition_upload(upload.id, UploadStatus.SUBMITTING,
                                      UploadStatus.SUBMITTED, batch_id=7, next_poll_at=1_020.0)
        assert await store.uploads_in(UploadStatus.SUBMITTED) == [
            await store.get_upload(upload.id)]
        assert await store.next_poll_at() == 1_020.0
        assert await store.due_for_poll(1_010.0) == []
        assert [u.id for u in await store.due_for_poll(1_020.0)] == [upload.id]
        await store.transition_upload(upload.id, UploadStatus.SUBMITTED, UploadStatus.COMPLETE,
                                      num_leads_processed=3, num_rows_failed=1)
        assert [u.id for u in await store.uploads_to_split()] == [upload.id]
        assert await store.files_ready_for_report() == []  # not split yet
        assert await store.record_split(upload.id, [(ids[0][0], 2, 1, 0), (ids[1][0], 1, 0, 0)])
        assert not await store.record_split(upload.id, [])  # once only
        assert await store.uploads_to_split() == []
        assert [f.id for f in await store.files_ready_for_report()] == [f.id for f in files]
        assert await store.unreported_in_upload(upload.id) == 2
        done = await store.transition_file(files[0].id, FileStatus.QUEUED, FileStatus.REPORTING)
        assert done.status is FileStatus.REPORTING
        assert [f.id for f in await store.files_to_report()] == [files[0].id]
        await store.transition_file(files[0].id, FileStatus.REPORTING, FileStatus.PARTIAL,
                                    reported_at=1_030.0, info={"done": True})
        assert await store.unreported_in_upload(upload.id) == 1
        view = {r["id"]: r for r in await store.files_for_status()}
        assert view[files[0].id]["rows_imported"] == 2 and view[files[0].id]["rows_failed"] == 1
        assert view[files[1].id]["rows_imported"] == 1 and view[files[1].id]["parts_waiting"] == 0
        assert view[files[0].id]["status"] == "partial"


async def test_retry_detaches_parts_and_queued_uploads_wait(store_target: Path | str) -> None:
    clock = Clock()
    async with Store.open(store_target, clock=clock) as store:
        [f] = await store.add_files([new_file("a.csv")])
        [[p1]] = await store.enqueue_files([enqueued(f.id, "sa", [part("/p/a1", [2])])])
        upload = await store.form_upload([(p1, 0)], path="/p/a1", size_bytes=100, rows=1,
                                         kind="leads", options={}, status=UploadStatus.QUEUED)
        assert await store.next_queued_at() == 0
        await store.transition_upload(upload.id, UploadStatus.QUEUED, UploadStatus.QUEUED,
                                      not_before=1_050.0)
        assert await store.next_queued_at() == 1_050.0
        assert await store.claim_next() is None
        clock.now = 1_050.0
        claimed = await store.claim_next()
        assert claimed is not None and claimed.id == upload.id
        await store.transition_upload(upload.id, UploadStatus.SUBMITTING, UploadStatus.REJECTED,
                                      error_code="1006")
        clock.now = 1_060.0
        await store.detach_parts([(p1, upload.id, "k2")], {"format": "csv", "listId": 5})
        moved = await part_of(store, f.id, p1)
        assert moved is not None and moved.upload_id is None and moved.pack_key == "k2"
        assert moved.options == {"format": "csv", "listId": 5} and moved.send_by == 1_060.0
        with pytest.raises(StoreError, match="no longer in upload"):
            await store.detach_parts([(p1, upload.id, None)], {})


async def test_files_start_and_finish_reporting_in_batches(store_target: Path | str) -> None:
    clock = Clock()
    async with Store.open(store_target, clock=clock) as store:
        files = await store.add_files([new_file("a.csv"), new_file("b.csv"), new_file("c.csv")])
        ids = await store.enqueue_files([
            enqueued(files[0].id, "sa", [part("/p/a1", [2]), part("/p/a2", [3])]),
            enqueued(files[1].id, "sb", [part("/p/b1", [2])]),
        ])
        by_file = await store.parts_of_files([files[1].id, files[0].id, files[2].id])
        assert {k: [p.id for p in v] for k, v in by_file.items()} == {
            files[0].id: ids[0], files[1].id: ids[1]}
        assert await store.parts_of_files([]) == {}
        clock.now = 1_010.0
        # The received file is not queued: left alone, not returned.
        moved = await store.start_reporting([files[1].id, files[0].id, files[2].id])
        assert [(f.id, f.status, f.updated_at) for f in moved] == [
            (files[0].id, FileStatus.REPORTING, 1_010.0),
            (files[1].id, FileStatus.REPORTING, 1_010.0)]
        assert await store.start_reporting([]) == []
        done = await store.finish_files([
            (files[0].id, FileStatus.REPORTING, FileStatus.COMPLETE,
             {"reported_at": 1_011.0, "info": {"x": 1}}),
            (files[1].id, FileStatus.REPORTING, FileStatus.PARTIAL, {"error": "half"}),
        ])
        assert [(f.status, f.info.get("x"), f.error) for f in done] == [
            (FileStatus.COMPLETE, 1, None), (FileStatus.PARTIAL, None, "half")]
        # All or none: one file in the wrong status leaves both as they were.
        with pytest.raises(InvalidTransition):
            await store.finish_files([
                (files[2].id, FileStatus.RECEIVED, FileStatus.EMPTY, {}),
                (files[0].id, FileStatus.REPORTING, FileStatus.PARTIAL, {}),
            ])
        still = await store.get_file(files[2].id)
        assert still is not None and still.status is FileStatus.RECEIVED


async def test_one_lease_holder_per_instance(store_target: Path | str) -> None:
    clock = Clock()
    async with Store.open(store_target, clock=clock) as a, Store.open(store_target,
                                                                      clock=clock) as b:
        first = await a.acquire_lease("prod", "node-a", 10.0)
        assert first == 1
        assert await b.acquire_lease("prod", "node-b", 10.0) is None  # held
        assert await b.acquire_lease("sandbox", "node-b", 10.0) == 1  # another instance
        assert await a.acquire_lease("prod", "node-a", 10.0) == 1  # renewal: same epoch
        clock.now += 5
        assert await a.renew_lease("prod", "node-a", 1, 10.0)
        clock.now += 10  # 15: node-a renewed until 1,015 and said nothing since
        assert not await a.renew_lease("prod", "node-a", 1, 10.0)  # expired: stop at once
        assert await b.acquire_lease("prod", "node-b", 10.0) == 2  # taken over, new epoch
        assert not await a.renew_lease("prod", "node-a", 1, 10.0)
        assert await a.acquire_lease("prod", "node-a", 10.0) is None
        held = {r["instance"]: (r["holder"], r["epoch"], r["expires_at"]) for r in await a.leases()}
        assert held == {"prod": ("node-b", 2, 1_025.0), "sandbox": ("node-b", 1, 1_010.0)}
        await b.release_lease("prod", "node-b", 2)
        assert await a.acquire_lease("prod", "node-a", 10.0) == 3  # free at once


async def test_two_nodes_racing_for_a_lease_one_wins(store_target: Path | str) -> None:
    async with Store.open(store_target) as a, Store.open(store_target) as b:
        won = await asyncio.gather(*[
            (a if i % 2 else b).acquire_lease("prod", f"node-{i}", 30.0) for i in range(8)])
        assert sum(1 for epoch in won if epoch is not None) == 1


async def test_nodes_heartbeat(store_target: Path | str) -> None:
    clock = Clock()
    async with Store.open(store_target, clock=clock) as store:
        await store.heartbeat("h1:10", "h1", 10)
        clock.now += 3
        await store.heartbeat("h1:10", "h1", 10)
        await store.heartbeat("h2:20", "h2", 20)
        assert await store.nodes() == [
            {"node_id": "h1:10", "host": "h1", "pid": 10, "started_at": 1_000.0,
             "heartbeat_at": 1_003.0},
            {"node_id": "h2:20", "host": "h2", "pid": 20, "started_at": 1_003.0,
             "heartbeat_at": 1_003.0}]
        await store.forget_node("h1:10")
        assert [n["node_id"] for n in await store.nodes()] == ["h2:20"]


async def test_a_dropped_file_is_claimed_by_one_node(store_target: Path | str) -> None:
    async with Store.open(store_target) as a, Store.open(store_target) as b:
        entries = [("/in/a.csv", 10, 1), ("/in/b.csv", 20, 2), ("/in/c.csv", 30, 3)]
        won = await asyncio.gather(*[
            (a if i % 2 else b).claim_inbox_entries(entries, f"node-{i}") for i in range(6)])
        assert sorted(e for w in won for e in w) == sorted(entries)  # each exactly once
        # The same name dropped again later (another mtime) is a new file.
        assert await a.claim_inbox_entries([("/in/a.csv", 10, 99)], "node-0") == {
            ("/in/a.csv", 10, 99)}



async def test_a_claim_of_a_dead_node_is_taken_over(store_target: Path | str) -> None:
    clock = Clock()
    async with Store.open(store_target, clock=clock) as store:
        entry = ("/in/a.csv", 10, 1)
        assert await store.claim_inbox_entries([entry], "dead", stale_s=60.0) == {entry}
        clock.now += 30
        assert await store.claim_inbox_entries([entry], "alive", stale_s=60.0) == set()
        clock.now += 31  # the claim is 61 s old and its file is still offered
        assert await store.claim_inbox_entries([entry], "alive", stale_s=60.0) == {entry}
        assert await store.claim_inbox_entries([entry], "dead", stale_s=60.0) == set()


async def test_files_a_dead_node_left_received_are_adopted_once(
    store_target: Path | str,
) -> None:
    """Issue 17: a node that died mid-preparation leaves files to a live node, never to two."""
    clock = Clock()
    async with Store.open(store_target, clock=clock) as a, Store.open(store_target) as b:
        for node in ("dead", "alive", "me", "other"):
            await a.heartbeat(node, "h", 1)
        lost, busy, free = await a.add_files([
            NewFile("lost.csv", "/in/lost.csv", "/w/{id}/lost.csv", None, 1, node_id="dead"),
            NewFile("busy.csv", "/in/busy.csv", "/w/{id}/busy.csv", None, 1, node_id="alive"),
            NewFile("free.csv", "/in/free.csv", "/w/{id}/free.csv", None, 1),
        ])
        # Both nodes beat recently: only the file of no node is adopted.
        assert [f.id for f in await a.adopt_received("me", 990.0)] == [free.id]
        clock.now = 1_100.0
        for node in ("alive", "me", "other"):
            await a.heartbeat(node, "h", 1)
        # "dead" last beat at 1,000: adopted by exactly one of two racing nodes.
        won = await asyncio.gather(a.adopt_received("me", 1_050.0),
                                   b.adopt_received("other", 1_050.0))
        assert sorted(f.id for w in won for f in w) == [lost.id]
        # A node's own files come back only at its start (own=True).
        owner = "me" if won[0] else "other"
        assert await a.adopt_received(owner, 1_050.0) == []
        assert {f.id for f in await a.adopt_received(owner, 1_050.0, own=True)} >= {lost.id}
        refreshed = await a.get_file(busy.id)
        assert refreshed is not None and refreshed.status is FileStatus.RECEIVED

async def test_the_field_catalogue_is_published_for_other_nodes(
    store_target: Path | str,
) -> None:
    clock = Clock()
    async with Store.open(store_target, clock=clock) as store:
        assert await store.catalogue("prod") is None
        fields = [{"name": "email", "display_name": "Email Address", "data_type": "email",
                   "length": 255, "read_only": False}]
        await store.save_catalogue("prod", fields)
        clock.now += 5
        await store.save_catalogue("prod", fields * 2)
        assert await store.catalogue("prod") == (fields * 2, 1_005.0)
        await store.save_catalogue("prod", {"dedupeFields": ["x"]}, name="car_c")
        assert await store.catalogue("prod", "car_c") == ({"dedupeFields": ["x"]}, 1_005.0)
        assert await store.catalogue("sandbox") is None


async def test_errors_for_status(store_target: Path | str) -> None:
    clock = Clock()
    async with Store.open(store_target, clock=clock) as store:
        await store.record_error("first", code="1006", file_id=1)
        clock.now += 1
        await store.record_error("second", upload_id=2)
        errors = await store.recent_errors(limit=5)
        assert [(e["message"], e["code"], e["file_id"], e["upload_id"]) for e in errors] == [
            ("second", None, None, 2), ("first", "1006", 1, None)]
        assert errors[0]["at"] == 1_001.0


async def test_submissions_routes_and_retention(store_target: Path | str) -> None:
    """What report.json, submit/retry and retention read: create calls, routes, expiries."""
    clock = Clock()
    async with Store.open(store_target, clock=clock) as store:
        [f] = await store.add_files([new_file("a.csv")])
        [[p1, p2]] = await store.enqueue_files(
            [enqueued(f.id, "sa", [part("/p/a1", [2], key=None), part("/p/a2", [3], key=None)])])
        first = await store.form_upload([(p1, 0)], path="/p/a1", size_bytes=100, rows=1,
                                        kind="leads", options={})
        second = await store.form_upload([(p2, 0)], path="/p/a2", size_bytes=100, rows=1,
                                         kind="leads", options={})
        assert [u.id for u in await store.uploads_of_file(f.id)] == [first.id, second.id]
        found = await store.upload_by_path("/p/a2")
        assert found is not None and found.id == second.id
        assert await store.upload_by_path("/p/none") is None
        # A lost answer, then an accepted create call that Marketo finishes.
        await store.transition_upload(first.id, UploadStatus.SUBMITTING, UploadStatus.QUEUED,
                                      uncertain=1)
        await store.claim_next()
        clock.now = 1_002.0
        await store.transition_upload(first.id, UploadStatus.SUBMITTING, UploadStatus.SUBMITTED,
                                      batch_id=77, marketo_status="Queued", submitted_at=1_002.0)
        await store.transition_upload(first.id, UploadStatus.SUBMITTED, UploadStatus.COMPLETE,
                                      marketo_status="Complete")
        calls = await store.submissions_of_file(f.id)
        assert [(c["outcome"], c["batch_id"], c["marketo_status"]) for c in calls[first.id]] == [
            ("uncertain", None, None), ("accepted", 77, "Complete")]
        assert second.id not in calls

        assert await store.daemon_routes() is None
        await store.record_daemon_routes([{"name": "webinar", "folder": "w"}], pid=42)
        await store.record_daemon_routes([{"name": "fair", "folder": "f"}], pid=43)
        assert await store.daemon_routes() == (43, [{"name": "fair", "folder": "f"}])

        await store.start_reporting([f.id])
        await store.finish_files(
            [(f.id, FileStatus.REPORTING, FileStatus.COMPLETE, {"reported_at": 1_010.0})])
        assert await store.files_to_expire("archive", 1_009.0, 10) == []
        assert [x.id for x in await store.files_to_expire("archive", 1_010.0, 10)] == [f.id]
        assert await store.files_to_expire("rejected", 1_010.0, 10) == []
        await store.record_expiry(f.id, "archive", "/archive/a.csv", deleted=True, at=1_020.0)
        await store.record_expiry(f.id, "work", "/work/1", deleted=False, at=1_020.0)
        assert await store.files_to_expire("archive", 2_000.0, 10) == []
        assert await store.expiry_counts(1_000.0) == {"archive": 1}
        assert await store.expiry_counts(1_021.0) == {}


async def test_each_instance_sees_its_own_queue_and_calls(store_target: Path | str) -> None:
    """Issue 17: two Marketo instances in one database never see each other's work."""
    clock = Clock()
    async with Store.open(store_target, clock=clock) as root:
        prod, sandbox = root.for_instance("prod"), root.for_instance("sandbox")
        assert (prod.instance, sandbox.instance, root.instance) == ("prod", "sandbox", "default")
        a, b = await root.add_files([
            NewFile("a.csv", "/in/a.csv", "/work/{id}/a.csv", None, 10, instance="prod"),
            NewFile("b.csv", "/in/b.csv", "/work/{id}/b.csv", None, 10, instance="sandbox"),
        ])
        c = await root.add_file(name="c.csv", inbox_path="/in/c.csv", work_path="/w/c",
                                route=None, size_bytes=1, instance="sandbox")
        assert (a.instance, b.instance, c.instance) == ("prod", "sandbox", "sandbox")
        [[pa], [pb]] = await root.enqueue_files([
            enqueued(a.id, "sa", [part("/p/a", [2])]), enqueued(b.id, "sb", [part("/p/b", [2])])])
        head = await prod.waiting_head()
        assert head is not None and head.id == pa
        assert [g[0] for g in await sandbox.waiting_group("k", 10_000)] == [pb]
        assert (await prod.waiting_summary())["files"] == 1
        assert await root.waiting_head() is None  # nothing of 'default'
        up = await sandbox.form_upload([(pb, 0)], path="/p/b", size_bytes=100, rows=1,
                                       kind="leads", options={}, status=UploadStatus.QUEUED)
        assert await prod.claim_next() is None
        claimed = await sandbox.claim_next()
        assert claimed is not None and claimed.id == up.id
        assert await prod.count_in_flight() == 0 and await sandbox.count_in_flight() == 1
        await sandbox.transition_upload(up.id, UploadStatus.SUBMITTING, UploadStatus.SUBMITTED,
                                        batch_id=5, submitted_at=1_000.0, next_poll_at=1_001.0)
        assert [u.id for u in await sandbox.at_marketo()] == [up.id]
        assert await prod.at_marketo() == [] and await prod.due_for_poll(2_000.0) == []
        assert await prod.next_poll_at() is None and await sandbox.next_poll_at() == 1_001.0
        # Each instance's 20-s window and daily usage are its own.
        call = await prod.begin_call("2026-12-05", "import_status", 1_000.0)
        await prod.end_call(call, 1_000.5)
        await sandbox.begin_call("2026-12-05", "import_create", 1_000.0)
        assert await prod.calls_on("2026-12-05") == 1 and await sandbox.calls_on("2026-12-05") == 1
        assert await prod.restore_window(1_010.0, 20.0) == [1_000.5]
        assert await sandbox.restore_window(1_010.0, 20.0) == [1_010.0]
        assert await root.usage_on("2026-12-05") == {}


def test_every_store_operation_is_in_the_contract() -> None:
    source = "".join(
        (HERE / name).read_text() for name in
        ("test_store_contract.py", "test_store_parts_contract.py")
    ) + (HERE.parents[1] / "store_helpers.py").read_text()
    operations = [
        name for name, member in inspect.getmembers(Store)
        if not name.startswith("_") and inspect.iscoroutinefunction(member)
    ]
    missing = [name for name in operations if not re.search(rf"\.{name}\(", source)]
    assert missing == []
