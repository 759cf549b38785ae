"""The demo's summary: reports and the simulator's figures, checked against what was sent.

`build_summary` is pure: it takes the generated files, the ``report.json`` documents, the
simulator's statistics and the leads it found for the spot checks, and returns the JSON-ready
summary the demo prints and writes to ``summary.json``. `render_summary` turns it into rich
renderables for a person.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.demo.files import ROUTE_FOLDER, ROUTE_LIST_ID, DemoFile

#: Marketo's queue of import jobs per instance (docs/reference/marketo-api.md §2.4).
MARKETO_QUEUE = 10
_ROWS = ("total", "imported", "failed", "warned", "rejected")


def read_reports(results: Path) -> dict[str, dict[str, Any]]:
    """Read every ``<results>/<name>.<id>/report.json``, keyed by the file's base name.

    A folder without a readable report is skipped (the summary then marks the file missing).
    When a name has several reports, the one with the highest ``file_id`` wins.
    """
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(results.glob("*/report.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(report, dict):
            continue
        report["_path"] = str(path)
        name = Path(str(report.get("file", path.parent.name))).name
        previous = found.get(name)
        if previous is None or int(report.get("file_id") or 0) >= int(
            previous.get("file_id") or 0
        ):
            found[name] = report
    return found


def _check_file(
    demo: DemoFile, report: Mapping[str, Any] | None, lead: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Compare one file's report (and its spot lead) with what it must reach."""
    exp = demo.expected
    expected_rows = {
        "total": exp.total, "imported": exp.imported, "failed": exp.failed,
        "warned": exp.warned, "rejected": exp.rejected,
    }
    entry: dict[str, Any] = {
        "file": demo.name,
        "file_id": None,
        "shows": demo.shows,
        "size_bytes": demo.size_bytes,
        "expected": {"status": exp.status, "rows": expected_rows, "min_uploads": exp.min_uploads},
        "status": None,
        "rows": None,
        "uploads": 0,
        "batch_ids": [],
        "report": None,
        "encoding": None,
        "problems": [],
    }
    problems: list[str] = entry["problems"]
    if report is None:
        problems.append("no report.json was written")
    else:
        rows = report.get("rows") or {}
        uploads = report.get("uploads") or []
        entry.update(
            file_id=report.get("file_id"),
            status=report.get("status"),
            rows={k: int(rows.get(k) or 0) for k in _ROWS},
            uploads=len(uploads),
            batch_ids=[u.get("batchId") for u in uploads if u.get("batchId") is not None],
            report=report.get("_path"),
            encoding=report.get("encoding"),
        )
        if entry["status"] != exp.status:
            problems.append(f"status {entry['status']}, expected {exp.status}")
        for key, want in expected_rows.items():
            if entry["rows"][key] != want:
                problems.append(f"rows.{key} {entry['rows'][key]}, expected {want}")
        if len(uploads) < exp.min_uploads:
            problems.append(f"{len(uploads)} uploads, expected at least {exp.min_uploads}")
    entry["spot"] = _spot_check(demo, lead, problems)
    return entry


def _spot_check(
    demo: DemoFile, lead: Mapping[str, Any] | None, problems: list[str]
) -> dict[str, Any] | None:
    """Check that the file's first lead reached the simulator with its name intact."""
    if not demo.spot:
        return None
    spot: dict[str, Any] = {"email": demo.spot["email"], "sent": dict(demo.spot), "found": None}
    if lead is None:
        problems.append(f"lead {demo.spot['email']} is not in the simulator's lead store")
        return spot
    spot["found"] = {
        "firstName": lead.get("firstName"),
        "lastName": lead.get("lastName"),
        "listIds": list(lead.get("listIds") or []),
    }
    for key in ("firstName", "lastName"):
        if lead.get(key) != demo.spot[key]:
            problems.append(f"{key} arrived as {lead.get(key)!r}, sent {demo.spot[key]!r}")
    in_list = ROUTE_LIST_ID in (lead.get("listIds") or [])
    if demo.name.startswith(f"{ROUTE_FOLDER}/") and not in_list:
        problems.append(f"lead {demo.spot['email']} is not in static list {ROUTE_LIST_ID}")
    return spot


