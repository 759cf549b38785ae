"""Refused credentials and an unreachable Marketo: ``run --once`` exits 1 with one line; the
daemon pauses, retries identity slowly and resumes (against the simulator)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
from daemon_sim import MakeSim, SplitIntake, write_lead_files
from structlog.testing import capture_logs as _capture_logs

from orchestrator.cli import cli
from orchestrator.daemon import Daemon
from orchestrator.daemon.credentials import CredentialsRefused, MarketoUnreachable
from orchestrator.marketo import MarketoClient
from orchestrator.models import FileStatus
from orchestrator.places import pause_file
from orchestrator.results import Reporter
from orchestrator.settings import Settings
from orchestrator.store import Store

SIM = {"rate_limit_calls": 100_000, "max_body_bytes": 4096, "rows_per_second": 200.0}


def capture_logs() -> Any:
    return _capture_logs(processors=[structlog.contextvars.merge_contextvars])


@asynccontextmanager
async def running(settings: Settings, **kwargs: Any) -> AsyncIterator[Daemon]:
    async with MarketoClient(settings, window_s=1.0) as client:
        daemon = Daemon(
            settings,
            client=client,
            intake_factory=lambda store, c: SplitIntake(settings, store),
            reporter_factory=lambda store, c: Reporter(settings, store, c),
            handle_signals=False,
            **kwargs,
        )
        async with daemon:
            yield daemon


async def _until(check: Callable[[], Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_run_once_with_a_wrong_secret_exits_at_once_with_the_identity_url(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(**SIM)
    settings = daemon_settings(sim.url, marketo={"client_secret": "wrong-secret"})
    write_lead_files(settings.paths.inbox, 1, lambda n: 5)
    with capture_logs() as logs, pytest.raises(CredentialsRefused) as raised:
        async with running(settings) as daemon:
            await asyncio.wait_for(daemon.run(once=True), 10)
    text = str(raised.value)
    assert text == (
        f"Marketo refused the client id/secret (HTTP 401 from {sim.url}/identity/oauth/token): "
        "check marketo.client_id and the secret"
    )
    assert "wrong-secret" not in text
    assert [e["event"] for e in logs].count("auth_failed") == 1
    stopped = [e for e in logs if e["event"] == "daemon_stopped"]
    assert stopped and stopped[0]["reason"] == "auth_failed"
    assert (settings.paths.inbox / "leads-000.csv").exists()  # nothing was taken


async def test_cli_run_once_with_a_wrong_secret_prints_one_line_and_exits_1(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    sim = await make_sim(**SIM)
    settings = daemon_settings(sim.url)
    config = settings.paths.database.parent / "leadflow.toml"
    paths = "\n".join(f'{k} = "{v}"' for k, v in settings.paths.model_dump().items())
    config.write_text(
        f'[paths]\n{paths}\n[marketo]\nbase_url = "{sim.url}"\nclient_id = "leadflow-sim"\n'
        'client_secret = "nope"\n', encoding="utf-8",
    )
    code = await asyncio.wait_for(cli(["run", "--once", "--config", str(config)]), 20)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    expected = (
        f"leadflow: Marketo refused the client id/secret (HTTP 401 from "
        f"{sim.url}/identity/oauth/token): check marketo.client_id and the secret"
    )
    assert err == [expected]


async def test_run_once_with_marketo_unreachable_exits_after_the_retries(
    daemon_settings: Callable[..., Settings]
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"  # nothing listens there any more
    settings = daemon_settings(url, marketo={"retry_attempts": 2})
    with capture_logs() as logs, pytest.raises(MarketoUnreachable) as raised:
        async with running(settings) as daemon:
            await asyncio.wait_for(daemon.run(once=True), 10)
    assert f"cannot reach Marketo's identity endpoint {url}/identity/oauth/token" in str(
        raised.value
    )
    assert daemon.client.tokens.identity_calls == 2
    # Unreachable is not refused: the stop says which.
    stopped = [e for e in logs if e["event"] == "daemon_stopped"]
    assert stopped and stopped[0]["reason"] == "marketo_unreachable"


async def test_daemon_pauses_on_refused_credentials_retries_slowly_and_resumes(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(**SIM)
    await sim.patch({"client_secret": "rotated"})  # our secret is refused from now on
    settings = daemon_settings(sim.url)
    made = write_lead_files(settings.paths.inbox, 1, lambda n: 5)
    with capture_logs() as logs:
        async with running(settings, auth_retry_s=0.3) as daemon:
            task = asyncio.create_task(daemon.run())
            await asyncio.sleep(1.0)
            assert not task.done()  # paused, not crashed
            calls = daemon.client.tokens.identity_calls
            # one at start, then one per 0.3 s: never a tight loop
            assert 2 <= calls <= 6, calls
            assert pause_file(settings.paths.database).exists()
            errors = await daemon.store.recent_errors(5)
            assert [e["code"] for e in errors] == ["auth_failed"]
            assert "HTTP 401" in errors[0]["message"]
            assert (await daemon.store.counts_by_status())["uploads"]["submitting"] == 0
            await sim.patch({"client_secret": "leadflow-sim-secret"})

            async def reported() -> bool:
                files = await daemon.store.files_in(FileStatus.COMPLETE)
                return len(files) == len(made)

            await _until(reported)
            assert not pause_file(settings.paths.database).exists()
            daemon.stop()
            await asyncio.wait_for(task, 10)
    events = [e["event"] for e in logs]
    assert events.count("auth_failed") == 1
    assert events.count("work_paused") == 1
    assert events.count("work_resumed") == 1
    assert "daemon_crashed" not in events


async def test_pause_file_is_json_naming_the_reason(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    sim = await make_sim(**SIM)
    settings = daemon_settings(sim.url, marketo={"client_secret": "bad"})
    async with running(settings, auth_retry_s=10.0) as daemon:
        task = asyncio.create_task(daemon.run())

        async def paused() -> bool:
            return pause_file(settings.paths.database).exists()

        await _until(paused)
        data = json.loads(pause_file(settings.paths.database).read_text())
        assert data["reason"] == "auth" and "HTTP 401" in data["message"]
        daemon.stop()
        await asyncio.wait_for(task, 10)
    assert not pause_file(settings.paths.database).exists()
    async with Store.open(Path(settings.paths.database)) as store:
        assert (await store.counts_by_status())["files"]["queued"] == 0


async def test_a_fixed_secret_file_is_picked_up_without_a_restart(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Issue 13.1: the secret file is read again at every identity try."""
    sim = await make_sim(**SIM)
    secret_file = tmp_path / "client_secret"
    secret_file.write_text("an-old-secret-0000\n", encoding="utf-8")
    settings = daemon_settings(
        sim.url, marketo={"client_secret": None, "client_secret_file": str(secret_file)}
    )
    made = write_lead_files(settings.paths.inbox, 2, lambda n: 5)
    with capture_logs() as logs:
        async with running(settings, auth_retry_s=0.2) as daemon:
            task = asyncio.create_task(daemon.run())

            async def paused() -> bool:
                return pause_file(settings.paths.database).exists()

            await _until(paused)
            assert not await daemon.store.files_in(FileStatus.COMPLETE)
            # The operator fixes the file (as a secret rotation would), atomically.
            fixed = tmp_path / "client_secret.new"
            fixed.write_text("leadflow-sim-secret\n", encoding="utf-8")
            fixed.replace(secret_file)

            async def reported() -> bool:
                return len(await daemon.store.files_in(FileStatus.COMPLETE)) == len(made)

            await _until(reported, timeout=5.0)
            assert not task.done()  # the same process: no restart
            assert not pause_file(settings.paths.database).exists()
            daemon.stop()
            await asyncio.wait_for(task, 10)
    events = [e["event"] for e in logs]
    assert events.count("auth_failed") == 1
    assert events.count("work_paused") == 1
    assert events.count("work_resumed") == 1
    statuses = [r["status"] for r in await sim.requests() if r["endpoint"] == "identity"]
    first_ok = statuses.index(200)  # refused until the file was fixed, then granted
    assert first_ok > 0 and set(statuses[:first_ok]) == {401}, statuses
    assert set(statuses[first_ok:]) == {200}, statuses
    text = json.dumps(logs, default=str)
    assert "an-old-secret-0000" not in text and "leadflow-sim-secret" not in text


