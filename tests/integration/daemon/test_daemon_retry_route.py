"""``leadflow retry`` keeps the file's route (issue 13.3), against the simulator over HTTP.

The file is one an older leadflow took from an inbox folder that was no route yet (the
route was added to the settings later) and rejected as "not a route": it was recorded with
no route. Retried once the route exists, it must go to the route's folder and be imported
with the route's listId, not at the inbox root without it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from daemon_sim import MakeSim, run_once

from orchestrator.commands.retry import retry_command
from orchestrator.models import FileStatus
from orchestrator.settings import Settings
from orchestrator.store import Store

LEADS = b"email,firstName\r\nann@example.com,Ann\r\nbo@example.com,Bo\r\n"


async def test_route_rejected_file_retried_is_imported_with_its_routes_list(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings],
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = await make_sim()
    before = daemon_settings(sim.url)  # no route 'events' yet
    inbox = before.paths.inbox
    async with Store.open(before.paths.database) as store:
        # As an older leadflow claimed it from inbox/events/ (a folder that was no route).
        record = await store.add_file(
            name="signups.csv", inbox_path=str(inbox / "events" / "signups.csv"),
            work_path=str(before.paths.work / "{id}" / "source" / "signups.csv"), route=None,
            size_bytes=len(LEADS),
        )
        source = before.paths.work / str(record.id) / "source" / "signups.csv"
        source.parent.mkdir(parents=True)
        source.write_bytes(LEADS)
    await run_once(before)  # recovery ends it rejected; the reporter moves it aside
    first = json.loads(next(before.paths.results.glob("signups.csv.*/report.json")).read_text())
    assert first["status"] == "rejected" and first["route"] is None
    assert "The inbox folder 'events' is not a route" in first["error"]

    after = daemon_settings(sim.url, routes=[{"name": "events", "list_id": 1001}])
    capsys.readouterr()
    assert await retry_command(after, record.id) == 0
    back = inbox / "events" / "signups.csv"
    assert capsys.readouterr().out == (
        f"file {record.id} (signups.csv) was rejected: moved back into the inbox as {back} "
        "(route events); it is taken as a new file with a new id and report\n"
    )
    assert back.read_bytes() == LEADS and not (inbox / "signups.csv").exists()

    await run_once(after)
    async with Store.open(after.paths.database) as store:
        done = [f for f in await store.files_in(FileStatus.COMPLETE)]
    assert [(f.name, f.route) for f in done] == [("signups.csv", "events")]
    assert {lead["email"]: lead["listIds"] for lead in await sim.leads()} == {
        "ann@example.com": [1001], "bo@example.com": [1001]
    }
    imports = [r for r in await sim.requests() if r["endpoint"] == "import_lead"]
    assert len(imports) == 1 and "listId" in imports[0]["query_keys"]
