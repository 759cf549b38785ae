"""The benchmarks' arithmetic: figures, targets, and the busy fraction from batch timelines."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.adapters import adapt
from bench.common import figure
from bench.harness import analyse
from bench.workload import Upload


def _batch(batch_id: int, created: float, start: float, end: float,
           kind: str = "lead", status: str = "Complete") -> dict[str, object]:
    return {"batchId": batch_id, "kind": kind, "status": status, "created_at": created,
            "importing_at": start, "finished_at": end}


def _stats(batches: list[dict[str, object]]) -> dict[str, object]:
    return {"batches": batches, "slot_busy_s": [0.0, 0.0],
            "calls_by_endpoint": {"identity": 2, "import_lead": 4, "lead_status": 10},
            "errors": {}, "peak_calls_per_window": 3, "peak_concurrent_calls": 2,
            "peak_queued_or_importing": 4}


def _uploads(n: int, rows: int = 100) -> list[Upload]:
    return [Upload(Path(f"u{i}.csv"), rows, 1000, i) for i in range(n)]


def test_figure_ratio_and_targets() -> None:
    f = figure("x", 30.0, "calls", baseline=120.0, baseline_name="naive", target="<= 0.334",
               target_on="ratio")
    assert f["ratio"] == pytest.approx(0.25)
    assert f["met"] is True
    assert f["target"] == "ratio <= 0.334"
    assert figure("busy", 0.97, "", target=">= 0.98")["met"] is False
    assert figure("none", None, "s", target=">= 1")["met"] is None
    with pytest.raises(ValueError):
        figure("bad", 1.0, "", target="about 2")


def test_perfect_packing_is_busy_one_and_ideal_makespan() -> None:
    # 4 uploads of 100 s on 2 slots, back to back from t=0: the ideal itself.
    batches = [_batch(1, 0, 0, 100), _batch(2, 0, 0, 100),
               _batch(3, 0, 100, 200), _batch(4, 0, 100, 200)]
    out = analyse(_stats(batches), 0.0, _uploads(4), rate=1.0)
    assert out["busy_fraction"] == pytest.approx(1.0)
    assert out["makespan_ratio"] == pytest.approx(1.0)
    assert out["status_calls_per_upload"] == pytest.approx(2.5)
    assert out["calls_per_upload"] == pytest.approx(3.5)  # identity not counted


def test_a_gap_while_backlog_waits_costs_busy_time() -> None:
    # Slot 2 idles 50 s between its jobs while the 4th upload still waits.
    batches = [_batch(1, 0, 0, 100), _batch(2, 0, 0, 100),
               _batch(3, 0, 100, 200), _batch(4, 0, 150, 250)]
    out = analyse(_stats(batches), 0.0, _uploads(4), rate=1.0)
    # demand: 2 slots for 0-200, then 1 (one job left) for 200-250 = 450 slot-s; busy 400.
    assert out["busy_fraction"] == pytest.approx(400 / 450)
    assert out["makespan_ratio"] == pytest.approx(250 / 200)


def test_the_tail_with_one_job_left_is_not_idle_time() -> None:
    # 3 uploads: the last runs alone; nothing else could have used the other slot.
    batches = [_batch(1, 0, 0, 100), _batch(2, 0, 0, 100), _batch(3, 0, 100, 200)]
    out = analyse(_stats(batches), 0.0, _uploads(3), rate=1.0)
    assert out["busy_fraction"] == pytest.approx(1.0)


def test_foreign_jobs_and_share_in_the_ideal() -> None:
    batches = [_batch(1, 0, 0, 100, kind="foreign"), _batch(2, 0, 0, 100),
               _batch(3, 0, 100, 200)]
    out = analyse(_stats(batches), 0.0, _uploads(2), rate=1.0, share=0.5)
    assert out["batches"] == 2
    assert out["ideal_s"] == pytest.approx(200.0)  # 200 s of work / 2 slots / share 0.5
    assert out["makespan_ratio"] == pytest.approx(1.0)


def test_simulator_flat_result_becomes_paired_figures() -> None:
    out = adapt("simulator", {"upload_mb": 10.0, "upload_mb_per_s": 20.0,
                              "baseline_csv_reader_mb_per_s": 40.0, "status_calls_per_s": 900.0,
                              "baseline_trivial_handler_calls_per_s": 1800.0,
                              "apply_rows_per_s": 5.0})
    by_name = {f["name"]: f for f in out["figures"]}
    assert by_name["upload parse+validate speed"]["ratio"] == pytest.approx(0.5)
    assert by_name["status calls per second"]["baseline_name"] == "trivial aiohttp handler"
