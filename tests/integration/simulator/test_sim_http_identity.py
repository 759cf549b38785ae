"""Identity and tokens: reuse, expiry, 600/601/602, 401 (docs/reference/marketo-api.md §1, §8.2)."""

from __future__ import annotations

from sim_helpers import CREDS, JSON_CT, MakeSim, Sim, error_of

from orchestrator.simulator import ManualClock

DESCRIBE = "/rest/v1/leads/describe.json"


async def test_token_by_get_query_has_contract_shape(sim: Sim) -> None:
    resp = await sim.client.get("/identity/oauth/token", params=CREDS)
    assert resp.status == 200
    assert resp.headers["Content-Type"] == JSON_CT
    assert resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    uuid_part, _, pod = body["access_token"].partition(":")
    assert len(uuid_part) == 36 and pod


async def test_token_by_post_form_and_post_query(sim: Sim) -> None:
    form = await sim.client.post("/identity/oauth/token", data=CREDS)
    query = await sim.client.post("/identity/oauth/token", params=CREDS)
    assert form.status == query.status == 200
    assert (await form.json())["access_token"] == (await query.json())["access_token"]


async def test_asking_again_returns_same_token_with_remaining_lifetime(
    sim: Sim, clock: ManualClock
) -> None:
    first = await (await sim.client.get("/identity/oauth/token", params=CREDS)).json()
    clock.advance(100)
    again = await (await sim.client.get("/identity/oauth/token", params=CREDS)).json()
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == 3500


async def test_expired_token_gets_602_and_identity_mints_a_new_one(
    sim: Sim, clock: ManualClock
) -> None:
    old = await sim.token()
    clock.advance(3600)
    resp = await sim.client.get(DESCRIBE, headers={"Authorization": f"Bearer {old}"})
    assert resp.status == 200
    assert error_of(await resp.json()) == ("602", "Access token expired")
    new = await sim.token(refresh=True)
    assert new != old
    resp = await sim.client.get(DESCRIBE, headers={"Authorization": f"Bearer {old}"})
    assert error_of(await resp.json()) == ("602", "Access token expired")
    ok = await sim.get_json(DESCRIBE)
    assert ok["success"] is True


async def test_bad_credentials_get_401_invalid_client(sim: Sim) -> None:
    resp = await sim.client.get(
        "/identity/oauth/token", params={**CREDS, "client_secret": "wrong"}
    )
    assert resp.status == 401
    assert await resp.json() == {
        "error": "invalid_client",
        "error_description": "Bad client credentials",
    }
    assert (await sim.stats())["errors"] == {"401": 1}


async def test_no_header_gets_600_even_with_query_or_form_token(sim: Sim) -> None:
    token = await sim.token()
    resp = await sim.client.get(DESCRIBE)
    assert error_of(await resp.json()) == ("600", "Access token empty")
    resp = await sim.client.get(DESCRIBE, params={"access_token": token})
    assert resp.status == 200
    assert error_of(await resp.json()) == ("600", "Access token empty")
    body = await sim.upload(
        "email\na@example.com\n", form={"access_token": token}, headers={}
    )
    assert error_of(body) == ("600", "Access token empty")
    log = await sim.admin("GET", "/_sim/requests")
    assert [e["token_in_query"] for e in log if e["endpoint"] == "describe_lead"] == [
        False,
        True,
    ]
    assert log[-1]["endpoint"] == "import_lead"
    assert log[-1]["auth_header"] is False
    assert log[-1]["code"] == "600"


async def test_unknown_token_gets_601(sim: Sim) -> None:
    resp = await sim.client.get(DESCRIBE, headers={"Authorization": "Bearer nope:sim"})
    assert resp.status == 200
    assert error_of(await resp.json()) == ("601", "Access token invalid")


async def test_early_expiry_fault_gives_602_before_expires_in(
    make_sim: MakeSim, clock: ManualClock
) -> None:
    sim: Sim = await make_sim(faults={"token_early_expiry_s": 600})
    token = await sim.token()
    clock.advance(3000)
    resp = await sim.client.get(DESCRIBE, headers={"Authorization": f"Bearer {token}"})
    assert error_of(await resp.json()) == ("602", "Access token expired")
    fresh = await (await sim.client.get("/identity/oauth/token", params=CREDS)).json()
    assert fresh["access_token"] != token
    assert fresh["expires_in"] == 3600


async def test_identity_counts_toward_no_limit(make_sim: MakeSim) -> None:
    sim: Sim = await make_sim(daily_quota=1, rate_limit_calls=1)
    for _ in range(5):
        await sim.token(refresh=True)
    assert (await sim.get_json(DESCRIBE))["success"] is True
    stats = await sim.stats()
    assert stats["quota_used_today"] == 1
    assert stats["calls_in_window"] == 1
    assert stats["calls_by_endpoint"]["identity"] == 6  # 5 + one by the helper


async def test_fractional_token_lifetime_sends_whole_seconds(
    make_sim: MakeSim, clock: ManualClock
) -> None:
    sim: Sim = await make_sim(token_lifetime_s=2.5)
    first = await (await sim.client.get("/identity/oauth/token", params=CREDS)).json()
    assert first["expires_in"] == 2  # whole seconds, rounded down, as Marketo sends them
    clock.advance(2.0)
    again = await (await sim.client.get("/identity/oauth/token", params=CREDS)).json()
    assert (again["access_token"], again["expires_in"]) == (first["access_token"], 0)
    clock.advance(0.5)  # now it has expired: the next one is minted
    auth = {"Authorization": f"Bearer {first['access_token']}"}
    resp = await sim.client.get(DESCRIBE, headers=auth)
    assert error_of(await resp.json()) == ("602", "Access token expired")
    fresh = await (await sim.client.get("/identity/oauth/token", params=CREDS)).json()
    assert fresh["access_token"] != first["access_token"]


async def test_identity_502_fault_answers_a_gateway_page(make_sim: MakeSim) -> None:
    sim: Sim = await make_sim(seed=3, faults={"identity_502_probability": 1.0})
    resp = await sim.client.get("/identity/oauth/token", params=CREDS)
    assert resp.status == 502
    assert "Bad Gateway" in await resp.text()
    await sim.admin("PATCH", "/_sim/settings", json={"faults": {"identity_502_probability": 0.0}})
    assert (await sim.client.get("/identity/oauth/token", params=CREDS)).status == 200
    stats = await sim.stats()
    assert stats["errors"]["502"] == 1
    assert stats["tokens_minted"] == 1
