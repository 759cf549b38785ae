"""systemd notify from a real daemon: READY once recovery is done and the loops run, then
WATCHDOG from the event loop, STOPPING on shutdown, in that order, on a fake NOTIFY_SOCKET."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable

from window_helpers import running_window, settings_for, simulator, wait_until, write_leads

from orchestrator.notify import Notifier
from orchestrator.settings import Settings


async def test_ready_watchdog_stopping_arrive_in_order(
    make_settings: Callable[..., Settings]
) -> None:
    name = f"leadflow-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    got: list[str] = []

    async def receive() -> None:
        loop = asyncio.get_running_loop()
        while True:
            got.append((await loop.sock_recv(sock, 4096)).decode())

    receiver = asyncio.create_task(receive())
    try:
        async with simulator() as sim_url:
            settings = settings_for(make_settings, sim_url)
            # Work under way while the watchdog runs.
            write_leads(settings.paths.inbox / "first.csv", 30, tag="n")
            notifier = Notifier("@" + name, watchdog_s=0.2)
            async with running_window(settings, sim_url, notifier=notifier) as window:
                assert window.daemon.phase == "running"

                async def watched() -> bool:
                    return sum(1 for m in got if m == "WATCHDOG=1") >= 3
                await wait_until(watched, 10)
        await asyncio.sleep(0)  # let the receiver take the last datagram
        await wait_until(lambda: _has(got, "STOPPING=1"), 5)
    finally:
        receiver.cancel()
        sock.close()
    kinds = [m.split("\n", 1)[0].split("=", 1)[0] for m in got]
    assert kinds[0] == "READY"
    assert got[0].startswith("READY=1\nSTATUS=") and "Marketo slots" in got[0]
    first_stop = kinds.index("STOPPING")
    assert kinds.count("READY") == 1 and "WATCHDOG" in kinds[1:first_stop]
    assert set(kinds[first_stop + 1:]) <= {"STOPPING"}
    assert set(kinds) <= {"READY", "WATCHDOG", "STATUS", "STOPPING"}


async def _has(got: list[str], prefix: str) -> bool:
    return any(m.startswith(prefix) for m in got)
