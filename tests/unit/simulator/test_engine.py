"""The engine without HTTP: the queue follows the clock exactly (8.3, 8.5)."""

from __future__ import annotations

import pytest

from orchestrator.simulator import ManualClock, SimulatorConfig
from orchestrator.simulator.engine import Simulator
from orchestrator.simulator.errors import ApiError
from orchestrator.simulator.jobs import JobKind, JobStatus


def _file(n: int) -> bytes:
    return ("email\n" + "".join(f"u{i}@example.com\n" for i in range(n))).encode()


def test_jobs_progress_lazily_and_start_back_to_back() -> None:
    clock = ManualClock(start=0.0)
    sim = Simulator(SimulatorConfig(max_importing=1), clock)
    inst = sim.default_instance
    a = sim.create_import(inst, JobKind.LEAD, {"format": "csv"}, _file(100))  # 0.2 s
    b = sim.create_import(inst, JobKind.LEAD, {"format": "csv"}, _file(50))  # 0.1 s
    clock.advance(10)  # nobody looked in between
    sim.advance(inst)
    assert (a.status, b.status) == (JobStatus.COMPLETE, JobStatus.COMPLETE)
    assert [a.importing_at, a.finished_at] == pytest.approx([0.0, 0.2])
    assert [b.importing_at, b.finished_at] == pytest.approx([0.2, 0.3])
    assert inst.slot_busy == [pytest.approx(0.3)]
    assert len(inst.store.leads) == 100


def test_queue_limit_counts_foreign_jobs() -> None:
    sim = Simulator(SimulatorConfig(), ManualClock())
    inst = sim.default_instance
    assert len(sim.add_foreign_jobs(inst, 12, 30.0)) == 10
    with pytest.raises(ApiError) as info:
        sim.create_import(inst, JobKind.LEAD, {"format": "csv"}, _file(1))
    assert (info.value.code, info.value.message) == ("1016", "Too many imports")


def test_store_can_be_turned_off_for_large_runs() -> None:
    clock = ManualClock()
    sim = Simulator(SimulatorConfig(store_leads=False), clock)
    inst = sim.default_instance
    job = sim.create_import(inst, JobKind.LEAD, {"format": "csv"}, _file(10))
    clock.advance(1)
    sim.advance(inst)
    assert job.imported == 10
    assert inst.store.leads == {}


def test_time_scale_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Simulator(time_scale=0)
    assert Simulator(time_scale=60).clock.time_scale == 60  # type: ignore[attr-defined]
