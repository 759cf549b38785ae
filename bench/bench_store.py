"""Benchmark 5a: store operations per second and ``leadflow status`` latency (issue 8, item 5).

Store ops (enqueue: a file and its part; claim: a one-part upload formed from the waiting
part, as the scheduler's packer does; transition) go through `orchestrator.store.Store`
(aiosqlite);
the baseline replays the very same SQL statements (the store's named constants) on the same
schema with the standard library's synchronous ``sqlite3``, in the same run, so the ratio is
the cost of the async layer and the record mapping, not of SQLite itself.

Status latency: a database with 100,000 uploads in its history (10,000 in quick mode) is
populated through the Store API (``add_file`` + ``enqueue_parts`` + ``form_upload``, 100
one-part uploads per file);
moving them along ``queued -> submitting -> submitted -> importing -> complete`` is done with
one guarded ``UPDATE`` per step over all rows, which fires the same transition guard and
history triggers as the store's per-row updates (a per-row replay would take minutes and
measures nothing new). Then ``collect_status`` in-process and ``leadflow status --json`` as a
subprocess are timed against the same on an empty database.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import figure
from orchestrator.models import NewPart, UploadStatus
from orchestrator.settings import load_settings
from orchestrator.store import Store
from orchestrator.store import core as store_mod
from orchestrator.window.status import collect_status

#: The SQLite store's named queries (the baseline runs the very same SQL).
SQL = store_mod.QUERIES["sqlite"]

#: Columns a finished upload has (the history step sets them in bulk).
COMPLETE_COLUMNS = (
    ", marketo_status = 'Complete', num_leads_processed = 50, num_rows_failed = 0,"
    " num_rows_with_warning = 0, finished_at = :now,"
    " message = 'Import succeeded, 50 records imported (50 members)'"
)
OPTIONS = {"format": "csv", "lookupField": "email", "listId": None, "partitionName": None}


def _new_part(i: int) -> NewPart:
    return NewPart(path=f"/bench/work/{i}/upload-0001.csv", size_bytes=120, source_rows=[2],
                   options=OPTIONS)


async def _store_ops(db: Path, n: int) -> dict[str, float]:
    """Time ``n`` enqueues, claims and transitions through the Store; ops per second."""
    async with Store.open(db) as store:
        t0 = time.perf_counter()
        for i in range(n):
            rec = await store.add_file(name=f"f{i}.csv", inbox_path=f"/bench/inbox/f{i}.csv",
                                       work_path=f"/bench/work/{i}", route=None, size_bytes=120)
            await store.enqueue_parts(rec.id, [_new_part(i)], sha256=f"{i:064x}")
        t1 = time.perf_counter()
        claimed = []
        for _ in range(n):
            head = await store.waiting_head()
            assert head is not None
            up = await store.form_upload([(head.id, 0)], path=head.path,
                                         size_bytes=head.size_bytes, rows=head.rows,
                                         kind=head.kind, options=head.options)
            claimed.append(up.id)
        t2 = time.perf_counter()
        now = time.time()
        for k, upload_id in enumerate(claimed):
            await store.transition_upload(upload_id, UploadStatus.SUBMITTING,
                                          UploadStatus.SUBMITTED, batch_id=1000 + k,
                                          marketo_status="Queued", submitted_at=now)
        t3 = time.perf_counter()
    return {"enqueue": n / (t1 - t0), "claim": n / (t2 - t1), "transition": n / (t3 - t2)}


def _raw_ops(db: Path, n: int) -> dict[str, float]:
    """The same statements with synchronous sqlite3, one transaction per store call."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    mark_queued = (
        "UPDATE files SET status = :new, updated_at = :now, sha256 = :sha256"
        " WHERE id = :id AND status IN (:s0) RETURNING id"
    )
    to_submitted = (
        "UPDATE uploads SET status = :new, updated_at = :now, batch_id = :batch_id,"
        " marketo_status = :marketo_status, submitted_at = :submitted_at"
        f" WHERE id = :id AND status IN (:s0) RETURNING {store_mod.UPLOAD_COLUMNS}"
    )
    try:
        t0 = time.perf_counter()
        for i in range(n):
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(SQL["insert_file"], {
                "name": f"f{i}.csv", "inbox_path": f"/bench/inbox/f{i}.csv",
                "work_path": f"/bench/work/{i}", "route": None, "size_bytes": 120, "now": now,
                "instance": "default", "node_id": None,
            }).fetchone()
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(mark_queued, {"new": "queued", "now": now, "sha256": f"{i:064x}",
                                       "id": row[0], "s0": "received"}).fetchone()
            conn.execute(SQL["insert_part"], (None, row[0], 1, f"/bench/work/{i}/upload-0001.csv",
                                                 120, 0, 1, b"\x02\x00\x00\x00", "leads",
                                                 '{"format": "csv"}', None, now, now,
                                                 "default"))
            conn.execute("COMMIT")
        t1 = time.perf_counter()
        claimed = []
        for _ in range(n):
            head = conn.execute(SQL["select_waiting_head"], {"instance": "default"}).fetchone()
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(SQL["insert_upload"], {
                "path": head[3], "size_bytes": head[4], "rows": head[6], "kind": head[7],
                "options": head[8], "status": "submitting", "claimed_at": time.time(),
                "now": time.time(), "instance": "default"}).fetchone()
            conn.execute(SQL["link_part"], (row[0], 0, head[0]))
            conn.execute("COMMIT")
            claimed.append(row[0])
        t2 = time.perf_counter()
        now = time.time()
        for k, upload_id in enumerate(claimed):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(to_submitted, {"new": "submitted", "now": time.time(),
                                        "batch_id": 1000 + k, "marketo_status": "Queued",
                                        "submitted_at": now, "id": upload_id,
                                        "s0": "submitting"}).fetchone()
            conn.execute("COMMIT")
        t3 = time.perf_counter()
    finally:
        conn.close()
    return {"enqueue": n / (t1 - t0), "claim": n / (t2 - t1), "transition": n / (t3 - t2)}


