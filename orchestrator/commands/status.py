"""``leadflow status`` and ``leadflow migrate``: read-only views of the database.

``status`` (and ``retry``) never create a database: a missing one is one line naming the
resolved path (relative ``paths.database`` resolves against the working directory) and exit 1.
``migrate`` and ``run`` create it.

Exit codes of ``status``: 0 shown, 1 no database, 2 a bad setting. With ``--exit-code`` (for
scripts, as an LSB init script's ``status``): 0 a daemon runs (it holds the database's lock;
it may be paused), 3 no daemon runs (everything is shown anyway). Without it the exit code
stays 0 so that scripts running ``leadflow status`` under ``set -e`` keep working;
``--prometheus`` also has ``leadflow_daemon_running``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.commands.output import print_out
from orchestrator.errors import UnusablePath
from orchestrator.settings import Settings
from orchestrator.store import Store, store_target
from orchestrator.store.core import describe_target, is_postgres_url
from orchestrator.window.prometheus import render_prometheus
from orchestrator.window.status import OPEN_STATUSES, collect_status

#: Lines of one list (waiting files, batches) printed for a person before "... and N more".
LIST_LINES = 20
#: Exit code of ``status`` when no daemon runs (as LSB's "program is not running").
EXIT_NOT_RUNNING = 3
#: File statuses shown with their reason (``files.error``) on the next line.
WITH_REASON = frozenset({"rejected", "partial", "empty", "duplicate"})


def missing_database(settings: Settings) -> str | None:
    """Return the one-line error when the database does not exist, else None.

    ``status`` and ``retry`` use it so that running them from another folder does not
    silently create an empty database (a relative ``paths.database`` resolves against the
    working directory).
    """
    if settings.store.url is not None:
        return None
    path = settings.paths.database
    if path.exists():
        return None
    return (
        f"leadflow: no database at {path} (relative paths.database resolves against the "
        f"working directory, here {Path.cwd()}): run from the daemon's folder, pass its "
        "--config, or set paths.database to an absolute path; `leadflow migrate` creates one"
    )


async def migrate_command(settings: Settings) -> int:
    """Create or upgrade the database; print its path. Returns the exit code."""
    target = store_target(settings)
    if not is_postgres_url(target):
        try:
            settings.paths.database.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UnusablePath(
                "paths.database", str(settings.paths.database),
                f"cannot create its folder: {exc.strerror or exc}",
            ) from None
    async with Store.open(target):
        pass
    print_out(f"database {describe_target(target)} is up to date")
    return 0


def render_status(data: dict[str, Any]) -> str:
    """Render the status dict as lines for a person."""
    lines = [f"database: {data['database']}"]
    daemon = data.get("daemon") or {}
    if daemon.get("running"):
        pid = f" (pid {daemon['pid']})" if daemon.get("pid") else ""
        lines.append(f"daemon:   running{pid}")
        if daemon.get("paused"):
            lines.append(f"          work paused: {daemon['paused'].get('message', '')}")
    else:
        lines.append("daemon:   not running")
    files = ", ".join(f"{k} {v}" for k, v in data["counts"]["files"].items() if v)
    uploads = ", ".join(f"{k} {v}" for k, v in data["counts"]["uploads"].items() if v)
    lines.append(f"files:    {files or 'none'}")
    lines.append(f"uploads:  {uploads or 'none'}")
    instances = data.get("instances") or []
    if len(instances) > 1:
        for inst in instances:
            slots, calls = inst["slots"], inst["calls_today"]
            lines.append(
                f"instance: {inst['name']} ({inst['base_url']}): slots {slots['in_use']} of "
                f"{slots['budget']} in use, calls {calls['calls']} of {calls['budget']} today"
            )
    slots = data["slots"]
    lines.append(f"slots:    {slots['in_use']} of {slots['budget']} in use at Marketo")
    packing = data.get("packing") or {}
    if packing.get("waiting_files"):
        lines.append(
            f"waiting:  {packing['waiting_files']} files ({packing['waiting_parts']} parts, "
            f"{packing['waiting_rows']} rows) wait for a pack, oldest "
            f"{packing['oldest_wait_s'] or 0:.0f}s"
        )
    else:
        lines.append("waiting:  no file waits for a pack")
    calls = data["calls_today"]
    lines.append(f"calls:    {calls['calls']} of {calls['budget']} today ({calls['day']})")
    if data.get("retention"):
        lines.append(f"retention: {_retention_line(data['retention'])}")
    cluster = data.get("cluster") or {}
    for lease in cluster.get("leases", []):
        who = (f"held by {lease['holder']} (epoch {lease['epoch']}, expires in "
               f"{lease['expires_in_s']:.1f}s)" if lease["held"] else "not held")
        lines.append(f"lease:    {lease['instance']}: {who}")
    for node in cluster.get("nodes", []):
        lines.append(f"node:     {node['node_id']} (host {node['host']}, pid {node['pid']}), "
                     f"heartbeat {node['heartbeat_age_s']:.1f}s ago")
    if data.get("files"):
        lines.append("files (id  status  rows imported/failed/rejected of total  results):")
        waiting = [f for f in data["files"] if f["status"] in OPEN_STATUSES]
        finished = [f for f in data["files"] if f["status"] not in OPEN_STATUSES]
        for f in finished:
            lines.extend(_file_lines(f))
        for f in waiting[:LIST_LINES]:
            lines.extend(_file_lines(f))
        more = len(waiting[LIST_LINES:]) + int(data.get("files_not_listed") or 0)
        if more:
            lines.append(f"  ... and {more} more files waiting (received, queued or "
                         "reporting; --json lists them)")
    if data["batches"]:
        lines.append("batches:")
        for b in data["batches"][:LIST_LINES]:
            who = (f"file {b['file_ids'][0]}" if b["files"] == 1 and b["file_ids"]
                   else f"{b['files']} files")
            lines.append(
                f"  batchId {b['batchId']}  {b['status'] or '?':<9}  {who}"
                f"  {b['rows']} rows  age {b['age_s']:.0f}s"
                + (f"  next poll in {b['next_poll_in_s']:.0f}s"
                   if b.get("next_poll_in_s") is not None else "")
            )
        if len(data["batches"]) > LIST_LINES:
            lines.append(f"  ... and {len(data['batches']) - LIST_LINES} more batches at "
                         "Marketo (--json lists them)")
    if data["recent_errors"]:
        lines.append("recent errors:")
        for e in data["recent_errors"]:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["at"]))
            where = f"  file {e['file_id']}" if e["file_id"] is not None else ""
            lines.append(f"  {when}  {e['code'] or '-'}{where}  {e['message']}")
    return "\n".join(lines)


def _retention_line(keep: dict[str, Any]) -> str:
    """``archive 30 d, rejected 7 d, results kept, work 14 d; deleted in the last 24 h: ...``."""
    days = keep["days"]
    if not any(days.values()):
        return "off: everything is kept (see the [retention] settings)"
    kept = ", ".join(f"{what} {value:g} d" if value else f"{what} kept"
                     for what, value in days.items())
    recent = keep.get("deleted_last_24h") or {}
    deleted = ", ".join(f"{what} {n}" for what, n in sorted(recent.items())) or "nothing"
    total = sum((keep.get("deleted_total") or {}).values())
    return f"{kept}; deleted in the last 24 h: {deleted} ({total} in all)"


def _file_lines(f: dict[str, Any]) -> list[str]:
    """One file's line for a person, and its reason below when it did not fully import."""
    rows = "/".join(
        "-" if f[k] is None else str(f[k])
        for k in ("rows_imported", "rows_failed", "rows_rejected")
    )
    head = f"  {f['id']:>5}  {f['name']}  {f['status']}  rows {rows} of {f['rows_total']}"
    out = [f"{head}  {f['results']}"]
    if f["status"] in WITH_REASON and f.get("error"):
        reason = " ".join(str(f["error"]).split())
        out.append(f"         reason: {reason[:300]}{'...' if len(reason) > 300 else ''}")
    return out


async def status_command(
    settings: Settings, *, as_json: bool = False, prometheus: bool = False,
    exit_code: bool = False,
) -> int:
    """Print the status of the database in ``settings``. Returns the exit code.

    Args:
        as_json: print one JSON object instead of lines for a person.
        prometheus: print Prometheus exposition text (``orchestrator.window.prometheus``).
        exit_code: return ``EXIT_NOT_RUNNING`` (3) when no daemon runs.

    Returns:
        0 (with ``exit_code``: only when a daemon runs, else 3), 1 when there is no
        database.
    """
    missing = missing_database(settings)
    if missing is not None:
        sys.stderr.write(missing + "\n")
        return 1
    async with Store.open(store_target(settings)) as store:
        data = await collect_status(store, settings, time.time())
    if prometheus:
        print_out(render_prometheus(data).rstrip("\n"))
    else:
        print_out(json.dumps(data, indent=2) if as_json else render_status(data))
    return EXIT_NOT_RUNNING if exit_code and not data["daemon"]["running"] else 0
