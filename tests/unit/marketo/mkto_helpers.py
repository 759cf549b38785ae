"""Helpers for the Marketo client's unit tests (imported by the tests and the conftest)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import aiohttp
from aioresponses import aioresponses

BASE = "http://mk.test"
IDENTITY = f"{BASE}/identity/oauth/token"
#: Monday 2026-03-02 09:00 America/Chicago.
START = 1772463600.0


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self, start: float = START) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)


def url(path: str) -> re.Pattern[str]:
    """A pattern matching ``BASE + path`` with any query string."""
    return re.compile("^" + re.escape(BASE + path) + r"(\?.*)?$")


def token_ok(m: aioresponses, token: str = "tok-1:sim", expires_in: int = 3600) -> None:
    m.post(IDENTITY, payload={"access_token": token, "token_type": "bearer",
                              "expires_in": expires_in, "scope": "x@y"})


def ok(result: list[dict[str, Any]]) -> dict[str, Any]:
    return {"requestId": "a1#b2", "success": True, "result": result}


def err(code: Any, message: str = "boom") -> dict[str, Any]:
    return {"requestId": "e1#f2", "success": False, "errors": [{"code": code, "message": message}]}


def calls_to(m: aioresponses, method: str, path: str) -> list[Any]:
    """Every recorded request of ``method`` whose URL path is ``path`` (any query), in order."""
    found: list[Any] = []
    for (meth, u), reqs in m.requests.items():
        if meth == method and u.path == path:
            found.extend(reqs)
    return found


def auth_of(call: Any) -> str:
    return str(call.kwargs["headers"]["Authorization"])


async def body_of(form: aiohttp.FormData) -> bytes:
    """Serialise a multipart body as it would go on the wire."""
    return await form().as_bytes()


class _NoStreamWriter:
    output_size = 0


class CompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 predates aiohttp's ``stream_writer`` argument; supply a dummy."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", _NoStreamWriter())
        super().__init__(method, url, **kwargs)
