"""Simulator throughput: parsing/validating a ~10 MB upload and answering status calls.

Both are measured through the real HTTP app (aiohttp TestServer on loopback) and each against a
baseline measured in the same run:

- upload MB/s vs raw ``csv.reader`` over the same bytes (decode + parse, nothing else);
- status calls/s vs a trivial aiohttp handler returning fixed JSON over the same client;
- rows/s applied to the lead store when a finished job is first observed (no baseline).

``python -m bench.bench_simulator [--quick]`` prints the figures.
"""

from __future__ import annotations

import asyncio
import csv
import io
import statistics
import sys
import time
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from orchestrator.simulator import SIMULATOR_KEY, ManualClock, SimulatorConfig, create_app
from orchestrator.simulator.jobs import JobKind

CREDS = {
    "grant_type": "client_credentials",
    "client_id": "leadflow-sim",
    "client_secret": "leadflow-sim-secret",
}
BOUNDARY = "benchboundary7d3f"


def make_csv(target_bytes: int) -> bytes:
    """A realistic lead file of about ``target_bytes`` bytes (1 % failing, 1 % warned rows)."""
    lines = ["email,firstName,lastName,company,title,leadScore,city,country"]
    size = len(lines[0]) + 1
    i = 0
    while size < target_bytes:
        email = f"lead{i}@example{i % 97}.com" if i % 100 != 7 else f"lead{i}-no-at"
        score = str(i % 1000) if i % 100 != 13 else "high"
        line = (f"{email},First{i},Last{i},\"Company {i % 5000}, Inc.\",Manager,{score},"
                f"Springfield,United States")
        lines.append(line)
        size += len(line) + 1
        i += 1
    return ("\n".join(lines) + "\n").encode()


def multipart(data: bytes) -> bytes:
    """The whole multipart body for an upload of ``data`` as the ``file`` part."""
    head = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
        f"filename=\"leads.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def baseline_parse_seconds(data: bytes, repeat: int) -> float:
    """Median seconds for ``csv.reader`` to decode and parse ``data`` into rows."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
        times.append(time.perf_counter() - t0)
        assert rows
    return statistics.median(times)


async def _upload_seconds(data: bytes, repeat: int) -> tuple[float, float]:
    """Median seconds per upload through the app, and rows/s applied at completion."""
    config = SimulatorConfig(rate_limit_calls=10**9, daily_quota=10**9)
    clock = ManualClock()
    server = TestServer(create_app(config, clock=clock))
    await server.start_server()
    body = multipart(data)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    times: list[float] = []
    apply_rates: list[float] = []
    try:
        async with aiohttp.ClientSession(str(server.make_url(""))) as session:
            for _ in range(repeat):
                async with session.post("/_sim/reset"):
                    pass
                async with session.get("/identity/oauth/token", params=CREDS) as resp:
                    token = (await resp.json())["access_token"]
                headers["Authorization"] = f"Bearer {token}"
                t0 = time.perf_counter()
                async with session.post("/bulk/v1/leads.json?format=csv", data=body,
                                        headers=headers) as resp:
                    result = await resp.json()
                times.append(time.perf_counter() - t0)
                assert result["success"], result
                batch_id = result["result"][0]["batchId"]
                clock.advance(3000)  # long enough for 100k+ rows at 500 rows/s
                t0 = time.perf_counter()
                async with session.get(f"/bulk/v1/leads/batch/{batch_id}.json",
                                       headers={"Authorization": headers["Authorization"]}
                                       ) as resp:
                    status = (await resp.json())["result"][0]
                elapsed = time.perf_counter() - t0
                rows = status["numOfLeadsProcessed"] + status["numOfRowsFailed"]
                apply_rates.append(rows / elapsed)
    finally:
        await server.close()
    return statistics.median(times), statistics.median(apply_rates)


async def _calls_per_second(app: web.Application, path: str, calls: int,
                            headers_for: Any = None) -> float:
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession(str(server.make_url(""))) as session:
            headers = await headers_for(session) if headers_for else {}
            for _ in range(20):  # warm-up
                async with session.get(path, headers=headers) as resp:
                    await resp.read()
            t0 = time.perf_counter()
            for _ in range(calls):
                async with session.get(path, headers=headers) as resp:
                    await resp.read()
            return calls / (time.perf_counter() - t0)
    finally:
        await server.close()


def _trivial_app() -> web.Application:
    body = (b'{"requestId":"1#1","result":[{"batchId":1001,"importId":"1001",'
            b'"status":"Importing","numOfLeadsProcessed":0,"numOfRowsFailed":0,'
            b'"numOfRowsWithWarning":0}],"success":true}')

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/bulk/v1/leads/batch/{batchId}.json", handler)
    return app


async def _status_calls_per_second(calls: int) -> float:
    config = SimulatorConfig(rate_limit_calls=10**9, daily_quota=10**9)
    clock = ManualClock()
    app = create_app(config, clock=clock)
    sim = app[SIMULATOR_KEY]
    inst = sim.default_instance
    # Ten jobs in the queue, two importing (the realistic state while a daemon polls).
    for _ in range(10):
        sim.create_import(inst, JobKind.LEAD, {"format": "csv"}, make_csv(50_000))

    async def auth(session: aiohttp.ClientSession) -> dict[str, str]:
        async with session.get("/identity/oauth/token", params=CREDS) as resp:
            return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}

    return await _calls_per_second(app, "/bulk/v1/leads/batch/1001.json", calls, auth)


async def _run(quick: bool) -> dict[str, float]:
    size = 2_000_000 if quick else 10_000_000
    repeat = 2 if quick else 3
    calls = 500 if quick else 3000
    data = make_csv(size)
    mb = len(data) / 1e6
    base_s = baseline_parse_seconds(data, repeat)
    upload_s, apply_rows = await _upload_seconds(data, repeat)
    status_cps = await _status_calls_per_second(calls)
    base_cps = await _calls_per_second(_trivial_app(), "/bulk/v1/leads/batch/1001.json", calls)
    return {
        "upload_mb": mb,
        "upload_mb_per_s": mb / upload_s,
        "baseline_csv_reader_mb_per_s": mb / base_s,
        "upload_vs_baseline": (mb / upload_s) / (mb / base_s),
        "status_calls_per_s": status_cps,
        "baseline_trivial_handler_calls_per_s": base_cps,
        "status_vs_baseline": status_cps / base_cps,
        "apply_rows_per_s": apply_rows,
    }


def run(quick: bool) -> dict[str, float]:
    """Measure and print the figures; ``quick`` uses a 2 MB file and fewer calls."""
    figures = asyncio.run(_run(quick))
    for name, value in figures.items():
        print(f"{name:40s} {value:12.2f}")
    return figures


if __name__ == "__main__":
    run("--quick" in sys.argv[1:])
