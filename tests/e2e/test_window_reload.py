"""``leadflow run`` as a process: SIGHUP reloads the settings file instead of ending the
daemon; systemd's notify messages arrive on an abstract NOTIFY_SOCKET.

- a new route: files dropped in its folder afterwards take its options (list membership in
  the simulator, over HTTP); a changed setting that needs a restart is named in the log;
- a broken settings file: the daemon goes on with the running settings and logs the error;
- READY, WATCHDOG, RELOADING/READY per reload, STOPPING on SIGTERM, in that order.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from orchestrator.simulator import SimulatorConfig, create_app

pytestmark = pytest.mark.e2e


def _config(tmp_path: Path, url: str, extra: str = "") -> str:
    var = tmp_path / "var"
    return f"""
[marketo]
base_url = "{url}"
client_id = "leadflow-sim"
client_secret = "leadflow-sim-secret"
retry_base_s = 0.05
retry_max_s = 0.5
[paths]
inbox = "{var / 'inbox'}"
work = "{var / 'work'}"
archive = "{var / 'archive'}"
rejected = "{var / 'rejected'}"
results = "{var / 'results'}"
database = "{var / 'leadflow.db'}"
[limits]
calls_per_20s = 100
[polling]
min_interval_s = 0.05
max_interval_s = 0.3
[intake]
stable_s = 0.05
rescan_interval_s = 0.1
[daemon]
idle_tick_s = 0.05
shutdown_grace_s = 1.0
[log]
format = "json"
{extra}"""


@asynccontextmanager
async def _simulator() -> AsyncIterator[str]:
    server = TestServer(create_app(SimulatorConfig(), time_scale=20.0), host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def _wait(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def _events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def _write(path: Path, tag: str, rows: int = 5) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["email,firstName"] + [f"{tag}{i}@example.com,F{i}" for i in range(rows)]
    path.write_text("\r\n".join(lines) + "\r\n")


def _status_of(db: Path, name: str) -> str | None:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    try:
        row = conn.execute(
            "SELECT status FROM files WHERE name = ? AND reported_at IS NOT NULL", (name,)
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return row[0] if row else None


async def _list_ids(sim: str, email: str) -> list[int]:
    async with aiohttp.ClientSession() as session, session.get(
        f"{sim}/_sim/leads", params={"email": email}
    ) as resp:
        leads = await resp.json()
    assert len(leads) == 1, leads
    return list(leads[0]["listIds"])


async def test_sighup_reloads_routes_and_survives_a_broken_file(tmp_path: Path) -> None:
    name = f"leadflow-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    notes: list[str] = []

    async def receive() -> None:
        loop = asyncio.get_running_loop()
        while True:
            notes.append((await loop.sock_recv(sock, 4096)).decode().split("\n")[0])

    receiver = asyncio.create_task(receive())
    config = tmp_path / "leadflow.toml"
    log = tmp_path / "daemon.log"
    db = tmp_path / "var" / "leadflow.db"
    inbox = tmp_path / "var" / "inbox"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LEADFLOW_")}
    env |= {"LEADFLOW_HTTP__LISTEN": "", "NOTIFY_SOCKET": "@" + name,
            "WATCHDOG_USEC": "400000"}
    try:
        async with _simulator() as sim:
            config.write_text(_config(tmp_path, sim))
            with log.open("wb") as out:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "orchestrator", "run", "--config", str(config),
                    stdout=out, stderr=asyncio.subprocess.STDOUT, env=env,
                )
            try:
                async def said(prefix: str, count: int = 1) -> bool:
                    return sum(1 for n in notes if n.startswith(prefix)) >= count
                await _wait(lambda: said("READY=1"))
                await _wait(lambda: said("WATCHDOG=1"))

                # A new route, and a setting that only a restart changes.
                config.write_text(_config(tmp_path, sim, """
[[routes]]
name = "events"
list_id = 1001
""").replace("shutdown_grace_s = 1.0", "shutdown_grace_s = 2.0"))
                proc.send_signal(signal.SIGHUP)

                async def reloaded() -> bool:
                    return any(e["event"] == "settings_reloaded" for e in _events(log))
                await _wait(reloaded)
                assert proc.returncode is None, "SIGHUP must not end the daemon"
                events = _events(log)
                done = next(e for e in events if e["event"] == "settings_reloaded")
                assert done["routes"] == ["events"] and "routes" in done["changed"]
                restart = next(e for e in events if e["event"] == "reload_needs_restart")
                assert restart["settings"] == ["daemon.shutdown_grace_s"]
                assert restart["level"] == "warning"
                await _wait(lambda: said("READY=1", 2))

                _write(inbox / "events" / "webinar.csv", "ev")
                _write(inbox / "plain.csv", "pl")

                async def imported(*names: str) -> bool:
                    return all(_status_of(db, n) == "complete" for n in names)
                await _wait(lambda: imported("webinar.csv", "plain.csv"))
                assert await _list_ids(sim, "ev0@example.com") == [1001]
                assert await _list_ids(sim, "pl0@example.com") == []

                # A broken settings file: the running settings stay, one error is logged.
                config.write_text("[limits\nimport_slots = 3\n")
                proc.send_signal(signal.SIGHUP)

                async def failed() -> bool:
                    return any(e["event"] == "reload_failed" for e in _events(log))
                await _wait(failed)
                error = [e for e in _events(log) if e["event"] == "reload_failed"]
                assert len(error) == 1 and error[0]["level"] == "error"
                assert error[0]["key"] == "config" and "not valid TOML" in error[0]["reason"]
                assert proc.returncode is None
                _write(inbox / "events" / "second.csv", "se")
                await _wait(lambda: imported("second.csv"))
                assert await _list_ids(sim, "se0@example.com") == [1001]
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                code = await asyncio.wait_for(proc.wait(), 20)
            assert code == 0
            await _wait(lambda: said("STOPPING=1"), 5)
    finally:
        receiver.cancel()
        sock.close()
    kinds = [n.split("=")[0] for n in notes]
    assert kinds[0] == "READY" and kinds[-1] == "STOPPING"
    assert kinds.count("RELOADING") == 2
    first = kinds.index("RELOADING")
    assert "WATCHDOG" in kinds[1:first]
    reloads = [i for i, k in enumerate(kinds) if k == "RELOADING"]
    for at in reloads:  # READY again after each reload, before anything else of note
        after = [k for k in kinds[at + 1:] if k in ("READY", "RELOADING", "STOPPING")]
        assert after[0] == "READY"
