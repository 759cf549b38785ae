"""Row outcomes, messages, failures/warnings files, the lead store.

See docs/reference/marketo-api.md §3, §8.5 and §8.6.
"""

from __future__ import annotations

import csv
import io

import pytest
from sim_helpers import Sim

CSV_CT = "text/csv;charset=UTF-8"


async def _run(sim: Sim, content: str | bytes, **kw: object) -> int:
    body = await sim.upload(content, **kw)  # type: ignore[arg-type]
    assert body["success"] is True, body
    batch_id: int = body["result"][0]["batchId"]
    return batch_id


async def _complete(sim: Sim, content: str | bytes, **kw: object) -> tuple[int, dict[str, object]]:
    batch_id = await _run(sim, content, **kw)
    sim.clock.advance(3600)
    status = await sim.status(batch_id)
    assert status["status"] == "Complete"
    return batch_id, status


async def _file(sim: Sim, batch_id: int, kind: str) -> tuple[int, str, str]:
    resp = await sim.get(f"/bulk/v1/leads/batch/{batch_id}/{kind}.json")
    return resp.status, resp.headers.get("Content-Type", ""), await resp.text()


MIXED = (
    "email,firstName,leadScore,dateOfBirth,unsubscribed,annualRevenue,lastPurchaseAt\n"
    "ok@example.com,Ok,10,1990-01-31,true,12.5,2026-01-01T10:00:00Z\n"  # ok
    "short@example.com,Short\n"  # 1. wrong field count
    ",NoEmail,1,,,,\n"  # 2. empty lookup
    "int@example.com,Int,ten,,,,\n"  # 3. integer
    "date@example.com,Date,,31/01/1990,,,\n"  # 3. date
    "bool@example.com,Bool,,,maybe,,\n"  # 3. boolean
    "float@example.com,Float,,,,12,5x,\n"  # wrong count (8 fields)
    "flt@example.com,Flt,,,,abc,\n"  # 3. float
    "dt@example.com,Dt,,,,,yesterday\n"  # 3. datetime
    "not-an-email,Warn,1,,,,\n"  # 4. warning
)


async def test_row_outcomes_and_reasons_in_contract_order(sim: Sim) -> None:
    batch_id, status = await _complete(sim, MIXED)
    assert status == {
        "batchId": batch_id,
        "importId": str(batch_id),
        "status": "Complete",
        "numOfLeadsProcessed": 2,
        "numOfRowsFailed": 8,
        "numOfRowsWithWarning": 1,
        "message": "Import completed with errors, 2 records imported (2 members), 8 failed, "
        "1 warning.",
    }
    code, ctype, text = await _file(sim, batch_id, "failures")
    assert code == 200 and ctype == CSV_CT
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["Import Failure Reason"] for r in rows] == [
        "Invalid number of fields",
        "Value for lookup field 'email' not found",
        "Invalid data type in field Lead Score",
        "Invalid data type in field Date of Birth",
        "Invalid data type in field Unsubscribed",
        "Invalid number of fields",
        "Invalid data type in field Annual Revenue",
        "Invalid data type in field Last Purchase At",
    ]
    assert rows[2]["email"] == "int@example.com"
    code, ctype, text = await _file(sim, batch_id, "warnings")
    assert code == 200 and ctype == CSV_CT
    # The last column (lastPurchaseAt) is empty in the only warned row: dropped (8.6 quirk).
    assert text.splitlines() == [
        "email,firstName,leadScore,dateOfBirth,unsubscribed,annualRevenue,Import Warning Reason",
        "not-an-email,Warn,1,,,,Invalid email address",
    ]
    leads = await sim.admin("GET", "/_sim/leads")
    assert sorted(lead["email"] for lead in leads) == ["not-an-email", "ok@example.com"]


async def test_success_message_and_404_files_when_none(sim: Sim) -> None:
    batch_id, status = await _complete(sim, "email\na@example.com\nb@example.com\n")
    assert status["message"] == "Import succeeded, 2 records imported (2 members)"
    for kind in ("failures", "warnings"):
        code, ctype, _ = await _file(sim, batch_id, kind)
        assert code == 404
        assert not ctype.startswith("application/json")


@pytest.mark.parametrize(("n", "suffix"), [(1, "1 warning."), (2, "2 warnings.")])
async def test_warning_suffix_singular_and_plural(sim: Sim, n: int, suffix: str) -> None:
    content = "email\n" + "".join(f"bad{i}\n" for i in range(n)) + "ok@example.com\n"
    _, status = await _complete(sim, content)
    assert status["message"] == f"Import succeeded, {n + 1} records imported ({n + 1} members), {suffix}"
    assert status["numOfRowsWithWarning"] == n


async def test_truncation_warning_keeps_255_characters(sim: Sim) -> None:
    long = "x" * 300
    batch_id, status = await _complete(sim, f"email,title\na@example.com,{long}\n")
    assert status["numOfRowsWithWarning"] == 1
    _, _, text = await _file(sim, batch_id, "warnings")
    assert text.splitlines()[1] == f"a@example.com,{long},Value for field Job Title was truncated"
    lead = (await sim.admin("GET", "/_sim/leads", params={"email": "a@example.com"}))[0]
    assert lead["title"] == "x" * 255


