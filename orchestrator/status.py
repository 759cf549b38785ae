"""``leadflow status`` and ``leadflow migrate``: read-only views of the database."""

from __future__ import annotations

import json
import time
from typing import Any

from orchestrator.cli_output import print_out
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.timeutil import quota_day


async def migrate_command(settings: Settings) -> int:
    """Create or upgrade the database; print its path. Returns the exit code."""
    settings.paths.database.parent.mkdir(parents=True, exist_ok=True)
    async with Store.open(settings.paths.database):
        pass
    print_out(f"database {settings.paths.database} is up to date")
    return 0


async def collect_status(store: Store, settings: Settings, now: float) -> dict[str, Any]:
    """Gather what ``leadflow status`` shows, as a JSON-ready dict.

    Keys: ``counts`` {files, uploads}; ``batches`` [{upload_id, file_id, seq, batchId,
    status, age_s, next_poll_in_s}]; ``slots`` {in_use, budget}; ``calls_today`` {day, calls, budget,
    by_endpoint}; ``recent_errors`` [...].
    """
    counts = await store.counts_by_status()
    outstanding = await store.at_marketo()
    day = quota_day(now)
    return {
        "database": str(settings.paths.database),
        "counts": counts,
        "batches": [
            {
                "upload_id": u.id,
                "file_id": u.file_id,
                "seq": u.seq,
                "batchId": u.batch_id,
                "status": u.marketo_status,
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
    }


def render_status(data: dict[str, Any]) -> str:
    """Render the status dict as lines for a person."""
    lines = [f"database: {data['database']}"]
    files = ", ".join(f"{k} {v}" for k, v in data["counts"]["files"].items() if v)
    uploads = ", ".join(f"{k} {v}" for k, v in data["counts"]["uploads"].items() if v)
    lines.append(f"files:    {files or 'none'}")
    lines.append(f"uploads:  {uploads or 'none'}")
    slots = data["slots"]
    lines.append(f"slots:    {slots['in_use']} of {slots['budget']} in use at Marketo")
    calls = data["calls_today"]
    lines.append(f"calls:    {calls['calls']} of {calls['budget']} today ({calls['day']})")
    if data["batches"]:
        lines.append("batches:")
        for b in data["batches"]:
            lines.append(
                f"  batchId {b['batchId']}  {b['status'] or '?':<9}  file {b['file_id']}"
                f" upload {b['seq']}  age {b['age_s']:.0f}s"
                + (f"  next poll in {b['next_poll_in_s']:.0f}s"
                   if b.get("next_poll_in_s") is not None else "")
            )
    if data["recent_errors"]:
        lines.append("recent errors:")
        for e in data["recent_errors"]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))
            lines.append(f"  {when}  {e['code'] or '-'}  file {e['file_id']}  {e['message']}")
    return "\n".join(lines)


async def status_command(
    settings: Settings, *, as_json: bool = False, prometheus: bool = False
) -> int:
    """Print the status of the database in ``settings``. Returns the exit code.

    Args:
        as_json: print one JSON object instead of lines for a person.
        prometheus: print Prometheus exposition text (``orchestrator.metrics``).
    """
    async with Store.open(settings.paths.database) as store:
        data = await collect_status(store, settings, time.time())
    if prometheus:
        from orchestrator.metrics import render_prometheus

        print_out(render_prometheus(data).rstrip("\n"))
    else:
        print_out(json.dumps(data, indent=2) if as_json else render_status(data))
    return 0
