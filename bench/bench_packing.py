"""Benchmark: many small files, few Marketo jobs (issue 15).

10,000 files of 3 leads each (300 in quick mode) with a handful of header variants (3) and
routes (the inbox root and one route with a ``listId``), i.e. 6 pack keys interleaved in the
FIFO, are queued by the real intake; then the real daemon (scheduler, poller, reporter,
``MarketoClient``) imports them against the simulator (own process, 50x clock, 10 rows per
second per importing slot) until every file has its report. Twice, each against a fresh
simulator: with packing (the defaults) and one job per file (``pack = false`` everywhere), the
baseline.

As in the slots benchmark, the files are queued before the daemon starts (intake's own speed
is the scale benchmark's), so every figure measures what packing changes: from the daemon's
start, in simulated seconds.

Figures, each beside one-job-per-file's in the same run:

- Marketo jobs (target: at most 1 % of the files);
- API calls per file (identity excluded, Marketo does not count it; target <= 0.02);
- time until the last report (target: no later than one-job-per-file's);
- busy fraction of the 2 importing slots (target >= 0.98): slot-seconds our jobs imported
  over the slot-seconds our backlog could have used, ``min(2, files not finished)``, from the
  moment our first job reached Marketo until the last one finished.

Both runs get ``limits.daily_call_budget`` (and the simulator's quota) of 1,000,000: with the
default budget of 10,000 calls a day, one job per file could not finish 10,000 files in a
day (it would pause until Marketo's next day), which would make the comparison meaningless.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import figure
from bench.harness import IMPORTING_SLOTS, scaled_settings
from bench.scaling import scale_client_constants
from bench.simhost import SimHost
from orchestrator.daemon import Daemon
from orchestrator.intake import Intake
from orchestrator.logging import configure
from orchestrator.marketo import MarketoClient
from orchestrator.places import make_folders
from orchestrator.settings import Settings, load_settings
from orchestrator.store import Store

HEADERS = (
    "email,firstName,lastName",
    "email,firstName,lastName,company",
    "email,company,firstName",
)
ROUTE = "events"
#: Simulated seconds per real second, and rows each importing slot handles per second. The
#: daemon's real-time work (10,000 reports written, ~10 s of one core) is multiplied by the
#: scale in simulated time and delays its reactions (a poll, the next pack); at 100x that cost
#: 1 to 3 % of busy time, at 50x about half of it (as the slots benchmark's big workload).
SCALE = {"full": 50.0, "quick": 200.0}
ROWS_PER_SECOND = 10.0


def write_files(inbox: Path, count: int) -> int:
    """Write ``count`` files of 3 rows (header variants and routes interleaved); rows."""
    (inbox / ROUTE).mkdir(parents=True, exist_ok=True)
    rows = 0
    for f in range(count):
        header = HEADERS[f % len(HEADERS)]
        folder = inbox / ROUTE if f % 5 == 0 else inbox
        lines = [header]
        for r in range(3):
            values = {"email": f"p{f}.{r}@example.com", "firstName": f"First{r}",
                      "lastName": f"Last{f}", "company": f"Acme {f % 50}"}
            lines.append(",".join(values[c] for c in header.split(",")))
            rows += 1
        (folder / f"small-{f:05d}.csv").write_text("\r\n".join(lines) + "\r\n")
    return rows


def run_settings(root: Path, url: str, scale: float, pack: bool) -> Settings:
    """The harness's scaled settings, with packing on or off and room for every call."""
    base = scaled_settings(root, url, scale)
    data = base.model_dump(by_alias=True, mode="json")
    data["limits"]["daily_call_budget"] = 1_000_000
    data["import"]["pack"] = pack
    data["routes"] = [{"name": ROUTE, "list_id": 1001, "pack": pack}]
    data["marketo"]["client_secret"] = "leadflow-sim-secret"
    settings = load_settings(None, data)
    make_folders(settings)
    return settings


