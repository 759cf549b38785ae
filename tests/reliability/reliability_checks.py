"""Assertions shared by the reliability tests and ``bench/soak.py``.

Each check reads real outcomes only: report files, the daemon's database (read-only), the
simulator's lead store, batch timelines and request log, and the daemon's JSON log lines.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import sqlite3
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

from reliability_harness import CLIENT_ID, CLIENT_SECRET, Leadflow, SimulatorProcess, http_json
from reliability_inputs import LeadFile

#: Every token the simulator mints looks like this (a UUID and its ``:sim`` pod suffix).
SIM_TOKEN = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:sim")
#: A bearer credential written out anywhere.
BEARER = re.compile(rb"Bearer\s+[A-Za-z0-9]", re.IGNORECASE)


def db_rows(lf: Leadflow, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Run a read-only query on the daemon's database."""
    uri = f"file:{urllib.parse.quote(str(lf.database))}?mode=ro"
    with sqlite3.connect(uri, uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return list(conn.execute(sql, params))


def events_named(lf: Leadflow, name: str) -> list[dict[str, Any]]:
    """Log lines whose event is ``name``, over every run."""
    return [e for e in lf.events() if e.get("event") == name]


def assert_never_crashed(lf: Leadflow) -> None:
    """No loop crashed, nothing escaped as a traceback, no line was unparseable."""
    events = lf.events()
    crashed = [e for e in events if e.get("event") in ("daemon_crashed", "report_pass_failed")]
    assert not crashed, crashed[:3]
    odd = [e for e in events if e.get("event") == "_non_json_line"]
    assert not odd, odd[:5]
    assert "Traceback" not in lf.stderr_text(), lf.stderr_text()[-3000:]


def assert_one_report_each(lf: Leadflow, names: list[str]) -> dict[str, dict[str, Any]]:
    """Every file name has exactly one report and there is no other report.

    Returns:
        ``{name: report}``.
    """
    reports = lf.reports()
    doubles = {name: len(found) for name, found in reports.items() if len(found) != 1}
    assert not doubles, doubles
    assert sorted(reports) == sorted(names), (
        sorted(set(names) - set(reports)), sorted(set(reports) - set(names)))
    leftovers = [p.name for p in lf.results.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert not leftovers, leftovers
    return {name: found[0] for name, found in reports.items()}


def assert_sources_moved_once(
    lf: Leadflow, names: list[str], digests: dict[str, str] | None = None
) -> None:
    """Each source left the inbox and sits exactly once in archive or rejected; work is empty.

    With ``digests`` (``{name: sha256 hex}``), each moved copy must be byte for byte the file
    that was dropped.

    The reporter moves a source to ``<file id>-<name>``; a crash between the move and the
    final transition must not leave a second copy, nor a stray file in the inbox or work.
    """
    paths = lf.settings["paths"]
    moved = [p.name for key in ("archive", "rejected") for p in Path(paths[key]).iterdir()]
    for name in names:
        copies = [m for m in moved if m.endswith(f"-{name}") and m[: -len(name) - 1].isdigit()]
        assert len(copies) == 1, (name, copies)
        if digests is not None:
            found = [p for key in ("archive", "rejected") for p in Path(paths[key]).iterdir()
                     if p.name == copies[0]]
            assert hashlib.sha256(found[0].read_bytes()).hexdigest() == digests[name], name
    left = [p.name for p in lf.inbox.iterdir()]
    assert not left, left
    work = [str(p) for p in Path(paths["work"]).rglob("*") if p.is_file()]
    assert not work, work[:10]


def assert_leads_arrived(sim: SimulatorProcess, files: list[LeadFile]) -> int:
    """Every good source row is in the simulator's lead store with its values.

    Returns:
        How many rows were checked.
    """
    store = {lead.get("email"): lead for lead in sim.leads()}
    checked = 0
    wrong: list[tuple[str, str, Any, Any]] = []
    missing: list[str] = []
    for lead_file in files:
        for email, values in lead_file.good.items():
            lead = store.get(email)
            if lead is None:
                missing.append(email)
                continue
            for key, value in values.items():
                if str(lead.get(key)) != value:
                    wrong.append((email, key, value, lead.get(key)))
            checked += 1
    assert not missing, (len(missing), missing[:5])
    assert not wrong, wrong[:5]
    return checked


def failures_rows(report_dir: Path) -> set[int]:
    """Source row numbers listed in a results folder's ``failures.csv``."""
    path = report_dir / "failures.csv"
    if not path.exists():
        return set()
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    return {int(row["sourceRow"]) for row in reader if row.get("sourceRow")}


def assert_reports_match_simulator(
    lf: Leadflow, sim: SimulatorProcess, reports: dict[str, dict[str, Any]],
    files: dict[str, LeadFile],
) -> dict[str, int]:
    """The counts in every report equal what the simulator saw for the report's batches.

    Also: ``total = imported + failed + rejected``, the total equals the rows written, and
    ``failures.csv`` lists exactly the bad rows of the source.

    Returns:
        Totals over all reports: ``imported``, ``failed``, ``rejected``, ``batches``.
    """
    batches = {b["batchId"]: b for b in sim.stats()["batches"]}
    totals: Counter[str] = Counter()
    # A shared batch: the files that rode in it split its counts between them exactly.
    shares: dict[int, Counter[str]] = {}
    for name, report in reports.items():
        rows = report["rows"]
        assert rows["total"] == rows["imported"] + rows["failed"] + rows["rejected"], report
        imported = failed = warned = 0
        for upload in report["uploads"]:
            if upload.get("status") != "complete":
                continue
            batch = batches.get(upload["batchId"])
            assert batch is not None, (name, upload)
            assert batch["status"] == "Complete", (name, batch)
            whole = upload["batch"]
            assert (whole["numOfLeadsProcessed"], whole["numOfRowsFailed"],
                    whole["numOfRowsWithWarning"]) == (
                batch["imported"], batch["failed"], batch["warned"]), (name, upload, batch)
            share = shares.setdefault(upload["batchId"], Counter())
            share["imported"] += upload["numOfLeadsProcessed"]
            share["failed"] += upload["numOfRowsFailed"]
            share["warned"] += upload["numOfRowsWithWarning"]
            imported += upload["numOfLeadsProcessed"]
            failed += upload["numOfRowsFailed"]
            warned += upload["numOfRowsWithWarning"]
        assert rows["imported"] == imported, (name, rows, imported)
        assert rows["failed"] == failed, (name, rows, failed)
        assert rows["warned"] == warned, (name, rows, warned)
        lead_file = files.get(name)
        if lead_file is not None:
            assert rows["total"] == lead_file.rows, (name, rows, lead_file.rows)
            assert rows["imported"] == len(lead_file.good), (name, rows)
            assert rows["failed"] + rows["rejected"] == len(lead_file.bad), (name, rows)
            folder = lf.results / f"{name}.{report['file_id']}"
            if not folder.exists():
                folder = next(p.parent for p in lf.results.glob("*/report.json")
                              if p.parent.name.endswith(f".{report['file_id']}"))
            assert failures_rows(folder) == set(lead_file.bad), (name, lead_file.bad)
        totals["imported"] += rows["imported"]
        totals["failed"] += rows["failed"]
        totals["rejected"] += rows["rejected"]
    for batch_id, share in shares.items():
        batch = batches[batch_id]
        assert (share["imported"], share["failed"], share["warned"]) == (
            batch["imported"], batch["failed"], batch["warned"]), (batch_id, share, batch)
    totals["batches"] = len(shares)
    return dict(totals)


def assert_repeats_bounded_and_logged(lf: Leadflow, sim: SimulatorProcess) -> dict[str, int]:
    """No upload was imported more than twice, and every repeat was logged.

    The simulator's batch timelines do not name the upload they came from, so batches are
    matched to uploads by their row count (the soak gives its files distinct row counts):
    for every row count, batches <= 2 x uploads, and the extra batches are no more than the
    ``resubmitted_after_uncertain_submit`` lines about uploads of that row count.

    Returns:
        ``uploads``, ``batches``, ``repeats`` (extra batches) and ``resubmissions`` (log lines).
    """
    uploads = db_rows(lf, "SELECT id, rows, uncertain, batch_id, status FROM uploads")
    rows_of = {u["id"]: u["rows"] for u in uploads}
    ours = Counter(u["rows"] for u in uploads)
    lead_batches = [b for b in sim.stats()["batches"] if b["kind"] == "lead"]
    seen = Counter(b["rows"] for b in lead_batches)
    resubmitted = events_named(lf, "resubmitted_after_uncertain_submit")
    logged = Counter(rows_of.get(e.get("upload_id"), -1) for e in resubmitted)
    unknown = [e for e in resubmitted if e.get("upload_id") not in rows_of]
    assert not unknown, unknown[:3]
    for rows, count in seen.items():
        assert rows in ours, (rows, count, "a batch of no upload of ours")
        assert count >= ours[rows], (rows, count, ours[rows])
        assert count <= 2 * ours[rows], (rows, count, ours[rows], "imported more than twice")
        extra = count - ours[rows]
        assert extra <= logged[rows], (rows, extra, logged[rows], "repeat not logged")
    for rows, count in ours.items():
        assert seen[rows] >= count, (rows, "an upload of ours never reached Marketo")
    for upload in uploads:
        assert upload["status"] == "complete", dict(upload)
    return {
        "uploads": len(uploads),
        "batches": len(lead_batches),
        "repeats": sum(seen.values()) - sum(ours.values()),
        "resubmissions": len(resubmitted),
    }


def current_token(sim: SimulatorProcess) -> str:
    """The token from identity, the same one while it lives (docs/reference/marketo-api.md §1.4)."""
    query = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": CLIENT_ID,
         "client_secret": CLIENT_SECRET})
    body = http_json("GET", f"{sim.url}/identity/oauth/token?{query}")
    return str(body["access_token"])


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def assert_no_secrets(lf: Leadflow, sim: SimulatorProcess, tokens: list[str]) -> int:
    """Neither the client secret nor any token is in a log line, report, database or path.

    Scans the daemon's stdout and stderr of every run, every file under every ``paths``
    folder, and the raw bytes of the database and its WAL (so freed pages count too).
    Checks the simulator saw the token only in ``Authorization: Bearer``.

    Returns:
        How many files were scanned.
    """
    needles = [CLIENT_SECRET.encode(), *(t.encode() for t in tokens if t)]
    targets = list(lf.logs.glob("*"))
    paths = lf.settings["paths"]
    for key in ("inbox", "work", "archive", "rejected", "results"):
        targets.extend(_files_under(Path(paths[key])))
    db = lf.database
    targets.extend(p for p in db.parent.glob(db.name + "*") if p.is_file())
    for path in targets:
        data = path.read_bytes()
        for needle in needles:
            assert needle not in data, (str(path), "holds a secret")
        assert not SIM_TOKEN.search(data), (str(path), "holds a token")
        assert not BEARER.search(data), (str(path), "holds a bearer credential")
    for entry in sim.requests():
        if entry["endpoint"] == "identity":
            continue
        assert entry["auth_header"] and entry["auth_scheme"] == "Bearer", entry
        assert not entry["token_in_query"], entry
        assert "access_token" not in entry.get("query_keys", []), entry
        assert "access_token" not in entry.get("form_keys", []), entry
    return len(targets)
