"""The status figures: what ``leadflow status``, ``/api/status``, the page and ``/metrics`` show.

One JSON-ready dict read from the store (and the daemon's lock and pause files), so the
command line and the operator's window always agree.
"""

from __future__ import annotations

from typing import Any

from orchestrator.models import FILE_OPEN
from orchestrator.places import read_pause, results_dir
from orchestrator.results.retention import DAY_S, days_of
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.store.lock import daemon_running
from orchestrator.timing import quota_day

#: Finished files listed by ``leadflow status`` (newest first), besides every open one.
RECENT_FILES = 10
#: Open files that ``collect_status`` fetches (``--json`` lists them all).
OPEN_FILES = 500
#: Open file statuses (files still waiting for their report).
OPEN_STATUSES = tuple(s.value for s in FILE_OPEN)
#: File ids listed per batch (a shared batch may carry thousands of files).
BATCH_FILE_IDS = 20


def _file_view(row: dict[str, Any], settings: Settings) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "status": row["status"],
        "route": row["route"],
        "rows_total": row["rows_total"],
        "rows_imported": row["rows_imported"],
        "rows_failed": row["rows_failed"],
        "rows_rejected": row["rows_rejected"],
        "results": str(results_dir(settings.paths, row["name"], row["id"])),
        "reported": row["reported_at"] is not None,
        "error": row["error"],
        "received_at": row["received_at"],
        "finished_at": row["finished_at"],
        "reported_at": row["reported_at"],
        "parts_waiting": row["parts_waiting"],
    }


async def collect_status(store: Store, settings: Settings, now: float) -> dict[str, Any]:
    """Gather what ``leadflow status`` shows, as a JSON-ready dict.

    Keys: ``counts`` {files, uploads}; ``daemon`` {running, pid, paused}; ``files`` [{id,
    name, status, route, rows_total, rows_imported, rows_failed, rows_rejected, results,
    reported, error, received_at, finished_at, reported_at, parts_waiting}] (the
    ``OPEN_FILES`` oldest open files and the ``RECENT_FILES`` newest finished, oldest first);
    ``files_not_listed`` (open files beyond ``OPEN_FILES``); ``packing`` {waiting_files,
    waiting_parts, waiting_rows, oldest_wait_s}: what waits in the FIFO for a pack;
    ``batches`` [{upload_id, files, file_ids (the first ``BATCH_FILE_IDS``), file_id and seq
    (None when several files ride in it), batchId, status, rows, age_s, next_poll_in_s}];
    ``slots`` {in_use, budget}; ``calls_today`` {day, calls, budget, by_endpoint};
    ``recent_errors`` [...]; ``retention`` {days {archive, rejected, results, work},
    deleted_last_24h {what: n}, deleted_total {what: n}}.
    """
    counts = await store.counts_by_status()
    outstanding = await store.at_marketo()
    waiting = await store.waiting_summary()
    riders = {u.id: await store.files_of_upload(u.id) for u in outstanding}
    day = quota_day(now)
    pid = daemon_running(settings.paths.database)
    paused = read_pause(settings.paths.database) if pid is not None else None
    files = [
        _file_view(r, settings)
        for r in await store.files_for_status(RECENT_FILES, open_limit=OPEN_FILES)
    ]
    open_total = sum(counts["files"].get(s, 0) for s in OPEN_STATUSES)
    open_listed = sum(1 for f in files if f["status"] in OPEN_STATUSES)
    return {
        "database": str(settings.paths.database),
        "daemon": {"running": pid is not None, "pid": pid or None, "paused": paused},
        "counts": counts,
        "files": files,
        "files_not_listed": max(open_total - open_listed, 0),
        "packing": {
            "waiting_files": waiting["files"],
            "waiting_parts": waiting["parts"],
            "waiting_rows": waiting["rows"],
            "oldest_wait_s": (
                round(max(now - waiting["oldest_queued_at"], 0.0), 1)
                if waiting["oldest_queued_at"] is not None else None
            ),
        },
        "batches": [
            {
                "upload_id": u.id,
                "files": len({r[0] for r in riders[u.id]}),
                "file_ids": list(dict.fromkeys(r[0] for r in riders[u.id]))[:BATCH_FILE_IDS],
                "file_id": riders[u.id][0][0] if len(riders[u.id]) == 1 else None,
                "seq": riders[u.id][0][2] if len(riders[u.id]) == 1 else None,
                "batchId": u.batch_id,
                "status": u.marketo_status,
                "rows": u.rows,
                "age_s": round(now - (u.submitted_at or u.created_at), 1),
                "next_poll_in_s": (
                    round(max(u.next_poll_at - now, 0.0), 1) if u.next_poll_at else None
                ),
            }
            for u in outstanding
        ],
        "slots": {"in_use": len(outstanding), "budget": settings.limits.import_slots},
        "calls_today": {
            "day": day,
            "calls": await store.calls_on(day),
            "budget": settings.limits.daily_call_budget,
            "by_endpoint": await store.usage_on(day),
        },
        "recent_errors": await store.recent_errors(10),
        "retention": {
            "days": days_of(settings),
            "deleted_last_24h": await store.expiry_counts(now - DAY_S),
            "deleted_total": await store.expiry_counts(0.0),
        },
    }