async def test_counters_grow_while_importing(sim: Sim) -> None:
    content = "email,leadScore\n" + "".join(
        f"u{i}@example.com,{'x' if i % 10 == 0 else i}\n" for i in range(1000)
    )
    batch_id = await _run(sim, content)
    s0 = await sim.status(batch_id)
    assert (s0["status"], s0["numOfLeadsProcessed"], s0["numOfRowsFailed"]) == ("Importing", 0, 0)
    assert "message" not in s0
    sim.clock.advance(1.0)  # 500 rows at 500 rows/s
    s1 = await sim.status(batch_id)
    assert s1["status"] == "Importing"
    assert (s1["numOfLeadsProcessed"], s1["numOfRowsFailed"]) == (450, 50)
    code, _, _ = await _file(sim, batch_id, "failures")
    assert code == 404  # no file before the job ends
    assert len(await sim.admin("GET", "/_sim/leads")) == 450
    sim.clock.advance(1.0)
    s2 = await sim.status(batch_id)
    assert (s2["status"], s2["numOfLeadsProcessed"], s2["numOfRowsFailed"]) == ("Complete", 900, 100)


@pytest.mark.parametrize(("fmt", "delim"), [("tsv", "\t"), ("ssv", ";"), ("csv", ",")])
async def test_failures_file_uses_upload_delimiter_and_quotes(
    sim: Sim, fmt: str, delim: str
) -> None:
    d = delim
    content = (
        f"email{d}company{d}leadScore\n"
        f'a@example.com{d}"Acme{d} ""Inc""\nNorth"{d}x\n'
        f"b@example.com{d}Beta{d}3\n"
    )
    batch_id, status = await _complete(sim, content, fmt=fmt)
    assert status["numOfRowsFailed"] == 1
    _, ctype, text = await _file(sim, batch_id, "failures")
    assert ctype == CSV_CT
    rows = list(csv.reader(io.StringIO(text), delimiter=delim))
    assert rows == [
        ["email", "company", "leadScore", "Import Failure Reason"],
        ["a@example.com", f'Acme{d} "Inc"\nNorth', "x", "Invalid data type in field Lead Score"],
    ]


async def test_failures_file_drops_empty_trailing_column(sim: Sim) -> None:
    # BLOG-teknkl: header firstName,lastName,phone,email with an empty email.
    content = "firstName,lastName,phone,email\nBenji,Nordstrom,212-555-2323,\n"
    batch_id, _ = await _complete(sim, content)
    _, _, text = await _file(sim, batch_id, "failures")
    assert text == (
        "firstName,lastName,phone,Import Failure Reason\n"
        "Benji,Nordstrom,212-555-2323,Value for lookup field 'email' not found\n"
    )


async def test_trailing_column_kept_when_some_reported_row_has_it(sim: Sim) -> None:
    content = "email,leadScore,title\n,1,\nb@example.com,x,CEO\n"
    batch_id, _ = await _complete(sim, content)
    _, _, text = await _file(sim, batch_id, "failures")
    assert text.splitlines()[0] == "email,leadScore,title,Import Failure Reason"


async def test_rfc4180_records_crlf_and_blank_lines(sim: Sim) -> None:
    content = (
        'email,address\r\n\r\na@example.com,"1 Main St,\r\nSuite 2"\r\n\n'
        'b@example.com,"He said ""hi"""\n'
    )
    _, status = await _complete(sim, content)
    assert (status["numOfLeadsProcessed"], status["numOfRowsFailed"]) == (2, 0)
    leads = {lead["email"]: lead for lead in await sim.admin("GET", "/_sim/leads")}
    assert leads["a@example.com"]["address"] == "1 Main St,\r\nSuite 2"
    assert leads["b@example.com"]["address"] == 'He said "hi"'


async def test_upsert_on_lookup_field_last_row_wins(sim: Sim) -> None:
    await _complete(sim, "email,firstName,leadScore\na@example.com,Ann,1\na@example.com,Anna,\n")
    leads = await sim.admin("GET", "/_sim/leads")
    assert len(leads) == 1
    assert leads[0]["firstName"] == "Anna"
    assert leads[0]["leadScore"] == "1"  # an empty cell does not overwrite
    _, status = await _complete(
        sim,
        "accountScore,email,firstName\n77,a@example.com,Annie\n88,c@example.com,Cy\n",
        query={"lookupField": "email", "listId": "1002"},
    )
    assert status["numOfLeadsProcessed"] == 2
    leads = {lead["email"]: lead for lead in await sim.admin("GET", "/_sim/leads")}
    assert leads["a@example.com"]["firstName"] == "Annie"
    assert leads["a@example.com"]["listIds"] == [1002]
    assert leads["c@example.com"]["partitionName"] == "Default"


async def test_lookup_by_id_updates_only(sim: Sim) -> None:
    await _complete(sim, "email,firstName\na@example.com,Ann\n")
    lead_id = (await sim.admin("GET", "/_sim/leads"))[0]["id"]
    batch_id, status = await _complete(
        sim, f"id,firstName\n{lead_id},Anne\n999,Ghost\n", query={"lookupField": "id"}
    )
    assert (status["numOfLeadsProcessed"], status["numOfRowsFailed"]) == (1, 1)
    leads = await sim.admin("GET", "/_sim/leads")
    assert [(lead["id"], lead["firstName"]) for lead in leads] == [(lead_id, "Anne")]
    _, _, text = await _file(sim, batch_id, "failures")
    assert text.splitlines()[1] == "999,Ghost,Lead not found"
