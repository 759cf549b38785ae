from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from orchestrator.simulator import create_app


async def test_settings_mask_the_secret_and_refuse_fault_typos() -> None:
    async with TestClient(TestServer(create_app())) as client:
        got = await (await client.get("/_sim/settings")).json()
        assert got["client_secret"] == "***" and got["client_id"] == "leadflow-sim"
        bad = await client.patch("/_sim/settings", json={"faults": {"http_500_probabilty": 0.1}})
        assert bad.status == 400
        ok = await client.patch("/_sim/settings", json={"faults": {"http_500_probability": 0.1}})
        body = await ok.json()
        assert ok.status == 200 and body["faults"]["http_500_probability"] == 0.1
        assert body["client_secret"] == "***"
        # the real secret still works
        token = await client.get(
            "/identity/oauth/token",
            params={"grant_type": "client_credentials", "client_id": "leadflow-sim",
                    "client_secret": "leadflow-sim-secret"},
        )
        assert token.status == 200
