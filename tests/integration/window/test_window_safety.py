"""The window's safety rules against a real daemon over a real port: the token, path traversal
(plain and encoded), a listener outside loopback without a token (exit 2), and 200 idle
connections while files import."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from window_helpers import (
    Window,
    running_window,
    settings_for,
    simulator,
    wait_until,
    write_leads,
)

from orchestrator.cli import cli
from orchestrator.commands.status import collect_status
from orchestrator.settings import Settings
from orchestrator.window import server

TOKEN = "window-token-0123456789"


async def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """Send ``GET <target>`` byte for byte (no client-side normalisation); (status, body)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_every_request_needs_the_token(make_settings: Callable[..., Settings]) -> None:
    async with simulator() as sim_url:
        settings = settings_for(make_settings, sim_url, http={"token": TOKEN})
        async with running_window(settings, sim_url) as window:
            for path in ("/", "/livez", "/readyz", "/metrics", "/api/status", "/api/files/1",
                         "/nothing-here"):
                status, headers, body = await window.get(path)
                assert status == 401, path
                assert headers["WWW-Authenticate"].startswith("Bearer")
                assert (await window.get(path, headers={"Authorization": "Bearer wrong"}))[0] \
                    == 401
                assert (await window.get(path, headers={"Authorization": TOKEN}))[0] == 401
            good = {"Authorization": f"Bearer {TOKEN}"}
            for path in ("/", "/livez", "/readyz", "/metrics", "/api/status"):
                status, _, body = await window.get(path, headers=good)
                assert status == 200, path
                assert TOKEN.encode() not in body
            assert (await window.get("/api/files/1", headers=good))[0] == 404


async def test_a_listener_outside_loopback_needs_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "leadflow.toml"
    config.write_text(f"""
[marketo]
client_id = "leadflow-sim"
client_secret = "leadflow-sim-secret"
[paths]
inbox = "{tmp_path / 'inbox'}"
work = "{tmp_path / 'work'}"
archive = "{tmp_path / 'archive'}"
rejected = "{tmp_path / 'rejected'}"
results = "{tmp_path / 'results'}"
database = "{tmp_path / 'leadflow.db'}"
""")
    os.environ["LEADFLOW_HTTP__LISTEN"] = "0.0.0.0:9464"  # restored by the env fixture
    assert await cli(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        ("leadflow: invalid setting http.token: required because http.listen (0.0.0.0:9464) "
        "is not a loopback address: set LEADFLOW_HTTP__TOKEN (or http.token), or listen on "
        "127.0.0.1")
    ]
    assert not (tmp_path / "leadflow.db").exists() and not (tmp_path / "inbox").exists()


TRAVERSALS = [
    "/api/files/../../etc/passwd",
    "/api/files/%2e%2e/%2e%2e/etc/passwd",
    "/api/files/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/api/files/{id}/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/api/files/{id}/%2e%2e%2f%2e%2e%2fleadflow.db",
    "/api/files/{id}/report.json/../../../../etc/passwd",
    "/api/files/{id}/..%252f..%252fetc%252fpasswd",
    "/api/files/{id}/failures.csv%00.txt",
    "/api/files/{id}%2f..%2f..%2fetc%2fpasswd",
    "//etc/passwd",
    "/..%2f..%2f..%2fetc%2fpasswd",
    "/api/files/-1/report.json",
]


async def test_paths_outside_the_results_are_404(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with simulator() as sim_url:
        settings = settings_for(make_settings, sim_url)
        async with running_window(settings, sim_url) as window:
            write_leads(settings.paths.inbox / "a.csv", 20, bad_every=4, tag="t")

            async def done() -> bool:
                _, data = await window.json("/api/status")
                return any(f["reported"] for f in data["files"])
            await wait_until(done)
            _, data = await window.json("/api/status")
            file_id = data["files"][0]["id"]
            assert (await raw_get(window.url, f"/api/files/{file_id}/failures.csv"))[0] == 200
            for target in TRAVERSALS:
                status, body = await raw_get(window.url, target.format(id=file_id))
                assert status in (400, 404), (target, status)
                assert b"root:" not in body and b"SQLite" not in body, target
            # A report file replaced by a symlink to a file outside the results: 404.
            outside = tmp_path / "outside.json"
            outside.write_text('{"secret": true}')
            report = Path(data["files"][0]["results"]) / "report.json"
            report.unlink()
            report.symlink_to(outside)
            status, body = await raw_get(window.url, f"/api/files/{file_id}/report.json")
            assert status == 404 and b"secret" not in body


async def test_200_silent_connections_do_not_stop_the_import(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "IDLE_TIMEOUT_S", 1.0)
    async with simulator() as sim_url:
        settings = settings_for(make_settings, sim_url)
        async with running_window(settings, sim_url) as window:
            host, port = window.url.removeprefix("http://").rsplit(":", 1)
            conns = [await asyncio.open_connection(host, int(port)) for _ in range(200)]
            # A slow client: a request line, then one header byte at a time.
            slow_reader, slow_writer = await asyncio.open_connection(host, int(port))
            slow_writer.write(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            write_leads(settings.paths.inbox / "during.csv", 60, tag="d")

            async def imported() -> bool:
                if not slow_reader.at_eof():  # trickle until the daemon hangs up
                    try:
                        slow_writer.write(b"a")
                        await slow_writer.drain()
                    except ConnectionError:
                        pass
                return window.daemon.phase == "running" and any(
                    f["status"] == "complete" and f["reported"]
                    for f in (await _status(window))["files"]
                )
            await wait_until(imported, 30)
            assert window.daemon.http is not None
            assert window.daemon.http.refused_connections >= 200 - server.MAX_CONNECTIONS
            # Every silent connection is closed by the daemon (over the limit: at once; the
            # rest after the idle timeout), and so is the slow one.
            for reader, _ in conns:
                assert await asyncio.wait_for(reader.read(), 5) == b""
                assert reader.at_eof()
            try:  # the daemon hung up on the slow client too (reset while it still wrote)
                await asyncio.wait_for(slow_reader.read(), 5)
                assert slow_reader.at_eof()
            except ConnectionError:
                pass
            for _, writer in [*conns, (slow_reader, slow_writer)]:
                writer.close()
            assert (await window.json("/livez"))[0] == 200


async def _status(window: Window) -> dict[str, Any]:
    """The status read from the daemon's store (the window's connections may be full)."""
    daemon = window.daemon
    return await collect_status(daemon.store, daemon.settings, daemon.clock())
