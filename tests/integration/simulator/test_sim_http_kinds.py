"""Program member and custom object imports, describe, instances.

See docs/reference/marketo-api.md §4, §8.8 (kinds), §8.7 (describe) and §8.1 (instances).
"""

from __future__ import annotations

import csv
import io
import re

from sim_helpers import CREDS, MakeSim, Sim, error_of

PM = "/bulk/v1/program/{}/members/import.json"
PM_STATUS = "/bulk/v1/program/members/import/{}/status.json"
CO = "/bulk/v1/customobjects/car_c/import.json"
CO_STATUS = "/bulk/v1/customobjects/car_c/import/{}/status.json"


async def test_program_member_import(sim: Sim) -> None:
    body = await sim.upload(
        "email,firstName,membershipNote\na@example.com,Ann,vip\n,NoEmail,\n",
        path=PM.format(2001),
        fmt="CSV",
        query={"programMemberStatus": "Member"},
    )
    result = body["result"][0]
    assert result == {"batchId": result["batchId"], "importId": str(result["batchId"]),
                      "status": "Queued"}
    sim.clock.advance(60)
    status = await sim.get_json(PM_STATUS.format(result["batchId"]))
    assert status["result"][0] == {
        "batchId": result["batchId"],
        "importId": str(result["batchId"]),
        "status": "Complete",
        "numOfLeadsProcessed": 1,
        "numOfRowsFailed": 1,
        "numOfRowsWithWarning": 0,
        "message": "Import completed with errors, 1 records imported (1 members), 1 failed",
    }
    members = await sim.admin("GET", "/_sim/program-members/2001")
    assert members == [{"leadId": 1, "email": "a@example.com", "membershipNote": "vip",
                        "status": "Member"}]
    leads = await sim.admin("GET", "/_sim/leads")
    assert leads[0]["firstName"] == "Ann" and "membershipNote" not in leads[0]
    resp = await sim.get(f"/bulk/v1/program/members/import/{result['batchId']}/failures.json")
    assert resp.status == 200
    assert (await resp.text()).splitlines()[1] == ",NoEmail,Value for lookup field 'email' not found"
    resp = await sim.get(f"/bulk/v1/program/members/import/{result['batchId']}/warnings.json")
    assert resp.status == 404
    # a lead batch id is not a program member batch
    body2 = await sim.get_json(f"/bulk/v1/leads/batch/{result['batchId']}.json")
    assert error_of(body2) == ("1013", "Object not found")


async def test_program_member_parameter_errors(sim: Sim) -> None:
    csv_text = "email\na@example.com\n"
    body = await sim.upload(csv_text, path=PM.format(9999), query={"programMemberStatus": "Member"})
    assert error_of(body) == ("1013", "Object not found")
    body = await sim.upload(csv_text, path=PM.format(2001), query={"programMemberStatus": "Nope"})
    assert error_of(body) == ("1025", "Program status not found")
    body = await sim.upload(csv_text, path=PM.format(2001))
    assert error_of(body) == ("1003", "Missing required parameter 'programMemberStatus'")


async def test_custom_object_import_and_status_shape(sim: Sim) -> None:
    body = await sim.upload("vin,make,year\nV1,Volvo,2020\nV2,Saab,old\n", path=CO)
    result = body["result"][0]
    assert result == {"batchId": result["batchId"], "status": "Queued", "objectApiName": "car_c"}
    sim.clock.advance(60)
    status = await sim.get_json(CO_STATUS.format(result["batchId"]))
    assert status["result"][0] == {
        "batchId": result["batchId"],
        "operation": "import",
        "status": "Complete",
        "objectApiName": "car_c",
        "numOfObjectsProcessed": 1,
        "numOfRowsFailed": 1,
        "numOfRowsWithWarning": 0,
        "importTime": "0 second(s)",
        "message": "Import completed with errors, 1 records imported (1 members), 1 failed",
    }
    assert await sim.admin("GET", "/_sim/custom-objects/car_c") == [
        {"vin": "V1", "make": "Volvo", "year": "2020"}
    ]
    resp = await sim.get(f"/bulk/v1/customobjects/car_c/import/{result['batchId']}/failures.json")
    rows = list(csv.reader(io.StringIO(await resp.text())))
    assert rows[1] == ["V2", "Saab", "old", "Invalid data type in field Year"]


async def test_custom_object_header_typo_fails_every_row(sim: Sim) -> None:
    body = await sim.upload(" vin,make\nV1,Volvo\nV2,Saab\n", path=CO)
    batch_id = body["result"][0]["batchId"]
    sim.clock.advance(60)
    result = (await sim.get_json(CO_STATUS.format(batch_id)))["result"][0]
    assert (result["numOfObjectsProcessed"], result["numOfRowsFailed"]) == (0, 2)
    assert result["message"] == "Import completed with errors, 0 records imported (0 members), 2 failed"
    resp = await sim.get(f"/bulk/v1/customobjects/car_c/import/{batch_id}/failures.json")
    assert {r[-1] for r in csv.reader(io.StringIO(await resp.text()))} == {
        "Import Failure Reason",
        "missing.dedupe.fields",
    }
    resp = await sim.get(f"/bulk/v1/customobjects/car_c/import/{batch_id}/warnings.json")
    assert resp.status == 404