async def test_a_secret_refused_while_batches_are_polled_pauses_instead_of_crashing(
    make_sim: MakeSim, daemon_settings: Callable[..., Settings]
) -> None:
    """Found by the month scenario (issue 13): the token dies while a batch is at Marketo
    and the secret was rotated; the poller's refusal came out of its task group as an
    ExceptionGroup, which the credentials gate did not recognise: the daemon crashed."""
    sim = await make_sim(**{**SIM, "rows_per_second": 1.0})
    settings = daemon_settings(sim.url)
    made = write_lead_files(settings.paths.inbox, 1, lambda n: 40)
    with capture_logs() as logs:
        async with running(settings, auth_retry_s=0.2) as daemon:
            task = asyncio.create_task(daemon.run())

            async def at_marketo() -> bool:
                counts = await daemon.store.counts_by_status()
                return sum(counts["uploads"].get(s, 0) for s in ("submitted", "importing")) > 0

            await _until(at_marketo)
            await sim.patch({"client_secret": "rotated"})
            await sim._call("POST", "/_sim/clock/advance", {"seconds": 7200})  # token dies

            async def paused() -> bool:
                return pause_file(settings.paths.database).exists() or task.done()

            await _until(paused)
            assert not task.done(), task.exception()
            await sim.patch({"client_secret": "leadflow-sim-secret"})

            async def reported() -> bool:
                return len(await daemon.store.files_in(FileStatus.COMPLETE)) == len(made)

            await _until(reported)
            daemon.stop()
            await asyncio.wait_for(task, 10)
    events = [e["event"] for e in logs]
    assert "daemon_crashed" not in events
    assert events.count("auth_failed") == 1
    assert events.count("work_resumed") == 1
