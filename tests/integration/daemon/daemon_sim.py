"""Helpers for the daemon's integration tests: the simulator's admin API, a splitting intake,
lead files, and checks over the simulator's batch timelines."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from orchestrator.daemon import Daemon
from orchestrator.marketo import MarketoClient
from orchestrator.models import FileStatus, NewPart
from orchestrator.settings import Settings
from orchestrator.store import Store

#: Bytes of multipart framing we allow for around an upload's file part.
MULTIPART_OVERHEAD = 400


@dataclass
class SimHandle:
    """A running simulator: its URL and its admin API."""

    url: str

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as session, session.request(
            method, f"{self.url}{path}", json=body
        ) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def stats(self) -> dict[str, Any]:
        data = await self._call("GET", "/_sim/stats")
        return next(iter(data["instances"].values()))  # type: ignore[no-any-return]

    async def patch(self, settings: dict[str, Any]) -> Any:
        return await self._call("PATCH", "/_sim/settings", settings)

    async def leads(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/_sim/leads")  # type: ignore[no-any-return]

    async def requests(self) -> list[dict[str, Any]]:
        return await self._call("GET", "/_sim/requests")  # type: ignore[no-any-return]

    async def objects(self, api_name: str) -> list[dict[str, Any]]:
        """The records of one custom object type in the simulator's store."""
        return await self._call(  # type: ignore[no-any-return]
            "GET", f"/_sim/custom-objects/{api_name}"
        )


async def run_once(settings: Settings, timeout_s: float = 30.0) -> None:
    """``leadflow run --once`` in-process: the real intake, client and reporter."""
    async with (
        MarketoClient(settings, window_s=1.0) as client,
        Daemon(settings, client=client, handle_signals=False) as daemon,
    ):
        await asyncio.wait_for(daemon.run(once=True), timeout_s)


def write_lead_files(inbox: Path, count: int, rows_of: Callable[[int], int]) -> dict[str, int]:
    """Write ``count`` CSV lead files; return ``{name: rows}``. Emails are unique overall."""
    inbox.mkdir(parents=True, exist_ok=True)
    made: dict[str, int] = {}
    for n in range(count):
        rows = rows_of(n)
        lines = ["email,firstName,lastName,company"]
        lines += [f"lead{n}-{i}@example.com,First{i},Last{n},Company {n % 7}" for i in range(rows)]
        name = f"leads-{n:03d}.csv"
        (inbox / name).write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
        made[name] = rows
    return made


class SplitIntake:
    """A minimal intake for tests: claims ``*.csv`` files from the inbox and splits them on
    line boundaries so every upload body stays under ``limits.max_upload_bytes``."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.observer: Any = None

    async def recover(self) -> None:
        return None

    async def scan_once(self) -> int:
        taken = 0
        for path in sorted(self.settings.paths.inbox.glob("*.csv")):
            await self._take(path)
            taken += 1
        return taken

    async def run(self, stop: asyncio.Event, on_enqueued: Callable[..., Any]) -> None:
        while not stop.is_set():
            if await self.scan_once():
                on_enqueued()
            try:
                await asyncio.wait_for(stop.wait(), self.settings.intake.rescan_interval_s)
            except TimeoutError:
                pass

    def held(self) -> dict[int, int]:
        return {}

    async def _take(self, path: Path) -> None:
        data = path.read_bytes()
        record = await self.store.add_file(
            name=path.name, inbox_path=str(path), work_path=str(path), route=None,
            size_bytes=len(data),
        )
        work = self.settings.paths.work / str(record.id)
        source = work / "source" / path.name
        source.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, source)
        lines = data.decode("utf-8").splitlines()
        header, rows = lines[0], lines[1:]
        limit = self.settings.limits.max_upload_bytes - MULTIPART_OVERHEAD
        uploads: list[NewPart] = []
        chunk: list[str] = []
        numbers: list[int] = []

        def flush() -> None:
            body = ("\r\n".join([header, *chunk]) + "\r\n").encode()
            target = work / f"upload-{len(uploads) + 1:04d}.csv"
            target.write_bytes(body)
            uploads.append(NewPart(str(target), len(body), list(numbers), "leads",
                                     {"format": "csv", "lookupField": "email"}))

        size = len(header) + 2
        for line_no, row in enumerate(rows, start=2):
            if chunk and size + len(row) + 2 > limit:
                flush()
                chunk, numbers, size = [], [], len(header) + 2
            chunk.append(row)
            numbers.append(line_no)
            size += len(row) + 2
        if chunk:
            flush()
        columns = header.split(",")
        await self.store.enqueue_parts(
            record.id, uploads, new_status=FileStatus.QUEUED,
            sha256=hashlib.sha256(data).hexdigest(), rows_total=len(rows), encoding="utf-8",
            format="csv", work_path=str(work),
            info={"work_dir": str(work), "source_path": str(source), "header": columns,
                  "source_header": columns, "delimiter": ",", "format": "csv",
                  "lookup_field": "email"},
        )


def ours(stats: dict[str, Any]) -> list[dict[str, Any]]:
    """The simulator's batches that are not foreign, by batchId."""
    return sorted((b for b in stats["batches"] if b["kind"] != "foreign"),
                  key=lambda b: b["batchId"])


def max_outstanding(batches: list[dict[str, Any]], after: float = float("-inf")) -> int:
    """Most of ``batches`` queued-or-importing at once (simulated time), from ``after`` on."""
    events: list[tuple[float, int]] = []
    for b in batches:
        end = b["finished_at"] if b["finished_at"] is not None else float("inf")
        if end <= after:
            continue
        events.append((max(b["created_at"], after), 1))
        events.append((end, -1))
    level = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        level += delta
        peak = max(peak, level)
    return peak


def slot_utilisation(batches: list[dict[str, Any]], start: float, end: float) -> float:
    """Share of ``2 * (end - start)`` simulated slot-seconds spent importing our batches."""
    if end <= start:
        return 1.0
    busy = 0.0
    for b in batches:
        if b["importing_at"] is None:
            continue
        lo = max(b["importing_at"], start)
        hi = min(b["finished_at"] if b["finished_at"] is not None else end, end)
        busy += max(0.0, hi - lo)
    return busy / (2 * (end - start))


#: The ``make_sim`` fixture's type: builds a simulator on a loopback TestServer.
MakeSim = Callable[..., Awaitable[SimHandle]]
