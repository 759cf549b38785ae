"""Duplicates are the same bytes with the same import options; forcing a repeat (issue 13.2).

The daemon runs ``--once`` in-process with the real intake against the simulator over HTTP,
on real files in a real inbox and a real SQLite file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_sim import MakeSim, run_once

from orchestrator.cli import cli
from orchestrator.settings import Settings

LEADS = b"email,firstName\r\nann@example.com,Ann\r\nbo@example.com,Bo\r\ncy@example.com,Cy\r\n"
WEBINAR = {"name": "webinar", "list_id": 1001}


def reports(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every report.json by ``route/name`` (``name`` at the inbox root)."""
    out = {}
    for path in settings.paths.results.glob("*/report.json"):
        data = json.loads(path.read_text())
        out[f"{data['route']}/{data['file']}" if data["route"] else data["file"]] = data
    return out


def drop(settings: Settings, relative: str, data: bytes = LEADS) -> Path:
    path = settings.paths.inbox / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


async def test_same_bytes_with_other_options_are_imported_and_a_repeat_can_be_forced(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim()
    settings = daemon_settings(sim.url, routes=[WEBINAR])
    drop(settings, "leads.csv")
    await run_once(settings)
    assert reports(settings)["leads.csv"]["status"] == "complete"
    assert {lead["email"]: lead["listIds"] for lead in await sim.leads()} == {
        "ann@example.com": [], "bo@example.com": [], "cy@example.com": []
    }

    # The same bytes into the webinar route: other options (listId), so another import.
    drop(settings, "webinar/leads.csv")
    await run_once(settings)
    webinar = reports(settings)["webinar/leads.csv"]
    assert (webinar["status"], webinar["error"]) == ("complete", None)
    assert {lead["email"]: lead["listIds"] for lead in await sim.leads()} == {
        "ann@example.com": [1001], "bo@example.com": [1001], "cy@example.com": [1001]
    }

    # The same bytes with the same options again: a duplicate, which says how to force it.
    drop(settings, "again.csv")
    await run_once(settings)
    again = reports(settings)["again.csv"]
    assert again["status"] == "duplicate"
    first = reports(settings)["leads.csv"]["file_id"]
    assert again["error"] == (
        f"Same content (SHA-256) and import options as file {first} 'leads.csv', which is "
        "already imported or being imported; not sent again. To import it again on purpose, "
        "drop it as 'again.force.csv' or use `leadflow submit --force`."
    )
    assert again["forced"] is None
    # In a route folder, the hint keeps the route.
    drop(settings, "webinar/again-webinar.csv")
    await run_once(settings)
    assert reports(settings)["webinar/again-webinar.csv"]["error"].endswith(
        "drop it as 'again-webinar.force.csv' or use `leadflow submit --force --route webinar`."
    )

    # ".force." in the name imports it anyway; the report says so and which file it repeats.
    drop(settings, "again.force.csv")
    await run_once(settings)
    forced = reports(settings)["again.force.csv"]
    assert forced["status"] == "complete"
    assert forced["forced"] == {
        "repeats": {"file_id": first, "file": "leads.csv"},
        "reason": "its name has '.force.' (as `leadflow submit --force` names copies): "
        f"imported again although file {first} 'leads.csv' had the same bytes and import "
        "options",
    }
    assert reports(settings)["leads.csv"]["forced"] is None
    imports = [r for r in await sim.requests() if r["endpoint"] == "import_lead"]
    assert len(imports) == 3  # leads.csv, webinar/leads.csv, again.force.csv


async def test_submit_force_names_the_copy_so_the_daemon_imports_it_again(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = await make_sim()
    settings = daemon_settings(sim.url, routes=[WEBINAR])
    source = tmp_path / "export" / "signups.csv"
    source.parent.mkdir()
    source.write_bytes(LEADS)
    config = tmp_path / "leadflow.toml"
    config.write_text(
        f'[paths]\ninbox = "{settings.paths.inbox}"\ndatabase = "{settings.paths.database}"\n'
        '[[routes]]\nname = "webinar"\nlist_id = 1001\n'
    )
    assert await cli(["submit", str(source), "--route", "webinar", "--config", str(config)]) == 0
    await run_once(settings)
    capsys.readouterr()
    assert await cli(["submit", "--force", str(source), "--route", "webinar",
                      "--config", str(config)]) == 0
    dest = settings.paths.inbox / "webinar" / "signups.force.csv"
    out = capsys.readouterr().out
    assert out.startswith(f"submitted {source} as {dest} (route webinar, forced:")
    assert dest.read_bytes() == LEADS
    await run_once(settings)
    done = reports(settings)
    first = done["webinar/signups.csv"]
    assert done["webinar/signups.force.csv"]["status"] == "complete"
    assert done["webinar/signups.force.csv"]["forced"]["repeats"] == {
        "file_id": first["file_id"], "file": "signups.csv"
    }
    assert len([r for r in await sim.requests() if r["endpoint"] == "import_lead"]) == 2


async def test_a_forced_file_with_nothing_to_repeat_says_so(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim()
    settings = daemon_settings(sim.url)
    drop(settings, "fresh.force.csv")
    await run_once(settings)
    fresh = reports(settings)["fresh.force.csv"]
    assert fresh["status"] == "complete"
    assert fresh["forced"]["repeats"] is None
    assert fresh["forced"]["reason"].endswith(
        "no earlier file had the same bytes and import options"
    )
