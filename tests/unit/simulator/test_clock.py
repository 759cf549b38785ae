"""Clocks (8.1), the quota reset instant (6) and configuration loading."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator.simulator import ManualClock, ScaledClock, SimulatorConfig
from orchestrator.simulator.clock import CHICAGO
from orchestrator.simulator.engine import next_chicago_midnight


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(start=1000.0)
    clock.advance(5)
    assert clock.now() == 1005.0
    clock.set(2000.0)
    assert clock.now() == 2000.0
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(1999.0)


def test_scaled_clock_runs_faster_and_can_jump() -> None:
    clock = ScaledClock(time_scale=1000.0, start=0.0)
    first = clock.now()
    second = clock.now()
    assert 0.0 <= first <= second
    clock.advance(86400)
    assert clock.now() >= 86400
    with pytest.raises(ValueError):
        ScaledClock(time_scale=0)


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        (datetime(2026, 3, 2, 23, 59, tzinfo=CHICAGO), datetime(2026, 3, 3, tzinfo=CHICAGO)),
        # the night DST starts (2026-03-08) and ends (2026-11-01)
        (datetime(2026, 3, 7, 12, tzinfo=CHICAGO), datetime(2026, 3, 8, tzinfo=CHICAGO)),
        (datetime(2026, 3, 8, 12, tzinfo=CHICAGO), datetime(2026, 3, 9, tzinfo=CHICAGO)),
        (datetime(2026, 11, 1, 1, 30, tzinfo=CHICAGO), datetime(2026, 11, 2, tzinfo=CHICAGO)),
    ],
)
def test_next_chicago_midnight(local: datetime, expected: datetime) -> None:
    assert next_chicago_midnight(local.timestamp()) == expected.timestamp()


def test_defaults_are_marketos() -> None:
    cfg = SimulatorConfig()
    assert (cfg.client_id, cfg.client_secret) == ("leadflow-sim", "leadflow-sim-secret")
    assert (cfg.rate_limit_calls, cfg.rate_window_s, cfg.max_concurrent_calls) == (100, 20, 10)
    assert (cfg.daily_quota, cfg.max_importing, cfg.max_queued) == (50_000, 2, 10)
    assert cfg.max_body_bytes == 10_485_760
    assert cfg.token_lifetime_s == 3600
    assert cfg.batch_retention_s == 7 * 86400


def test_config_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text(
        'instances = ["111-AAA-111", "222-BBB-222"]\n'
        "max_body_bytes = 5000\n"
        "[faults]\n"
        "latency_s = 0.5\n"
        "[[extra_fields]]\n"
        'name = "favouriteColour"\n'
        'display_name = "Favourite Colour"\n'
        "custom = true\n"
    )
    cfg = SimulatorConfig.from_toml(path)
    assert cfg.instances == ("111-AAA-111", "222-BBB-222")
    assert cfg.faults.latency_s == 0.5
    assert cfg.lead_fields[-1].name == "favouriteColour"


def test_merged_deep_merges_and_validates() -> None:
    cfg = SimulatorConfig().merged({"faults": {"latency_s": 1.0}})
    assert cfg.faults.latency_s == 1.0
    assert cfg.faults.job_failure_reason == "Internal server error"
    with pytest.raises(ValidationError):
        SimulatorConfig().merged({"instances": ["not-a-munchkin"]})


def test_config_from_a_simulator_table_of_a_shared_file(tmp_path: Path) -> None:
    path = tmp_path / "leadflow.toml"
    path.write_text(
        "[marketo]\nbase_url = 'http://127.0.0.1:8780'\n"
        "[simulator]\nmax_queued = 4\n[simulator.faults]\nhttp_500_probability = 0.1\n"
    )
    cfg = SimulatorConfig.from_toml(path)
    assert cfg.max_queued == 4
    assert cfg.faults.http_500_probability == 0.1