def simulator_figures(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Pick the figures the summary shows from one instance's ``/_sim/stats`` entry."""
    batches = stats.get("batches") or []
    return {
        "leads": int(stats.get("leads") or 0),
        "batches": len(batches),
        "rows_imported_by_batches": sum(int(b.get("imported") or 0) for b in batches),
        "peak_queued_or_importing": int(stats.get("peak_queued_or_importing") or 0),
        "slot_busy_s": [round(float(s), 1) for s in stats.get("slot_busy_s") or []],
        "peak_calls_per_window": int(stats.get("peak_calls_per_window") or 0),
        "peak_concurrent_calls": int(stats.get("peak_concurrent_calls") or 0),
        "calls_total": int(stats.get("calls_total") or 0),
        "calls_by_endpoint": dict(stats.get("calls_by_endpoint") or {}),
        "errors": dict(stats.get("errors") or {}),
        "tokens_minted": int(stats.get("tokens_minted") or 0),
        "batch_list": [
            {k: b.get(k) for k in ("batchId", "status", "rows", "imported", "failed", "warned")}
            for b in batches
        ],
        "list_members": {str(k): v for k, v in (stats.get("list_members") or {}).items()},
    }


def _check_batches(entries: list[dict[str, Any]], reports: Mapping[str, Mapping[str, Any]],
                   sim: Mapping[str, Any]) -> list[str]:
    """Every upload's figures in a report must be those of its batch at the simulator."""
    by_id = {b["batchId"]: b for b in sim["batch_list"]}
    problems: list[str] = []
    for entry in entries:
        report = reports.get(Path(entry["file"]).name) or {}
        for upload in report.get("uploads") or []:
            batch = by_id.get(upload.get("batchId"))
            if batch is None:
                problems.append(f"{entry['file']}: batch {upload.get('batchId')} is unknown "
                                "to the simulator")
                continue
            ours = (upload.get("numOfLeadsProcessed"), upload.get("numOfRowsFailed"),
                    upload.get("numOfRowsWithWarning"))
            theirs = (batch["imported"], batch["failed"], batch["warned"])
            if ours != theirs:
                problems.append(f"{entry['file']}: batch {batch['batchId']} reported "
                                f"{ours}, the simulator says {theirs}")
    return problems


def build_summary(
    files: list[DemoFile],
    reports: Mapping[str, Mapping[str, Any]],
    stats: Mapping[str, Any],
    leads: Mapping[str, Mapping[str, Any] | None],
    *,
    elapsed_s: float,
    where: Mapping[str, str],
) -> dict[str, Any]:
    """Build the summary of one demo run.

    Args:
        files: what the demo wrote, with the outcome each must reach.
        reports: ``report.json`` documents keyed by file base name (`read_reports`).
        stats: the simulator's ``/_sim/stats`` entry for its instance.
        leads: the lead the simulator holds for each spot-check email (None if absent).
        elapsed_s: wall-clock seconds of the run.
        where: folders and files to show (``demo_dir``, ``inbox``, ``results``, ``log``...).

    Returns:
        ``{"ok", "problems", "elapsed_s", "where", "files": [...], "totals": {...},
        "simulator": {...}}``; ``ok`` is true when every file reached its expected status and
        figures, every spot lead arrived intact, and the simulator's lead store holds exactly
        the rows the reports say were imported.
    """
    entries = [
        _check_file(f, reports.get(Path(f.name).name),
                    leads.get(f.spot["email"]) if f.spot else None)
        for f in files
    ]
    totals = {k: sum((e["rows"] or {}).get(k, 0) for e in entries) for k in _ROWS}
    totals["uploads"] = sum(e["uploads"] for e in entries)
    sim = simulator_figures(stats)
    problems = [f"{e['file']}: {p}" for e in entries for p in e["problems"]]
    problems += _check_batches(entries, reports, sim)
    route = next((e for e in entries if e["file"].startswith(f"{ROUTE_FOLDER}/")), None)
    members = sim["list_members"].get(str(ROUTE_LIST_ID))
    if route is not None and members is not None and members != (route["rows"] or {}).get(
        "imported"
    ):
        problems.append(f"static list {ROUTE_LIST_ID} has {members} members; "
                        f"{route['file']} imported {(route['rows'] or {}).get('imported')}")
    if sim["leads"] != totals["imported"]:
        problems.append(
            f"the simulator holds {sim['leads']} leads; the reports say {totals['imported']} "
            "rows were imported"
        )
    if sim["peak_queued_or_importing"] > MARKETO_QUEUE:
        problems.append(f"Marketo's queue peaked at {sim['peak_queued_or_importing']} jobs")
    return {
        "ok": not problems,
        "problems": problems,
        "elapsed_s": round(elapsed_s, 1),
        "where": dict(where),
        "files": entries,
        "totals": totals,
        "simulator": sim,
    }


def _n(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def render_summary(summary: Mapping[str, Any]) -> RenderableType:
    """Render the summary as a table, the simulator's figures and where to look next."""
    table = Table(title="leadflow demo: results", title_justify="left", expand=False,
                  box=box.SIMPLE_HEAD)
    table.add_column("", width=1)
    table.add_column("file", overflow="fold")
    table.add_column("status")
    for head in ("imported", "failed", "warned", "rejected", "batches"):
        table.add_column(head, justify="right")
    table.add_column("report", overflow="fold")
    demo_dir = Path(summary["where"].get("demo_dir", "."))
    for e in summary["files"]:
        rows = e["rows"] or {}
        mark = Text("✓", style="green") if not e["problems"] else Text("✗", style="bold red")
        report = e["report"]
        if report:
            try:
                report = str(Path(report).parent.relative_to(demo_dir)) + "/"
            except ValueError:
                report = str(Path(report).parent) + "/"
        table.add_row(
            mark, e["file"], e["status"] or "missing",
            *(_n(rows.get(k)) for k in ("imported", "failed", "warned", "rejected")),
            _n(len(e["batch_ids"])), report or "-",
        )
    t = summary["totals"]
    table.add_row("", Text("total", style="bold"), "",
                  *(_n(t[k]) for k in ("imported", "failed", "warned", "rejected")),
                  _n(t["uploads"]), "")
    sim = summary["simulator"]
    calls = ", ".join(f"{k} {v}" for k, v in sorted(sim["calls_by_endpoint"].items()))
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(sim["errors"].items())) or "none"
    busy = " s, ".join(str(s) for s in sim["slot_busy_s"])
    lines = [
        Text(f"Marketo (simulated): {sim['leads']:,} leads in the lead store, "
             f"{sim['batches']} import batches; queue peaked at {sim['peak_queued_or_importing']}"
             f" of {MARKETO_QUEUE} jobs; import slots busy {busy} s (simulated time)."),
        Text(f"API calls: {sim['calls_total']} ({calls}); peak {sim['peak_calls_per_window']} "
             f"per 20 s, {sim['peak_concurrent_calls']} at once; errors: {errors}."),
    ]
    if summary["ok"]:
        lines.append(Text(f"Every file reached its expected result in {summary['elapsed_s']} s.",
                          style="bold green"))
    else:
        lines.append(Text("Problems:", style="bold red"))
        lines.extend(Text(f"  - {p}", style="red") for p in summary["problems"])
    return Group(table, *lines)


def render_next_steps(summary: Mapping[str, Any]) -> RenderableType:
    """Where to look next: reports, failures, the log, status, and the real Marketo guide."""
    w = summary["where"]
    cmd = w.get("leadflow", "leadflow")
    bad = next((e for e in summary["files"] if e["file"] == "newsletter-signups.csv"), None)
    lines = [
        Text("Where to look next", style="bold"),
        Text(f"  reports:   {w['results']}/<file>.<id>/report.json, failures.csv, warnings.csv"),
    ]
    if bad and bad["report"]:
        folder = Path(bad["report"]).parent
        lines.append(Text(f"  rejected and warned rows: {folder}/failures.csv, warnings.csv"))
    first = next((e["file_id"] for e in summary["files"] if e["file_id"] is not None), 1)
    lines += [
        Text(f"  summary:   {w['summary']}"),
        Text(f"  log:       {w['log']} (JSON lines; follow one file with "
             f"grep '\"file_id\": {first},' {w['log']})"),
        Text(f"  status:    {cmd} status --config {w['config']}" if w.get("config") else
             f"  status:    {cmd} status --set paths.database={w['database']}"),
        Text(f"  archived:  {w['archive']}   rejected: {w['rejected']}"),
    ]
    if not summary.get("keep_running"):
        lines.append(Text(f"  your own files: {cmd} demo --keep-running, then drop files into "
                          f"{w['inbox']}"))
    lines.append(Text("  real Marketo: docs/howto/real-marketo.md"))
    return Group(*lines)
