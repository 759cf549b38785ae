"""A small test client for the simulator (used by conftest fixtures and the tests)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from orchestrator.simulator import ManualClock

CREDS = {
    "grant_type": "client_credentials",
    "client_id": "leadflow-sim",
    "client_secret": "leadflow-sim-secret",
}
JSON_CT = "application/json;charset=UTF-8"


class Sim:
    """A thin test client for the simulator: token, uploads, status, admin reads."""

    def __init__(self, client: TestClient[Any, Any], clock: ManualClock, prefix: str = "") -> None:
        self.client = client
        self.clock = clock
        self.prefix = prefix
        self._token: str | None = None

    async def token(self, refresh: bool = False) -> str:
        if self._token is None or refresh:
            resp = await self.client.get(self.prefix + "/identity/oauth/token", params=CREDS)
            assert resp.status == 200
            self._token = (await resp.json())["access_token"]
        assert self._token is not None
        return self._token

    async def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.token(refresh=True)}"}

    async def upload(
        self,
        content: bytes | str,
        *,
        fmt: str | None = "csv",
        path: str = "/bulk/v1/leads.json",
        query: dict[str, str] | None = None,
        form: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        filename: str = "leads.csv",
    ) -> dict[str, Any]:
        data = content.encode() if isinstance(content, str) else content
        fd = aiohttp.FormData()
        for key, value in (form or {}).items():
            fd.add_field(key, value)
        fd.add_field("file", data, filename=filename, content_type="text/csv")
        params = dict(query or {})
        if fmt is not None:
            params.setdefault("format", fmt)
        hdrs = await self.headers() if headers is None else headers
        resp = await self.client.post(self.prefix + path, params=params, data=fd, headers=hdrs)
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == JSON_CT
        body: dict[str, Any] = await resp.json()
        return body

    async def get(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.client.get(self.prefix + path, headers=await self.headers(), **kw)

    async def get_json(self, path: str, **kw: Any) -> dict[str, Any]:
        resp = await self.get(path, **kw)
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == JSON_CT
        body: dict[str, Any] = await resp.json()
        return body

    async def status(self, batch_id: int) -> dict[str, Any]:
        body = await self.get_json(f"/bulk/v1/leads/batch/{batch_id}.json")
        assert body["success"] is True, body
        result: dict[str, Any] = body["result"][0]
        return result

    async def stats(self) -> dict[str, Any]:
        resp = await self.client.get("/_sim/stats")
        body = await resp.json()
        inst: dict[str, Any] = next(iter(body["instances"].values()))
        return inst

    async def admin(self, method: str, path: str, **kw: Any) -> Any:
        resp = await self.client.request(method, path, **kw)
        assert resp.status == 200, await resp.text()
        return await resp.json()


def error_of(body: dict[str, Any]) -> tuple[str, str]:
    assert body["success"] is False, body
    assert "result" not in body
    err = body["errors"][0]
    return err["code"], err["message"]


#: The ``make_sim(**config)`` fixture: a fresh simulator app with the given settings.
MakeSim = Callable[..., Awaitable[Sim]]
