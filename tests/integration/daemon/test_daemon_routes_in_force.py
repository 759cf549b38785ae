"""``submit``/``retry`` agree with the running daemon about routes (issue 13.4).

A real daemon (in-process, holding the database lock) started with route ``webinar``; the
settings file then gains route ``events``. The commands read the file, but files go to the
daemon, so they refuse ``events`` until the daemon records it (at a reload); with no daemon
running, the settings file is the truth.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from daemon_sim import MakeSim

from orchestrator.cli import cli
from orchestrator.daemon import Daemon
from orchestrator.marketo import MarketoClient
from orchestrator.models import FileStatus
from orchestrator.settings import Settings, load_settings
from orchestrator.store import Store
from orchestrator.store.lock import SingleDaemonLock

REFUSAL = (
    "leadflow: the running daemon does not know route 'events' yet: reload it "
    f"(systemctl reload leadflow / kill -HUP {os.getpid()})"
)


def settings_file(path: Path, settings: Settings, routes: str) -> Path:
    lines = ["[paths]"] + [
        f'{key} = "{getattr(settings.paths, key)}"'
        for key in ("inbox", "work", "archive", "rejected", "results", "database")
    ]
    path.write_text("\n".join(lines) + "\n" + routes)
    return path


WEBINAR = '[[routes]]\nname = "webinar"\nlist_id = 1002\n'
EVENTS = '[[routes]]\nname = "events"\nlist_id = 1001\n'


async def test_commands_refuse_a_route_the_running_daemon_does_not_know(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = await make_sim()
    started = daemon_settings(sim.url, routes=[{"name": "webinar", "list_id": 1002}])
    config = settings_file(tmp_path / "leadflow.toml", started, WEBINAR + EVENTS)
    lead = tmp_path / "lead.csv"
    lead.write_bytes(b"email\r\na@example.com\r\n")
    inbox = started.paths.inbox
    async with MarketoClient(started) as client, Daemon(
        started, client=client, handle_signals=False
    ) as daemon:
        # The daemon recorded, at start, the routes it runs with.
        assert await daemon.store.daemon_routes() == (
            os.getpid(), [{"name": "webinar", "list_id": 1002}]
        )
        capsys.readouterr()
        assert await cli(["submit", str(lead), "--route", "events", "--config", str(config)]) == 2
        assert capsys.readouterr().err.strip() == REFUSAL
        assert not (inbox / "events").exists()
        # retry of a file of route 'events' is refused the same way, and left as it is
        file = await daemon.store.add_file(name="e.csv", inbox_path=str(inbox / "e.csv"),
                                           work_path="w", route="events", size_bytes=1)
        await daemon.store.transition_file(file.id, FileStatus.RECEIVED, FileStatus.REJECTED,
                                           error="x", reported_at=1.0)
        assert await cli(["retry", str(file.id), "--config", str(config)]) == 2
        assert capsys.readouterr().err.strip() == REFUSAL
        # a route the daemon knows is fine
        assert await cli(["submit", str(lead), "--route", "webinar", "--config", str(config)]) == 0
        assert (inbox / "webinar" / "lead.csv").is_file()
        # the reload's part: the daemon records the routes it now runs with
        await daemon.record_routes(load_settings(config))
        assert await cli(["submit", str(lead), "--route", "events", "--config", str(config)]) == 0
        assert (inbox / "events" / "lead.csv").is_file()

    # No daemon running: the settings file is the truth.
    narrowed = settings_file(tmp_path / "other.toml", started, EVENTS)
    capsys.readouterr()
    assert await cli(["submit", str(lead), "--route", "webinar", "--config", str(narrowed)]) == 2
    assert "unknown route 'webinar' (known routes: events)" in capsys.readouterr().err


async def test_a_route_only_the_running_daemon_knows_goes_to_its_folder(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sim = await make_sim()
    started = daemon_settings(sim.url, routes=[{"name": "events", "folder": "in/events"}])
    config = settings_file(tmp_path / "leadflow.toml", started, "")  # removed from the file
    lead = tmp_path / "lead.csv"
    lead.write_bytes(b"email\r\na@example.com\r\n")
    async with MarketoClient(started) as client, Daemon(
        started, client=client, handle_signals=False
    ):
        assert await cli(["submit", str(lead), "--route", "events", "--config", str(config)]) == 0
    dest = started.paths.inbox / "in" / "events" / "lead.csv"
    assert dest.is_file()
    assert f"as {dest} (route events)" in capsys.readouterr().out


async def test_routes_recorded_by_an_earlier_daemon_are_not_trusted(
    daemon_settings: Callable[..., Settings], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A daemon that records nothing (an older leadflow) holds the lock; what an earlier
    daemon recorded says nothing about it, so the settings file is the truth."""
    settings = daemon_settings("http://127.0.0.1:9", routes=[{"name": "events"}])
    async with Store.open(settings.paths.database) as store:
        await store.record_daemon_routes([], pid=os.getpid() + 1)  # a daemon long gone
    lead = tmp_path / "lead.csv"
    lead.write_bytes(b"email\r\n")
    config = settings_file(tmp_path / "leadflow.toml", settings, EVENTS)
    lock = SingleDaemonLock(settings.paths.database)
    lock.acquire()
    try:
        assert await cli(["submit", str(lead), "--route", "events", "--config", str(config)]) == 0
    finally:
        lock.release()
    assert (settings.paths.inbox / "events" / "lead.csv").is_file()