async def _populate_history(db: Path, uploads: int, per_file: int = 100) -> dict[str, int]:
    """Fill ``db`` with ``uploads`` uploads, almost all finished; return the counts."""
    files = uploads // per_file
    async with Store.open(db) as store:
        for f in range(files):
            rec = await store.add_file(name=f"hist{f}.csv", inbox_path=f"/h/inbox/{f}.csv",
                                       work_path=f"/h/work/{f}", route=None,
                                       size_bytes=9_000_000)
            batch = [NewPart(path=f"/h/work/{f}/upload-{s:04d}.csv", size_bytes=9_000_000,
                             source_rows=list(range(2, 52)), options=OPTIONS)
                     for s in range(1, per_file + 1)]
            part_ids = await store.enqueue_parts(rec.id, batch, sha256=f"{f:064x}",
                                                 rows_total=50 * per_file)
            for part_id, part in zip(part_ids, batch, strict=True):
                await store.form_upload([(part_id, 0)], path=part.path, size_bytes=part.size_bytes,
                                        rows=50, kind="leads", options=OPTIONS,
                                        status=UploadStatus.QUEUED)
        for k in range(200):
            await store.record_error(f"bench error {k}", code="1006", file_id=1 + k % files)
    # Walk every upload but the newest file's along the happy path, then finish their files.
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        last_file = files
        now = time.time()
        steps = [
            ("submitting", "queued", ""),
            ("submitted", "submitting",
             ", batch_id = id, marketo_status = 'Queued', submitted_at = :now"),
            ("importing", "submitted", ", marketo_status = 'Importing'"),
            ("complete", "importing", COMPLETE_COLUMNS),
        ]
        conn.execute("BEGIN IMMEDIATE")
        for new, old, extra in steps:
            conn.execute(
                f"UPDATE uploads SET status = :new, updated_at = :now{extra}"
                " WHERE status = :old"
                " AND id IN (SELECT upload_id FROM parts WHERE file_id < :last)",
                {"new": new, "old": old, "now": now, "last": last_file},
            )
        for new, old in (("reporting", "queued"), ("complete", "reporting")):
            conn.execute("UPDATE files SET status = :new, updated_at = :now, reported_at = :now"
                         " WHERE status = :old AND id < :last",
                         {"new": new, "old": old, "now": now, "last": last_file})
        # Ten of the newest file's uploads are at Marketo, as in a busy daemon.
        for new, old in (("submitting", "queued"), ("submitted", "submitting")):
            conn.execute(
                "UPDATE uploads SET status = :new, updated_at = :now, batch_id = id,"
                " submitted_at = :now WHERE id IN (SELECT u.id FROM uploads u"
                " JOIN parts p ON p.upload_id = u.id WHERE u.status = :old"
                " AND p.file_id = :last ORDER BY u.id LIMIT 10)",
                {"new": new, "old": old, "now": now, "last": last_file})
        day = time.strftime("%Y-%m-%d")
        conn.execute("INSERT INTO api_usage (instance, day, endpoint, calls, errors)"
                     " VALUES ('default', ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                     (day, "bulk_import_status", 3000, 2))
        conn.execute("COMMIT")
        history = conn.execute("SELECT COUNT(*) FROM status_history").fetchone()[0]
        total = conn.execute("SELECT COUNT(*) FROM uploads").fetchone()[0]
    finally:
        conn.close()
    return {"uploads": total, "files": files, "status_history_rows": history}


async def _collect_latency(db: Path, repeat: int) -> float:
    settings = load_settings(None, {"paths": {"database": str(db)}})
    times = []
    async with Store.open(db) as store:
        for _ in range(repeat):
            t0 = time.perf_counter()
            data = await collect_status(store, settings, time.time())
            times.append(time.perf_counter() - t0)
        assert "counts" in data
    return statistics.median(times)


def _cli_latency(db: Path, repeat: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env["LEADFLOW_PATHS__DATABASE"] = str(db)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "orchestrator", "status", "--json"],
                              env=env, capture_output=True, text=True, timeout=60, check=False)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"leadflow status failed: {proc.stderr[-500:]}")
    return statistics.median(times)


