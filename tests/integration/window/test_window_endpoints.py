"""The window against a real daemon and the simulator, over a real loopback port.

/livez, /readyz (ready; 503 while paused for the quota, while the credentials are refused),
/metrics parsed with prometheus_client's parser (the families, values that move as files
import), /api/status, /api/files/{id} and its report files, the page's escaping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from window_helpers import Window, running_window, settings_for, simulator, wait_until, write_leads

from orchestrator.settings import Settings
from orchestrator.store import Store
from orchestrator.window import api
from orchestrator.window.status import collect_status

#: Every family /metrics must carry (counters by their family name, without ``_total``).
FAMILIES = {
    "leadflow_files", "leadflow_uploads", "leadflow_marketo_jobs",
    "leadflow_import_slots_in_use", "leadflow_import_slots_budget",
    "leadflow_api_calls_today", "leadflow_api_errors_today", "leadflow_daily_call_budget",
    "leadflow_api_calls_window", "leadflow_api_calls_window_limit",
    "leadflow_marketo_answers", "leadflow_token_refreshes", "leadflow_intake_bytes",
    "leadflow_reloads", "leadflow_oldest_waiting_file_age_seconds",
    "leadflow_oldest_batch_age_seconds", "leadflow_last_file_finished_timestamp_seconds",
    "leadflow_paused", "leadflow_marketo_reachable", "leadflow_intake_duration_seconds",
    "leadflow_preparation_duration_seconds", "process_start_time_seconds",
}
SECRET = "leadflow-sim-secret"


async def scrape(window: Window) -> tuple[set[str], dict[tuple[str, frozenset[Any]], float]]:
    """GET /metrics, parse it; return (family names, {(sample, labels): value})."""
    status, headers, body = await window.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    families = list(text_string_to_metric_families(body.decode()))
    samples = {
        (s.name, frozenset(s.labels.items())): s.value for f in families for s in f.samples
    }
    return {f.name for f in families}, samples


def value(samples: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def reported(window: Window, count: int) -> None:
    async def check() -> bool:
        _, data = await window.json("/api/status")
        return sum(1 for f in data["files"] if f["reported"]) >= count
    await wait_until(check, 30)


async def test_health_status_files_and_metrics_move_as_files_import(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with simulator() as sim_url:
        settings = settings_for(make_settings, sim_url)
        async with running_window(settings, sim_url) as window:
            assert (await window.json("/livez")) == (200, {"alive": True, "phase": "running"})
            assert (await window.json("/readyz")) == (200, {"ready": True})
            names, before = await scrape(window)
            assert FAMILIES <= names, FAMILIES - names
            assert value(before, "leadflow_files", status="complete") == 0
            assert value(before, "leadflow_intake_duration_seconds_count") == 0
            # Other integrations fill Marketo's queue for a moment: our first create gets 1016.
            await window.sim("POST", "/_sim/foreign-jobs", {"count": 10, "duration_s": 4})
            clean = write_leads(settings.paths.inbox / "clean.csv", 120, tag="c")
            bad = write_leads(settings.paths.inbox / "bad.csv", 40, bad_every=5, tag="b")
            sizes = clean.stat().st_size + bad.stat().st_size
            await reported(window, 2)

            _, after = await scrape(window)
            assert value(after, "leadflow_files", status="complete") == 1
            assert value(after, "leadflow_files", status="partial") == 1
            assert value(after, "leadflow_uploads", status="complete") >= 3
            creates = value(after, "leadflow_marketo_answers_total",
                            endpoint="import_create", code="ok")
            assert creates == value(after, "leadflow_uploads", status="complete")
            assert value(after, "leadflow_marketo_answers_total",
                         endpoint="import_create", code="1016") >= 1
            assert value(after, "leadflow_marketo_answers_total",
                         endpoint="identity", code="ok") >= 1
            assert value(after, "leadflow_token_refreshes_total") >= 1
            assert value(after, "leadflow_intake_duration_seconds_count") == 2
            assert value(after, "leadflow_preparation_duration_seconds_count") == 2
            assert value(after, "leadflow_intake_bytes_total") == sizes
            assert value(after, "leadflow_last_file_finished_timestamp_seconds") > 0
            assert sum(v for (n, _), v in after.items() if n == "leadflow_api_calls_today") > 0
            assert value(after, "leadflow_paused", reason="quota") == 0
            assert value(after, "leadflow_marketo_reachable") == 1

            # /api/status is what `leadflow status --json` prints.
            status, data = await window.json("/api/status")
            async with Store.open(settings.paths.database) as store:
                expected = await collect_status(store, settings, 0.0)
            assert status == 200 and set(data) == set(expected)
            assert [(f["id"], f["status"]) for f in data["files"]] == [
                (f["id"], f["status"]) for f in expected["files"]]
            by_name = {f["name"]: f for f in data["files"]}

            status, view = await window.json(f"/api/files/{by_name['bad.csv']['id']}")
            assert status == 200 and view["status"] == "partial"
            assert view["uploads"]["done"] == view["uploads"]["total"] >= 1
            assert set(view["reports"]) == {"report.json", "failures.csv"}
            status, headers, body = await window.get(view["reports"]["failures.csv"])
            folder = Path(by_name["bad.csv"]["results"])
            assert status == 200 and headers["Content-Type"].startswith("text/csv")
            assert body == (folder / "failures.csv").read_bytes() and body.count(b"\r\n") == 9
            status, headers, body = await window.get(view["reports"]["report.json"])
            assert status == 200 and json.loads(body)["status"] == "partial"
            status, view = await window.json(f"/api/files/{by_name['clean.csv']['id']}")
            assert view["status"] == "complete" and view["rows"]["imported"] == 120
            assert view["uploads"]["total"] >= 2 and "failures.csv" not in view["reports"]
            assert (await window.get("/api/files/999999"))[0] == 404
            assert (await window.get(f"/api/files/{view['id']}/failures.csv"))[0] == 404
            assert (await window.get("/api/files/1/leadflow.db"))[0] == 404


async def test_readyz_503_while_paused_for_the_quota(
    make_settings: Callable[..., Settings]
) -> None:
    # Marketo's quota allows 2 calls today: describe and one create; the next call gets 607.
    async with simulator(daily_quota=2) as sim_url:
        settings = settings_for(make_settings, sim_url)
        async with running_window(settings, sim_url) as window:
            write_leads(settings.paths.inbox / "a.csv", 200, tag="q")

            async def paused() -> bool:
                return (await window.json("/readyz"))[0] == 503
            await wait_until(paused, 20)
            _status, body = await window.json("/readyz")
            assert body["reason"] == "paused_quota" and "607" in body["message"]
            assert (await window.json("/livez"))[0] == 200
            _, samples = await scrape(window)
            assert value(samples, "leadflow_paused", reason="quota") == 1
            assert value(samples, "leadflow_paused", reason="credentials") == 0
            assert value(samples, "leadflow_marketo_answers_total",
                         endpoint="import_create", code="607") >= 1
            _, _, page = await window.get("/")
            assert b"daily call quota is used up" in page


async def test_readyz_503_while_the_credentials_are_refused(
    make_settings: Callable[..., Settings]
) -> None:
    async with simulator() as sim_url:
        settings = settings_for(make_settings, sim_url,
                                marketo={"client_secret": "not-the-secret-1234"})
        async with running_window(settings, sim_url, auth_retry_s=60.0) as window:
            status, body = await window.json("/readyz")
            assert status == 503 and body["reason"] == "credentials_refused"
            assert "HTTP 401" in body["message"]
            assert (await window.json("/livez"))[0] == 200
            _, samples = await scrape(window)
            assert value(samples, "leadflow_paused", reason="credentials") == 1
            assert value(samples, "leadflow_marketo_answers_total",
                         endpoint="identity", code="401") >= 1
            for path in ("/", "/api/status", "/metrics", "/readyz", "/livez"):
                _, _, served = await window.get(path)
                assert b"not-the-secret-1234" not in served and SECRET.encode() not in served
            _, _, page = await window.get("/")
            assert b"Marketo refuses the credentials" in page


async def test_page_escapes_file_names_and_shows_the_sections(
    make_settings: Callable[..., Settings]
) -> None:
    async with simulator() as sim_url:
        settings = settings_for(make_settings, sim_url)
        async with running_window(settings, sim_url) as window:
            write_leads(settings.paths.inbox / "<script>alert(1)<!--.csv", 10, tag="s")
            await reported(window, 1)
            status, headers, page = await window.get("/?refresh=2")
            text = page.decode()
            assert status == 200 and headers["Content-Type"].startswith("text/html")
            assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;!--.csv" in text
            assert '<meta http-equiv="refresh" content="2">' in text
            assert "default-src 'none'" in headers["Content-Security-Policy"]
            for section in ('id="marketo"', 'id="in-flight"', 'id="finished"', 'id="errors"'):
                assert section in text
            assert "Calls today:" in text and "Import slots in use:" in text


async def test_readyz_503_while_marketo_is_unreachable(
    make_settings: Callable[..., Settings]
) -> None:
    async with simulator() as sim_url:
        # Nothing listens on port 1: identity cannot be reached at start.
        settings = settings_for(make_settings, sim_url,
                                marketo={"base_url": "http://127.0.0.1:1"})
        async with running_window(settings, sim_url) as window:
            status, body = await window.json("/readyz")
            assert status == 503 and body["reason"] == "marketo_unreachable"
            assert (await window.json("/livez"))[0] == 200
            _, samples = await scrape(window)
            assert value(samples, "leadflow_marketo_reachable") == 0
            assert value(samples, "leadflow_marketo_answers_total",
                         endpoint="identity", code="connection") >= 3


async def test_readyz_503_while_the_store_does_not_answer(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "STORE_TIMEOUT_S", 0.1)
    async with simulator() as sim_url:
        settings = settings_for(make_settings, sim_url)
        async with running_window(settings, sim_url) as window:
            assert (await window.json("/readyz"))[0] == 200
            stuck = asyncio.Event()

            async def never(day: str) -> int:
                await stuck.wait()
                return 0
            monkeypatch.setattr(window.daemon.store, "calls_on", never)
            status, body = await window.json("/readyz")
            assert status == 503 and body["reason"] == "store_not_answering"
            assert (await window.json("/livez"))[0] == 200  # liveness asks nothing outside
            stuck.set()