async def test_unknown_custom_object_gets_1013(sim: Sim) -> None:
    body = await sim.upload("vin\nV1\n", path="/bulk/v1/customobjects/boat_c/import.json")
    assert error_of(body) == ("1013", "Object not found")


async def test_describe_lead_fields(sim: Sim) -> None:
    body = await sim.get_json("/rest/v1/leads/describe.json")
    assert re.fullmatch(r"[0-9a-f]+#[0-9a-f]+", body["requestId"])
    fields = {f["rest"]["name"]: f for f in body["result"]}
    assert fields["email"] == {"id": 2, "displayName": "Email Address", "dataType": "email",
                               "length": 255, "rest": {"name": "email", "readOnly": False}}
    assert fields["leadScore"]["dataType"] == "integer"
    assert fields["id"]["rest"]["readOnly"] is True
    for name in ("numberOfEmployees", "annualRevenue", "unsubscribed", "dateOfBirth",
                 "customerTier", "accountScore"):
        assert name in fields
    assert (await sim.stats())["calls_by_endpoint"]["describe_lead"] == 1


async def test_unknown_path_gets_610(sim: Sim) -> None:
    body = await sim.get_json("/rest/bulk/v1/leads.json")
    assert error_of(body) == ("610", "Requested resource not found")


async def test_instances_by_prefix_have_separate_state(make_sim: MakeSim) -> None:
    sim: Sim = await make_sim(instances=["111-AAA-111", "222-BBB-222"])
    other = Sim(sim.client, sim.clock, prefix="/222-BBB-222")
    root_token = await sim.token()
    other_token = await other.token()
    assert root_token != other_token
    prefixed_default = await sim.client.get("/111-AAA-111/identity/oauth/token", params=CREDS)
    assert (await prefixed_default.json())["access_token"] == root_token
    resp = await sim.client.get(
        "/222-BBB-222/rest/v1/leads/describe.json",
        headers={"Authorization": f"Bearer {root_token}"},
    )
    assert error_of(await resp.json()) == ("601", "Access token invalid")
    await other.upload("email\na@example.com\n")
    stats = await sim.admin("GET", "/_sim/stats")
    assert len(stats["instances"]["222-BBB-222"]["batches"]) == 1
    assert stats["instances"]["111-AAA-111"]["batches"] == []
    resp = await sim.client.get("/333-CCC-333/identity/oauth/token", params=CREDS)
    assert resp.status == 404


async def test_wrong_method_on_known_path_gets_605(sim: Sim) -> None:
    resp = await sim.client.delete(
        "/bulk/v1/leads/batch/1001.json", headers=await sim.headers()
    )
    assert resp.status == 200
    assert error_of(await resp.json()) == ("605", "HTTP method not supported")
    resp = await sim.client.get("/bulk/v1/leads.json", headers=await sim.headers())
    assert error_of(await resp.json()) == ("605", "HTTP method not supported")
    resp = await sim.client.delete("/identity/oauth/token")
    assert resp.status == 405


async def test_describe_custom_object_gives_its_dedupe_fields(make_sim: MakeSim) -> None:
    sim: Sim = await make_sim(custom_objects={
        "car_c": {"fields": [{"name": "vin", "display_name": "VIN"},
                             {"name": "make", "display_name": "Make"},
                             {"name": "year", "display_name": "Year", "data_type": "integer"}],
                  "dedupe_fields": ["vin"], "display_name": "Car"},
        "seat_c": {"fields": [{"name": "flight", "display_name": "Flight"},
                              {"name": "seat", "display_name": "Seat"}],
                   "dedupe_fields": ["flight", "seat"]},
    })
    body = await sim.get_json("/rest/v1/customobjects/car_c/describe.json")
    assert body["success"] is True
    (car,) = body["result"]
    assert (car["name"], car["displayName"], car["idField"]) == ("car_c", "Car", "marketoGUID")
    assert car["dedupeFields"] == ["vin"]
    assert car["searchableFields"] == [["vin"], ["marketoGUID"]]
    fields = {f["name"]: f for f in car["fields"]}
    assert fields["vin"] == {"name": "vin", "displayName": "VIN", "dataType": "string",
                             "length": 255, "updateable": True}
    assert fields["year"] == {"name": "year", "displayName": "Year", "dataType": "integer",
                              "updateable": True}
    assert fields["marketoGUID"]["updateable"] is False
    (seat,) = (await sim.get_json("/rest/v1/customobjects/seat_c/describe.json"))["result"]
    assert seat["dedupeFields"] == ["flight", "seat"]  # a compound key: one list
    body = await sim.get_json("/rest/v1/customobjects/boat_c/describe.json")
    assert error_of(body) == ("1013", "Object not found")
    assert (await sim.stats())["calls_by_endpoint"]["describe_custom_object"] == 3
