"""The status page at ``/``: plain HTML a person reads at a glance; it refreshes itself.

No JavaScript: a ``<meta http-equiv="refresh">`` reloads it every `REFRESH_S` seconds
(``/?refresh=N`` for another interval, 1 to 3600). Every value from a file or from Marketo
is escaped. It shows the daemon's state (running, paused and why), Marketo's slots in use,
calls today against the budget, the files in flight with their uploads done/total and rows
so far, the last finished files with their result and links to their reports, and the recent
errors. `summary_line` is the same at a glance in one line (systemd's ``STATUS=``).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

from orchestrator.window.api import Progress
from orchestrator.window.metrics import OPEN_STATUSES, Live

#: Seconds between two reloads of the page.
REFRESH_S = 5
#: Files in flight shown on the page (the oldest first); more are counted.
IN_FLIGHT_SHOWN = 50

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:72rem;padding:0 1rem;
color:#1d1d1f}
h1{font-size:1.4rem;margin:0 0 .3rem}h2{font-size:1.1rem;margin:1.6rem 0 .4rem}
.state{padding:.5rem .8rem;border-radius:.4rem;font-weight:600}
.ok{background:#e3f4e6}.warn{background:#fdf0d5}.bad{background:#fbe1e1}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3rem .5rem;
border-bottom:1px solid #e4e4e7;vertical-align:top}th{font-weight:600;background:#f6f6f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.complete{color:#17702c}.partial{color:#9a5b00}.rejected,.empty,.duplicate{color:#a11}
footer{margin-top:2rem;color:#666;font-size:.85rem}progress{width:6rem}
"""


