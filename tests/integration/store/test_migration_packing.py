"""Migration 0006_packing from a version-5 database (the version before packing) with data.

The v5 database is built by migrations 0001-0005 alone and filled the way leadflow left it
before packing: files in every stage (with their import keys, one forced), uploads queued,
mid-submit (one answer lost), at Marketo, complete (reported and not), failed, with their
status history and their create calls (``upload_submissions``, written by 0005's triggers,
which refer to ``uploads``: the table 0006 rebuilds), a retention record, the recorded routes
and the calls of the rate window. After ``Store.open`` (which migrates) every upload is one
part of its own and everything v5 knew is still there.
"""

from __future__ import annotations

import sqlite3
from array import array
from pathlib import Path

from orchestrator.models import FileStatus, NewPart, UploadStatus, unpack_rows
from orchestrator.store import Store
from orchestrator.store.core import QUERIES
from orchestrator.store.migrate import _statements, load_migrations

V5_FILES = [
    # id, name, status, reported_at
    (1, "done.csv", "complete", 50.0),
    (2, "busy.csv", "queued", None),
    (3, "ended.csv", "reporting", None),
]
IMPORT_KEY = '["leads","email",null,null,null,null,null]'
#: Uploads given a batch (a create call Marketo answered) and the one whose answer was lost.
ACCEPTED = {1: 901, 2: 902, 5: 905, 6: 906}
UNCERTAIN = {3}
V5_UPLOADS = [
    # id, file_id, seq, status, batch_id, processed, failed, warned, rows, source rows
    (1, 1, 1, "complete", 901, 3, 1, 0, 4, [2, 3, 4, 6]),
    (2, 2, 1, "importing", 902, 1, 0, 0, 3, [2, 3, 4]),
    (3, 2, 2, "submitting", None, None, None, None, 2, [5, 7]),
    (4, 2, 3, "queued", None, None, None, None, 2, [8, 9]),
    (5, 3, 1, "complete", 905, 2, 0, 1, 2, [2, 3]),
    (6, 3, 2, "failed", 906, 0, 0, 0, 1, [4]),
    (8, 2, 4, "queued", None, None, None, None, 1, [10]),  # id 7 was deleted
]
PATHS = {
    ("complete",): ["queued", "submitting", "submitted", "importing", "complete"],
    ("importing",): ["queued", "submitting", "submitted", "importing"],
    ("submitting",): ["queued", "submitting"],
    ("queued",): ["queued"],
    ("failed",): ["queued", "submitting", "submitted", "importing", "failed"],
}


