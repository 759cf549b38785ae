"""Custom object routes key on the object's dedupe fields from its describe (issue 12.4).

The daemon runs ``--once`` in-process with the real intake against the simulator over HTTP;
the simulator serves each object's describe with ``dedupeFields`` as Marketo does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from daemon_sim import MakeSim, run_once

from orchestrator.settings import Settings

CAR = {"name": "cars", "kind": "custom_objects", "object_api_name": "car_c"}
SEATS = {
    "seat_c": {
        "fields": [{"name": "flight", "display_name": "Flight"},
                   {"name": "seat", "display_name": "Seat"},
                   {"name": "passenger", "display_name": "Passenger"}],
        "dedupe_fields": ["flight", "seat"],
    },
}


def report(settings: Settings, name: str) -> dict[str, Any]:
    (path,) = settings.paths.results.glob(f"{name}.*/report.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


async def test_custom_object_route_uses_the_dedupe_fields_not_import_lookup_field(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim()
    settings = daemon_settings(sim.url, routes=[CAR], **{"import": {"lookup_field": "email"}})
    cars = settings.paths.inbox / "cars"
    write(cars, "fleet.csv", "vin,make,year\r\nV1,Volvo,2020\r\n,Saab,2001\r\nV3,Fiat,2019\r\n")
    write(cars, "typo.csv", "VIN,make\r\nV9,Lada\r\n")

    await run_once(settings)

    fleet = report(settings, "fleet.csv")
    assert fleet["status"] == "partial", fleet
    assert fleet["rows"] == {"total": 3, "imported": 2, "failed": 0, "warned": 0, "rejected": 1}
    failures = (settings.paths.results / f"fleet.csv.{fleet['file_id']}" / "failures.csv")
    assert failures.read_text().splitlines()[1] == "3,,Saab,2001,missing.dedupe.fields"
    assert sorted(r["vin"] for r in await sim.objects("car_c")) == ["V1", "V3"]
    typo = report(settings, "typo.csv")
    assert typo["status"] == "rejected"
    assert typo["error"] == (
        "The custom object 'car_c' needs its dedupe field 'vin' in the header (Marketo's "
        "describe of 'car_c' lists them as dedupeFields; without them every row fails "
        "'missing.dedupe.fields'); missing: 'vin' ('VIN' must be written 'vin')."
    )
    requests = await sim.requests()
    uploads = [r for r in requests if r["endpoint"] == "import_custom_object"]
    assert [r["path"] for r in uploads] == ["/bulk/v1/customobjects/car_c/import.json"]
    assert "lookupField" not in uploads[0]["query_keys"]
    # One describe of the object for both files (cached like the lead describe).
    assert [r["endpoint"] for r in requests].count("describe_custom_object") == 1


async def test_compound_dedupe_key_needs_every_field_and_counts_repeats_on_all(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(custom_objects=SEATS)
    route = {"name": "seats", "kind": "custom_objects", "object_api_name": "seat_c"}
    settings = daemon_settings(sim.url, routes=[route])
    write(settings.paths.inbox / "seats", "manifest.csv",
          "flight,seat,passenger\r\nLF1,1A,Ann\r\nLF1,1B,Bo\r\nLF1,,Cy\r\nLF1,1A,Di\r\n")
    write(settings.paths.inbox / "seats", "no-seat.csv", "flight,passenger\r\nLF2,Ed\r\n")

    await run_once(settings)

    manifest = report(settings, "manifest.csv")
    assert manifest["rows"]["imported"] == 3 and manifest["rows"]["rejected"] == 1
    assert manifest["duplicates"] == 1
    assert manifest["duplicate_values"] == [{"value": "LF1 | 1A", "rows": [2, 5], "count": 2}]
    assert len(await sim.objects("seat_c")) == 2  # (LF1,1A) upserted twice, (LF1,1B)
    no_seat = report(settings, "no-seat.csv")
    assert no_seat["error"].startswith(
        "The custom object 'seat_c' needs its dedupe fields (a compound key) 'flight' and "
        "'seat' in the header"
    )
    assert no_seat["error"].endswith("missing: 'seat'.")


async def test_unknown_custom_object_rejects_its_files_with_marketo_answer(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim()
    route = {"name": "boats", "kind": "custom_objects", "object_api_name": "boat_c"}
    settings = daemon_settings(sim.url, routes=[route])
    write(settings.paths.inbox / "boats", "b.csv", "hull\r\nH1\r\n")
    await run_once(settings)
    boats = report(settings, "b.csv")
    assert boats["status"] == "rejected"
    assert boats["error"].startswith(
        "Marketo refused to describe the custom object 'boat_c' (1013 Object not found)"
    )


async def test_a_custom_object_route_with_its_own_lookup_field_keeps_it(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim()
    settings = daemon_settings(sim.url, routes=[{**CAR, "lookup_field": "vin"}])
    write(settings.paths.inbox / "cars", "f.csv", "vin,make\r\nV1,Volvo\r\n")
    await run_once(settings)
    assert report(settings, "f.csv")["status"] == "complete"
    assert "describe_custom_object" not in [r["endpoint"] for r in await sim.requests()]
