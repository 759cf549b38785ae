"""``leadflow migrate --copy-from``: a real SQLite deployment's database copied into PostgreSQL.

The SQLite database is built through the store API (files in every status, uploads in every
status, waiting parts, calls, errors, routes, retention records), copied with the command, then
read back through ``Store.open(pg_url)`` and row by row from both engines. Each refusal is
tried through the command line too (one line, its exit code, nothing written).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest
from store_helpers import enqueue_uploads

from orchestrator.cli import cli
from orchestrator.errors import CopyRefused, DuplicateContent, InvalidTransition, StoreError
from orchestrator.models import FileStatus, NewPart, UploadStatus
from orchestrator.store import Store
from orchestrator.store.copy import COPIED_TABLES, LEFT_BEHIND, SCHEMA_TABLES, copy_into_postgresql
from orchestrator.store.lock import SingleDaemonLock

DAY = "2026-03-02"
#: The import options of the complete file (duplicate detection matches bytes and options).
KEY = '["leads","email",null]'


class FakeClock:
    def __init__(self, now: float = 1_772_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 0.5
        return self.now


async def _file(store: Store, name: str, **kw: Any) -> int:
    f = await store.add_file(name=name, inbox_path=f"/srv/in/{name}",
                             work_path=f"/srv/work/{{id}}/source/{name}", route=None,
                             size_bytes=100, **kw)
    return f.id


async def _with_uploads(store: Store, name: str, sha: str, n: int, **kw: Any) -> list[int]:
    fid = await _file(store, name)
    parts = [NewPart(f"/srv/work/{fid}/part-{i}.csv", 40 + i, [2 + 3 * i, 3 + 3 * i, 4 + 3 * i],
                     options={"format": "csv", "lookupField": "email"}, header_bytes=12)
             for i in range(n)]
    return await enqueue_uploads(store, fid, parts, sha256=sha, rows_total=3 * n, **kw)


async def _submit(store: Store, uid: int, batch_id: int) -> None:
    await store.transition_upload(uid, UploadStatus.QUEUED, UploadStatus.SUBMITTING)
    await store.transition_upload(uid, UploadStatus.SUBMITTING, UploadStatus.SUBMITTED,
                                  batch_id=batch_id, marketo_status="Queued", attempts=1,
                                  submitted_at=store.clock())


async def _finish(store: Store, fid: int, status: FileStatus, **kw: Any) -> None:
    await store.start_reporting([fid])
    await store.transition_file(fid, FileStatus.REPORTING, status, finished_at=store.clock(),
                                reported_at=store.clock(), **kw)


async def build_deployment(path: Path) -> dict[str, int]:
    """A SQLite database holding every file status and every upload status; returns ids."""
    ids: dict[str, int] = {}
    async with Store.open(path, clock=FakeClock()) as s:
        ids["received"] = await _file(s, "received.csv")
        for status in (FileStatus.REJECTED, FileStatus.EMPTY, FileStatus.DUPLICATE):
            fid = await _file(s, f"{status.value}.csv")
            await s.transition_file(fid, FileStatus.RECEIVED, status, error=f"it is {status}",
                                    finished_at=s.clock(), reported_at=s.clock())
            ids[status.value] = fid
        # Queued, with parts waiting for a pack (no upload yet).
        fid = await _file(s, "waiting.csv")
        await s.enqueue_parts(fid, [NewPart(f"/srv/work/{fid}/p1.csv", 50, [2, 3, 9],
                                            pack_key="k", header_bytes=10)],
                              sha256="w" * 64, rows_total=3, wait_s=30.0)
        ids["queued_waiting"] = fid
        # Queued, its uploads queued (one sent once already: uncertain), submitting,
        # submitted and importing.
        queued, submitting, submitted, importing = await _with_uploads(s, "busy.csv", "b" * 64, 4)
        await s.transition_upload(queued, UploadStatus.QUEUED, UploadStatus.SUBMITTING)
        await s.transition_upload(queued, UploadStatus.SUBMITTING, UploadStatus.QUEUED,
                                  uncertain=1, not_before=s.clock() + 60)
        await s.transition_upload(submitting, UploadStatus.QUEUED, UploadStatus.SUBMITTING)
        await _submit(s, submitted, 1001)
        await _submit(s, importing, 1002)
        await s.transition_upload(importing, UploadStatus.SUBMITTED, UploadStatus.IMPORTING,
                                  marketo_status="Importing", polls=2,
                                  next_poll_at=s.clock() + 5)
        ids["busy_upload_queued"] = queued
        # Reporting: its one upload complete.
        [up] = await _with_uploads(s, "reporting.csv", "r" * 64, 1)
        await _submit(s, up, 1003)
        await s.transition_upload(up, UploadStatus.SUBMITTED, UploadStatus.COMPLETE,
                                  marketo_status="Complete", num_leads_processed=3,
                                  num_rows_failed=0, num_rows_with_warning=0,
                                  finished_at=s.clock())
        [part] = await s.parts_of_upload(up)
        assert await s.record_split(up, [(part.id, 3, 0, 0)])
        [ids["reporting"]] = [f.id for f in await s.files_ready_for_report()]
        await s.start_reporting([ids["reporting"]])
        # Complete (reported, results split into its parts, archived then expired).
        ups = await _with_uploads(s, "complete.csv", "c" * 64, 2, import_key=KEY)
        for n, up in enumerate(ups):
            await _submit(s, up, 1010 + n)
            await s.transition_upload(up, UploadStatus.SUBMITTED, UploadStatus.COMPLETE,
                                      marketo_status="Complete", num_leads_processed=3,
                                      num_rows_failed=1, num_rows_with_warning=1,
                                      finished_at=s.clock())
            [part] = await s.parts_of_upload(up)
            assert await s.record_split(up, [(part.id, 2, 1, 1)])
        ids["complete"] = (await s.parts_of_upload(ups[0]))[0].file_id
        await _finish(s, ids["complete"], FileStatus.COMPLETE)
        await s.record_expiry(ids["complete"], "archive", "/srv/archive/complete.csv",
                              deleted=True, at=s.clock())
        # Partial: one upload Failed (dead letter), one refused at upload.
        failed, refused = await _with_uploads(s, "partial.csv", "p" * 64, 2)
        await _submit(s, failed, 1020)
        await s.transition_upload(failed, UploadStatus.SUBMITTED, UploadStatus.FAILED,
                                  marketo_status="Failed", batch_failures=3,
                                  message="Failed", finished_at=s.clock())
        await s.transition_upload(refused, UploadStatus.QUEUED, UploadStatus.SUBMITTING)
        await s.transition_upload(refused, UploadStatus.SUBMITTING, UploadStatus.REJECTED,
                                  error_code="1006", error="Field 'x' not found",
                                  finished_at=s.clock())
        ids["partial"] = (await s.parts_of_upload(failed))[0].file_id
        await _finish(s, ids["partial"], FileStatus.PARTIAL, error="2 uploads failed")
        await s.record_error("Marketo said 1006", code="1006", file_id=ids["partial"],
                             upload_id=refused)
        # A finished file of another instance.
        other = await _file(s, "sandbox.csv", instance="sandbox")
        await s.transition_file(other, FileStatus.RECEIVED, FileStatus.EMPTY,
                                finished_at=s.clock(), reported_at=s.clock())
        ids["sandbox"] = other
        # Calls: counted per day, one still in the rate window, older ones forgotten (so
        # SQLite's sequence of api_calls is past its highest remaining id).
        for n in range(3):
            call = await s.begin_call(DAY, "import_status", 100.0 + n)
            await s.end_call(call, 100.5 + n, forget_before=100.0 + n)
        kept = await s.begin_call(DAY, "import_create", 103.0)
        newest = await s.begin_call(DAY, "import_status", 103.1)
        await s.end_call(newest, 50.0)
        await s.end_call(kept, 103.5, forget_before=60.0)  # forgets the newest id
        await s.for_instance("sandbox").count_calls(DAY, "describe", 2, errors=1)
        await s.record_daemon_routes([{"name": "crm", "subfolder": "crm"}], pid=4242)
    return ids


def rows_sqlite(path: Path, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        cursor = conn.execute(f'SELECT * FROM "{table}"')
        names = [d[0] for d in cursor.description]
        return names, sorted(cursor.fetchall(), key=repr)
    finally:
        conn.close()


def rows_pg(url: str, table: str, names: list[str]) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        listed = ", ".join(f'"{n}"' for n in names)
        got = conn.execute(f'SELECT {listed} FROM "{table}"').fetchall()
    return sorted(got, key=repr)


def count_pg(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()
    return int(row[0]) if row else 0


async def copy(path: Path, url: str, instances: tuple[str, ...] = ("default", "sandbox")) -> Any:
    return await copy_into_postgresql(path, url, instances=instances, node_alive_s=30.0)


# --- the copy ------------------------------------------------------------------------------


async def test_every_table_is_copied_as_it_was(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "leadflow.db"
    await build_deployment(path)
    result = await copy(path, pg_url)
    assert list(result.rows) == list(COPIED_TABLES)
    for table in COPIED_TABLES:
        names, mine = rows_sqlite(path, table)
        theirs = rows_pg(pg_url, table, names)
        # bytea comes back as bytes, SQLite's BLOB too; every other value as it was.
        assert theirs == mine, table
        assert result.rows[table] == len(mine), table
    for table in ("files", "uploads", "parts", "status_history", "api_usage", "api_calls",
                  "errors", "daemon_routes", "upload_submissions", "retention_deletions"):
        assert result.rows[table] > 0, f"the deployment built no {table} row: the test is void"
    # History copied, not rewritten: the same rows with the same ids, and no more.
    assert result.rows["status_history"] == len(rows_sqlite(path, "status_history")[1])


async def test_the_copy_reads_back_through_the_store(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "leadflow.db"
    ids = await build_deployment(path)
    await copy(path, pg_url)
    async with Store.open(path) as lite, Store.open(pg_url) as pg:
        assert await pg.counts_by_status() == await lite.counts_by_status()
        for status in FileStatus:
            assert await pg.files_in(status) == await lite.files_in(status)
        # Every status is there (else this test would prove less than it says).
        assert {s for s, n in (await pg.counts_by_status())["files"].items() if n} == {
            s.value for s in FileStatus
        }
        assert {s for s, n in (await pg.counts_by_status())["uploads"].items() if n} == {
            s.value for s in UploadStatus
        }
        for fid in range(1, max(ids.values()) + 1):
            assert await pg.get_file(fid) == await lite.get_file(fid)
            assert await pg.parts_of_file(fid) == await lite.parts_of_file(fid)
            assert await pg.uploads_of_file(fid) == await lite.uploads_of_file(fid)
            assert await pg.history("file", fid) == await lite.history("file", fid)
            assert await pg.submissions_of_file(fid) == await lite.submissions_of_file(fid)
            for part in await lite.parts_of_file(fid):
                assert await pg.part_source_rows(part.id) == await lite.part_source_rows(part.id)
        for uid in range(1, 12):
            assert await pg.history("upload", uid) == await lite.history("upload", uid)
        assert await pg.usage_on(DAY) == await lite.usage_on(DAY)
        sandbox_pg, sandbox_lite = pg.for_instance("sandbox"), lite.for_instance("sandbox")
        assert await sandbox_pg.usage_on(DAY) == await sandbox_lite.usage_on(DAY) == {
            "describe": {"calls": 2, "errors": 1}}
        assert await pg.restore_window(105.0, 20.0) == await lite.restore_window(105.0, 20.0)
        assert await pg.daemon_routes() == (4242, [{"name": "crm", "subfolder": "crm"}])
        assert await pg.recent_errors() == await lite.recent_errors()
        assert await pg.waiting_summary() == await lite.waiting_summary()
        assert await pg.at_marketo() == await lite.at_marketo()
        assert await pg.files_to_report() == await lite.files_to_report()


async def test_duplicates_are_still_found_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "leadflow.db"
    ids = await build_deployment(path)
    await copy(path, pg_url)
    async with Store.open(pg_url) as pg:
        twin = await pg.imported_twin("c" * 64, KEY)
        assert twin is not None and twin.id == ids["complete"]
        assert await pg.imported_twin("c" * 64, None) is None  # other options: another import
        again = await pg.add_file(name="complete-again.csv", inbox_path="/srv/in/x",
                                  work_path="/srv/work/x", route=None, size_bytes=100)
        with pytest.raises(DuplicateContent):  # the unique index holds the copied rows too
            await pg.enqueue_parts(again.id, [NewPart("/srv/work/x.1", 10, [2])],
                                   sha256="c" * 64, import_key=KEY)


async def test_new_rows_get_new_ids_and_triggers_work_again(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "leadflow.db"
    ids = await build_deployment(path)
    with sqlite3.connect(path) as conn:
        seq = dict(conn.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
        remaining_calls = conn.execute("SELECT MAX(id) FROM api_calls").fetchone()[0]
    assert seq["api_calls"] > remaining_calls  # forgotten calls: ids SQLite will not reuse
    result = await copy(path, pg_url)
    assert result.next_ids["api_calls"] == seq["api_calls"] + 1
    assert result.next_ids["files"] == seq["files"] + 1
    async with Store.open(pg_url) as pg:
        new = await pg.add_file(name="new.csv", inbox_path="/srv/in/new.csv",
                                work_path="/srv/work/new", route=None, size_bytes=1)
        assert new.id == seq["files"] + 1
        assert await pg.history("file", new.id) == [(None, "received", new.received_at)]
        assert await pg.begin_call(DAY, "import_status", 200.0) == seq["api_calls"] + 1
        # The guard is back on: a transition not in the table is refused by the database.
        with pytest.raises(InvalidTransition):
            await pg.transition_upload(ids["busy_upload_queued"], UploadStatus.QUEUED,
                                       UploadStatus.COMPLETE)
        before = await pg.history("upload", ids["busy_upload_queued"])
        claimed = await pg.claim_next(now=10**10)
        assert claimed is not None and claimed.id == ids["busy_upload_queued"]
        after = await pg.history("upload", claimed.id)
        assert after[:-1] == before and after[-1][:2] == ("queued", "submitting")
    with psycopg.connect(pg_url) as conn:
        disabled = conn.execute(
            "SELECT tgrelid::regclass::text, tgname FROM pg_trigger"
            " WHERE NOT tgisinternal AND tgenabled = 'D'").fetchall()
    assert disabled == []


async def test_only_state_of_running_nodes_is_left_behind(tmp_path: Path, pg_url: str) -> None:
    """Every table of the schema is copied, left behind on purpose, or the schema's own."""
    path = tmp_path / "leadflow.db"
    await build_deployment(path)
    async with Store.open(path) as lite:
        await lite.heartbeat("old-node", "old-host", 1)
        await lite.save_catalogue("default", {"fields": []})
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    with psycopg.connect(pg_url) as conn:
        tables |= {r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = current_schema()")}
    assert tables == set(COPIED_TABLES) | LEFT_BEHIND | SCHEMA_TABLES
    await copy(path, pg_url)
    async with Store.open(pg_url) as pg:
        assert await pg.nodes() == [] and await pg.catalogue("default") is None


# --- refusals ------------------------------------------------------------------------------


async def test_a_second_copy_is_refused_and_changes_nothing(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "leadflow.db"
    await build_deployment(path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADFLOW_STORE__URL", pg_url)
    monkeypatch.setenv("LEADFLOW_INSTANCES", '[{"name": "default", "client_id": "a", '
                       '"client_secret": "b"}, {"name": "sandbox", "client_id": "c", '
                       '"client_secret": "d"}]')
    assert await cli(["migrate", "--copy-from", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"copied {path} into postgresql://") and "files 10," in out
    _, history = rows_sqlite(path, "status_history")
    assert await cli(["migrate", "--copy-from", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "already holds leadflow data (files 10, uploads 9," in err
    assert rows_pg(pg_url, "status_history", rows_sqlite(path, "status_history")[0]) == history
    # A daemon started again on the old file would import its open files a second time.
    assert (tmp_path / "leadflow.db.moved").read_text().startswith("copied into postgresql://")
    monkeypatch.delenv("LEADFLOW_STORE__URL")
    monkeypatch.delenv("LEADFLOW_INSTANCES")
    monkeypatch.setenv("LEADFLOW_PATHS__DATABASE", str(path))
    assert await cli(["run", "--once"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path} was moved to PostgreSQL (copied into" in err


async def test_refused_without_a_postgresql_store_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "leadflow.db"
    await build_deployment(path)
    assert await cli(["migrate", "--copy-from", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "store.url, which is not set" in err


@pytest.mark.parametrize("kind", ["missing", "folder", "text", "other-sqlite", "empty"])
async def test_refused_when_the_source_is_not_a_leadflow_database(
    kind: str, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADFLOW_STORE__URL", pg_url)
    path = tmp_path / "source.db"
    if kind == "folder":
        path.mkdir()
    elif kind == "text":
        path.write_text("email,firstName\na@example.com,A\n")
    elif kind == "other-sqlite":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (body TEXT)")
    elif kind == "empty":
        path.write_bytes(b"")
    before = path.read_bytes() if path.is_file() else None
    assert await cli(["migrate", "--copy-from", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    said = {"missing": f"no database at {path}", "folder": "is not a file",
            "text": "not an SQLite database", "other-sqlite": "no leadflow schema",
            "empty": "not an SQLite database"}[kind]
    assert said in err
    if before is not None:
        assert path.read_bytes() == before  # not migrated into a leadflow database
    assert not Path(f"{path}.lock").exists()  # nor locked like one


async def test_refused_while_a_daemon_holds_the_sqlite_lock(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADFLOW_STORE__URL", pg_url)
    path = tmp_path / "leadflow.db"
    await build_deployment(path)
    with SingleDaemonLock(path):
        assert await cli(["migrate", "--copy-from", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a leadflow daemon (pid " in err
    assert "stop it first" in err
    assert count_pg(pg_url, "files") == 0


async def test_refused_while_nodes_run_on_the_target(tmp_path: Path, pg_url: str) -> None:
    path = tmp_path / "leadflow.db"
    await build_deployment(path)
    async with Store.open(pg_url) as pg:
        await pg.heartbeat("node-a", "app1", 77)
    with pytest.raises(CopyRefused, match=r"nodes are running .*node-a") as info:
        await copy(path, pg_url)
    assert not info.value.usage
    assert count_pg(pg_url, "files") == 0


async def test_refused_when_open_files_belong_to_an_instance_not_configured(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "leadflow.db"
    await build_deployment(path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEADFLOW_STORE__URL", pg_url)
    monkeypatch.setenv("LEADFLOW_INSTANCES", '[{"name": "prod", "client_id": "a", '
                       '"client_secret": "b"}, {"name": "sandbox", "client_id": "c", '
                       '"client_secret": "d"}]')
    assert await cli(["migrate", "--copy-from", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "4 files" in err and "instance 'default'" in err and "prod, sandbox" in err
    assert count_pg(pg_url, "files") == 0


async def test_a_failed_copy_keeps_nothing(tmp_path: Path, pg_url: str) -> None:
    """A row PostgreSQL refuses (a NUL in a text) rolls the whole copy back."""
    path = tmp_path / "leadflow.db"
    await build_deployment(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE errors SET message = ?", ("bad\x00byte",))
    with pytest.raises(StoreError, match=r"copying table errors into .* nothing was kept"):
        await copy(path, pg_url)
    for table in COPIED_TABLES:
        assert count_pg(pg_url, table) == 0, table
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT COUNT(*) FROM pg_trigger WHERE NOT tgisinternal"
                            " AND tgenabled = 'D'").fetchone() == (0,)
    # Fixed, it goes through.
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE errors SET message = 'fixed'")
    assert (await copy(path, pg_url)).rows["errors"] == 1