def build_v5(path: Path) -> None:
    """A version-5 database as leadflow left it before packing (history and create calls
    written by its triggers)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("BEGIN")
    for migration in load_migrations()[:5]:
        for statement in _statements(migration.sql):
            conn.execute(statement)
    assert migration.version == 5
    conn.execute("PRAGMA user_version = 5")
    for file_id, name, status, reported in V5_FILES:
        conn.execute(
            "INSERT INTO files (id, name, inbox_path, work_path, status, sha256, rows_total,"
            " info, received_at, updated_at, import_key, forced)"
            " VALUES (?, ?, ?, ?, 'received', ?, 9, ?, 1, 1, ?, ?)",
            (file_id, name, f"/in/{name}", f"/w/{file_id}/source/{name}", f"sha-{file_id}",
             '{"header": ["email", "firstName"]}', IMPORT_KEY, int(file_id == 3)),
        )
        for step in ("queued", "reporting", "complete"):
            conn.execute("UPDATE files SET status = ?, updated_at = 2 WHERE id = ?",
                         (step, file_id))
            if step == status:
                break
        conn.execute("UPDATE files SET reported_at = ? WHERE id = ?", (reported, file_id))
    for (upload_id, file_id, seq, status, batch, done, failed, warned, rows,
         lines) in V5_UPLOADS:
        conn.execute(
            "INSERT INTO uploads (id, file_id, seq, path, size_bytes, rows, source_rows, kind,"
            " options, created_at, updated_at) VALUES (?, ?, ?, ?, 100, ?, ?, 'leads', ?, 3, 3)",
            (upload_id, file_id, seq, f"/w/{file_id}/upload-{seq:04d}.csv", rows,
             array("I", lines).tobytes(), '{"format": "csv", "lookupField": "email"}'),
        )
        for step in PATHS[(status,)][1:]:
            conn.execute("UPDATE uploads SET status = ?, updated_at = 4 WHERE id = ?",
                         (step, upload_id))
            if step == "submitted":  # Marketo answered: 0005's trigger records the call
                conn.execute("UPDATE uploads SET batch_id = ?, marketo_status = 'Queued',"
                             " submitted_at = 4 WHERE id = ?", (ACCEPTED[upload_id], upload_id))
        if upload_id in UNCERTAIN:  # the answer of its create call was lost
            conn.execute("UPDATE uploads SET uncertain = 1, updated_at = 4 WHERE id = ?",
                         (upload_id,))
        if upload_id in ACCEPTED:
            conn.execute("UPDATE uploads SET marketo_status = ? WHERE id = ?",
                         ({"complete": "Complete", "failed": "Failed"}.get(status, "Importing"),
                          upload_id))
        conn.execute(
            "UPDATE uploads SET batch_id = ?, num_leads_processed = ?, num_rows_failed = ?,"
            " num_rows_with_warning = ?, attempts = 1, finished_at = 5 WHERE id = ?",
            (batch, done, failed, warned, upload_id),
        )
    conn.execute("INSERT INTO uploads (id, file_id, seq, path, size_bytes, rows, source_rows,"
                 " created_at, updated_at) VALUES (7, 2, 9, '/x', 1, 0, x'', 3, 3)")
    conn.execute("DELETE FROM uploads WHERE id = 7")
    conn.execute("INSERT INTO retention_deletions (file_id, what, path, deleted, at)"
                 " VALUES (1, 'results', '/r/done.csv.1', 1, 60)")
    conn.execute("INSERT INTO daemon_routes (id, pid, routes, recorded_at)"
                 " VALUES (1, 4242, '[]', 7)")
    conn.execute("INSERT INTO api_calls (endpoint, day, sent_at, answered_at)"
                 " VALUES ('import_lead', '2026-12-01', 8, 8.5)")
    conn.execute("COMMIT")
    conn.close()


async def test_a_v5_database_with_data_migrates_and_keeps_everything(tmp_path: Path) -> None:
    db = tmp_path / "v5.db"
    build_v5(db)
    before = sqlite3.connect(db)
    history_v5 = before.execute("SELECT COUNT(*) FROM status_history").fetchone()[0]
    calls_v5 = before.execute(
        "SELECT id, upload_id, batch_id, outcome, marketo_status, at FROM upload_submissions"
        " ORDER BY id").fetchall()
    before.close()
    assert [(c[1], c[3]) for c in calls_v5] == [
        (1, "accepted"), (2, "accepted"), (3, "uncertain"), (5, "accepted"), (6, "accepted")]

    async with Store.open(db) as store:
        # Uploads: same ids, statuses, batchIds and counters.
        for upload_id, _, _, status, batch, done, failed, warned, rows, _ in V5_UPLOADS:
            upload = await store.get_upload(upload_id)
            assert upload is not None
            assert (upload.status.value, upload.batch_id, upload.rows) == (status, batch, rows)
            assert (upload.num_leads_processed, upload.num_rows_failed,
                    upload.num_rows_with_warning) == (done, failed, warned)
        # Each upload is one part of its file, with its rows and source line numbers.
        for upload_id, file_id, seq, status, _, done, failed, warned, rows, lines in V5_UPLOADS:
            (part,) = await store.parts_of_upload(upload_id)
            assert (part.file_id, part.seq, part.rows, part.first_row) == (
                file_id, seq, rows, 0)
            assert part.pack_key is None and part.header_bytes == 0
            assert part.options == {"format": "csv", "lookupField": "email"}
            assert await store.part_source_rows(part.id) == lines
            expected = (done, failed, warned) if status == "complete" else (None, None, None)
            assert (part.num_leads_processed, part.num_rows_failed,
                    part.num_rows_with_warning) == expected
        assert [p.seq for p in await store.parts_of_file(2)] == [1, 2, 3, 4]
        # The create calls of each upload are kept, and reach the files through their parts.
        calls = await store.submissions_of_file(3)
        assert sorted(calls) == [5, 6]
        assert [(c["batch_id"], c["outcome"], c["marketo_status"]) for c in calls[6]] == [
            (906, "accepted", "Failed")]
        assert [c["outcome"] for c in (await store.submissions_of_file(2))[3]] == ["uncertain"]
        # The files keep their import keys (duplicates are still found) and forced flag.
        twin = await store.imported_twin("sha-1", IMPORT_KEY)
        assert twin is not None and twin.id == 1
        forced = await store.get_file(3)
        assert forced is not None and forced.forced and forced.import_key == IMPORT_KEY
        # Nothing waits for a pack: v5 uploads are formed already and go as they are.
        assert (await store.waiting_summary())["parts"] == 0
        # A complete upload of a reported file has nothing left to split; the others do.
        assert [u.id for u in await store.uploads_to_split()] == [5]
        done_upload = await store.get_upload(1)
        assert done_upload is not None and done_upload.results_split_at is not None
        # The queued v5 uploads are claimed in their old FIFO order.
        first = await store.claim_next()
        assert first is not None and first.id == 4
        # History kept, and still written by the (recreated) triggers; so are create calls.
        assert len(await store.history("upload", 1)) == 5
        await store.transition_upload(4, UploadStatus.SUBMITTING, UploadStatus.SUBMITTED,
                                      batch_id=990, marketo_status="Queued", submitted_at=9.0)
        assert (await store.history("upload", 4))[-1][:2] == ("submitting", "submitted")
        assert [(c["batch_id"], c["outcome"]) for c in (await store.submissions_of_file(2))[4]
                ] == [(990, "accepted")]
        # New uploads never reuse an id, not even the deleted 7 or 8.
        (waiting_part,) = await store.parts_of_upload(8)
        assert waiting_part.upload_id == 8
        file = await store.add_file(name="new.csv", inbox_path="/in/new.csv",
                                    work_path="/w/new", route=None, size_bytes=1)
        assert file.id == 4
        (part_id,) = await store.enqueue_parts(file.id, [NewPart("/w/new.1", 10, [2])],
                                               sha256="sha-new")
        new = await store.form_upload([(part_id, 0)], path="/w/new.1", size_bytes=10, rows=1,
                                      kind="leads", options={})
        assert new.id == 9
        # The file that was being reported waits for its complete upload to be split.
        ready = await store.files_ready_for_report()
        assert [f.id for f in ready] == []
        assert await store.record_split(5, [(5, 2, 0, 1)])
        assert (await store.get_file(3)).status is FileStatus.REPORTING  # type: ignore[union-attr]

    after = sqlite3.connect(db)
    try:
        assert after.execute("PRAGMA user_version").fetchone()[0] == len(load_migrations())
        assert after.execute("PRAGMA foreign_key_check").fetchall() == []
        assert after.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        history = after.execute("SELECT COUNT(*) FROM status_history").fetchone()[0]
        assert history >= history_v5 + 2  # old rows kept, new ones appended
        columns = [r[1] for r in after.execute("PRAGMA table_info(uploads)")]
        assert "file_id" not in columns and "source_rows" not in columns
        # Parts were copied in FIFO (upload id) order.
        order = after.execute("SELECT upload_id FROM parts ORDER BY id").fetchall()
        assert [r[0] for r in order][:7] == [u[0] for u in V5_UPLOADS]
        lines = after.execute("SELECT source_rows FROM parts WHERE upload_id = 1").fetchone()[0]
        assert unpack_rows(lines) == [2, 3, 4, 6]
        # Every table 0006 did not rebuild is as it was; create calls kept their ids.
        kept = after.execute(
            "SELECT id, upload_id, batch_id, outcome, marketo_status, at FROM upload_submissions"
            " WHERE id <= ? ORDER BY id", (len(calls_v5),)).fetchall()
        assert kept == calls_v5
        assert after.execute("SELECT file_id, what FROM retention_deletions").fetchall() == [
            (1, "results")]
        assert after.execute("SELECT pid FROM daemon_routes").fetchone() == (4242,)
        assert after.execute("SELECT COUNT(*) FROM api_calls").fetchone() == (1,)
        # The foreign key of upload_submissions still points at the (rebuilt) uploads table.
        fks = after.execute("PRAGMA foreign_key_list(upload_submissions)").fetchall()
        assert [(fk[2], fk[3], fk[4]) for fk in fks] == [("uploads", "upload_id", "id")]
    finally:
        after.close()


async def test_duplicate_lookups_use_the_sha256_index(tmp_path: Path) -> None:
    """A batch's duplicate lookup must not read every queued file (it made intake quadratic:
    10,000 dropped files took 53 s instead of 9)."""
    async with Store.open(tmp_path / "q.db"):
        pass
    conn = sqlite3.connect(tmp_path / "q.db")
    try:
        for sql, params in (
            (QUERIES["sqlite"]["select_imported_twins"], {"keys": '[["ab", "k"]]'}),
            (QUERIES["sqlite"]["select_imported_twin"], {"sha256": "ab", "import_key": "k"}),
        ):
            plan = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert "USING INDEX files_sha256 (sha256=?)" in plan, plan
    finally:
        conn.close()
