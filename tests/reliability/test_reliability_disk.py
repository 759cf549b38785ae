"""Issue 9.4 (disk half): a results folder that cannot be written, or a disk that fills up
while a report is written, postpones the report; it is written later and nothing is lost.

Tests run as root, which ignores permission bits, so the failures are injected where the
reporter writes (``orchestrator.results``: ``write_json``, ``write_rows``, ``replace_dir``)
with the ``OSError`` the kernel would give (``ENOSPC``, ``EACCES``). A partial write leaves
half a file behind first, as a full disk does.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import os
import random
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestServer
from reliability_harness import CLIENT_ID, CLIENT_SECRET, require_module
from reliability_inputs import LeadFile, write_lead_file

from orchestrator.settings import Settings
from orchestrator.simulator import SIMULATOR_KEY, SimulatorConfig, create_app


@pytest.fixture
async def sim_app() -> AsyncIterator[tuple[str, Any]]:
    app = create_app(
        SimulatorConfig(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, seed=4),
        time_scale=50.0,
    )
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), app[SIMULATOR_KEY]
    await server.close()


def _settings(make_settings: Callable[..., Settings], url: str) -> Settings:
    return make_settings(
        marketo={"base_url": url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                 "retry_base_s": 0.01, "retry_max_s": 0.1, "token_refresh_margin_s": 0.0},
        polling={"min_interval_s": 0.02, "max_interval_s": 0.2},
        intake={"stable_s": 0.0, "rescan_interval_s": 0.05},
        daemon={"idle_tick_s": 0.05, "shutdown_grace_s": 0.5, "results_retry_s": 0.1},
    )


def _failing(real: Callable[..., Any], errno_code: int, times: int,
             partial: bool = False) -> tuple[Callable[..., Any], list[int]]:
    """Wrap ``real`` so its first ``times`` calls raise ``OSError(errno_code)``."""
    calls: list[int] = []

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) <= times:
            if partial and args and isinstance(args[0], Path):
                args[0].parent.mkdir(parents=True, exist_ok=True)
                args[0].write_bytes(b'{"file": "half a rep')
            raise OSError(errno_code, os.strerror(errno_code))
        return real(*args, **kwargs)

    return wrapper, calls


@pytest.mark.parametrize(
    ("target", "code", "times"),
    [
        ("write_json", errno.ENOSPC, 3),
        ("write_rows", errno.ENOSPC, 2),
        ("replace_dir", errno.EACCES, 2),
        ("write_json", errno.EROFS, 1),
    ],
)
async def test_report_is_written_later_and_nothing_is_lost(
    make_settings: Callable[..., Settings],
    sim_app: tuple[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    code: int,
    times: int,
) -> None:
    require_module("orchestrator.intake")
    from orchestrator.daemon import Daemon
    from orchestrator.results import reporter as results

    url, sim = sim_app
    settings = _settings(make_settings, url)
    rng = random.Random(7)
    files: list[LeadFile] = [
        write_lead_file(settings.paths.inbox, f"disk-{i}.csv", tag=f"disk-{target}", index=i,
                        rows=5 + i, rng=rng, bad_every=4 if i == 1 else 0)
        for i in range(3)
    ]
    digests = {f.path.name: hashlib.sha256(f.path.read_bytes()).hexdigest() for f in files}
    wrapper, calls = _failing(getattr(results, target), code, times,
                              partial=target == "write_json")
    monkeypatch.setattr(results, target, wrapper)

    with structlog.testing.capture_logs() as logs:
        async with Daemon(settings, handle_signals=False) as daemon:
            await asyncio.wait_for(daemon.run(once=True), 40)

    assert len(calls) > times, "the injected failure was never reached"
    failed = [e for e in logs if e["event"] == "results_write_failed"]
    assert len(failed) == times, failed
    assert all(e["errno"] == errno.errorcode[code] for e in failed), failed
    assert not [e for e in logs if e["event"] in ("daemon_crashed", "report_pass_failed")]

    results_root = settings.paths.results
    leftovers = [p.name for p in results_root.iterdir() if p.name.endswith((".tmp", ".old"))]
    assert not leftovers, leftovers
    store = {lead["email"]: lead for lead in sim.default_instance.store.export_leads()}
    for lead_file in files:
        name = lead_file.path.name
        reports = list(results_root.glob(f"{name}.*/report.json"))
        assert len(reports) == 1, (name, reports)
        report = json.loads(reports[0].read_text(encoding="utf-8"))
        assert report["status"] == ("partial" if lead_file.bad else "complete"), report
        assert report["rows"]["imported"] == len(lead_file.good), report
        assert report["rows"]["failed"] + report["rows"]["rejected"] == len(lead_file.bad)
        for email, values in lead_file.good.items():
            assert store[email]["firstName"] == values["firstName"]
        # The source is archived byte for byte.
        archived = [p for p in settings.paths.archive.iterdir() if p.name.endswith(name)]
        assert len(archived) == 1, (name, list(settings.paths.archive.iterdir()))
        assert hashlib.sha256(archived[0].read_bytes()).hexdigest() == digests[name]
        if lead_file.bad:
            failures = reports[0].parent / "failures.csv"
            assert failures.exists()
            lines = failures.read_text(encoding="utf-8").splitlines()
            assert len(lines) == 1 + len(lead_file.bad), lines