async def queue_files(settings: Settings, client: Any) -> int:
    """Queue every inbox file with the real intake (before the daemon starts)."""
    async with Store.open(settings.paths.database) as store:
        intake = Intake(settings, store, describe=client.describe_leads)
        taken = 0
        for _ in range(50):
            taken += await intake.scan_once()
            if not any(p.is_file() for p in settings.paths.inbox.rglob("*")):
                break
    return taken


async def run_one(root: Path, count: int, scale: float, pack: bool,
                  timeout_s: float) -> dict[str, Any]:
    """One run against a fresh simulator; figures from the simulator and the database."""
    configure("json", "error")
    scale_client_constants(scale)
    config = {"rows_per_second": ROWS_PER_SECOND, "store_leads": False, "seed": 15,
              "daily_quota": 10_000_000}
    async with SimHost(config, scale) as sim:
        settings = run_settings(root, sim.url, scale, pack)
        rows = await asyncio.to_thread(write_files, settings.paths.inbox, count)
        wall_to_mono = time.time() - time.monotonic()
        async with MarketoClient(settings, store=None, window_s=20.0 / scale) as client:
            t_queue = time.monotonic()
            queued = await queue_files(settings, client)
            queue_s = time.monotonic() - t_queue
            async with Daemon(settings, client=client, handle_signals=False) as daemon:
                t0_mono = time.monotonic()
                task = asyncio.create_task(daemon.run())
                try:
                    deadline = t0_mono + timeout_s
                    while await _unreported(settings.paths.database) > 0:
                        if task.done():
                            task.result()
                            raise RuntimeError("the daemon stopped before every report")
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"not every file reported after {timeout_s} s")
                        await asyncio.sleep(0.05)
                    wall = time.monotonic() - t0_mono
                finally:
                    daemon.stop("benchmark done")
                    await task
        stats = await sim.stats()

    def sim_of_wall(ts: float) -> float:
        return sim.sim_time(ts - wall_to_mono)

    t0 = sim.sim_time(t0_mono)
    db = _read_db(settings.paths.database)
    return analyse(stats, db, t0, sim_of_wall, count, rows) | {
        "queued": queued, "queue_real_s": round(queue_s, 2), "run_real_s": round(wall, 2)}


async def _unreported(database: Path) -> int:
    def count() -> int:
        conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
        try:
            row = conn.execute("SELECT COUNT(*) FROM files WHERE reported_at IS NULL").fetchone()
        finally:
            conn.close()
        return int(row[0])

    return await asyncio.to_thread(count)


