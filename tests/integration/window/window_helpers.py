"""Helpers for the window's tests: a real daemon (in process) with its HTTP listener on a free
loopback port, against the simulator served over HTTP on another."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer

from orchestrator.daemon import Daemon
from orchestrator.notify import Notifier
from orchestrator.settings import Settings
from orchestrator.simulator import SimulatorConfig, create_app

#: Simulated seconds per real second.
TIME_SCALE = 20.0


@dataclass
class Window:
    """A running daemon, its window's URL, and the simulator's URL."""

    daemon: Daemon
    url: str
    sim_url: str
    settings: Settings
    task: asyncio.Task[None]

    async def get(self, path: str, **kwargs: Any) -> tuple[int, dict[str, str], bytes]:
        """GET ``path`` from the window; returns (status, headers, body)."""
        async with aiohttp.ClientSession() as session, session.get(
            f"{self.url}{path}", allow_redirects=False, **kwargs
        ) as resp:
            return resp.status, dict(resp.headers), await resp.read()

    async def json(self, path: str, **kwargs: Any) -> tuple[int, Any]:
        """GET ``path`` and decode its JSON body."""
        async with aiohttp.ClientSession() as session, session.get(
            f"{self.url}{path}", **kwargs
        ) as resp:
            return resp.status, await resp.json()

    async def sim(self, method: str, path: str, body: Any = None) -> Any:
        """Call the simulator's admin API."""
        async with aiohttp.ClientSession() as session, session.request(
            method, f"{self.sim_url}{path}", json=body
        ) as resp:
            resp.raise_for_status()
            return await resp.json()


async def wait_until(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll ``check`` every 20 ms until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


def write_leads(path: Path, rows: int, *, bad_every: int = 0, tag: str = "x") -> Path:
    """A CSV lead file; every ``bad_every``-th row has no email (it cannot be imported)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["email,firstName,lastName,company"]
    for i in range(rows):
        email = "" if bad_every and i % bad_every == bad_every - 1 else f"{tag}{i}@example.com"
        lines.append(f"{email},First{i},Last{i},Acme")
    path.write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    return path


def settings_for(make_settings: Callable[..., Settings], sim_url: str, **overrides: Any
                 ) -> Settings:
    """Daemon settings against ``sim_url`` with the window on a free loopback port."""
    sections: dict[str, dict[str, Any]] = {
        "marketo": {"base_url": sim_url, "retry_base_s": 0.01, "retry_max_s": 0.1,
                    "retry_attempts": 3, "token_refresh_margin_s": 0.0},
        "limits": {"max_upload_bytes": 2048, "calls_per_20s": 100, "max_concurrent_calls": 5},
        "polling": {"min_interval_s": 0.02, "max_interval_s": 0.2},
        "daemon": {"idle_tick_s": 0.05, "shutdown_grace_s": 0.5, "queue_full_backoff_s": 0.1,
                   "queue_full_backoff_max_s": 0.5, "results_retry_s": 0.1},
        "http": {"listen": "127.0.0.1:0"},
    }
    merged: dict[str, Any] = dict(sections)
    for key, value in overrides.items():
        merged[key] = {**sections.get(key, {}), **value} if isinstance(value, dict) else value
    return make_settings(**merged)


@asynccontextmanager
async def simulator(time_scale: float = TIME_SCALE, **config: Any) -> AsyncIterator[str]:
    """The simulator on a loopback TestServer; yields its URL."""
    server = TestServer(create_app(SimulatorConfig(**config), time_scale=time_scale),
                        host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@asynccontextmanager
async def running_window(
    settings: Settings, sim_url: str, *, notifier: Notifier | None = None,
    wait_ready: bool = True, **daemon_kwargs: Any,
) -> AsyncIterator[Window]:
    """Run a daemon with its window until the block ends (then stop it cleanly)."""
    daemon = Daemon(settings, handle_signals=False, notifier=notifier or Notifier(None),
                    **daemon_kwargs)
    async with daemon:
        assert daemon.http is not None and daemon.http.url is not None
        task = asyncio.create_task(daemon.run())
        window = Window(daemon, daemon.http.url, sim_url, settings, task)
        try:
            if wait_ready:
                async def running() -> bool:
                    if task.done():
                        task.result()
                    return daemon.phase == "running"
                await wait_until(running, 15)
            yield window
        finally:
            daemon.stop("test")
            await asyncio.wait_for(task, 15)
