"""``leadflow status`` and ``leadflow migrate``: read-only views of the database.

``status`` (and ``retry``) never create a database: a missing one is one line naming the
resolved path (relative ``paths.database`` resolves against the working directory) and exit 1.
``migrate`` and ``run`` create it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.commands.output import print_out
from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.window.prometheus import render_prometheus
from orchestrator.window.status import collect_status


def missing_database(settings: Settings) -> str | None:
    """Return the one-line error when the database does not exist, else None.

    ``status`` and ``retry`` use it so that running them from another folder does not
    silently create an empty database (a relative ``paths.database`` resolves against the
    working directory).
    """
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
    settings.paths.database.parent.mkdir(parents=True, exist_ok=True)
    async with Store.open(settings.paths.database):
        pass
    print_out(f"database {settings.paths.database} is up to date")
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
    slots = data["slots"]
    lines.append(f"slots:    {slots['in_use']} of {slots['budget']} in use at Marketo")
    calls = data["calls_today"]
    lines.append(f"calls:    {calls['calls']} of {calls['budget']} today ({calls['day']})")
    if data.get("files"):
        lines.append("files (id  status  rows imported/failed/rejected of total  results):")
        for f in data["files"]:
            rows = "/".join(
                "-" if f[k] is None else str(f[k])
                for k in ("rows_imported", "rows_failed", "rows_rejected")
            )
            lines.append(
                f"  {f['id']:>5}  {f['name']}  {f['status']}  rows {rows} of {f['rows_total']}"
                f"  {f['results']}"
            )
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
            where = f"  file {e['file_id']}" if e["file_id"] is not None else ""
            lines.append(f"  {when}  {e['code'] or '-'}{where}  {e['message']}")
    return "\n".join(lines)


async def status_command(
    settings: Settings, *, as_json: bool = False, prometheus: bool = False
) -> int:
    """Print the status of the database in ``settings``. Returns the exit code.

    Args:
        as_json: print one JSON object instead of lines for a person.
        prometheus: print Prometheus exposition text (``orchestrator.window.prometheus``).
    """
    missing = missing_database(settings)
    if missing is not None:
        sys.stderr.write(missing + "\n")
        return 1
    async with Store.open(settings.paths.database) as store:
        data = await collect_status(store, settings, time.time())
    if prometheus:
        print_out(render_prometheus(data).rstrip("\n"))
    else:
        print_out(json.dumps(data, indent=2) if as_json else render_status(data))
    return 0
