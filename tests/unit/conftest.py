"""Fakes for the daemon's unit tests: a clock, a tiny Marketo queue model, files in the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from store_helpers import enqueue_uploads

from orchestrator.errors import ApiPermanentError, QueueFull
from orchestrator.models import NewPart
from orchestrator.settings import Settings
from orchestrator.store import Store


class FakeClock:
    """A clock tests move by hand (epoch seconds)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Job:
    rows: int
    status: str = "Queued"
    processed: int = 0
    failed: int = 0
    warned: int = 0
    message: str = ""
    foreign: bool = False


@dataclass(frozen=True)
class Created:
    batch_id: int
    status: str


@dataclass(frozen=True)
class Status:
    batch_id: int
    status: str
    num_leads_processed: int
    num_rows_failed: int
    num_rows_with_warning: int
    message: str


class FakeTokens:
    """A token manager whose identity endpoint always grants a token."""

    url = "https://fake.mktorest.com/identity/oauth/token"

    def __init__(self) -> None:
        self.calls = 0

    async def get(self) -> str:
        self.calls += 1
        return "fake-token"


class FakeMarketo:
    """Marketo's import queue in miniature: 10 jobs queued-or-importing, 1016 beyond.

    ``create_errors``/``status_errors`` are consumed one per call before the normal behaviour
    (None in the list means "behave normally this time").
    """

    def __init__(self, capacity: int = 10, rows_of: Callable[[Path], int] | None = None) -> None:
        self.capacity = capacity
        self.jobs: dict[int, Job] = {}
        self.foreign = 0
        self.next_id = 100
        self.create_calls: list[Path] = []
        self.status_calls: list[int] = []
        self.create_errors: list[BaseException | None] = []
        self.status_errors: list[BaseException | None] = []
        self.queue_full = 0
        self.peak_outstanding = 0
        self.block_create: asyncio.Event | None = None
        self.rows_of = rows_of or (lambda path: 10)
        self.complete_on_poll = False
        self.tokens = FakeTokens()
        self.limits: Any = None

    def set_limits(self, limits: Any) -> None:
        self.limits = limits

    def outstanding(self) -> int:
        return sum(1 for j in self.jobs.values() if j.status in ("Queued", "Importing"))

    async def create_import(self, path: Path, *, kind: str, options: dict[str, Any]) -> Created:
        self.create_calls.append(path)
        if self.block_create is not None:
            await self.block_create.wait()
        if self.create_errors:
            err = self.create_errors.pop(0)
            if err is not None:
                raise err
        if self.outstanding() + self.foreign >= self.capacity:
            self.queue_full += 1
            raise QueueFull("1016", "Too many imports")
        self.next_id += 1
        self.jobs[self.next_id] = Job(rows=self.rows_of(path))
        self.peak_outstanding = max(self.peak_outstanding, self.outstanding())
        return Created(self.next_id, "Queued")

    async def get_status(self, batch_id: int, *, kind: str, options: dict[str, Any]) -> Status:
        self.status_calls.append(batch_id)
        if self.status_errors:
            err = self.status_errors.pop(0)
            if err is not None:
                raise err
        job = self.jobs.get(batch_id)
        if job is None:
            raise ApiPermanentError("1013", "Object not found")
        if self.complete_on_poll and job.status in ("Queued", "Importing"):
            self.finish(batch_id)
        return Status(batch_id, job.status, job.processed, job.failed, job.warned, job.message)

    def finish(self, batch_id: int, status: str = "Complete", failed: int = 0) -> None:
        job = self.jobs[batch_id]
        job.status = status
        job.failed = failed
        job.processed = job.rows - failed if status == "Complete" else 0
        job.message = f"Import {'succeeded' if status == 'Complete' else 'failed: boom'}"

    async def describe_leads(self) -> list[Any]:
        return []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fast_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings with tiny intervals for the daemon's loops."""

    def factory(**overrides: Any) -> Settings:
        daemon = {"idle_tick_s": 0.05, "shutdown_grace_s": 0.2, "queue_full_backoff_s": 5.0,
                  "queue_full_backoff_max_s": 60.0, "results_retry_s": 0.1}
        daemon.update(overrides.pop("daemon", {}))
        marketo = {"retry_base_s": 1.0, "retry_max_s": 10.0}
        marketo.update(overrides.pop("marketo", {}))
        return make_settings(daemon=daemon, marketo=marketo, **overrides)

    return factory


@pytest.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    async with Store.open(tmp_path / "unit.db", clock=clock) as opened:
        yield opened


AddFile = Callable[..., Awaitable[list[int]]]


@pytest.fixture
def add_file(store: Store) -> AddFile:
    """Record a file with ``n`` queued uploads; returns the upload ids (FIFO order)."""
    counter = {"n": 0}

    async def factory(n: int = 1, rows: int = 10) -> list[int]:
        counter["n"] += 1
        name = f"f{counter['n']}.csv"
        record = await store.add_file(
            name=name, inbox_path=f"/in/{name}", work_path=f"/work/{name}", route=None,
            size_bytes=100,
        )
        uploads = [
            NewPart(f"/work/{name}.{i}", 100, list(range(2, rows + 2)), "leads",
                      {"format": "csv", "lookupField": "email"})
            for i in range(n)
        ]
        return await enqueue_uploads(store, record.id, uploads, sha256=name, rows_total=rows * n)

    return factory


@pytest.fixture
def marketo() -> FakeMarketo:
    """A fake Marketo with room for 10 jobs."""
    return FakeMarketo()
