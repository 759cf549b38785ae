"""The admin API: settings, reset, stats, request log, clock.

See docs/reference/marketo-api.md §8.10.
"""

from __future__ import annotations

from sim_helpers import Sim, error_of

from orchestrator.simulator import ManualClock


async def test_settings_read_and_patch_at_runtime(sim: Sim) -> None:
    settings = await sim.admin("GET", "/_sim/settings")
    assert settings["client_id"] == "leadflow-sim"
    assert settings["rate_limit_calls"] == 100
    assert settings["max_queued"] == 10 and settings["max_importing"] == 2
    assert settings["faults"]["latency_s"] == 0.0
    patched = await sim.admin(
        "PATCH", "/_sim/settings", json={"max_queued": 1, "faults": {"latency_jitter_s": 0.0}}
    )
    assert patched["max_queued"] == 1
    assert patched["rate_limit_calls"] == 100  # untouched keys stay
    assert (await sim.upload("email\na@example.com\n"))["success"] is True
    assert error_of(await sim.upload("email\na@example.com\n")) == ("1016", "Too many imports")


async def test_invalid_settings_patch_is_rejected(sim: Sim) -> None:
    resp = await sim.client.patch("/_sim/settings", json={"max_queued": -1})
    assert resp.status == 400
    body = await resp.json()
    assert body["error"] == "invalid settings"
    resp = await sim.client.patch("/_sim/settings", json={"no_such_setting": 1})
    assert resp.status == 400
    assert (await sim.admin("GET", "/_sim/settings"))["max_queued"] == 10


async def test_reset_forgets_state_and_optionally_settings(sim: Sim) -> None:
    await sim.admin("PATCH", "/_sim/settings", json={"max_queued": 3})
    await sim.upload("email\na@example.com\n")
    await sim.admin("POST", "/_sim/reset")
    stats = await sim.stats()
    assert stats["batches"] == [] and stats["calls_total"] == 0 and stats["leads"] == 0
    assert (await sim.admin("GET", "/_sim/settings"))["max_queued"] == 3
    await sim.admin("POST", "/_sim/reset", json={"settings": True})
    assert (await sim.admin("GET", "/_sim/settings"))["max_queued"] == 10


async def test_stats_shape(sim: Sim) -> None:
    await sim.upload("email\na@example.com\n")
    body = await sim.admin("GET", "/_sim/stats")
    assert set(body) == {"now", "iso", "time_scale", "instances"}
    inst = body["instances"]["123-ABC-456"]
    for key in ("peak_queued_or_importing", "slot_busy_s", "peak_calls_per_window",
                "peak_concurrent_calls", "errors", "calls_by_endpoint", "batches",
                "quota_used_today", "queued", "importing"):
        assert key in inst
    batch = inst["batches"][0]
    assert set(batch) >= {"batchId", "kind", "status", "created_at", "importing_at",
                          "finished_at", "rows", "processed", "imported", "failed", "warned"}


async def test_request_log_shows_token_only_in_header(sim: Sim) -> None:
    await sim.upload("email\na@example.com\n")
    log = await sim.admin("GET", "/_sim/requests")
    upload = next(e for e in log if e["endpoint"] == "import_lead")
    assert upload["auth_header"] is True and upload["auth_scheme"] == "Bearer"
    assert upload["token_in_query"] is False
    assert upload["query_keys"] == ["format"]
    assert upload["form_keys"] == ["file"]
    assert upload["status"] == 200 and upload["code"] is None


async def test_clock_endpoints(sim: Sim, clock: ManualClock) -> None:
    before = await sim.admin("GET", "/_sim/clock")
    after = await sim.admin("POST", "/_sim/clock/advance", json={"seconds": 90})
    assert after["now"] == before["now"] + 90 == clock.now()
    resp = await sim.client.post("/_sim/clock/advance", json={"seconds": -1})
    assert resp.status == 400


async def test_leads_filter_by_email(sim: Sim) -> None:
    await sim.upload("email,firstName\na@example.com,A\nb@example.com,B\n")
    sim.clock.advance(1)
    leads = await sim.admin("GET", "/_sim/leads", params={"email": "b@example.com"})
    assert [lead["firstName"] for lead in leads] == ["B"]


async def test_request_log_finds_the_token_wherever_it_was_sent(sim: Sim) -> None:
    token = await sim.token()
    await sim.client.get(
        "/rest/v1/leads/describe.json",
        params={"access_token": token},
        headers={"Authorization": f"Bearer {token}", "X-Debug": token},
    )
    await sim.upload("email\na@example.com\n", form={"access_token": token})
    log = [e for e in await sim.admin("GET", "/_sim/requests") if e["endpoint"] != "identity"]
    assert sorted(log[0]["token_in"]) == ["header:Authorization", "header:X-Debug",
                                          "query:access_token"]
    assert log[1]["token_in"] == ["header:Authorization", "form:access_token"]
    assert log[1]["form_keys"] == ["access_token", "file"]
