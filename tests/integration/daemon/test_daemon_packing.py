"""Packing in the whole daemon (real intake, scheduler, poller, reporter and client) against
the simulator over loopback.

- Files of different routes, options or columns never share a job (checked in the database
  and at the simulator: list membership and field values of every lead).
- A shared batch with failed and warned rows from several files: Marketo's failures and
  warnings files are fetched once and each file's failures.csv / warnings.csv hold exactly its
  own rows, with its own source row numbers.
- A shared batch that ends Failed reaches every file in it; ``leadflow retry FILE_ID`` then
  re-sends only that file's rows, and the other file's report stands.
"""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_sim import MakeSim, ours

from orchestrator.commands.retry import retry_file
from orchestrator.daemon import Daemon
from orchestrator.models import FileStatus
from orchestrator.settings import Settings
from orchestrator.store import Store

HEADER_A = "email,firstName,lastName"
HEADER_B = "email,firstName,company"


def write(inbox: Path, name: str, header: str, rows: list[str]) -> None:
    path = inbox / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\r\n".join([header, *rows]) + "\r\n", encoding="utf-8")


def db_rows(settings: Settings, sql: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(settings.paths.database)
    try:
        return list(conn.execute(sql).fetchall())
    finally:
        conn.close()


def source_rows(path: Path) -> dict[int, list[str]]:
    if not path.exists():
        return {}
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        return {int(row[0]): row for row in reader}


async def test_files_of_other_routes_options_or_columns_never_share_a_job(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(rows_per_second=2000.0, rate_limit_calls=100_000)
    settings = daemon_settings(
        sim.url,
        limits={"max_upload_bytes": 1_000_000},
        routes=[{"name": "events", "list_id": 1001},
                {"name": "solo", "list_id": 1002, "pack": False}],
    )
    inbox = settings.paths.inbox
    expected: dict[str, dict[str, Any]] = {}  # email -> what its lead must look like
    for n in range(4):  # interleaved names, so the FIFO interleaves the groups
        for group, folder, header in (("a", "", HEADER_A), ("b", "", HEADER_B),
                                      ("e", "events/", HEADER_A), ("s", "solo/", HEADER_A)):
            rows = []
            for i in range(3):
                email = f"{group}{n}.{i}@example.org"
                third = f"{group.upper()}{n}"
                rows.append(f"{email},N{i},{third}")
                lists = {"e": [1001], "s": [1002]}.get(group, [])
                field = "company" if header == HEADER_B else "lastName"
                expected[email] = {"listIds": lists, field: third}
            write(inbox, f"{folder}{n}-{group}.csv", header, rows)
    async with Daemon(settings, handle_signals=False) as daemon:
        await asyncio.wait_for(daemon.run(once=True), 40)
        counts = await daemon.store.counts_by_status()
    assert counts["files"]["complete"] == 16, counts

    # In the database: every upload carries parts of one pack key, one kind of options and
    # one route; the "solo" route's files each have a job of their own.
    rows = db_rows(settings, """
        SELECT p.upload_id, COUNT(DISTINCT COALESCE(p.pack_key, 'none')),
               COUNT(DISTINCT p.options), COUNT(DISTINCT COALESCE(f.route, '-')),
               COUNT(DISTINCT json_extract(f.info, '$.header')), COUNT(*),
               MAX(f.route = 'solo')
        FROM parts p JOIN files f ON f.id = p.file_id GROUP BY p.upload_id""")
    assert rows
    for _upload, keys, options, routes, headers, parts, solo in rows:
        assert (keys, options, routes, headers) == (1, 1, 1, 1)
        assert parts == 1 or not solo
    shared = [r for r in rows if r[5] > 1]
    assert len(shared) >= 3, rows  # root A, root B and events each packed
    assert len([r for r in rows if r[6]]) == 4  # one job per solo file

    # At Marketo: each lead has exactly its own file's list and columns.
    leads = {lead["email"]: lead for lead in await sim.leads()}
    assert sorted(leads) == sorted(expected)
    for email, want in expected.items():
        lead = leads[email]
        assert sorted(lead.get("listIds") or []) == want["listIds"], (email, lead)
        for field in ("lastName", "company"):
            assert (lead.get(field) or "") == want.get(field, ""), (email, field, lead)
    assert len(ours(await sim.stats())) == len(rows)


async def test_a_shared_batch_is_split_exactly_between_its_files(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(rows_per_second=2000.0, rate_limit_calls=100_000)
    settings = daemon_settings(sim.url, limits={"max_upload_bytes": 1_000_000})
    header = "Email,First Name,Unsubscribed,Date of Birth"
    # unsubscribed=y and a M/D/YYYY date pass intake (lenient) and fail at Marketo (Invalid
    # data type); an email without @ imports with a warning; a quoted line break makes
    # source line numbers differ from record numbers; the same failing row is in two files.
    files = {
        "1-first.csv": [
            "ann@example.org,Ann,false,1990-01-02",       # line 2: ok
            "bo@example.org,Bo,y,1990-01-02",             # line 3: fails (boolean)
            'cy@example.org,"Cy\r\nSecond line",no,',     # lines 4-5: ok
            "dee(at)example.org,Dee,false,",              # line 6: warned
            "twin@example.org,Twin,y,",                   # line 7: fails (twin in 3)
        ],
        "2-second.csv": [
            "eve@example.org,Eve,false,3/4/1990",          # line 2: fails (date)
            "fay@example.org,Fay,true,",                   # line 3: ok
        ],
        "3-third.csv": [
            "gus(at)example.org,Gus,false,",               # line 2: warned
            "hal@example.org,Hal,false,",                  # line 3: ok
            "twin@example.org,Twin,y,",                    # line 4: fails (twin of 1)
            "ida@example.org,Ida,1,",                      # line 5: ok
        ],
        "4-fourth.csv": [
            "jo@example.org,Jo,false,",                    # line 2: ok
        ],
    }
    failed = {"1-first.csv": {3, 7}, "2-second.csv": {2}, "3-third.csv": {4},
              "4-fourth.csv": set()}
    warned = {"1-first.csv": {6}, "2-second.csv": set(), "3-third.csv": {2},
              "4-fourth.csv": set()}
    for name, rows in files.items():
        write(settings.paths.inbox, name, header, rows)
    async with Daemon(settings, handle_signals=False) as daemon:
        await asyncio.wait_for(daemon.run(once=True), 40)
    stats = await sim.stats()
    batches = ours(stats)
    assert len(batches) == 1, batches  # every file rode in one job
    (batch,) = batches
    assert (batch["failed"], batch["warned"]) == (4, 2)
    # Marketo's files of the shared batch were fetched once each.
    calls = stats["calls_by_endpoint"]
    assert (calls.get("lead_failures"), calls.get("lead_warnings")) == (1, 1)

    reports = {}
    for path in settings.paths.results.glob("*/report.json"):
        report = json.loads(path.read_text(encoding="utf-8"))
        reports[report["file"]] = (report, path.parent)
    assert sorted(reports) == sorted(files)
    for name, rows in files.items():
        report, folder = reports[name]
        (entry,) = report["uploads"]
        assert entry["batchId"] == batch["batchId"]
        assert entry["batch"] == {"files": 4, "rows": 12, "numOfLeadsProcessed": 8,
                                  "numOfRowsFailed": 4, "numOfRowsWithWarning": 2}
        assert (entry["rows"], entry["numOfRowsFailed"], entry["numOfRowsWithWarning"]) == (
            len(rows), len(failed[name]), len(warned[name]))
        assert entry["numOfLeadsProcessed"] == len(rows) - len(failed[name])
        assert report["rows"]["failed"] == len(failed[name])
        assert report["rows"]["warned"] == len(warned[name])
        assert report["status"] == ("partial" if failed[name] else "complete")
        fails = source_rows(folder / "failures.csv")
        warns = source_rows(folder / "warnings.csv")
        assert set(fails) == failed[name], name
        assert set(warns) == warned[name], name
        assert all(r[-1].startswith("Invalid data type in field") for r in fails.values())
        assert all(r[-1] == "Invalid email address" for r in warns.values())
    first_fails = source_rows(reports["1-first.csv"][1] / "failures.csv")
    assert first_fails[3][1:5] == ["bo@example.org", "Bo", "y", "1990-01-02"]
    assert first_fails[7][1] == "twin@example.org"
    leads = {lead["email"] for lead in await sim.leads()}
    assert "cy@example.org" in leads and "twin@example.org" not in leads
    assert len(leads) == 8


async def test_a_failed_shared_batch_reaches_every_file_and_retry_resends_only_one(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(rows_per_second=2000.0, rate_limit_calls=100_000)
    await sim.patch({"faults": {"fail_next_jobs": 1}})  # the shared batch ends Failed
    settings = daemon_settings(sim.url, limits={"max_upload_bytes": 1_000_000},
                               daemon={"max_batch_attempts": 1})
    for name in ("a.csv", "b.csv"):
        write(settings.paths.inbox, name, HEADER_A,
              [f"{name[0]}{i}@example.org,N{i},L{i}" for i in range(3)])
    async with Daemon(settings, handle_signals=False) as daemon:
        await asyncio.wait_for(daemon.run(once=True), 40)
        files = {f.name: f for f in await daemon.store.files_in(FileStatus.REJECTED)}
    assert sorted(files) == ["a.csv", "b.csv"]  # every file in the failed batch heard of it
    (batch,) = ours(await sim.stats())
    reports = {}
    for path in settings.paths.results.glob("*/report.json"):
        report = json.loads(path.read_text(encoding="utf-8"))
        reports[report["file"]] = (report, path)
    for name in ("a.csv", "b.csv"):
        report, _ = reports[name]
        assert report["uploads"][0]["batchId"] == batch["batchId"]
        assert report["uploads"][0]["status"] == "failed"
        assert report["rows"]["failed"] == 3 and "leadflow retry" in report["error"]
        assert len(source_rows(settings.paths.results / f"{name}.{report['file_id']}"
                               / "failures.csv")) == 3
    b_report_before = reports["b.csv"][1].read_bytes()

    code, message = await _retry(settings, files["a.csv"].id)
    assert code == 0 and "only this file's rows" in message, message
    async with Daemon(settings, handle_signals=False) as daemon:
        await asyncio.wait_for(daemon.run(once=True), 40)
        a = await daemon.store.get_file(files["a.csv"].id)
        b = await daemon.store.get_file(files["b.csv"].id)
    assert a is not None and a.status is FileStatus.COMPLETE
    assert b is not None and b.status is FileStatus.REJECTED
    assert reports["b.csv"][1].read_bytes() == b_report_before  # b's report stands
    second = [x for x in ours(await sim.stats()) if x["batchId"] != batch["batchId"]]
    assert len(second) == 1 and second[0]["rows"] == 3  # only a's rows went again
    emails = {lead["email"] for lead in await sim.leads()}
    assert emails == {f"a{i}@example.org" for i in range(3)}
    (report_a,) = [json.loads(p.read_text()) for p in settings.paths.results.glob(
        f"a.csv.{files['a.csv'].id}/report.json")]
    assert report_a["uploads"][0]["batchId"] == second[0]["batchId"]
    assert report_a["rows"]["imported"] == 3


async def _retry(settings: Settings, file_id: int) -> tuple[int, str]:
    async with Store.open(settings.paths.database) as store:
        return await retry_file(settings, store, file_id)