def run(quick: bool) -> dict[str, Any]:
    """Measure store ops/s (vs raw sqlite3) and status latency (100k history vs empty)."""
    n_ops = 500 if quick else 3000
    n_hist = 10_000 if quick else 100_000
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        root = Path(tmp)
        ours = asyncio.run(_store_ops(root / "ops.db", n_ops))
        # The baseline gets a freshly migrated database of its own.
        asyncio.run(_touch(root / "raw.db"))
        raw = _raw_ops(root / "raw.db", n_ops)
        asyncio.run(_touch(root / "empty.db"))
        t0 = time.perf_counter()
        hist = asyncio.run(_populate_history(root / "hist.db", n_hist))
        populate_s = time.perf_counter() - t0
        repeat = 3 if quick else 5
        lat_full = asyncio.run(_collect_latency(root / "hist.db", repeat))
        lat_empty = asyncio.run(_collect_latency(root / "empty.db", repeat))
        cli_full = _cli_latency(root / "hist.db", 2 if quick else 3)
        cli_empty = _cli_latency(root / "empty.db", 2 if quick else 3)
    label = f"{n_hist:,} uploads"
    figures = [
        figure(f"store {op} ops/s", ours[op], "ops/s", baseline=raw[op],
               baseline_name="raw sqlite3",
               note=f"{n_ops} {op}s through Store (aiosqlite) vs the same SQL on sqlite3")
        for op in ("enqueue", "claim", "transition")
    ]
    figures += [
        figure(f"collect_status, {label}", lat_full * 1000, "ms", baseline=lat_empty * 1000,
               baseline_name="empty db", target="<= 250",
               note="in-process median; ratio = slowdown from history"),
        figure(f"`leadflow status --json`, {label}", cli_full, "s", baseline=cli_empty,
               baseline_name="empty db", target="<= 1.0",
               note="subprocess wall time incl. Python start-up"),
    ]
    return {
        "figures": figures,
        "details": {"ops": n_ops, "store_ops_per_s": ours, "raw_ops_per_s": raw,
                    "history": hist, "populate_s": round(populate_s, 2),
                    "targets": "ours: status answers within 250 ms in-process, 1 s as a command"},
    }


async def _touch(db: Path) -> None:
    async with Store.open(db):
        pass

