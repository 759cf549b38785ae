"""The store contract: every store operation, on SQLite and on PostgreSQL.

The ``store_target`` fixture (tests/conftest.py) runs each test once per backend: a SQLite
file, then a fresh database on the session's PostgreSQL (skipped, with one line in the
report, where there is none). ``test_every_store_operation_is_in_the_contract`` keeps the
suite whole.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from store_helpers import enqueue_uploads

from orchestrator.cli import cli
from orchestrator.errors import DuplicateContent, InvalidTransition, StoreError
from orchestrator.models import EnqueuedFile, FileStatus, NewFile, NewPart, UploadStatus
from orchestrator.store import Store


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def add_queued_file(store: Store, name: str, n_uploads: int, sha: str) -> list[int]:
    f = await store.add_file(
        name=name, inbox_path=f"/in/{name}", work_path=f"/work/{name}", route=None, size_bytes=1
    )
    uploads = [NewPart(f"/work/{name}.{i}", 10, [i + 2]) for i in range(n_uploads)]
    return await enqueue_uploads(store, f.id, uploads, sha256=sha, rows_total=n_uploads)


async def test_fifo_claim_order_and_not_before(store_target: Path | str) -> None:
    clock = FakeClock()
    async with Store.open(store_target, clock=clock) as store:
        a = await add_queued_file(store, "a.csv", 2, "a")
        b = await add_queued_file(store, "b.csv", 1, "b")
        await store.transition_upload(a[0], UploadStatus.QUEUED, UploadStatus.QUEUED,
                                      not_before=clock.now + 10)
        claimed = [await store.claim_next() for _ in range(3)]
        assert [u.id if u else None for u in claimed] == [a[1], b[0], None]
        clock.now += 10
        late = await store.claim_next()
        assert late is not None and late.id == a[0] and late.status is UploadStatus.SUBMITTING


async def test_two_claimers_never_get_the_same_upload(store_target: Path | str) -> None:
    async with Store.open(store_target) as s1, Store.open(store_target) as s2:
        ids = await add_queued_file(s1, "a.csv", 40, "a")
        results = await asyncio.gather(*[(s1 if i % 2 else s2).claim_next() for i in range(41)])
        got = [u.id for u in results if u is not None]
        assert sorted(got) == ids and len(set(got)) == 40
        assert results.count(None) == 1
        assert await s1.claim_next() is None


def test_two_processes_never_claim_the_same_upload(store_target: Path | str) -> None:
    db = store_target

    async def setup() -> None:
        async with Store.open(db) as store:
            await add_queued_file(store, "a.csv", 200, "a")

    asyncio.run(setup())
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from orchestrator.store import Store\n"
        "async def main():\n"
        "    got = []\n"
        "    async with Store.open(sys.argv[1]) as s:\n"
        "        while (u := await s.claim_next()) is not None:\n"
        "            got.append(u.id)\n"
        "    print(','.join(map(str, got)))\n"
        "asyncio.run(main())\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(db)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    claimed = [int(x) for out in outs for x in out.split(",") if x]
    assert sorted(claimed) == list(range(1, 201))


async def test_transition_is_compare_and_set(store_target: Path | str) -> None:
    async with Store.open(store_target) as store:
        [uid] = await add_queued_file(store, "a.csv", 1, "a")
        with pytest.raises(InvalidTransition) as info:
            await store.transition_upload(uid, UploadStatus.SUBMITTING, UploadStatus.SUBMITTED)
        assert info.value.actual == "queued"
        await store.claim_next()
        u = await store.transition_upload(
            uid, UploadStatus.SUBMITTING, UploadStatus.SUBMITTED, batch_id=42,
            marketo_status="Queued", attempts=1,
        )
        assert (u.status, u.batch_id, u.attempts) == (UploadStatus.SUBMITTED, 42, 1)
        with pytest.raises(ValueError, match="cannot set"):
            await store.transition_upload(uid, UploadStatus.SUBMITTED, UploadStatus.IMPORTING,
                                          status="x")


async def test_database_refuses_a_transition_not_in_the_table(store_target: Path | str) -> None:
    async with Store.open(store_target) as store:
        [uid] = await add_queued_file(store, "a.csv", 1, "a")
        with pytest.raises(InvalidTransition):
            await store.transition_upload(uid, UploadStatus.QUEUED, UploadStatus.COMPLETE)
    # The database itself says no, whoever writes to it.
    if isinstance(store_target, Path):
        conn = sqlite3.connect(store_target)
        with pytest.raises(sqlite3.IntegrityError, match="transition not allowed"):
            conn.execute("UPDATE uploads SET status = 'complete' WHERE id = ?", (uid,))
        assert conn.execute("SELECT status FROM uploads").fetchone()[0] == "queued"
    else:
        with psycopg.connect(store_target, autocommit=True) as pg:
            with pytest.raises(psycopg.errors.RaiseException, match="transition not allowed"):
                pg.execute("UPDATE uploads SET status = 'complete' WHERE id = %s", (uid,))
            assert pg.execute("SELECT status FROM uploads").fetchone() == ("queued",)


async def test_history_is_written_by_trigger(store_target: Path | str) -> None:
    async with Store.open(store_target) as store:
        [uid] = await add_queued_file(store, "a.csv", 1, "a")
        await store.claim_next()
        await store.transition_upload(uid, UploadStatus.SUBMITTING, UploadStatus.QUEUED)
        await store.transition_upload(uid, UploadStatus.QUEUED, UploadStatus.QUEUED, polls=1)
        steps = [(a, b) for a, b, _ in await store.history("upload", uid)]
        assert steps == [(None, "queued"), ("queued", "submitting"), ("submitting", "queued")]
        assert [b for _, b, _ in await store.history("file", 1)] == ["received", "queued"]


async def test_enqueue_is_atomic_and_duplicate_sha_is_refused(store_target: Path | str) -> None:
    async with Store.open(store_target) as store:
        await add_queued_file(store, "a.csv", 2, "same")
        g = await store.add_file(name="b.csv", inbox_path="/in/b", work_path="/w/b", route=None,
                                 size_bytes=1)
        assert (await store.imported_twin("same", None)) is not None
        with pytest.raises(DuplicateContent):
            await store.enqueue_parts(g.id, [NewPart("/w/b.1", 1, [2])], sha256="same")
        assert (await store.get_file(g.id)).status is FileStatus.RECEIVED  # type: ignore[union-attr]
        assert len(await store.parts_of_file(g.id)) == 0


async def test_same_bytes_with_other_options_or_forced_are_not_duplicates(
    store_target: Path | str,
) -> None:
    root, webinar = '["leads","email",null]', '["leads","email",1001]'
    async with Store.open(store_target) as store:

        async def enqueue(name: str, key: str, forced: bool = False) -> int:
            f = await store.add_file(name=name, inbox_path=f"/in/{name}", work_path="/w",
                                     route=None, size_bytes=1)
            await enqueue_uploads(store, f.id, [NewPart(f"/w/{name}", 1, [2])],
                                        sha256="same", import_key=key, forced=int(forced))
            return f.id

        first = await enqueue("a.csv", root)
        other = await enqueue("b.csv", webinar)  # other options: another import
        assert (await store.imported_twin("same", root)).id == first  # type: ignore[union-attr]
        assert (await store.imported_twin("same", webinar)).id == other  # type: ignore[union-attr]
        assert await store.imported_twin("same", '["leads","id",null]') is None
        with pytest.raises(DuplicateContent):
            await enqueue("c.csv", root)
        forced = await enqueue("c.force.csv", root, forced=True)
        record = await store.get_file(forced)
        assert record is not None and record.forced and record.import_key == root
        assert (await store.imported_twin("same", root)).id == first  # type: ignore[union-attr]


async def test_reap_requeues_uploads_caught_mid_submit(store_target: Path | str) -> None:
    async with Store.open(store_target) as store:
        ids = await add_queued_file(store, "a.csv", 3, "a")
        await store.claim_next()
        second = await store.claim_next()
        assert second is not None
        await store.transition_upload(second.id, UploadStatus.SUBMITTING, UploadStatus.SUBMITTED,
                                      batch_id=9)
        reaped = await store.reap_in_flight()
        assert [u.id for u in reaped] == [ids[0]] and reaped[0].uncertain == 1
        assert [u.id for u in await store.at_marketo()] == [ids[1]]
        assert (await store.claim_next()).id == ids[0]  # type: ignore[union-attr]


async def test_ready_for_report_and_counts(store_target: Path | str) -> None:
    async with Store.open(store_target) as store:
        [uid] = await add_queued_file(store, "a.csv", 1, "a")
        assert await store.files_ready_for_report() == []
        await store.claim_next()
        await store.transition_upload(uid, UploadStatus.SUBMITTING, UploadStatus.REJECTED,
                                      error_code="1006", error="Field 'x' not found")
        ready = await store.files_ready_for_report()
        assert [f.name for f in ready] == ["a.csv"]
        counts = await store.counts_by_status()
        assert counts["uploads"]["rejected"] == 1 and counts["files"]["queued"] == 1


async def test_call_accounting_per_day(store_target: Path | str) -> None:
    async with Store.open(store_target) as store:
        await store.count_calls("2026-11-30", "import_status", 3)
        await store.count_calls("2026-11-30", "import_create", 1, errors=1)
        await store.count_calls("2026-12-01", "import_status", 5)
        assert await store.calls_on("2026-11-30") == 4
        assert (await store.usage_on("2026-11-30"))["import_create"] == {"calls": 1, "errors": 1}


async def test_calls_of_the_rate_window_outlive_the_process(store_target: Path | str) -> None:
    """Issue 12.1: what one process records, the next reads back (a real file, two opens)."""
    async with Store.open(store_target) as store:
        done = await store.begin_call("2026-11-30", "import_status", 100.0)
        await store.end_call(done, 100.5)
        await store.begin_call("2026-11-30", "import_create", 101.0)  # dies in flight
        refused = await store.begin_call("2026-11-30", "import_status", 101.5)
        await store.end_call(refused, 101.6, refund=("2026-11-30", "import_status"))
        old = await store.begin_call("2026-11-30", "describe", 50.0)
        await store.end_call(old, 50.2)
        # Counted when sent; the call that got no answer was taken back off the day.
        assert await store.usage_on("2026-11-30") == {
            "describe": {"calls": 1, "errors": 0},
            "import_create": {"calls": 1, "errors": 0},
            "import_status": {"calls": 1, "errors": 0},
        }
    async with Store.open(store_target) as store:  # the next process, at 110 s
        # The orphan is stamped 110, the one over before 90 is forgotten, the rest come back.
        assert await store.restore_window(110.0, 20.0) == [100.5, 101.6, 110.0]
        assert await store.restore_window(200.0, 20.0) == []


async def test_status_and_migrate_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    store_target: Path | str,
) -> None:
    monkeypatch.chdir(tmp_path)
    if isinstance(store_target, str):
        monkeypatch.setenv("LEADFLOW_STORE__URL", store_target)
    else:
        store_target = tmp_path / "var" / "leadflow.db"
    assert await cli(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    async with Store.open(store_target) as store:
        await add_queued_file(store, "a.csv", 2, "a")
    assert await cli(["status", "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["uploads"]["queued"] == 2
    assert data["slots"] == {"in_use": 0, "budget": 10}
    assert await cli(["status"]) == 0
    assert "uploads:  queued 2" in capsys.readouterr().out
    assert await cli(["status", "--prometheus"]) == 0
    metrics = capsys.readouterr().out
    assert 'leadflow_uploads{status="queued"} 2.0' in metrics
    assert "leadflow_import_slots_budget 10.0" in metrics
    assert "leadflow_oldest_batch_age_seconds 0.0" in metrics


# --- parts: what packing stands on ------------------------------------------------------------


def _part(path: str, rows: int = 2, key: str | None = "k") -> NewPart:
    return NewPart(path, 20 + 10 * rows, list(range(2, rows + 2)), "leads", {"format": "csv"},
                   20, key)


async def test_a_batch_of_files_is_recorded_and_enqueued_in_order(store_target: Path | str) -> None:
    clock = FakeClock()
    async with Store.open(store_target, clock=clock) as store:
        await add_queued_file(store, "first.csv", 1, "first")  # ids continue after it
        records = await store.add_files(
            [NewFile(f"b{i}.csv", f"/in/b{i}.csv", "/w/{id}/source/b.csv", None, 5)
             for i in range(3)])
        assert [r.id for r in records] == [2, 3, 4]
        assert [r.work_path for r in records] == [f"/w/{i}/source/b.csv" for i in (2, 3, 4)]
        ids = await store.enqueue_files([
            EnqueuedFile(r.id, [_part(f"/w/{r.id}/u1"), _part(f"/w/{r.id}/u2")] if i == 0
                         else [_part(f"/w/{r.id}/u1")], FileStatus.QUEUED, f"sha{i}", "utf-8",
                         "csv", 2, 0, 0, {"header": ["email"]}, wait_s=30)
            for i, r in enumerate(records)])
        assert ids == [[2, 3], [4], [5]]  # part 1 belongs to first.csv's upload
        part = (await store.parts_of_file(2))[1]
        assert (part.seq, part.pack_key, part.send_by, part.upload_id) == (2, "k", 1030.0, None)
        got = await store.get_file(3)
        assert got is not None and got.status is FileStatus.QUEUED and got.sha256 == "sha1"
        # A batch with one file no longer received changes nothing at all.
        more = await store.add_files([NewFile("c.csv", "/in/c.csv", "/w/{id}/c", None, 1)])
        with pytest.raises(InvalidTransition):
            await store.enqueue_files([
                EnqueuedFile(more[0].id, [_part("/w/c1")], FileStatus.QUEUED, "shc", "utf-8",
                             "csv", 2, 0, 0, {}),
                EnqueuedFile(2, [_part("/w/again")], FileStatus.QUEUED, "shx", "utf-8", "csv",
                             2, 0, 0, {}),
            ])
        assert await store.parts_of_file(more[0].id) == []
        assert (await store.waiting_summary())["parts"] == 4


async def test_a_pack_takes_waiting_parts_once_and_all_or_nothing(store_target: Path | str) -> None:
    async with Store.open(store_target, clock=FakeClock()) as store:
        for name in ("a.csv", "b.csv"):
            f = await store.add_file(name=name, inbox_path=f"/in/{name}", work_path="/w",
                                     route=None, size_bytes=1)
            await store.enqueue_parts(f.id, [_part(f"/w/{name}", rows=3)], sha256=name)
        head = await store.waiting_head()
        assert head is not None and head.id == 1
        # The group window: parts whose rows start within the budget, plus the first beyond.
        assert [r[0] for r in await store.waiting_group("k", budget=10)] == [1]
        assert [r[0] for r in await store.waiting_group("k", budget=40)] == [1, 2]
        assert await store.waiting_group_totals("k") == (2, 6, 1000.0)
        upload = await store.form_upload([(1, 0), (2, 3)], path="/w/pack", size_bytes=80,
                                         rows=6, kind="leads", options={"format": "csv"})
        assert upload.status is UploadStatus.SUBMITTING and upload.claimed_at == 1000.0
        assert [(p.id, p.first_row) for p in await store.parts_of_upload(upload.id)] == [
            (1, 0), (2, 3)]
        assert await store.files_of_upload(upload.id) == [(1, "a.csv", 1, 3), (2, "b.csv", 1, 3)]
        assert await store.count_files_in_upload(upload.id) == 2
        with pytest.raises(StoreError, match="no longer waiting"):
            await store.form_upload([(2, 0)], path="/w/b.csv", size_bytes=50, rows=3,
                                    kind="leads", options={})
        assert len(await store.uploads_in(UploadStatus.SUBMITTING)) == 1  # nothing recorded
        assert await store.waiting_head() is None


async def test_a_split_is_recorded_once_and_detached_parts_wait_again(store_target: Path | str) -> None:
    clock = FakeClock()
    async with Store.open(store_target, clock=clock) as store:
        f = await store.add_file(name="a.csv", inbox_path="/in/a", work_path="/w", route=None,
                                 size_bytes=1)
        (part_id,) = await store.enqueue_parts(f.id, [_part("/w/a", rows=4)], sha256="a")
        upload = await store.form_upload([(part_id, 0)], path="/w/a", size_bytes=60, rows=4,
                                         kind="leads", options={})
        await store.transition_upload(upload.id, UploadStatus.SUBMITTING, UploadStatus.COMPLETE,
                                      num_leads_processed=3, num_rows_failed=1)
        assert [u.id for u in await store.uploads_to_split()] == [upload.id]
        assert await store.files_ready_for_report() == []  # not split yet
        assert await store.record_split(upload.id, [(part_id, 3, 1, 0)])
        assert not await store.record_split(upload.id, [(part_id, 9, 9, 9)])  # once only
        (part,) = await store.parts_of_file(f.id)
        assert (part.num_leads_processed, part.num_rows_failed) == (3, 1)
        assert [x.id for x in await store.files_ready_for_report()] == [f.id]
        (started,) = await store.start_reporting([f.id, 999])
        assert started.status is FileStatus.REPORTING
        assert await store.unreported_in_upload(upload.id) == 1
        (done,) = await store.finish_files(
            [(f.id, FileStatus.REPORTING, FileStatus.PARTIAL, {"reported_at": 5.0})])
        assert done.reported_at == 5.0 and await store.unreported_in_upload(upload.id) == 0
        # Retry: the part leaves its upload and waits again, due at once, with new options.
        clock.now = 2000.0
        await store.detach_parts([(part_id, upload.id, "k2")], {"format": "csv", "listId": 7})
        (again,) = await store.parts_of_file(f.id)
        assert (again.upload_id, again.first_row, again.num_rows_failed) == (None, None, None)
        assert (again.pack_key, again.options, again.send_by) == (
            "k2", {"format": "csv", "listId": 7}, 2000.0)
        with pytest.raises(StoreError, match="no longer in upload"):
            await store.detach_parts([(part_id, upload.id, None)], {})
        assert await store.parts_of_upload(upload.id) == []
        assert upload.path in await store.upload_paths()


async def test_finishing_files_is_all_or_nothing(store_target: Path | str) -> None:
    async with Store.open(store_target, clock=FakeClock()) as store:
        a = await store.add_file(name="a", inbox_path="/a", work_path="/w", route=None,
                                 size_bytes=1)
        b = await store.add_file(name="b", inbox_path="/b", work_path="/w", route=None,
                                 size_bytes=1)
        for f in (a, b):
            await store.transition_file(f.id, FileStatus.RECEIVED, FileStatus.REPORTING)
        with pytest.raises(InvalidTransition):
            await store.finish_files([
                (a.id, FileStatus.REPORTING, FileStatus.COMPLETE, {"reported_at": 1.0}),
                (b.id, FileStatus.QUEUED, FileStatus.COMPLETE, {"reported_at": 1.0}),
            ])
        still = await store.get_file(a.id)
        assert still is not None and still.status is FileStatus.REPORTING
