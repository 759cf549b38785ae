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
from orchestrator.store import Store, store_target
from orchestrator.store.core import describe_target
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
        "instance": row["instance"],
    }


def _batch_view(u: Any, riders: list[tuple[int, str, int, int]], now: float,
                instance: str) -> dict[str, Any]:
    return {
        "upload_id": u.id,
        "instance": instance,
        "files": len({r[0] for r in riders}),
        "file_ids": list(dict.fromkeys(r[0] for r in riders))[:BATCH_FILE_IDS],
        "file_id": riders[0][0] if len(riders) == 1 else None,
        "seq": riders[0][2] if len(riders) == 1 else None,
        "batchId": u.batch_id,
        "status": u.marketo_status,
        "rows": u.rows,
        "age_s": round(now - (u.submitted_at or u.created_at), 1),
        "next_poll_in_s": (
            round(max(u.next_poll_at - now, 0.0), 1) if u.next_poll_at else None
        ),
    }


async def _instance_view(
    store: Store, settings: Settings, now: float, day: str, leases: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """One instance's figures, its batches at Marketo and what waits for a pack."""
    mine = settings.for_instance(store.instance)
    outstanding = await store.at_marketo()
    waiting = await store.waiting_summary()
    batches = [
        _batch_view(u, await store.files_of_upload(u.id), now, store.instance)
        for u in outstanding
    ]
    lease = leases.get(store.instance)
    view = {
        "name": store.instance,
        "base_url": mine.marketo.base_url,
        "slots": {"in_use": len(outstanding), "budget": mine.limits.import_slots},
        "calls_today": {
            "day": day,
            "calls": await store.calls_on(day),
            "budget": mine.limits.daily_call_budget,
            "by_endpoint": await store.usage_on(day),
        },
        "waiting_files": waiting["files"],
        "lease": lease,
    }
    return view, batches, waiting


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
    ``slots`` {in_use, budget}; ``calls_today`` {day, calls, budget, by_endpoint} (both of
    the first instance); ``instances`` [{name, base_url, slots, calls_today, waiting_files,
    lease}] (each Marketo instance; ``lease`` {instance, holder, epoch, acquired_at,
    expires_at, expires_in_s, held} or None without one); ``cluster`` {nodes [{node_id,
    host, pid, started_at, heartbeat_at, heartbeat_age_s}], leases [...]}; batches carry
    their ``instance``;
    ``recent_errors`` [...]; ``retention`` {days {archive, rejected, results, work},
    deleted_last_24h {what: n}, deleted_total {what: n}}.
    """
    counts = await store.counts_by_status()
    day = quota_day(now)
    leases = {
        lease["instance"]: {
            **lease, "expires_in_s": round(lease["expires_at"] - now, 1),
            "held": lease["holder"] is not None and lease["expires_at"] > now,
        }
        for lease in await store.leases()
    }
    instances: list[dict[str, Any]] = []
    batches: list[dict[str, Any]] = []
    waiting = {"files": 0, "parts": 0, "rows": 0, "oldest_queued_at": None}
    for name in settings.instance_names():
        view, theirs, waits = await _instance_view(
            store.for_instance(name), settings, now, day, leases
        )
        instances.append(view)
        batches.extend(theirs)
        for key in ("files", "parts", "rows"):
            waiting[key] += waits[key]
        if waits["oldest_queued_at"] is not None:
            oldest = waiting["oldest_queued_at"]
            waiting["oldest_queued_at"] = min(oldest or waits["oldest_queued_at"],
                                              waits["oldest_queued_at"])
    nodes = await store.nodes()
    pid = daemon_running(settings.paths.database)
    paused = read_pause(settings.paths.database) if pid is not None else None
    files = [
        _file_view(r, settings)
        for r in await store.files_for_status(RECENT_FILES, open_limit=OPEN_FILES)
    ]
    open_total = sum(counts["files"].get(s, 0) for s in OPEN_STATUSES)
    open_listed = sum(1 for f in files if f["status"] in OPEN_STATUSES)
    return {
        "database": describe_target(store_target(settings)),
        "daemon": {
            # On PostgreSQL the nodes say they run (no lock file: they may be elsewhere).
            "running": pid is not None or any(
                now - n["heartbeat_at"] <= 3 * settings.daemon.lease_s for n in nodes
            ),
            "pid": pid or None,
            "paused": paused,
        },
        "instances": instances,
        "cluster": {
            "nodes": [
                {**n, "heartbeat_age_s": round(max(now - n["heartbeat_at"], 0.0), 1)}
                for n in nodes
            ],
            "leases": list(leases.values()),
        },
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
        "batches": batches,
        # The first instance's (the one of a simple setup); ``instances`` has each one's.
        "slots": instances[0]["slots"],
        "calls_today": instances[0]["calls_today"],
        "recent_errors": await store.recent_errors(10),
        "retention": {
            "days": days_of(settings),
            "deleted_last_24h": await store.expiry_counts(now - DAY_S),
            "deleted_total": await store.expiry_counts(0.0),
        },
    }