def _read_db(database: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        files = conn.execute(
            "SELECT f.id, f.status, f.reported_at,"
            " (SELECT at FROM status_history h WHERE h.entity = 'file' AND h.entity_id = f.id"
            "  AND h.to_status = 'queued' ORDER BY h.id LIMIT 1)"
            " FROM files f").fetchall()
        rides = conn.execute(
            "SELECT p.file_id, u.batch_id FROM parts p JOIN uploads u ON u.id = p.upload_id"
        ).fetchall()
    finally:
        conn.close()
    return {"files": files, "rides": rides}


def analyse(stats: dict[str, Any], db: dict[str, Any], t0: float, sim_of_wall: Any,
            count: int, rows: int) -> dict[str, Any]:
    """Jobs, calls per file, last report and busy fraction of one run (simulated seconds)."""
    ours = [b for b in stats["batches"] if b["kind"] != "foreign"]
    by_batch = {b["batchId"]: b for b in ours}
    calls = dict(stats["calls_by_endpoint"])
    identity = calls.pop("identity", 0)
    last_report = max(sim_of_wall(f[2]) for f in db["files"] if f[2] is not None)
    complete = sum(1 for f in db["files"] if f[1] == "complete")
    # A file is finished when the last batch it rode in finished.
    finished_at: dict[int, float] = {}
    for file_id, batch_id in db["rides"]:
        batch = by_batch.get(batch_id)
        if batch is not None and batch["finished_at"] is not None:
            finished_at[file_id] = max(finished_at.get(file_id, 0.0), batch["finished_at"])
    events: list[tuple[float, int, int]] = []  # (time, d_importing, d_unfinished)
    for f in db["files"]:
        events.append((max(sim_of_wall(f[3]) if f[3] else t0, t0), 0, 1))
        if f[0] in finished_at:
            events.append((finished_at[f[0]], 0, -1))
    for b in ours:
        if b["importing_at"] is not None:
            events.append((max(b["importing_at"], t0), 1, 0))
            if b["finished_at"] is not None:
                events.append((b["finished_at"], -1, 0))
    events.sort()
    first = min((b["created_at"] for b in ours), default=t0)
    importing = unfinished = 0
    busy = demand = 0.0
    last = t0
    for at, d_imp, d_unf in events:
        if at > first:
            span = at - max(last, first)
            if span > 0:
                busy += span * importing
                demand += span * min(IMPORTING_SLOTS, unfinished)
        importing += d_imp
        unfinished += d_unf
        last = max(last, at)
    end = max((b["finished_at"] for b in ours if b["finished_at"] is not None), default=t0)
    return {
        "files": count,
        "rows": rows,
        "complete_files": complete,
        "jobs": len(ours),
        "api_calls": sum(calls.values()),
        "identity_calls": identity,
        "calls_by_endpoint": calls,
        "calls_per_file": sum(calls.values()) / count,
        "last_report_s": last_report - t0,
        "last_import_s": end - t0,
        "ideal_import_s": rows / ROWS_PER_SECOND / IMPORTING_SLOTS,
        "busy_fraction": busy / demand if demand else None,
        "errors": stats["errors"],
        "peak_calls_per_window": stats["peak_calls_per_window"],
    }


async def _run(quick: bool) -> dict[str, Any]:
    count = 300 if quick else 10_000
    scale = SCALE["quick" if quick else "full"]
    timeout = 60.0 if quick else 800.0
    with tempfile.TemporaryDirectory(prefix="bench-packing-") as tmp:
        root = Path(tmp)
        packed = await run_one(root / "packed", count, scale, True, timeout)
        alone = await run_one(root / "alone", count, scale, False, timeout)
    n = count
    figures = [
        figure("Marketo jobs", packed["jobs"], "jobs", baseline=alone["jobs"],
               baseline_name="one job per file", target=f"<= {n // 100}",
               note=f"{n:,} files of 3 rows, 3 header variants x 2 routes (6 pack keys)"),
        figure("API calls per file", packed["calls_per_file"], "calls/file",
               baseline=alone["calls_per_file"], baseline_name="one job per file",
               target="<= 0.02", note="every call the simulator received, identity excluded"),
        figure("time until the last report", packed["last_report_s"], "simulated s",
               baseline=alone["last_report_s"], baseline_name="one job per file",
               target="<= 1", target_on="ratio",
               note=f"from the daemon's start; import work alone is "
                    f"{packed['ideal_import_s']:.0f} s on 2 slots"),
        figure("busy fraction of the 2 slots", packed["busy_fraction"], "",
               baseline=alone["busy_fraction"], baseline_name="one job per file",
               target=">= 0.98",
               note="slot-time importing / slot-time the unfinished files could use"),
        figure("files complete", packed["complete_files"], "files", target=f">= {n}",
               note="every file reported complete: nothing lost"),
    ]
    return {"figures": figures,
            "details": {"time_scale": scale, "rows_per_second": ROWS_PER_SECOND,
                        "packed": packed, "one_job_per_file": alone,
                        "targets": "issue 15: jobs <= 1 % of the files, calls <= 0.02 per "
                                   "file, last report no later than one job per file, busy "
                                   "fraction >= 0.98"}}


def run(quick: bool) -> dict[str, Any]:
    """Import the small files with packing and with one job per file; compare."""
    return asyncio.run(_run(quick))
