"""``leadflow status``: file ids and results folders, whether a daemon runs (and is paused),
and no empty database created from the wrong folder (``status`` and ``retry``)."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from store_helpers import enqueue_uploads

from orchestrator.cli import cli
from orchestrator.commands.status import collect_status, render_status
from orchestrator.models import FileStatus, NewPart, UploadStatus
from orchestrator.places import pause_file
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.store.lock import SingleDaemonLock
from orchestrator.window.prometheus import render_prometheus

OPTIONS = {"format": "csv", "lookupField": "email"}


async def _file(store: Store, name: str, uploads: int = 1, rows: int = 5) -> list[int]:
    record = await store.add_file(name=name, inbox_path=f"/in/{name}", work_path=f"/w/{name}",
                                  route=None, size_bytes=10)
    new = [NewPart(f"/w/{name}.{i}", 10, list(range(2, rows + 2)), "leads", OPTIONS)
           for i in range(uploads)]
    return await enqueue_uploads(store, record.id, new, sha256=name, rows_total=rows * uploads)


async def _finish(store: Store, upload_id: int, status: UploadStatus, failed: int = 0) -> None:
    claimed = await store.claim_next()
    assert claimed is not None and claimed.id == upload_id
    changes = {"marketo_status": "Complete", "num_leads_processed": 5 - failed,
               "num_rows_failed": failed} if status is UploadStatus.COMPLETE else {}
    await store.transition_upload(upload_id, UploadStatus.SUBMITTING, status, **changes)
    if status is UploadStatus.COMPLETE:  # as the reporter does: the file's own counts
        [part] = await store.parts_of_upload(upload_id)
        assert await store.record_split(upload_id, [(part.id, 5 - failed, failed, 0)])


async def _report(store: Store, file_id: int, status: FileStatus) -> None:
    await store.transition_file(file_id, FileStatus.QUEUED, FileStatus.REPORTING)
    await store.transition_file(file_id, FileStatus.REPORTING, status, reported_at=1.0)


async def test_status_lists_open_files_and_the_ten_newest_finished_with_ids(
    make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    async with Store.open(settings.paths.database) as store:
        for n in range(12):
            [upload] = await _file(store, f"done-{n}.csv")
            await _finish(store, upload, UploadStatus.COMPLETE, failed=n % 2)
            [(file_id, *_)] = await store.files_of_upload(upload)
            await _report(store, file_id, FileStatus.COMPLETE if n % 2 == 0 else
                          FileStatus.PARTIAL)
        first, _second = await _file(store, "open.csv", uploads=2)
        await _finish(store, first, UploadStatus.REJECTED)
        data = await collect_status(store, settings, time.time())
    files = data["files"]
    assert [f["name"] for f in files] == [f"done-{n}.csv" for n in range(2, 12)] + ["open.csv"]
    last = files[-1]
    assert last["id"] == 13 and last["status"] == "queued"
    assert (last["rows_imported"], last["rows_failed"], last["rows_total"]) == (0, 5, 10)
    assert last["results"] == str(settings.paths.results / "open.csv.13")
    assert (files[0]["rows_imported"], files[1]["rows_failed"]) == (5, 1)
    text = render_status(data)
    assert "     13  open.csv  queued  rows 0/5/0 of 10  " in text
    assert "done-0.csv" not in text
    assert json.loads(json.dumps(data))["files"][0]["id"] == 3


async def test_status_says_whether_a_daemon_runs_and_whether_work_is_paused(
    make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    database = settings.paths.database
    async with Store.open(database) as store:
        data = await collect_status(store, settings, time.time())
        assert data["daemon"] == {"running": False, "pid": None, "paused": None}
        assert "daemon:   not running" in render_status(data)
        assert not Path(str(database) + ".lock").exists()  # never created by status
        lock = SingleDaemonLock(database)
        lock.acquire()
        try:
            pause_file(database).write_text(json.dumps({"reason": "auth", "message": "refused"}))
            data = await collect_status(store, settings, time.time())
            assert data["daemon"] == {"running": True, "pid": os.getpid(),
                                      "paused": {"reason": "auth", "message": "refused"}}
            text = render_status(data)
            assert f"daemon:   running (pid {os.getpid()})" in text
            assert "work paused: refused" in text
        finally:
            lock.release()
        data = await collect_status(store, settings, time.time())
        assert data["daemon"]["running"] is False
        assert data["daemon"]["paused"] is None  # a stale pause file of a dead daemon


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["retry", "1"]])
async def test_status_and_retry_refuse_a_missing_database_instead_of_creating_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LEADFLOW_CONFIG", raising=False)
    code = await cli([*command, "--set", "paths.database=var/leadflow.db"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1
    assert f"no database at {tmp_path / 'var' / 'leadflow.db'}" in err[0]
    assert "relative paths.database resolves against the working directory" in err[0]
    assert not (tmp_path / "var" / "leadflow.db").exists()
    assert await cli(["migrate", "--set", "paths.database=var/leadflow.db"]) == 0
    assert (tmp_path / "var" / "leadflow.db").exists()
    assert await cli(["status", "--set", "paths.database=var/leadflow.db"]) == 0
    # For scripts: a database but no daemon is exit 3 (everything is shown anyway).
    assert await cli(["status", "--exit-code", "--set", "paths.database=var/leadflow.db"]) == 3


async def test_collect_status_stays_fast_with_a_long_history(
    make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    async with Store.open(settings.paths.database):
        pass
    conn = sqlite3.connect(settings.paths.database)
    files = [(f"f{i}.csv", "i", "w", "complete", f"{i:064x}", 1.0, 1.0, 1.0)
             for i in range(2000)]
    conn.executemany("INSERT INTO files (name, inbox_path, work_path, status, sha256,"
                     " received_at, updated_at, reported_at) VALUES (?,?,?,?,?,?,?,?)", files)
    conn.commit()
    conn.close()
    async with Store.open(settings.paths.database) as store:
        started = time.perf_counter()
        data = await collect_status(store, settings, time.time())
        elapsed = time.perf_counter() - started
    assert [f["id"] for f in data["files"]] == list(range(1991, 2001))
    assert elapsed < 1.0


async def test_status_gives_the_reason_of_a_rejected_file_and_cuts_long_lists(
    make_settings: Callable[..., Settings]
) -> None:
    """Issue 13: the reason next to a rejected file; "and 290 more" instead of 300 lines."""
    settings = make_settings()
    async with Store.open(settings.paths.database) as store:
        bad = await store.add_file(name="bad.csv", inbox_path="/in/bad.csv",
                                   work_path="/w/bad.csv", route=None, size_bytes=1)
        reason = "The lookup column 'email' is missing from the header."
        await store.transition_file(bad.id, FileStatus.RECEIVED, FileStatus.REJECTED,
                                    error=reason, reported_at=1.0)
        for n in range(310):
            await _file(store, f"open-{n:03d}.csv")
        data = await collect_status(store, settings, time.time())
    text = render_status(data)
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if "  bad.csv  rejected" in line)
    assert reason in lines[at + 1]
    listed = [line for line in lines if ".csv  queued" in line]
    assert len(listed) == 20
    assert "open-000.csv" in listed[0]  # the oldest waiting file first
    assert "... and 290 more files waiting (received, queued or reporting" in text
    assert data["files_not_listed"] == 0  # --json lists every open file (up to 500)


async def test_status_shows_files_waiting_for_a_pack_and_who_rides_in_each_batch(
    make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    clock = {"now": 1_000.0}
    async with Store.open(settings.paths.database, clock=lambda: clock["now"]) as store:
        for name in ("w1.csv", "w2.csv"):
            record = await store.add_file(name=name, inbox_path=f"/in/{name}",
                                          work_path=f"/w/{name}", route=None, size_bytes=10)
            parts = [NewPart(f"/w/{name}.{i}", 40, [2, 3], "leads", OPTIONS, 20, "key")
                     for i in range(2 if name == "w1.csv" else 1)]
            await store.enqueue_parts(record.id, parts, sha256=name, rows_total=4, wait_s=60)
        empty = await collect_status(store, settings, clock["now"])
        # Two of the three waiting parts leave together: one batch, two files.
        head = await store.waiting_head()
        assert head is not None
        upload = await store.form_upload([(head.id, 0), (head.id + 2, 2)], path="/w/pack",
                                         size_bytes=60, rows=4, kind="leads", options=OPTIONS)
        await store.transition_upload(upload.id, UploadStatus.SUBMITTING,
                                      UploadStatus.SUBMITTED, batch_id=7001,
                                      marketo_status="Queued", submitted_at=clock["now"])
        clock["now"] += 30
        data = await collect_status(store, settings, clock["now"])
    assert empty["packing"] == {"waiting_files": 2, "waiting_parts": 3, "waiting_rows": 6,
                                "oldest_wait_s": 0.0}
    assert data["packing"] == {"waiting_files": 1, "waiting_parts": 1, "waiting_rows": 2,
                               "oldest_wait_s": 30.0}
    (batch,) = data["batches"]
    assert (batch["batchId"], batch["files"], batch["file_ids"], batch["rows"]) == (
        7001, 2, [1, 2], 4)
    assert [f["parts_waiting"] for f in data["files"]] == [1, 0]
    text = render_status(data)
    assert "waiting:  1 files (1 parts, 2 rows) wait for a pack, oldest 30s" in text
    assert "batchId 7001  Queued     2 files  4 rows" in text
    assert "waiting:  no file waits for a pack" in render_status(
        {**data, "packing": {"waiting_files": 0}})
    metrics = render_prometheus(data)
    assert "leadflow_files_waiting_for_pack 1.0" in metrics
    assert "leadflow_oldest_pack_wait_seconds 30.0" in metrics
    assert 'leadflow_instance_slots_in_use{instance="default"} 1.0' in metrics
    assert 'leadflow_instance_calls_today{instance="default"} 0.0' in metrics
