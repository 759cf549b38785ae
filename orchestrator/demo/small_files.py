"""``leadflow demo --small-files N``: many tiny files at once, and what packing saves.

N files of 3 leads each (one header, unique emails) are dropped into the demo inbox at once,
as form exports or one-file-per-event systems do. After the daemon drained them, each file must
have exactly one report, complete, with its own 3 rows, and every lead must be in the
simulator's lead store; the summary shows how many Marketo jobs and API calls they cost,
beside what one job per file would have cost (at least one create and one status call each).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

#: Rows in each small file.
ROWS_PER_FILE = 3
#: The header of every small file (one pack key: they may all share jobs).
HEADER = "Email,First Name,Last Name,Company"


def write_small_files(inbox: Path, count: int) -> dict[str, list[str]]:
    """Write ``count`` files of ``ROWS_PER_FILE`` leads into ``inbox``.

    Returns:
        ``{file name: its emails}``.
    """
    inbox.mkdir(parents=True, exist_ok=True)
    made: dict[str, list[str]] = {}
    for n in range(count):
        emails = [f"webform{n:04d}.{i}@example.com" for i in range(ROWS_PER_FILE)]
        lines = [HEADER] + [f"{email},Visitor {i},Form {n},Demo Co {n % 17}"
                            for i, email in enumerate(emails)]
        name = f"webform-{n:04d}.csv"
        (inbox / name).write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
        made[name] = emails
    return made


def summarize(
    made: dict[str, list[str]],
    reports: dict[str, dict[str, Any]],
    stats: dict[str, Any],
    leads: set[str],
) -> dict[str, Any]:
    """Check every file's report and lead, and count what the files cost at Marketo.

    Args:
        made: ``write_small_files``' result.
        reports: ``read_reports`` of the results folder, by file name.
        stats: the simulator's ``/_sim/stats`` entry of the default instance.
        leads: every email in the simulator's lead store.

    Returns:
        JSON-ready: ``ok``, ``problems``, ``files``, ``rows``, ``jobs``, ``api_calls``
        (identity excluded: Marketo does not count it), ``calls_per_file``,
        ``one_job_per_file`` {``jobs``, ``api_calls_at_least``}, ``batches`` (batchId ->
        files that rode in it).
    """
    problems: list[str] = []
    batches: dict[int, int] = {}
    for name, emails in made.items():
        report = reports.get(name)
        if report is None:
            problems.append(f"{name}: no report")
            continue
        rows = report.get("rows") or {}
        if report.get("status") != "complete" or rows.get("imported") != len(emails):
            problems.append(f"{name}: {report.get('status')}, rows {rows}")
        for upload in report.get("uploads") or []:
            if upload.get("batchId") is not None:
                batches[upload["batchId"]] = batches.get(upload["batchId"], 0) + 1
        missing = [e for e in emails if e not in leads]
        if missing:
            problems.append(f"{name}: {len(missing)} leads missing at Marketo")
    calls = {k: v for k, v in (stats.get("calls_by_endpoint") or {}).items() if k != "identity"}
    jobs = [b for b in stats.get("batches") or [] if b.get("kind") != "foreign"]
    files = len(made)
    total = sum(calls.values())
    return {
        "ok": not problems,
        "problems": problems[:20],
        "files": files,
        "rows": files * ROWS_PER_FILE,
        "jobs": len(jobs),
        "api_calls": total,
        "calls_by_endpoint": calls,
        "calls_per_file": round(total / files, 4) if files else None,
        "one_job_per_file": {"jobs": files, "api_calls_at_least": 2 * files + 1},
        "batches": {str(k): v for k, v in sorted(batches.items())},
    }


def render(summary: dict[str, Any]) -> Table:
    """The summary as a small table for a person."""
    table = Table(title=f"{summary['files']:,} small files, {summary['rows']:,} leads",
                  show_header=True)
    table.add_column("")
    table.add_column("with packing", justify="right")
    table.add_column("one job per file", justify="right")
    alone = summary["one_job_per_file"]
    table.add_row("Marketo jobs", f"{summary['jobs']:,}", f"{alone['jobs']:,}")
    table.add_row("API calls", f"{summary['api_calls']:,}",
                  f">= {alone['api_calls_at_least']:,}")
    per_file = summary["calls_per_file"] or 0.0
    table.add_row("calls per file", f"{per_file:.3f}",
                  f">= {alone['api_calls_at_least'] / max(summary['files'], 1):.1f}")
    table.add_row("files with their own exact report",
                  f"{summary['files'] - len(summary['problems']):,} of {summary['files']:,}",
                  "")
    return table
