"""Issue 6 "Reports": the whole daemon (real intake, scheduler, poller, reporter) against the
simulator over loopback. Counts in report.json equal the simulator's lead store and counters;
every row that did not get in appears exactly once in failures.csv with its source line."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from results_helpers import read_csv
from store_helpers import uploads_of_file

from orchestrator.daemon import Daemon
from orchestrator.places import packs_dir
from orchestrator.settings import Settings
from orchestrator.simulator import SimulatorConfig, create_app

HEADER = "email,firstName,lastName,title,numberOfEmployees"


def build_source() -> tuple[str, set[int], set[int], int]:
    """A CSV of 120 records: some rejected by intake, some warned by Marketo, some spanning
    two lines. Returns (text, bad lines, warned lines, good records)."""
    records = [HEADER]
    bad: set[int] = set()
    warned: set[int] = set()
    good = 0
    line_no = 2  # the header is line 1
    for i in range(120):
        if i % 10 == 3:
            records.append(f"bad{i}@example.com,B{i},Type,Staff,many")  # wrong type: rejected
            bad.add(line_no)
        elif i % 10 == 6:
            records.append(f",N{i},NoMail,Staff,4")  # empty lookup value: rejected
            bad.add(line_no)
        elif i % 10 == 8:
            records.append(f"warn{i}(at)example.com,W{i},Warn,Staff,5")  # invalid email
            warned.add(line_no)
        else:
            records.append(f'ok{i}@example.com,O{i},"Good, Inc","Head of\r\nSales",{i}')
        good += line_no not in bad
        line_no += records[-1].count("\r\n") + 1
    return "".join(r + "\r\n" for r in records), bad, warned, good


async def test_reports_equal_the_simulator_and_list_every_bad_row_once(
    make_settings: Callable[..., Settings],
) -> None:
    server = TestServer(
        create_app(SimulatorConfig(rows_per_second=2000, max_body_bytes=6000), time_scale=50),
        host="127.0.0.1",
    )
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    try:
        settings = make_settings(
            marketo={"base_url": url, "retry_base_s": 0.01, "retry_max_s": 0.1},
            limits={"max_upload_bytes": 1500, "calls_per_20s": 100},
            polling={"min_interval_s": 0.02, "max_interval_s": 0.1},
            daemon={"idle_tick_s": 0.05, "results_retry_s": 0.1, "shutdown_grace_s": 0.5},
        )
        text, bad, warned, good = build_source()
        (settings.paths.inbox / "signups.csv").write_bytes(text.encode("utf-8"))
        async with Daemon(settings, handle_signals=False) as daemon:
            await asyncio.wait_for(daemon.run(once=True), 50)
            uploads = await uploads_of_file(daemon.store, 1)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/_sim/leads") as resp:
                leads = await resp.json()
            async with session.get(f"{url}/_sim/stats") as resp:
                stats = next(iter((await resp.json())["instances"].values()))
    finally:
        await server.close()

    (folder,) = [p for p in settings.paths.results.iterdir()]
    assert folder.name == "signups.csv.1"
    report = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    rows = report["rows"]
    assert len(uploads) >= 3 and len(report["uploads"]) == len(uploads)  # it was split
    assert report["status"] == "partial"
    assert rows["total"] == 120 == rows["imported"] + rows["failed"] + rows["rejected"]
    assert rows["imported"] == good == len(leads)
    assert rows["warned"] == len(warned)
    batches = {b["batchId"]: b for b in stats["batches"]}
    for upload in report["uploads"]:
        batch = batches[upload["batchId"]]
        assert upload["numOfLeadsProcessed"] == batch["imported"]
        assert upload["numOfRowsWithWarning"] == batch["warned"]
    failures = read_csv(folder / "failures.csv")
    listed = [int(r[0]) for r in failures[1:]]
    assert sorted(listed) == listed and len(listed) == len(set(listed))
    assert set(listed) == bad and len(listed) == rows["failed"] + rows["rejected"]
    assert failures[0] == ["sourceRow", *HEADER.split(","), "reason"]
    warnings = read_csv(folder / "warnings.csv")
    assert {int(r[0]) for r in warnings[1:]} == warned
    assert all(r[-1] == "Invalid email address" for r in warnings[1:])
    multi = next(lead for lead in leads if lead["email"] == "ok9@example.com")
    assert multi["lastName"] == "Good, Inc" and multi["title"] == "Head of\r\nSales"
    archived = settings.paths.archive / "1-signups.csv"
    assert archived.read_bytes() == text.encode("utf-8")
    # Nothing is left in work but the folder of pack files, empty (the fetched Marketo files
    # of the batches are deleted once their files are reported).
    assert [p.name for p in Path(settings.paths.work).iterdir()] in ([], ["packs"])
    packs = packs_dir(settings.paths)
    assert not packs.exists() or not any(packs.iterdir())
