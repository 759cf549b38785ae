"""Daemon.reload in process: what changes live, what waits for a restart, what a bad file
keeps, and the governor's concurrency limit shrinking under calls in flight."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from structlog.testing import capture_logs
from window_helpers import running_window, settings_for, simulator

from orchestrator.errors import ConfigError
from orchestrator.marketo.governor import Governor
from orchestrator.settings import LimitSettings, Settings


async def test_reload_applies_routes_limits_polling_and_names_the_rest(
    make_settings: Callable[..., Settings]
) -> None:
    async with simulator() as sim_url:
        settings = settings_for(make_settings, sim_url)
        new = settings_for(
            make_settings, sim_url,
            limits={"import_slots": 3, "calls_per_20s": 40, "max_concurrent_calls": 2},
            polling={"min_interval_s": 0.05, "max_interval_s": 0.4},
            routes=[{"name": "events", "list_id": 1001}],
            paths={"results": str(settings.paths.results.parent / "elsewhere")},
        )
        source: list[Settings | Exception] = [new]

        def load() -> Settings:
            item = source[0]
            if isinstance(item, Exception):
                raise item
            return item

        async with running_window(settings, sim_url, reload_settings=load) as window:
            daemon = window.daemon
            with capture_logs() as logs:
                assert await daemon.reload()
            assert daemon.client.governor.limits.import_slots == 3
            assert daemon.client.governor.limits.calls_per_20s == 40
            assert daemon.intake.settings.route_for_folder("events") is not None
            # What `leadflow submit --route events` reads: the daemon's recorded routes.
            recorded = await daemon.store.daemon_routes()
            assert recorded is not None and [r["name"] for r in recorded[1]] == ["events"]
            assert (settings.paths.inbox / "events").is_dir()
            assert (settings.paths.inbox / "events").stat().st_mode & 0o7777 == 0o2770
            assert daemon.settings.paths.results == settings.paths.results  # needs a restart
            assert daemon.gate.retry_s == 4.0  # 10 x polling.max_interval_s
            events = {e["event"]: e for e in logs}
            assert events["reload_needs_restart"]["settings"] == ["paths.results"]
            assert set(events["settings_reloaded"]["changed"]) >= {
                "routes", "limits.import_slots", "polling.max_interval_s"}

            source[0] = ConfigError("limits.import_slots", "Input should be less than or equal to 10")
            with capture_logs() as logs:
                assert not await daemon.reload()
            failed = [e for e in logs if e["event"] == "reload_failed"]
            assert len(failed) == 1 and failed[0]["log_level"] == "error"
            assert failed[0]["key"] == "limits.import_slots"
            assert daemon.client.governor.limits.import_slots == 3  # still the running value
            _, _, text = await window.get("/metrics")
            assert b'leadflow_reloads_total{result="applied"} 1.0' in text
            assert b'leadflow_reloads_total{result="failed"} 1.0' in text


async def test_a_lower_concurrency_limit_waits_for_calls_in_flight() -> None:
    governor = Governor(LimitSettings(max_concurrent_calls=3, calls_per_20s=100), store=None,
                        clock=time.time)
    inside = 0

    async def call(hold: asyncio.Event) -> None:
        nonlocal inside
        async with governor.slot("import_status"):
            inside += 1
            await hold.wait()
            inside -= 1

    async def settle() -> None:
        for _ in range(50):
            await asyncio.sleep(0)

    first, second = asyncio.Event(), asyncio.Event()
    early = [asyncio.create_task(call(first)) for _ in range(3)]
    await settle()
    assert inside == 3
    governor.set_limits(LimitSettings(max_concurrent_calls=1, calls_per_20s=100))
    late = [asyncio.create_task(call(second)) for _ in range(3)]
    await settle()
    assert inside == 3  # the three in flight keep their places; the new ones wait
    first.set()
    await settle()
    assert inside == 1  # then one at a time
    second.set()
    await asyncio.gather(*early, *late)
    assert governor.limits.max_concurrent_calls == 1
