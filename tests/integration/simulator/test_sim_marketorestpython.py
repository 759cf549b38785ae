"""Fidelity: the third-party ``marketorestpython`` client works against the simulator unchanged
except for its host (issue 3). It is synchronous (``requests``), so the simulator runs in a
thread on a free loopback port, with a manual clock the test advances.
"""

from __future__ import annotations

import asyncio
import csv
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import pytest
import requests
from aiohttp import web
from marketorestpython.client import MarketoClient

from orchestrator.simulator import ManualClock, create_app


class ThreadedSim:
    def __init__(self) -> None:
        self.clock = ManualClock()
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(create_app(clock=self.clock), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    def __enter__(self) -> Self:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        self.loop.close()

    def admin(self, path: str) -> Any:
        return requests.get(self.url + path, timeout=10).json()


@pytest.fixture
def threaded_sim() -> Iterator[ThreadedSim]:
    with ThreadedSim() as sim:
        yield sim


CONTENT = (
    "email,firstName,lastName,leadScore\n"
    "good@example.com,Good,Row,10\n"
    "not-an-email,Warned,Row,20\n"
    "bad@example.com,Failing,Row,lots\n"
    ",No,Email,30\n"
)


@pytest.mark.filterwarnings("ignore::ResourceWarning")  # the client never closes the file
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_marketorestpython_import_status_and_files(
    threaded_sim: ThreadedSim, tmp_path: Path
) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(CONTENT)
    mc = MarketoClient("123-ABC-456", "leadflow-sim", "leadflow-sim-secret")
    mc.host = threaded_sim.url  # the only change: point it at the simulator

    created = mc.import_lead("csv", str(path), lookupField="email", listId=1001)
    assert created == [{"batchId": 1001, "importId": "1001", "status": "Queued"}]

    threaded_sim.clock.advance(60)
    status = mc.get_import_lead_status(1001)
    assert status == [
        {
            "batchId": 1001,
            "importId": "1001",
            "status": "Complete",
            "numOfLeadsProcessed": 2,
            "numOfRowsFailed": 2,
            "numOfRowsWithWarning": 1,
            "message": "Import completed with errors, 2 records imported (2 members), 2 failed, "
            "1 warning.",
        }
    ]

    failures = list(csv.DictReader(io.StringIO(mc.get_import_failure_file(1001))))
    assert [(r["email"], r["Import Failure Reason"]) for r in failures] == [
        ("bad@example.com", "Invalid data type in field Lead Score"),
        ("", "Value for lookup field 'email' not found"),
    ]
    warnings = list(csv.DictReader(io.StringIO(mc.get_import_warning_file(1001))))
    assert [(r["email"], r["Import Warning Reason"]) for r in warnings] == [
        ("not-an-email", "Invalid email address")
    ]

    leads = threaded_sim.admin("/_sim/leads")
    assert sorted(lead["email"] for lead in leads) == ["good@example.com", "not-an-email"]
    assert all(lead["listIds"] == [1001] for lead in leads)

    # Finding: marketorestpython 0.5.25 moves access_token from its args into the
    # Authorization header (helper/http_lib.py), so no call carries it in the query string.
    log = threaded_sim.admin("/_sim/requests")
    api_calls = [e for e in log if e["endpoint"] != "identity"]
    assert [e["endpoint"] for e in api_calls] == [
        "import_lead",
        "lead_status",
        "lead_failures",
        "lead_warnings",
    ]
    assert all(e["token_in"] == ["header:Authorization"] for e in api_calls)
    assert all(e["auth_scheme"] == "Bearer" and not e["token_in_query"] for e in api_calls)
    assert all(e["status"] == 200 and e["code"] is None for e in api_calls)
