"""Validation at upload (docs/reference/marketo-api.md §8.4, §8.3): the job is not created."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from sim_helpers import JSON_CT, MakeSim, Sim, error_of

GOOD = "email,firstName\na@example.com,Ann\n"


async def _no_batches(sim: Sim) -> None:
    assert (await sim.stats())["batches"] == []


async def test_whole_body_over_limit_gets_413_by_content_length(make_sim: MakeSim) -> None:
    sim: Sim = await make_sim(max_body_bytes=2000)
    fd = aiohttp.FormData()
    fd.add_field("file", b"email\n" + b"a@example.com\n" * 200, filename="l.csv")
    resp = await sim.client.post(
        "/bulk/v1/leads.json", params={"format": "csv"}, data=fd, headers=await sim.headers()
    )
    assert resp.status == 413
    assert not resp.headers["Content-Type"].startswith("application/json")
    assert "413" in await resp.text()
    stats = await sim.stats()
    assert stats["errors"] == {"413": 1}
    assert stats["batches"] == []


async def test_chunked_body_over_limit_gets_413_while_streaming(make_sim: MakeSim) -> None:
    sim: Sim = await make_sim(max_body_bytes=100_000)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"--b\r\n" + b"x" * 20_000

    resp = await sim.client.post(
        "/bulk/v1/leads.json?format=csv",
        data=body(),
        headers={**await sim.headers(), "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert resp.status == 413
    assert (await sim.stats())["errors"] == {"413": 1}


async def test_body_exactly_at_limit_is_accepted(make_sim: MakeSim) -> None:
    sim: Sim = await make_sim(max_body_bytes=10_000)
    boundary = "bnd"
    head = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
        f"filename=\"l.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    rows = b"email\n"
    padding = 10_000 - len(head) - len(tail) - len(rows)
    data = head + rows + b"a@example.com\n" * (padding // 14) + b"\n" * (padding % 14) + tail
    assert len(data) == 10_000
    resp = await sim.client.post(
        "/bulk/v1/leads.json?format=csv",
        data=data,
        headers={**await sim.headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.status == 200
    assert (await resp.json())["success"] is True


async def test_not_multipart_gets_612(sim: Sim) -> None:
    resp = await sim.client.post(
        "/bulk/v1/leads.json?format=csv", data={"x": "y"}, headers=await sim.headers()
    )
    assert resp.status == 200
    assert resp.headers["Content-Type"] == JSON_CT
    assert error_of(await resp.json()) == ("612", "Invalid Content Type")
    await _no_batches(sim)


async def test_no_file_part_gets_613(sim: Sim) -> None:
    fd = aiohttp.FormData()
    fd.add_field("format", "csv")
    fd.add_field("data", b"email\na@example.com\n", filename="l.csv")
    resp = await sim.client.post("/bulk/v1/leads.json", data=fd, headers=await sim.headers())
    assert error_of(await resp.json()) == ("613", "Invalid Multipart Request")
    await _no_batches(sim)


async def test_malformed_multipart_gets_613(sim: Sim) -> None:
    resp = await sim.client.post(
        "/bulk/v1/leads.json?format=csv",
        data=b"--zzz\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nemail\n",
        headers={**await sim.headers(), "Content-Type": "multipart/form-data; boundary=zzz"},
    )
    assert error_of(await resp.json()) == ("613", "Invalid Multipart Request")


@pytest.mark.parametrize("fmt", [None, "xls", ""])
async def test_missing_or_bad_format_gets_1003(sim: Sim, fmt: str | None) -> None:
    body = await sim.upload(GOOD, fmt=fmt)
    assert error_of(body) == ("1003", "Invalid format")
    await _no_batches(sim)


@pytest.mark.parametrize("fmt", ["CSV", "Csv"])
async def test_format_is_case_insensitive(sim: Sim, fmt: str) -> None:
    body = await sim.upload(GOOD, fmt=fmt)
    assert body["success"] is True


async def test_parameters_are_accepted_as_form_fields(sim: Sim) -> None:
    body = await sim.upload(
        "customerTier,email\ngold,a@example.com\n",
        fmt=None,
        form={"format": "csv", "lookupField": "customerTier", "listId": "1001"},
    )
    assert body["success"] is True
    batch_id = body["result"][0]["batchId"]
    sim.clock.advance(1)
    assert (await sim.status(batch_id))["status"] == "Complete"
    leads = await sim.admin("GET", "/_sim/leads")
    assert leads[0]["customerTier"] == "gold"
    assert leads[0]["listIds"] == [1001]


@pytest.mark.parametrize(
    "content",
    [b"", b"\n\n", b"email,firstName\n", b"email,firstName\r\n\r\n\r\n"],
    ids=["empty", "blank-lines", "header-only", "header-and-blank-lines"],
)
async def test_empty_file_or_header_only_gets_1003(sim: Sim, content: bytes) -> None:
    body = await sim.upload(content)
    assert error_of(body) == ("1003", "Empty File")
    await _no_batches(sim)


async def test_bytes_that_are_not_utf8_get_1003(sim: Sim) -> None:
    body = await sim.upload("email,lastName\na@example.com,Müller\n".encode("latin-1"))
    assert error_of(body) == ("1003", "Invalid file encoding")
    await _no_batches(sim)


async def test_unknown_partition_gets_1003(sim: Sim) -> None:
    body = await sim.upload(GOOD, query={"partitionName": "Europe"})
    assert error_of(body) == ("1003", "Partition 'Europe' not found")
    ok = await sim.upload(GOOD, query={"partitionName": "Default"})
    assert ok["success"] is True


async def test_unknown_header_field_gets_1006(sim: Sim) -> None:
    body = await sim.upload("email,First Name\na@example.com,Ann\n")
    assert error_of(body) == ("1006", "Field 'First Name' not found")
    body = await sim.upload("email,firstname\na@example.com,Ann\n")  # case-sensitive
    assert error_of(body) == ("1006", "Field 'firstname' not found")
    await _no_batches(sim)


async def test_bom_is_not_stripped_and_first_header_is_unknown(sim: Sim) -> None:
    body = await sim.upload(b"\xef\xbb\xbfemail,firstName\na@example.com,Ann\n")
    assert error_of(body) == ("1006", "Field '\ufeffemail' not found")
    await _no_batches(sim)


@pytest.mark.parametrize("lookup", ["firstName", "nope", "annualRevenue", "lastPurchaseAt"])
async def test_unsupported_lookup_field_gets_1011(sim: Sim, lookup: str) -> None:
    body = await sim.upload(GOOD, query={"lookupField": lookup})
    assert error_of(body) == ("1011", f"Field '{lookup}' not supported")
    await _no_batches(sim)


@pytest.mark.parametrize("lookup", ["email", "id", "customerTier", "accountScore"])
async def test_supported_lookup_fields(sim: Sim, lookup: str) -> None:
    body = await sim.upload(GOOD, query={"lookupField": lookup})
    assert body["success"] is True


@pytest.mark.parametrize("list_id", ["9999", "abc"])
async def test_unknown_list_gets_1013(sim: Sim, list_id: str) -> None:
    body = await sim.upload(GOOD, query={"listId": list_id})
    assert error_of(body) == ("1013", "Object not found")
    await _no_batches(sim)