@dataclass(frozen=True, slots=True)
class PageData:
    """Everything the page shows.

    Attributes:
        status: a ``status.collect_status`` dict.
        live: the daemon's live state.
        ready: ``/readyz``'s body.
        progress: uploads done/total and rows so far, by file id (files in flight).
        reports: ``{name: url}`` of report files, by file id (finished files).
        now: epoch seconds.
    """

    status: dict[str, Any]
    live: Live
    ready: dict[str, Any]
    progress: dict[int, Progress]
    reports: dict[int, dict[str, str]]
    now: float


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _ago(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _n(value: Any) -> str:
    return "-" if value is None else f"{value:,}"


def in_flight(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The files not finished yet (oldest first)."""
    return [f for f in status["files"] if f["status"] in OPEN_STATUSES]


def finished(status: dict[str, Any]) -> list[dict[str, Any]]:
    """The finished files the status lists (newest first)."""
    return sorted((f for f in status["files"] if f["status"] not in OPEN_STATUSES),
                  key=lambda f: f["id"], reverse=True)


def summary_line(status: dict[str, Any], live: Live) -> str:
    """One line for systemd's ``STATUS=``: files in flight, slots, calls, pauses."""
    files = status["counts"]["files"]
    flying = sum(files.get(s, 0) for s in OPEN_STATUSES)
    slots = status["slots"]
    calls = status["calls_today"]
    line = (
        f"{flying} files in flight, {status['counts']['uploads'].get('queued', 0)} uploads "
        f"queued; Marketo slots {slots['in_use']}/{slots['budget']}; calls today "
        f"{calls['calls']}/{calls['budget']}"
    )
    if live.credentials_refused:
        line += "; PAUSED: credentials refused"
    elif live.quota_paused:
        line += "; PAUSED: daily quota used up"
    elif not live.marketo_reachable:
        line += "; Marketo unreachable"
    return line


def _state(data: PageData) -> str:
    ready = data.ready
    if ready.get("ready"):
        return '<p class="state ok" id="state">Running: importing normally.</p>'
    reason = ready.get("reason", "")
    css = "warn" if reason in ("starting", "stopping", "paused_quota") else "bad"
    words = {
        "starting": "Starting",
        "stopping": "Stopping",
        "store_not_answering": "Not ready: the database does not answer",
        "credentials_refused": "Work paused: Marketo refuses the credentials",
        "paused_quota": "Work paused: the daily call quota is used up",
        "marketo_unreachable": "Marketo does not answer",
    }
    return (f'<p class="state {css}" id="state">{_e(words.get(reason, reason))}'
            f" ({_e(ready.get('message', ''))})</p>")


def _marketo(data: PageData) -> str:
    status = data.status
    slots = status["slots"]
    calls = status["calls_today"]
    queued = sum(1 for b in status["batches"] if b["status"] == "Queued")
    importing = sum(1 for b in status["batches"] if b["status"] == "Importing")
    return (
        '<section id="marketo"><h2>Marketo</h2><ul>'
        f"<li>Import slots in use: <b>{slots['in_use']} of {slots['budget']}</b>"
        f" ({importing} importing, {queued} queued)</li>"
        f"<li>Calls today: <b>{calls['calls']:,} of {calls['budget']:,}</b>"
        f" (quota day {_e(calls['day'])}, America/Chicago)</li>"
        f"<li>Calls in the last 20 s: {data.live.calls_in_window} of "
        f"{data.live.calls_per_20s}</li>"
        "</ul></section>"
    )


def _flying(data: PageData) -> str:
    files = in_flight(data.status)
    head = f'<section id="in-flight"><h2>Files in flight ({len(files)})</h2>'
    if not files:
        return head + "<p>None: the inbox is empty and every file is finished.</p></section>"
    rows = []
    for f in files[:IN_FLIGHT_SHOWN]:
        p = data.progress.get(f["id"])
        done, total = (p.uploads_done, p.uploads_total) if p else (0, 0)
        imported = p.rows_imported if p else 0
        failed = p.rows_failed if p else 0
        bar = f'<progress max="{total}" value="{done}"></progress> ' if total else ""
        waited = _ago(data.now - f["received_at"]) if f.get("received_at") else ""
        rows.append(
            f'<tr id="file-{f["id"]}" data-status="{_e(f["status"])}">'
            f'<td class="num">{f["id"]}</td><td>{_e(f["name"])}</td><td>{_e(f["route"] or "")}'
            f'</td><td>{_e(f["status"])}</td>'
            f'<td class="uploads">{bar}{done} of {total} uploads done</td>'
            f'<td class="rows">{imported:,} imported, {failed:,} failed, '
            f'{_n(f["rows_rejected"])} rejected of {_n(f["rows_total"])}</td>'
            f"<td>{waited}</td></tr>"
        )
    more = len(files) - IN_FLIGHT_SHOWN
    tail = f"<p>and {more} more</p>" if more > 0 else ""
    return (
        head + "<table><thead><tr><th>id</th><th>file</th><th>route</th><th>status</th>"
        "<th>uploads</th><th>rows so far</th><th>waiting</th></tr></thead><tbody>"
        + "".join(rows) + "</tbody></table>" + tail + "</section>"
    )


def _done(data: PageData) -> str:
    files = finished(data.status)
    head = '<section id="finished"><h2>Last finished files</h2>'
    if not files:
        return head + "<p>None yet.</p></section>"
    rows = []
    for f in files:
        links = " ".join(
            f'<a href="{_e(url)}">{_e(name)}</a>'
            for name, url in data.reports.get(f["id"], {}).items()
        )
        error = f'<br><small>{_e(f["error"])}</small>' if f.get("error") else ""
        rows.append(
            f'<tr id="file-{f["id"]}" data-status="{_e(f["status"])}">'
            f'<td class="num">{f["id"]}</td><td>{_e(f["name"])}</td>'
            f'<td class="result {_e(f["status"])}">{_e(f["status"])}{error}</td>'
            f'<td class="rows">{_n(f["rows_imported"])} imported, {_n(f["rows_failed"])} '
            f'failed, {_n(f["rows_rejected"])} rejected of {_n(f["rows_total"])}</td>'
            f"<td>{_when(f.get('reported_at') or f.get('finished_at'))}</td>"
            f'<td class="reports">{links}</td></tr>'
        )
    return (
        head + "<table><thead><tr><th>id</th><th>file</th><th>result</th><th>rows</th>"
        "<th>finished</th><th>reports</th></tr></thead><tbody>" + "".join(rows)
        + "</tbody></table></section>"
    )


def _errors(data: PageData) -> str:
    errors = data.status["recent_errors"]
    head = '<section id="errors"><h2>Recent errors</h2>'
    if not errors:
        return head + "<p>None.</p></section>"
    rows = "".join(
        f"<tr><td>{_when(e['at'])}</td><td>{_e(e['code'] or '-')}</td>"
        f"<td>{_e('' if e['file_id'] is None else e['file_id'])}</td>"
        f"<td>{_e(e['message'])}</td></tr>"
        for e in errors
    )
    return (head + "<table><thead><tr><th>when</th><th>code</th><th>file</th><th>message</th>"
            "</tr></thead><tbody>" + rows + "</tbody></table></section>")


def render_page(data: PageData, refresh_s: int = REFRESH_S) -> str:
    """Return the status page's HTML (UTF-8 text)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{int(refresh_s)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>leadflow</title><style>{_STYLE}</style></head><body>"
        "<h1>leadflow</h1>" + _state(data) + _marketo(data) + _flying(data) + _done(data)
        + _errors(data)
        + f"<footer>Read-only. Refreshes every {int(refresh_s)} s; updated "
        f"{_when(data.now)}. Also: <a href=\"/api/status\">/api/status</a> (JSON), "
        '<a href="/metrics">/metrics</a> (Prometheus), <a href="/readyz">/readyz</a>.'
        "</footer></body></html>"
    )
