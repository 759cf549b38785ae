"""Contract tests of the store on a real database file."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import cli
from orchestrator.errors import DatabaseLocked, InvalidTransition
from orchestrator.models import FileStatus, NewUpload, UploadStatus
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
    uploads = [NewUpload(f"/work/{name}.{i}", 10, [i + 2]) for i in range(n_uploads)]
    return await store.enqueue_uploads(f.id, uploads, sha256=sha, rows_total=n_uploads)


async def test_fifo_claim_order_and_not_before(tmp_path: Path) -> None:
    clock = FakeClock()
    async with Store.open(tmp_path / "q.db", clock=clock) as store:
        a = await add_queued_file(store, "a.csv", 2, "a")
        b = await add_queued_file(store, "b.csv", 1, "b")
        await store.transition_upload(a[0], UploadStatus.QUEUED, UploadStatus.QUEUED,
                                      not_before=clock.now + 10)
        claimed = [await store.claim_next() for _ in range(3)]
        assert [u.id if u else None for u in claimed] == [a[1], b[0], None]
        clock.now += 10
        late = await store.claim_next()
        assert late is not None and late.id == a[0] and late.status is UploadStatus.SUBMITTING


async def test_two_claimers_never_get_the_same_upload(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "q.db") as s1, Store.open(tmp_path / "q.db") as s2:
        ids = await add_queued_file(s1, "a.csv", 40, "a")
        results = await asyncio.gather(*[(s1 if i % 2 else s2).claim_next() for i in range(41)])
        got = [u.id for u in results if u is not None]
        assert sorted(got) == ids and len(set(got)) == 40
        assert results.count(None) == 1
        assert await s1.claim_next() is None


def test_two_processes_never_claim_the_same_upload(tmp_path: Path) -> None:
    db = tmp_path / "q.db"

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
        "    async with Store.open(Path(sys.argv[1])) as s:\n"
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


async def test_transition_is_compare_and_set(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "q.db") as store:
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


async def test_database_refuses_a_transition_not_in_the_table(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "q.db") as store:
        [uid] = await add_queued_file(store, "a.csv", 1, "a")
        with pytest.raises(InvalidTransition):
            await store.transition_upload(uid, UploadStatus.QUEUED, UploadStatus.COMPLETE)
    conn = sqlite3.connect(tmp_path / "q.db")
    with pytest.raises(sqlite3.IntegrityError, match="transition not allowed"):
        conn.execute("UPDATE uploads SET status = 'complete' WHERE id = ?", (uid,))
    assert conn.execute("SELECT status FROM uploads").fetchone()[0] == "queued"


async def test_history_is_written_by_trigger(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "q.db") as store:
        [uid] = await add_queued_file(store, "a.csv", 1, "a")
        await store.claim_next()
        await store.transition_upload(uid, UploadStatus.SUBMITTING, UploadStatus.QUEUED)
        await store.transition_upload(uid, UploadStatus.QUEUED, UploadStatus.QUEUED, polls=1)
        steps = [(a, b) for a, b, _ in await store.history("upload", uid)]
        assert steps == [(None, "queued"), ("queued", "submitting"), ("submitting", "queued")]
        assert [b for _, b, _ in await store.history("file", 1)] == ["received", "queued"]


async def test_enqueue_is_atomic_and_duplicate_sha_is_refused(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "q.db") as store:
        await add_queued_file(store, "a.csv", 2, "same")
        g = await store.add_file(name="b.csv", inbox_path="/in/b", work_path="/w/b", route=None,
                                 size_bytes=1)
        assert (await store.imported_file_with_sha("same")) is not None
        with pytest.raises(sqlite3.IntegrityError):
            await store.enqueue_uploads(g.id, [NewUpload("/w/b.1", 1, [2])], sha256="same")
        assert (await store.get_file(g.id)).status is FileStatus.RECEIVED  # type: ignore[union-attr]
        assert len(await store.uploads_of_file(g.id)) == 0


async def test_reap_requeues_uploads_caught_mid_submit(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "q.db") as store:
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


async def test_ready_for_report_and_counts(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "q.db") as store:
        [uid] = await add_queued_file(store, "a.csv", 1, "a")
        assert await store.files_ready_for_report() == []
        await store.claim_next()
        await store.transition_upload(uid, UploadStatus.SUBMITTING, UploadStatus.REJECTED,
                                      error_code="1006", error="Field 'x' not found")
        ready = await store.files_ready_for_report()
        assert [f.name for f in ready] == ["a.csv"]
        counts = await store.counts_by_status()
        assert counts["uploads"]["rejected"] == 1 and counts["files"]["queued"] == 1


async def test_call_accounting_per_day(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "q.db") as store:
        await store.count_calls("2026-11-30", "import_status", 3)
        await store.count_calls("2026-11-30", "import_create", 1, errors=1)
        await store.count_calls("2026-12-01", "import_status", 5)
        assert await store.calls_on("2026-11-30") == 4
        assert (await store.usage_on("2026-11-30"))["import_create"] == {"calls": 1, "errors": 1}


async def test_only_one_daemon_per_database(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "q.db", exclusive=True):
        with pytest.raises(DatabaseLocked, match="another leadflow daemon"):
            async with Store.open(tmp_path / "q.db", exclusive=True):
                pass
        async with Store.open(tmp_path / "q.db") as reader:  # status still works
            assert (await reader.counts_by_status())["files"]["queued"] == 0
    async with Store.open(tmp_path / "q.db", exclusive=True):
        pass  # released on exit


HOLDER = """
import asyncio, sys
from pathlib import Path
from orchestrator.store import Store
async def m():
    async with Store.open(Path(sys.argv[1]), exclusive=True):
        print('held', flush=True)
        sys.stdin.readline()
asyncio.run(m())
"""


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    db = tmp_path / "q.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

        async def attempt() -> None:
            async with Store.open(db, exclusive=True):
                pass

        with pytest.raises(DatabaseLocked, match=f"pid {holder.pid}"):
            asyncio.run(attempt())
    finally:
        holder.communicate("\n", timeout=30)


async def test_status_and_migrate_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert await cli(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out
    async with Store.open(tmp_path / "var" / "leadflow.db") as store:
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
